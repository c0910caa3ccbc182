/* engine/run.c - `sluice run`: the engine thread. It scans SPOOL/new/,
 * claims and parses files, spreads messages over the shards (round robin,
 * so one destination still uses every core), writes the accounting log
 * from the shards' outcome records, removes a file once all its recipients
 * are final and logged, and prints a summary. In --drain mode it ends when
 * the spool is empty and nothing is in flight, or at --max-time. */
#define _GNU_SOURCE
#include "run.h"
#include "acct_log.h"
#include "config.h"
#include "spool.h"
#include "util.h"
#include "../shards/shard.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#define COLLECT_BATCH 1024
#define FEED_BATCH 256

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

struct totals {
	uint64_t messages_done, delivered, bounced, expired, deferred, bad;
	uint64_t recipients_done;
};

struct engine {
	const struct config *cfg;
	struct spool spool;
	struct acct_log log;
	struct shard **shards;
	unsigned nshards, next_shard;
	int wake_fd;
	uint64_t inflight, inflight_max;
	struct message *held;           /* parsed, waiting for room in a shard */
	struct message all;             /* list head of messages owned by shards */
	bool spool_empty;               /* last full pass of new/ found nothing */
	struct totals t;
};

static void all_add(struct engine *e, struct message *m)
{
	m->all_next = e->all.all_next;
	m->all_prev = &e->all;
	e->all.all_next->all_prev = m;
	e->all.all_next = m;
}

static void all_del(struct message *m)
{
	m->all_prev->all_next = m->all_next;
	m->all_next->all_prev = m->all_prev;
	m->all_prev = m->all_next = NULL;
}

/* Hands a message to the next shard with room; false if all are full. */
static bool place(struct engine *e, struct message *m)
{
	for (unsigned i = 0; i < e->nshards; i++) {
		unsigned k = (e->next_shard + i) % e->nshards;
		if (shard_offer(e->shards[k], m)) {
			e->next_shard = k + 1;
			return true;
		}
	}
	return false;
}

/* Claims up to FEED_BATCH files; returns how many went to shards. */
static unsigned feed(struct engine *e, bool *kicked)
{
	unsigned n = 0;
	char why[1024];
	while (n < FEED_BATCH && e->inflight < e->inflight_max) {
		struct message *m = e->held;
		if (!m) {
			bool pass_empty = false;
			const char *name = spool_next(&e->spool, &pass_empty);
			if (!name) {
				e->spool_empty = pass_empty;
				break;
			}
			e->spool_empty = false;
			bool gone;
			m = spool_claim(&e->spool, name, e->cfg->max_message_bytes, &gone, why, sizeof(why));
			if (!m) {
				if (!gone) {
					spool_reject(&e->spool, name, why);
					e->t.bad++;
				}
				continue;
			}
			m->arrival_ms = now_mono_ms();
		}
		e->held = NULL;
		if (!place(e, m)) {
			e->held = m;
			break;
		}
		all_add(e, m);
		e->inflight++;
		n++;
	}
	if (n) {
		for (unsigned i = 0; i < e->nshards; i++)
			shard_kick(e->shards[i]);
		*kicked = true;
	}
	return n;
}

static void count_outcome(struct totals *t, const struct outcome *o)
{
	switch (o->result) {
	case RESULT_DELIVERED: t->delivered++; t->recipients_done++; break;
	case RESULT_BOUNCED: t->bounced++; t->recipients_done++; break;
	case RESULT_EXPIRED: t->expired++; t->recipients_done++; break;
	case RESULT_DEFERRED: t->deferred++; break;
	}
}

/* Logs the shards' outcomes, then removes finished messages: a file goes
 * only after its lines have been written. Returns records handled. */
static size_t collect(struct engine *e)
{
	static struct outcome batch[COLLECT_BATCH];
	struct message *done[COLLECT_BATCH];
	size_t total = 0;
	for (unsigned i = 0; i < e->nshards; i++) {
		size_t n, ndone = 0;
		while ((n = shard_collect(e->shards[i], batch, COLLECT_BATCH)) > 0) {
			for (size_t k = 0; k < n; k++) {
				struct outcome *o = &batch[k];
				if (o->kind == OUTCOME_MESSAGE_DONE) {
					done[ndone++] = o->msg;
					continue;
				}
				acct_format(&e->log.pending, o);
				count_outcome(&e->t, o);
				free(o->response);
			}
			acct_flush(&e->log);
			/* The lines are written: now the files may go. */
			for (size_t k = 0; k < ndone; k++) {
				spool_done(&e->spool, done[k]->id);
				all_del(done[k]);
				message_free(done[k]);
				e->inflight--;
				e->t.messages_done++;
			}
			total += n;
			ndone = 0;
		}
	}
	spool_io_poll(&e->spool, false);
	return total;
}

