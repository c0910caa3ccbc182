/* engine/status.c - the body of the control socket's `status` reply: one
 * JSON object (its fields in control.h and the README) from what the
 * engine knows: totals, the spool, each (MX group, source IP) pair (the
 * shards' published state joined with the outcomes counted per pair),
 * suspensions and job holds in force. */
#include "status.h"
#include "lib/json.h"
#include "lib/strmap.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pair_row {
	struct strmap_node node;
	char key[320];            /* group \x1f source */
	const struct shard_pair_stat *live; /* NULL: no shard holds it now */
	char group[256], source[48];
	uint64_t delivered, deferred, bounced, expired;
};

struct rows {
	struct strmap map;
	struct pair_row **v;
	size_t n, cap;
};

static struct pair_row *row_of(struct rows *r, const char *group, const char *source)
{
	char key[320];
	snprintf(key, sizeof(key), "%.255s\x1f%.47s", group, source);
	struct strmap_node *n = strmap_find(&r->map, key);
	if (n)
		return container_of(n, struct pair_row, node);
	struct pair_row *p = xcalloc(1, sizeof(*p));
	memcpy(p->key, key, sizeof(key));
	snprintf(p->group, sizeof(p->group), "%s", group);
	snprintf(p->source, sizeof(p->source), "%s", source);
	strmap_insert(&r->map, &p->node, p->key);
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n++] = p;
	return p;
}

static void count_series(void *arg, const char *result, const char *group, const char *source, uint64_t n)
{
	struct rows *r = arg;
	/* An unbound pair's lines name the address the kernel chose: they are
	 * that pair's when no pair of that source IP is known. */
	char key[320];
	snprintf(key, sizeof(key), "%.255s\x1f%.47s", group, source);
	if (*source && !strmap_find(&r->map, key)) {
		snprintf(key, sizeof(key), "%.255s\x1f", group);
		struct strmap_node *unbound = strmap_find(&r->map, key);
		if (unbound && container_of(unbound, struct pair_row, node)->live)
			source = "";
	}
	struct pair_row *p = row_of(r, group, source);
	if (!strcmp(result, "delivered"))
		p->delivered += n;
	else if (!strcmp(result, "deferred"))
		p->deferred += n;
	else if (!strcmp(result, "bounced"))
		p->bounced += n;
	else if (!strcmp(result, "expired"))
		p->expired += n;
}

static int row_cmp(const void *a, const void *b)
{
	const struct pair_row *x = *(struct pair_row *const *)a, *y = *(struct pair_row *const *)b;
	int c = strcmp(x->group, y->group);
	return c ? c : strcmp(x->source, y->source);
}

static void add_seconds_left(struct buf *b, int64_t until, int64_t now)
{
	buf_printf(b, "%.3f", until > now ? (double)(until - now) / 1000.0 : 0.0);
}

void status_render(const struct status_view *v, struct buf *out)
{
	static const char *const scopes[] = { "pair", "group", "source" };
	buf_printf(out, "{\"pid\":%u,\"uptime_s\":%.3f,\"shards\":%u,\"mode\":\"%s\",", v->pid, v->uptime_s, v->shards,
	           v->drain ? "drain" : "daemon");
	buf_printf(out, "\"totals\":{\"messages\":%llu,\"delivered\":%llu,\"bounced\":%llu,\"expired\":%llu,"
	                "\"deferred\":%llu,\"bad\":%llu},",
	           (unsigned long long)v->messages, (unsigned long long)v->delivered, (unsigned long long)v->bounced,
	           (unsigned long long)v->expired, (unsigned long long)v->deferred, (unsigned long long)v->bad);
	buf_printf(out, "\"spool\":{\"in_memory\":%llu,\"waiting\":%llu,\"jobs_open\":%llu},",
	           (unsigned long long)v->in_memory, (unsigned long long)v->waiting, (unsigned long long)v->jobs_open);
	struct rows r = { 0 };
	for (size_t i = 0; i < v->npairs; i++)
		row_of(&r, v->pairs[i].group, v->pairs[i].source)->live = &v->pairs[i];
	metrics_each_series(v->metrics, count_series, &r);
	if (r.n)
		qsort(r.v, r.n, sizeof(*r.v), row_cmp);
	buf_adds(out, "\"pairs\":[");
	for (size_t i = 0; i < r.n; i++) {
		const struct pair_row *p = r.v[i];
		const struct shard_pair_stat *l = p->live;
		buf_adds(out, i ? ",{\"group\":" : "{\"group\":");
		json_add_cstr(out, p->group);
		buf_adds(out, ",\"source\":");
		json_add_cstr(out, p->source);
		buf_printf(out, ",\"connections\":%u,\"queued\":%u,\"delivered\":%llu,\"deferred\":%llu,\"bounced\":%llu,"
		                "\"expired\":%llu,\"suspended_s\":",
		           l ? l->conns : 0, l ? l->queued : 0, (unsigned long long)p->delivered,
		           (unsigned long long)p->deferred, (unsigned long long)p->bounced, (unsigned long long)p->expired);
		add_seconds_left(out, l ? l->suspended_until : 0, v->now_wall_ms);
		buf_adds(out, ",\"suspended_by\":");
		json_add_cstr(out, l && l->suspended_until > v->now_wall_ms ? l->suspended_by : "");
		buf_printf(out, ",\"rate_limit\":%.6g,\"fill\":", l ? l->rate : 0.0);
		if (l && l->fill >= 0)
			buf_printf(out, "%.3f}", l->fill);
		else
			buf_adds(out, "null}");
	}
	buf_adds(out, "],\"suspensions\":[");
	bool first = true;
	for (size_t i = 0; i < v->nheld; i++) {
		const struct adapt_cmd *c = v->held[i];
		if (c->kind != ADAPT_CMD_SUSPEND || c->until_wall_ms <= v->now_wall_ms)
			continue;
		buf_printf(out, "%s{\"scope\":\"%s\",\"group\":", first ? "" : ",", scopes[c->scope % 3]);
		json_add_cstr(out, c->group);
		buf_adds(out, ",\"source\":");
		json_add_cstr(out, c->source);
		buf_adds(out, ",\"rule\":");
		json_add_cstr(out, c->rule);
		buf_adds(out, ",\"remaining_s\":");
		add_seconds_left(out, c->until_wall_ms, v->now_wall_ms);
		buf_adds(out, "}");
		first = false;
	}
	buf_adds(out, "],\"jobs\":[");
	first = true;
	for (size_t i = 0; i < v->nheld; i++) {
		const struct adapt_cmd *c = v->held[i];
		if (c->kind != ADAPT_CMD_PAUSE && c->kind != ADAPT_CMD_BOUNCE)
			continue;
		buf_adds(out, first ? "{\"job\":" : ",{\"job\":");
		json_add_cstr(out, c->job);
		buf_printf(out, ",\"state\":\"%s\",\"remaining_s\":", c->kind == ADAPT_CMD_PAUSE ? "paused" : "bouncing");
		add_seconds_left(out, c->until_wall_ms, v->now_wall_ms);
		buf_adds(out, "}");
		first = false;
	}
	buf_adds(out, "]}\n");
	for (size_t i = 0; i < r.n; i++)
		free(r.v[i]);
	free(r.v);
	strmap_free(&r.map);
}
