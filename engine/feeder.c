/* engine/feeder.c - spool workers (see feeder.h). Blocking file-system
 * calls are fine here: these threads exist so that shards never make them. */
#define _GNU_SOURCE
#include "feeder.h"
#include "header_templates.h"
#include "suppress.h"
#include "lib/envelope.h"
#include "lib/util.h"
#include "lib/spsc.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WORK_CAP 4096   /* tasks queued at least (more when it serves many lanes) */
#define BATCH 64

/* One piece of work: a claimed file, or a job's row. */
#define LATER_MS 10000 /* a parked file that could not be read: tried again after */

struct task {
	struct claim *claim;
	bool parked;               /* its file waited in active/ (see spool_claim_parked) */
	struct job_run *job;
	struct job_row row;
	uint32_t lane;
};

struct feeder {
	unsigned index, nlanes;
	struct spool *sp;
	const struct config *cfg;
	struct shard **shards;      /* by lane */
	pthread_t tid;
	_Atomic int stop;
	int wake_fd;
	struct spsc tasks;          /* struct task */
	struct spsc returns;        /* struct claim_return */
	_Atomic uint64_t *unsent;   /* by lane: bad or gone */
	_Atomic uint64_t *claimed_bytes; /* by lane: memory of the messages handed over */
	_Atomic uint64_t *taken;    /* by lane: tasks dealt with */
	_Atomic uint64_t bad;
	struct buf render;          /* a row's text, before it becomes a message */
	struct suppress *store;     /* the suppression list, or NULL */
	struct suppress_reader *reader; /* this thread's reader of it */
	int64_t date_s;             /* the second date_text is for */
	char date_text[40];
};

struct feeder *feeder_new(unsigned index, struct spool *sp, const struct config *cfg, struct suppress *store,
                          struct shard **shards, unsigned nlanes, unsigned tasks)
{
	struct feeder *f = xcalloc(1, sizeof(*f));
	f->store = store;
	f->index = index;
	f->nlanes = nlanes;
	f->sp = sp;
	f->cfg = cfg;
	f->shards = shards;
	f->unsent = xcalloc(nlanes, sizeof(*f->unsent));
	f->claimed_bytes = xcalloc(nlanes, sizeof(*f->claimed_bytes));
	f->taken = xcalloc(nlanes, sizeof(*f->taken));
	f->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->wake_fd < 0)
		fatal("eventfd: %s", strerror(errno));
	uint64_t cap = WORK_CAP;
	while (cap < tasks)
		cap *= 2;
	spsc_init(&f->tasks, cap, sizeof(struct task));
	/* Each task gives back at most one record, and the engine takes them
	 * every turn: twice the tasks is room enough. */
	spsc_init(&f->returns, 2 * cap, sizeof(struct claim_return));
	return f;
}

/* Waits (bounded by stop) until the engine has room for a record. */
static void give_back(struct feeder *f, const struct claim_return *r)
{
	while (!spsc_push(&f->returns, r)) {
		if (atomic_load(&f->stop)) { /* stopping: the row is not logged, so not done */
			message_free(r->refused);
			free(r->reason);
			return;
		}
		eventfd_wait(f->wake_fd, 5);
	}
}

/* Gives m to the shard, waiting while its inbox is full. False at stop. */
static bool hand_over(struct feeder *f, struct shard *sh, struct message *m)
{
	while (!shard_offer(sh, m)) {
		shard_kick(sh);
		if (atomic_load(&f->stop))
			return false;
		eventfd_wait(f->wake_fd, 1);
	}
	return true;
}

/* The suppression list, checked for each recipient still to send to (one
 * snapshot for the message): those on it are marked, for their shard to
 * log. A list that cannot be read holds the message back (deferred by its
 * shard, checked again when read again), never "nothing suppressed". */
static void check_suppressed(struct feeder *f, struct message *m)
{
	if (!f->reader)
		return;
	const char *at = strrchr(m->sender, '@');
	suppress_reader_begin(f->reader);
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		if (m->rcpt_state[i] != RCPT_PENDING)
			continue;
		struct suppress_entry e;
		enum suppress_result r = suppress_check(f->reader, at ? at + 1 : NULL, m->rcpt[i], &e);
		if (r == SUPPRESS_ERROR) {
			char why[400];
			snprintf(why, sizeof(why), "the suppression list cannot be read: %s", suppress_reader_error(f->reader));
			free(m->suppress_error);
			m->suppress_error = xstrdup(why);
			break;
		}
		if (r != SUPPRESS_YES)
			continue;
		if (!m->suppress_why)
			m->suppress_why = xcalloc(m->nrcpt, sizeof(*m->suppress_why));
		struct buf b = { 0 };
		buf_printf(&b, "suppressed: %s%s%s (%s, ", e.reason, e.scope[0] ? " for " : "", e.scope, e.source);
		buf_add_utc(&b, "%Y-%m-%dT%H:%M:%SZ", e.added * 1000);
		buf_add(&b, ")", 2);
		m->suppress_why[i] = b.p;
		m->rcpt_state[i] = RCPT_SUPPRESSED;
		m->npending--;
		m->nsuppressed++;
	}
	suppress_reader_end(f->reader);
}

