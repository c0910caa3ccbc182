/* engine/adaptation.h - the engine's record of the adaptations in force
 * (suspensions, slowed rates; see shards/adapt.c): what the shards'
 * events say, written to the accounting log as they come, kept in the
 * spool's state (state/.adaptation) so that a restart keeps them, sent to
 * every shard when they reach beyond one pair, and ended ("resume") when
 * their time is over. Engine thread only. */
#ifndef SLUICE_ADAPTATION_H
#define SLUICE_ADAPTATION_H
#include "lib/util.h"
#include "lib/message.h"
#include "spool.h"
#include "../shards/shard.h"

struct adaptation;

/* Reads the spool's state (what is over is dropped). */
struct adaptation *adaptation_open(struct spool *sp);
/* At start, before the shards run, and after a reload (a pair may have
 * moved): what is in force, a pair's to the shard that owns it under cfg,
 * a group's or a source IP's to every shard. */
void adaptation_send_kept(struct adaptation *a, const struct config *cfg, struct shard **shards, unsigned n);
/* An event outcome from a shard: its line goes to log, the record follows. */
void adaptation_note(struct adaptation *a, const struct outcome *o, struct buf *log,
                     struct shard **shards, unsigned n);
/* Once a loop turn: suspensions whose time is over end (their "resume"
 * line goes to log), commands a full queue refused go again, and the
 * state is saved when it changed (at most once a second unless force).
 * True when it wrote lines. */
bool adaptation_tick(struct adaptation *a, struct buf *log, struct shard **shards, unsigned n, bool force);
/* The operator's commands (sluice ctl), each with its line in log:
 * a suspension of a group, or of a pair when source is not "" (until:
 * wall ms; one in force that ends later keeps its end: returned); */
int64_t adaptation_ctl_suspend(struct adaptation *a, const struct config *cfg, const char *group, const char *source,
                               int64_t until, struct buf *log, struct shard **shards, unsigned n);
/* the end of the suspensions of group name (of its pair with source, if
 * not ""), and of job name's pause or bounce (*job: there was one);
 * returns the suspensions lifted; */
unsigned adaptation_ctl_resume(struct adaptation *a, const char *name, const char *source, struct buf *log,
                               struct shard **shards, unsigned n, bool *job);
/* a job paused (its messages wait) or bounced (they bounce), until
 * (wall ms; 0: 30 days) or resumed; rule ("ctl", "complaint-rate") and
 * why (or NULL) go in its line. */
void adaptation_ctl_hold(struct adaptation *a, const char *job, bool bounce, int64_t until, const char *rule,
                         const char *why, struct buf *log, struct shard **shards, unsigned n);
/* Is job paused (its file's rows are not handed out meanwhile)? */
bool adaptation_job_paused(struct adaptation *a, const char *job);
/* Is job paused or bounced? */
bool adaptation_job_held(struct adaptation *a, const char *job);
/* What changed is saved now (an operator's command: answered once durable). */
void adaptation_save_now(struct adaptation *a);
/* What is in force (suspensions, holds), for status: up to max. */
size_t adaptation_list(const struct adaptation *a, const struct adapt_cmd **out, size_t max);
/* Events by enum adapt_event, for the summary. */
const uint64_t *adaptation_counts(const struct adaptation *a);
void adaptation_close(struct adaptation *a);
#endif
