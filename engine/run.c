/* engine/run.c - `sluice run`: the engine thread. It scans SPOOL/new/,
 * claims names in memory (claims.c) and spreads them, and the rows of job
 * files (job_run.c), over the lanes (a spool worker that reads and parses,
 * in front of a shard that delivers), round robin so that one destination
 * still uses every core; writes the accounting log from the shards'
 * outcome records and, once all of a message's recipients are final and
 * logged, has the reaper remove its file (a job's row: notes it in the
 * job's progress); prints a summary. In --drain mode it ends when the
 * spool is empty and nothing is in flight, or at --max-time; whatever is
 * not final stays in new/ for the next run. */
#define _GNU_SOURCE
#include "run.h"
#include "doctor.h"
#include "notify.h"
#include "metrics.h"
#include "control.h"
#include "status.h"
#include "tallies.h"
#include "suppress.h"
#include "feedback_watch.h"
#include "bounce_suppress.h"
#include <sys/stat.h>
#include "bounce_class.h"
#include "lib/json.h"
#include "lib/strmap.h"
#include "lib/retry_state.h"
#include "adaptation.h"
#include "acct_log.h"
#include "claims.h"
#include "config.h"
#include "dsn.h"
#include "feeder.h"
#include "job_run.h"
#include "reaper.h"
#include "spool.h"
#include "lib/util.h"
#include "../shards/shard.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define COLLECT_BATCH 1024
#define FEED_BATCH 256
#define SCAN_BATCH 4096   /* entries of new/ looked at per turn (claimed ones are skipped) */
/* Rows of job files in flight per lane: at most a quarter of
 * inflight-per-shard (1,024 by default). A row is rendered in a
 * microsecond, so a short pipeline keeps the shards busy, and a job of
 * millions runs in a few tens of MB. */
#define ROWS_SHARE 4
#define REAPER_BACKLOG_MAX 8192
#define JOB_SYNC_MS 1000
#define SYNC_GAP_MS 5      /* between the starts of two log syncs, unless... */
#define SYNC_BATCH 2048    /* ...this many records wait for one */
#define JOB_RETRY_S 10   /* a job file that could not be read: tried again after */

static volatile sig_atomic_t stop_signal, reload_signal;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_signal = 1;
	else
		stop_signal = sig;
}

struct totals {
	uint64_t messages_done, delivered, bounced, expired, deferred, bad, suppressed;
	uint64_t jobs_started, jobs_done, rows_refused, rows_skipped;
	uint64_t dns[3];                /* queries over UDP, over TCP; tries timed out */
	uint64_t tls[3];                /* handshakes full, resumed; fallbacks to plaintext */
};

/* One pipeline per core: a shard, and the spool worker (feeder) that
 * claims its files. */
struct lane {
	struct feeder *feeder;          /* shared with other lanes */
	struct shard *shard;
	uint64_t handed;                /* names given to the feeder */
	uint64_t done;                  /* messages the shard finished */
	uint64_t done_bytes;            /* their claim_bytes */
	unsigned index;
};

struct engine {
	const struct config *cfg;
	struct spool spool;
	struct acct_log log;
	struct lane *lanes;
	unsigned nlanes, next_lane;
	struct feeder **feeders;
	unsigned nfeeders;
	struct shard **shards;          /* by lane, as feeders see them */
	struct reaper *reaper;          /* removes files, saves retry states */
	struct adaptation *adapt;       /* suspensions and slow-downs in force */
	struct sleeper { int64_t due; struct claim *k; uint8_t waits; } *sleepers; /* a heap, soonest first */
	size_t sleepers_coming;         /* handed to the reaper to sleep once their state is saved */
	size_t nsleepers, sleepers_cap;
	bool reaper_running;
	struct claims claims;           /* files of new/ in flight, identities in use */
	struct job_run *jobs;           /* job files open */
	struct held_claim { struct claim *k; double at; } *held_claims; /* let go at `at` */
	size_t nheld_claims;
	unsigned pass_new;              /* names claimed in the current pass of new/ */
	int wake_fd;
	uint64_t per_lane_max;          /* messages in flight per lane */
	uint64_t per_lane_bytes;        /* and their memory */
	bool spool_empty;               /* last full pass of new/ found nothing */
	double rescan_at;               /* while empty: look again anyway (missed events) */
	bool feeders_running;
	/* The log could not be written (disk full): no new claims, and the
	 * files of final messages stay until their lines are written. */
	bool log_blocked;
	double log_retry_at;
	bool syncing;                   /* an fdatasync of the log is running */
	int64_t sync_started_ms;        /* monotonic, when the last one began */
	size_t nsyncing;                /* held[0, nsyncing) wait for it (or are synced) */
	size_t nsynced;                 /* held[0, nsynced): synced, to hand on (the
	                                 * reaper's queue was full) */
	struct row_note { struct job_run *j; uint64_t row; } *notes; /* rows whose final */
	size_t nnotes, notes_cap;       /* line is formatted: noted once it is written */
	struct outcome *held;           /* RETRY_STATE and MESSAGE_DONE records */
	size_t nheld, held_cap;
	struct totals t;
	struct metrics metrics;         /* what /metrics shows (metrics.h) */
	struct bounce_rules *classes;   /* the configuration's bounce classes, compiled */
	struct tallies *tallies;        /* per job and per pair, for the summary and complaint rates */
	struct suppress *store;         /* the suppression list (NULL: suppression-list = "off") */
	struct bounce_suppress *bounced; /* adds hard bounces to it */
	struct feedback_watch *feedback; /* feedback.maildir's thread, or NULL */
	struct strmap complaints_seen;  /* message id and recipient of each complaint counted */
	struct bounce_rules *feedback_classes; /* its bounce classes (the start configuration's) */
	struct metrics_server *metrics_server; /* NULL: no --metrics */
	struct control_server *control; /* NULL: no control socket */
	struct shard_pair_stat *pairs;  /* the shards' pairs, gathered for a scrape or a status */
	size_t npairs, pairs_cap;
	double start_wall;              /* Unix seconds */
	int argc;                       /* for SIGHUP: parsed again */
	char **argv;
	struct config **reloaded;       /* configurations since: freed once no shard uses them */
	unsigned nreloaded;
	uint64_t generation;            /* of the newest configuration */
};

static uint64_t lane_inflight(const struct lane *l)
{
	return l->handed - l->done - feeder_unsent(l->feeder, l->index);
}

static uint64_t inflight(const struct engine *e)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < e->nlanes; i++)
		n += lane_inflight(&e->lanes[i]);
	return n;
}

/* Memory held by a lane's messages (claimed, not yet final). */
static uint64_t lane_bytes(const struct lane *l)
{
	return feeder_claimed_bytes(l->feeder, l->index) - l->done_bytes;
}

/* The next lane with room, round robin (so one destination still uses
 * every core), or NULL when all are full: a lane holds at most
 * inflight-per-shard messages and inflight-bytes-per-shard of them (large
 * messages waiting for a slow signer or server must not fill memory); its
 * feeder has at most FEED_BATCH names not yet read (so the byte count
 * is never far behind). */
static struct lane *lane_with_room(struct engine *e, uint64_t max)
{
	for (unsigned i = 0; i < e->nlanes; i++) {
		struct lane *l = &e->lanes[(e->next_lane + i) % e->nlanes];
		if (lane_inflight(l) < max && lane_bytes(l) < e->per_lane_bytes &&
		    l->handed - feeder_taken(l->feeder, l->index) < FEED_BATCH) {
			e->next_lane = (e->next_lane + i + 1) % e->nlanes;
			return l;
		}
	}
	return NULL;
}

/* ---- Waiting in the spool ----
 * A deferred message whose next attempt is delivery.wait-in-spool away or
 * more (a wave, a daily cap, a suspension, a long retry) does not wait in
 * memory: once its retry state is saved (its file moved to active/ on its
 * first deferral), the shard lets go of it (OUTCOME_MESSAGE_WAITS), the
 * engine frees it and keeps only its claim (its identity stays in use)
 * and when it is due; then a spool worker reads it again from active/.
 * So a provider that suspends or a campaign spread over days holds no
 * lane's room: other mail goes on. After a restart, a file whose saved
 * state is that far from due waits the same way. */

