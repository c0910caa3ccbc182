/* shards/adapt.c - adaptation: what a shard does when a server's reply
 * matches a reply rule (config adaptation.rules, then the shipped
 * responses.conf; the first match wins), and the state that follows on
 * the throttles of the (source IP, MX group) pairs it owns:
 *   slow     the pair's rate (and with it its connections) is multiplied
 *            by the rule's factor (at most
 *            once per holdoff: the replies to one overshoot are one event),
 *            then climbs back by a share of the configured rate after each
 *            increase-every without another slow-down (AIMD), until it is
 *            the configured rate again ("restore");
 *   suspend  the pair (or every pair of the group, or of the source IP)
 *            sends nothing until the rule's duration has passed: its queue
 *            waits, its idle connections QUIT;
 *   bounce / defer  the recipient's result, whatever the code says.
 * Only refusals (code >= 400) are matched (reply_rules.c), each rule's
 * code and enhanced code before its regular expression: clean traffic
 * costs nothing here. Each shard compiles the rules' expressions for
 * itself (glibc's regexec locks a compiled expression).
 *
 * Every action is an event outcome (a line of its own in the accounting
 * log). The engine keeps the actions in force in the spool's state and
 * sends a suspension of a group or source IP to every shard (adapt_cmd):
 * other shards own other pairs of that group or IP. At start it sends
 * what the state kept, so that a restart keeps suspensions and slowed
 * rates. */
#include "shard_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_AHEAD_MS (400LL * 86400 * 1000)

/* ---- the rules ---- */

void adapt_rules_compile(struct shard *s)
{
	reply_matcher_free(&s->rules);
	reply_matcher_init(&s->rules, s->cfg->reply_rules, s->cfg->nreply_rules);
}

void adapt_budgets_changed(struct shard *s)
{
	/* New caps (a reload): full waves and days are found again by the
	 * pairs' owners (their counts stay). */
	s->nfulls = 0;
}

void adapt_budgets_gc(struct shard *s, struct throttle *t, int64_t wall)
{
	unsigned keep = 0;
	for (unsigned i = 0; i < t->nbudgets; i++)
		if (t->budgets[i].end_wall > wall)
			t->budgets[keep++] = t->budgets[i];
	t->nbudgets = keep;
}

/* ---- events ---- */

/* An event outcome (see enum adapt_event): its caller adds the rate or
 * the suspension and puts it in the outbox. */
static void event_new(struct outcome *o, enum adapt_event ev, const char *source, const char *group,
                      const struct reply_rule *rule, const struct smtp_reply *r)
{
	memset(o, 0, sizeof(*o));
	o->kind = OUTCOME_EVENT;
	o->result = (uint8_t)ev;
	o->ts_ms = now_real_ms();
	if (r) {
		o->code = r->code;
		memcpy(o->enhanced, r->enhanced, sizeof(o->enhanced));
	}
	outcome_set_text(o, r ? r->text : NULL, r ? r->text_len : 0, rule ? rule->name : NULL,
	                 group && *group ? group : NULL);
	snprintf(o->source, sizeof(o->source), "%s", source ? source : "");
}

/* A change of t's rate, from before. */
static void rate_event(struct shard *s, enum adapt_event ev, const struct throttle *t, double before,
                       const struct reply_rule *rule, const struct smtp_reply *r)
{
	struct outcome o;
	event_new(&o, ev, t->source, t->group, rule, r);
	o.rate = throttle_rate(t); /* restored: the configured (0: none) */
	o.rate_before = before;
	o.base_rate = throttle_target_rate(t);
	shard_outbox_put(s, &o);
}

/* ---- slow-downs (AIMD) ---- */

/* Messages per second the pair started lately (for a pair without a
 * configured rate, what a slow-down starts from). */
static double meter_rate(const struct shard *s, const struct throttle *t)
{
	double r = t->meter_rate;
	int64_t span = s->now - t->meter_at;
	if (span >= 200 && t->meter_n * 1000.0 / (double)span > r)
		r = t->meter_n * 1000.0 / (double)span;
	return r > 1 ? r : 1;
}

void adapt_meter(struct shard *s, struct throttle *t)
{
	t->meter_n++;
	int64_t span = s->now - t->meter_at;
	if (span >= 1000) {
		t->meter_rate = t->meter_n * 1000.0 / (double)span;
		t->meter_n = 0;
		t->meter_at = s->now;
	}
}

