/* engine/feeder.c - spool workers (see feeder.h). Blocking file-system
 * calls are fine here: these threads exist so that shards never make them. */
#define _GNU_SOURCE
#include "feeder.h"
#include "lib/util.h"
#include "lib/spsc.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NAMES_CAP 16384
#define BATCH 64

struct claim {
	char *name;                 /* malloc'd by the engine */
	uint32_t lane;
};

/* After-log work, in the order the engine logged it. */
struct job {
	struct message *done;       /* final: remove and free */
	char *name, *state;         /* or: save this retry state (both malloc'd) */
};

struct feeder {
	unsigned index, nlanes;
	struct spool *sp;
	const struct config *cfg;
	struct shard **shards;      /* by lane */
	pthread_t tid;
	_Atomic int stop;
	int wake_fd;
	struct spsc names;          /* struct claim */
	struct spsc jobs;           /* struct job */
	_Atomic uint64_t *unsent;   /* by lane: bad or gone */
	_Atomic uint64_t *claimed_bytes; /* by lane: memory of the messages handed over */
	_Atomic uint64_t *taken;    /* by lane: names dealt with (claimed, bad or gone) */
	_Atomic uint64_t bad;
	/* The spool's file system is full: a retry state that could not be
	 * saved waits here (and the jobs behind it wait too), and the engine
	 * claims nothing new until it is written or claim_again_ms passes. */
	struct job stalled;
	_Atomic int has_stalled;
	int64_t stalled_retry_ms;
	_Atomic int64_t claim_again_ms;
	_Atomic int warned_full;    /* said once per episode */
};

#define FULL_RETRY_MS 500