static void sleeper_push(struct engine *e, struct claim *k, int64_t due, uint8_t waits)
{
	if (e->nsleepers == e->sleepers_cap) {
		e->sleepers_cap = e->sleepers_cap ? e->sleepers_cap * 2 : 256;
		e->sleepers = xrealloc(e->sleepers, e->sleepers_cap * sizeof(*e->sleepers));
	}
	size_t i = e->nsleepers++;
	while (i > 0 && e->sleepers[(i - 1) / 2].due > due) {
		e->sleepers[i] = e->sleepers[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	e->sleepers[i] = (struct sleeper){ due, k, waits };
}

static struct claim *sleeper_pop(struct engine *e)
{
	struct claim *k = e->sleepers[0].k;
	struct sleeper last = e->sleepers[--e->nsleepers];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= e->nsleepers)
			break;
		if (c + 1 < e->nsleepers && e->sleepers[c + 1].due < e->sleepers[c].due)
			c++;
		if (e->sleepers[c].due >= last.due)
			break;
		e->sleepers[i] = e->sleepers[c];
		i = c;
	}
	if (e->nsleepers)
		e->sleepers[i] = last;
	return k;
}

static int sleeper_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct sleeper *)a)->due, y = ((const struct sleeper *)b)->due;
	return x < y ? -1 : x > y;
}

/* Those waiting for what waits says (WAIT_*: a wave or a warm-up day,
 * a hold) are due now (a sorted array is a heap). */
static void wake_waiters(struct engine *e, uint8_t waits)
{
	for (size_t i = 0; i < e->nsleepers; i++)
		if (e->sleepers[i].waits & waits)
			e->sleepers[i].due = 0;
	qsort(e->sleepers, e->nsleepers, sizeof(*e->sleepers), sleeper_cmp);
}

/* The messages due again go to the spool workers first (room allowing). */
static unsigned wake_sleepers(struct engine *e, unsigned max)
{
	unsigned n = 0;
	int64_t now = now_real_ms();
	struct lane *l;
	while (n < max && e->nsleepers && e->sleepers[0].due <= now && (l = lane_with_room(e, e->per_lane_max))) {
		struct claim *k = sleeper_pop(e);
		ASSERT(feeder_offer(l->feeder, k, true, l->index)); /* room: lane_with_room */
		l->handed++;
		n++;
	}
	return n;
}

static bool is_job_name(const char *name)
{
	size_t n = strlen(name), k = strlen(JOB_SUFFIX);
	return n > k && strcmp(name + n - k, JOB_SUFFIX) == 0;
}

/* Claims held back for a while (a job file that could not be read): let
 * go when due, so that a later pass of new/ tries them again. */
static void let_go_held_claims(struct engine *e)
{
	double now = now_mono_s();
	for (size_t i = 0; i < e->nheld_claims;) {
		if (now < e->held_claims[i].at) {
			i++;
			continue;
		}
		claims_release(&e->claims, e->held_claims[i].k);
		e->held_claims[i] = e->held_claims[--e->nheld_claims];
	}
}

static void hold_claim(struct engine *e, struct claim *k, double secs)
{
	e->held_claims = xrealloc(e->held_claims, (e->nheld_claims + 1) * sizeof(*e->held_claims));
	e->held_claims[e->nheld_claims++] = (struct held_claim){ k, now_mono_s() + secs };
}

/* Opens claim k's file as a job; one that cannot be used goes to bad/, one
 * that cannot be read now stays in new/ and is tried again later. */
static void open_job(struct engine *e, struct claim *k)
{
	char why[1024], esc[ESCAPED_MAX];
	bool io_error = false;
	struct job_run *j = job_run_open(&e->spool, k, &io_error, why, sizeof(why));
	if (!j && io_error) {
		warnx_("job %s: %s; tried again in %d s", escape_text(k->name, esc, sizeof(esc)), why, JOB_RETRY_S);
		hold_claim(e, k, JOB_RETRY_S);
		return;
	}
	if (!j) {
		spool_reject(&e->spool, k->name, why);
		e->t.bad++;
		claims_release(&e->claims, k);
		return;
	}
	struct job_run **tail = &e->jobs;
	while (*tail)
		tail = &(*tail)->next;
	*tail = j;
	e->t.jobs_started++;
}

/* Jobs whose every row is done leave the spool. */
static void close_done_jobs(struct engine *e)
{
	for (struct job_run **p = &e->jobs; *p;) {
		struct job_run *j = *p;
		if (!job_run_complete(j)) {
			p = &j->next;
			continue;
		}
		*p = j->next;
		e->t.rows_skipped += j->skipped;
		if (j->failed) /* a read failed: file and progress stay; tried again later */
			hold_claim(e, j->claim, JOB_RETRY_S);
		else if (job_run_remove(&e->spool, j)) {
			claims_release(&e->claims, j->claim);
			e->t.jobs_done++;
		} /* else its claim stays: not tried again in this run */
		job_run_free(j);
	}
}

/* Hands up to max rows of the open jobs to the spool workers. */
static unsigned feed_rows(struct engine *e, unsigned max)
{
	unsigned n = 0;
	struct lane *l;
	for (struct job_run *j = e->jobs; j && n < max; j = j->next) {
		struct job_row row;
		if (adaptation_job_paused(e->adapt, j->head.job))
			continue; /* its rows wait in the file (those handed out wait in memory) */
		uint64_t most = e->per_lane_max / ROWS_SHARE;
		while (n < max && !j->eof && (l = lane_with_room(e, most)) && job_run_next(j, &row)) {
			/* room: lane_with_room keeps a feeder's queue far from full */
			ASSERT(feeder_offer_row(l->feeder, j, &row, l->index));
			l->handed++;
			n++;
		}
	}
	return n;
}

/* Hands up to max names from new/ to the feeders, skipping those claimed
 * already; opens job files. */
static unsigned feed_names(struct engine *e, unsigned max)
{
	unsigned n = 0, looked = 0;
	struct lane *l;
	while (n < max && looked < SCAN_BATCH && (l = lane_with_room(e, e->per_lane_max))) {
		const char *name = spool_next(&e->spool);
		if (!name) { /* a pass ended: "empty" when it found nothing new */
			e->spool_empty = e->pass_new == 0;
			e->pass_new = 0;
			e->rescan_at = now_mono_s() + 1.0;
			break;
		}
		looked++;
		struct claim *k = claims_take(&e->claims, name);
		if (!k || is_job_name(name))
			e->next_lane = l->index; /* that lane's turn is not taken */
		if (!k)
			continue; /* in flight */
		e->pass_new++;
		e->spool_empty = false;
		if (is_job_name(name)) {
			open_job(e, k);
			continue;
		}
		ASSERT(feeder_offer(l->feeder, k, false, l->index)); /* room: as in feed_rows */
		l->handed++;
		n++;
	}
	return n;
}

/* Feeds the spool workers: rows of open jobs, and names from new/ (while
 * new/ is known to hold nothing new, only after inotify or the occasional
 * rescan), half a batch each when both have work. */
static unsigned feed(struct engine *e)
{
	/* The reaper far behind (a disk that blocks on every removal, see
	 * README): claim nothing new until it catches up. */
	if (e->log_blocked || reaper_spool_full(e->reaper) || reaper_backlog(e->reaper) > REAPER_BACKLOG_MAX)
		return 0;
	let_go_held_claims(e);
	unsigned n = wake_sleepers(e, FEED_BATCH / 2);
	n += feed_rows(e, e->spool_empty ? FEED_BATCH - n : FEED_BATCH / 2);
	close_done_jobs(e); /* also those with no row left to send (empty, or done before) */
	if (!e->spool_empty || now_mono_s() >= e->rescan_at)
		n += feed_names(e, FEED_BATCH - n);
	if (n)
		for (unsigned i = 0; i < e->nfeeders; i++)
			feeder_kick(e->feeders[i]);
	return n;
}

