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

/* ---- the rules ---- */

void adapt_rules_compile(struct shard *s)
{
	reply_matcher_free(&s->rules);
	reply_matcher_init(&s->rules, s->cfg->reply_rules, s->cfg->nreply_rules);
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
	o.rate = t->slow_rate > 0 ? t->slow_rate : t->lim.max_rate; /* restored: the configured (0: none) */
	o.rate_before = before;
	o.base_rate = t->lim.max_rate > 0 ? t->lim.max_rate : t->base_rate; /* what it climbs to */
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

/* The rate the pair climbs back to: its configured one, or where it was
 * when first slowed down (no configured rate). */
static double climb_target(const struct throttle *t)
{
	return t->lim.max_rate > 0 ? t->lim.max_rate : t->base_rate;
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
	double target = climb_target(t), before = t->slow_rate;
	t->slow_rate += target * a->increase;
	t->stepped_at = s->now;
	bool restored = t->slow_rate >= target;
	if (restored)
		t->slow_rate = 0;
	throttle_rate_changed(t);
	rate_event(s, restored ? EVENT_RESTORE : EVENT_SPEEDUP, t, before, NULL, NULL);
}

/* ---- suspensions ---- */

static bool ban_covers(const struct adapt_ban *b, const struct throttle *t)
{
	switch (b->scope) {
	case SCOPE_GROUP: return strcmp(b->group, t->group) == 0;
	case SCOPE_SOURCE: return strcmp(b->source, t->source) == 0;
	default: return strcmp(b->group, t->group) == 0 && strcmp(b->source, t->source) == 0;
	}
}

static void ban_apply(struct shard *s, const struct adapt_ban *b, struct throttle *t)
{
	if (b->kind == ADAPT_CMD_SUSPEND) {
		if (b->until > t->suspended_until) {
			t->suspended_until = b->until;
			snprintf(t->suspended_by, sizeof(t->suspended_by), "%s", b->rule);
		}
	} else if (b->kind == ADAPT_CMD_SLOW && t->slow_rate <= 0) {
		t->slow_rate = b->rate;
		t->base_rate = b->base;
		t->slowed_at = t->stepped_at = s->now;
		throttle_rate_changed(t);
	}
}

/* A new throttle takes the actions in force that cover it. */
void adapt_throttle_new(struct shard *s, struct throttle *t)
{
	for (unsigned i = 0; i < s->nbans; i++)
		if (s->bans[i].until > s->now && ban_covers(&s->bans[i], t))
			ban_apply(s, &s->bans[i], t);
}

static void ban_add(struct shard *s, uint8_t kind, uint8_t scope, const char *source, const char *group,
                    const char *rule, int64_t until, double rate, double base)
{
	unsigned keep = 0; /* the ones over go first */
	for (unsigned i = 0; i < s->nbans; i++)
		if (s->bans[i].until > s->now)
			s->bans[keep++] = s->bans[i];
	s->nbans = keep;
	if (s->nbans == s->bans_cap) {
		s->bans_cap = s->bans_cap ? s->bans_cap * 2 : 8;
		s->bans = xrealloc(s->bans, s->bans_cap * sizeof(*s->bans));
	}
	struct adapt_ban *b = &s->bans[s->nbans++];
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->scope = scope;
	snprintf(b->source, sizeof(b->source), "%s", source ? source : "");
	snprintf(b->group, sizeof(b->group), "%s", group ? group : "");
	snprintf(b->rule, sizeof(b->rule), "%s", rule ? rule : "");
	b->until = until;
	b->rate = rate;
	b->base = base;
	for (unsigned i = 0; i < s->nthrs; i++)
		if (ban_covers(b, s->thrs[i]))
			ban_apply(s, b, s->thrs[i]);
}

static bool banned_already(const struct shard *s, uint8_t scope, const char *source, const char *group)
{
	for (unsigned i = 0; i < s->nbans; i++) {
		const struct adapt_ban *b = &s->bans[i];
		if (b->kind == ADAPT_CMD_SUSPEND && b->scope == scope && b->until > s->now &&
		    (scope == SCOPE_SOURCE || strcmp(b->group, group) == 0) &&
		    (scope == SCOPE_GROUP || strcmp(b->source, source) == 0))
			return true;
	}
	return false;
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
		if (banned_already(s, (uint8_t)rule->scope, t->source, t->group))
			return;
		ban_add(s, ADAPT_CMD_SUSPEND, (uint8_t)rule->scope, rule->scope == SCOPE_SOURCE ? t->source : "",
		        rule->scope == SCOPE_GROUP ? t->group : "", rule->name, until, 0, 0);
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

/* ---- entry points ---- */

uint8_t adapt_on_reply(struct shard *s, struct dest *d, const struct smtp_reply *r)
{
	int i = reply_matcher_find(&s->rules, d->group, r);
	if (i < 0)
		return VERDICT_NONE;
	const struct reply_rule *rule = &s->cfg->reply_rules[i];
	switch (rule->action) {
	case REPLY_SLOW:
		if (!d->thr)
			return VERDICT_NONE;
		slow_down(s, d->thr, rule, r);
		return VERDICT_SLOWED;
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
	while (spsc_pop(&s->adapt_in, &c)) {
		int64_t left = c.kind == ADAPT_CMD_SUSPEND ? c.until_wall_ms - now_real_ms() : INT64_MAX / 4;
		if (left <= 0)
			continue;
		ban_add(s, c.kind, c.scope, c.source, c.group, c.rule, s->now + left, c.rate, c.base);
	}
}

void adapt_free(struct shard *s)
{
	reply_matcher_free(&s->rules);
	free(s->bans);
	s->bans = NULL;
	s->nbans = s->bans_cap = 0;
}
