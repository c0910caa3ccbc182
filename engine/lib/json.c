/* engine/lib/json.c - JSON string escaping (see json.h). */
#include "json.h"
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
	else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
	else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
	else return 0;
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void json_add_string(struct buf *b, const char *s, size_t len)
{
	if (!s) {
		buf_add(b, "null", 4);
		return;
	}
	buf_reserve(b, len + 2);
	b->p[b->len++] = '"';
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			size_t j = i;
			while (j < len && u[j] >= 0x20 && u[j] < 0x7f && u[j] != '"' && u[j] != '\\')
				j++;
			buf_add(b, s + i, j - i);
			i = j;
			continue;
		}
		if (c == '"') buf_add(b, "\\\"", 2);
		else if (c == '\\') buf_add(b, "\\\\", 2);
		else if (c == '\n') buf_add(b, "\\n", 2);
		else if (c == '\r') buf_add(b, "\\r", 2);
		else if (c == '\t') buf_add(b, "\\t", 2);
		else if (c < 0x20 || c == 0x7f) buf_printf(b, "\\u%04x", c);
		else {
			size_t n = utf8_seq_len(u + i, len - i);
			if (n == 0) {
				buf_add(b, "\\ufffd", 6);
				i++;
				continue;
			}
			buf_add(b, s + i, n);
			i += n;
			continue;
		}
		i++;
	}
	buf_add(b, "\"", 1);
}

void json_add_cstr(struct buf *b, const char *s)
{
	json_add_string(b, s, s ? strlen(s) : 0);
}
