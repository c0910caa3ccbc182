/* engine/doctor_report.c - see doctor_report.h. */
#define _GNU_SOURCE
#include "doctor_report.h"
#include "lib/json.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void report_init(struct doctor_report *r, const char *key, const char *about)
{
	memset(r, 0, sizeof(*r));
	r->key = key;
	r->about = xstrdup(about);
}

void report_free(struct doctor_report *r)
{
	for (unsigned i = 0; i < r->n; i++) {
		free(r->c[i].subject);
		buf_free(&r->c[i].detail);
		buf_free(&r->c[i].fix);
	}
	free(r->c);
	free(r->about);
	memset(r, 0, sizeof(*r));
}

struct check *report_check(struct doctor_report *r, const char *name, const char *subject)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->c = xrealloc(r->c, r->cap * sizeof(*r->c));
	}
	struct check *c = &r->c[r->n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->subject = xstrdup(subject);
	return c;
}

static const char *text_of(const struct buf *b)
{
	return b->len ? b->p : "";
}

/* Appends s, keeping the text NUL-terminated. */
static void add_text(struct buf *b, const char *s)
{
	buf_adds(b, s);
	buf_reserve(b, 1);
	b->p[b->len] = 0;
}

void check_note(struct check *c, enum check_status st, const char *fix, const char *fmt, ...)
{
	if (st > c->status)
		c->status = st;
	if (c->detail.len)
		add_text(&c->detail, "; ");
	va_list ap;
	va_start(ap, fmt);
	char *text = NULL;
	if (vasprintf(&text, fmt, ap) < 0)
		fatal("out of memory");
	va_end(ap);
	add_text(&c->detail, text);
	free(text);
	if (fix && *fix) {
		if (c->fix.len)
			add_text(&c->fix, "; ");
		add_text(&c->fix, fix);
	}
}

bool report_failed(const struct doctor_report *r)
{
	for (unsigned i = 0; i < r->n; i++)
		if (r->c[i].status == CHECK_FAIL)
			return true;
	return false;
}

const char *check_status_name(enum check_status st)
{
	static const char *names[] = { "pass", "info", "warn", "fail" };
	return names[st];
}

void report_json(const struct doctor_report *r, struct buf *out)
{
	buf_printf(out, "{\"%s\":", r->key);
	json_add_cstr(out, r->about);
	buf_adds(out, ",\"checks\":[");
	for (unsigned i = 0; i < r->n; i++) {
		const struct check *c = &r->c[i];
		buf_adds(out, i ? ",{\"name\":" : "{\"name\":");
		json_add_cstr(out, c->name);
		buf_adds(out, ",\"subject\":");
		json_add_cstr(out, c->subject);
		buf_printf(out, ",\"status\":\"%s\",\"detail\":", check_status_name(c->status));
		json_add_cstr(out, text_of(&c->detail));
		buf_adds(out, ",\"fix\":");
		json_add_cstr(out, text_of(&c->fix));
		buf_adds(out, "}");
	}
	buf_adds(out, "]}\n");
}

/* Text from DNS records may hold any byte: what is not printable ASCII
 * goes out as \xNN (no terminal escapes, no forged log lines). */
static void put_safe(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p >= 0x20 && *p < 0x7f)
			fputc(*p, f);
		else
			fprintf(f, "\\x%02x", *p);
}

void report_table(const struct doctor_report *r, FILE *f, bool colour)
{
	static const char *colours[] = { "\033[32m", "\033[36m", "\033[33m", "\033[31m" };
	fprintf(f, "%s ", r->key);
	put_safe(f, r->about);
	fputc('\n', f);
	for (unsigned i = 0; i < r->n; i++) {
		const struct check *c = &r->c[i];
		fprintf(f, "  %s%-4s%s  %-8s ", colour ? colours[c->status] : "", check_status_name(c->status),
		        colour ? "\033[0m" : "", c->name);
		put_safe(f, c->subject);
		fputs("\n        ", f);
		put_safe(f, text_of(&c->detail));
		fputc('\n', f);
		if (c->fix.len && c->status != CHECK_PASS) {
			fputs("        fix: ", f);
			put_safe(f, c->fix.p);
			fputc('\n', f);
		}
	}
}

void report_warnings(const struct doctor_report *r, FILE *f, const char *prefix)
{
	for (unsigned i = 0; i < r->n; i++) {
		const struct check *c = &r->c[i];
		if (c->status != CHECK_FAIL)
			continue;
		struct buf line = { 0 };
		buf_printf(&line, "%s%s %s %s: %s", prefix, r->about, c->name, c->subject, text_of(&c->detail));
		if (c->fix.len)
			buf_printf(&line, "; fix: %s", c->fix.p);
		buf_add(&line, "", 1);
		put_safe(f, line.p);
		fputc('\n', f);
		buf_free(&line);
	}
}
