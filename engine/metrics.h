/* engine/metrics.h - what a Prometheus scrape of /metrics shows: counters
 * and histograms the engine keeps as it logs each outcome (so they agree
 * with the accounting log line for line), rendered in the text exposition
 * format; and the small HTTP/1.1 responder that serves them from a thread
 * of its own (metrics_server), asking the engine's loop for a fresh
 * rendering at each scrape. Nothing here runs on a shard. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H
#include "lib/message.h"
#include "lib/strmap.h"
#include "lib/util.h"
#include "../shards/shard.h"
#include <stdint.h>
#include <sys/socket.h>

#define METRICS_BUCKETS_MAX 16

struct histogram {
	const double *bounds;     /* upper bounds, seconds, ascending */
	unsigned nbounds;
	uint64_t counts[METRICS_BUCKETS_MAX]; /* per bucket (not cumulative); the last: +Inf */
	double sum;
	uint64_t count;
};

struct metrics {
	struct strmap series;     /* recipients by result, group, source */
	unsigned nseries;
	struct histogram delivery; /* claim -> final reply of a recipient */
	struct histogram reply;    /* a transaction's SMTP latency, per recipient line */
	struct histogram log_sync; /* fdatasync of the accounting log */
};

/* What the engine knows besides outcomes, at render time. */
struct metrics_state {
	uint64_t messages_final, bad_files, claims, jobs_started, jobs_done, rows_refused;
	uint64_t in_memory, waiting_in_spool; /* messages, now */
	const uint64_t *events;   /* adaptation event counts, by enum adapt_event */
	unsigned nevents;
	unsigned shards;
	const uint64_t *live;     /* the shards' live counters summed (shard.h SHARD_LIVE_*) */
	double start_time;        /* process start, Unix seconds */
	const struct shard_pair_stat *pairs; /* the shards' pairs (shard.h), as last published */
	size_t npairs;
	int64_t now_wall_ms;
};

void metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);
/* A recipient line written to the log. */
void metrics_count(struct metrics *m, const struct outcome *o, int64_t now_ms);
void metrics_log_synced(struct metrics *m, double seconds);
/* The exposition text; series idle for a day are dropped first (and no
 * more than 100,000 are kept: beyond, new ones are not counted). */
void metrics_render(struct metrics *m, const struct metrics_state *st, int64_t now_ms, struct buf *out);
/* Each (result, group, source) series counted so far. */
void metrics_each_series(const struct metrics *m, void (*fn)(void *arg, const char *result, const char *group,
                                                             const char *source, uint64_t n), void *arg);

/* The responder. metrics_server_start binds addr (numeric "IP:PORT"),
 * before anything else starts, so a taken port stops nothing half-way;
 * metrics_server_run starts its thread. At each GET /metrics it sets a
 * request and writes wake_fd (an eventfd the engine polls); the engine's
 * loop calls metrics_server_wanted() each turn and, when true, renders
 * and metrics_server_publish()es. A scrape the engine does not answer
 * within 5 s, or once stopping began, gets 503. */
struct metrics_server;
/* "IP:PORT" or "[V6]:PORT", numeric, into sa; false when it is not one. */
bool metrics_addr_parse(const char *spec, struct sockaddr_storage *sa, socklen_t *len);
struct metrics_server *metrics_server_start(const char *addr, char *err, size_t err_len);
bool metrics_server_run(struct metrics_server *s, int wake_fd);
bool metrics_server_wanted(struct metrics_server *s);
void metrics_server_publish(struct metrics_server *s, const struct buf *text);
void metrics_server_stop(struct metrics_server *s);
#endif
