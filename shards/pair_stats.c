/* shards/pair_stats.c - what each (source IP, MX group) pair a shard owns
 * is doing, for `sluice status`, `sluice top` and /metrics: its open
 * connections, queued transactions, connections opened and failed, its
 * suspension and its token bucket. The shard writes a fresh copy about
 * once a second under a mutex only the engine's reads share (never on
 * the path of a message); the engine copies it out when asked. */
#include "shard_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUBLISH_MS 1000

void pair_stats_publish(struct shard *s)
{
	if (s->now < s->stats_at)
		return;
	s->stats_at = s->now + PUBLISH_MS;
	/* Queued transactions per pair: its destinations on this shard (the
	 * owner's; another shard's queue for it is on its way here). */
	for (unsigned k = 0; k < s->nthrs; k++)
		s->thrs[k]->stat_queued = 0;
	for (unsigned i = 0; i < s->ndests; i++) {
		const struct dest *d = &s->dests[i];
		if (!d->unused && d->thr && d->owner == s->index)
			d->thr->stat_queued += d->qlen;
	}
	int64_t wall = now_real_ms();
	pthread_mutex_lock(&s->stats_mu);
	if (s->stats_cap < s->nthrs) {
		s->stats_cap = s->nthrs * 2;
		s->stats = xrealloc(s->stats, s->stats_cap * sizeof(*s->stats));
	}
	s->nstats = s->nthrs;
	for (unsigned k = 0; k < s->nthrs; k++) {
		const struct throttle *t = s->thrs[k];
		struct shard_pair_stat *p = &s->stats[k];
		memset(p, 0, sizeof(*p));
		snprintf(p->source, sizeof(p->source), "%s", t->source);
		snprintf(p->group, sizeof(p->group), "%s", t->group);
		if (t->suspended_until > s->now) {
			p->suspended_until = wall + (t->suspended_until - s->now);
			snprintf(p->suspended_by, sizeof(p->suspended_by), "%s", t->suspended_by);
		}
		p->conns = t->nconns;
		p->queued = t->stat_queued;
		p->opened = t->opened;
		p->failed = t->failed;
		p->rate = throttle_rate(t);
		p->fill = throttle_fill(s, t);
	}
	pthread_mutex_unlock(&s->stats_mu);
}

size_t shard_pair_stats(struct shard *s, struct shard_pair_stat **out, size_t *cap)
{
	pthread_mutex_lock(&s->stats_mu);
	size_t n = s->nstats;
	if (*cap < n) {
		*cap = n * 2;
		*out = xrealloc(*out, *cap * sizeof(**out));
	}
	if (n)
		memcpy(*out, s->stats, n * sizeof(**out));
	pthread_mutex_unlock(&s->stats_mu);
	return n;
}

void pair_stats_free(struct shard *s)
{
	free(s->stats);
	s->stats = NULL;
	s->nstats = s->stats_cap = 0;
	pthread_mutex_destroy(&s->stats_mu);
}
