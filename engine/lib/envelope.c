/* engine/lib/envelope.c - spool file parsing: envelope lines then message body.
 * Everything an attacker can put in a spool file is checked here, before
 * any byte of it reaches an SMTP command line (CR/LF/NUL = injection). */
#include "envelope.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

const char *address_check(const char *a, size_t len, bool allow_empty)
{
	if (len == 0)
		return allow_empty ? NULL : "empty address";
	if (len > ADDRESS_MAX - 2)
		return "address longer than 254 characters";
	size_t at = 0, nat = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c == '\r' || c == '\n')
			return "address contains CR or LF";
		if (c == 0)
			return "address contains NUL";
		if (c < 0x20 || c == 0x7f)
			return "address contains a control character";
		if (c == ' ' || c == '\t')
			return "address contains white space";
		if (c == '<' || c == '>')
			return "address contains '<' or '>'";
		if (c == '@') {
			at = i;
			nat++;
		}
	}
	if (nat == 0)
		return "address has no '@'";
	if (at == 0)
		return "address has an empty local part";
	if (at == len - 1)
		return "address has an empty domain";
	if (at > 64)
		return "local part longer than 64 characters";
	return NULL;
}

/* CR bytes in p, eight at a time: a byte of x = w ^ CRs is zero exactly
 * where w holds a CR, and ((x & 0x7f..) + 0x7f..) | x has its high bit
 * clear exactly at the zero bytes; multiplying the 0/1 bytes by 0x0101..
 * sums them into the top byte (no popcount instruction in baseline x86-64). */
static size_t count_cr(const char *p, size_t len)
{
	const uint64_t crs = 0x0d0d0d0d0d0d0d0dull, low7 = 0x7f7f7f7f7f7f7f7full;
	size_t n = 0, i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		uint64_t x = w ^ crs;
		uint64_t ones = (~(((x & low7) + low7) | x) & ~low7) >> 7; /* 1 per CR byte */
		n += (size_t)((ones * 0x0101010101010101ull) >> 56); /* their sum, at most 8 */
	}
	for (; i < len; i++)
		n += p[i] == '\r';
	return n;
}

static void dot_add(struct message *m, uint32_t *cap, size_t off)
{
	if (m->ndots == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		m->dots = xrealloc(m->dots, *cap * sizeof(*m->dots));
	}
	m->dots[m->ndots++] = (uint32_t)off;
}

/* Lines of a CRLF body that start with '.' (DATA doubles that dot, RFC
 * 5321 4.5.2) into m->dots, found as the body is walked line by line.
 * Returns whether the bytes are clean CRLF: every LF preceded by CR, and
 * no other CR (counted: as many CR as LF). Clean bytes need no copy. */
static bool scan_lines(struct message *m, const char *p, size_t len)
{
	uint32_t cap = 0;
	size_t lf = 0;
	m->dots = NULL;
	m->ndots = 0;
	if (len && p[0] == '.')
		dot_add(m, &cap, 0);
	const char *end = p + len;
	bool clean = len >= 2 && p[len - 1] == '\n';
	for (const char *q = p; clean && (q = memchr(q, '\n', (size_t)(end - q))); q++) {
		clean = q > p && q[-1] == '\r';
		lf++;
		if (q + 1 < end && q[1] == '.')
			dot_add(m, &cap, (size_t)(q + 1 - p));
	}
	clean = clean && count_cr(p, len) == lf;
	if (!clean) {
		free(m->dots);
		m->dots = NULL;
		m->ndots = 0;
	}
	return clean;
}

/* crlf_normalise, noting in m (when not NULL) the output lines that start
 * with '.': every pass of the loop starts a line. */