static void count_outcome(struct engine *e, const struct outcome *o)
{
	struct totals *t = &e->t;
	metrics_count(&e->metrics, o, now_mono_ms());
	tallies_count(e->tallies, o->msg->job, o->source, o->group, (enum result)o->result);
	switch (o->result) {
	case RESULT_DELIVERED: t->delivered++; break;
	case RESULT_BOUNCED: t->bounced++; break;
	case RESULT_EXPIRED: t->expired++; break;
	case RESULT_DEFERRED: t->deferred++; break;
	case RESULT_SUPPRESSED: t->suppressed++; break;
	}
}

/* A deferred message's retry state (text taken over); the first time, its
 * file also moves from new/ to active/ (spool.h says why). The reaper does
 * it; after it stopped, the engine itself. False (nothing done) if the
 * reaper's queue is full. */
static bool save_state(struct engine *e, struct message *m, char *text, const struct claim_return *sleep)
{
	struct claim *k = m->claim;
	struct claim *park = k && k->in_new && !k->park_asked ? k : NULL;
	if (e->reaper_running) {
		if (!reaper_save_state(e->reaper, m->id, text, park, m->print, sleep))
			return false;
		e->sleepers_coming += sleep != NULL; /* not final, not in flight, not asleep yet */
		if (park)
			park->park_asked = true;
		return true;
	}
	char esc[ESCAPED_MAX];
	int err = spool_state_write(&e->spool, m->id, text);
	free(text);
	if (err)
		warnx_("cannot save the retry state of %s: %s (a restart may retry it early)",
		       escape_text(m->id, esc, sizeof(esc)), strerror(err));
	else if (park) {
		park->park_asked = true;
		claims_return(&e->claims, &(struct claim_return){
			.claim = park, .left_new = spool_park(&e->spool, park->name, m->id, &m->print) });
	}
	if (sleep && !err)
		sleeper_push(e, sleep->claim, sleep->sleep_until, sleep->waits);
	return true;
}

/* A final message's file and state go (the reaper does it; after it
 * stopped, the engine itself); m is freed. False (nothing done) if the
 * reaper's queue is full. */
static bool remove_final(struct engine *e, struct message *m)
{
	struct claim *k = m->claim;
	if (e->reaper_running) {
		if (m->dsn) /* the reaper writes the DSN, then removes */
			return reaper_finish(e->reaper, m);
		if (k && !reaper_remove(e->reaper, k, m->print, m->has_state))
			return false;
		message_free(m); /* the usual case: its memory goes now, its file soon */
		return true;
	}
	bool gone;
	if (m->dsn) {
		gone = spool_finish(&e->spool, m); /* the DSN, the removal; frees m */
	} else {
		gone = !k || spool_remove(&e->spool, k->name, k->id, &m->print, m->has_state);
		message_free(m);
	}
	if (k)
		claims_return(&e->claims, &(struct claim_return){ .claim = k, .left_new = gone, .id_free = gone });
	return true;
}

/* After its lines are written and synced: save a retry state, or remove a
 * final message's file (a job's row has none: its job counts it done).
 * False if it must wait (the reaper's queue is full). */
static bool after_logged(struct engine *e, const struct outcome *o)
{
	ASSERT(o->lane < e->nlanes);
	struct lane *l = &e->lanes[o->lane];
	struct message *m = o->msg;
	if (o->kind == OUTCOME_RETRY_STATE) {
		/* until_ms: it waits in the spool (OUTCOME_MESSAGE_WAITS follows)
		 * once this state is saved; code: its WAIT_* (what may wake it early) */
		struct claim_return sleep = { .claim = m->claim, .sleep_until = o->until_ms, .waits = (uint8_t)o->code };
		if (!m->job_run)
			return save_state(e, m, o->response, o->until_ms ? &sleep : NULL);
		free(o->response); /* a row is tried afresh after a restart */
		return true;
	}
	if (o->kind == OUTCOME_MESSAGE_WAITS) { /* its state is on its way: read again when due */
		l->done++;
		l->done_bytes += m->claim_bytes;
		message_free(m);
		return true;
	}
	uint64_t bytes = m->claim_bytes;
	struct job_run *j = m->job_run;
	if (!remove_final(e, m))
		return false;
	l->done++;
	l->done_bytes += bytes;
	e->t.messages_done++;
	if (j)
		j->done++;
	return true;
}

/* The rows whose final lines were just written are done: noted in their
 * jobs' progress now, before any sync, so that a kill -9 from here on
 * never sends them again. */
static void note_rows(struct engine *e)
{
	for (size_t i = 0; i < e->nnotes; i++)
		job_run_mark(e->notes[i].j, e->notes[i].row);
	e->nnotes = 0;
	for (struct job_run *j = e->jobs; j; j = j->next)
		job_run_write(j);
}

/* A job's row got its final line (a row has one recipient): it is noted as
 * done as soon as that line is written (note_rows), whatever else of its
 * message is still on its way. */
static void note_row_final(struct engine *e, const struct outcome *o)
{
	if (!o->msg->job_run || o->result == RESULT_DEFERRED)
		return;
	if (e->nnotes == e->notes_cap) {
		e->notes_cap = e->notes_cap ? 2 * e->notes_cap : 1024;
		e->notes = xrealloc(e->notes, e->notes_cap * sizeof(*e->notes));
	}
	e->notes[e->nnotes++] = (struct row_note){ o->msg->job_run, o->msg->row };
}

/* After the log's sync: the progress written since is synced too, at most
 * every JOB_SYNC_MS (a kill -9 loses nothing written; only a power loss
 * can lose that much progress, and then those rows are sent again). */
static void sync_jobs(struct engine *e, bool now)
{
	int64_t t = now_mono_ms();
	for (struct job_run *j = e->jobs; j; j = j->next) {
		if (!j->unsynced || (!now && t - j->synced_ms < JOB_SYNC_MS))
			continue;
		j->unsynced = false;
		j->synced_ms = t;
		int fd = e->reaper_running ? dup(j->state_fd) : -1;
		if (fd >= 0 && reaper_sync(e->reaper, fd))
			continue;
		if (fd >= 0)
			close(fd);
		if (fdatasync(j->state_fd) != 0)
			warnx_("cannot sync a job's progress: %s", strerror(errno));
	}
}

static void hold(struct engine *e, const struct outcome *o)
{
	if (e->nheld == e->held_cap) {
		e->held_cap = e->held_cap ? e->held_cap * 2 : 1024;
		e->held = xrealloc(e->held, e->held_cap * sizeof(*e->held));
	}
	e->held[e->nheld++] = *o;
}

static void log_trouble(struct engine *e, int err, const char *what)
{
	if (!e->log_blocked)
		warnx_("cannot %s the accounting log: %s; no new messages are claimed and no file "
		       "leaves the spool until it can be written again", what, strerror(err));
	e->log_blocked = true;
	e->log_retry_at = now_mono_s() + 0.5;
}

/* Records wait for their lines and no sync has been started for them. */
static bool sync_due(const struct engine *e)
{
	return e->nheld > e->nsyncing && !e->syncing;
}

/* A sync is worth starting: SYNC_GAP_MS since the last one began, or many
 * records waiting. Each fdatasync costs a device round trip (and a VM
 * exit on a virtual disk): back-to-back syncs of a few lines each spent
 * 12 µs of CPU per message against a slow receiver. */
static bool sync_worth_it(const struct engine *e)
{
	return e->nheld - e->nsyncing >= SYNC_BATCH || now_mono_ms() - e->sync_started_ms >= SYNC_GAP_MS;
}

/* Writes the pending lines and starts making them durable (see
 * acct_sync_start): the records held so far are released when that sync
 * ends, so a file leaves the spool only after its lines are on disk. */
