/* engine/reaper.c - the thread that removes final messages' files and
 * saves retry states (see reaper.h). Blocking file-system calls are fine
 * here: it exists so that neither the shards nor the engine make them. */
#define _GNU_SOURCE
#include "reaper.h"
#include "lib/spsc.h"
#include "lib/util.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WORK_CAP 65536
#define RETURNS_CAP 131072
#define FULL_RETRY_MS 500

/* One piece of after-log work. */
struct work {
	struct message *done;       /* final: DSN, remove and free */
	struct claim *remove;       /* or: final and freed: remove its file */
	bool remove_state;
	char *id, *state;           /* or: save this retry state (both malloc'd) */
	struct claim *park;         /* and then move new/NAME to active/ID */
	struct claim *sleeper;      /* and then: it waits in the spool until sleep_until */
	int64_t sleep_until;
	uint8_t waits;              /* WAIT_* */
	struct file_print print;    /* of the file (remove, park) */
	int sync_fd;                /* or (when >= 0): sync and close this */
};

struct reaper {
	struct spool *sp;
	pthread_t tid;
	_Atomic int stop;
	int wake_fd;
	struct spsc work;           /* struct work */
	struct spsc returns;        /* struct claim_return */
	/* Retry states that could not be saved (the spool's file system is
	 * full), one per identity, tried again every FULL_RETRY_MS; removals
	 * go on meanwhile (they make room), and the engine claims nothing new
	 * until the list is empty. */
	struct work *stalled;
	size_t nstalled, stalled_cap;
	_Atomic int has_stalled;
	int64_t stalled_retry_ms;
	bool retrying;              /* in retry_stalled: said once already */
};

struct reaper *reaper_new(struct spool *sp)
{
	struct reaper *r = xcalloc(1, sizeof(*r));
	r->sp = sp;
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->wake_fd < 0)
		fatal("eventfd: %s", strerror(errno));
	spsc_init(&r->work, WORK_CAP, sizeof(struct work));
	spsc_init(&r->returns, RETURNS_CAP, sizeof(struct claim_return));
	return r;
}

/* Hands a claim back, waiting while the engine is behind (it drains the
 * queue every turn of its loop; after a stop it drains it once more). */
static void give_back(struct reaper *r, const struct claim_return *cr)
{
	if (!cr->claim)
		return;
	while (!spsc_push(&r->returns, cr)) {
		if (atomic_load(&r->stop))
			return; /* cannot happen: RETURNS_CAP exceeds everything in flight */
		eventfd_wait(r->wake_fd, 5);
	}
}

static void free_work(struct work *w)
{
	free(w->id);
	free(w->state);
	w->id = w->state = NULL;
}

/* The stalled save of identity id, or NULL. */
static struct work *stalled_for(struct reaper *r, const char *id)
{
	for (size_t i = 0; i < r->nstalled; i++)
		if (strcmp(r->stalled[i].id, id) == 0)
			return &r->stalled[i];
	return NULL;
}

static void drop_stalled(struct reaper *r, struct work *w)
{
	free_work(w);
	*w = r->stalled[--r->nstalled];
	atomic_store(&r->has_stalled, r->nstalled > 0);
}

/* Keeps a save that failed for room; a newer one for the same identity
 * replaces it (keeping the move to active/ the first one asked for). */
static void stall(struct reaper *r, struct work *w, int err)
{
	char esc[ESCAPED_MAX];
	if (!r->nstalled && !r->retrying)
		warnx_("cannot save the retry state of %s: %s; no new messages are claimed until "
		       "it can be written", escape_text(w->id, esc, sizeof(esc)), strerror(err));
	struct work *old = stalled_for(r, w->id);
	if (old) {
		if (!w->park)
			w->park = old->park;
		free_work(old);
		*old = *w;
	} else {
		if (r->nstalled == r->stalled_cap) {
			r->stalled_cap = r->stalled_cap ? 2 * r->stalled_cap : 16;
			r->stalled = xrealloc(r->stalled, r->stalled_cap * sizeof(*r->stalled));
		}
		r->stalled[r->nstalled++] = *w;
	}
	atomic_store(&r->has_stalled, 1);
	r->stalled_retry_ms = now_mono_ms() + FULL_RETRY_MS;
}

/* Saves a retry state (and parks the file); on a full disk stalls it.
 * True when saved. */
static bool save_state(struct reaper *r, struct work *w)
{
	int err = spool_state_write(r->sp, w->id, w->state);
	if (err) {
		stall(r, w, err);
		return false;
	}
	if (w->park)
		give_back(r, &(struct claim_return){
			.claim = w->park, .left_new = spool_park(r->sp, w->park->name, w->id, &w->print) });
	if (w->sleeper) /* its state is on disk: it may be read again when due, not before */
		give_back(r, &(struct claim_return){ .claim = w->sleeper, .sleep_until = w->sleep_until,
		                                     .waits = w->waits });
	free_work(w);
	return true;
}

/* A final message's removal: a save still stalled for it is moot. */
static void forget_stalled(struct reaper *r, const char *id)
{
	struct work *s = stalled_for(r, id);
	if (s)
		drop_stalled(r, s);
}

