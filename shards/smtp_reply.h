/* shards/smtp_reply.h - SMTP reply parser (RFC 5321 4.2): one reply, single
 * or multi-line, from a byte buffer, line by line. Pure: no I/O,
 * unit-tested and fuzzed.
 *
 * Incremental: a reply may arrive over many reads. Each call consumes the
 * complete lines it finds (the caller drops *consumed bytes) and keeps
 * the reply's state in r, so memory stays bounded however many lines a
 * reply has (a 1,000-line EHLO answer is fine): only the first
 * SMTP_REPLY_TEXT_MAX bytes of text are kept, and on_line, when set, sees
 * every line's text as it is parsed.
 *
 * Return convention: REPLY_OK (the reply's last line was consumed),
 * REPLY_NEED_MORE (no last line yet; *consumed may be > 0: those lines
 * were taken into r), REPLY_ERROR (the bytes are not an SMTP reply, or it
 * is over its bounds; *err says why). After REPLY_OK or REPLY_ERROR the
 * next call starts a new reply. */
#ifndef SLUICE_SMTP_REPLY_H
#define SLUICE_SMTP_REPLY_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define SMTP_LINE_MAX 512        /* RFC 5321 4.5.3.1.5, incl. CRLF: longer lines are truncated */
#define SMTP_LINE_HARD_MAX 65536 /* a line without an end past this is an error */
#define SMTP_REPLY_TEXT_MAX 4096 /* text kept of one (multi-line) reply */
#define SMTP_REPLY_BYTES_MAX (1u << 20) /* a whole reply, all lines */

enum { REPLY_ERROR = -1, REPLY_NEED_MORE = 0, REPLY_OK = 1 };

struct smtp_reply {
	uint16_t code;
	char enhanced[12];            /* "4.7.0" or "" */
	bool truncated;               /* a line was longer than SMTP_LINE_MAX, or text was cut */
	bool in_progress;             /* lines of an unfinished reply are in here */
	uint32_t nlines;
	size_t bytes;                 /* of the reply so far */
	size_t text_len;
	char text[SMTP_REPLY_TEXT_MAX]; /* lines' text joined by '\n', NUL-terminated;
	                               * a NUL from the server stays (text_len counts it) */
	/* Optional: each line's text (without code and separator), as parsed. */
	void (*on_line)(void *arg, uint32_t lineno, const char *text, size_t len);
	void *on_line_arg;
};

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                     size_t *consumed, const char **err);
/* Forgets a reply in progress (a new connection). */
void smtp_reply_reset(struct smtp_reply *r);

/* Reads an enhanced status code ("X.Y.Z" then space or end) at s whose class
 * must equal cls ('2', '4' or '5'). Copies it to out; returns its length or 0. */
size_t smtp_enhanced_code(const char *s, size_t len, char cls, char out[12]);
#endif