static void slow_down(struct shard *s, struct throttle *t, const struct reply_rule *rule,
                      const struct smtp_reply *r)
{
	const struct adapt_params *a = &s->cfg->adapt;
	if (t->slow_rate > 0 && s->now - t->slowed_at < a->holdoff_ms)
		return; /* the same overshoot answered on several connections */
	double before = t->slow_rate > 0 ? t->slow_rate : t->lim.max_rate > 0 ? t->lim.max_rate : meter_rate(s, t);
	if (t->slow_rate <= 0)
		t->base_rate = before;
	double after = before * (rule->factor > 0 ? rule->factor : a->slow_factor);
	t->slow_rate = after > a->floor ? after : a->floor;
	t->slowed_at = t->stepped_at = s->now;
	throttle_rate_changed(t);
	rate_event(s, EVENT_SLOW, t, before, rule, r);
}

/* Called before the pair's rate is used: a step back up when it has been
 * clean for increase-every. */
void adapt_climb(struct shard *s, struct throttle *t)
{
	const struct adapt_params *a = &s->cfg->adapt;
	if (t->slow_rate <= 0 || s->now - t->stepped_at < a->increase_every_ms)
		return;
	double target = throttle_target_rate(t), before = t->slow_rate;
	t->slow_rate += target * a->increase;
	t->stepped_at = s->now;
	bool restored = t->slow_rate >= target;
	if (restored)
		t->slow_rate = 0;
	throttle_rate_changed(t);
	rate_event(s, restored ? EVENT_RESTORE : EVENT_SPEEDUP, t, before, NULL, NULL);
}

/* ---- suspensions ---- */

/* The adaptations in force that reach beyond a throttle (struct
 * adapt_ban): kept by key (kind, scope, job, source, group), at most one
 * each, so that a restart or a reload that sends them again adds nothing;
 * looked up by key when a throttle or a budget is made (no scan); the ones
 * over go at the shard's GC (adapt_gc). Full budgets are a list of their
 * own (s->fulls), read for every recipient while there are any. */

static void ban_key(char *out, size_t len, uint8_t kind, uint8_t scope, const char *job, const char *source,
                    const char *group)
{
	snprintf(out, len, "%u %u %.63s\x1f%.47s\x1f%.255s", kind, scope, job, source, group);
}

static struct adapt_ban *ban_find(const struct shard *s, uint8_t kind, uint8_t scope, const char *job,
                                  const char *source, const char *group)
{
	char key[sizeof(((struct adapt_ban *)0)->key)];
	ban_key(key, sizeof(key), kind, scope, job, source, group);
	struct strmap_node *n = strmap_find(&s->ban_index, key);
	struct adapt_ban *b = n ? container_of(n, struct adapt_ban, node) : NULL;
	return b && b->until > s->now ? b : NULL;
}

static void ban_apply(struct shard *s, struct adapt_ban *b, struct throttle *t)
{
	if (b->kind == ADAPT_CMD_SUSPEND) {
		if (b->until > t->suspended_until) {
			t->suspended_until = b->until;
			snprintf(t->suspended_by, sizeof(t->suspended_by), "%s", b->rule);
		}
	} else if (b->kind == ADAPT_CMD_SLOW) {
		if (t->slow_rate <= 0) {
			t->slow_rate = b->rate;
			t->base_rate = b->base;
			t->slowed_at = t->stepped_at = s->now;
			throttle_rate_changed(t);
		}
		b->until = 0; /* taken by its pair: a later one climbs back by itself */
	} else if (b->kind == ADAPT_CMD_COUNT) { /* a count kept by the engine */
		for (unsigned i = 0; i < t->nbudgets; i++) {
			struct budget *g = &t->budgets[i];
			if (g->period == b->period && strcmp(g->job, b->job) == 0 && b->count > g->used)
				g->used = b->count;
		}
	}
}

/* A new throttle takes the suspensions and the slowed rate in force for
 * it (its counts: budget_of). */
