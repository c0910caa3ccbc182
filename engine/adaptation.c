/* engine/adaptation.c - the adaptations in force, as the engine records
 * them (see adaptation.h). The state file, state/.adaptation (a name no
 * spool file can have: names starting with '.' are never listed), is
 * text, one adaptation a line, fields separated by tabs ("-": empty):
 *   suspend SCOPE SOURCE GROUP UNTIL_MS RULE
 *   slow    SOURCE GROUP RATE BASE
 *   count   JOB SOURCE GROUP PERIOD COUNT END_MS
 *   hold    JOB pause|bounce UNTIL_MS    (the operator's, sluice ctl)
 * (UNTIL_MS, END_MS: wall clock milliseconds; RATE, BASE: messages per
 * second; count: a pair's messages in a wave of JOB, or in a warm-up day
 * when JOB is "-", that period ending at END_MS).
 * It is replaced atomically, as retry states are. */
#include "adaptation.h"
#include "acct_log.h"
#include "lib/json.h"
#include "lib/strmap.h"
#include "lib/util.h"
#include "../shards/config_types.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_NAME ".adaptation"
#define STATE_MAX (64 << 20)
#define STATE_MAX_TEXT "64 MiB"
#define MAX_AHEAD_MS (400LL * 86400 * 1000) /* no end further than this is believed */
#define SAVE_GAP_MS 1000
#define CLOCK_SLACK_MS 100

struct kept {
	struct strmap_node node;    /* keyed by kind, scope, job, source, group */
	char key[400];
	unsigned at;                /* its place in a->k */
	struct adapt_cmd c;         /* what a shard is told */
	char rule[64];              /* suspensions: the rule, for the resume line */
};

struct adaptation {
	struct spool *sp;
	struct kept **k;            /* in no order */
	unsigned n, cap;
	struct strmap index;
	struct adapt_cmd *unsent;   /* refused by a full queue, to go again... */
	unsigned *unsent_to;        /* ...to these shards */
	unsigned nunsent, unsent_cap;
	bool dirty;
	int64_t saved_ms;
	uint64_t counts[EVENT_COUNT + 1];
};

static const char *or_dash(const char *v)
{
	return v && *v ? v : "-";
}

static void undash(char *v)
{
	if (strcmp(v, "-") == 0)
		v[0] = 0;
}

/* The record of this suspension or slow-down (same kind, scope and
 * names), or NULL. */
static void key_of(char *out, size_t len, uint8_t kind, uint8_t scope, const char *source, const char *group,
                   const char *job)
{
	snprintf(out, len, "%u %u %.63s\x1f%.47s\x1f%.255s", kind, scope, job, source, group);
}

/* The record of this suspension, slow-down or count (same kind, scope,
 * job and names), or NULL. */
static struct kept *find(struct adaptation *a, uint8_t kind, uint8_t scope, const char *source,
                         const char *group, const char *job)
{
	char key[400];
	key_of(key, sizeof(key), kind, scope, source, group, job);
	struct strmap_node *n = strmap_find(&a->index, key);
	return n ? container_of(n, struct kept, node) : NULL;
}

static struct kept *add(struct adaptation *a, uint8_t kind, uint8_t scope, const char *source,
                        const char *group, const char *job)
{
	struct kept *k = find(a, kind, scope, source, group, job);
	if (k)
		return k;
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->k = xrealloc(a->k, a->cap * sizeof(*a->k));
	}
	k = a->k[a->n] = xcalloc(1, sizeof(*k));
	k->at = a->n++;
	k->c.kind = kind;
	k->c.scope = scope;
	snprintf(k->c.source, sizeof(k->c.source), "%s", source);
	snprintf(k->c.group, sizeof(k->c.group), "%s", group);
	snprintf(k->c.job, sizeof(k->c.job), "%s", job);
	key_of(k->key, sizeof(k->key), kind, scope, k->c.source, k->c.group, k->c.job);
	strmap_insert(&a->index, &k->node, k->key);
	return k;
}