static void flush_log(struct engine *e)
{
	if (!acct_flush(&e->log)) {
		log_trouble(e, e->log.error, "write");
		return;
	}
	note_rows(e);
	if (sync_due(e) && sync_worth_it(e) && acct_sync_start(&e->log)) {
		e->syncing = true;
		e->nsyncing = e->nheld;
		e->sync_started_ms = now_mono_ms();
	}
}

/* After a sync ends: what waited for its lines goes on. */
static void release_synced(struct engine *e)
{
	int err;
	if (!e->syncing || !acct_sync_done(&e->log, &err))
		return;
	e->syncing = false;
	metrics_log_synced(&e->metrics, (double)(now_mono_ms() - e->sync_started_ms) / 1000.0);
	ASSERT(e->nsynced <= e->nsyncing && e->nsyncing <= e->nheld);
	if (err) {
		e->nsyncing = e->nsynced; /* synced again later */
		log_trouble(e, err, "sync");
		return;
	}
	if (e->log_blocked)
		warnx_("the accounting log can be written again: resuming");
	e->log_blocked = false;
	e->nsynced = e->nsyncing;
	sync_jobs(e, false);
}

/* Hands what the log's syncs released on, in order, as far as the
 * reaper's queue takes it (the rest waits for the next turn). */
static void hand_on(struct engine *e)
{
	size_t k = 0;
	while (k < e->nsynced && after_logged(e, &e->held[k]))
		k++;
	if (!k)
		return;
	memmove(e->held, e->held + k, (e->nheld - k) * sizeof(*e->held));
	e->nheld -= k;
	e->nsyncing -= k;
	e->nsynced -= k;
	close_done_jobs(e);
	if (e->reaper_running)
		reaper_kick(e->reaper);
}

/* A job's row the spool worker refused: its line (bounced, code 0, the
 * reason), and then it is done like any message. */
static void log_refused(struct engine *e, struct message *m, char *reason, unsigned lane)
{
	struct outcome o = { .kind = OUTCOME_RCPT, .result = RESULT_BOUNCED, .ts_ms = now_real_ms(), .msg = m,
	                     .response = reason, .response_len = (uint32_t)strlen(reason), .lane = lane,
	                     .bclass = BC_OTHER };
	acct_format(&e->log.pending, &o);
	count_outcome(e, &o);
	note_row_final(e, &o);
	e->t.rows_refused++; /* no DSN: the job's producer has the log, and nothing was sent */
	free(reason);
	hold(e, &(struct outcome){ .kind = OUTCOME_MESSAGE_DONE, .msg = m, .lane = lane });
}

/* What the spool workers and the reaper handed back. */
static size_t take_returns(struct engine *e)
{
	struct claim_return r;
	size_t n = 0;
	for (unsigned i = 0; i < e->nfeeders; i++)
		for (; feeder_returned(e->feeders[i], &r); n++) {
			if (r.refused)
				log_refused(e, r.refused, r.reason, r.lane);
			claims_return(&e->claims, &r);
			if (r.sleep_until) /* its identity stays in use: the claim too */
				sleeper_push(e, r.claim, r.sleep_until, r.waits);
		}
	for (; e->reaper && reaper_returned(e->reaper, &r); n++) {
		claims_return(&e->claims, &r);
		if (r.sleep_until) { /* its state is saved: it sleeps */
			ASSERT(e->sleepers_coming > 0);
			e->sleepers_coming--;
			sleeper_push(e, r.claim, r.sleep_until, r.waits);
		}
	}
	return n;
}

/* True the first time key is seen (kept until exit: complaints are few). */
static bool seen_once(struct strmap *seen, const char *key)
{
	if (strmap_find(seen, key))
		return false;
	size_t len = strlen(key) + 1;
	struct strmap_node *n = xmalloc(sizeof(*n) + len);
	memcpy(n + 1, key, len);
	strmap_insert(seen, n, (const char *)(n + 1));
	return true;
}

/* Complaints the feedback.maildir thread acted on: counted against their
 * jobs; a job whose complaint rate passes feedback.complaint-threshold
 * (once complaint-min of it were sent this run) is paused, and its line
 * says why. */
static size_t take_feedback(struct engine *e)
{
	static struct feedback_note notes[256];
	size_t n = feedback_watch_take(e->feedback, notes, ARRAY_LEN(notes));
	for (size_t i = 0; i < n; i++) {
		const char *job = notes[i].job[0] ? notes[i].job : NULL;
		if (!job || notes[i].result != RESULT_COMPLAINED || !seen_once(&e->complaints_seen, notes[i].key))
			continue; /* a report sent again is one complaint */
		/* a report names the source IP, not the MX group: its complaints
		 * count under the source's "*" row */
		const struct tally *t = tallies_count(e->tallies, job, notes[i].source, notes[i].source[0] ? "*" : NULL,
		                                      notes[i].result);
		double threshold = e->cfg->complaint_threshold;
		if (!t || threshold <= 0 || t->delivered + t->bounced < e->cfg->complaint_min ||
		    tally_rate(t->complained, t) <= threshold || adaptation_job_held(e->adapt, job))
			continue; /* a job paused or bounced already stays so */
		char why[200];
		snprintf(why, sizeof(why), "%llu complaints for %llu sent: %.3f%%, above %.3f%%",
		         (unsigned long long)t->complained, (unsigned long long)(t->delivered + t->bounced),
		         100 * tally_rate(t->complained, t), 100 * threshold);
		adaptation_ctl_hold(e->adapt, job, false, 0, "complaint-rate", why, &e->log.pending, e->shards, e->nlanes);
		adaptation_save_now(e->adapt);
		warnx_("job %s paused: %s (sluice ctl resume %s)", job, why, job);
	}
	return n;
}

/* A suppressed line's class: the entry's reason ("suppressed: CLASS ..."),
 * when it is one (a manual entry's is not: none). */
static uint8_t suppressed_class(const char *text)
{
	char word[40] = "";
	if (text)
		sscanf(text, "suppressed: %39[a-z-]", word);
	enum bounce_class c = bounce_class_of(word);
	return c == BC_COUNT ? BC_NONE : (uint8_t)c;
}

/* Logs the shards' outcomes; what must follow the lines (saving a retry
 * state, removing a final file) waits until they are written. */
static size_t collect(struct engine *e)
{
	static struct outcome batch[COLLECT_BATCH];
	size_t total = take_returns(e);
	for (unsigned i = 0; i < e->nlanes; i++) {
		size_t n;
		while ((n = shard_collect(e->lanes[i].shard, batch, COLLECT_BATCH)) > 0) {
			for (size_t k = 0; k < n; k++) {
				struct outcome *o = &batch[k];
				o->lane = i;
				if (o->kind == OUTCOME_EVENT) {
					adaptation_note(e->adapt, o, &e->log.pending, e->shards, e->nlanes);
					outcome_free_text(o);
					continue;
				}
				if (o->kind != OUTCOME_RCPT) {
					hold(e, o);
					continue;
				}
				if (o->result == RESULT_SUPPRESSED)
					o->bclass = suppressed_class(o->response);
				else if (o->result != RESULT_DELIVERED)
					o->bclass = (uint8_t)bounce_classify(e->classes, o->code, o->enhanced, o->response,
					                                     o->response ? o->response_len : 0);
				acct_format(&e->log.pending, o);
				count_outcome(e, o);
				note_row_final(e, o);
				if (o->result == RESULT_BOUNCED && bounce_class_hard((enum bounce_class)o->bclass) && o->code >= 500)
					bounce_suppress_add(e->bounced, o->msg->rcpt[o->rcpt],
					                    bounce_class_name((enum bounce_class)o->bclass), o->msg->id);
				if (e->spool.dsn_dir && (o->result == RESULT_BOUNCED || o->result == RESULT_EXPIRED))
					dsn_note(o->msg, o); /* a field the shard never touches */
				outcome_free_text(o);
			}
			total += n;
		}
	}
	total += take_feedback(e); /* a job-pause line to write */
	release_synced(e);
	hand_on(e);
	if (adaptation_tick(e->adapt, &e->log.pending, e->shards, e->nlanes, false))
		total++; /* a resume line to write */
	if (total || sync_due(e) ||
	    (e->log_blocked && now_mono_s() >= e->log_retry_at))
		flush_log(e);
	return total;
}