void adapt_throttle_new(struct shard *s, struct throttle *t)
{
	struct adapt_ban *b;
	if ((b = ban_find(s, ADAPT_CMD_SUSPEND, SCOPE_PAIR, "", t->source, t->group)))
		ban_apply(s, b, t);
	if ((b = ban_find(s, ADAPT_CMD_SUSPEND, SCOPE_GROUP, "", "", t->group)))
		ban_apply(s, b, t);
	if ((b = ban_find(s, ADAPT_CMD_SUSPEND, SCOPE_SOURCE, "", t->source, "")))
		ban_apply(s, b, t);
	if ((b = ban_find(s, ADAPT_CMD_SLOW, SCOPE_PAIR, "", t->source, t->group)))
		ban_apply(s, b, t);
}

/* Puts p in force (a suspension's end: the later; a count: the larger of
 * its period; the rest: p's) and applies it to the throttles it covers. */
static struct adapt_ban *ban_put(struct shard *s, const struct adapt_ban *p)
{
	char key[sizeof(p->key)];
	ban_key(key, sizeof(key), p->kind, p->scope, p->job, p->source, p->group);
	struct strmap_node *n = strmap_find(&s->ban_index, key);
	struct adapt_ban *b;
	if (n) {
		b = container_of(n, struct adapt_ban, node);
		if (p->kind == ADAPT_CMD_SUSPEND && b->until > s->now && b->until > p->until)
			return b;
		if (p->kind == ADAPT_CMD_COUNT && b->until > s->now && b->period == p->period && b->count > p->count)
			return b;
		struct strmap_node keep = b->node; /* its key (the same) stays */
		*b = *p;
		b->node = keep;
		memcpy(b->key, key, sizeof(key));
	} else {
		if (s->nbans == s->bans_cap) {
			s->bans_cap = s->bans_cap ? s->bans_cap * 2 : 8;
			s->bans = xrealloc(s->bans, s->bans_cap * sizeof(*s->bans));
		}
		b = s->bans[s->nbans++] = xmalloc(sizeof(*b));
		*b = *p;
		memcpy(b->key, key, sizeof(key));
		strmap_insert(&s->ban_index, &b->node, b->key);
	}
	if (b->scope == SCOPE_PAIR) { /* the one throttle, if made */
		struct throttle *t = throttle_find(s, b->source, b->group);
		if (t)
			ban_apply(s, b, t);
	} else {
		for (unsigned i = 0; i < s->nthrs; i++)
			if (b->scope == SCOPE_GROUP ? strcmp(b->group, s->thrs[i]->group) == 0
			                            : strcmp(b->source, s->thrs[i]->source) == 0)
				ban_apply(s, b, s->thrs[i]);
	}
	return b;
}

static struct adapt_ban ban_proto(uint8_t kind, uint8_t scope, const char *job, const char *source,
                                  const char *group, int64_t until)
{
	struct adapt_ban p;
	memset(&p, 0, sizeof(p));
	p.kind = kind;
	p.scope = scope;
	snprintf(p.job, sizeof(p.job), "%s", job ? job : "");
	snprintf(p.source, sizeof(p.source), "%s", source ? source : "");
	snprintf(p.group, sizeof(p.group), "%s", group ? group : "");
	p.until = until;
	return p;
}

/* How many job holds (pauses, bounces) are in force: none, and a
 * message's job is never looked up. */
static void count_job_holds(struct shard *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nbans; i++)
		n += (s->bans[i]->kind == ADAPT_CMD_PAUSE || s->bans[i]->kind == ADAPT_CMD_BOUNCE) &&
		     s->bans[i]->until > s->now;
	s->job_holds = n;
}

const struct adapt_ban *adapt_job_hold(const struct shard *s, const struct message *m)
{
	const struct adapt_ban *b = ban_find(s, ADAPT_CMD_BOUNCE, SCOPE_PAIR, m->job, "", "");
	return b ? b : ban_find(s, ADAPT_CMD_PAUSE, SCOPE_PAIR, m->job, "", "");
}

/* Does the suspension lift c (the operator's resume) reach this pair? */
static bool lift_covers(const struct adapt_cmd *c, const char *source, const char *group)
{
	return strcmp(group, c->group) == 0 && (c->scope == SCOPE_GROUP || strcmp(source, c->source) == 0);
}

/* The operator's resume: the suspensions it covers end now (a group's:
 * the group's own and each of its pairs'; a pair's: that pair's), those
 * of its source IPs stay; what waited for them goes on. */
