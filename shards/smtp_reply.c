/* shards/smtp_reply.c - SMTP reply parser (see smtp_reply.h). Bounded in
 * every dimension: line length (truncated beyond 512), lines per reply,
 * bytes per reply. Anything that is not "DDD[ -]text" is an error, which
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

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r,
                     size_t *consumed, const char **err)
{
	size_t pos = 0;
	r->code = 0;
	r->enhanced[0] = 0;
	r->truncated = false;
	r->nlines = 0;
	r->text_len = 0;
	r->text[0] = 0;
	*consumed = 0;
	for (;;) {
		if (pos >= len)
			goto need_more;
		const char *line = buf + pos;
		size_t avail = len - pos;
		const char *nl = memchr(line, '\n', avail);
		if (!nl) {
			/* Check what we have so garbage fails early, not after 64 KB. */
			for (size_t i = 0; i < avail && i < 3; i++)
				if (!is_digit(line[i]))
					goto garbage;
			if (avail > 3 && line[3] != ' ' && line[3] != '-' && line[3] != '\r')
				goto garbage;
			goto need_more;
		}
		size_t line_len = (size_t)(nl - line);     /* without LF */
		size_t content = line_len;
		if (content && line[content - 1] == '\r')
			content--;
		if (content < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
			goto garbage;
		if (line[0] < '2' || line[0] > '5')
			goto garbage;
		char sep = content > 3 ? line[3] : ' ';
		if (sep != ' ' && sep != '-')
			goto garbage;
		uint16_t code = (uint16_t)((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
		if (r->nlines == 0)
			r->code = code;
		else if (code != r->code) {
			*err = "reply lines carry different codes";
			return REPLY_ERROR;
		}
		r->nlines++;
		if (r->nlines > SMTP_REPLY_LINES_MAX) {
			*err = "reply has too many lines";
			return REPLY_ERROR;
		}
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
		pos += line_len + 1;
		if (sep == ' ') {
			*consumed = pos;
			return REPLY_OK;
		}
		if (pos > SMTP_REPLY_BYTES_MAX) {
			*err = "reply longer than 64 KB";
			return REPLY_ERROR;
		}
	}
need_more:
	if (len > SMTP_REPLY_BYTES_MAX) {
		*err = "reply longer than 64 KB without an end";
		return REPLY_ERROR;
	}
	return REPLY_NEED_MORE;
garbage:
	*err = "server sent something that is not an SMTP reply";
	return REPLY_ERROR;
}
