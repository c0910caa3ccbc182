/* engine/feedback_parse.c - reads a report that came back (see
 * feedback_parse.h): the MIME walk (nested multiparts, base64 and
 * quoted-printable, broken structure), the RFC 3464 and RFC 5965 fields,
 * the returned original's headers, the plain-text bounces of Postfix,
 * Exim, Sendmail, qmail, Exchange, Gmail, Yahoo and the like, and
 * auto-replies.
 *
 * Bounds: the input is cut at FEEDBACK_INPUT_MAX; every pass over it is
 * linear (substring searches run on lower-cased copies, each from the
 * start of a text or a line, never again from each match; the
 * MIME walk goes at most MIME_DEPTH_MAX deep and reads at most PARTS_MAX
 * parts, a body is decoded once and never walked again as MIME); the
 * recipients are deduplicated through a hash table and capped. */
#define _GNU_SOURCE
#include "feedback_parse.h"
#include "lib/util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIME_DEPTH_MAX 12
#define PARTS_MAX 1000
#define HEADERS_MAX 500         /* of one header block; the rest are skipped */
#define TEXT_SCAN_MAX (2u << 20) /* bytes of one text part read for a plain-text bounce */
#define MARKER_SCAN_MAX 16384   /* bytes of a text part searched for a bounce's wording */
#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDRS_MAX 100           /* addresses taken from one header */
#define WORD_2047_MAX 256       /* bytes an encoded word may span (RFC 2047 says 75) */

struct span {
	const char *p;
	size_t n;
};

/* ---- characters and strings ---- */

static char lc(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}
static bool is_sp(char c)
{
	return c == ' ' || c == '\t';
}
static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}
static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Does s[0, n) start with pre (lower-case ASCII), case ignored? */
static bool ci_prefix(const char *s, size_t n, const char *pre)
{
	size_t m = strlen(pre);
	if (m > n)
		return false;
	for (size_t i = 0; i < m; i++)
		if (lc(s[i]) != pre[i])
			return false;
	return true;
}

static bool ci_eq(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && ci_prefix(s, n, w);
}

/* A lower-cased copy of s[0, n), NUL-terminated (caller frees). */
static char *lower_dup(const char *s, size_t n)
{
	char *l = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		l[i] = lc(s[i]);
	l[n] = 0;
	return l;
}

/* The first of the needles (lower case) in lo[0, n) (lower-cased text):
 * its position, or NULL; *which says which. Each memmem is linear. */
static const char *find_any(const char *lo, size_t n, const char *const *needles, unsigned *which)
{
	const char *best = NULL;
	for (unsigned i = 0; needles[i]; i++) {
		const char *f = memmem(lo, n, needles[i], strlen(needles[i]));
		if (f && (!best || f < best)) {
			best = f;
			if (which)
				*which = i;
		}
	}
	return best;
}

static bool contains_any(const char *s, size_t n, const char *const *needles)
{
	char *lo = lower_dup(s, n);
	bool f = find_any(lo, n, needles, NULL) != NULL;
	free(lo);
	return f;
}

static void trim(const char **p, size_t *n)
{
	while (*n && (is_sp(**p) || **p == '\n'))
		(*p)++, (*n)--;
	while (*n && (is_sp((*p)[*n - 1]) || (*p)[*n - 1] == '\n'))
		(*n)--;
}

/* The next line of s[0, n) from *pos (without its LF); false at the end. */
static bool next_line(const char *s, size_t n, size_t *pos, struct span *line)
{
	if (*pos >= n)
		return false;
	const char *p = s + *pos;
	const char *e = memchr(p, '\n', n - *pos);
	size_t l = e ? (size_t)(e - p) : n - *pos;
	line->p = p;
	line->n = l;
	*pos += l + (e ? 1 : 0);
	return true;
}

/* ---- line ends ---- */

/* s[0, n) with CRLF and bare CR made LF and NUL made a space, in place:
 * the new length. */
static size_t normalize(char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\r') {
			if (i + 1 < n && s[i + 1] == '\n')
				i++;
			c = '\n';
		} else if (c == 0) {
			c = ' ';
		}
		s[o++] = c;
	}
	return o;
}

/* ---- the parse's state ---- */

struct rlist {
	struct feedback_rcpt *r;
	size_t n, cap;
	uint32_t *slot; /* index + 1 of the entry with that address; 0: free */
	size_t nslot;
};

struct hdr {
	const char *name, *val; /* val: the raw value, folding included */
	size_t name_len, val_len;
};

struct hdrs {
	struct hdr h[HEADERS_MAX];
	unsigned n;
};

struct parse {
	struct feedback_report *out;
	char **owned; /* decoded bodies the spans point into */
	size_t nowned, capowned;
	unsigned parts;
	struct hdrs *top;       /* the message's own headers */
	char report_type[64];   /* multipart/report's report-type, lower case */
	bool arf_part;          /* a message/feedback-report part was read */
	struct span *text, *html; /* text/plain parts, text/html parts as text */
	size_t ntext, captext, nhtml, caphtml;
	bool orig;              /* the original's headers were read */
	char *orig_to, *orig_hmxmr; /* its To:, X-HmXmrOriginalRecipient: */
	struct rlist dsn;       /* from message/delivery-status */
	char **arf_rcpt;        /* Original-Rcpt-To, Removal-Recipient */
	size_t narf_rcpt;
};

static char *own(struct parse *ps, char *p)
{
	if (ps->nowned == ps->capowned) {
		ps->capowned = ps->capowned ? 2 * ps->capowned : 8;
		ps->owned = xrealloc(ps->owned, ps->capowned * sizeof(*ps->owned));
	}
	return ps->owned[ps->nowned++] = p;
}

static void add_span(struct span **v, size_t *n, size_t *cap, const char *p, size_t len)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 4;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	(*v)[(*n)++] = (struct span){ p, len };
}

/* ---- addresses ---- */

static bool local_char(char c)
{
	return (unsigned char)c >= 0x80 || is_alnum(c) || (c && strchr("!#$%&'*+/=?^_`{|}~.-", c));
}
static bool domain_char(char c)
{
	return (unsigned char)c >= 0x80 || is_alnum(c) || c == '.' || c == '-' || c == '_';
}

/* The length of the address that starts exactly at s (local@domain, the
 * domain without a final dot), or 0. */
static size_t addr_at(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && i <= ADDR_LOCAL_MAX && local_char(s[i]))
		i++;
	if (i == 0 || i > ADDR_LOCAL_MAX || i >= n || s[i] != '@' || s[0] == '.' || s[i - 1] == '.')
		return 0;
	size_t d = ++i;
	while (i < n && i - d <= ADDR_DOMAIN_MAX && domain_char(s[i]))
		i++;
	while (i > d && (s[i - 1] == '.' || s[i - 1] == '-'))
		i--;
	if (i == d || i - d > ADDR_DOMAIN_MAX || s[d] == '.' || s[d] == '-' || !memchr(s + d, '.', i - d))
		return 0;
	for (size_t k = d; k + 1 < i; k++)
		if (s[k] == '.' && s[k + 1] == '.')
			return 0;
	return i;
}

/* The first address in s[0, n): true with *a set. Linear: each '@'
 * looks back and ahead only up to the next '@' or a character no address
 * holds. */
static bool addr_find(const char *s, size_t n, struct span *a)
{
	const char *p = s;
	while ((p = memchr(p, '@', n - (size_t)(p - s))) != NULL) {
		size_t at = (size_t)(p - s), b = at;
		while (b > 0 && at - b <= ADDR_LOCAL_MAX && local_char(s[b - 1]))
			b--;
		while (b < at && s[b] == '.')
			b++;
		size_t l = b < at ? addr_at(s + b, n - b) : 0;
		if (l) {
			a->p = s + b;
			a->n = l;
			return true;
		}
		p++;
	}
	return false;
}

/* The address, its domain lower-cased (caller frees). */
static char *addr_dup(const char *s, size_t n)
{
	char *a = xstrndup(s, n);
	char *at = strchr(a, '@');
	for (char *c = at; c && *c; c++)
		*c = lc(*c);
	return a;
}