static void lift(struct shard *s, const struct adapt_cmd *c)
{
	for (unsigned i = 0; i < s->nbans; i++) {
		struct adapt_ban *b = s->bans[i];
		if (b->kind == ADAPT_CMD_SUSPEND && b->scope != SCOPE_SOURCE &&
		    (b->scope == SCOPE_PAIR ? lift_covers(c, b->source, b->group)
		                            : c->scope == SCOPE_GROUP && strcmp(b->group, c->group) == 0))
			b->until = 0; /* over: the GC takes it */
	}
	for (unsigned k = 0; k < s->nthrs; k++) {
		struct throttle *t = s->thrs[k];
		if (!lift_covers(c, t->source, t->group) || t->suspended_until <= s->now)
			continue;
		t->suspended_until = 0;
		t->suspended_by[0] = 0;
		adapt_throttle_new(s, t); /* what still covers it (its source IP's) */
	}
	for (unsigned i = 0; i < s->ndests; i++)
		if (!s->dests[i].unused && s->dests[i].thr && lift_covers(c, s->dests[i].thr->source, s->dests[i].group))
			shard_dest_note(s, i, true);
	shard_wake_held(s, NULL);
}

/* A job's pause or bounce ends. */
static void release(struct shard *s, const char *job)
{
	struct adapt_ban *b;
	if ((b = ban_find(s, ADAPT_CMD_PAUSE, SCOPE_PAIR, job, "", "")))
		b->until = 0;
	if ((b = ban_find(s, ADAPT_CMD_BOUNCE, SCOPE_PAIR, job, "", "")))
		b->until = 0;
	shard_wake_held(s, job);
}

/* The ones over go (the shard's GC). */
void adapt_gc(struct shard *s)
{
	unsigned keep = 0;
	for (unsigned i = 0; i < s->nbans; i++) {
		struct adapt_ban *b = s->bans[i];
		if (b->until > s->now) {
			s->bans[keep++] = b;
			continue;
		}
		strmap_remove(&s->ban_index, &b->node);
		free(b);
	}
	s->nbans = keep;
	keep = 0;
	for (unsigned i = 0; i < s->nfulls; i++)
		if (s->fulls[i].until > s->now)
			s->fulls[keep++] = s->fulls[i];
	s->nfulls = keep;
	count_job_holds(s);
}

static void suspend(struct shard *s, struct throttle *t, const struct reply_rule *rule,
                    const struct smtp_reply *r)
{
	int64_t until = s->now + (rule->duration_ms ? rule->duration_ms : s->cfg->adapt.suspend_ms);
	if (rule->scope == SCOPE_PAIR) {
		if (t->suspended_until > s->now)
			return; /* suspended already: later answers to it change nothing */
		t->suspended_until = until;
		snprintf(t->suspended_by, sizeof(t->suspended_by), "%s", rule->name);
	} else {
		const char *src = rule->scope == SCOPE_SOURCE ? t->source : "";
		const char *grp = rule->scope == SCOPE_GROUP ? t->group : "";
		if (ban_find(s, ADAPT_CMD_SUSPEND, (uint8_t)rule->scope, "", src, grp))
			return; /* suspended already */
		struct adapt_ban p = ban_proto(ADAPT_CMD_SUSPEND, (uint8_t)rule->scope, "", src, grp, until);
		snprintf(p.rule, sizeof(p.rule), "%s", rule->name);
		ban_put(s, &p);
	}
	struct outcome o; /* a group's names no source IP, a source IP's no group */
	event_new(&o, EVENT_SUSPEND, rule->scope == SCOPE_GROUP ? "" : t->source,
	          rule->scope == SCOPE_SOURCE ? "" : t->group, rule, r);
	o.scope = (uint8_t)rule->scope;
	/* The wall clock when s->now was read (the loop turn's start), plus
	 * the duration: when this shard lifts it. */
	o.until_ms = o.ts_ms - (now_mono_ms() - s->now) + (until - s->now);
	shard_outbox_put(s, &o);
}

