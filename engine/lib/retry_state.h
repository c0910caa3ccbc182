/* engine/lib/retry_state.h - the text of a deferred message's retry state
 * (kept by the spool in state/ID): the fingerprint of its file (inode,
 * size, mtime in ns), attempts made, first attempt and next due time (wall
 * ms), recipients already final, whether it waits for a wave or a
 * warm-up day. Pure: the spool does the file work. */
#ifndef SLUICE_RETRY_STATE_H
#define SLUICE_RETRY_STATE_H
#include "message.h"

/* A retry state as saved (see retry_state_format). */
struct retry_state {
	bool has_print;
	struct file_print print;
	long long attempt, first, due;
	const char *final;        /* the indexes after "final" */
	uint8_t waits;            /* WAIT_* (message.h) */
};

/* The state of m, due at due_wall_ms (budget: waiting for a wave or a
 * warm-up day): a malloc'd C string. */
char *retry_state_format(const struct message *m, int64_t due_wall_ms, uint8_t waits);
/* Parses text (modified in place) into st (zeroed by the caller). */
void retry_state_parse(char *text, struct retry_state *st);
/* Marks the recipients listed in final (indexes) as final in m. */
void retry_state_apply_final(struct message *m, const char *final);
#endif