/* A feedback loop's placeholder for the recipient: "xxxxxxx@...",
 * "redacted@...", "****@...". */
static bool redacted(const char *a, size_t n)
{
	const char *at = memchr(a, '@', n);
	size_t l = at ? (size_t)(at - a) : n;
	size_t masked = 0;
	for (size_t i = 0; i < l; i++)
		if (a[i] == 'x' || a[i] == 'X' || a[i] == '*' || a[i] == '#')
			masked++;
	if (l >= 3 && masked == l)
		return true;
	static const char *const words[] = { "redacted", NULL };
	return contains_any(a, n, words);
}

static bool role_address(const char *a, size_t n)
{
	return ci_prefix(a, n, "mailer-daemon@") || ci_prefix(a, n, "postmaster@") ||
	       ci_prefix(a, n, "mail-daemon@") || ci_prefix(a, n, "mailer_daemon@");
}

/* ---- recipients ---- */

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (uint8_t)lc(*s)) * 16777619u;
	return h;
}

static bool same_addr(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

static void rlist_rehash(struct rlist *l)
{
	free(l->slot);
	l->nslot = l->nslot ? 2 * l->nslot : 64;
	l->slot = xcalloc(l->nslot, sizeof(*l->slot));
	for (size_t i = 0; i < l->n; i++) {
		if (!l->r[i].rcpt)
			continue;
		size_t k = hash_str(l->r[i].rcpt) & (l->nslot - 1);
		while (l->slot[k])
			k = (k + 1) & (l->nslot - 1);
		l->slot[k] = (uint32_t)i + 1;
	}
}

/* The entry for rcpt (taken; NULL: an unknown recipient, never merged):
 * the one already there with the same address (*fresh false), a new one,
 * or NULL when the list is full (*truncated set). */
static struct feedback_rcpt *rlist_add(struct rlist *l, char *rcpt, bool *fresh, bool *truncated)
{
	*fresh = false;
	if (rcpt && l->nslot) {
		size_t k = hash_str(rcpt) & (l->nslot - 1);
		for (; l->slot[k]; k = (k + 1) & (l->nslot - 1))
			if (same_addr(l->r[l->slot[k] - 1].rcpt, rcpt)) {
				free(rcpt);
				return &l->r[l->slot[k] - 1];
			}
	}
	if (l->n >= FEEDBACK_RCPT_MAX) {
		free(rcpt);
		*truncated = true;
		return NULL;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 8;
		l->r = xrealloc(l->r, l->cap * sizeof(*l->r));
	}
	struct feedback_rcpt *r = &l->r[l->n++];
	memset(r, 0, sizeof(*r));
	r->rcpt = rcpt;
	*fresh = true;
	if (2 * l->n >= l->nslot)
		rlist_rehash(l);
	else if (rcpt) {
		size_t k = hash_str(rcpt) & (l->nslot - 1);
		while (l->slot[k])
			k = (k + 1) & (l->nslot - 1);
		l->slot[k] = (uint32_t)l->n;
	}
	return r;
}

static void rcpt_free(struct feedback_rcpt *r)
{
	free(r->rcpt);
	free(r->diagnostic);
	free(r->remote_mta);
}

static void rlist_free(struct rlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		rcpt_free(&l->r[i]);
	free(l->r);
	free(l->slot);
	memset(l, 0, sizeof(*l));
}

/* ---- reply codes ---- */

/* The length of an enhanced status code (RFC 3463: class.subject.detail,
 * class 2, 4 or 5) at s, or 0. */
static size_t enhanced_at(const char *s, size_t n)
{
	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	size_t i = 2, d = 0;
	while (i < n && is_digit(s[i]) && d < 4)
		i++, d++;
	if (d == 0 || d > 3 || i >= n || s[i] != '.')
		return 0;
	i++;
	d = 0;
	while (i < n && is_digit(s[i]) && d < 4)
		i++, d++;
	if (d == 0 || d > 3)
		return 0;
	if (i < n && (is_alnum(s[i]) || (s[i] == '.' && i + 1 < n && is_digit(s[i + 1]))))
		return 0;
	return i;
}

static bool code_at(const char *s, size_t n, size_t i)
{
	return i + 3 <= n && (s[i] == '2' || s[i] == '4' || s[i] == '5') && is_digit(s[i + 1]) && is_digit(s[i + 2]) &&
	       (i == 0 || (!is_alnum(s[i - 1]) && s[i - 1] != '.'));
}

/* The first enhanced status code in s[0, n), and the reply code: the one
 * just before it ("550 5.1.1", "550-5.1.1"), else the first that stands
 * alone ("554: delivery error", "550 Requested action not taken"). */
static void find_codes(const char *s, size_t n, unsigned *code, char status[16])
{
	*code = 0;
	status[0] = 0;
	size_t st = n;
	for (size_t i = 0; i < n; i++) {
		if ((s[i] != '2' && s[i] != '4' && s[i] != '5') || (i > 0 && (is_alnum(s[i - 1]) || s[i - 1] == '.')))
			continue;
		size_t l = enhanced_at(s + i, n - i);
		if (l) {
			memcpy(status, s + i, l);
			status[l] = 0;
			st = i;
			break;
		}
	}
	if (status[0] && st >= 4 && code_at(s, n, st - 4) && (s[st - 1] == ' ' || s[st - 1] == '-')) {
		*code = (unsigned)((s[st - 4] - '0') * 100 + (s[st - 3] - '0') * 10 + (s[st - 2] - '0'));
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (code_at(s, n, i) && (i + 3 == n || s[i + 3] == ' ' || s[i + 3] == '-' || s[i + 3] == ':' ||
		                         s[i + 3] == '\t' || s[i + 3] == '\n')) {
			*code = (unsigned)((s[i] - '0') * 100 + (s[i + 1] - '0') * 10 + (s[i + 2] - '0'));
			return;
		}
}

/* ---- headers ---- */

enum field_kind { F_FIELD, F_BLANK, F_OTHER, F_END };

/* What is at *pos in s[0, n): a field with its continuation lines (into
 * h: the name, the raw value), an empty (or white) line, another line,
 * or the end; *pos moves past it. */
static enum field_kind next_field(const char *s, size_t n, size_t *pos, struct hdr *h)
{
	struct span line;
	if (!next_line(s, n, pos, &line))
		return F_END;
	size_t k = 0;
	while (k < line.n && is_sp(line.p[k]))
		k++;
	if (k == line.n)
		return F_BLANK;
	if (k > 0)
		return F_OTHER; /* a continuation of no field */
	while (k < line.n && k < 80 && line.p[k] != ':' && (unsigned char)line.p[k] > ' ' && (unsigned char)line.p[k] < 0x7f)
		k++;
	size_t name_len = k;
	while (k < line.n && is_sp(line.p[k]))
		k++;
	if (name_len == 0 || k >= line.n || line.p[k] != ':')
		return F_OTHER;
	*h = (struct hdr){ line.p, line.p + k + 1, name_len, line.n - k - 1 };
	for (;;) {
		size_t save = *pos;
		if (!next_line(s, n, pos, &line))
			break;
		size_t w = 0;
		while (w < line.n && is_sp(line.p[w]))
			w++;
		if (w == 0 || w == line.n) {
			*pos = save;
			break;
		}
		h->val_len = (size_t)(line.p + line.n - h->val);
	}
	return F_FIELD;
}

/* The header block at the start of s[0, n) into hs (its first
 * HEADERS_MAX fields): returns where the body starts (after the empty
 * line; at the first line that is no field when there is none). */
static size_t headers_parse(const char *s, size_t n, struct hdrs *hs)
{
	hs->n = 0;
	size_t pos = 0;
	struct hdr h;
	for (;;) {
		size_t at = pos;
		switch (next_field(s, n, &pos, &h)) {
		case F_FIELD:
			if (hs->n < HEADERS_MAX)
				hs->h[hs->n++] = h;
			break;
		case F_BLANK: return pos;
		case F_OTHER: return at;
		case F_END: return n;
		}
	}
}

static const struct hdr *hdr_find(const struct hdrs *hs, const char *name)
{
	for (unsigned i = 0; hs && i < hs->n; i++)
		if (ci_eq(hs->h[i].name, hs->h[i].name_len, name))
			return &hs->h[i];
	return NULL;
}

/* A value unfolded (each line break and the white space after it one
 * space) and trimmed, as a C string (caller frees). */
static char *unfold(const char *v, size_t n)
{
	char *o = xmalloc(n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] != '\n') {
			o[k++] = v[i];
			continue;
		}
		while (i + 1 < n && is_sp(v[i + 1]))
			i++;
		if (k && !is_sp(o[k - 1]))
			o[k++] = ' ';
	}
	o[k] = 0;
	const char *p = o;
	size_t l = k;
	trim(&p, &l);
	memmove(o, p, l);
	o[l] = 0;
	return o;
}