/* Sleeps until a shard reports, a file arrives in new/, or ms pass. */
static void wait_for_work(struct engine *e, int ms)
{
	struct pollfd p[2] = {
		{ .fd = e->wake_fd, .events = POLLIN },
		{ .fd = spool_watch_fd(&e->spool), .events = POLLIN },
	};
	if (poll(p, 2, ms) <= 0)
		return;
	if (p[0].revents)
		eventfd_wait(e->wake_fd, 0);
	if (p[1].revents && spool_watch_drain(&e->spool))
		e->spool_empty = false; /* something arrived: scan again now */
}

/* SIGTERM: no new transactions; wait (bounded) for the open ones to get
 * their final reply, logging as they do, so that little is sent twice. */
static void finish_open_transactions(struct engine *e)
{
	for (unsigned i = 0; i < e->nlanes; i++)
		shard_finish(e->lanes[i].shard);
	double end = now_mono_s() + e->cfg->stop_timeout_s;
	for (;;) {
		collect(e);
		bool idle = true;
		for (unsigned i = 0; i < e->nlanes; i++)
			idle = idle && shard_idle(e->lanes[i].shard);
		if (idle || now_mono_s() >= end)
			break;
		wait_for_work(e, 50);
	}
}

/* SIGHUP: reads the configuration again (file and the same flags). Bad
 * configuration: said, and the running one is kept. The spool, shard and
 * spool-worker counts cannot change while running; the accounting log is
 * reopened (after logrotate moved it, or under a new name). */
static bool reload(struct engine *e, char *err, size_t err_len)
{
	struct config *n = xmalloc(sizeof(*n));
	if (!config_reload(n, e->argc, e->argv, err, err_len)) {
		warnx_("reload: %s; the running configuration is kept", err);
		free(n);
		/* logrotate reloads to have the log reopened: that happens anyway */
		if (e->cfg->log_path && !acct_reopen(&e->log, e->cfg->log_path))
			warnx_("reload: cannot open the accounting log %s: %s; still writing the old one", e->cfg->log_path,
			       strerror(e->log.error));
		return false;
	}
	const struct config *o = e->cfg;
	if (strcmp(n->spool, o->spool) != 0 || n->shards != o->shards || n->spool_workers != o->spool_workers)
		warnx_("reload: the spool, shards and spool-workers stay as they were until a restart");
	free(n->spool);
	n->spool = xstrdup(o->spool);
	if ((n->dsn_spool || o->dsn_spool) && (!n->dsn_spool || !o->dsn_spool || strcmp(n->dsn_spool, o->dsn_spool) != 0)) {
		/* the DSN writer and what waits in memory for it are the start's */
		warnx_("reload: dsn-spool stays as it was until a restart");
		free(n->dsn_spool);
		n->dsn_spool = o->dsn_spool ? xstrdup(o->dsn_spool) : NULL;
	}
	if (!config_budgets_same(n, o)) /* new caps: what waits for a wave or a day is tried again now */
		wake_waiters(e, WAIT_BUDGET);
	if ((n->warm_tz || o->warm_tz) && (!n->warm_tz || !o->warm_tz || strcmp(n->warm_tz, o->warm_tz) != 0)) {
		/* TZ is the process's: set once, before the threads start */
		warnx_("reload: warmup.timezone stays as it was until a restart");
		free(n->warm_tz);
		n->warm_tz = o->warm_tz ? xstrdup(o->warm_tz) : NULL;
	}
	n->shards = o->shards;
	n->spool_workers = o->spool_workers;
	n->inflight_per_shard = o->inflight_per_shard; /* sizes the shards' inboxes */
	if ((n->log_path != NULL) != (o->log_path != NULL))
		warnx_("reload: an accounting log cannot be added or dropped until a restart");
	if (n->metrics != o->metrics && (!n->metrics || !o->metrics || strcmp(n->metrics, o->metrics)))
		warnx_("reload: metrics stays on %s until a restart", o->metrics ? o->metrics : "(off)");
	if (n->control_socket != o->control_socket &&
	    (!n->control_socket || !o->control_socket || strcmp(n->control_socket, o->control_socket)))
		warnx_("reload: the control socket stays %s until a restart", o->control_socket ? o->control_socket : "off");
	if (n->log_path && !acct_reopen(&e->log, n->log_path)) {
		warnx_("reload: cannot open the accounting log %s: %s; still writing the old one",
		       n->log_path, strerror(e->log.error));
		free(n->log_path);
		n->log_path = o->log_path ? xstrdup(o->log_path) : NULL;
	}
	n->generation = ++e->generation;
	bounce_rules_free(e->classes); /* the old configuration lives on until the shards let go of it */
	e->classes = bounce_rules_compile(n->bounce_rules, n->nbounce_rules);
	e->reloaded = xrealloc(e->reloaded, (e->nreloaded + 1) * sizeof(*e->reloaded));
	e->reloaded[e->nreloaded++] = n;
	e->cfg = n;
	e->per_lane_bytes = n->inflight_bytes_per_shard;
	for (unsigned i = 0; i < e->nlanes; i++)
		shard_reconfigure(e->lanes[i].shard, n);
	/* A pair may now be another shard's: what is in force follows it. */
	adaptation_send_kept(e->adapt, n, e->shards, e->nlanes);
	warnx_("reload: configuration read again (%u route%s)", n->nroutes, n->nroutes == 1 ? "" : "s");
	snprintf(err, err_len, "configuration read again (%u route%s)", n->nroutes, n->nroutes == 1 ? "" : "s");
	return true;
}

/* Frees the reloaded configurations every shard has moved past (the
 * start configuration stays: the spool workers and the DSN writer use it).
 * Without this, every SIGHUP would keep one configuration until exit. */
static void free_unused_configs(struct engine *e)
{
	if (e->nreloaded < 2)
		return;
	uint64_t oldest = UINT64_MAX;
	for (unsigned i = 0; i < e->nlanes; i++) {
		uint64_t g = shard_config_generation(e->lanes[i].shard);
		if (g < oldest)
			oldest = g;
	}
	unsigned kept = 0;
	for (unsigned i = 0; i < e->nreloaded; i++) {
		struct config *c = e->reloaded[i];
		if (c->generation < oldest && c != e->cfg) {
			config_free(c);
			free(c);
		} else {
			e->reloaded[kept++] = c;
		}
	}
	e->nreloaded = kept;
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
	       timed_out ? "stopped at --max-time" : stop_signal ? "stopped by a signal" :
	       e->cfg->drain ? "drain finished" : "stopped",
	       secs, e->nlanes, e->nlanes == 1 ? "" : "s");
	printf("  messages final    %llu (%.0f messages/s)\n", (unsigned long long)t->messages_done,
	       secs > 0 ? (double)t->messages_done / secs : 0.0);
	printf("  delivered         %llu\n", (unsigned long long)t->delivered);
	printf("  bounced           %llu\n", (unsigned long long)t->bounced);
	printf("  expired           %llu\n", (unsigned long long)t->expired);
	if (t->suppressed)
		printf("  suppressed        %llu (on the suppression list: not sent)\n", (unsigned long long)t->suppressed);
	printf("  deferred attempts %llu\n", (unsigned long long)t->deferred);
	printf("  bad spool files   %llu\n", (unsigned long long)t->bad);
	if (t->jobs_started)
		printf("  job files         %llu started, %llu done (rows: %llu refused, %llu done before)\n",
		       (unsigned long long)t->jobs_started, (unsigned long long)t->jobs_done,
		       (unsigned long long)t->rows_refused, (unsigned long long)t->rows_skipped);
	printf("  not final         %u (left in the spool)\n", left);
	printf("  dns queries       %llu UDP, %llu TCP, %llu timed out\n", (unsigned long long)t->dns[0],
	       (unsigned long long)t->dns[1], (unsigned long long)t->dns[2]);
	printf("  tls connections   %llu (%llu full handshakes, %llu resumed), %llu fell back to plaintext\n",
	       (unsigned long long)(t->tls[0] + t->tls[1]), (unsigned long long)t->tls[0],
	       (unsigned long long)t->tls[1], (unsigned long long)t->tls[2]);
	const uint64_t *ev = adaptation_counts(e->adapt);
	if (ev[EVENT_SLOW] || ev[EVENT_SUSPEND] || ev[EVENT_FULL])
		printf("  adaptation        %llu slow-downs (%llu steps back up, %llu restored), "
		       "%llu suspensions (%llu resumed), %llu waves or warm-up days full\n",
		       (unsigned long long)ev[EVENT_SLOW], (unsigned long long)ev[EVENT_SPEEDUP],
		       (unsigned long long)ev[EVENT_RESTORE], (unsigned long long)ev[EVENT_SUSPEND],
		       (unsigned long long)ev[EVENT_RESUME], (unsigned long long)ev[EVENT_FULL]);
	tallies_print(e->tallies, stdout);
	printf("  cpu               %.2f s\n", cpu_seconds());
	fflush(stdout);
}