static void wait_for_work(struct engine *e, int ms)
{
	struct pollfd p = { .fd = e->wake_fd, .events = POLLIN };
	if (poll(&p, 1, ms) > 0) {
		uint64_t v;
		if (read(e->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			warnx_("engine wake: %s", strerror(errno));
	}
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void print_summary(const struct engine *e, double secs, unsigned left, bool timed_out)
{
	const struct totals *t = &e->t;
	printf("sluice: %s after %.2f s with %u shard%s\n",
	       timed_out ? "stopped at --max-time" : e->cfg->drain ? "drain finished" : "stopped",
	       secs, e->nshards, e->nshards == 1 ? "" : "s");
	printf("  messages final    %llu (%.0f messages/s)\n", (unsigned long long)t->messages_done,
	       secs > 0 ? (double)t->messages_done / secs : 0.0);
	printf("  delivered         %llu\n", (unsigned long long)t->delivered);
	printf("  bounced           %llu\n", (unsigned long long)t->bounced);
	printf("  expired           %llu\n", (unsigned long long)t->expired);
	printf("  deferred attempts %llu\n", (unsigned long long)t->deferred);
	printf("  bad spool files   %llu\n", (unsigned long long)t->bad);
	printf("  not final         %u (left in the spool)\n", left);
	printf("  cpu               %.2f s\n", cpu_seconds());
	fflush(stdout);
}

int run_main(int argc, char **argv)
{
	struct config cfg;
	config_from_run_args(&cfg, argc, argv);
	struct engine e;
	memset(&e, 0, sizeof(e));
	e.cfg = &cfg;
	e.all.all_next = e.all.all_prev = &e.all;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	spool_open(&e.spool, cfg.spool);
	unsigned recovered = spool_recover(&e.spool);
	if (recovered)
		warnx_("recovered %u message(s) left in %s/active by an earlier run", recovered, cfg.spool);
	acct_open(&e.log, cfg.log_path);
	e.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e.wake_fd < 0)
		fatal("eventfd: %s", strerror(errno));
	e.nshards = cfg.shards;
	e.inflight_max = (uint64_t)cfg.inflight_per_shard * e.nshards;
	e.shards = xcalloc(e.nshards, sizeof(*e.shards));
	for (unsigned i = 0; i < e.nshards; i++) {
		e.shards[i] = shard_new(i, &cfg, e.wake_fd);
		shard_start(e.shards[i]);
	}

	double start = now_mono_s();
	bool timed_out = false;
	for (;;) {
		bool kicked = false;
		unsigned fed = feed(&e, &kicked);
		size_t got = collect(&e);
		if (stop_signal)
			break;
		if (cfg.max_time_s > 0 && now_mono_s() - start >= cfg.max_time_s) {
			timed_out = e.inflight > 0 || !e.spool_empty;
			break;
		}
		if (cfg.drain && e.spool_empty && e.inflight == 0 && !e.held)
			break;
		if (!fed && !got)
			wait_for_work(&e, e.spool_empty || e.inflight >= e.inflight_max ? 50 : 0);
	}
	for (unsigned i = 0; i < e.nshards; i++)
		shard_stop(e.shards[i]);
	collect(&e);
	double secs = now_mono_s() - start;

	/* Whatever is not final goes back to new/ for the next run. */
	unsigned left = 0;
	if (e.held) {
		spool_release(&e.spool, e.held->id);
		message_free(e.held);
		left++;
	}
	while (e.all.all_next != &e.all) {
		struct message *m = e.all.all_next;
		all_del(m);
		spool_release(&e.spool, m->id);
		message_free(m);
		left++;
	}
	print_summary(&e, secs, left, timed_out);
	for (unsigned i = 0; i < e.nshards; i++)
		shard_free(e.shards[i]);
	free(e.shards);
	acct_close(&e.log);
	spool_close(&e.spool);
	close(e.wake_fd);
	bool drain = cfg.drain;
	config_free(&cfg);
	if (stop_signal && !drain)
		return 0;
	return left == 0 && !stop_signal ? 0 : 1;
}
