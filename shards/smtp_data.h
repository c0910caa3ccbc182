/* shards/smtp_data.h - message content on the wire: dot-stuffing for DATA
 * (RFC 5321 4.5.2) and the end-of-data marker. Pure, unit-tested. The input
 * is always CRLF-normalised already (envelope.c), so this is byte-exact. */
#ifndef SLUICE_SMTP_DATA_H
#define SLUICE_SMTP_DATA_H
#include "../engine/lib/util.h"

/* Appends body (CRLF lines, ending in CRLF) dot-stuffed, then ".\r\n". */
void smtp_data_stuff(struct buf *out, const char *body, size_t len);
#endif
