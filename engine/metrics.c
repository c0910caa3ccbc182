/* engine/metrics.c - see metrics.h: the counters and their rendering. */
#define _GNU_SOURCE
#include "metrics.h"
#include "../shards/shard.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_PRUNE_MS (24 * 3600 * 1000) /* a (result, group, source) series unseen this long goes */
#define SERIES_MAX 100000           /* and no more than this many at once */

static const double delivery_bounds[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400 };
static const double reply_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
static const double sync_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

struct series {
	struct strmap_node node;
	char *key;                /* result \x1f group \x1f source (the map's key), then
	                           * the same with NULs, which the labels point into */
	const char *result, *group, *source;
	uint64_t n;
	int64_t seen_ms;
};

static void histogram_init(struct histogram *h, const double *bounds, unsigned n)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nbounds = n;
}

static void observe(struct histogram *h, double v)
{
	unsigned i = 0;
	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	histogram_init(&m->delivery, delivery_bounds, ARRAY_LEN(delivery_bounds));
	histogram_init(&m->reply, reply_bounds, ARRAY_LEN(reply_bounds));
	histogram_init(&m->log_sync, sync_bounds, ARRAY_LEN(sync_bounds));
}

static void series_free(struct metrics *m, struct series *s)
{
	strmap_remove(&m->series, &s->node);
	m->nseries--;
	free(s->key);
	free(s);
}

void metrics_free(struct metrics *m)
{
	for (size_t b = 0; b < m->series.nb; b++)
		for (struct strmap_node *n = m->series.b[b], *next; n; n = next) {
			next = n->next;
			struct series *s = (struct series *)n;
			free(s->key);
			free(s);
		}
	strmap_free(&m->series);
}

/* From the first claim of the message (kept across retries and
 * restarts) to this final reply. */
static double delivery_seconds(const struct outcome *o)
{
	int64_t first = o->msg ? o->msg->first_wall_ms : 0;
	if (first <= 0 || o->ts_ms < first)
		return o->queue_ms / 1000.0;
	return (double)(o->ts_ms - first) / 1000.0;
}

void metrics_count(struct metrics *m, const struct outcome *o, int64_t now_ms)
{
	const char *result = result_name((enum result)o->result);
	const char *group = o->group ? o->group : "";
	const char *source = o->source;
	size_t lr = strlen(result), lg = strlen(group), ls = strlen(source);
	char stack[512], *key = lr + lg + ls + 3 <= sizeof(stack) ? stack : xmalloc(lr + lg + ls + 3);
	/* the map compares C strings: the lookup key joins the labels with a
	 * byte no label holds */
	snprintf(key, lr + lg + ls + 3, "%s\x1f%s\x1f%s", result, group, source);
	struct series *s = (struct series *)strmap_find(&m->series, key);
	if (!s && m->nseries < SERIES_MAX) {
		size_t len = lr + lg + ls + 3;
		s = xcalloc(1, sizeof(*s));
		s->key = xmalloc(2 * len);
		memcpy(s->key, key, len);
		char *labels = s->key + len;
		memcpy(labels, key, len);
		labels[lr] = labels[lr + 1 + lg] = 0;
		s->result = labels;
		s->group = labels + lr + 1;
		s->source = s->group + lg + 1;
		strmap_insert(&m->series, &s->node, s->key);
		m->nseries++;
	}
	if (key != stack)
		free(key);
	if (s) {
		s->n++;
		s->seen_ms = now_ms;
	}
	if (o->code || o->result == RESULT_DELIVERED)
		observe(&m->reply, o->ms / 1000.0);
	if (o->attempt && (o->result == RESULT_DELIVERED || o->result == RESULT_BOUNCED || o->result == RESULT_EXPIRED))
		observe(&m->delivery, delivery_seconds(o)); /* not a job row refused before any attempt */
}

void metrics_log_synced(struct metrics *m, double seconds)
{
	observe(&m->log_sync, seconds);
}

