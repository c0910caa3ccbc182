/* engine/acct_log.h - the accounting log: one JSON object a line, one line
 * per recipient per attempt, append-only. Formatting is separate from
 * writing so it can be tested without files. */
#ifndef SLUICE_ACCT_LOG_H
#define SLUICE_ACCT_LOG_H
#include "lib/message.h"
#include "lib/util.h"
#include <pthread.h>

/* Appends the JSON line (with '\n') for one outcome. */
void acct_format(struct buf *b, const struct outcome *o);
/* An adaptation's line (OUTCOME_EVENT): ts, event, source, group, scope
 * and until (suspensions), rate and rate_before (messages per second),
 * rule, code, enhanced, response. */
void acct_format_event(struct buf *b, const struct outcome *o);
/* The start of another event's line: {"ts":...,"event":"NAME" (the caller
 * adds its fields and "}\n"). */
void acct_event_open(struct buf *b, int64_t ts_ms, const char *event);
/* The start of any line: {"ts":... */
void acct_line_open(struct buf *b, int64_t ts_ms);
/* ,"code":..,"enhanced":..,"response":.. (code 0 and "" enhanced: null;
 * text len bytes, any bytes). */
void acct_add_reply(struct buf *b, unsigned code, const char *enhanced, const char *text, size_t len);
/* A time as the log writes it: "2026-11-26T05:30:36.421Z", quoted. */
void acct_add_ts(struct buf *b, int64_t ms);

struct acct_log {
	int fd;          /* -1: no log file */
	int error;       /* errno of the last failed write */
	struct buf pending;
	/* fdatasync runs on its own thread so the engine keeps going while
	 * the disk works; one sync at a time. */
	pthread_t syncer;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool sync_wanted, sync_running, sync_finished, quit;
	int sync_error;
	int notify_fd;   /* written when a sync finishes */
	bool no_sync;    /* log-fsync = false: syncs finish at once */
};

/* notify_fd: an eventfd the engine polls, written after each sync. */
void acct_open(struct acct_log *l, const char *path, int notify_fd);
/* Writes pending lines to the file. False when the file system refused
 * (disk full...): what was not written stays pending for the next call. */
bool acct_flush(struct acct_log *l);
/* Makes what was written so far durable (fdatasync), so that a power cut
 * cannot lose the lines of a file removed after it: acct_sync_start()
 * begins one (false if one is still running), acct_sync_done() says
 * whether the last one has finished (then *err: 0 or its errno). */
bool acct_sync_start(struct acct_log *l);
bool acct_sync_done(struct acct_log *l, int *err);
/* SIGHUP: writes what is pending, then appends to path from now on (the
 * file may have been rotated away). False, keeping the old file, if path
 * cannot be opened. */
bool acct_reopen(struct acct_log *l, const char *path);
void acct_close(struct acct_log *l);
#endif