static char *hdr_get(const struct hdrs *hs, const char *name)
{
	const struct hdr *h = hdr_find(hs, name);
	return h ? unfold(h->val, h->val_len) : NULL;
}

/* ---- RFC 2047 encoded words ---- */

static int hexval(char c)
{
	if (is_digit(c))
		return c - '0';
	c = lc(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (is_digit(c))
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Base64 of s[0, n) into o (room for n bytes): the length. Anything not
 * of the alphabet is skipped; '=' ends it. */
static size_t b64_decode(const char *s, size_t n, char *o)
{
	size_t k = 0;
	unsigned v = 0, bits = 0;
	for (size_t i = 0; i < n && s[i] != '='; i++) {
		int d = b64val(s[i]);
		if (d < 0)
			continue;
		v = (v << 6 | (unsigned)d) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[k++] = (char)(v >> bits & 0xff);
		}
	}
	return k;
}

/* Quoted-printable (RFC 2045 6.7; with q, RFC 2047's Q: '_' a space). */
static size_t qp_decode(const char *s, size_t n, char *o, bool q)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '=') {
			if (i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
				o[k++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
				i += 2;
				continue;
			}
			size_t j = i + 1;
			while (j < n && is_sp(s[j]))
				j++;
			if (j >= n || s[j] == '\n') { /* a soft line break */
				i = j;
				continue;
			}
		}
		o[k++] = q && s[i] == '_' ? ' ' : s[i];
	}
	return k;
}

/* s[0, n) with its encoded words decoded (charsets left as they are;
 * the white space between two encoded words dropped), caller frees. */
static char *decode_2047(const char *s, size_t n)
{
	char *o = xmalloc(n + 1);
	size_t k = 0, i = 0, after_word = (size_t)-1;
	while (i < n) {
		if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
			/* =?charset?E?text?= */
			const char *cs = s + i + 2;
			size_t win = n - i < WORD_2047_MAX ? n - i : WORD_2047_MAX; /* RFC 2047: 75 */
			const char *q1 = memchr(cs, '?', win - 2);
			if (q1 && q1 + 3 < s + i + win && q1[2] == '?') {
				char enc = lc(q1[1]);
				const char *t = q1 + 3;
				const char *end = memmem(t, (size_t)(s + i + win - t), "?=", 2);
				if (end && (enc == 'b' || enc == 'q') && !memchr(t, '\n', (size_t)(end - t))) {
					if (after_word != (size_t)-1) {
						k = after_word; /* drop the white space between words */
					}
					k += enc == 'b' ? b64_decode(t, (size_t)(end - t), o + k)
					                : qp_decode(t, (size_t)(end - t), o + k, true);
					i = (size_t)(end - s) + 2;
					after_word = k;
					continue;
				}
			}
		}
		if (!is_sp(s[i]) && s[i] != '\n')
			after_word = (size_t)-1;
		o[k++] = s[i++];
	}
	o[k] = 0;
	return o;
}

/* ---- MIME ---- */

struct ctype {
	char type[80];        /* "text/plain", lower case; "" when none */
	char boundary[204];   /* "" when none (or too long to be one: RFC 2046 says 70) */
	char report_type[64]; /* lower case */
	bool eml;             /* named *.eml: a message attached */
};

/* The parameter's value (quotes and backslashes undone) from a
 * Content-Type or Content-Disposition value, into out; false if absent. */
static bool param(const char *v, size_t n, const char *name, char *out, size_t out_len)
{
	size_t nl = strlen(name);
	size_t i = 0;
	bool quoted = false;
	while (i < n) {
		/* the next ';' outside quotes */
		for (; i < n && (quoted || v[i] != ';'); i++) {
			if (v[i] == '"')
				quoted = !quoted;
			else if (v[i] == '\\' && quoted)
				i++;
		}
		if (i >= n)
			return false;
		i++;
		while (i < n && (is_sp(v[i]) || v[i] == '\n'))
			i++;
		if (!ci_prefix(v + i, n - i, name))
			continue;
		size_t j = i + nl;
		while (j < n && is_sp(v[j]))
			j++;
		if (j >= n || v[j] != '=')
			continue;
		j++;
		while (j < n && is_sp(v[j]))
			j++;
		size_t k = 0;
		bool ok = true;
		if (j < n && v[j] == '"') {
			for (j++; j < n && v[j] != '"'; j++) {
				if (v[j] == '\\' && j + 1 < n)
					j++;
				if (v[j] == '\n')
					continue;
				if (k + 1 >= out_len)
					ok = false;
				else
					out[k++] = v[j];
			}
		} else {
			for (; j < n && v[j] != ';' && !is_sp(v[j]) && v[j] != '\n'; j++) {
				if (k + 1 >= out_len)
					ok = false;
				else
					out[k++] = v[j];
			}
		}
		out[k] = 0;
		if (!ok)
			out[0] = 0;
		return ok;
	}
	return false;
}

static void ctype_of(const struct hdrs *hs, struct ctype *ct)
{
	memset(ct, 0, sizeof(*ct));
	const struct hdr *h = hdr_find(hs, "content-type");
	if (h) {
		const char *v = h->val;
		size_t n = h->val_len, i = 0, k = 0;
		while (i < n && (is_sp(v[i]) || v[i] == '\n'))
			i++;
		for (; i < n && v[i] != ';' && !is_sp(v[i]) && v[i] != '\n' && k + 1 < sizeof(ct->type); i++)
			ct->type[k++] = lc(v[i]);
		ct->type[k] = 0;
		param(v, n, "boundary", ct->boundary, sizeof(ct->boundary));
		if (param(v, n, "report-type", ct->report_type, sizeof(ct->report_type)))
			for (char *c = ct->report_type; *c; c++)
				*c = lc(*c);
		char name[256];
		if (param(v, n, "name", name, sizeof(name)) && strlen(name) > 4 &&
		    ci_eq(name + strlen(name) - 4, 4, ".eml"))
			ct->eml = true;
	}
	h = hdr_find(hs, "content-disposition");
	char name[256];
	if (h && param(h->val, h->val_len, "filename", name, sizeof(name)) && strlen(name) > 4 &&
	    ci_eq(name + strlen(name) - 4, 4, ".eml"))
		ct->eml = true;
}

/* The body decoded by its Content-Transfer-Encoding and its line ends
 * made LF: the same bytes when there is nothing to decode. */
static struct span body_decoded(struct parse *ps, const struct hdrs *hs, const char *b, size_t n)
{
	const struct hdr *h = hdr_find(hs, "content-transfer-encoding");
	const char *v = h ? h->val : "";
	size_t vn = h ? h->val_len : 0;
	trim(&v, &vn);
	bool b64 = ci_prefix(v, vn, "base64"), qp = ci_prefix(v, vn, "quoted-printable");
	if (!b64 && !qp)
		return (struct span){ b, n };
	char *o = own(ps, xmalloc(n + 1));
	size_t k = b64 ? b64_decode(b, n, o) : qp_decode(b, n, o, false);
	k = normalize(o, k);
	o[k] = 0;
	return (struct span){ o, k };
}

/* text/html as text: tags dropped (style, script and head with their
 * content), <br>, <p>, <div>, <tr>, <li> and their ends a line end, a few
 * entities decoded. */