/* A label value as the exposition format wants it: \, " and newline escaped. */
static void add_label(struct buf *b, const char *name, const char *v, size_t len)
{
	buf_printf(b, "%s=\"", name);
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\\' || v[i] == '"')
			buf_add(b, "\\", 1);
		if (v[i] == '\n')
			buf_adds(b, "\\n");
		else
			buf_add(b, v + i, 1);
	}
	buf_adds(b, "\"");
}

static void header(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_histogram(struct buf *b, const char *name, const char *help, const struct histogram *h)
{
	header(b, name, "histogram", help);
	uint64_t cum = 0;
	for (unsigned i = 0; i < h->nbounds; i++) {
		cum += h->counts[i];
		buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
	}
	cum += h->counts[h->nbounds];
	buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name,
	           h->sum, name, (unsigned long long)h->count);
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	header(b, name, "counter", help);
	buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
	header(b, name, "gauge", help);
	buf_printf(b, "%s %.17g\n", name, v);
}

static void pair_labels(struct buf *b, const char *name, const struct shard_pair_stat *p)
{
	buf_printf(b, "%s{", name);
	add_label(b, "group", p->group, strlen(p->group));
	buf_adds(b, ",");
	add_label(b, "source", p->source, strlen(p->source));
	buf_adds(b, "} ");
}

/* What each (source IP, MX group) pair is doing, as its shard last
 * published it (a pair its shard forgot, idle for 10 minutes, goes). */
static void render_pairs(struct buf *out, const struct metrics_state *st)
{
	static const struct { const char *name, *type, *help; } fam[] = {
		{ "sluice_pair_connections_open", "gauge", "SMTP connections open, by MX group and source IP." },
		{ "sluice_pair_connections_opened_total", "counter", "SMTP connections started, by MX group and source IP." },
		{ "sluice_pair_connections_failed_total", "counter",
		  "SMTP connections that failed before their first transaction, by MX group and source IP." },
		{ "sluice_pair_queued_transactions", "gauge",
		  "Transactions waiting for a connection, by MX group and source IP." },
		{ "sluice_pair_suspended_seconds", "gauge",
		  "Time left of the pair's suspension (0: not suspended), by MX group and source IP." },
		{ "sluice_pair_rate_limit", "gauge", "Messages per second the pair may send now (0: no limit)." },
		{ "sluice_pair_throttle_fill", "gauge", "The pair's message token bucket, 0 (empty) to 1 (full); pairs with a limit." },
	};
	for (unsigned f = 0; f < ARRAY_LEN(fam); f++) {
		header(out, fam[f].name, fam[f].type, fam[f].help);
		for (size_t i = 0; i < st->npairs; i++) {
			const struct shard_pair_stat *p = &st->pairs[i];
			double left = p->suspended_until > st->now_wall_ms ? (p->suspended_until - st->now_wall_ms) / 1000.0 : 0;
			double v[] = { p->conns, (double)p->opened, (double)p->failed, p->queued, left, p->rate, p->fill };
			if (f == 6 && p->fill < 0)
				continue;
			pair_labels(out, fam[f].name, p);
			buf_printf(out, "%.17g\n", v[f]);
		}
	}
}

