/* dkim/signer.c - DKIM signing with libopendkim (see signer.h): relaxed/
 * relaxed canonicalisation, rsa-sha256 or ed25519-sha256 per key, never
 * l=, the header list bulk senders sign, with the fields a forwarder or
 * list must not add (From, To, Subject, Date, Reply-To, List-Unsubscribe*)
 * oversigned. */
#define _GNU_SOURCE
#include "signer.h"
#include "../engine/lib/json.h"
#include "../engine/lib/util.h"
#include <ctype.h>
#include <opendkim/dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const dkim_signed_headers[] = {
	"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID",
	"Content-Description", "In-Reply-To", "References", "List-Id", "List-Help",
	"List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe", "List-Post",
	"List-Owner", "List-Archive", "Feedback-ID", NULL,
};
const char *const dkim_oversigned_headers[] = {
	"From", "To", "Subject", "Date", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post", NULL,
};

/* Everything libopendkim allocates for one message comes from an arena
 * released after dkim_free(): version 2.11.0 leaks part of each Ed25519
 * signature's state (64 bytes a message), which a daemon cannot afford. */
struct block {
	struct block *prev, *next;
};
struct arena {
	struct block head;
};

static void *arena_alloc(void *closure, size_t n)
{
	struct arena *a = closure;
	if (!a)
		return malloc(n);
	struct block *b = malloc(sizeof(*b) + n);
	if (!b)
		return NULL;
	b->prev = &a->head;
	b->next = a->head.next;
	a->head.next->prev = b;
	a->head.next = b;
	return b + 1;
}

static void arena_free(void *closure, void *p)
{
	if (!closure || !p) {
		free(p);
		return;
	}
	struct block *b = (struct block *)p - 1;
	b->prev->next = b->next;
	b->next->prev = b->prev;
	free(b);
}

static void arena_release(struct arena *a)
{
	while (a->head.next != &a->head)
		arena_free(a, a->head.next + 1);
}

struct dkim_signer {
	DKIM_LIB *lib;
	struct arena arena;
	const struct dkim_key *keys;
	unsigned nkeys;
	char *fallback;
	struct dkim_key_cache *cache;
	struct buf sigs;
};

struct dkim_signer *dkim_signer_new(const struct dkim_key *keys, unsigned nkeys, const char *fallback)
{
	if (nkeys == 0)
		return NULL;
	struct dkim_signer *s = xcalloc(1, sizeof(*s));
	s->arena.head.prev = s->arena.head.next = &s->arena.head;
	s->lib = dkim_init(arena_alloc, arena_free);
	if (!s->lib)
		fatal("dkim: dkim_init failed");
	if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, (void *)dkim_signed_headers,
	                 sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, (void *)dkim_oversigned_headers,
	                 sizeof(char **)) != DKIM_STAT_OK)
		fatal("dkim: cannot set the signed header list");
	s->keys = keys;
	s->nkeys = nkeys;
	s->fallback = fallback ? xstrdup(fallback) : NULL;
	/* 2.11.0 never frees the Ed25519 key it loads for a signature. */
	s->cache = dkim_key_cache_new(keys, nkeys, dkim_libversion() <= 0x020B0000);
	return s;
}

void dkim_signer_free(struct dkim_signer *s)
{
	if (!s)
		return;
	dkim_key_cache_free(s->cache);
	dkim_close(s->lib);
	free(s->fallback);
	buf_free(&s->sigs);
	free(s);
}

/* One header field at *p (with its continuation lines): its length without
 * the final CRLF, and where the next one starts. 0 at the empty line. */
static size_t next_field(const char *p, const char *end, const char **next)
{
	const char *q = p;
	while (q < end) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		if (!nl) {
			*next = end;
			return (size_t)(end - p);
		}
		q = nl + 1;
		if (q >= end || (*q != ' ' && *q != '\t'))
			break;
	}
	*next = q;
	size_t len = (size_t)(q - p);
	if (len >= 2 && p[len - 1] == '\n' && p[len - 2] == '\r')
		len -= 2;
	return len;
}