/* ---- budgets: waves and warm-up ----
 * A job with a wave schedule sends at most size messages (transactions)
 * per MX group per wave; a warming source IP at most its day's cap per MX
 * group. Both are counted on the pair's owner, per pair: a wave's size
 * is shared among the IPs of the message's pool by weight (their shares
 * add up to size), so the count is exact without a counter shared between
 * shards. A leg that would go over is not sent: the pair's budget is
 * known full (here, on the message's shard, and through the engine on
 * every shard) until its period ends, the leg goes back to the message's
 * shard, which sends its recipients from another IP of the pool with room
 * (adapt_source_for), or has them wait, in the spool, for the next wave or
 * day. Counts go to the engine (EVENT_COUNT), which keeps them across
 * restarts and gives them back at start (ADAPT_CMD_COUNT). */

struct budget_use {
	const char *job;           /* "" for warm-up */
	int64_t period, end_wall;
	unsigned cap;
};

/* The local calendar day (days since the epoch, in warmup.timezone),
 * computed again only when the last one ended. */
static int64_t local_day(struct shard *s, int64_t wall)
{
	if (s->day_end_wall && wall < s->day_end_wall)
		return s->day;
	time_t t = (time_t)(wall / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	s->day = civil_days(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday);
	struct tm next = { .tm_year = tm.tm_year, .tm_mon = tm.tm_mon, .tm_mday = tm.tm_mday + 1, .tm_isdst = -1 };
	s->day_end_wall = (int64_t)mktime(&next) * 1000;
	return s->day;
}

/* The budgets leg l counts against on pair t (0, 1 or 2). */
static unsigned leg_budgets(struct shard *s, const struct throttle *t, const struct leg *l,
                            struct budget_use out[2])
{
	const struct config *cfg = s->cfg;
	unsigned n = 0;
	int64_t wall = 0;
	const struct warm_ip *w = config_warm_for(cfg, t->src);
	if (w) {
		wall = now_real_ms();
		int64_t day = local_day(s, wall);
		unsigned cap = config_warm_cap(cfg, w, day);
		if (cap)
			out[n++] = (struct budget_use){ "", day, s->day_end_wall, cap };
	}
	const struct message *m = l->msg;
	const struct wave_rule *wr = config_wave_for(cfg, m->job);
	if (wr) {
		if (!wall)
			wall = now_real_ms();
		int64_t period = wall / wr->every_ms;
		int pool = config_pool_for(cfg, m->pool, m->job, m->sender);
		out[n++] = (struct budget_use){ m->job, period, (period + 1) * wr->every_ms,
		                                config_pool_share(cfg, pool, t->src, wr->size) };
	}
	return n;
}

/* t's count of that job in that period (made on first use: from what the
 * engine kept, else 0; counts of earlier periods go). */
static struct budget *budget_of(struct shard *s, struct throttle *t, const struct budget_use *u)
{
	for (unsigned i = 0; i < t->nbudgets; i++)
		if (t->budgets[i].period == u->period && strcmp(t->budgets[i].job, u->job) == 0)
			return &t->budgets[i];
	unsigned keep = 0;
	for (unsigned i = 0; i < t->nbudgets; i++)
		if (!(strcmp(t->budgets[i].job, u->job) == 0 && t->budgets[i].period < u->period))
			t->budgets[keep++] = t->budgets[i];
	t->nbudgets = keep;
	if (t->nbudgets == t->budgets_cap) {
		t->budgets_cap = t->budgets_cap ? t->budgets_cap * 2 : 2;
		t->budgets = xrealloc(t->budgets, t->budgets_cap * sizeof(*t->budgets));
	}
	struct budget *b = &t->budgets[t->nbudgets++];
	memset(b, 0, sizeof(*b));
	snprintf(b->job, sizeof(b->job), "%s", u->job);
	b->period = u->period;
	b->end_wall = u->end_wall;
	const struct adapt_ban *k = ban_find(s, ADAPT_CMD_COUNT, SCOPE_PAIR, u->job, t->source, t->group);
	if (k && k->period == u->period) /* what the engine kept */
		b->used = k->count;
	return b;
}

/* A full budget's note covers this job ("": a warm-up day covers all). */
static bool full_covers(const struct adapt_ban *b, const char *job)
{
	return !b->job[0] || (job && strcmp(b->job, job) == 0);
}

static bool is_full(const struct shard *s, const char *job, const char *source, const char *group)
{
	for (unsigned i = 0; i < s->nfulls; i++) {
		const struct adapt_ban *b = &s->fulls[i];
		if (b->until > s->now && strcmp(b->source, source) == 0 && strcmp(b->group, group) == 0 &&
		    full_covers(b, job))
			return true;
	}
	return false;
}

static void full_add(struct shard *s, const char *job, const char *source, const char *group, int64_t until)
{
	if (until <= s->now || is_full(s, job, source, group))
		return;
	if (s->nfulls == s->fulls_cap) {
		s->fulls_cap = s->fulls_cap ? s->fulls_cap * 2 : 8;
		s->fulls = xrealloc(s->fulls, s->fulls_cap * sizeof(*s->fulls));
	}
	s->fulls[s->nfulls++] = ban_proto(ADAPT_CMD_FULL, SCOPE_PAIR, job, source, group, until);
}

/* t's budget u is full: known here until its period ends, logged, and
 * told to every shard (through the engine). */
static void budget_full(struct shard *s, struct throttle *t, const struct budget_use *u, struct adapt_ban *out)
{
	int64_t until = s->now + (u->end_wall - now_real_ms());
	if (!is_full(s, u->job, t->source, t->group)) {
		full_add(s, u->job, t->source, t->group, until);
		struct outcome o; /* response: the job ("" for warm-up) */
		event_new(&o, EVENT_FULL, t->source, NULL, NULL, NULL);
		outcome_set_text(&o, u->job, strlen(u->job), NULL, t->group);
		o.period = u->period;
		o.cap = u->cap;
		o.count = u->cap;
		o.until_ms = u->end_wall;
		shard_outbox_put(s, &o);
	}
	if (out) {
		memset(out, 0, sizeof(*out));
		out->kind = ADAPT_CMD_FULL;
		snprintf(out->source, sizeof(out->source), "%s", t->source);
		snprintf(out->group, sizeof(out->group), "%s", t->group);
		snprintf(out->job, sizeof(out->job), "%s", u->job);
		out->until = until;
	}
}

bool adapt_leg_may_start(struct shard *s, struct dest *d, struct leg *l, struct adapt_ban *full)
{
	struct throttle *t = d->thr;
	if (!t || (!s->cfg->nwaves && !s->cfg->nwarm_ips))
		return true;
	struct budget_use u[2];
	unsigned n = leg_budgets(s, t, l, u);
	for (unsigned i = 0; i < n; i++)
		if (budget_of(s, t, &u[i])->used >= u[i].cap) {
			budget_full(s, t, &u[i], full);
			return false;
		}
	return true;
}

void adapt_leg_started(struct shard *s, struct dest *d, struct leg *l)
{
	struct throttle *t = d->thr;
	if (!t || (!s->cfg->nwaves && !s->cfg->nwarm_ips))
		return;
	struct budget_use u[2];
	unsigned n = leg_budgets(s, t, l, u);
	for (unsigned i = 0; i < n; i++) {
		struct budget *b = budget_of(s, t, &u[i]);
		b->used++;
		struct outcome o; /* for the spool's state */
		event_new(&o, EVENT_COUNT, t->source, NULL, NULL, NULL);
		outcome_set_text(&o, u[i].job, strlen(u[i].job), NULL, t->group);
		o.period = u[i].period;
		o.count = b->used;
		o.cap = u[i].cap;
		o.until_ms = u[i].end_wall;
		shard_outbox_put(s, &o);
		if (b->used >= u[i].cap) /* the origin learns it before its next leg */
			budget_full(s, t, &u[i], NULL);
	}
}

void adapt_learn_full(struct shard *s, const struct adapt_ban *full)
{
	full_add(s, full->job, full->source, full->group, full->until);
}

/* Is source (text) m_source or another member of pool? */
static bool source_in_pool(const struct config *cfg, int pool, int m_source, const char *source)
{
	if (pool < 0)
		return strcmp(source, m_source >= 0 ? cfg->sources[m_source].text : "") == 0;
	const struct pool *p = &cfg->pools[pool];
	for (unsigned i = 0; i < p->nmembers; i++)
		if (strcmp(cfg->sources[p->members[i].source].text, source) == 0)
			return true;
	return false;
}

int adapt_source_for(struct shard *s, const struct message *m, const char *group, int64_t *until)
{
	if (!s->nfulls || !group)
		return m->source;
	const struct config *cfg = s->cfg;
	if (!is_full(s, m->job, m->source >= 0 ? cfg->sources[m->source].text : "", group))
		return m->source;
	int pool = m->source >= 0 ? config_pool_for(cfg, m->pool, m->job, m->sender) : -1; /* unbound: no other */
	if (pool >= 0) {
		const struct pool *p = &cfg->pools[pool];
		unsigned at = 0;
		while (at < p->nmembers && (int)p->members[at].source != m->source)
			at++;
		for (unsigned k = 1; k <= p->nmembers; k++) { /* the next ones after m's */
			unsigned src = p->members[(at + k) % p->nmembers].source;
			if (!is_full(s, m->job, cfg->sources[src].text, group))
				return (int)src;
		}
	}
	int64_t first = 0; /* none has room: the first of its pool's to free up */
	for (unsigned i = 0; i < s->nfulls; i++) {
		const struct adapt_ban *b = &s->fulls[i];
		if (b->until > s->now && strcmp(b->group, group) == 0 && full_covers(b, m->job) &&
		    (!first || b->until < first) && source_in_pool(cfg, pool, m->source, b->source))
			first = b->until;
	}
	*until = first ? first : s->now + 1000;
	return ADAPT_NO_ROOM;
}

/* ---- entry points ---- */

uint8_t adapt_on_reply(struct shard *s, struct dest *d, const struct smtp_reply *r, bool greeting)
{
	int i = reply_matcher_find(&s->rules, d->group, r);
	if (i < 0)
		return VERDICT_NONE;
	const struct reply_rule *rule = &s->cfg->reply_rules[i];
	switch (rule->action) {
	case REPLY_SLOW:
		if (!d->thr)
			return VERDICT_NONE;
		/* A new connection refused while others to d work is a cap on
		 * connections: the SMTP client holds at what works (its rate is
		 * not what the server refuses). Refused with none working: slower,
		 * and the refusal counts as a failed connection (back-off), or
		 * sluice would reconnect at once. */
		if (greeting && d->nready > 0)
			return VERDICT_NONE;
		slow_down(s, d->thr, rule, r);
		return greeting ? VERDICT_NONE : VERDICT_SLOWED;
	case REPLY_SUSPEND:
		if (!d->thr)
			return VERDICT_NONE;
		suspend(s, d->thr, rule, r);
		return VERDICT_SUSPENDED;
	case REPLY_BOUNCE:
		return VERDICT_BOUNCE;
	case REPLY_DEFER:
		return VERDICT_DEFER;
	}
	return VERDICT_NONE;
}

/* The engine's commands: suspensions of groups and source IPs made on
 * other shards, and at start what the spool's state kept. */
void adapt_take_commands(struct shard *s)
{
	struct adapt_cmd c;
	bool any = false;
	while (spsc_pop(&s->adapt_in, &c)) {
		any = true;
		if (c.kind == ADAPT_CMD_LIFT) {
			lift(s, &c);
			continue;
		}
		if (c.kind == ADAPT_CMD_RELEASE) {
			release(s, c.job);
			continue;
		}
		/* a slowed rate waits for its pair to be made (then it is taken) */
		int64_t left = c.kind == ADAPT_CMD_SLOW ? MAX_AHEAD_MS : c.until_wall_ms - now_real_ms();
		if (left <= 0)
			continue;
		if (left > MAX_AHEAD_MS)
			left = MAX_AHEAD_MS;
		if (c.kind == ADAPT_CMD_FULL) {
			full_add(s, c.job, c.source, c.group, s->now + left);
			continue;
		}
		struct adapt_ban p = ban_proto(c.kind, c.scope, c.job, c.source, c.group, s->now + left);
		snprintf(p.rule, sizeof(p.rule), "%s", c.rule);
		p.rate = c.rate;
		p.base = c.base;
		p.period = c.period;
		p.count = c.count;
		ban_put(s, &p);
		if (c.kind == ADAPT_CMD_BOUNCE) /* what waits for its pause bounces now */
			shard_wake_held(s, c.job);
	}
	if (any)
		count_job_holds(s);
}

void adapt_free(struct shard *s)
{
	reply_matcher_free(&s->rules);
	for (unsigned i = 0; i < s->nbans; i++)
		free(s->bans[i]);
	free(s->bans);
	s->bans = NULL;
	s->nbans = s->bans_cap = 0;
	strmap_free(&s->ban_index);
	free(s->fulls);
	s->fulls = NULL;
	s->nfulls = s->fulls_cap = 0;
}