void metrics_render(struct metrics *m, const struct metrics_state *st, int64_t now_ms, struct buf *out)
{
	header(out, "sluice_recipients_total", "counter",
	       "Recipient outcomes written to the accounting log, by result, MX group and source IP.");
	for (size_t bk = 0; bk < m->series.nb; bk++)
		for (struct strmap_node *n = m->series.b[bk], *next; n; n = next) {
			next = n->next;
			struct series *s = (struct series *)n;
			if (now_ms - s->seen_ms > IDLE_PRUNE_MS) {
				series_free(m, s);
				continue;
			}
			buf_adds(out, "sluice_recipients_total{");
			add_label(out, "result", s->result, strlen(s->result));
			buf_adds(out, ",");
			add_label(out, "group", s->group, strlen(s->group));
			buf_adds(out, ",");
			add_label(out, "source", s->source, strlen(s->source));
			buf_printf(out, "} %llu\n", (unsigned long long)s->n);
		}
	counter(out, "sluice_messages_final_total", "Messages whose every recipient reached a final state.",
	        st->messages_final);
	counter(out, "sluice_spool_claims_total", "Spool files and job rows claimed for delivery.", st->claims);
	counter(out, "sluice_spool_bad_files_total", "Spool files moved to bad/.", st->bad_files);
	counter(out, "sluice_job_files_started_total", "Job files started.", st->jobs_started);
	counter(out, "sluice_job_files_done_total", "Job files finished.", st->jobs_done);
	counter(out, "sluice_job_rows_refused_total", "Job rows refused by the spool workers.", st->rows_refused);
	gauge(out, "sluice_messages_in_memory", "Messages claimed and held by the shards now.", (double)st->in_memory);
	gauge(out, "sluice_messages_waiting_in_spool", "Deferred messages waiting in the spool for their next attempt.",
	      (double)st->waiting_in_spool);
	header(out, "sluice_adaptation_events_total", "counter",
	       "Automatic actions on providers' replies: slow-downs, steps back up, restores, suspensions, resumes, full waves or days.");
	for (unsigned i = 0; i < st->nevents; i++)
		buf_printf(out, "sluice_adaptation_events_total{event=\"%s\"} %llu\n", adapt_event_name((enum adapt_event)i),
		           (unsigned long long)st->events[i]);
	const uint64_t *lv = st->live;
	gauge(out, "sluice_connections_open", "SMTP connections open (connecting to closing), all shards.",
	      (double)lv[SHARD_LIVE_CONNS_OPEN]);
	counter(out, "sluice_connections_opened_total", "SMTP connections started.", lv[SHARD_LIVE_CONNS_OPENED]);
	counter(out, "sluice_connections_failed_total",
	        "SMTP connections that failed before their first transaction (refused, timed out, 4xx/5xx greeting).",
	        lv[SHARD_LIVE_CONNS_FAILED]);
	header(out, "sluice_tls_handshakes_total", "counter", "STARTTLS handshakes completed, full or resumed.");
	buf_printf(out, "sluice_tls_handshakes_total{kind=\"full\"} %llu\nsluice_tls_handshakes_total{kind=\"resumed\"} %llu\n",
	           (unsigned long long)lv[SHARD_LIVE_TLS_FULL], (unsigned long long)lv[SHARD_LIVE_TLS_RESUMED]);
	counter(out, "sluice_tls_plaintext_fallbacks_total",
	        "Opportunistic TLS: mail sent in clear after a failed handshake.", lv[SHARD_LIVE_TLS_PLAIN]);
	header(out, "sluice_dns_queries_total", "counter", "DNS queries sent, by transport.");
	buf_printf(out, "sluice_dns_queries_total{transport=\"udp\"} %llu\nsluice_dns_queries_total{transport=\"tcp\"} %llu\n",
	           (unsigned long long)lv[SHARD_LIVE_DNS_UDP], (unsigned long long)lv[SHARD_LIVE_DNS_TCP]);
	counter(out, "sluice_dns_timeouts_total", "DNS tries that timed out.", lv[SHARD_LIVE_DNS_TIMEOUTS]);
	render_histogram(out, "sluice_delivery_seconds",
	                 "Time from the first claim of a message (kept across retries and restarts) to a recipient's final reply.",
	                 &m->delivery);
	render_histogram(out, "sluice_smtp_transaction_seconds",
	                 "SMTP latency of the transaction a recipient line reports (MAIL to the final reply).", &m->reply);
	render_histogram(out, "sluice_log_sync_seconds", "fdatasync of the accounting log.", &m->log_sync);
	render_pairs(out, st);
	gauge(out, "sluice_shards", "Delivery threads.", st->shards);
	gauge(out, "sluice_start_time_seconds", "When the process started, Unix time.", st->start_time);
}

void metrics_each_series(const struct metrics *m, void (*fn)(void *arg, const char *result, const char *group,
                                                             const char *source, uint64_t n), void *arg)
{
	for (size_t bk = 0; bk < m->series.nb; bk++)
		for (const struct strmap_node *n = m->series.b[bk]; n; n = n->next) {
			const struct series *s = (const struct series *)n;
			fn(arg, s->result, s->group, s->source, s->n);
		}
}
