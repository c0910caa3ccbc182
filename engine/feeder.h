/* engine/feeder.h - spool workers. Each takes work for its lanes from the
 * engine — a claimed file of new/ to read, or a job file's row to render —
 * parses it, rejects what is malformed to bad/ (or refuses the row), and
 * hands the message to the lane's shard. They only read the spool's
 * directories (the reaper alone removes), so several never contend;
 * spool-workers (default min(shards, 4)) of them serve the shards, lane k
 * by worker k % workers, so each shard's inbox has one producer. What
 * they give back (a claim whose file is gone or bad, a refused row) goes
 * to the engine through their return queue. */
#ifndef SLUICE_FEEDER_H
#define SLUICE_FEEDER_H
#include "claims.h"
#include "config.h"
#include "job_run.h"
#include "spool.h"
#include "../shards/shard.h"

struct feeder;

/* shards[lane] for every lane this worker serves (the others may be NULL);
 * tasks: at most this many are ever queued (the engine's bound). */
struct suppress;
/* store: the suppression list each recipient is checked against (NULL: none). */
struct feeder *feeder_new(unsigned index, struct spool *sp, const struct config *cfg, struct suppress *store,
                          struct shard **shards, unsigned nlanes, unsigned tasks);
void feeder_start(struct feeder *f);
/* Engine side: read claim k's file for a lane (parked: a message that
 * waited in active/, see spool_claim_parked); render a job's row (its
 * record is taken over) for a lane. False if the queue is full. */
bool feeder_offer(struct feeder *f, struct claim *k, bool parked, unsigned lane);
bool feeder_offer_row(struct feeder *f, struct job_run *j, struct job_row *row, unsigned lane);
void feeder_kick(struct feeder *f);
/* Records given back; false when none. */
bool feeder_returned(struct feeder *f, struct claim_return *out);
/* Work of a lane finished without a message for the shard: a file gone,
 * or moved to bad/ (refused rows are not counted: they are logged). */
uint64_t feeder_unsent(struct feeder *f, unsigned lane);
/* Memory (m->claim_bytes) of all messages a lane was handed so far. */
uint64_t feeder_claimed_bytes(struct feeder *f, unsigned lane);
/* Work of a lane dealt with so far (claimed, bad, gone, rendered, refused). */
uint64_t feeder_taken(struct feeder *f, unsigned lane);
uint64_t feeder_bad_total(struct feeder *f);
void feeder_stop(struct feeder *f);
/* Frees; records not collected are dropped (the engine frees the claims). */
void feeder_free(struct feeder *f);
#endif
