/* engine/spool.h - the spool directory (the PowerMTA pickup convention):
 *   tmp/     producers write here (sluice never reads it)
 *   new/     producers rename finished files here; sluice claims from it
 *   active/  claimed by a running sluice (rename from new/)
 *   bad/     files sluice cannot parse, each with a NAME.why beside it
 * A message leaves the spool (unlink from active/) only after all its
 * recipients are final and logged. Called from the engine thread only. */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H
#include "message.h"
#include <dirent.h>
#include <stdbool.h>

struct spool {
	char *dir;
	int new_fd, active_fd, bad_fd;
	int lock_fd;          /* SPOOL/lock, flock'ed: one sluice per spool */
	int state_fd;         /* state/: retry state of deferred messages, by name */
	int watch_fd;         /* inotify on new/: arrivals wake the engine */
	DIR *scan;            /* open scan of new/, NULL between passes */
	unsigned scan_found;  /* entries found in the current pass */
	const char *dsn_dir;  /* spool that receives DSNs for bounces, or NULL */
	const char *dsn_mta;  /* our name in them */
};

/* Opens (creating what is missing) and locks the spool: a second sluice on
 * the same spool would take back the files the first one is delivering. */
void spool_open(struct spool *sp, const char *dir);
/* The inotify descriptor to poll for arrivals in new/, and a call that
 * clears it: true if anything arrived (or the event queue overflowed). */
int spool_watch_fd(const struct spool *sp);
bool spool_watch_drain(struct spool *sp);
/* After a crash: moves everything in active/ back to new/. Returns count. */
unsigned spool_recover(struct spool *sp);
/* Next file name in new/ (static storage), or NULL at the end of a pass;
 * *pass_empty says whether the pass that ended found nothing at all. */
const char *spool_next(struct spool *sp, bool *pass_empty);
/* Claims new/NAME into active/ and reads it. Returns the message, or NULL
 * with *gone set when another process took it first (or, with why set, when
 * the file system is full: it stays in new/), or NULL with why set
 * when the file cannot be used (the caller moves it to bad/). */
struct message *spool_claim(struct spool *sp, const char *name, uint64_t max_bytes,
                            bool *gone, char *why, size_t why_len);
/* Moves active/NAME to bad/NAME and writes bad/NAME.why. */
void spool_reject(struct spool *sp, const char *name, const char *why);
/* m is final and logged: writes its DSN if it has failures and DSNs are
 * on, removes active/NAME and its retry state, frees m. */
void spool_finish(struct spool *sp, struct message *m);
void spool_release(struct spool *sp, const char *name);   /* active/NAME -> new/ */

/* Retry state of a deferred message, in state/NAME (text, replaced
 * atomically): attempts made, first attempt and next due time (wall ms),
 * recipients already final. */
char *spool_state_format(const struct message *m, int64_t due_wall_ms);
/* 0, or the errno that kept it from being saved (ENOSPC on a full disk). */
int spool_state_write(struct spool *sp, const char *name, const char *text);
/* Applies state/NAME to a freshly parsed m if there is one. */
void spool_state_load(struct spool *sp, struct message *m);
void spool_state_remove(struct spool *sp, const char *name);
void spool_close(struct spool *sp);
#endif
