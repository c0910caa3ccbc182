/* shards/throttle.c - the throttle of each (source IP, MX group) pair a
 * shard owns: how many connections it may have open, how many messages
 * each may carry, and two token buckets, one for messages (a transaction
 * takes a token when it starts) and one for new connections. A pair
 * lives on one shard only (see "Pairs and their owners" in shard.c), so
 * nothing here is shared or locked: the limits hold exactly, whatever the
 * number of shards.
 *
 * The buckets start full and hold at most `burst` tokens (by default a
 * tenth of a second's worth, see config_pair_limits): a provider that
 * counts per second or per minute sees a steady stream, never a burst. A
 * pair out of tokens keeps its legs queued and asks the loop to wake when
 * the next token is due (s->wake_at); other pairs go on. */
#include "shard_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THROTTLE_IDLE_MS 600000 /* a pair without destinations this long is forgotten */

static void wake_at(struct shard *s, int64_t wait)
{
	int64_t t = s->now + wait;
	if (!s->wake_at || t < s->wake_at)
		s->wake_at = t;
}

/* Tops b up at rate (tokens per second) to at most depth: true when it
 * holds a token now; else the loop wakes when one is due. */
static bool bucket_ready(struct shard *s, struct bucket *b, double rate, double depth)
{
	if (s->now > b->at_ms) {
		b->tokens += rate * (double)(s->now - b->at_ms) / 1000.0;
		b->at_ms = s->now;
	}
	if (b->tokens > depth)
		b->tokens = depth;
	if (b->tokens >= 1.0)
		return true;
	int64_t ms = (int64_t)ceil((1.0 - b->tokens) * 1000.0 / rate);
	wake_at(s, ms > 0 ? ms : 1);
	return false;
}

static void bucket_start(struct bucket *b, double depth, int64_t now)
{
	b->tokens = depth; /* full */
	b->at_ms = now;
}

static double conn_depth(const struct shape_limits *l)
{
	/* A tenth of a minute's worth of new connections at most at once. */
	double d = ceil(l->max_new_conn_rate * 6.0);
	return d < 1 ? 1 : d;
}

static void throttle_limits(struct shard *s, struct throttle *t)
{
	int src = t->source[0] ? config_source_index(s->cfg, t->source) : -1;
	t->src = src;
	config_pair_limits(s->cfg, src, t->group, &t->lim);
}

static void throttle_key(char *key, size_t len, const char *source, const char *group)
{
	snprintf(key, len, "%s\n%s", source ? source : "", group);
}

struct throttle *throttle_find(struct shard *s, const char *source, const char *group)
{
	char key[300];
	throttle_key(key, sizeof(key), source, group);
	struct strmap_node *n = strmap_find(&s->throttles, key);
	return n ? container_of(n, struct throttle, node) : NULL;
}

/* The pair's throttle, made on first use (one more destination uses it). */
struct throttle *throttle_get(struct shard *s, const char *source, const char *group)
{
	char key[300];
	throttle_key(key, sizeof(key), source, group);
	struct strmap_node *n = strmap_find(&s->throttles, key);
	struct throttle *t;
	if (n) {
		t = container_of(n, struct throttle, node);
	} else {
		t = xcalloc(1, sizeof(*t));
		t->key = xstrdup(key);
		t->source = xstrdup(source ? source : "");
		t->group = xstrdup(group);
		throttle_limits(s, t);
		bucket_start(&t->msgs, t->lim.burst, s->now);
		bucket_start(&t->conns, conn_depth(&t->lim), s->now);
		t->meter_at = s->now;
		strmap_insert(&s->throttles, &t->node, t->key);
		if (s->nthrs == s->thrs_cap) {
			s->thrs_cap = s->thrs_cap ? s->thrs_cap * 2 : 16;
			s->thrs = xrealloc(s->thrs, s->thrs_cap * sizeof(*s->thrs));
		}
		s->thrs[s->nthrs++] = t;
		adapt_throttle_new(s, t);
	}
	t->refs++;
	return t;
}

void throttle_put(struct shard *s, struct throttle *t)
{
	(void)s;
	ASSERT(t->refs > 0);
	if (--t->refs == 0)
		t->idle_since = s->now;
}

static void throttle_free(struct throttle *t)
{
	free(t->budgets);
	free(t->key);
	free(t->source);
	free(t->group);
	free(t);
}

/* After a reload: every pair's limits as the new configuration says
 * (tokens in hand are kept, cut to the new depth); pairs unused for a
 * while go. */