struct feeder *feeder_new(unsigned index, struct spool *sp, const struct config *cfg,
                          struct shard **shards, unsigned nlanes)
{
	struct feeder *f = xcalloc(1, sizeof(*f));
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
	spsc_init(&f->names, NAMES_CAP, sizeof(struct claim));
	spsc_init(&f->jobs, NAMES_CAP * 2, sizeof(struct job));
	return f;
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

static void claim_one(struct feeder *f, const struct claim *c)
{
	char why[1024], esc[ESCAPED_MAX];
	struct message *m;
	switch (spool_claim(f->sp, c->name, f->cfg->max_message_bytes, &m, why, sizeof(why))) {
	case CLAIM_OK:
		break;
	case CLAIM_NO_ROOM: /* it stays in new/ */
		if (!atomic_exchange(&f->warned_full, 1))
			warnx_("cannot claim %s: %s; no new messages are claimed until the spool's file "
			       "system has room again", escape_text(c->name, esc, sizeof(esc)), why);
		atomic_store(&f->claim_again_ms, now_mono_ms() + FULL_RETRY_MS);
		atomic_fetch_add(&f->unsent[c->lane], 1);
		return;
	case CLAIM_BAD:
		atomic_fetch_add(&f->bad, 1);
		/* fall through */
	case CLAIM_GONE:
		atomic_fetch_add(&f->unsent[c->lane], 1);
		return;
	}
	m->arrival_ms = now_mono_ms();
	spool_state_load(f->sp, m);
	if (m->npending == 0) {
		/* Every recipient was final before a crash took the file's removal. */
		spool_finish(f->sp, m);
		atomic_fetch_add(&f->unsent[c->lane], 1);
		return;
	}
	if (!m->first_wall_ms)
		m->first_wall_ms = now_real_ms();
	m->claim_bytes = m->raw_len + (m->body_owned ? m->body_len : 0) + m->ndots * sizeof(*m->dots);
	atomic_fetch_add(&f->claimed_bytes[c->lane], m->claim_bytes);
	if (!hand_over(f, f->shards[c->lane], m))
		message_free(m); /* stopping: the file stays in active/, recovered later */
}

/* Saves a retry state; on a full disk keeps it as the stalled job. */
static bool save_state(struct feeder *f, struct job *j)
{
	int err = spool_state_write(f->sp, j->name, j->state);
	if (err) {
		char esc[ESCAPED_MAX];
		if (!atomic_exchange(&f->warned_full, 1))
			warnx_("cannot save the retry state of %s: %s; no new messages are claimed until "
			       "it can be written", escape_text(j->name, esc, sizeof(esc)), strerror(err));
		f->stalled = *j;
		atomic_store(&f->has_stalled, 1);
		f->stalled_retry_ms = now_mono_ms() + FULL_RETRY_MS;
		return false;
	}
	free(j->name);
	free(j->state);
	if (atomic_load(&f->has_stalled)) {
		atomic_store(&f->has_stalled, 0);
		atomic_store(&f->warned_full, 0);
		warnx_("retry states can be saved again: resuming");
	}
	return true;
}

/* Removes final messages' files, saves retry states, in the order the
 * engine logged them; returns how many. */
static unsigned run_jobs(struct feeder *f)
{
	struct job j;
	unsigned n = 0;
	if (atomic_load(&f->has_stalled)) {
		if (now_mono_ms() < f->stalled_retry_ms)
			return 0;
		j = f->stalled;
		if (!save_state(f, &j))
			return 0;
		n++;
	}
	while (spsc_pop(&f->jobs, &j)) {
		n++;
		if (j.done)
			spool_finish(f->sp, j.done);
		else if (!save_state(f, &j))
			break;
	}
	return n;
}

static void kick_shards(struct feeder *f)
{
	for (unsigned i = 0; i < f->nlanes; i++)
		if (f->shards[i])
			shard_kick(f->shards[i]);
}

static void *feeder_main(void *arg)
{
	struct feeder *f = arg;
	char tname[16];
	snprintf(tname, sizeof(tname), "spool%u", f->index);
	pthread_setname_np(pthread_self(), tname);
	while (!atomic_load(&f->stop)) {
		struct claim c;
		unsigned claimed = 0, removed = run_jobs(f);
		while (claimed < BATCH && !atomic_load(&f->stop) && spsc_pop(&f->names, &c)) {
			claim_one(f, &c);
			atomic_fetch_add(&f->taken[c.lane], 1);
			free(c.name);
			claimed++;
		}
		if (claimed)
			kick_shards(f);
		else if (!removed)
			eventfd_wait(f->wake_fd, 50);
	}
	run_jobs(f); /* everything logged as final leaves the spool, states are saved */
	return NULL;
}

void feeder_start(struct feeder *f)
{
	if (pthread_create(&f->tid, NULL, feeder_main, f) != 0)
		fatal("cannot start spool worker %u", f->index);
}

bool feeder_offer(struct feeder *f, const char *name, unsigned lane)
{
	ASSERT(lane < f->nlanes && f->shards[lane]);
	struct claim c = { xstrdup(name), lane };
	if (spsc_push(&f->names, &c))
		return true;
	free(c.name);
	return false;
}

void feeder_kick(struct feeder *f)
{
	uint64_t one = 1;
	if (write(f->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		warnx_("spool worker %u: wake: %s", f->index, strerror(errno));
}

bool feeder_finish(struct feeder *f, struct message *m)
{
	struct job j = { .done = m };
	return spsc_push(&f->jobs, &j);
}

bool feeder_save_state(struct feeder *f, const char *name, char *text)
{
	struct job j = { .name = xstrdup(name), .state = text };
	if (spsc_push(&f->jobs, &j))
		return true;
	free(j.name);
	return false;
}

uint64_t feeder_unsent(struct feeder *f, unsigned lane) { return atomic_load(&f->unsent[lane]); }
uint64_t feeder_claimed_bytes(struct feeder *f, unsigned lane) { return atomic_load(&f->claimed_bytes[lane]); }
uint64_t feeder_taken(struct feeder *f, unsigned lane) { return atomic_load(&f->taken[lane]); }
uint64_t feeder_bad_total(struct feeder *f) { return atomic_load(&f->bad); }

bool feeder_spool_full(struct feeder *f)
{
	return atomic_load(&f->has_stalled) || now_mono_ms() < atomic_load(&f->claim_again_ms);
}

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
	struct claim c;
	while (spsc_pop(&f->names, &c))
		free(c.name);
	run_jobs(f);
	if (atomic_load(&f->has_stalled)) {
		char esc[ESCAPED_MAX];
		warnx_("the retry state of %s was never saved (disk full): a restart may retry it early",
		       escape_text(f->stalled.name, esc, sizeof(esc)));
		free(f->stalled.name);
		free(f->stalled.state);
		/* What waited behind it: the files stay (sent again after a restart). */
		struct job j;
		while (spsc_pop(&f->jobs, &j)) {
			message_free(j.done);
			free(j.name);
			free(j.state);
		}
	}
	spsc_destroy(&f->names);
	spsc_destroy(&f->jobs);
	free(f->unsent);
	free(f->claimed_bytes);
	free(f->taken);
	close(f->wake_fd);
	free(f);
}
