/* engine/claims.h - the engine's book of the spool files in flight. A claim
 * is a note in memory, not a file operation (one sluice per spool, by its
 * lock): a name of new/ that is claimed is skipped by later passes over
 * new/ until its file leaves new/ (removed, moved to active/ or bad/), and
 * an identity in use makes a reused name NAME~N. Engine thread only; the
 * spool workers and the reaper hand records back through their queues
 * (struct claim_return). */
#ifndef SLUICE_CLAIMS_H
#define SLUICE_CLAIMS_H
#include "lib/message.h"
#include "lib/strmap.h"
#include <stdbool.h>

struct claim {
	struct strmap_node by_name, by_id;
	bool in_new;          /* listed by name: new/NAME is claimed */
	bool id_used;         /* listed by id */
	bool park_asked;      /* the reaper was asked to move it to active/ */
	char *id;             /* after name, in the same allocation */
	char name[];
};

struct claims {
	struct strmap by_name, by_id;
	uint64_t seq;         /* N of the next NAME~N */
	size_t n;             /* claims held */
};

/* What a spool worker or the reaper hands back to the engine. */
struct claim_return {
	struct claim *claim;  /* or NULL */
	bool left_new;        /* its file is no longer new/NAME */
	bool id_free;         /* its identity is free again */
	struct message *refused; /* or: a job's row refused (one recipient), logged as bounced */
	char *reason;         /* why (malloc'd) */
	unsigned lane;        /* of the refused row */
	int64_t sleep_until;  /* > 0: the claim's message waits in the spool until
	                       * then (wall ms); its claim and identity stay */
	uint8_t waits;        /* WAIT_* (message.h): what may wake it early; WAIT_BUDGET: for a wave or a warm-up day (a reload that changes
	                       * them wakes it) */
};

/* Claims new/NAME: NULL if it is claimed already. Its identity is NAME,
 * or a variant while NAME is in use or too long (spool_name_variant). */
struct claim *claims_take(struct claims *c, const char *name);
/* Applies a returned record; frees the claim once its file has left new/
 * and its identity is free. */
void claims_return(struct claims *c, const struct claim_return *r);
/* The same when k's file has left new/ and its identity is free: frees k. */
void claims_release(struct claims *c, struct claim *k);
void claims_free(struct claims *c);
#endif