static void deliver(struct feeder *f, struct message *m, unsigned lane)
{
	m->arrival_ms = now_mono_ms();
	check_suppressed(f, m);
	header_templates_apply(f->cfg, m);
	if (!m->first_wall_ms)
		m->first_wall_ms = now_real_ms();
	m->claim_bytes = m->raw_len + (m->body_owned ? m->body_len : 0) + m->ndots * sizeof(*m->dots);
	atomic_fetch_add(&f->claimed_bytes[lane], m->claim_bytes);
	if (!hand_over(f, f->shards[lane], m))
		message_free(m); /* stopping: its file stays, read again later */
}

static void claim_file(struct feeder *f, struct claim *k, bool parked, unsigned lane)
{
	char why[1024];
	struct message *m;
	enum claim_result got = parked
		? spool_claim_parked(f->sp, k->name, k->id, f->cfg->max_message_bytes, &m, why, sizeof(why))
		: spool_claim(f->sp, k->name, k->id, f->cfg->max_message_bytes, &m, why, sizeof(why));
	switch (got) {
	case CLAIM_OK:
		break;
	case CLAIM_LATER: /* a parked file that could not be read: it waits again */
		atomic_fetch_add(&f->unsent[lane], 1);
		give_back(f, &(struct claim_return){ .claim = k, .sleep_until = now_real_ms() + LATER_MS });
		return;
	case CLAIM_BAD:
		atomic_fetch_add(&f->bad, 1);
		/* fall through */
	case CLAIM_GONE:
		atomic_fetch_add(&f->unsent[lane], 1);
		give_back(f, &(struct claim_return){ .claim = k, .left_new = true, .id_free = true });
		return;
	}
	m->claim = k;
	spool_state_load(f->sp, m);
	if (parked) /* the engine woke it: due now, whatever its state said (a reload may wake it early) */
		m->due_wall_ms = 0;
	if (m->npending == 0) {
		/* Every recipient was final before a crash took the file's removal. */
		bool gone = spool_finish(f->sp, m);
		atomic_fetch_add(&f->unsent[lane], 1);
		give_back(f, &(struct claim_return){ .claim = k, .left_new = gone, .id_free = gone });
		return;
	}
	int64_t wait = m->has_state ? m->due_wall_ms - now_real_ms() : 0;
	if (wait > 0) {
		/* Back from an earlier run and waiting for its retry: it waits in
		 * active/, as it did (rare: the one directory change a spool
		 * worker makes; a park the engine may still ask for finds it
		 * moved, and does nothing); a long wait out of memory, as the
		 * shards would have it (see "Waiting in the spool" in run.c). */
		bool left = spool_park(f->sp, k->name, k->id, &m->print);
		bool sleeps = !f->cfg->dsn_spool && f->cfg->wait_in_spool_ms > 0 && wait >= f->cfg->wait_in_spool_ms;
		give_back(f, &(struct claim_return){ .claim = k, .left_new = left,
		                                     .sleep_until = sleeps ? m->due_wall_ms : 0,
		                                     .waits = m->waits });
		if (sleeps) {
			message_free(m);
			atomic_fetch_add(&f->unsent[lane], 1);
			return;
		}
	}
	deliver(f, m, lane);
}

static const char *date_now(struct feeder *f)
{
	int64_t ms = now_real_ms();
	if (ms / 1000 != f->date_s) {
		struct buf b = { 0 };
		buf_add_utc(&b, RFC5322_DATE, ms);
		snprintf(f->date_text, sizeof(f->date_text), "%.*s", (int)b.len, b.p);
		buf_free(&b);
		f->date_s = ms / 1000;
	}
	return f->date_text;
}

/* m is row r of job j: its identity NAME#ROW, its file the job's. */
static void make_row(struct message *m, struct job_run *j, const struct job_row *r)
{
	char row[32];
	snprintf(row, sizeof(row), "#%llu", (unsigned long long)r->row);
	m->file = xstrdup(j->name);
	m->id = xmalloc(strlen(j->name) + strlen(row) + 1);
	strcpy(stpcpy(m->id, j->name), row);
	m->job_run = j;
	m->row = r->row;
}

/* A refused row, as a message of one recipient for the log. */
static void refuse_row(struct feeder *f, struct job_run *j, const struct job_row *r, unsigned lane,
                       const char *rcpt, const char *why)
{
	/* Its strings in its own raw: the job may end before it is freed. */
	const char *parts[4] = { rcpt, j->head.sender, j->head.job, j->head.pool ? j->head.pool : "" };
	struct buf raw = { 0 };
	size_t at[4];
	for (int i = 0; i < 4; i++) {
		at[i] = raw.len;
		buf_add(&raw, parts[i], strlen(parts[i]) + 1);
	}
	struct message *m = xcalloc(1, sizeof(*m));
	m->raw = raw.p;
	m->raw_len = raw.len;
	m->nrcpt = m->npending = 1;
	m->rcpt = xcalloc(1, sizeof(*m->rcpt));
	m->rcpt[0] = m->raw + at[0];
	m->rcpt_state = xcalloc(1, 1);
	m->sender = m->raw + at[1];
	m->job = m->raw + at[2];
	m->pool = j->head.pool ? m->raw + at[3] : NULL;
	make_row(m, j, r);
	char *reason = xmalloc(strlen(why) + 32);
	sprintf(reason, "line %u: %s", r->line, why);
	give_back(f, &(struct claim_return){ .refused = m, .reason = reason, .lane = lane });
}

