/* engine/spool.h - the spool directory (the PowerMTA pickup convention):
 *   tmp/     producers write here (sluice never reads it)
 *   new/     producers rename finished files here; sluice claims from it
 *   active/  claimed by a running sluice (rename from new/)
 *   bad/     files sluice cannot use, each with a NAME.why beside it
 *   state/   retry states of deferred messages, by ID (name in active/)
 * sluice never replaces a file: each of its moves takes the name, or NAME~N
 * when that is taken (see spool.c).
 * A message leaves the spool (unlink from active/) only after all its
 * recipients are final and logged. Called from the engine and the spool
 * workers (feeder.c), never from a shard loop. */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H
#include "lib/message.h"
#include <dirent.h>
#include <stdbool.h>

struct spool {
	char *dir;
	int new_fd, active_fd, bad_fd;
	int lock_fd;          /* SPOOL/lock, flock'ed: one sluice per spool */
	int state_fd;         /* state/: retry state of deferred messages, by ID */
	int watch_fd;         /* inotify on new/: arrivals wake the engine */
	DIR *scan;            /* open scan of new/, NULL between passes */
	unsigned scan_found;  /* entries found in the current pass */
	const char *dsn_dir;  /* spool that receives DSNs for bounces, or NULL */
	const char *dsn_mta;  /* our name in them */
	_Atomic uint64_t seq; /* N of the next NAME~N */
};

/* Opens (creating what is missing) and locks the spool: a second sluice on
 * the same spool would take back the files the first one is delivering. */
void spool_open(struct spool *sp, const char *dir);
/* The inotify descriptor to poll for arrivals in new/, and a call that
 * clears it: true if anything arrived (or the event queue overflowed). */
int spool_watch_fd(const struct spool *sp);
bool spool_watch_drain(struct spool *sp);
/* After a crash, and at exit: moves everything in active/ back to new/
 * (as ID, or ID~N when new/ID exists; its retry state follows it first).
 * Returns count. */
unsigned spool_recover(struct spool *sp);
/* Next name in new/ of any type (static storage), or NULL at the end of a
 * pass; *pass_empty says whether the pass that ended found nothing at all.
 * Names starting with '.' are producers' temporaries and never listed. */
const char *spool_next(struct spool *sp, bool *pass_empty);

enum claim_result {
	CLAIM_OK,        /* *out: the message, in active/ under m->id */
	CLAIM_GONE,      /* another process took it first: nothing to do */
	CLAIM_NO_ROOM,   /* the file system is full (why says so): it stays in new/ */
	CLAIM_BAD,       /* cannot be used: moved to bad/ with a NAME.why (why says why) */
};
/* Claims new/NAME into active/ and reads it. The message's identity
 * (m->id: its name in active/, its retry state, its log lines) is NAME, or
 * NAME~N when a message called NAME is still in active/: a producer that
 * reuses a name only ever adds a message. m->file is NAME. Refused (to
 * bad/): names with control characters, anything but a regular file
 * (symlinks are never followed, FIFOs never opened), files larger than
 * max_bytes, unparsable files. */
enum claim_result spool_claim(struct spool *sp, const char *name, uint64_t max_bytes,
                              struct message **out, char *why, size_t why_len);
/* m is final and logged: writes its DSN if it has failures and DSNs are
 * on, removes active/ID and its retry state, frees m. */
void spool_finish(struct spool *sp, struct message *m);

/* Retry state of a deferred message (text: engine/lib/retry_state.h), in
 * state/ID, replaced atomically. */
/* 0, or the errno that kept it from being saved (ENOSPC on a full disk). */
int spool_state_write(struct spool *sp, const char *name, const char *text);
/* Applies state/ID to a freshly parsed m if there is one and its
 * fingerprint is m's file's (else it belongs to another file: ignored, with
 * a warning, and replaced or removed later). */
void spool_state_load(struct spool *sp, struct message *m);
void spool_state_remove(struct spool *sp, const char *name);
void spool_close(struct spool *sp);
#endif