static struct span html_text(struct parse *ps, const char *s, size_t n)
{
	char *o = own(ps, xmalloc(n + 1));
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		if (s[i] == '<') {
			const char *e = memchr(s + i, '>', n - i);
			if (!e)
				break;
			const char *t = s + i + 1;
			size_t tn = (size_t)(e - t);
			bool close = tn && t[0] == '/';
			if (close)
				t++, tn--;
			if (!close && (ci_prefix(t, tn, "style") || ci_prefix(t, tn, "script") || ci_prefix(t, tn, "head"))) {
				/* to its end tag: each "</" looked at once */
				const char *name = lc(t[0]) == 's' ? (lc(t[1]) == 't' ? "style" : "script") : "head";
				const char *f = e;
				while ((f = memchr(f, '<', n - (size_t)(f - s))) &&
				       !(f + 1 < s + n && f[1] == '/' && ci_prefix(f + 2, n - (size_t)(f + 2 - s), name)))
					f++;
				i = f ? (size_t)(f - s) : n;
				continue;
			}
			if (ci_prefix(t, tn, "br") || ci_prefix(t, tn, "p") || ci_prefix(t, tn, "div") ||
			    ci_prefix(t, tn, "tr") || ci_prefix(t, tn, "li") || ci_prefix(t, tn, "h"))
				o[k++] = '\n';
			i = (size_t)(e - s) + 1;
			continue;
		}
		if (s[i] == '&') {
			static const struct { const char *name; char c; } ent[] = {
				{ "&lt;", '<' }, { "&gt;", '>' }, { "&amp;", '&' }, { "&quot;", '"' },
				{ "&#39;", '\'' }, { "&apos;", '\'' }, { "&nbsp;", ' ' }, { "&#160;", ' ' },
			};
			size_t j = 0;
			for (; j < ARRAY_LEN(ent); j++)
				if (ci_prefix(s + i, n - i, ent[j].name))
					break;
			if (j < ARRAY_LEN(ent)) {
				o[k++] = ent[j].c;
				i += strlen(ent[j].name);
				continue;
			}
		}
		o[k++] = s[i] == '\n' ? ' ' : s[i];
		i++;
	}
	o[k] = 0;
	return (struct span){ o, k };
}

/* ---- the parts that carry fields ---- */

/* "rfc822; <User@Example.com>" -> "User@example.com"; NULL when no address. */
static char *typed_addr(const char *v, size_t n)
{
	const char *semi = memchr(v, ';', n);
	if (semi) {
		n -= (size_t)(semi + 1 - v);
		v = semi + 1;
	}
	struct span a;
	return addr_find(v, n, &a) ? addr_dup(a.p, a.n) : NULL;
}

static void copy_token(char *out, size_t len, const char *v, size_t n)
{
	trim(&v, &n);
	size_t k = 0;
	for (; k < n && k + 1 < len && !is_sp(v[k]) && v[k] != ';' && v[k] != '(' && v[k] != '\n'; k++)
		out[k] = lc(v[k]);
	out[k] = 0;
}

