/* engine/acct_log.h - the accounting log: one JSON object a line, one line
 * per recipient per attempt, append-only. Formatting is separate from
 * writing so it can be tested without files. */
#ifndef SLUICE_ACCT_LOG_H
#define SLUICE_ACCT_LOG_H
#include "message.h"
#include "util.h"

/* Appends the JSON line (with '\n') for one outcome. */
void acct_format(struct buf *b, const struct outcome *o);

struct acct_log {
	int fd;          /* -1: no log file */
	int error;       /* errno of the last failed write */
	struct buf pending;
};

void acct_open(struct acct_log *l, const char *path);
/* Writes pending lines to the file. False when the file system refused
 * (disk full...): what was not written stays pending for the next call. */
bool acct_flush(struct acct_log *l);
void acct_close(struct acct_log *l);
#endif
