/* engine/doctor_message.c - `sluice doctor --message FILE`: a spool file
 * against the rules Gmail, Yahoo and Microsoft set for bulk senders
 * (From aligned with the DKIM domain, one-click unsubscribe (RFC 8058)
 * signed, Message-ID and Date, lines of at most 998 octets, 8-bit
 * content declared). Reads the file as the engine does (envelope.c). */
#define _GNU_SOURCE
#include "doctor.h"
#include "../dkim/signer.h"
#include "../dns/dmarc.h"
#include "lib/envelope.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_OCTETS 998       /* RFC 5322 2.1.1 */

struct headers {
	const char *p;            /* the header block (CRLF lines) */
	size_t len;
};

/* The unfolded value of the n-th field called name (from 0), in out;
 * false when there is none. */
static bool header_get(const struct headers *h, const char *name, unsigned n, char *out, size_t len)
{
	size_t nl = strlen(name), i = 0;
	while (i < h->len) {
		const char *line = h->p + i;
		const char *eol = memmem(line, h->len - i, "\r\n", 2);
		size_t ll = eol ? (size_t)(eol - line) : h->len - i;
		if (ll > nl && line[nl] == ':' && !strncasecmp(line, name, nl) && n-- == 0) {
			size_t o = 0;
			const char *v = line + nl + 1;
			for (;;) {
				for (const char *q = v; q < line + ll && o + 1 < len; q++)
					out[o++] = *q;
				i += ll + 2;
				if (i >= h->len || (h->p[i] != ' ' && h->p[i] != '\t'))
					break;
				line = h->p + i;
				eol = memmem(line, h->len - i, "\r\n", 2);
				ll = eol ? (size_t)(eol - line) : h->len - i;
				v = line;
			}
			out[o] = 0;
			char *s = out;
			while (*s == ' ' || *s == '\t')
				s++;
			memmove(out, s, strlen(s) + 1);
			return true;
		}
		i += ll + 2;
	}
	return false;
}

/* How many fields called name the header has (one pass). */
static unsigned header_count(const struct headers *h, const char *name)
{
	size_t nl = strlen(name);
	unsigned n = 0;
	for (size_t i = 0; i < h->len;) {
		const char *line = h->p + i;
		const char *eol = memmem(line, h->len - i, "\r\n", 2);
		size_t ll = eol ? (size_t)(eol - line) : h->len - i;
		if (ll > nl && line[nl] == ':' && !strncasecmp(line, name, nl))
			n++;
		i += ll + 2;
	}
	return n;
}

static bool signed_by_sluice(const char *name)
{
	for (const char *const *s = dkim_signed_headers; *s; s++)
		if (!strcasecmp(*s, name))
			return true;
	return false;
}

/* The domain of the address in a From value ("Name <a@b>" or "a@b"). */
static bool from_domain(const char *value, char *out, size_t len)
{
	const char *lt = strrchr(value, '<');
	const char *start = lt ? lt + 1 : value;
	const char *end = lt ? strchr(start, '>') : start + strcspn(start, " \t,;");
	if (!end)
		return false;
	const char *at = memrchr(start, '@', (size_t)(end - start));
	if (!at || at + 1 >= end)
		return false;
	snprintf(out, len, "%.*s", (int)(end - at - 1), at + 1);
	str_lower(out);
	return true;
}

static void check_from(const struct headers *h, const char *const *dkim_domains, unsigned nd, struct doctor_report *r)
{
	char v[1024], dom[256];
	unsigned n = header_count(h, "From");
	struct check *c = report_check(r, "from", header_get(h, "From", 0, v, sizeof(v)) ? v : "(none)");
	if (n != 1) {
		check_note(c, CHECK_FAIL, "give the message exactly one From field", "%u From fields (RFC 5322: exactly one)", n);
		return;
	}
	if (!from_domain(v, dom, sizeof(dom))) {
		check_note(c, CHECK_FAIL, "write From as \"Name <local@domain>\"", "no address in From");
		return;
	}
	if (!nd) {
		check_note(c, CHECK_WARN, "give the signing domain (--domain with --selector, or -c)",
		           "From domain %s; no DKIM domain configured to compare with", dom);
		return;
	}
	for (unsigned i = 0; i < nd; i++)
		if (dmarc_aligned(dkim_domains[i], dom, 'r')) {
			check_note(c, CHECK_PASS, NULL, "From domain %s aligns with the DKIM domain %s", dom, dkim_domains[i]);
			return;
		}
	check_note(c, CHECK_FAIL, "send from a domain you sign for, or add a key for it",
	           "From domain %s aligns with no configured DKIM domain: DMARC fails unless SPF aligns", dom);
}

static void check_unsubscribe(const struct headers *h, struct doctor_report *r)
{
	char v[2048];
	struct check *c = report_check(r, "list-unsubscribe", "List-Unsubscribe");
	if (!header_get(h, "List-Unsubscribe", 0, v, sizeof(v))) {
		check_note(c, CHECK_FAIL, "add List-Unsubscribe: <https://...> (and a mailto: if you like)",
		           "no List-Unsubscribe: Gmail and Yahoo require one-click unsubscribe from bulk senders");
	} else if (!strcasestr(v, "<https://")) {
		check_note(c, CHECK_FAIL, "add an https URI: List-Unsubscribe: <https://...>",
		           "List-Unsubscribe has no https URI (RFC 8058 one-click needs one): %s", v);
	} else {
		check_note(c, CHECK_PASS, NULL, "%s", v);
	}
	c = report_check(r, "one-click", "List-Unsubscribe-Post");
	if (!header_get(h, "List-Unsubscribe-Post", 0, v, sizeof(v)))
		check_note(c, CHECK_FAIL, "add List-Unsubscribe-Post: List-Unsubscribe=One-Click",
		           "no List-Unsubscribe-Post (RFC 8058)");
	else if (strcmp(v, "List-Unsubscribe=One-Click"))
		check_note(c, CHECK_FAIL, "write it as List-Unsubscribe-Post: List-Unsubscribe=One-Click",
		           "List-Unsubscribe-Post is \"%s\"", v);
	else if (signed_by_sluice("List-Unsubscribe") && signed_by_sluice("List-Unsubscribe-Post"))
		check_note(c, CHECK_PASS, NULL, "present; sluice's DKIM signature covers both fields (RFC 8058 section 4)");
	else
		check_note(c, CHECK_FAIL, NULL, "the DKIM signature would not cover both fields");
}

