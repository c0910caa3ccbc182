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

#define WORK_CAP 32768
#define RETURNS_CAP 65536
#define FULL_RETRY_MS 500

/* One piece of after-log work. */
struct work {
	struct message *done;       /* final: remove and free */
	struct claim *remove;       /* or: final and freed: remove its file */
	uint64_t remove_ino;
	bool remove_state;
	char *id, *state;           /* or: save this retry state (both malloc'd) */
	struct claim *park;         /* and then move new/NAME to active/ID */
	uint64_t ino;
	int sync_fd;                /* or (when >= 0): sync and close this */
};

struct reaper {
	struct spool *sp;
	pthread_t tid;
	_Atomic int stop;
	int wake_fd;
	struct spsc work;           /* struct work */
	struct spsc returns;        /* struct claim_return */
	/* The spool's file system is full: a retry state that could not be
	 * saved waits here (and the work behind it waits too), and the engine
	 * claims nothing new until it is written. */
	struct work stalled;
	_Atomic int has_stalled;
	int64_t stalled_retry_ms;
	bool warned_full;
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
 * queue every turn of its loop; after a stop nobody does: dropped). */
static void give_back(struct reaper *r, const struct claim_return *cr)
{
	if (!cr->claim)
		return;
	while (!spsc_push(&r->returns, cr)) {
		if (atomic_load(&r->stop))
			return;
		eventfd_wait(r->wake_fd, 5);
	}
}

/* Saves a retry state (and parks the file); on a full disk keeps it as
 * the stalled work. */
static bool save_state(struct reaper *r, struct work *w)
{
	int err = spool_state_write(r->sp, w->id, w->state);
	if (err) {
		char esc[ESCAPED_MAX];
		if (!r->warned_full)
			warnx_("cannot save the retry state of %s: %s; no new messages are claimed until "
			       "it can be written", escape_text(w->id, esc, sizeof(esc)), strerror(err));
		r->warned_full = true;
		r->stalled = *w;
		atomic_store(&r->has_stalled, 1);
		r->stalled_retry_ms = now_mono_ms() + FULL_RETRY_MS;
		return false;
	}
	if (w->park) {
		spool_park(r->sp, w->park->name, w->id, w->ino);
		give_back(r, &(struct claim_return){ .claim = w->park, .left_new = true });
	}
	free(w->id);
	free(w->state);
	if (atomic_load(&r->has_stalled)) {
		atomic_store(&r->has_stalled, 0);
		r->warned_full = false;
		warnx_("retry states can be saved again: resuming");
	}
	return true;
}

static void finish(struct reaper *r, struct message *m)
{
	struct claim *k = m->claim;
	spool_finish(r->sp, m);
	give_back(r, &(struct claim_return){ .claim = k, .left_new = true, .id_free = true });
}

/* Does the queued work in order; returns how much. */
static unsigned run_work(struct reaper *r)
{
	struct work w;
	unsigned n = 0;
	if (atomic_load(&r->has_stalled)) {
		if (now_mono_ms() < r->stalled_retry_ms)
			return 0;
		w = r->stalled;
		if (!save_state(r, &w))
			return 0;
		n++;
	}
	while (spsc_pop(&r->work, &w)) {
		n++;
		if (w.done) {
			finish(r, w.done);
		} else if (w.remove) {
			spool_remove(r->sp, w.remove->name, w.remove->id, w.remove_ino, w.remove_state);
			give_back(r, &(struct claim_return){ .claim = w.remove, .left_new = true, .id_free = true });
		} else if (w.sync_fd >= 0) {
			if (fdatasync(w.sync_fd) != 0)
				warnx_("cannot sync a job's progress: %s", strerror(errno));
			close(w.sync_fd);
		} else if (!save_state(r, &w)) {
			break;
		}
	}
	return n;
}

static void *reaper_main(void *arg)
{
	struct reaper *r = arg;
	pthread_setname_np(pthread_self(), "reaper");
	while (!atomic_load(&r->stop))
		if (!run_work(r))
			eventfd_wait(r->wake_fd, 50);
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

bool reaper_remove(struct reaper *r, struct claim *k, uint64_t ino, bool has_state)
{
	return push(r, &(struct work){ .remove = k, .remove_ino = ino, .remove_state = has_state, .sync_fd = -1 });
}

uint64_t reaper_backlog(struct reaper *r)
{
	return spsc_count(&r->work);
}

bool reaper_save_state(struct reaper *r, const char *id, char *text, struct claim *claim, uint64_t ino)
{
	struct work w = { .id = xstrdup(id), .state = text, .park = claim, .ino = ino, .sync_fd = -1 };
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
	uint64_t one = 1;
	if (write(r->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		warnx_("reaper: wake: %s", strerror(errno));
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
	run_work(r);
	if (atomic_load(&r->has_stalled)) {
		char esc[ESCAPED_MAX];
		warnx_("the retry state of %s was never saved (disk full): a restart may retry it early",
		       escape_text(r->stalled.id, esc, sizeof(esc)));
		free(r->stalled.id);
		free(r->stalled.state);
		/* What waited behind it: the files stay (sent again after a restart). */
		struct work w;
		while (spsc_pop(&r->work, &w)) {
			message_free(w.done);
			free(w.id);
			free(w.state);
			if (w.sync_fd >= 0)
				close(w.sync_fd);
		}
	}
	spsc_destroy(&r->work);
	spsc_destroy(&r->returns);
	close(r->wake_fd);
	free(r);
}