static void catch_signals(void)
{
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* Opens the spool (recovering what an earlier run left in active/) and
 * the accounting log, and starts the shards, their feeders and the reaper. */
static void engine_start(struct engine *e, const struct config *cfg)
{
	ASSERT(cfg->shards > 0 && cfg->spool_workers > 0); /* config_complete */
	spool_open(&e->spool, cfg->spool);
	if (cfg->control_socket) { /* in the spool (made just now) by default; while no thread makes files (umask) */
		char err[300];
		if (!(e->control = control_server_start(cfg->control_socket, err, sizeof(err))))
			fatal("control socket: %s", err);
	}
	e->spool.dsn_dir = cfg->dsn_spool;   /* the start configuration lives until exit */
	e->spool.dsn_mta = cfg->helo;
	unsigned recovered = spool_recover(&e->spool);
	e->adapt = adaptation_open(&e->spool);
	if (recovered)
		warnx_("recovered %u message(s) left in %s/active by an earlier run", recovered, cfg->spool);
	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0)
		fatal("eventfd: %s", strerror(errno));
	acct_open(&e->log, cfg->log_path, e->wake_fd);
	e->log.no_sync = !cfg->log_fsync;
	e->nlanes = cfg->shards;
	e->per_lane_max = cfg->inflight_per_shard;
	e->per_lane_bytes = cfg->inflight_bytes_per_shard;
	e->lanes = xcalloc(e->nlanes, sizeof(*e->lanes));
	e->shards = xcalloc(e->nlanes, sizeof(*e->shards));
	e->nfeeders = cfg->spool_workers;
	e->feeders = xcalloc(e->nfeeders, sizeof(*e->feeders));
	for (unsigned i = 0; i < e->nlanes; i++) {
		e->shards[i] = e->lanes[i].shard = shard_new(i, cfg, e->wake_fd);
		e->lanes[i].index = i;
	}
	shard_link(e->shards, e->nlanes); /* each pair of shards gets its rings */
	adaptation_send_kept(e->adapt, cfg, e->shards, e->nlanes); /* before any pair is made */
	for (unsigned k = 0; k < e->nfeeders; k++)
		e->feeders[k] = feeder_new(k, &e->spool, cfg, e->store, e->shards, e->nlanes,
		                           /* lane_with_room keeps each lane's tasks under FEED_BATCH */
		                           ((e->nlanes + e->nfeeders - 1) / e->nfeeders) * FEED_BATCH);
	for (unsigned i = 0; i < e->nlanes; i++) {
		e->lanes[i].feeder = e->feeders[i % e->nfeeders];
		shard_start(e->lanes[i].shard);
	}
	for (unsigned k = 0; k < e->nfeeders; k++)
		feeder_start(e->feeders[k]);
	e->feeders_running = true;
	e->reaper = reaper_new(&e->spool);
	reaper_start(e->reaper);
	e->reaper_running = true;
}

/* Feeds, collects and reloads until a signal, --max-time (start's, as
 * is --drain: a reload keeps the flags) or, in --drain mode, an empty
 * spool with nothing in flight. True when --max-time ended it with work
 * left. */
/* Every shard's pairs, as last published (about a second old at most). */
static void gather_pairs(struct engine *e)
{
	struct shard_pair_stat *one = NULL;
	size_t cap = 0;
	e->npairs = 0;
	for (unsigned i = 0; i < e->nlanes; i++) {
		size_t n = shard_pair_stats(e->lanes[i].shard, &one, &cap);
		if (e->npairs + n > e->pairs_cap) {
			e->pairs_cap = (e->npairs + n) * 2;
			e->pairs = xrealloc(e->pairs, e->pairs_cap * sizeof(*e->pairs));
		}
		if (n)
			memcpy(e->pairs + e->npairs, one, n * sizeof(*one));
		e->npairs += n;
	}
	free(one);
}

/* ---- the control socket's requests (control.h) ---- */

static void control_status(struct engine *e, struct buf *out)
{
	const struct adapt_cmd *held[4096];
	gather_pairs(e);
	uint64_t jobs = 0;
	for (struct job_run *j = e->jobs; j; j = j->next)
		jobs++;
	struct status_view v = {
		.pid = (unsigned)getpid(), .shards = e->nlanes, .uptime_s = (double)now_real_ms() / 1000.0 - e->start_wall,
		.drain = e->cfg->drain, .messages = e->t.messages_done, .delivered = e->t.delivered,
		.bounced = e->t.bounced, .expired = e->t.expired, .deferred = e->t.deferred, .bad = e->t.bad,
		.in_memory = inflight(e), .waiting = e->nsleepers, .jobs_open = jobs,
		.pairs = e->pairs, .npairs = e->npairs, .metrics = &e->metrics,
		.held = held, .nheld = adaptation_list(e->adapt, held, ARRAY_LEN(held)), .now_wall_ms = now_real_ms(),
	};
	for (unsigned k = 0; k < e->nfeeders; k++)
		v.bad += feeder_bad_total(e->feeders[k]);
	buf_adds(out, "ok\n");
	status_render(&v, out);
}

static void add_time(struct buf *b, int64_t wall_ms)
{
	buf_add_utc(b, "%Y-%m-%dT%H:%M:%SZ", wall_ms);
}

/* why ID: where the message is, its saved retry state, and (added by the
 * control thread) its last lines in the log. */
static void control_why(struct engine *e, const char *id, struct buf *out)
{
	if (id[0] == '.' || strchr(id, '/')) {
		buf_adds(out, "error: not a message id\n");
		return;
	}
	struct strmap_node *n = strmap_find(&e->claims.by_id, id);
	struct claim *k = n ? container_of(n, struct claim, by_id) : NULL;
	char *text = NULL;
	int fd = openat(e->spool.state_fd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd >= 0) {
		text = xmalloc(4096 + 1);
		size_t got = 0;
		read_full(fd, text, 4096, 0, &got);
		text[got] = 0;
		close(fd);
	}
	if (!k && !text) {
		buf_printf(out, "error: %s: this run holds no such message and has no retry state for it "
		                "(final already, not claimed yet, or unknown)\n", id);
		return;
	}
	buf_printf(out, "ok\nmessage %s\n", id);
	const struct sleeper *sl = NULL;
	for (size_t i = 0; k && i < e->nsleepers && !sl; i++)
		if (e->sleepers[i].k == k)
			sl = &e->sleepers[i];
	if (sl) {
		buf_adds(out, "waiting in the spool until ");
		add_time(out, sl->due);
		buf_printf(out, "%s\n", sl->waits & WAIT_HELD ? " (held: a suspension or a paused job; a resume wakes it)"
		                        : sl->waits & WAIT_BUDGET ? " (its wave or warm-up day is full)" : " (its retry schedule)");
	} else if (k) {
		buf_adds(out, "in delivery: a shard holds it (being sent, or waiting in memory for its next attempt)\n");
	} else {
		buf_adds(out, "not claimed by this run (its file waits in new/ or active/)\n");
	}
	if (text) {
		struct retry_state st = { 0 };
		retry_state_parse(text, &st);
		buf_printf(out, "attempts %lld, the first at ", st.attempt);
		add_time(out, st.first);
		buf_adds(out, ", the next due at ");
		add_time(out, st.due);
		buf_printf(out, "%s\nrecipients final (by index):%s\n", st.waits & WAIT_HELD ? " (held)" : "",
		           st.final && *st.final ? st.final : " none");
		free(text);
	} else {
		buf_adds(out, "no retry state saved yet (not deferred so far)\n");
	}
	if (e->cfg->log_path)
		buf_printf(out, CONTROL_LOG_MARK "%s\n", e->cfg->log_path);
}