/* The domain of the From: address, lower-cased, into out ("" if none). */
static void from_domain(const char *v, size_t len, char *out, size_t out_len)
{
	out[0] = 0;
	const char *end = v + len;
	const char *lt = memchr(v, '<', len);
	if (lt) {
		const char *gt = memchr(lt, '>', (size_t)(end - lt));
		v = lt + 1;
		end = gt ? gt : end;
	}
	const char *at = NULL;
	for (const char *p = v; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return;
	size_t n = 0;
	for (const char *p = at + 1; p < end && n + 1 < out_len; p++) {
		unsigned char c = (unsigned char)*p;
		if (isspace(c) || c == '>' || c == ';' || c == ',' || c == '(' || c == ')')
			break;
		out[n++] = (char)tolower(c);
	}
	out[n] = 0;
}

static bool has_keys(const struct dkim_signer *s, const char *domain)
{
	for (unsigned i = 0; i < s->nkeys; i++)
		if (strcasecmp(s->keys[i].domain, domain) == 0)
			return true;
	return false;
}

/* The signing domain: the From domain, else its nearest parent with keys
 * (relaxed DMARC alignment), else the fallback; NULL if none. */
static const char *signing_domain(const struct dkim_signer *s, const char *from)
{
	for (const char *d = from; d && *d; d = strchr(d, '.') ? strchr(d, '.') + 1 : NULL)
		if (strchr(d, '.') && has_keys(s, d))
			return d;
	return s->fallback && has_keys(s, s->fallback) ? s->fallback : NULL;
}

/* Appends "DKIM-Signature: ..." with CRLF line ends (libopendkim folds with LF). */
static void add_signature(struct buf *b, const unsigned char *v, size_t len)
{
	buf_adds(b, "DKIM-Signature: ");
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r'))
			buf_add(b, "\r", 1);
		buf_add(b, &v[i], 1);
	}
	buf_adds(b, "\r\n");
}

static bool sign_one(struct dkim_signer *s, const struct dkim_key *k, struct message *m,
                     const char *body, size_t body_len, char *why, size_t why_len)
{
	DKIM_STAT st;
	DKIM *d = dkim_sign(s->lib, (const unsigned char *)m->id, &s->arena, (dkim_sigkey_t)k->pem,
	                    (const unsigned char *)k->selector, (const unsigned char *)k->domain,
	                    DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
	                    k->alg == DKIM_ALG_RSA ? DKIM_SIGN_RSASHA256 : DKIM_SIGN_ED25519SHA256,
	                    -1, &st);
	if (!d) {
		snprintf(why, why_len, "DKIM signing (%s, %s) failed: %s", k->domain, k->selector,
		         dkim_getresultstr(st));
		arena_release(&s->arena);
		return false;
	}
	const char *p = m->body, *end = body, *next;
	size_t len;
	st = DKIM_STAT_OK;
	while (st == DKIM_STAT_OK && p < end && (len = next_field(p, end, &next)) > 0) {
		st = dkim_header(d, (unsigned char *)p, len);
		p = next;
	}
	if (st == DKIM_STAT_OK)
		st = dkim_eoh(d);
	if (st == DKIM_STAT_OK && body_len)
		st = dkim_body(d, (unsigned char *)body, body_len);
	if (st == DKIM_STAT_OK)
		st = dkim_eom(d, NULL);
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	if (st == DKIM_STAT_OK)
		st = dkim_getsighdr_d(d, strlen("DKIM-Signature: "), &sig, &sig_len);
	if (st != DKIM_STAT_OK) {
		const char *e = dkim_geterror(d);
		snprintf(why, why_len, "DKIM signing (%s, %s) failed: %s", k->domain, k->selector,
		         e && *e ? e : dkim_getresultstr(st));
		dkim_free(d);
		arena_release(&s->arena);
		return false;
	}
	add_signature(&s->sigs, sig, sig_len);
	dkim_free(d);
	arena_release(&s->arena);
	return true;
}

enum dkim_sign_result dkim_sign_message(struct dkim_signer *s, struct message *m, char *why, size_t why_len)
{
	if (!s)
		return DKIM_UNSIGNED;
	/* The header block ends at the first empty line; the body follows it. */
	const char *p = m->body, *end = m->body + m->body_len, *next;
	char from[256] = "";
	size_t len;
	while (p < end && (len = next_field(p, end, &next)) > 0) {
		if (len > 5 && strncasecmp(p, "From:", 5) == 0 && !from[0])
			from_domain(p + 5, len - 5, from, sizeof(from));
		p = next;
	}
	const char *body = p < end ? p + 2 : end; /* past the empty line's CRLF */
	if (body > end)
		body = end;
	const char *domain = signing_domain(s, from);
	if (!domain)
		return DKIM_UNSIGNED;
	dkim_key_cache_use(s->cache);
	s->sigs.len = 0;
	struct buf log = { 0 };
	buf_adds(&log, "{\"d\":");
	json_add_cstr(&log, domain);
	buf_adds(&log, ",\"s\":[");
	unsigned signed_ = 0;
	for (unsigned i = 0; i < s->nkeys; i++) {
		const struct dkim_key *k = &s->keys[i];
		if (strcasecmp(k->domain, domain) != 0)
			continue;
		if (!sign_one(s, k, m, body, (size_t)(end - body), why, why_len)) {
			buf_free(&log);
			dkim_key_cache_use(NULL);
			return DKIM_SIGN_FAILED;
		}
		if (signed_++)
			buf_adds(&log, ",");
		json_add_cstr(&log, k->selector);
	}
	dkim_key_cache_use(NULL);
	buf_add(&log, "]}", 3); /* with its NUL */
	free(m->dkim_sig);
	m->dkim_sig = xstrndup(s->sigs.p, s->sigs.len);
	m->dkim_sig_len = s->sigs.len;
	free(m->dkim_log);
	m->dkim_log = log.p;
	return DKIM_SIGNED;
}
