/* engine/feeder.h - spool workers. Each takes (file name, lane) pairs from
 * the engine, claims the file (rename new/ -> active/), reads and parses
 * it, rejects what is malformed to bad/, and hands the message to the
 * lane's shard; and it removes the files of messages the engine has logged
 * as final. This file-system work is the largest cost per message after
 * the network and keeps every blocking call off the shards' loops. Claims
 * are cross-directory renames, which the kernel serialises per file
 * system, so a few workers serve many shards (spool-workers, default
 * min(shards, 4)): more would only spin on the same locks. Lane k is
 * served by worker k % workers, so each shard's inbox has one producer. */
#ifndef SLUICE_FEEDER_H
#define SLUICE_FEEDER_H
#include "config.h"
#include "spool.h"
#include "../shards/shard.h"

struct feeder;

/* shards[lane] for every lane this worker serves (the others may be NULL). */
struct feeder *feeder_new(unsigned index, struct spool *sp, const struct config *cfg,
                          struct shard **shards, unsigned nlanes);
void feeder_start(struct feeder *f);
/* Engine side: queue a file name (copied) for a lane; false if full. */
bool feeder_offer(struct feeder *f, const char *name, unsigned lane);
void feeder_kick(struct feeder *f);
/* Engine side, after the lines are logged, in order: m is final (the
 * worker removes its file and state, and frees it), or m's retry state
 * must be saved (text is taken over). False if the queue is full (the
 * engine then does it itself). */
bool feeder_finish(struct feeder *f, struct message *m);
bool feeder_save_state(struct feeder *f, const char *name, char *text);
/* Names of a lane finished without a message for the shard: malformed
 * (moved to bad/) or gone (another process claimed the file first). */
uint64_t feeder_unsent(struct feeder *f, unsigned lane);
/* Memory (m->claim_bytes) of all messages a lane was handed so far. */
uint64_t feeder_claimed_bytes(struct feeder *f, unsigned lane);
/* Names of a lane dealt with so far (claimed, bad or gone). */
uint64_t feeder_taken(struct feeder *f, unsigned lane);
uint64_t feeder_bad_total(struct feeder *f);
/* The spool's file system is full (a retry state or a claim failed for
 * room): claim nothing new until this turns false. */
bool feeder_spool_full(struct feeder *f);
void feeder_stop(struct feeder *f);
void feeder_free(struct feeder *f);
#endif
