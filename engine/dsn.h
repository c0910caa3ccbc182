/* engine/dsn.h - delivery status notifications (RFC 3464): when a message
 * ends with recipients bounced or expired, a multipart/report addressed to
 * its envelope sender is written into a spool's new/ (the same pickup
 * format sluice reads, so sluice or any MTA delivers it). Never for a
 * message from the null sender (no bounce of a bounce). The accounting
 * log stays the first-class bounce record; DSNs are optional. */
#ifndef SLUICE_DSN_H
#define SLUICE_DSN_H
#include "lib/message.h"
#include "lib/util.h"

/* Adds o (a bounced or expired outcome) to m's list. */
void dsn_note(struct message *m, const struct outcome *o);
/* Writes the DSN for m's list into spool_dir/new (via tmp/, fsync'd);
 * false with err set on failure. Nothing to do (empty list or null
 * sender) is success. reporting_mta: our name (the HELO name). */
bool dsn_write(const char *spool_dir, const char *reporting_mta, const struct message *m,
               char *err, size_t err_len);
/* The message text, for tests: envelope lines then RFC 5322 message.
 * token (at most DSN_TOKEN_MAX bytes with its NUL) makes its Message-ID
 * and MIME boundary unique. */
#define DSN_TOKEN_MAX 64
void dsn_format(struct buf *b, const char *reporting_mta, const struct message *m, int64_t now_ms,
                const char *token);
#endif
