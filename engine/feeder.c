/* engine/feeder.c - claim workers (see feeder.h). Blocking file-system
 * calls are fine here: this thread exists so that shards never make them. */
#define _GNU_SOURCE
#include "feeder.h"
#include "util.h"
#include "../shards/spsc.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NAMES_CAP 8192
#define BATCH 64

struct feeder {
	unsigned index;
	struct spool *sp;
	const struct config *cfg;
	struct shard *shard;
	pthread_t tid;
	_Atomic int stop;
	int wake_fd;
	struct spsc names;          /* char *, malloc'd by the engine */
	struct spsc finished;       /* struct message *, final and logged */
	_Atomic uint64_t bad, gone;
};

struct feeder *feeder_new(unsigned index, struct spool *sp, const struct config *cfg, struct shard *sh)
{
	struct feeder *f = xcalloc(1, sizeof(*f));
	f->index = index;
	f->sp = sp;
	f->cfg = cfg;
	f->shard = sh;
	f->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->wake_fd < 0)
		fatal("eventfd: %s", strerror(errno));
	spsc_init(&f->names, NAMES_CAP, sizeof(char *));
	spsc_init(&f->finished, NAMES_CAP * 2, sizeof(struct message *));
	return f;
}

/* Gives m to the shard, waiting while its inbox is full. False at stop. */
static bool hand_over(struct feeder *f, struct message *m)
{
	while (!shard_offer(f->shard, m)) {
		shard_kick(f->shard);
		if (atomic_load(&f->stop))
			return false;
		eventfd_wait(f->wake_fd, 1);
	}
	return true;
}

static void claim_one(struct feeder *f, char *name)
{
	char why[1024];
	bool gone;
	struct message *m = spool_claim(f->sp, name, f->cfg->max_message_bytes, &gone, why, sizeof(why));
	if (!m) {
		if (gone) {
			atomic_fetch_add(&f->gone, 1);
		} else {
			spool_reject(f->sp, name, why);
			atomic_fetch_add(&f->bad, 1);
		}
		return;
	}
	m->arrival_ms = now_mono_ms();
	if (!hand_over(f, m))
		message_free(m); /* stopping: the file stays in active/, recovered later */
}

/* Removes the files of final messages; returns how many. */
static unsigned remove_finished(struct feeder *f)
{
	struct message *m;
	unsigned n = 0;
	while (spsc_pop(&f->finished, &m)) {
		spool_remove(f->sp, m->id);
		message_free(m);
		n++;
	}
	return n;
}

static void *feeder_main(void *arg)
{
	struct feeder *f = arg;
	char name[16];
	snprintf(name, sizeof(name), "feeder%u", f->index);
	pthread_setname_np(pthread_self(), name);
	while (!atomic_load(&f->stop)) {
		char *n;
		unsigned done = remove_finished(f);
		while (done < BATCH && !atomic_load(&f->stop) && spsc_pop(&f->names, &n)) {
			claim_one(f, n);
			free(n);
			done++;
		}
		if (done)
			shard_kick(f->shard);
		else
			eventfd_wait(f->wake_fd, 50);
	}
	remove_finished(f); /* everything logged as final leaves the spool */
	return NULL;
}

void feeder_start(struct feeder *f)
{
	if (pthread_create(&f->tid, NULL, feeder_main, f) != 0)
		fatal("cannot start feeder thread %u", f->index);
}

bool feeder_offer(struct feeder *f, const char *name)
{
	char *n = xstrdup(name);
	if (spsc_push(&f->names, &n))
		return true;
	free(n);
	return false;
}

void feeder_kick(struct feeder *f)
{
	uint64_t one = 1;
	if (write(f->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		warnx_("feeder %u: wake: %s", f->index, strerror(errno));
}

bool feeder_finish(struct feeder *f, struct message *m)
{
	return spsc_push(&f->finished, &m);
}

uint64_t feeder_bad(struct feeder *f) { return atomic_load(&f->bad); }
uint64_t feeder_gone(struct feeder *f) { return atomic_load(&f->gone); }

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
	char *n;
	while (spsc_pop(&f->names, &n))
		free(n);
	remove_finished(f);
	spsc_destroy(&f->names);
	spsc_destroy(&f->finished);
	close(f->wake_fd);
	free(f);
}
