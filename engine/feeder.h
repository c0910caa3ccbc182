/* engine/feeder.h - a spool worker per shard: takes file names from the
 * engine, claims each file (rename new/ -> active/), reads and parses it,
 * rejects what is malformed to bad/, and hands the message to its shard;
 * and removes the files of messages the engine has logged as final.
 * The file-system work of a claim (rename, open, read) is the largest cost
 * per message after the network; one worker per shard spreads it over the
 * cores, and keeps every blocking call off the shards' loops. */
#ifndef SLUICE_FEEDER_H
#define SLUICE_FEEDER_H
#include "config.h"
#include "spool.h"
#include "../shards/shard.h"
#include <stdatomic.h>

struct feeder;

struct feeder *feeder_new(unsigned index, struct spool *sp, const struct config *cfg, struct shard *sh);
void feeder_start(struct feeder *f);
/* Engine side: queue a file name (copied); false if the queue is full. */
bool feeder_offer(struct feeder *f, const char *name);
void feeder_kick(struct feeder *f);
/* Engine side: m is final and logged; the feeder removes its file and
 * frees it. False if the queue is full (the engine then does it). */
bool feeder_finish(struct feeder *f, struct message *m);
/* Names this feeder finished without a message for the shard: malformed
 * (moved to bad/) or gone (another process claimed it first). */
uint64_t feeder_bad(struct feeder *f);
uint64_t feeder_gone(struct feeder *f);
void feeder_stop(struct feeder *f);
void feeder_free(struct feeder *f);
#endif