/* "30m", "2h", "3600", "1d": seconds, into *s; false if not one. */
static bool parse_secs(const char *v, int64_t *s)
{
	char *end;
	long long n = strtoll(v, &end, 10);
	int mult = !*end ? 1 : !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : 0;
	if (end == v || n < 0 || !mult || n > 400LL * 86400 / mult)
		return false;
	*s = n * mult;
	return true;
}

static void control_do(struct engine *e, const struct control_request *r, struct buf *out)
{
	const char *cmd = r->argc ? r->argv[0] : "";
	int argc = r->argc;
	char *const *argv = r->argv;
	struct buf *log = &e->log.pending;
	int64_t secs;
	if (!strcmp(cmd, "status") && argc == 1) {
		control_status(e, out);
	} else if (!strcmp(cmd, "suspend") && argc == 4 && parse_secs(argv[3], &secs)) {
		const char *source = strcmp(argv[2], "-") ? argv[2] : "";
		int64_t until = now_real_ms() + (secs ? secs * 1000 : 400LL * 86400 * 1000 - 60000);
		int64_t end = adaptation_ctl_suspend(e->adapt, e->cfg, argv[1], source, until, log, e->shards, e->nlanes);
		adaptation_save_now(e->adapt); /* answered once it would survive a crash */
		buf_printf(out, "ok\n%s%s%s suspended ", argv[1], *source ? " from " : "", source);
		if (secs && end == until) {
			buf_adds(out, "until ");
			add_time(out, end);
			buf_adds(out, "\n");
		} else if (secs) {
			buf_adds(out, "until ");
			add_time(out, end);
			buf_adds(out, " (a suspension in force already ends then: sluice ctl resume lifts it)\n");
		} else {
			buf_adds(out, "until resumed\n");
		}
	} else if (!strcmp(cmd, "resume") && argc == 3) {
		const char *source = strcmp(argv[2], "-") ? argv[2] : "";
		bool job = false;
		unsigned n = adaptation_ctl_resume(e->adapt, argv[1], source, log, e->shards, e->nlanes, &job);
		adaptation_save_now(e->adapt);
		wake_waiters(e, WAIT_HELD);
		buf_printf(out, "ok\n%u suspension%s of %s%s%s lifted%s\n", n, n == 1 ? "" : "s", argv[1],
		           *source ? " from " : "", source, job ? "; the job's hold ended" : "");
	} else if ((!strcmp(cmd, "pause") || !strcmp(cmd, "bounce")) && argc == 2) {
		bool bounce = !strcmp(cmd, "bounce");
		adaptation_ctl_hold(e->adapt, argv[1], bounce, 0, "ctl", NULL, log, e->shards, e->nlanes);
		adaptation_save_now(e->adapt);
		if (bounce)
			wake_waiters(e, WAIT_HELD | WAIT_BUDGET);
		buf_printf(out, "ok\njob %s %s\n", argv[1],
		           bounce ? "bounced: its queued messages bounce as the shards reach them, and new ones too, "
		                    "until resumed (or 30 days)"
		                  : "paused: its messages wait until resumed (or 30 days)");
	} else if (!strcmp(cmd, "reload") && argc == 1) {
		char why[600];
		notify_reloading();
		bool ok = reload(e, why, sizeof(why));
		notify_service("READY=1");
		buf_printf(out, ok ? "ok\n%s\n" : "error: %s; the running configuration is kept\n", why);
	} else if (!strcmp(cmd, "why") && argc == 2) {
		control_why(e, argv[1], out);
	} else {
		buf_printf(out, "error: not a request: %s (see sluice ctl --help)\n", r->line[0] ? cmd : "(empty)");
	}
}

