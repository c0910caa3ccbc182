/* tests/fuzz/fuzz_feedback.c - libFuzzer target for the report reader
 * (engine/feedback_parse.c): any bytes as a bounce, complaint or
 * auto-reply. Seeds: the fixtures of tests/fixtures/feedback/.
 *
 * Checks: no crash, leak or out-of-bounds read; the report well formed (a
 * type, recipients within FEEDBACK_RCPT_MAX, none for an unknown report
 * and at least one otherwise; each address with an '@', no white space
 * or control bytes, its domain lower-cased; an action of RFC 3464's or
 * none; a status shaped X.Y.Z; a code 200-599 or 0; a diagnostic of one
 * line within FEEDBACK_DIAG_MAX); and, for an input without CR, the same
 * report when its line ends are CRLF or bare CR. */
#include "../../engine/feedback_parse.h"
#include "../../engine/lib/util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_feedback: check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static bool status_shaped(const char *s)
{
	if (!s[0])
		return true;
	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	const char *p = s + 2;
	for (int part = 0; part < 2; part++) {
		int d = 0;
		while (*p >= '0' && *p <= '9')
			p++, d++;
		if (d < 1 || d > 3)
			return false;
		if (part == 0 && *p++ != '.')
			return false;
	}
	return *p == 0;
}

static void check_report(const struct feedback_report *r)
{
	CHECK(r->type == FEEDBACK_UNKNOWN || r->type == FEEDBACK_DSN || r->type == FEEDBACK_ARF ||
	      r->type == FEEDBACK_AUTOREPLY);
	CHECK(r->nrcpt <= FEEDBACK_RCPT_MAX);
	CHECK((r->type == FEEDBACK_UNKNOWN) == (r->nrcpt == 0));
	for (size_t i = 0; i < r->nrcpt; i++) {
		const struct feedback_rcpt *x = &r->rcpt[i];
		if (x->rcpt) {
			const char *at = strchr(x->rcpt, '@');
			CHECK(at && at > x->rcpt && at[1]);
			CHECK(strlen(x->rcpt) <= 64 + 1 + 255);
			for (const char *c = x->rcpt; *c; c++)
				CHECK((unsigned char)*c > ' ' && *c != 0x7f && *c != '<' && *c != '>');
			for (const char *c = at; *c; c++)
				CHECK(!(*c >= 'A' && *c <= 'Z'));
			for (size_t j = 0; j < i; j++) /* each address once */
				CHECK(!r->rcpt[j].rcpt || strcasecmp(r->rcpt[j].rcpt, x->rcpt) != 0);
		}
		CHECK(!x->action[0] || !strcmp(x->action, "failed") || !strcmp(x->action, "delayed") ||
		      !strcmp(x->action, "delivered") || !strcmp(x->action, "relayed") || !strcmp(x->action, "expanded"));
		CHECK(status_shaped(x->status));
		CHECK(x->code == 0 || (x->code >= 200 && x->code <= 599));
		if (x->diagnostic) {
			CHECK(strlen(x->diagnostic) <= FEEDBACK_DIAG_MAX);
			CHECK(!strchr(x->diagnostic, '\n'));
		}
		if (r->type != FEEDBACK_DSN)
			CHECK(!x->action[0] && !x->status[0] && !x->code);
	}
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_same(const struct feedback_report *a, const struct feedback_report *b)
{
	CHECK(a->type == b->type && a->nrcpt == b->nrcpt);
	CHECK(same_str(a->track, b->track) && same_str(a->message_id, b->message_id) && same_str(a->job, b->job));
	CHECK(same_str(a->feedback_type, b->feedback_type));
	for (size_t i = 0; i < a->nrcpt; i++) {
		CHECK(same_str(a->rcpt[i].rcpt, b->rcpt[i].rcpt));
		CHECK(!strcmp(a->rcpt[i].action, b->rcpt[i].action) && !strcmp(a->rcpt[i].status, b->rcpt[i].status));
		CHECK(a->rcpt[i].code == b->rcpt[i].code && same_str(a->rcpt[i].diagnostic, b->rcpt[i].diagnostic));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct feedback_report r;
	feedback_parse((const char *)data, size, &r);
	check_report(&r);
	if (!memchr(data, '\r', size)) {
		static const char *const eols[] = { "\r\n", "\r" };
		for (int e = 0; e < 2; e++) {
			size_t el = strlen(eols[e]);
			char *m = xmalloc(2 * size + 1);
			size_t k = 0;
			for (size_t i = 0; i < size; i++) {
				if (data[i] == '\n') {
					memcpy(m + k, eols[e], el);
					k += el;
				} else {
					m[k++] = (char)data[i];
				}
			}
			struct feedback_report r2;
			feedback_parse(m, k, &r2);
			check_same(&r, &r2);
			feedback_report_free(&r2);
			free(m);
		}
	}
	feedback_report_free(&r);
	return 0;
}
