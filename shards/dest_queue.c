/* shards/dest_queue.c - a destination's queue of transactions (legs):
 * push at the back (new work) or the front (the rest of a transaction
 * cut short by 452), pop from the front, or settle all of it at once
 * (a suspended or refusing destination). Linked into the SMTP client's
 * fuzz harness as it is, with the harness's own outcomes. */
#include "shard_internal.h"
#include <string.h>

struct leg *dest_pop(struct dest *d)
{
	struct leg *l = d->qhead;
	if (!l)
		return NULL;
	ASSERT(d->qlen > 0);
	d->qhead = l->next;
	if (!d->qhead)
		d->qtail = NULL;
	d->qlen--;
	l->next = NULL;
	return l;
}

void dest_push(struct dest *d, struct leg *l)
{
	ASSERT(l->nr > 0 && l != d->qtail);
	l->next = NULL;
	if (d->qtail)
		d->qtail->next = l;
	else
		d->qhead = l;
	d->qtail = l;
	d->qlen++;
}

void dest_move_all(struct dest *from, struct dest *to)
{
	struct leg *l;
	while ((l = dest_pop(from)))
		dest_push(to, l);
}

void dest_push_front(struct dest *d, struct leg *l)
{
	l->next = d->qhead;
	d->qhead = l;
	if (!d->qtail)
		d->qtail = l;
	d->qlen++;
}

void leg_settle(struct shard *s, struct leg *l, enum result r, uint16_t code, const char *enhanced,
                const char *why, const struct conn *c)
{
	size_t len = strlen(why);
	for (uint32_t i = 0; i < l->nr; i++)
		if (l->rt[i] != RT_RESOLVED) {
			l->rt[i] = RT_RESOLVED;
			shard_emit(s, l, i, r, code, enhanced, why, len, c, 0);
		}
	shard_leg_done(s, l);
}

void leg_wait(struct shard *s, struct leg *l, int64_t until, uint8_t waits, const char *why)
{
	if (until > l->not_before)
		l->not_before = until;
	for (uint32_t i = 0; i < l->nr; i++)
		l->waited += l->rt[i] != RT_RESOLVED;
	l->waits |= waits;
	leg_settle(s, l, RESULT_DEFERRED, 451, "4.7.0", why, NULL);
}

void dest_settle_queue(struct shard *s, struct dest *d, enum result r, uint16_t code,
                       const char *enhanced, const char *why, const struct conn *c)
{
	struct leg *l;
	while ((l = dest_pop(d)))
		leg_settle(s, l, r, code, enhanced, why, c);
}
