/* shards/smtp_reply.c - SMTP reply parser (see smtp_reply.h). Bounded in
 * every dimension: line length (truncated beyond 512, an error past 64 KB
 * without an end), text kept, bytes per reply; lines are taken as they
 * come, so a reply may have any number of them. Anything that is not "DDD[ -]text" is an error, which
 * the client turns into a deferral, never a crash. */
#include "smtp_reply.h"
#include <string.h>

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

size_t smtp_enhanced_code(const char *s, size_t len, char cls, char out[12])
{
	size_t i = 0;
	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && is_digit(s[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ' && s[i] != '\t')
		return 0;
	if (i >= 12)
		return 0;
	memcpy(out, s, i);
	out[i] = 0;
	return i;
}

static void add_text(struct smtp_reply *r, const char *t, size_t n)
{
	if (r->nlines > 1 && r->text_len + 1 < sizeof(r->text))
		r->text[r->text_len++] = '\n';
	size_t room = sizeof(r->text) - 1 - r->text_len;
	if (n > room) {
		n = room;
		r->truncated = true;
	}
	memcpy(r->text + r->text_len, t, n);
	r->text_len += n;
	r->text[r->text_len] = 0;
}

void smtp_reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->enhanced[0] = 0;
	r->truncated = false;
	r->in_progress = false;
	r->nlines = 0;
	r->bytes = 0;
	r->text_len = 0;
	r->text[0] = 0;
}

/* The start of a line with no end yet: garbage fails now, not after 64 KB. */
static bool partial_line_plausible(const char *line, size_t avail)
{
	for (size_t i = 0; i < avail && i < 3; i++)
		if (!is_digit(line[i]))
			return false;
	return avail <= 3 || line[3] == ' ' || line[3] == '-' || line[3] == '\r';
}

/* One complete line (without its LF): checked, taken into r. Returns
 * REPLY_OK for the last line, REPLY_NEED_MORE for a continuation. */
static int take_line(struct smtp_reply *r, const char *line, size_t line_len, const char **err)
{
	size_t content = line_len;
	if (content && line[content - 1] == '\r')
		content--;
	if (content < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
	    line[0] < '2' || line[0] > '5') {
		*err = "server sent something that is not an SMTP reply";
		return REPLY_ERROR;
	}
	char sep = content > 3 ? line[3] : ' ';
	if (sep != ' ' && sep != '-') {
		*err = "server sent something that is not an SMTP reply";
		return REPLY_ERROR;
	}
	uint16_t code = (uint16_t)((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
	if (r->nlines == 0)
		r->code = code;
	else if (code != r->code) {
		*err = "reply lines carry different codes";
		return REPLY_ERROR;
	}
	r->nlines++;
	const char *text = content > 4 ? line + 4 : line + content;
	size_t text_len = content > 4 ? content - 4 : 0;
	if (line_len + 1 > SMTP_LINE_MAX) {
		r->truncated = true;
		if (text_len > SMTP_LINE_MAX - 6)
			text_len = SMTP_LINE_MAX - 6;
	}
	if (r->nlines == 1)
		smtp_enhanced_code(text, text_len, line[0], r->enhanced);
	add_text(r, text, text_len);
	if (r->on_line)
		r->on_line(r->on_line_arg, r->nlines - 1, text, text_len);
	return sep == ' ' ? REPLY_OK : REPLY_NEED_MORE;
}

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                     size_t *consumed, const char **err)
{
	if (!r->in_progress)
		smtp_reply_reset(r);
	size_t pos = 0;
	*consumed = 0;
	while (pos < len) {
		const char *line = buf + pos;
		size_t avail = len - pos;
		const char *nl = memchr(line, '\n', avail);
		if (!nl) {
			if (!partial_line_plausible(line, avail)) {
				*err = "server sent something that is not an SMTP reply";
				goto error;
			}
			if (avail > SMTP_LINE_HARD_MAX) {
				*err = "reply line longer than 64 KB without an end";
				goto error;
			}
			break;
		}
		size_t line_len = (size_t)(nl - line);
		if (line_len > SMTP_LINE_HARD_MAX) { /* the same however TCP split it */
			*err = "reply line longer than 64 KB";
			goto error;
		}
		int rc = take_line(r, line, line_len, err);
		if (rc == REPLY_ERROR)
			goto error;
		pos += line_len + 1;
		r->bytes += line_len + 1;
		*consumed = pos;
		if (rc == REPLY_OK) {
			r->in_progress = false;
			return REPLY_OK;
		}
		if (r->bytes > SMTP_REPLY_BYTES_MAX) {
			*err = "reply longer than 1 MiB";
			goto error;
		}
	}
	r->in_progress = r->nlines > 0;
	return REPLY_NEED_MORE;
error:
	r->in_progress = false;
	return REPLY_ERROR;
}
