/* engine/header_templates.c - headers sluice adds to a message when its
 * producer did not (feedback.feedback-id, feedback.list-unsubscribe and
 * List-Unsubscribe-Post): Gmail's Feedback-ID, and the one-click
 * unsubscribe headers Gmail and Yahoo require of bulk senders (RFC 8058).
 * They go in front of the message's header block on the spool worker's
 * thread, before the shard signs it, so DKIM covers them (the signer signs
 * and oversigns List-Unsubscribe and List-Unsubscribe-Post).
 *
 * Template variables: %{job} (X-Job, or "none"), %{domain} (the sender's
 * domain), %{id} (the message's identity), %{rcpt} (its recipient,
 * URL-escaped; a template using it applies to one-recipient messages
 * only), %{sig} (24 hex digits of HMAC-SHA256(feedback secret, "unsub"
 * NUL rcpt NUL job): what an unsubscribe page checks so that nobody can
 * unsubscribe someone else; needs feedback.secret-file). */
#define _GNU_SOURCE
#include "header_templates.h"
#include "../dkim/keys.h"
#include "lib/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Does the header block of body (CRLF lines up to the empty one) hold a
 * field named name? */
static bool has_field(const char *body, size_t len, const char *name)
{
	size_t nl = strlen(name);
	for (size_t at = 0; at < len;) {
		if (at + 1 < len && body[at] == '\r' && body[at + 1] == '\n')
			return false; /* the empty line: the header block ended */
		if (len - at > nl && strncasecmp(body + at, name, nl) == 0 && body[at + nl] == ':')
			return true;
		const char *eol = memchr(body + at, '\n', len - at);
		if (!eol)
			return false;
		at = (size_t)(eol - body) + 1;
	}
	return false;
}

static void add_url_escaped(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~@", *p))
			buf_add(b, (const char *)p, 1);
		else
			buf_printf(b, "%%%02X", *p);
}

/* Expands t for m into b: false when it cannot apply (a variable that
 * needs one recipient, or the secret, or an unknown one). */
static bool expand(const struct config *cfg, const struct message *m, const char *t, struct buf *b)
{
	const char *at = strchr(m->sender, '@');
	while (*t) {
		if (t[0] != '%' || t[1] != '{') {
			buf_add(b, t++, 1);
			continue;
		}
		const char *end = strchr(t, '}');
		if (!end)
			return false;
		size_t n = (size_t)(end - t - 2);
		const char *v = t + 2;
		if (n == 3 && !strncmp(v, "job", 3)) {
			add_url_escaped(b, m->job ? m->job : "none");
		} else if (n == 6 && !strncmp(v, "domain", 6)) {
			add_url_escaped(b, at ? at + 1 : "none"); /* a domain is plain; an odd one is escaped */
		} else if (n == 2 && !strncmp(v, "id", 2)) {
			add_url_escaped(b, m->id);
		} else if (n == 4 && !strncmp(v, "rcpt", 4)) {
			if (m->nrcpt != 1)
				return false;
			add_url_escaped(b, m->rcpt[0]);
		} else if (n == 3 && !strncmp(v, "sig", 3)) {
			if (m->nrcpt != 1 || !cfg->track_secret)
				return false;
			struct buf d = { 0 };
			buf_add(&d, "unsub", 6);
			buf_add(&d, m->rcpt[0], strlen(m->rcpt[0]) + 1);
			buf_adds(&d, m->job ? m->job : "");
			unsigned char mac[32];
			crypto_hmac_sha256(cfg->track_secret, cfg->track_secret_len, d.p, d.len, mac);
			buf_free(&d);
			for (int i = 0; i < 12; i++)
				buf_printf(b, "%02x", mac[i]);
		} else {
			return false;
		}
		t = end + 1;
	}
	return true;
}

static void add_field(const struct config *cfg, const struct message *m, const char *name, const char *tpl,
                      struct buf *out)
{
	if (!tpl || has_field(m->body, m->body_len, name))
		return;
	size_t was = out->len;
	buf_printf(out, "%s: ", name);
	if (!expand(cfg, m, tpl, out)) {
		out->len = was;
		return;
	}
	buf_adds(out, "\r\n");
}

void header_templates_apply(const struct config *cfg, struct message *m)
{
	if (!cfg->feedback_id_tpl && !cfg->unsubscribe_tpl)
		return;
	struct buf add = { 0 };
	add_field(cfg, m, "Feedback-ID", cfg->feedback_id_tpl, &add);
	size_t before = add.len;
	add_field(cfg, m, "List-Unsubscribe", cfg->unsubscribe_tpl, &add);
	/* RFC 8058: one-click needs an https URI, and the POST field beside it */
	if (add.len > before && cfg->unsubscribe_post && memmem(add.p + before, add.len - before, "<https://", 9))
		add_field(cfg, m, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click", &add);
	if (!add.len) {
		buf_free(&add);
		return;
	}
	char *body = xmalloc(add.len + m->body_len);
	memcpy(body, add.p, add.len);
	memcpy(body + add.len, m->body, m->body_len);
	for (uint32_t i = 0; i < m->ndots; i++)
		m->dots[i] += (uint32_t)add.len;
	if (m->body_owned)
		free(m->body);
	m->body = body;
	m->body_len += add.len;
	m->body_owned = true;
	buf_free(&add);
}

const char *header_template_invalid(const char *t)
{
	static const char *const vars[] = { "job", "domain", "id", "rcpt", "sig" };
	for (const char *p = t; *p; p++) {
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			return "must not hold control characters (one header line)";
		if (p[0] != '%' || p[1] != '{')
			continue;
		const char *end = strchr(p, '}');
		bool known = false;
		for (size_t i = 0; end && i < ARRAY_LEN(vars); i++)
			known = known || ((size_t)(end - p - 2) == strlen(vars[i]) && !strncmp(p + 2, vars[i], strlen(vars[i])));
		if (!known)
			return "has an unknown variable (%{job}, %{domain}, %{id}, %{rcpt}, %{sig})";
		p = end;
	}
	return strlen(t) > 900 ? "is longer than 900 bytes" : NULL;
}