/* A request waits: carried out, logged (but a status), answered. */
static void answer_control(struct engine *e)
{
	static struct control_request r;
	if (!control_server_wanted(e->control, &r))
		return;
	struct buf out = { 0 };
	control_do(e, &r, &out);
	if (r.argc && strcmp(r.argv[0], "status") != 0) {
		size_t first = strcspn(out.p, "\n");
		acct_event_open(&e->log.pending, now_real_ms(), "ctl");
		buf_adds(&e->log.pending, ",\"command\":");
		char line[CONTROL_LINE_MAX + 1];
		size_t len = 0;
		for (int i = 0; i < r.argc; i++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", i ? " " : "", r.argv[i]);
		json_add_cstr(&e->log.pending, line);
		buf_printf(&e->log.pending, ",\"uid\":%u,\"pid\":%u,\"answer\":", r.uid, r.pid);
		json_add_string(&e->log.pending, out.p, first);
		buf_adds(&e->log.pending, "}\n");
		warnx_("ctl: uid %u: %s: %.*s", r.uid, line, (int)first, out.p);
		flush_log(e);
	}
	control_server_answer(e->control, &r, &out);
	buf_free(&out);
}

/* A scrape is waiting: the text, from what was logged so far. */
static void publish_metrics(struct engine *e)
{
	struct metrics_state st = { .messages_final = e->t.messages_done, .bad_files = e->t.bad,
	                            .jobs_started = e->t.jobs_started, .jobs_done = e->t.jobs_done,
	                            .rows_refused = e->t.rows_refused, .in_memory = inflight(e),
	                            .waiting_in_spool = e->nsleepers, .events = adaptation_counts(e->adapt),
	                            .nevents = EVENT_COUNT, .shards = e->nlanes, .start_time = e->start_wall };
	uint64_t live[SHARD_LIVE_N] = { 0 };
	for (unsigned i = 0; i < e->nlanes; i++) {
		st.claims += e->lanes[i].handed;
		shard_live_counters(e->lanes[i].shard, live);
	}
	st.live = live;
	gather_pairs(e);
	st.pairs = e->pairs;
	st.npairs = e->npairs;
	st.now_wall_ms = now_real_ms();
	static struct buf text;
	text.len = 0;
	metrics_render(&e->metrics, &st, now_mono_ms(), &text);
	metrics_server_publish(e->metrics_server, &text);
}

static bool run_loop(struct engine *e, const struct config *start, double t0)
{
	for (;;) {
		unsigned fed = feed(e);
		size_t got = collect(e);
		if (stop_signal)
			return false;
		if (reload_signal) {
			reload_signal = 0;
			char why[600];
			notify_reloading();
			reload(e, why, sizeof(why));
			notify_service("READY=1");
		}
		free_unused_configs(e);
		if (metrics_server_wanted(e->metrics_server))
			publish_metrics(e);
		answer_control(e);
		uint64_t busy = inflight(e);
		if (start->max_time_s > 0 && now_mono_s() - t0 >= start->max_time_s)
			return busy > 0 || !e->spool_empty || e->jobs || e->nsleepers || e->sleepers_coming;
		if (start->drain && e->spool_empty && busy == 0 && !e->jobs && !e->nsleepers && !e->sleepers_coming)
			return false;
		if (!fed && !got)
			wait_for_work(e, sync_due(e) ? SYNC_GAP_MS
			                 : e->spool_empty || !lane_with_room(e, e->per_lane_max) ? 50 : 1);
	}
}

/* Stops the feeders and shards (after a signal, open transactions end
 * first), logs what they reported, and waits (bounded) for the log's
 * sync so that what waited for it goes on. */
static void engine_stop(struct engine *e)
{
	for (unsigned k = 0; k < e->nfeeders; k++)
		feeder_stop(e->feeders[k]);
	e->feeders_running = false;
	if (stop_signal) {
		notify_service("STOPPING=1");
		finish_open_transactions(e);
	}
	for (unsigned i = 0; i < e->nlanes; i++) /* all at once (see shard_stop) */
		shard_stop_begin(e->lanes[i].shard);
	for (unsigned i = 0; i < e->nlanes; i++)
		shard_stop(e->lanes[i].shard);
	collect(e);
	for (double end = now_mono_s() + 10; e->nheld && !e->log_blocked && now_mono_s() < end;) {
		collect(e);
		if (e->syncing || e->nsynced)
			wait_for_work(e, 20);
	}
	adaptation_tick(e->adapt, &e->log.pending, e->shards, e->nlanes, true);
	collect(e); /* its lines */
	sync_jobs(e, true);
	reaper_stop(e->reaper); /* after the work queued so far */
	e->reaper_running = false;
	take_returns(e);
}

/* Frees the feeders and shards, keeping their counts in the totals. */
static void free_lanes(struct engine *e)
{
	for (unsigned k = 0; k < e->nfeeders; k++) {
		e->t.bad += feeder_bad_total(e->feeders[k]);
		feeder_free(e->feeders[k]);
	}
	reaper_free(e->reaper);
	for (unsigned i = 0; i < e->nlanes; i++) {
		shard_dns_counters(e->lanes[i].shard, e->t.dns);
		shard_tls_counters(e->lanes[i].shard, e->t.tls);
		shard_free(e->lanes[i].shard);
	}
	free(e->feeders);
	free(e->shards);
	free(e->lanes);
}

/* The records still held were never logged: their files stay (a job's
 * rows too: its progress has them as not done). */
static void drop_held(struct engine *e)
{
	for (size_t i = 0; i < e->nheld; i++)
		if (e->held[i].kind == OUTCOME_RETRY_STATE)
			free(e->held[i].response);
		else
			message_free(e->held[i].msg);
	free(e->held);
}

static void free_reloaded(struct engine *e)
{
	for (unsigned i = 0; i < e->nreloaded; i++) {
		config_free(e->reloaded[i]);
		free(e->reloaded[i]);
	}
	free(e->reloaded);
}

/* The suppression list: sluice's own (SPOOL/suppress) is made on first
 * use; a directory the configuration names must exist (a mistyped path
 * must not become an empty list). A list that exists and cannot be opened
 * stops the start; sluice's own that cannot be made yet (a full spool:
 * it holds no entry then) is said, and made at a later start. */
static struct suppress *open_suppression_list(const struct config *cfg)
{
	char own[4096], data[4200], err[600];
	snprintf(own, sizeof(own), "%s/suppress", cfg->spool);
	snprintf(data, sizeof(data), "%s/data.mdb", own);
	struct stat st;
	bool is_own = strcmp(cfg->suppression_list, own) == 0;
	if (!is_own && stat(cfg->suppression_list, &st) != 0)
		fatal("suppression-list %s: %s (create it, or set suppression-list = \"off\")", cfg->suppression_list,
		      strerror(errno));
	bool making = is_own && stat(data, &st) != 0;
	struct suppress *s = suppress_open(cfg->suppression_list, false, 0, err, sizeof(err));
	if (!s && making) {
		warnx_("suppression list: %s; it holds no entry yet: nothing is suppressed until a start can make it", err);
		return NULL;
	}
	if (!s)
		fatal("suppression-list: %s", err);
	return s;
}

int run_main(int argc, char **argv)
{
	struct config cfg;
	config_from_run_args(&cfg, argc, argv);
	if (cfg.warm_tz) { /* warm-up days are local days there (no thread runs yet) */
		setenv("TZ", cfg.warm_tz, 1);
		tzset();
	}
	if (!doctor_at_start(&cfg)) {
		fprintf(stderr, "sluice: a doctor check failed and doctor.at-start is \"refuse\": not delivering\n");
		config_free(&cfg);
		return 1;
	}
	struct engine e;
	memset(&e, 0, sizeof(e));
	e.cfg = &cfg;
	catch_signals();
	e.argc = argc;
	e.argv = argv;
	metrics_init(&e.metrics);
	e.start_wall = (double)now_real_ms() / 1000.0;
	if (cfg.metrics) { /* bound first: a taken port stops nothing half-way */
		char err[300];
		if (!(e.metrics_server = metrics_server_start(cfg.metrics, err, sizeof(err))))
			fatal("metrics: %s", err);
	}
	e.classes = bounce_rules_compile(cfg.bounce_rules, cfg.nbounce_rules);
	if (cfg.suppression_list && (e.store = open_suppression_list(&cfg)))
		e.bounced = bounce_suppress_start(e.store);
	e.tallies = tallies_new();
	engine_start(&e, &cfg);
	if (cfg.feedback_maildir) {
		e.feedback_classes = bounce_rules_compile(cfg.bounce_rules, cfg.nbounce_rules);
		struct feedback_ingest in = {
			.maildir = cfg.feedback_maildir, .log_path = cfg.log_path, .store = e.store,
			.judge = { .rules = e.feedback_classes, .secret = cfg.track_secret, .secret_len = cfg.track_secret_len,
			           .require_track = cfg.require_track == 1 },
		};
		e.feedback = feedback_watch_start(&in, e.wake_fd);
	}
	if (e.metrics_server && !metrics_server_run(e.metrics_server, e.wake_fd))
		warnx_("metrics: cannot start its thread; /metrics is not served");
	if (e.control && !control_server_run(e.control, e.wake_fd))
		warnx_("control socket: cannot start its thread; sluice status and ctl get no answer");
	notify_service("READY=1");
	double start = now_mono_s();
	bool timed_out = run_loop(&e, &cfg, start);
	metrics_server_stop(e.metrics_server); /* scrapes from now on: refused */
	take_feedback(&e);
	feedback_watch_stop(e.feedback); /* a complaint it noted after: counted by nobody, its line is written */
	e.feedback = NULL;
	control_server_stop(e.control);
	engine_stop(&e);
	double secs = now_mono_s() - start;
	free_lanes(&e);
	drop_held(&e);
	/* Whatever is not final stays in new/ for the next run (waiting ones
	 * go back there from active/); its claims end with this process. */
	for (struct job_run *j = e.jobs, *next; j; j = next) {
		next = j->next;
		job_run_free(j);
	}
	unsigned left = (unsigned)e.claims.n;
	spool_recover(&e.spool);
	free(e.held_claims);
	free(e.sleepers);
	free(e.notes);
	claims_free(&e.claims);
	print_summary(&e, secs, left, timed_out);
	adaptation_close(e.adapt);
	acct_close(&e.log);
	spool_close(&e.spool);
	close(e.wake_fd);
	bool drain = cfg.drain;
	doctor_at_start_end();
	metrics_free(&e.metrics);
	bounce_rules_free(e.classes);
	bounce_rules_free(e.feedback_classes);
	for (size_t b = 0; b < e.complaints_seen.nb; b++)
		for (struct strmap_node *n = e.complaints_seen.b[b], *next; n; n = next) {
			next = n->next;
			free(n);
		}
	strmap_free(&e.complaints_seen);
	bounce_suppress_stop(e.bounced); /* what it holds is added first */
	suppress_close(e.store); /* after the spool workers, whose readers went with them */
	tallies_free(e.tallies);
	free(e.pairs);
	config_free(&cfg);
	free_reloaded(&e);
	if (stop_signal && !drain)
		return 0;
	return left == 0 && !stop_signal ? 0 : 1;
}
