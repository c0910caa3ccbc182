/* shards/smtp_reply.h - SMTP reply parser (RFC 5321 4.2): one reply, single
 * or multi-line, from a byte buffer. Pure: no I/O, unit-tested.
 *
 * Return convention: REPLY_OK (a whole reply was parsed, *consumed bytes
 * used), REPLY_NEED_MORE (incomplete, nothing consumed), REPLY_ERROR (the
 * bytes are not an SMTP reply; *err says why). */
#ifndef SLUICE_SMTP_REPLY_H
#define SLUICE_SMTP_REPLY_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define SMTP_LINE_MAX 512        /* RFC 5321 4.5.3.1.5, incl. CRLF */
#define SMTP_REPLY_TEXT_MAX 4096 /* text kept of one (multi-line) reply */
#define SMTP_REPLY_BYTES_MAX 65536
#define SMTP_REPLY_LINES_MAX 256

enum { REPLY_ERROR = -1, REPLY_NEED_MORE = 0, REPLY_OK = 1 };

struct smtp_reply {
	uint16_t code;
	char enhanced[12];            /* "4.7.0" or "" */
	bool truncated;               /* a line was longer than SMTP_LINE_MAX */
	uint32_t nlines;
	size_t text_len;
	char text[SMTP_REPLY_TEXT_MAX]; /* lines' text joined by '\n', NUL-terminated */
};

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                     size_t *consumed, const char **err);

/* Reads an enhanced status code ("X.Y.Z" then space or end) at s whose class
 * must equal cls ('2', '4' or '5'). Copies it to out; returns its length or 0. */
size_t smtp_enhanced_code(const char *s, size_t len, char cls, char out[12]);
#endif