void throttles_refresh(struct shard *s, bool gc_only)
{
	unsigned keep = 0;
	int64_t wall = now_real_ms();
	for (unsigned i = 0; i < s->nthrs; i++) {
		struct throttle *t = s->thrs[i];
		adapt_budgets_gc(s, t, wall);
		if (!t->refs && !t->nconns && s->now - t->idle_since > THROTTLE_IDLE_MS &&
		    t->slow_rate <= 0 && t->suspended_until <= s->now && !t->nbudgets) { /* adaptations are kept */
			strmap_remove(&s->throttles, &t->node);
			throttle_free(t);
			continue;
		}
		if (!gc_only) {
			throttle_limits(s, t);
			throttle_rate_changed(t);
			if (t->conns.tokens > conn_depth(&t->lim))
				t->conns.tokens = conn_depth(&t->lim);
		}
		s->thrs[keep++] = t;
	}
	s->nthrs = keep;
}

void throttles_free(struct shard *s)
{
	for (unsigned i = 0; i < s->nthrs; i++)
		throttle_free(s->thrs[i]);
	free(s->thrs);
	s->thrs = NULL;
	s->nthrs = s->thrs_cap = 0;
	strmap_free(&s->throttles);
}

/* The pair's rate now (0: none) and its bucket's depth: a slowed pair's
 * depth is a tenth of a second's worth at its slow rate. */
double throttle_rate(const struct throttle *t)
{
	return t->slow_rate > 0 ? t->slow_rate : t->lim.max_rate;
}

double throttle_target_rate(const struct throttle *t)
{
	return t->lim.max_rate > 0 ? t->lim.max_rate : t->base_rate;
}

static double pair_depth(const struct throttle *t)
{
	if (t->slow_rate <= 0)
		return t->lim.burst;
	double d = ceil(t->slow_rate / 10);
	return d < 1 ? 1 : d < t->lim.burst ? d : t->lim.burst;
}

/* A slowed pair's connections shrink with its rate (at least one). */
unsigned throttle_max_conns(const struct throttle *t)
{
	if (t->slow_rate <= 0)
		return t->lim.max_connections;
	double target = throttle_target_rate(t);
	double n = target > 0 ? ceil(t->lim.max_connections * t->slow_rate / target) : t->lim.max_connections;
	return n < 1 ? 1 : n < t->lim.max_connections ? (unsigned)n : t->lim.max_connections;
}

double throttle_fill(const struct shard *s, const struct throttle *t)
{
	double rate = throttle_rate(t), depth = pair_depth(t);
	if (rate <= 0 || depth <= 0)
		return -1;
	double tokens = t->msgs.tokens;
	if (s->now > t->msgs.at_ms)
		tokens += rate * (double)(s->now - t->msgs.at_ms) / 1000.0;
	return tokens >= depth ? 1.0 : tokens <= 0 ? 0.0 : tokens / depth;
}

void throttle_rate_changed(struct throttle *t)
{
	if (t->msgs.tokens > pair_depth(t))
		t->msgs.tokens = pair_depth(t);
}

bool throttle_suspended(struct shard *s, const struct throttle *t)
{
	if (t->suspended_until <= s->now)
		return false;
	wake_at(s, t->suspended_until - s->now);
	return true;
}

/* Is a message token there (without taking it)? Else the loop wakes
 * when one is due. */
bool throttle_has_message(struct shard *s, struct dest *d)
{
	struct throttle *t = d->thr;
	if (!t)
		return true;
	if (throttle_suspended(s, t))
		return false;
	adapt_climb(s, t);
	double rate = throttle_rate(t);
	return rate <= 0 || bucket_ready(s, &t->msgs, rate, pair_depth(t));
}

bool throttle_take_message(struct shard *s, struct dest *d)
{
	if (!throttle_has_message(s, d))
		return false;
	if (d->thr) {
		if (throttle_rate(d->thr) > 0)
			d->thr->msgs.tokens -= 1.0;
		adapt_meter(s, d->thr);
	}
	return true;
}

/* May d's pair open one more connection now? (Takes the new-connection
 * token when it may; the caller opens it.) */
bool throttle_open_conn(struct shard *s, struct dest *d)
{
	struct throttle *t = d->thr;
	if (!t)
		return true;
	if (t->nconns >= throttle_max_conns(t))
		return false; /* a closing one wakes the destination (conn_noted) */
	if (throttle_suspended(s, t))
		return false;
	if (t->lim.max_new_conn_rate <= 0)
		return true;
	if (!bucket_ready(s, &t->conns, t->lim.max_new_conn_rate, conn_depth(&t->lim)))
		return false;
	t->conns.tokens -= 1.0;
	return true;
}

unsigned dest_max_per_connection(const struct shard *s, const struct dest *d)
{
	return d->thr ? d->thr->lim.max_per_connection : s->cfg->max_per_connection;
}

void throttle_conn_count(struct dest *d, int delta)
{
	if (!d->thr)
		return;
	ASSERT(delta > 0 || d->thr->nconns > 0);
	d->thr->nconns = (uint32_t)((int64_t)d->thr->nconns + delta);
}