/* The record goes (the last takes its place). */
static void drop(struct adaptation *a, struct kept *k)
{
	unsigned i = k->at;
	strmap_remove(&a->index, &k->node);
	free(k);
	if (i != --a->n) {
		a->k[i] = a->k[a->n];
		a->k[i]->at = i;
	}
}

/* ---- the state file ---- */

static void load(struct adaptation *a)
{
	int fd = openat(a->sp->state_fd, STATE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return;
	struct stat st = { 0 };
	size_t want = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
	if (want > STATE_MAX)
		want = STATE_MAX;
	char *text = xmalloc(want + 1);
	size_t got = 0;
	int err = want ? read_full(fd, text, want, 0, &got) : 0;
	close(fd);
	text[got] = 0;
	if (err || (st.st_size > STATE_MAX && got == STATE_MAX))
		warnx_("%s/state/%s: %s; what was read is used", a->sp->dir, STATE_NAME,
		       err ? strerror(err) : "larger than " STATE_MAX_TEXT);
	int64_t now = now_real_ms(), far = now + MAX_AHEAD_MS;
	unsigned bad = 0;
	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (!*line)
			continue;
		char f[7][300];
		int nf = sscanf(line, "%299[^\t]\t%299[^\t]\t%299[^\t]\t%299[^\t]\t%299[^\t]\t%299[^\t]\t%299[^\t]",
		                f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
		for (int i = 0; i < nf; i++)
			undash(f[i]);
		if (nf == 6 && strcmp(f[0], "suspend") == 0) {
			uint8_t scope = strcmp(f[1], "group") == 0 ? SCOPE_GROUP
			              : strcmp(f[1], "source") == 0 ? SCOPE_SOURCE : SCOPE_PAIR;
			long long until = strtoll(f[4], NULL, 10);
			if (until <= now)
				continue; /* over while sluice was not running */
			if (until > far) {
				bad++;
				continue;
			}
			struct kept *k = add(a, ADAPT_CMD_SUSPEND, scope, f[2], f[3], "");
			k->c.until_wall_ms = until;
			snprintf(k->rule, sizeof(k->rule), "%.63s", f[5]);
			snprintf(k->c.rule, sizeof(k->c.rule), "%s", k->rule);
		} else if (nf == 5 && strcmp(f[0], "slow") == 0) {
			double rate = strtod(f[3], NULL), base = strtod(f[4], NULL);
			if (!(rate > 0 && rate < 1e9 && base >= 0 && base < 1e9)) { /* NaN fails too */
				bad++;
				continue;
			}
			struct kept *k = add(a, ADAPT_CMD_SLOW, SCOPE_PAIR, f[1], f[2], "");
			k->c.rate = rate;
			k->c.base = base;
		} else if (nf == 7 && strcmp(f[0], "count") == 0) {
			long long end = strtoll(f[6], NULL, 10);
			if (end <= now)
				continue; /* its wave or day is over */
			if (end > far) {
				bad++;
				continue;
			}
			struct kept *k = add(a, ADAPT_CMD_COUNT, SCOPE_PAIR, f[2], f[3], f[1]);
			k->c.period = strtoll(f[4], NULL, 10);
			k->c.count = (uint32_t)strtoul(f[5], NULL, 10);
			k->c.until_wall_ms = end;
		} else if (nf == 4 && strcmp(f[0], "hold") == 0) {
			long long until = strtoll(f[3], NULL, 10);
			bool bounce = strcmp(f[2], "bounce") == 0;
			if (until <= now)
				continue;
			if (until > far || !f[1][0] || (!bounce && strcmp(f[2], "pause") != 0)) {
				bad++;
				continue;
			}
			struct kept *k = add(a, bounce ? ADAPT_CMD_BOUNCE : ADAPT_CMD_PAUSE, SCOPE_PAIR, "", "", f[1]);
			k->c.until_wall_ms = until;
		} else if (*line) {
			bad++;
		}
	}
	free(text);
	if (bad)
		warnx_("%s/state/%s: %u line(s) not understood, ignored", a->sp->dir, STATE_NAME, bad);
}

static void save(struct adaptation *a)
{
	static const char *const scopes[] = { "pair", "group", "source" };
	struct buf b = { 0 };
	for (unsigned i = 0; i < a->n; i++) {
		const struct adapt_cmd *c = &a->k[i]->c;
		if (c->kind == ADAPT_CMD_SUSPEND)
			buf_printf(&b, "suspend\t%s\t%s\t%s\t%lld\t%s\n", scopes[c->scope % 3], or_dash(c->source),
			           or_dash(c->group), (long long)c->until_wall_ms, or_dash(a->k[i]->rule));
		else if (c->kind == ADAPT_CMD_SLOW)
			buf_printf(&b, "slow\t%s\t%s\t%.6g\t%.6g\n", or_dash(c->source), or_dash(c->group), c->rate,
			           c->base);
		else if (c->kind == ADAPT_CMD_PAUSE || c->kind == ADAPT_CMD_BOUNCE)
			buf_printf(&b, "hold\t%s\t%s\t%lld\n", c->job, c->kind == ADAPT_CMD_PAUSE ? "pause" : "bounce",
			           (long long)c->until_wall_ms);
		else if (c->kind == ADAPT_CMD_COUNT)
			buf_printf(&b, "count\t%s\t%s\t%s\t%lld\t%u\t%lld\n", or_dash(c->job), or_dash(c->source),
			           or_dash(c->group), (long long)c->period, c->count, (long long)c->until_wall_ms);
	}
	buf_add(&b, "", 1); /* NUL */
	int err = spool_state_write(a->sp, STATE_NAME, b.p);
	if (err)
		warnx_("cannot save %s/state/%s: %s (a restart may forget suspensions and slow-downs)",
		       a->sp->dir, STATE_NAME, strerror(err));
	buf_free(&b);
	a->dirty = false;
	a->saved_ms = now_real_ms();
}

/* ---- telling the shards ---- */

static void send_to(struct adaptation *a, const struct adapt_cmd *c, struct shard **shards, unsigned to)
{
	if (!a->nunsent && shard_adapt(shards[to], c)) /* else after those waiting: in order */
		return;
	if (a->nunsent == a->unsent_cap) {
		a->unsent_cap = a->unsent_cap ? a->unsent_cap * 2 : 16;
		a->unsent = xrealloc(a->unsent, a->unsent_cap * sizeof(*a->unsent));
		a->unsent_to = xrealloc(a->unsent_to, a->unsent_cap * sizeof(*a->unsent_to));
	}
	a->unsent[a->nunsent] = *c;
	a->unsent_to[a->nunsent++] = to;
}

static void send_all(struct adaptation *a, const struct adapt_cmd *c, struct shard **shards, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		send_to(a, c, shards, i);
}

static bool is_hold(const struct adapt_cmd *c)
{
	return c->kind == ADAPT_CMD_PAUSE || c->kind == ADAPT_CMD_BOUNCE;
}

struct adaptation *adaptation_open(struct spool *sp)
{
	struct adaptation *a = xcalloc(1, sizeof(*a));
	a->sp = sp;
	load(a);
	return a;
}

void adaptation_send_kept(struct adaptation *a, const struct config *cfg, struct shard **shards, unsigned n)
{
	for (unsigned i = 0; i < a->n; i++) {
		const struct adapt_cmd *c = &a->k[i]->c;
		if (c->scope == SCOPE_PAIR && !is_hold(c)) /* a pair's: to the shard that owns it under cfg */
			send_to(a, c, shards, shard_pair_owner(cfg, n, c->source, c->group));
		else
			send_all(a, c, shards, n);
	}
}

/* A suspension's time is over: its "resume" line (the shards lift it by
 * their own clocks), and the record goes. */
static void resume(struct adaptation *a, struct kept *k, struct buf *log, int64_t now)
{
	struct outcome o;
	memset(&o, 0, sizeof(o));
	o.kind = OUTCOME_EVENT;
	o.result = EVENT_RESUME;
	o.ts_ms = now;
	o.scope = k->c.scope;
	snprintf(o.source, sizeof(o.source), "%s", k->c.source);
	o.group = k->c.group[0] ? k->c.group : NULL;
	o.mx = k->rule[0] ? k->rule : NULL;
	acct_format_event(log, &o);
	a->counts[EVENT_RESUME]++;
	drop(a, k);
	a->dirty = true;
}

void adaptation_note(struct adaptation *a, const struct outcome *o, struct buf *log,
                     struct shard **shards, unsigned n)
{
	enum adapt_event ev = (enum adapt_event)o->result;
	if ((unsigned)ev <= EVENT_COUNT)
		a->counts[ev]++;
	const char *group = o->group ? o->group : "";
	const char *job = o->response && (ev == EVENT_FULL || ev == EVENT_COUNT) ? o->response : "";
	struct kept *k;
	switch (ev) {
	case EVENT_COUNT: /* not a line: a count for the state */
		k = add(a, ADAPT_CMD_COUNT, SCOPE_PAIR, o->source, group, job);
		if (k->c.period != o->period || o->count > k->c.count)
			k->c.count = o->count;
		k->c.period = o->period;
		k->c.until_wall_ms = o->until_ms;
		a->dirty = true;
		return;
	case EVENT_FULL: { /* every shard learns it: their messages go from other IPs */
		struct adapt_cmd c = { .kind = ADAPT_CMD_FULL, .until_wall_ms = o->until_ms };
		snprintf(c.source, sizeof(c.source), "%s", o->source);
		snprintf(c.group, sizeof(c.group), "%s", group);
		snprintf(c.job, sizeof(c.job), "%s", job);
		send_all(a, &c, shards, n);
		break;
	}
	case EVENT_SLOW:
	case EVENT_SPEEDUP:
		k = add(a, ADAPT_CMD_SLOW, SCOPE_PAIR, o->source, group, "");
		k->c.rate = o->rate;
		k->c.base = o->base_rate;
		break;
	case EVENT_RESTORE:
		if ((k = find(a, ADAPT_CMD_SLOW, SCOPE_PAIR, o->source, group, "")))
			drop(a, k);
		break;
	case EVENT_SUSPEND:
		/* A shard may see the end of the last one before this thread does
		 * (its clock is not the wall clock: a little slack). */
		if ((k = find(a, ADAPT_CMD_SUSPEND, o->scope, o->source, group, "")) &&
		    k->c.until_wall_ms <= o->ts_ms + CLOCK_SLACK_MS)
			resume(a, k, log, o->ts_ms);
		k = add(a, ADAPT_CMD_SUSPEND, o->scope, o->source, group, "");
		if (o->until_ms > k->c.until_wall_ms)
			k->c.until_wall_ms = o->until_ms;
		snprintf(k->rule, sizeof(k->rule), "%.63s", o->mx ? o->mx : "");
		snprintf(k->c.rule, sizeof(k->c.rule), "%s", k->rule);
		if (o->scope != SCOPE_PAIR) /* the other shards own other pairs of it */
			send_all(a, &k->c, shards, n);
		break;
	case EVENT_RESUME:
		break;
	}
	acct_format_event(log, o); /* after the resume it may have ended */
	a->dirty = true;
}

bool adaptation_tick(struct adaptation *a, struct buf *log, struct shard **shards, unsigned n, bool force)
{
	size_t was = log->len;
	int64_t now = now_real_ms();
	for (unsigned i = 0; i < a->n;) {
		struct kept *k = a->k[i];
		if ((k->c.kind == ADAPT_CMD_COUNT || is_hold(&k->c)) && k->c.until_wall_ms <= now) {
			drop(a, k); /* its wave or day is over; a hold's time */
			a->dirty = true;
		} else if (k->c.kind != ADAPT_CMD_SUSPEND || k->c.until_wall_ms > now) {
			i++;
		} else {
			resume(a, k, log, now);
		}
	}
	/* Again, in order, until a shard's queue is full (then next turn). */
	unsigned sent = 0;
	while (sent < a->nunsent && n && shard_adapt(shards[a->unsent_to[sent] % n], &a->unsent[sent]))
		sent++;
	if (sent) {
		memmove(a->unsent, a->unsent + sent, (a->nunsent - sent) * sizeof(*a->unsent));
		memmove(a->unsent_to, a->unsent_to + sent, (a->nunsent - sent) * sizeof(*a->unsent_to));
		a->nunsent -= sent;
	}
	if (a->dirty && (force || now - a->saved_ms >= SAVE_GAP_MS))
		save(a);
	return log->len > was;
}

/* ---- the operator's commands (sluice ctl) ---- */

/* Every shard: job's pause or bounce ends. */
static void send_release(struct adaptation *a, const char *job, struct shard **shards, unsigned n)
{
	struct adapt_cmd release = { .kind = ADAPT_CMD_RELEASE };
	snprintf(release.job, sizeof(release.job), "%s", job);
	send_all(a, &release, shards, n);
}

#define HOLD_MS (30LL * 86400 * 1000) /* a pause or bounce with no end said: 30 days */

static void job_line(struct buf *log, const char *event, const char *job, int64_t until, const char *rule,
                     const char *why)
{
	acct_event_open(log, now_real_ms(), event);
	buf_adds(log, ",\"job\":");
	json_add_cstr(log, job);
	if (until) {
		buf_adds(log, ",\"until\":");
		acct_add_ts(log, until);
	}
	buf_adds(log, ",\"rule\":");
	json_add_cstr(log, rule);
	if (why) {
		buf_adds(log, ",\"why\":");
		json_add_cstr(log, why);
	}
	buf_adds(log, "}\n");
}

int64_t adaptation_ctl_suspend(struct adaptation *a, const struct config *cfg, const char *group, const char *source,
                               int64_t until, struct buf *log, struct shard **shards, unsigned n)
{
	uint8_t scope = source[0] ? SCOPE_PAIR : SCOPE_GROUP;
	struct kept *k = add(a, ADAPT_CMD_SUSPEND, scope, source, group, "");
	if (until > k->c.until_wall_ms) /* the shards keep the later end: so does this record */
		k->c.until_wall_ms = until;
	snprintf(k->rule, sizeof(k->rule), "ctl");
	snprintf(k->c.rule, sizeof(k->c.rule), "ctl");
	if (scope == SCOPE_PAIR)
		send_to(a, &k->c, shards, shard_pair_owner(cfg, n, source, group));
	else
		send_all(a, &k->c, shards, n);
	struct outcome o;
	memset(&o, 0, sizeof(o));
	o.kind = OUTCOME_EVENT;
	o.result = EVENT_SUSPEND;
	o.ts_ms = now_real_ms();
	o.scope = scope;
	snprintf(o.source, sizeof(o.source), "%s", source);
	o.group = k->c.group;
	o.mx = k->rule;
	o.until_ms = k->c.until_wall_ms;
	acct_format_event(log, &o);
	a->counts[EVENT_SUSPEND]++;
	a->dirty = true;
	return k->c.until_wall_ms;
}

unsigned adaptation_ctl_resume(struct adaptation *a, const char *name, const char *source, struct buf *log,
                               struct shard **shards, unsigned n, bool *job)
{
	unsigned lifted = 0;
	int64_t now = now_real_ms();
	for (unsigned i = 0; i < a->n;) {
		struct kept *k = a->k[i];
		if (k->c.kind == ADAPT_CMD_SUSPEND && k->c.scope != SCOPE_SOURCE && strcmp(k->c.group, name) == 0 &&
		    (!source[0] || (k->c.scope == SCOPE_PAIR && strcmp(k->c.source, source) == 0))) {
			snprintf(k->rule, sizeof(k->rule), "ctl");
			resume(a, k, log, now); /* the last takes its place */
			lifted++;
		} else {
			i++;
		}
	}
	struct adapt_cmd lift = { .kind = ADAPT_CMD_LIFT, .scope = source[0] ? SCOPE_PAIR : SCOPE_GROUP };
	snprintf(lift.group, sizeof(lift.group), "%s", name);
	snprintf(lift.source, sizeof(lift.source), "%s", source);
	send_all(a, &lift, shards, n); /* also what a shard suspended that is not noted here yet */
	*job = false;
	struct kept *k;
	if (!source[0]) {
		for (uint8_t kind = ADAPT_CMD_PAUSE; kind <= ADAPT_CMD_BOUNCE; kind++)
			if ((k = find(a, kind, SCOPE_PAIR, "", "", name))) {
				drop(a, k);
				*job = true;
			}
		if (*job) {
			send_release(a, name, shards, n);
			job_line(log, "job-resume", name, 0, "ctl", NULL);
			a->dirty = true;
		}
	}
	return lifted;
}

void adaptation_ctl_hold(struct adaptation *a, const char *job, bool bounce, int64_t until, const char *rule,
                         const char *why, struct buf *log, struct shard **shards, unsigned n)
{
	struct kept *other = find(a, bounce ? ADAPT_CMD_PAUSE : ADAPT_CMD_BOUNCE, SCOPE_PAIR, "", "", job);
	if (other) /* one hold a job: the latest */
		drop(a, other);
	struct kept *k = add(a, bounce ? ADAPT_CMD_BOUNCE : ADAPT_CMD_PAUSE, SCOPE_PAIR, "", "", job);
	k->c.until_wall_ms = until ? until : now_real_ms() + HOLD_MS;
	if (other) {
		send_release(a, job, shards, n);
	}
	send_all(a, &k->c, shards, n);
	job_line(log, bounce ? "job-bounce" : "job-pause", job, k->c.until_wall_ms, rule, why);
	a->dirty = true;
}

/* Is a hold of this kind on job in force? */
static bool hold_in_force(struct adaptation *a, uint8_t kind, const char *job)
{
	struct kept *k = job && a->n ? find(a, kind, SCOPE_PAIR, "", "", job) : NULL;
	return k && k->c.until_wall_ms > now_real_ms();
}

bool adaptation_job_paused(struct adaptation *a, const char *job)
{
	return hold_in_force(a, ADAPT_CMD_PAUSE, job);
}

bool adaptation_job_held(struct adaptation *a, const char *job)
{
	return hold_in_force(a, ADAPT_CMD_PAUSE, job) || hold_in_force(a, ADAPT_CMD_BOUNCE, job);
}

void adaptation_save_now(struct adaptation *a)
{
	if (a->dirty)
		save(a);
}

size_t adaptation_list(const struct adaptation *a, const struct adapt_cmd **out, size_t max)
{
	size_t n = 0;
	for (unsigned i = 0; i < a->n && n < max; i++)
		if (a->k[i]->c.kind == ADAPT_CMD_SUSPEND || is_hold(&a->k[i]->c))
			out[n++] = &a->k[i]->c;
	return n;
}

const uint64_t *adaptation_counts(const struct adaptation *a)
{
	return a->counts;
}

void adaptation_close(struct adaptation *a)
{
	if (!a)
		return;
	if (a->dirty)
		save(a);
	for (unsigned i = 0; i < a->n; i++)
		free(a->k[i]);
	free(a->k);
	strmap_free(&a->index);
	free(a->unsent);
	free(a->unsent_to);
	free(a);
}