static void render_row(struct feeder *f, struct job_run *j, struct job_row *r, unsigned lane)
{
	char why[600], rcpt[ADDRESS_MAX + 1] = "";
	f->render.len = 0;
	bool ok = !r->too_long;
	if (!ok)
		snprintf(why, sizeof(why), "record longer than %u bytes", JOB_RECORD_MAX);
	else
		ok = job_render(&j->head, r->rec, r->len, r->row, j->token, j->head.has_date ? NULL : date_now(f),
		                &f->render, rcpt, sizeof(rcpt), why, sizeof(why));
	if (ok && f->render.len > f->cfg->max_message_bytes) {
		snprintf(why, sizeof(why), "the rendered message of %zu bytes is larger than the limit of %llu",
		         f->render.len, (unsigned long long)f->cfg->max_message_bytes);
		ok = false;
	}
	struct message *m = NULL;
	if (ok) {
		m = xcalloc(1, sizeof(*m));
		m->raw_len = f->render.len;
		m->raw = xmalloc(m->raw_len + 1);
		memcpy(m->raw, f->render.p, m->raw_len);
		m->raw[m->raw_len] = 0;
		ok = envelope_parse(m, why, sizeof(why));
	}
	if (!ok) {
		message_free(m);
		refuse_row(f, j, r, lane, rcpt, why);
	} else {
		make_row(m, j, r);
		m->first_wall_ms = j->first_ms;
		deliver(f, m, lane);
	}
	free(r->rec);
}

static void *feeder_main(void *arg)
{
	struct feeder *f = arg;
	char tname[16];
	snprintf(tname, sizeof(tname), "spool%u", f->index);
	pthread_setname_np(pthread_self(), tname);
	if (f->store)
		f->reader = suppress_reader_new(f->store);
	while (!atomic_load(&f->stop)) {
		struct task t;
		unsigned done = 0;
		while (done < BATCH && !atomic_load(&f->stop) && spsc_pop(&f->tasks, &t)) {
			if (t.job)
				render_row(f, t.job, &t.row, t.lane);
			else
				claim_file(f, t.claim, t.parked, t.lane);
			atomic_fetch_add(&f->taken[t.lane], 1);
			done++;
		}
		if (done) {
			for (unsigned i = 0; i < f->nlanes; i++)
				if (f->shards[i])
					shard_kick(f->shards[i]);
		} else {
			eventfd_wait(f->wake_fd, 50);
		}
	}
	suppress_reader_free(f->reader);
	f->reader = NULL;
	return NULL;
}

void feeder_start(struct feeder *f)
{
	if (pthread_create(&f->tid, NULL, feeder_main, f) != 0)
		fatal("cannot start spool worker %u", f->index);
}

bool feeder_offer(struct feeder *f, struct claim *k, bool parked, unsigned lane)
{
	ASSERT(lane < f->nlanes && f->shards[lane]);
	return spsc_push(&f->tasks, &(struct task){ .claim = k, .parked = parked, .lane = lane });
}

bool feeder_offer_row(struct feeder *f, struct job_run *j, struct job_row *row, unsigned lane)
{
	ASSERT(lane < f->nlanes && f->shards[lane]);
	return spsc_push(&f->tasks, &(struct task){ .job = j, .row = *row, .lane = lane });
}

void feeder_kick(struct feeder *f)
{
	eventfd_kick(f->wake_fd);
}

bool feeder_returned(struct feeder *f, struct claim_return *out)
{
	return spsc_pop(&f->returns, out);
}

uint64_t feeder_unsent(struct feeder *f, unsigned lane) { return atomic_load(&f->unsent[lane]); }
uint64_t feeder_claimed_bytes(struct feeder *f, unsigned lane) { return atomic_load(&f->claimed_bytes[lane]); }
uint64_t feeder_taken(struct feeder *f, unsigned lane) { return atomic_load(&f->taken[lane]); }
uint64_t feeder_bad_total(struct feeder *f) { return atomic_load(&f->bad); }

void feeder_stop(struct feeder *f)
{
	atomic_store(&f->stop, 1);
	feeder_kick(f);
	pthread_join(f->tid, NULL);
}

void feeder_free(struct feeder *f)
{
	if (!f)
		return;
	struct task t;
	while (spsc_pop(&f->tasks, &t))
		if (t.job)
			free(t.row.rec);
	struct claim_return r;
	while (spsc_pop(&f->returns, &r)) {
		message_free(r.refused);
		free(r.reason);
	}
	spsc_destroy(&f->tasks);
	spsc_destroy(&f->returns);
	free(f->unsent);
	free(f->claimed_bytes);
	free(f->taken);
	buf_free(&f->render);
	close(f->wake_fd);
	free(f);
}