static void check_required(const struct headers *h, const char *name, const char *check, struct doctor_report *r)
{
	char v[1024];
	unsigned n = header_count(h, name);
	struct check *c = report_check(r, check, name);
	char fix[128];
	snprintf(fix, sizeof(fix), "add exactly one %s field", name);
	if (!n)
		check_note(c, CHECK_FAIL, fix, "no %s field (Gmail refuses messages without one as not RFC 5322)", name);
	else if (n > 1)
		check_note(c, CHECK_FAIL, fix, "%u %s fields (RFC 5322: at most one)", n, name);
	else
		check_note(c, CHECK_PASS, NULL, "%s", header_get(h, name, 0, v, sizeof(v)) ? v : "");
}

static void check_lines(const struct message *m, struct doctor_report *r)
{
	struct check *c = report_check(r, "line-length", "message");
	size_t longest = 0, line = 1, at = 0, nlong = 0;
	for (const char *p = m->body, *end = m->body + m->body_len; p < end;) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
		if (l > longest) {
			longest = l;
			at = line;
		}
		if (l > LINE_MAX_OCTETS)
			nlong++;
		p += l + 2;
		line++;
	}
	if (nlong)
		check_note(c, CHECK_FAIL, "wrap long lines, or use quoted-printable or base64",
		           "%zu lines over %d octets (the longest %zu, line %zu): servers may refuse or break them",
		           nlong, LINE_MAX_OCTETS, longest, at);
	else
		check_note(c, CHECK_PASS, NULL, "longest line %zu octets", longest);
}

static void check_8bit(const struct message *m, const struct headers *h, struct doctor_report *r)
{
	struct check *c = report_check(r, "8bit", "message");
	bool head8 = false;
	for (size_t i = 0; i < h->len; i++)
		if ((unsigned char)h->p[i] >= 0x80)
			head8 = true;
	bool body8 = false;
	for (size_t i = h->len; i < m->body_len; i++)
		if ((unsigned char)m->body[i] >= 0x80)
			body8 = true;
	/* the declaration may be in the top header or in a MIME part's */
	bool declared = false;
	for (const char *p = m->body; (p = strcasestr(p, "Content-Transfer-Encoding:")) != NULL; p++) {
		const char *v = p + strlen("Content-Transfer-Encoding:");
		while (*v == ' ' || *v == '\t')
			v++;
		if (!strncasecmp(v, "8bit", 4) || !strncasecmp(v, "binary", 6))
			declared = true;
	}
	if (body8 && !declared)
		check_note(c, CHECK_FAIL, "declare Content-Transfer-Encoding: 8bit, or encode (quoted-printable, base64)",
		           "8-bit bytes in the body, no Content-Transfer-Encoding: 8bit declared");
	else if (body8)
		check_note(c, CHECK_PASS, NULL, "8-bit body, declared (sent with BODY=8BITMIME)");
	else
		check_note(c, CHECK_PASS, NULL, "7-bit body");
	if (head8)
		check_note(c, CHECK_WARN, "encode header text as RFC 2047 encoded-words",
		           "8-bit bytes in the header: only servers with SMTPUTF8 accept them");
}

/* The whole file, NUL-terminated (envelope_parse terminates in place). */
static bool read_whole(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	struct buf b = { 0 };
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	bool ok = !ferror(f);
	fclose(f);
	*len = b.len;
	buf_add(&b, "", 1);
	*out = b.p;
	return ok;
}

void doctor_check_message(const char *path, const char *const *dkim_domains, unsigned ndkim_domains,
                          struct doctor_report *out)
{
	struct check *c = report_check(out, "envelope", path);
	struct message *m = xcalloc(1, sizeof(*m));
	if (!read_whole(path, &m->raw, &m->raw_len)) {
		check_note(c, CHECK_FAIL, NULL, "cannot read %s", path);
		message_free(m);
		return;
	}
	char why[300];
	if (!envelope_parse(m, why, sizeof(why))) {
		check_note(c, CHECK_FAIL, "fix the spool file (sluice would move it to bad/)", "%s", why);
		message_free(m);
		return;
	}
	check_note(c, CHECK_PASS, NULL, "from %s to %u recipient%s%s%s", m->sender, m->nrcpt, m->nrcpt == 1 ? "" : "s",
	           m->job ? ", job " : "", m->job ? m->job : "");
	const char *end = memmem(m->body, m->body_len, "\r\n\r\n", 4);
	struct headers h = { m->body, end ? (size_t)(end - m->body) + 2 : m->body_len };
	check_from(&h, dkim_domains, ndkim_domains, out);
	check_unsubscribe(&h, out);
	check_required(&h, "Message-ID", "message-id", out);
	check_required(&h, "Date", "date", out);
	check_lines(m, out);
	check_8bit(m, &h, out);
	message_free(m);
}