static void set_diag(struct feedback_rcpt *r, const char *d, size_t n)
{
	trim(&d, &n);
	if (n > FEEDBACK_DIAG_MAX)
		n = FEEDBACK_DIAG_MAX;
	free(r->diagnostic);
	r->diagnostic = n ? xstrndup(d, n) : NULL;
	/* one line: the folding and the line breaks of a text become spaces */
	for (char *c = r->diagnostic; c && *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
}

/* Action and status made whole: the status from the diagnostic when the
 * Status field gave none or only X.0.0; the action from the status when
 * the Action field gave none. */
static void rcpt_settle(struct feedback_rcpt *r, const char *deflt_action)
{
	unsigned code = 0;
	char st[16] = "";
	if (r->diagnostic)
		find_codes(r->diagnostic, strlen(r->diagnostic), &code, st);
	if (!r->code)
		r->code = code;
	if (st[0] && (!r->status[0] || (r->status[0] == st[0] && !strcmp(r->status + 1, ".0.0"))))
		snprintf(r->status, sizeof(r->status), "%s", st);
	static const char *const actions[] = { "failed", "delayed", "delivered", "relayed", "expanded" };
	bool known = false;
	for (size_t i = 0; i < ARRAY_LEN(actions); i++)
		known |= !strcmp(r->action, actions[i]);
	if (!known) {
		char c = r->status[0] ? r->status[0] : r->code ? (char)('0' + r->code / 100) : 0;
		const char *a = c == '5' ? "failed" : c == '4' ? "delayed" : c == '2' ? "delivered" : deflt_action;
		snprintf(r->action, sizeof(r->action), "%s", a ? a : "");
	}
}

struct dsn_rec {
	char *final, *orig, *diag, *remote;
	char action[12], status[16];
	bool seen_action, seen_status;
};

static void dsn_rec_clear(struct dsn_rec *d)
{
	free(d->final);
	free(d->orig);
	free(d->diag);
	free(d->remote);
	memset(d, 0, sizeof(*d));
}

static void dsn_flush(struct parse *ps, struct dsn_rec *d)
{
	char *addr = d->orig ? d->orig : d->final;
	if (d->final || d->orig) {
		if (addr == d->orig)
			d->orig = NULL;
		else
			d->final = NULL;
		bool fresh;
		struct feedback_rcpt *r = rlist_add(&ps->dsn, addr, &fresh, &ps->out->truncated);
		if (r && fresh) {
			snprintf(r->action, sizeof(r->action), "%s", d->action);
			snprintf(r->status, sizeof(r->status), "%s", d->status);
			if (d->diag) {
				const char *t = d->diag;
				const char *semi = strchr(t, ';');
				/* "smtp; 550 ...": the reply; "X-Postfix; text": the text */
				if (semi && semi - t < 32 && !memchr(t, ' ', (size_t)(semi - t)))
					t = semi + 1;
				set_diag(r, t, strlen(t));
			}
			if (d->remote) {
				r->remote_mta = d->remote;
				d->remote = NULL;
			}
			rcpt_settle(r, NULL);
		}
	}
	dsn_rec_clear(d);
}

/* The value after "type;" ("dns; mx.example.com" -> "mx.example.com"), trimmed. */
static char *after_type(const struct hdr *h)
{
	char *v = unfold(h->val, h->val_len);
	const char *semi = strchr(v, ';');
	const char *t = semi ? semi + 1 : v;
	size_t tl = strlen(t);
	trim(&t, &tl);
	char *r = xstrndup(t, tl);
	free(v);
	return r;
}

/* RFC 3464 fields (a message/delivery-status part, or a text holding
 * them): one group per message, then one per recipient, groups apart by
 * an empty line; a recipient's field seen twice starts the next one (no
 * empty line between them). Ends at the first line that is no field. */
static void dsn_fields(struct parse *ps, const char *s, size_t n)
{
	struct dsn_rec d = { 0 };
	size_t pos = 0;
	struct hdr h;
	enum field_kind k;
	while ((k = next_field(s, n, &pos, &h)) != F_END && k != F_OTHER) {
		if (k == F_BLANK) {
			dsn_flush(ps, &d);
			continue;
		}
		const char *nm = h.name;
		size_t nl = h.name_len;
		bool fin = ci_eq(nm, nl, "final-recipient"), orig = ci_eq(nm, nl, "original-recipient");
		bool act = ci_eq(nm, nl, "action"), st = ci_eq(nm, nl, "status");
		/* Final- and Original-Recipient come in either order; either
		 * seen again, or after the recipient's Action or Status, is the
		 * next recipient's */
		bool rcpt = d.final || d.orig, told = d.seen_action || d.seen_status;
		if ((fin && (d.final || (d.orig && told))) || (orig && (d.orig || (d.final && told))) ||
		    (act && d.seen_action && rcpt) || (st && d.seen_status && rcpt))
			dsn_flush(ps, &d);
		if (fin || orig) {
			char *v = unfold(h.val, h.val_len);
			char *a = typed_addr(v, strlen(v));
			free(v);
			char **to = fin ? &d.final : &d.orig;
			free(*to);
			*to = a;
		} else if (act) {
			copy_token(d.action, sizeof(d.action), h.val, h.val_len);
			d.seen_action = true;
		} else if (st) {
			const char *v = h.val;
			size_t vn = h.val_len;
			trim(&v, &vn);
			size_t l = enhanced_at(v, vn);
			memcpy(d.status, v, l);
			d.status[l] = 0;
			d.seen_status = true;
		} else if (ci_eq(nm, nl, "diagnostic-code")) {
			free(d.diag);
			d.diag = unfold(h.val, h.val_len);
		} else if (ci_eq(nm, nl, "remote-mta")) {
			free(d.remote);
			d.remote = after_type(&h);
		} else if (ci_eq(nm, nl, "reporting-mta") && !ps->out->reporting_mta) {
			ps->out->reporting_mta = after_type(&h);
		}
	}
	dsn_flush(ps, &d);
}

static void arf_fields(struct parse *ps, const char *s, size_t n)
{
	struct feedback_report *o = ps->out;
	struct hdrs *hs = xmalloc(sizeof(*hs));
	headers_parse(s, n, hs);
	for (unsigned i = 0; i < hs->n; i++) {
		const struct hdr *h = &hs->h[i];
		char **field = NULL;
		if (ci_eq(h->name, h->name_len, "feedback-type"))
			field = &o->feedback_type;
		else if (ci_eq(h->name, h->name_len, "user-agent"))
			field = &o->user_agent;
		else if (ci_eq(h->name, h->name_len, "source-ip"))
			field = &o->source_ip;
		else if (ci_eq(h->name, h->name_len, "reported-domain"))
			field = &o->reported_domain;
		else if (ci_eq(h->name, h->name_len, "arrival-date") || ci_eq(h->name, h->name_len, "received-date"))
			field = &o->arrival_date;
		else if (ci_eq(h->name, h->name_len, "original-mail-from"))
			field = &o->original_mail_from;
		if (field && !*field) {
			*field = unfold(h->val, h->val_len);
			if (field == &o->feedback_type) {
				char t[64];
				copy_token(t, sizeof(t), *field, strlen(*field));
				free(*field);
				*field = xstrdup(t);
			}
			continue;
		}
		if ((ci_eq(h->name, h->name_len, "original-rcpt-to") || ci_eq(h->name, h->name_len, "removal-recipient")) &&
		    ps->narf_rcpt < ADDRS_MAX) {
			ps->arf_rcpt = xrealloc(ps->arf_rcpt, (ps->narf_rcpt + 1) * sizeof(*ps->arf_rcpt));
			ps->arf_rcpt[ps->narf_rcpt++] = unfold(h->val, h->val_len);
		}
	}
	free(hs);
}

/* The returned original's headers (the first one read wins): every
 * field of the block is looked at, however many Received: come first. */
static void original(struct parse *ps, const char *s, size_t n)
{
	if (ps->orig)
		return;
	if (ci_prefix(s, n, "from ")) { /* an mbox separator line */
		const char *e = memchr(s, '\n', n);
		size_t skip = e ? (size_t)(e - s) + 1 : n;
		s += skip;
		n -= skip;
	}
	struct feedback_report *o = ps->out;
	static const char *const names[] = { "x-sluice-track", "message-id", "x-job", "to", "x-hmxmroriginalrecipient" };
	char **to[] = { &o->track, &o->message_id, &o->job, &ps->orig_to, &ps->orig_hmxmr };
	size_t pos = 0;
	struct hdr h;
	while (next_field(s, n, &pos, &h) == F_FIELD) {
		ps->orig = true;
		for (size_t i = 0; i < ARRAY_LEN(names); i++)
			if (!*to[i] && ci_eq(h.name, h.name_len, names[i]))
				*to[i] = unfold(h.val, h.val_len);
	}
}

/* ---- the walk ---- */

static void walk(struct parse *ps, const char *p, size_t n, unsigned depth, bool top);

static void multipart(struct parse *ps, const char *b, size_t n, const char *boundary, unsigned depth)
{
	size_t bl = strlen(boundary), pos = 0;
	const char *start = NULL;
	bool found = false;
	struct span line;
	while (next_line(b, n, &pos, &line)) {
		if (line.n < 2 + bl || line.p[0] != '-' || line.p[1] != '-' || memcmp(line.p + 2, boundary, bl))
			continue;
		const char *r = line.p + 2 + bl;
		size_t rn = line.n - 2 - bl;
		bool close = rn >= 2 && r[0] == '-' && r[1] == '-';
		if (close)
			r += 2, rn -= 2;
		trim(&r, &rn);
		if (rn)
			continue; /* "--boundaryX": another boundary */
		if (start)
			walk(ps, start, (size_t)((line.p > start ? line.p - 1 : line.p) - start), depth + 1, false);
		found = true;
		start = close ? NULL : b + pos;
		if (close || ps->parts >= PARTS_MAX)
			break;
	}
	if (start && start < b + n)
		walk(ps, start, (size_t)(b + n - start), depth + 1, false); /* no closing boundary */
	if (!found)
		add_span(&ps->text, &ps->ntext, &ps->captext, b, n); /* a boundary never seen: read as text */
}

static void walk(struct parse *ps, const char *p, size_t n, unsigned depth, bool top)
{
	if (depth > MIME_DEPTH_MAX || ps->parts >= PARTS_MAX)
		return;
	ps->parts++;
	struct hdrs *hs = xmalloc(sizeof(*hs));
	size_t body = headers_parse(p, n, hs);
	struct ctype ct;
	ctype_of(hs, &ct);
	const char *b = p + body;
	size_t bn = n - body;
	const char *t = ct.type;
	if (!strncmp(t, "multipart/", 10)) {
		if (!strcmp(t, "multipart/report") && !ps->report_type[0])
			snprintf(ps->report_type, sizeof(ps->report_type), "%s", ct.report_type);
		if (ct.boundary[0])
			multipart(ps, b, bn, ct.boundary, depth);
		else
			add_span(&ps->text, &ps->ntext, &ps->captext, b, bn);
	} else if (!strcmp(t, "message/delivery-status") || !strcmp(t, "message/global-delivery-status")) {
		struct span d = body_decoded(ps, hs, b, bn);
		dsn_fields(ps, d.p, d.n);
	} else if (!strcmp(t, "message/feedback-report")) {
		struct span d = body_decoded(ps, hs, b, bn);
		ps->arf_part = true;
		arf_fields(ps, d.p, d.n);
	} else if (!strcmp(t, "message/rfc822") || !strcmp(t, "message/global") || !strcmp(t, "text/rfc822-headers") ||
	           !strcmp(t, "text/rfc822-header") || !strcmp(t, "message/global-headers") || ct.eml) {
		struct span d = body_decoded(ps, hs, b, bn);
		original(ps, d.p, d.n);
	} else if (!t[0] || !strcmp(t, "text/plain") || (top && !strncmp(t, "text/", 5) && strcmp(t, "text/html"))) {
		struct span d = body_decoded(ps, hs, b, bn);
		add_span(&ps->text, &ps->ntext, &ps->captext, d.p, d.n);
	} else if (!strcmp(t, "text/html")) {
		struct span d = body_decoded(ps, hs, b, bn);
		d = html_text(ps, d.p, d.n);
		add_span(&ps->html, &ps->nhtml, &ps->caphtml, d.p, d.n);
	}
	if (top)
		ps->top = hs;
	else
		free(hs);
}

/* ---- plain-text bounces ---- */

/* Where a bounce's own text ends and the returned message starts: its
 * headers on the next lines, */
static const char *const copy_markers[] = {
	"--- below this line is a copy of the message", /* qmail, Yahoo */
	"------ this is a copy of the message",          /* Exim */
	"----- original message -----", "-----original message-----", "------ original message",
	"----- original message follows", "original message headers:", /* Exchange */
	"--- the header of the original message is following",
	"----- the following is a copy of the message", "----- unsent message follows", /* Sendmail */
	"----- message header follows", NULL,
};
/* on this line, */
static const char *const header_markers[] = { "received: ", "return-path: ", NULL };
/* or after a part's own headers (a report whose MIME structure is lost). */
static const char *const part_markers[] = { "content-type: message/rfc822", "content-type: text/rfc822-headers", NULL };

static bool line_marked(const char *t, size_t n, const char *const *markers)
{
	for (unsigned i = 0; markers[i]; i++)
		if (ci_prefix(t, n, markers[i]))
			return true;
	return false;
}

/* A bounce's wording (in the first MARKER_SCAN_MAX bytes of a text). */
static const char *const bounce_markers[] = {
	"this is the mail system at host", "could not be delivered to one or more", "mail delivery software",
	"this is the qmail-send program", "permanent fatal errors", "transient non-fatal errors",
	"delivery has failed to these recipients", "unable to deliver your message", "wasn't delivered to",
	"was not delivered to", "couldn't be delivered", "could not be delivered", "delivery to the following recipient",
	"undeliverable", "returned mail", "delivery status notification", "permanent error", "failed permanently",
	"delivery failed", "message not delivered", "has not been delivered", "not be delivered", NULL,
};
static const char *const bounce_subjects[] = {
	"undeliver", "returned mail", "delivery status notification", "mail delivery failed", "failure notice",
	"delivery failure", "delivery failed", "not delivered", "delivery notification", "mail delivery",
	"warning: message", "delayed mail", "delivery delayed", "nondeliverable", "non-delivery", "mail system error",
	"could not send message", NULL,
};
static const char *const delay_markers[] = {
	"this is a warning only", "still being retried", "will be retried", "will continue to try",
	"warning: message", "delivery delayed", "delivery has been delayed", "delayed mail", "(delay)",
	"has not yet been delivered", "transient non-fatal errors", "delivery is delayed", NULL,
};
/* Where the remote server's reply is quoted for the whole report. */
static const char *const reply_markers[] = {
	"the response from the remote server was:", "the error that the other server returned was:",
	"remote server returned", "remote host said:", "the response was:", "diagnostic-code:",
	"the following message was received from the remote", NULL,
};

static bool from_daemon(const struct parse *ps)
{
	char *from = hdr_get(ps->top, "from");
	if (!from)
		return false;
	static const char *const who[] = { "mailer-daemon", "mail-daemon", "mailer_daemon", "postmaster@",
	                                   "mail delivery", "mail administrator", "mail system", NULL };
	bool d = contains_any(from, strlen(from), who);
	free(from);
	return d;
}

static char *subject_of(const struct parse *ps)
{
	const struct hdr *h = hdr_find(ps->top, "subject");
	if (!h)
		return NULL;
	char *raw = unfold(h->val, h->val_len);
	char *s = decode_2047(raw, strlen(raw));
	free(raw);
	return s;
}

/* The first MARKER_SCAN_MAX bytes of the texts, lower-cased, one after another. */
static char *texts_head(const struct parse *ps, size_t *len)
{
	struct buf b = { 0 };
	const struct span *v = ps->ntext ? ps->text : ps->html;
	size_t nv = ps->ntext ? ps->ntext : ps->nhtml;
	for (size_t i = 0; i < nv && i < 8; i++) {
		size_t l = v[i].n < MARKER_SCAN_MAX ? v[i].n : MARKER_SCAN_MAX;
		if (l)
			buf_add(&b, v[i].p, l);
		buf_add(&b, "\n", 1);
	}
	buf_add(&b, "", 1);
	for (size_t i = 0; i < b.len; i++)
		b.p[i] = lc(b.p[i]);
	*len = b.len - 1;
	return b.p;
}

struct tscan {
	struct parse *ps;
	struct rlist *l;
	const char *default_action; /* "failed" or "delayed" */
	char *exclude;              /* the bounce's own From: address */
	struct feedback_rcpt *cur;
	size_t cur_indent;
	struct buf diag;            /* cur's lines */
	bool collecting;            /* the report-wide reply's lines */
	struct buf reply;
	bool reply_done;
};

static void tscan_finish(struct tscan *ts)
{
	if (ts->cur) {
		struct feedback_rcpt *r = ts->cur;
		unsigned code;
		char st[16];
		find_codes(ts->diag.p ? ts->diag.p : "", ts->diag.len, &code, st);
		unsigned had_code = 0;
		char had_st[16] = "";
		if (r->diagnostic)
			find_codes(r->diagnostic, strlen(r->diagnostic), &had_code, had_st);
		/* a later mention of the same address tells more only with a code */
		if (ts->diag.len && (!r->diagnostic || (!had_code && !had_st[0] && (code || st[0]))))
			set_diag(r, ts->diag.p, ts->diag.len);
		ts->cur = NULL;
	}
	ts->diag.len = 0;
}

static void tscan_add_line(struct buf *b, const char *p, size_t n)
{
	if (b->len >= FEEDBACK_DIAG_MAX || n == 0)
		return;
	if (b->len)
		buf_add(b, " ", 1);
	buf_add(b, p, n < FEEDBACK_DIAG_MAX ? n : FEEDBACK_DIAG_MAX);
}

/* Is the line (trimmed: t, lower-cased: lo) a recipient's? Sets the
 * address and the rest of the line (its start of a diagnostic). */
static bool candidate(const char *t, size_t n, const char *lo, struct span *a, struct span *rest, bool *role_ok)
{
	size_t l;
	*role_ok = true;
	/* "<user@example.com>: host ... said: ...", "<user@example.com>:",
	 * "<user@example.com>... User unknown", "<user@example.com>" */
	if (n > 2 && t[0] == '<' && t[1] != '<' && (l = addr_at(t + 1, n - 1)) && 1 + l < n && t[1 + l] == '>') {
		*a = (struct span){ t + 1, l };
		size_t i = l + 2;
		while (i < n && (is_sp(t[i]) || t[i] == ':' || t[i] == '.'))
			i++;
		*rest = (struct span){ t + i, n - i };
		return true;
	}
	*role_ok = false;
	/* "user@example.com", "user@example.com (user@example.com)", "user@example.com: reason" */
	if ((l = addr_at(t, n))) {
		size_t i = l;
		while (i < n && is_sp(t[i]))
			i++;
		if (i == n || (t[i] == '(' && t[n - 1] == ')' && !memchr(t + i, ':', n - i)) || (i == l && t[i] == ':')) {
			*a = (struct span){ t, l };
			if (i < n && t[i] == ':')
				i++;
			while (i < n && is_sp(t[i]))
				i++;
			*rest = i < n && t[i] == '(' ? (struct span){ t + n, 0 } : (struct span){ t + i, n - i };
			return true;
		}
	}
	/* "Jane Doe (user@example.com)" */
	if (n > 4 && t[n - 1] == ')' && n < 200) {
		const char *open = memrchr(t, '(', n);
		if (open && open > t && (l = addr_at(open + 1, (size_t)(t + n - 1 - open - 1))) &&
		    open + 1 + l == t + n - 1 && !memchr(t, ':', (size_t)(open - t)) && !memchr(t, '<', (size_t)(open - t))) {
			*a = (struct span){ open + 1, l };
			*rest = (struct span){ t + n, 0 };
			return true;
		}
	}
	/* "Your message wasn't delivered to user@example.com because ...",
	 * "Your message to user@example.com couldn't be delivered." */
	if (memmem(lo, n, "deliver", 7)) {
		for (size_t k = 0; k + 3 < n; k++) {
			if (lo[k] != 't' || lo[k + 1] != 'o' || lo[k + 2] != ' ' || (k > 0 && is_alnum(lo[k - 1])))
				continue;
			size_t i = k + 3;
			while (i < n && (is_sp(t[i]) || t[i] == '<'))
				i++;
			if ((l = addr_at(t + i, n - i))) {
				*a = (struct span){ t + i, l };
				i += l;
				while (i < n && (t[i] == '>' || is_sp(t[i])))
					i++;
				*rest = (struct span){ t + i, n - i };
				return true;
			}
		}
	}
	return false;
}

static void tscan_text(struct tscan *ts, const char *s, size_t n)
{
	if (n > TEXT_SCAN_MAX)
		n = TEXT_SCAN_MAX;
	char *lo = lower_dup(s, n);
	size_t pos = 0;
	struct span line;
	while (next_line(s, n, &pos, &line)) {
		const char *t = line.p;
		size_t tn = line.n;
		size_t indent = 0;
		while (indent < tn && is_sp(t[indent]))
			indent++;
		t += indent;
		tn -= indent;
		trim(&t, &tn);
		const char *tl = lo + (t - s);
		if (tn == 0) {
			tscan_finish(ts);
			if (ts->collecting && ts->reply.len)
				ts->collecting = false, ts->reply_done = true;
			continue;
		}
		if ((indent <= 4 && line_marked(t, tn, copy_markers)) ||
		    (indent == 0 && (line_marked(t, tn, header_markers) || line_marked(t, tn, part_markers)))) {
			/* the returned message: its headers follow */
			const char *rest = line_marked(t, tn, header_markers) ? line.p : s + pos;
			size_t rn = (size_t)(s + n - rest);
			if (line_marked(t, tn, part_markers)) {
				struct hdrs *hs = xmalloc(sizeof(*hs));
				size_t skip = headers_parse(rest, rn, hs);
				free(hs);
				rest += skip, rn -= skip;
			}
			while (rn && (*rest == '\n' || is_sp(*rest)))
				rest++, rn--;
			original(ts->ps, rest, rn);
			break;
		}
		if (memmem(tl, tn, "permanent fatal errors", 22) || memmem(tl, tn, "failed permanently", 18))
			ts->default_action = "failed";
		else if (memmem(tl, tn, "transient non-fatal errors", 26))
			ts->default_action = "delayed";
		struct span a, rest;
		bool role_ok;
		unsigned w;
		bool cand = (!ts->cur || indent <= ts->cur_indent) && candidate(t, tn, tl, &a, &rest, &role_ok);
		if (cand && ((!role_ok && role_address(a.p, a.n)) || (ts->exclude && a.n == strlen(ts->exclude) &&
		                                                      !strncasecmp(a.p, ts->exclude, a.n))))
			cand = false;
		if (cand) {
			tscan_finish(ts);
			bool fresh;
			struct feedback_rcpt *r = rlist_add(ts->l, addr_dup(a.p, a.n), &fresh, &ts->ps->out->truncated);
			if (r) {
				if (fresh)
					snprintf(r->action, sizeof(r->action), "%s", ts->default_action);
				ts->cur = r;
				ts->cur_indent = indent;
				tscan_add_line(&ts->diag, rest.p, rest.n);
			}
		} else if (ts->cur) {
			tscan_add_line(&ts->diag, t, tn);
		}
		/* the reply quoted for the whole report: outside any recipient's lines */
		if (ts->collecting && !cand) {
			tscan_add_line(&ts->reply, t, tn);
		} else if (ts->collecting) {
			ts->collecting = false;
			ts->reply_done = ts->reply.len > 0;
		} else if (!ts->reply_done && !ts->cur) {
			const char *f = find_any(tl, tn, reply_markers, &w);
			if (f) {
				size_t off = (size_t)(f - tl) + strlen(reply_markers[w]);
				const char *r = t + off;
				size_t rn = tn - off;
				while (rn && (is_sp(*r) || *r == '\'' || *r == ':'))
					r++, rn--;
				tscan_add_line(&ts->reply, r, rn);
				ts->collecting = true;
			}
		}
	}
	tscan_finish(ts);
	if (ts->collecting && ts->reply.len)
		ts->reply_done = true;
	ts->collecting = false;
	free(lo);
}

/* A plain-text bounce: its recipients into l. */
static void text_bounce(struct parse *ps, struct rlist *l, bool delayed)
{
	struct tscan ts = { .ps = ps, .l = l, .default_action = delayed ? "delayed" : "failed" };
	char *from = hdr_get(ps->top, "from");
	struct span a;
	if (from && addr_find(from, strlen(from), &a))
		ts.exclude = xstrndup(a.p, a.n);
	free(from);
	for (size_t i = 0; i < ps->ntext; i++)
		tscan_text(&ts, ps->text[i].p, ps->text[i].n);
	if (!l->n)
		for (size_t i = 0; i < ps->nhtml; i++)
			tscan_text(&ts, ps->html[i].p, ps->html[i].n);
	/* Exim's and Gmail's header, when the text named none */
	char *xf = hdr_get(ps->top, "x-failed-recipients");
	if (xf) {
		const char *p = xf;
		size_t rest = strlen(xf);
		for (unsigned k = 0; k < ADDRS_MAX && addr_find(p, rest, &a); k++) {
			bool fresh;
			struct feedback_rcpt *r = rlist_add(l, addr_dup(a.p, a.n), &fresh, &ps->out->truncated);
			if (r && fresh)
				snprintf(r->action, sizeof(r->action), "%s", ts.default_action);
			rest -= (size_t)(a.p + a.n - p);
			p = a.p + a.n;
		}
		free(xf);
	}
	/* the reply quoted once for the report goes to those whose own text has no code */
	unsigned rcode;
	char rst[16];
	find_codes(ts.reply.p ? ts.reply.p : "", ts.reply.len, &rcode, rst);
	for (size_t i = 0; i < l->n; i++) {
		struct feedback_rcpt *r = &l->r[i];
		unsigned code = 0;
		char st[16] = "";
		if (r->diagnostic)
			find_codes(r->diagnostic, strlen(r->diagnostic), &code, st);
		if (!code && !st[0] && (rcode || rst[0] || !r->diagnostic) && ts.reply.len)
			set_diag(r, ts.reply.p, ts.reply.len);
		rcpt_settle(r, ts.default_action);
		/* a plain-text notice is a failure or a delay as a whole: a 4xx
		 * reply in a failure notice is why it gave up, not a delay */
		snprintf(r->action, sizeof(r->action), "%s", ts.default_action);
	}
	free(ts.exclude);
	buf_free(&ts.diag);
	buf_free(&ts.reply);
}

/* ---- deciding ---- */

static bool is_autoreply(const struct parse *ps)
{
	char *v = hdr_get(ps->top, "auto-submitted");
	bool yes = v && *v && !ci_prefix(v, strlen(v), "no");
	free(v);
	if (yes || hdr_find(ps->top, "x-autoreply") || hdr_find(ps->top, "x-autorespond") ||
	    hdr_find(ps->top, "x-autoresponder"))
		return true;
	v = hdr_get(ps->top, "precedence");
	yes = v && ci_prefix(v, strlen(v), "auto_reply");
	free(v);
	if (yes)
		return true;
	static const char *const subjects[] = {
		"automatic reply", "auto reply", "auto-reply", "autoreply", "auto response", "auto-response",
		"autoresponse", "out of office", "out of the office", "away from the office", "on vacation",
		"abwesenheitsnotiz", "r\xc3\xa9ponse automatique", "respuesta autom\xc3\xa1tica", "risposta automatica", NULL,
	};
	char *s = subject_of(ps);
	yes = s && (contains_any(s, strlen(s), subjects) || ci_prefix(s, strlen(s), "auto:"));
	free(s);
	return yes;
}

/* The first line of any text starting with name (lower case, with ':'):
 * its offset in that text, or false. */
static bool text_field(const struct parse *ps, const char *name, struct span *found)
{
	size_t nl = strlen(name);
	char needle[64];
	snprintf(needle, sizeof(needle), "\n%s", name);
	for (size_t i = 0; i < ps->ntext; i++) {
		const char *s = ps->text[i].p;
		size_t n = ps->text[i].n;
		char *lo = lower_dup(s, n);
		const char *f = n >= nl && !memcmp(lo, name, nl) ? lo : memmem(lo, n, needle, nl + 1);
		if (f && f != lo)
			f++;
		if (f) {
			*found = (struct span){ s + (f - lo), n - (size_t)(f - lo) };
			free(lo);
			return true;
		}
		free(lo);
	}
	return false;
}

static void take(struct parse *ps, struct rlist *l, enum feedback_type type)
{
	ps->out->type = type;
	ps->out->rcpt = l->r;
	ps->out->nrcpt = l->n;
	free(l->slot);
	memset(l, 0, sizeof(*l));
}

/* The ARF's recipients: Original-Rcpt-To (and AOL's Removal-Recipient),
 * else Microsoft's X-HmXmrOriginalRecipient, else the original's To:; a
 * redacted one unknown; at least one. */
static void arf_recipients(struct parse *ps)
{
	struct rlist l = { 0 };
	bool fresh, any = false;
	const char *src[ADDRS_MAX + 2];
	size_t nsrc = 0;
	for (size_t i = 0; i < ps->narf_rcpt; i++)
		src[nsrc++] = ps->arf_rcpt[i];
	if (!nsrc && ps->orig_hmxmr)
		src[nsrc++] = ps->orig_hmxmr;
	if (!nsrc && ps->orig_to)
		src[nsrc++] = ps->orig_to;
	for (size_t i = 0; i < nsrc; i++) {
		const char *p = src[i];
		size_t rest = strlen(p);
		struct span a;
		unsigned k = 0;
		for (; k < ADDRS_MAX && addr_find(p, rest, &a); k++) {
			char *r = redacted(a.p, a.n) ? NULL : addr_dup(a.p, a.n);
			if (r || !any)
				any |= rlist_add(&l, r, &fresh, &ps->out->truncated) != NULL;
			else
				free(r);
			rest -= (size_t)(a.p + a.n - p);
			p = a.p + a.n;
		}
	}
	if (!l.n)
		rlist_add(&l, NULL, &fresh, &ps->out->truncated);
	/* an unknown one beside known ones says nothing more */
	if (l.n > 1 && !l.r[0].rcpt) {
		rcpt_free(&l.r[0]);
		memmove(&l.r[0], &l.r[1], (l.n - 1) * sizeof(l.r[0]));
		l.n--;
	}
	take(ps, &l, FEEDBACK_ARF);
}

/* The tracking header quoted in a text (a report whose MIME structure
 * is lost, a plain-text bounce without a marker), with the header block
 * it sits in when no original was found otherwise. */
static void quoted_original(struct parse *ps)
{
	struct feedback_report *o = ps->out;
	struct span f;
	if (o->track || !text_field(ps, "x-sluice-track:", &f))
		return;
	struct hdrs *hs = xmalloc(sizeof(*hs));
	headers_parse(f.p, f.n, hs);
	o->track = hdr_get(hs, "x-sluice-track");
	if (!ps->orig) {
		/* back to the empty line before it */
		const char *s = f.p;
		for (size_t i = 0; i < ps->ntext; i++)
			if (f.p >= ps->text[i].p && f.p <= ps->text[i].p + ps->text[i].n)
				s = ps->text[i].p;
		const char *st = f.p;
		while (st > s && !(st[-1] == '\n' && (st - 1 == s || st[-2] == '\n')))
			st--;
		original(ps, st, (size_t)(f.p + f.n - st));
	}
	ps->orig = true;
	free(hs);
}

static void decide(struct parse *ps)
{
	struct feedback_report *o = ps->out;
	struct span f, g;
	if (ps->arf_part || !strcmp(ps->report_type, "feedback-report")) {
		if (!ps->arf_part && text_field(ps, "feedback-type:", &f))
			arf_fields(ps, f.p, f.n);
		quoted_original(ps);
		arf_recipients(ps);
		return;
	}
	if (ps->dsn.n) {
		take(ps, &ps->dsn, FEEDBACK_DSN);
		return;
	}
	/* a delivery-status sent as text: from its first recipient field */
	bool fin = text_field(ps, "final-recipient:", &f), orig = text_field(ps, "original-recipient:", &g);
	if (fin || orig) {
		if (!fin || (orig && g.p < f.p && g.p + g.n == f.p + f.n))
			f = g;
		dsn_fields(ps, f.p, f.n);
		if (ps->dsn.n) {
			take(ps, &ps->dsn, FEEDBACK_DSN);
			return;
		}
	}
	/* a feedback report sent as text */
	if (text_field(ps, "feedback-type:", &f) && text_field(ps, "user-agent:", &g)) {
		arf_fields(ps, f.p, f.n);
		quoted_original(ps);
		arf_recipients(ps);
		return;
	}
	size_t hl;
	char *head = texts_head(ps, &hl);
	char *subj = subject_of(ps);
	bool daemon = from_daemon(ps) || hdr_find(ps->top, "x-failed-recipients");
	bool bounce = daemon || find_any(head, hl, bounce_markers, NULL) ||
	              (subj && contains_any(subj, strlen(subj), bounce_subjects));
	bool delayed = find_any(head, hl, delay_markers, NULL) || (subj && contains_any(subj, strlen(subj), delay_markers));
	free(head);
	free(subj);
	bool autoreply = is_autoreply(ps);
	/* Postfix and Exim mark their bounces auto-submitted too: one from a
	 * mailer daemon is a bounce, a person's auto-reply is not */
	if (bounce && (daemon || !autoreply)) {
		struct rlist l = { 0 };
		text_bounce(ps, &l, delayed);
		if (l.n) {
			take(ps, &l, FEEDBACK_DSN);
			return;
		}
		rlist_free(&l);
	}
	if (autoreply) {
		struct rlist l = { 0 };
		char *from = hdr_get(ps->top, "from");
		struct span a;
		bool fresh;
		rlist_add(&l, from && addr_find(from, strlen(from), &a) ? addr_dup(a.p, a.n) : NULL, &fresh, &o->truncated);
		free(from);
		take(ps, &l, FEEDBACK_AUTOREPLY);
		return;
	}
	o->type = FEEDBACK_UNKNOWN;
}

void feedback_parse(const char *data, size_t len, struct feedback_report *out)
{
	memset(out, 0, sizeof(*out));
	if (len > FEEDBACK_INPUT_MAX) {
		len = FEEDBACK_INPUT_MAX;
		out->truncated = true;
	}
	struct parse ps = { .out = out };
	char *s = own(&ps, xmalloc(len + 1));
	memcpy(s, data, len);
	size_t n = normalize(s, len);
	s[n] = 0;
	/* an mbox separator line, leading empty lines */
	size_t start = 0;
	if (ci_prefix(s, n, "from ")) {
		const char *e = memchr(s, '\n', n);
		start = e ? (size_t)(e - s) + 1 : n;
	}
	while (start < n && s[start] == '\n')
		start++;
	walk(&ps, s + start, n - start, 0, true);
	if (!ps.top)
		ps.top = xcalloc(1, sizeof(*ps.top));
	decide(&ps);
	quoted_original(&ps);
	/* what the ARF or the auto-reply did not take */
	rlist_free(&ps.dsn);
	for (size_t i = 0; i < ps.narf_rcpt; i++)
		free(ps.arf_rcpt[i]);
	free(ps.arf_rcpt);
	free(ps.orig_to);
	free(ps.orig_hmxmr);
	free(ps.text);
	free(ps.html);
	free(ps.top);
	for (size_t i = 0; i < ps.nowned; i++)
		free(ps.owned[i]);
	free(ps.owned);
}

void feedback_report_free(struct feedback_report *r)
{
	for (size_t i = 0; i < r->nrcpt; i++)
		rcpt_free(&r->rcpt[i]);
	free(r->rcpt);
	free(r->feedback_type);
	free(r->user_agent);
	free(r->source_ip);
	free(r->reported_domain);
	free(r->arrival_date);
	free(r->original_mail_from);
	free(r->reporting_mta);
	free(r->track);
	free(r->message_id);
	free(r->job);
	memset(r, 0, sizeof(*r));
}

const char *feedback_type_name(enum feedback_type t)
{
	switch (t) {
	case FEEDBACK_DSN: return "dsn";
	case FEEDBACK_ARF: return "arf";
	case FEEDBACK_AUTOREPLY: return "autoreply";
	default: return "unknown";
	}
}