static void finish(struct reaper *r, struct message *m)
{
	struct claim *k = m->claim;
	if (k)
		forget_stalled(r, k->id);
	bool gone = spool_finish(r->sp, m);
	give_back(r, &(struct claim_return){ .claim = k, .left_new = gone, .id_free = gone });
}

static void remove_file(struct reaper *r, struct work *w)
{
	struct claim *k = w->remove;
	forget_stalled(r, k->id);
	bool gone = spool_remove(r->sp, k->name, k->id, &w->print, w->remove_state);
	give_back(r, &(struct claim_return){ .claim = k, .left_new = gone, .id_free = gone });
}

/* Tries the stalled saves again when their time has come. */
static unsigned retry_stalled(struct reaper *r)
{
	if (!r->nstalled || now_mono_ms() < r->stalled_retry_ms)
		return 0;
	unsigned n = 0;
	r->retrying = true;
	for (size_t i = 0; i < r->nstalled;) {
		struct work w = r->stalled[i];
		r->stalled[i] = r->stalled[--r->nstalled];
		if (save_state(r, &w)) { /* else stall() put it back at the end */
			n++;
			continue;
		}
		break; /* still no room: the rest waits too */
	}
	r->retrying = false;
	atomic_store(&r->has_stalled, r->nstalled > 0);
	if (!r->nstalled && n)
		warnx_("retry states can be saved again: resuming");
	return n;
}

/* Does the queued work in order; returns how much. */
static unsigned run_work(struct reaper *r)
{
	struct work w;
	unsigned n = retry_stalled(r);
	while (spsc_pop(&r->work, &w)) {
		n++;
		if (w.done)
			finish(r, w.done);
		else if (w.remove)
			remove_file(r, &w);
		else if (w.sync_fd >= 0) {
			if (fdatasync(w.sync_fd) != 0)
				warnx_("cannot sync a job's progress: %s", strerror(errno));
			close(w.sync_fd);
		} else if (stalled_for(r, w.id))
			stall(r, &w, ENOSPC); /* after the one waiting: in order */
		else
			save_state(r, &w);
	}
	return n;
}

static void *reaper_main(void *arg)
{
	struct reaper *r = arg;
	pthread_setname_np(pthread_self(), "reaper");
	while (!atomic_load(&r->stop))
		if (!run_work(r))
			eventfd_wait(r->wake_fd, r->nstalled ? FULL_RETRY_MS / 5 : 50);
	run_work(r); /* everything logged as final leaves the spool, states are saved */
	return NULL;
}

void reaper_start(struct reaper *r)
{
	if (pthread_create(&r->tid, NULL, reaper_main, r) != 0)
		fatal("cannot start the reaper thread");
}

static bool push(struct reaper *r, const struct work *w)
{
	return spsc_push(&r->work, w);
}

bool reaper_finish(struct reaper *r, struct message *m)
{
	return push(r, &(struct work){ .done = m, .sync_fd = -1 });
}

bool reaper_remove(struct reaper *r, struct claim *k, struct file_print print, bool has_state)
{
	return push(r, &(struct work){ .remove = k, .print = print, .remove_state = has_state, .sync_fd = -1 });
}

uint64_t reaper_backlog(struct reaper *r)
{
	return spsc_count(&r->work);
}

bool reaper_save_state(struct reaper *r, const char *id, char *text, struct claim *claim, struct file_print print,
                       const struct claim_return *sleep)
{
	struct work w = { .id = xstrdup(id), .state = text, .park = claim, .print = print, .sync_fd = -1 };
	if (sleep) {
		w.sleeper = sleep->claim;
		w.sleep_until = sleep->sleep_until;
		w.waits = sleep->waits;
	}
	if (push(r, &w))
		return true;
	free(w.id);
	return false;
}

bool reaper_sync(struct reaper *r, int fd)
{
	return push(r, &(struct work){ .sync_fd = fd });
}

void reaper_kick(struct reaper *r)
{
	eventfd_kick(r->wake_fd);
}

bool reaper_returned(struct reaper *r, struct claim_return *out)
{
	return spsc_pop(&r->returns, out);
}

bool reaper_spool_full(struct reaper *r)
{
	return atomic_load(&r->has_stalled);
}

void reaper_stop(struct reaper *r)
{
	atomic_store(&r->stop, 1);
	reaper_kick(r);
	pthread_join(r->tid, NULL);
}

void reaper_free(struct reaper *r)
{
	if (!r)
		return;
	struct work w;
	ASSERT(!spsc_pop(&r->work, &w)); /* reaper_stop did it all */
	for (size_t i = 0; i < r->nstalled; i++) {
		char esc[ESCAPED_MAX];
		warnx_("the retry state of %s was never saved (disk full): a restart may retry it early",
		       escape_text(r->stalled[i].id, esc, sizeof(esc)));
		free_work(&r->stalled[i]);
	}
	free(r->stalled);
	spsc_destroy(&r->work);
	spsc_destroy(&r->returns);
	close(r->wake_fd);
	free(r);
}
