/* tests/fuzz/fuzz_envelope.c - libFuzzer target for the spool envelope
 * parser (engine/lib/envelope.c): any bytes as a spool file, taken the way
 * spool_claim() takes one (raw, raw_len, a NUL after them, id, then
 * envelope_parse, then message_free). Parsing must never crash, leak or
 * read out of bounds. When it succeeds:
 *  - the sender (possibly empty) and every recipient have no CR, LF, NUL,
 *    control byte, white space, '<' or '>', are at most 254 bytes, and a
 *    recipient has an '@' with something on both sides;
 *  - the body is non-empty, ends in CRLF, has no bare LF or bare CR, and
 *    body_len is its length;
 *  - the envelope and the body are what an independent reading of the
 *    same bytes gives (the lines X-Sender/X-Receiver/X-Job/X-Pool at the
 *    top, then the rest with every line ending made CRLF);
 *  - rcpt_state is zeroed and npending == nrcpt.
 * And a file that is plainly fine (one strict sender, strict recipients,
 * a body) must be accepted. */
#include "../../engine/lib/envelope.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_envelope: check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static void check_address(const char *a, bool is_sender)
{
	size_t len = strlen(a);
	CHECK(len <= 254);
	CHECK(is_sender || len > 0);
	size_t at = (size_t)-1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		CHECK(c >= 0x20 && c != 0x7f);
		CHECK(c != ' ' && c != '\t' && c != '<' && c != '>');
		if (c == '@')
			at = i;
	}
	if (len) {
		CHECK(at != (size_t)-1);
		CHECK(at > 0 && at + 1 < len);
	}
}

/* Reference reading of the envelope, on a copy of the input. */
struct ref {
	const char *sender;      /* pointers into the copy, with lengths */
	size_t sender_len;
	int nsender;
	const char **rcpt;
	size_t *rcpt_len;
	size_t nrcpt;
	size_t body_off;         /* where the message starts */
	bool unterminated;       /* the last envelope line has no LF */
	bool strict_ok;          /* every address plainly valid */
};

static const char *const names[] = { "x-sender:", "x-receiver:", "x-job:", "x-pool:" };

/* Printable ASCII without specials, one '@', local part 1..64, a domain. */
static bool strict_address(const char *a, size_t len, bool may_be_empty)
{
	if (len == 0)
		return may_be_empty;
	if (len > 254)
		return false;
	size_t nat = 0, at = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
			return false;
		if (c == '@') {
			nat++;
			at = i;
		}
	}
	return nat == 1 && at > 0 && at <= 64 && at + 1 < len;
}

