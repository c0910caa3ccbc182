/* dkim/track.c - the tracking header's value (see track.h): making it
 * when a message is signed for sending, checking it in a report that
 * comes back. */
#include "track.h"
#include "keys.h"
#include "../engine/lib/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAC_BYTES 12

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void add_b64url(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		char out[4] = { b64url[v >> 18 & 63], b64url[v >> 12 & 63], b64url[v >> 6 & 63], b64url[v & 63] };
		buf_add(b, out, i + 2 < n ? 4 : i + 1 < n ? 3 : 2);
	}
}

/* Decodes [p, p + n) into out (at most max - 1 bytes, NUL-terminated):
 * false when it is not unpadded base64url or too long. */
static bool get_b64url(const char *p, size_t n, char *out, size_t max)
{
	if (n % 4 == 1)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		unsigned v = 0, k = 0;
		for (; k < 4 && i + k < n; k++) {
			const char *c = memchr(b64url, p[i + k], 64);
			if (!c || !p[i + k])
				return false;
			v |= (unsigned)(c - b64url) << (18 - 6 * k);
		}
		unsigned bytes = k - 1;
		if (o + bytes >= max)
			return false;
		for (unsigned j = 0; j < bytes; j++) {
			out[o] = (char)(v >> (16 - 8 * j) & 0xff);
			if (!out[o++])
				return false; /* a field holds no NUL */
		}
	}
	out[o] = 0;
	return true;
}

static void mac_of(const char *secret, size_t secret_len, const char *id, const char *rcpt, const char *source,
                   const char *job, unsigned char mac[32])
{
	struct buf d = { 0 };
	buf_add(&d, "1", 2);
	buf_add(&d, id, strlen(id) + 1);
	buf_add(&d, rcpt, strlen(rcpt) + 1);
	buf_add(&d, source, strlen(source) + 1);
	buf_add(&d, job, strlen(job));
	crypto_hmac_sha256(secret, secret_len, d.p, d.len, mac);
	buf_free(&d);
}

char *track_make(const char *secret, size_t secret_len, const char *id, const char *rcpt, const char *source,
                 const char *job)
{
	unsigned char mac[32];
	mac_of(secret, secret_len, id, rcpt ? rcpt : "", source ? source : "", job ? job : "", mac);
	struct buf b = { 0 };
	buf_adds(&b, "1.");
	add_b64url(&b, id);
	buf_adds(&b, ".");
	add_b64url(&b, rcpt ? rcpt : "");
	buf_adds(&b, ".");
	add_b64url(&b, source ? source : "");
	buf_adds(&b, ".");
	add_b64url(&b, job ? job : "");
	buf_adds(&b, ".");
	for (int i = 0; i < MAC_BYTES; i++)
		buf_printf(&b, "%02x", mac[i]);
	buf_add(&b, "", 1);
	return b.p;
}

enum track_verdict track_check(const char *secret, size_t secret_len, const char *value, size_t len,
                               char id[TRACK_FIELD_MAX], char rcpt[TRACK_FIELD_MAX], char source[TRACK_FIELD_MAX],
                               char job[TRACK_FIELD_MAX])
{
	/* the value without white space (a folded header) */
	char v[4 * TRACK_FIELD_MAX + 64];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (value[i] == ' ' || value[i] == '\t' || value[i] == '\r' || value[i] == '\n')
			continue;
		if (n + 1 >= sizeof(v))
			return TRACK_MALFORMED;
		v[n++] = value[i];
	}
	v[n] = 0;
	const char *f[6];
	size_t fl[6];
	const char *p = v;
	for (int i = 0; i < 6; i++) {
		const char *dot = i < 5 ? strchr(p, '.') : p + strlen(p);
		if (!dot)
			return TRACK_MALFORMED;
		f[i] = p;
		fl[i] = (size_t)(dot - p);
		p = *dot ? dot + 1 : dot;
	}
	if (fl[0] != 1 || f[0][0] != '1' || fl[5] != 2 * MAC_BYTES || !get_b64url(f[1], fl[1], id, TRACK_FIELD_MAX) ||
	    !*id || !get_b64url(f[2], fl[2], rcpt, TRACK_FIELD_MAX) || !get_b64url(f[3], fl[3], source, TRACK_FIELD_MAX) ||
	    !get_b64url(f[4], fl[4], job, TRACK_FIELD_MAX))
		return TRACK_MALFORMED;
	unsigned char got[MAC_BYTES];
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 2 * MAC_BYTES; i++) {
		char c = f[5][i] >= 'A' && f[5][i] <= 'F' ? (char)(f[5][i] + 32) : f[5][i]; /* either case */
		const char *h = c ? memchr(hex, c, 16) : NULL; /* f[5]: the mac */
		if (!h)
			return TRACK_MALFORMED;
		if (i % 2 == 0)
			got[i / 2] = (unsigned char)((h - hex) << 4);
		else
			got[i / 2] |= (unsigned char)(h - hex);
	}
	unsigned char mac[32];
	mac_of(secret, secret_len, id, rcpt, source, job, mac);
	unsigned diff = 0; /* in constant time */
	for (int i = 0; i < MAC_BYTES; i++)
		diff |= (unsigned)(mac[i] ^ got[i]);
	return diff ? TRACK_FORGED : TRACK_VALID;
}
