/* engine/spool.h - the spool directory (the PowerMTA pickup convention):
 *   tmp/     producers write here (sluice never reads it)
 *   new/     producers rename finished files here; sluice reads them
 *            where they are: a claim is a note in the engine's memory
 *            (one sluice per spool, by the lock), not a file operation
 *   active/  messages that wait for a retry (moved there from new/ when
 *            first deferred, so that a producer reusing the name while
 *            they wait cannot replace them)
 *   bad/     files sluice cannot use, each with a NAME.why beside it
 *   state/   retry states of deferred messages and the progress of job
 *            files, by ID
 * sluice never replaces a file: each of its moves takes the name, or NAME~N
 * when that is taken (see spool.c).
 * A message leaves the spool (unlink) only after all its recipients are
 * final and logged. Called from the engine, the spool workers (feeder.c)
 * and the reaper, never from a shard loop. */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H
#include "lib/message.h"
#include <dirent.h>
#include <sys/stat.h>
#include <stdbool.h>

struct spool {
	char *dir;
	int new_fd, active_fd, bad_fd;
	int lock_fd;          /* SPOOL/lock, flock'ed: one sluice per spool */
	int state_fd;         /* state/: retry state of deferred messages, by ID */
	int watch_fd;         /* inotify on new/: arrivals wake the engine */
	DIR *scan;            /* open scan of new/, NULL between passes */
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
/* At start, and at exit: moves everything in active/ back to new/
 * (as ID, or ID~N when new/ID exists; its retry state follows it first).
 * Returns count. */
unsigned spool_recover(struct spool *sp);
/* Next name in new/ of any type (static storage), or NULL at the end of a
 * pass (the next call starts another). Names starting with '.' are
 * producers' temporaries and never listed. */
const char *spool_next(struct spool *sp);

/* Names: a name longer than 230 bytes is not kept as an identity or a
 * name in bad/ or active/; a variant is BASE~K, BASE the name without a
 * ~N of its own and cut to 200 bytes (at a UTF-8 character boundary). */
bool spool_name_keeps(const char *name);
void spool_name_variant(const char *name, uint64_t k, char *out, size_t len);

enum claim_result {
	CLAIM_OK,        /* *out: the message, read from new/NAME */
	CLAIM_GONE,      /* not there any more: nothing to do */
	CLAIM_BAD,       /* cannot be used: moved to bad/ with a NAME.why (why says why) */
	CLAIM_LATER,     /* (spool_claim_parked) cannot be read now: try again later */
};
/* Reads new/NAME (which the engine has claimed) as the message of identity
 * id (m->id: its retry state, its log lines, its name in active/ if it
 * must wait): NAME, or NAME~N while a message called NAME is still in
 * flight, so that a producer that reuses a name only ever adds a message.
 * m->file is NAME. Refused (to bad/): names with control characters,
 * anything but a regular file (symlinks are never followed, FIFOs never
 * opened), files larger than max_bytes, unparsable files. */
enum claim_result spool_claim(struct spool *sp, const char *name, const char *id, uint64_t max_bytes,
                              struct message **out, char *why, size_t why_len);
/* The same for a message that waited in active/ID (out of memory, see
 * "Waiting in the spool" in run.c): read from there (or from new/NAME if
 * its move there failed). A file that cannot be read there stays
 * (CLAIM_LATER, said): it is tried again later. */
enum claim_result spool_claim_parked(struct spool *sp, const char *name, const char *id, uint64_t max_bytes,
                                     struct message **out, char *why, size_t why_len);
/* Opens new/NAME (claimed) for reading if its name is acceptable and it is
 * a regular file, without following a symlink or waiting on a FIFO (its
 * type is checked before the open and again after). -1 with why set if
 * not; *err: the errno when stat or open failed (ENOENT: it is gone), 0
 * when it is refused for its name or type (it belongs in bad/). */
int spool_open_new(struct spool *sp, const char *name, struct stat *st, int *err, char *why, size_t why_len);
/* The fingerprint of a file (what a retry state or a job's progress is
 * for), and whether new/NAME still is the file of that fingerprint (a
 * producer may have renamed another file over the name since). */
struct file_print file_print_of(const struct stat *st);
bool spool_still_in_new(struct spool *sp, const char *name, const struct file_print *print);
/* Moves new/NAME to bad/ (as NAME, or NAME~N) with why in NAME.why. */
void spool_reject(struct spool *sp, const char *name, const char *why);
/* A message read from new/NAME (fingerprint print) waits for a retry:
 * moves it to active/ID, unless a producer has put another file under
 * NAME since. True when new/NAME no longer holds it (moved, or replaced);
 * false when the move failed (said; it waits in new/). */
bool spool_park(struct spool *sp, const char *name, const char *id, const struct file_print *print);
/* m is final and logged: writes its DSN if it has failures and DSNs are
 * on, removes its file and retry state (spool_remove; a job's row has
 * none), frees m. Returns spool_remove's answer (true for a row). */
bool spool_finish(struct spool *sp, struct message *m);
/* Removes a final message's file: new/NAME if it is still the file read
 * (else a producer put another there: it stays), else active/ID; and
 * state/ID if it has one. True when new/NAME no longer holds it; false
 * when it could not be removed from new/ (said: it must stay claimed, or
 * it would be delivered again and again). */
bool spool_remove(struct spool *sp, const char *name, const char *id, const struct file_print *print,
                  bool has_state);

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