static void ref_read(struct ref *r, const char *d, size_t n)
{
	memset(r, 0, sizeof(*r));
	r->rcpt = calloc(n + 1, sizeof(*r->rcpt));
	r->rcpt_len = calloc(n + 1, sizeof(*r->rcpt_len));
	CHECK(r->rcpt && r->rcpt_len);
	r->strict_ok = true;
	size_t p = 0;
	while (p < n) {
		size_t e = p;
		while (e < n && d[e] != '\n')
			e++;
		int kind = -1;
		size_t nl = 0;
		for (int k = 0; k < 4 && kind < 0; k++) {
			nl = strlen(names[k]);
			if (e - p >= nl && strncasecmp(d + p, names[k], nl) == 0)
				kind = k;
		}
		if (kind < 0)
			break;
		if (e == n) {
			r->unterminated = true;
			return;
		}
		const char *v = d + p + nl;
		size_t vl = e - p - nl;
		if (vl && v[vl - 1] == '\r')
			vl--;
		if (kind <= 1) {
			while (vl && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			if (vl >= 2 && v[0] == '<' && v[vl - 1] == '>') {
				v++;
				vl -= 2;
			}
			if (!strict_address(v, vl, kind == 0))
				r->strict_ok = false;
			if (kind == 0) {
				r->nsender++;
				r->sender = v;
				r->sender_len = vl;
			} else {
				r->rcpt[r->nrcpt] = v;
				r->rcpt_len[r->nrcpt++] = vl;
			}
		} else {
			if (kind == 2) /* X-Job: after its leading white space, at most 63 bytes, no tab */
				while (vl && (*v == ' ' || *v == '\t')) {
					v++;
					vl--;
				}
			for (size_t i = 0; i < vl; i++)
				if ((unsigned char)v[i] < 0x20 && (v[i] != '\t' || kind == 2))
					r->strict_ok = false;
			if (kind == 2 && vl > JOB_NAME_MAX)
				r->strict_ok = false;
		}
		p = e + 1;
	}
	r->body_off = p;
}

/* The body with every LF, CRLF and bare CR as CRLF, a final CRLF added. */
static char *ref_body(const char *d, size_t n, size_t *out_len)
{
	char *o = malloc(2 * n + 3);
	CHECK(o);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (d[i] == '\r' || d[i] == '\n') {
			if (d[i] == '\r' && i + 1 < n && d[i + 1] == '\n')
				i++;
			o[k++] = '\r';
			o[k++] = '\n';
		} else {
			o[k++] = d[i];
		}
	}
	if (k < 2 || o[k - 2] != '\r' || o[k - 1] != '\n') {
		o[k++] = '\r';
		o[k++] = '\n';
	}
	*out_len = k;
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	CHECK(copy);
	memcpy(copy, data, size);
	copy[size] = 0;

	/* as spool_claim builds it */
	struct message *m = calloc(1, sizeof(*m));
	CHECK(m);
	m->raw_len = size;
	m->raw = malloc(size + 1);
	CHECK(m->raw);
	memcpy(m->raw, data, size);
	m->raw[size] = 0;
	m->id = strdup("fuzz-message");
	char why[256];
	why[0] = 0;
	bool ok = envelope_parse(m, why, sizeof(why));

	struct ref r;
	ref_read(&r, copy, size);
	if (!ok) {
		CHECK(why[0] != 0);
		CHECK(memchr(why, 0, sizeof(why)) != NULL);
		/* a plainly valid file must not be refused */
		CHECK(!(r.strict_ok && !r.unterminated && r.nsender == 1 && r.nrcpt >= 1 &&
		        r.nrcpt <= ENVELOPE_MAX_RCPT && r.body_off < size));
	} else {
		CHECK(!r.unterminated && r.nsender == 1 && r.nrcpt >= 1 && r.body_off < size);
		CHECK(m->sender);
		check_address(m->sender, true);
		CHECK(strlen(m->sender) == r.sender_len && memcmp(m->sender, r.sender, r.sender_len) == 0);
		CHECK(m->nrcpt == r.nrcpt && m->rcpt);
		for (uint32_t i = 0; i < m->nrcpt; i++) {
			CHECK(m->rcpt[i]);
			check_address(m->rcpt[i], false);
			CHECK(strlen(m->rcpt[i]) == r.rcpt_len[i] &&
			      memcmp(m->rcpt[i], r.rcpt[i], r.rcpt_len[i]) == 0);
			/* strings live in raw, as message.h says */
			CHECK(m->rcpt[i] >= m->raw && m->rcpt[i] < m->raw + m->raw_len);
		}
		if (m->job)
			for (const char *p = m->job; *p; p++)
				CHECK((unsigned char)*p >= 0x20 || *p == '\t');
		if (m->pool)
			for (const char *p = m->pool; *p; p++)
				CHECK((unsigned char)*p >= 0x20 || *p == '\t');
		CHECK(m->body && m->body_len >= 2);
		CHECK(m->body[m->body_len] == 0);
		CHECK(m->body[m->body_len - 2] == '\r' && m->body[m->body_len - 1] == '\n');
		bool eight = false;
		for (size_t i = 0; i < m->body_len; i++) {
			if (m->body[i] == '\n')
				CHECK(i > 0 && m->body[i - 1] == '\r');
			if (m->body[i] == '\r')
				CHECK(i + 1 < m->body_len && m->body[i + 1] == '\n');
			eight |= (unsigned char)m->body[i] >= 0x80;
		}
		CHECK(eight == m->body_8bit);
		/* the dot list: exactly the lines that start with '.', in order */
		uint32_t nd = 0;
		for (size_t i = 0; i < m->body_len; i++)
			if (m->body[i] == '.' && (i == 0 || m->body[i - 1] == '\n')) {
				CHECK(nd < m->ndots && m->dots[nd] == i);
				nd++;
			}
		CHECK(nd == m->ndots);
		/* already CRLF: sent from the file's bytes, never copied */
		CHECK(m->body_owned == !(m->body >= m->raw && m->body < m->raw + m->raw_len));
		size_t bl;
		char *b = ref_body(copy + r.body_off, size - r.body_off, &bl);
		CHECK(bl == m->body_len && memcmp(b, m->body, bl) == 0);
		free(b);
		CHECK(m->rcpt_state && m->npending == m->nrcpt);
		for (uint32_t i = 0; i < m->nrcpt; i++)
			CHECK(m->rcpt_state[i] == 0);
	}
	free(r.rcpt);
	free(r.rcpt_len);
	free(copy);
	message_free(m);
	return 0;
}
