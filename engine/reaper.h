/* engine/reaper.h - the one thread that changes the spool's directories
 * after delivery: it removes the files of final messages, saves retry
 * states (moving a deferred message's file from new/ to active/), and
 * syncs job progress files, in the order the engine logged them. One
 * thread, so that removals never contend for a directory's lock (spool
 * workers only read); the engine hands it work only after the lines it
 * follows are written and synced. */
#ifndef SLUICE_REAPER_H
#define SLUICE_REAPER_H
#include "claims.h"
#include "spool.h"

struct reaper;

struct reaper *reaper_new(struct spool *sp);
void reaper_start(struct reaper *r);
/* Engine side; false if the queue is full (the engine keeps the work and
 * asks again later: while the reaper runs, only it touches the files of
 * messages in flight). m is final: its DSN is written, its file and state
 * go, m is freed, and its claim comes back (left new/, identity free;
 * kept if its file could not be removed from new/). */
bool reaper_finish(struct reaper *r, struct message *m);
/* The same for a message freed already (no DSN to write): claim k's file
 * (inode ino) and retry state go. */
bool reaper_remove(struct reaper *r, struct claim *k, struct file_print print, bool has_state);
/* Work queued and not done yet. */
uint64_t reaper_backlog(struct reaper *r);
/* Saves the retry state text (taken over on success) of identity id;
 * then, when claim is not NULL, moves new/NAME (the file of print) to
 * active/ID and hands the claim back (left new/ unless the move failed).
 * A state that cannot be saved for room waits (reaper_spool_full) while
 * removals go on; a final removal of the same identity makes it moot.
 * sleep (or NULL): the message waits in the spool; handed back once its
 * state is on disk, so that it is never read again before. */
bool reaper_save_state(struct reaper *r, const char *id, char *text, struct claim *claim, struct file_print print,
                       const struct claim_return *sleep);
/* fdatasync(fd), then close(fd): fd is the reaper's (a dup). */
bool reaper_sync(struct reaper *r, int fd);
void reaper_kick(struct reaper *r);
/* Claims handed back; false when none. */
bool reaper_returned(struct reaper *r, struct claim_return *out);
/* A retry state could not be saved (the file system is full): claim
 * nothing new until this turns false. */
bool reaper_spool_full(struct reaper *r);
/* Stops the thread after the work queued so far is done. */
void reaper_stop(struct reaper *r);
/* Frees; retry states still not saved (disk full) are dropped with a
 * warning. */
void reaper_free(struct reaper *r);
#endif