static char *normalise(const char *src, size_t len, size_t *out_len, struct message *m)
{
	/* Worst case every byte is a bare LF or CR and doubles, plus the final CRLF. */
	char *out = xmalloc(len * 2 + 3);
	size_t o = 0, i = 0;
	uint32_t cap = 0;
	while (i < len) {
		if (m && src[i] == '.')
			dot_add(m, &cap, o);
		/* Copy the run up to the next line ending in one go. */
		const char *nl = memchr(src + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - src) : len;
		const char *cr = memchr(src + i, '\r', end - i);
		if (cr)
			end = (size_t)(cr - src);
		memcpy(out + o, src + i, end - i);
		o += end - i;
		i = end;
		if (i == len)
			break;
		out[o++] = '\r';
		out[o++] = '\n';
		i += (src[i] == '\r' && i + 1 < len && src[i + 1] == '\n') ? 2 : 1;
	}
	if (o < 2 || out[o - 2] != '\r' || out[o - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	out[o] = 0;
	*out_len = o;
	return out;
}

char *crlf_normalise(const char *src, size_t len, size_t *out_len)
{
	return normalise(src, len, out_len, NULL);
}

/* Sets the body: in place when the file's bytes are clean CRLF already
 * (the usual case: sent as they lie in the file), else a normalised copy;
 * with its dot lines and whether it has 8-bit bytes. */
static void take_body(struct message *m, char *p, size_t len)
{
	if (scan_lines(m, p, len)) {
		m->body = p;
		m->body_len = len;
		m->body_owned = false;
	} else {
		m->body = normalise(p, len, &m->body_len, m); /* with its dot lines */
		m->body_owned = true;
	}
	ASSERT(m->body_len < UINT32_MAX);
	m->body_8bit = bytes_8bit(m->body, m->body_len);
}

static void fail(char *why, size_t why_len, const char *fmt, const char *arg)
{
	snprintf(why, why_len, fmt, arg);
}

/* Strips spaces and one pair of <> from an address value in place. */
static char *strip_address(char *v, size_t *len)
{
	while (*len && (*v == ' ' || *v == '\t')) {
		v++;
		(*len)--;
	}
	while (*len && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
		(*len)--;
	if (*len >= 2 && v[0] == '<' && v[*len - 1] == '>') {
		v++;
		*len -= 2;
	}
	return v;
}

static const char *const env_names[] = { "X-Sender:", "X-Receiver:", "X-Job:", "X-Pool:" };

/* Returns the index into env_names of the line starting at p, or -1. */
static int env_kind(const char *p, size_t len, size_t *name_len)
{
	for (size_t k = 0; k < ARRAY_LEN(env_names); k++) {
		size_t n = prefix_ci(p, len, env_names[k]);
		if (n) {
			*name_len = n;
			return (int)k;
		}
	}
	return -1;
}

/* Checks one envelope line's value and stores it in m. */
static bool take_envelope_value(struct message *m, int kind, char *v, size_t vlen, uint32_t *cap,
                                int *nsender, char *why, size_t why_len)
{
	if (kind <= 1) {
		const char *bad = address_check(v, vlen, kind == 0);
		if (bad) {
			snprintf(why, why_len, "%s %s", kind == 0 ? "X-Sender:" : "X-Receiver:", bad);
			return false;
		}
	} else {
		for (size_t i = 0; i < vlen; i++)
			if ((unsigned char)v[i] < 0x20 && (v[i] != '\t' || kind == 2)) {
				fail(why, why_len, "%s contains a control character", env_names[kind]);
				return false;
			}
		if (kind == 2 && vlen > JOB_NAME_MAX) { /* holds, waves and counts keep job names this long */
			fail(why, why_len, "X-Job: longer than %s bytes", "63");
			return false;
		}
	}
	v[vlen] = 0; /* the byte was a CR, LF or inside the line: safe to overwrite */
	switch (kind) {
	case 0:
		(*nsender)++;
		m->sender = v;
		break;
	case 1:
		if (m->nrcpt >= ENVELOPE_MAX_RCPT) {
			fail(why, why_len, "more than %s recipients", "100000");
			return false;
		}
		if (m->nrcpt == *cap) {
			*cap *= 2;
			m->rcpt = xrealloc(m->rcpt, *cap * sizeof(*m->rcpt));
		}
		m->rcpt[m->nrcpt++] = v;
		break;
	case 2: m->job = v; break;
	case 3: m->pool = v; break;
	}
	return true;
}

/* The envelope lines at the top of the file; returns where the message
 * starts, or NULL with why set. */
static char *take_envelope(struct message *m, char *p, char *end, char *why, size_t why_len)
{
	uint32_t cap = 8;
	int nsender = 0;
	m->rcpt = xmalloc(cap * sizeof(*m->rcpt));
	m->nrcpt = 0;
	m->job = m->pool = NULL;
	m->sender = NULL;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		size_t name_len;
		int kind = env_kind(p, line_len, &name_len);
		if (kind < 0)
			break;
		if (!nl) {
			fail(why, why_len, "envelope line %s is not followed by a message", env_names[kind]);
			return NULL;
		}
		size_t vlen = line_len - name_len;
		if (vlen && p[name_len + vlen - 1] == '\r')
			vlen--; /* CRLF line ending */
		char *v = p + name_len;
		if (kind <= 1)
			v = strip_address(v, &vlen);
		else
			while (vlen && (*v == ' ' || *v == '\t')) { v++; vlen--; }
		if (!take_envelope_value(m, kind, v, vlen, &cap, &nsender, why, why_len))
			return NULL;
		p = nl + 1;
	}
	if (nsender != 1) {
		fail(why, why_len, "%s", nsender ? "more than one X-Sender line" : "no X-Sender line");
		return NULL;
	}
	if (m->nrcpt == 0) {
		fail(why, why_len, "%s", "no X-Receiver line");
		return NULL;
	}
	return p;
}

bool envelope_parse(struct message *m, char *why, size_t why_len)
{
	char *end = m->raw + m->raw_len;
	char *p = take_envelope(m, m->raw, end, why, why_len);
	if (!p)
		return false;
	if (p == end) {
		fail(why, why_len, "%s", "no message after the envelope lines");
		return false;
	}
	if ((size_t)(end - p) > ENVELOPE_MAX_BODY) { /* dot offsets are 32-bit */
		fail(why, why_len, "%s", "message larger than 2 GB");
		return false;
	}
	take_body(m, p, (size_t)(end - p));
	m->rcpt_state = xcalloc(m->nrcpt, 1);
	m->npending = m->nrcpt;
	return true;
}
