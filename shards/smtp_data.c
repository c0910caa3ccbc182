/* shards/smtp_data.c - dot-stuffing (see smtp_data.h). */
#include "smtp_data.h"
#include <string.h>

void smtp_data_stuff(struct buf *out, const char *body, size_t len)
{
	buf_reserve(out, len + len / 64 + 8);
	size_t i = 0;
	while (i < len) {
		/* i is at the start of a line. */
		if (body[i] == '.')
			buf_add(out, ".", 1);
		const char *nl = memchr(body + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - body) + 1 : len;
		buf_add(out, body + i, end - i);
		i = end;
	}
	if (len < 2 || body[len - 2] != '\r' || body[len - 1] != '\n')
		buf_add(out, "\r\n", 2);
	buf_add(out, ".\r\n", 3);
}
