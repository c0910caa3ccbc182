/* engine/feedback_watch.c - the daemon's feedback.maildir: a thread that
 * waits for new reports (inotify on DIR/new, and a look every few seconds
 * for what inotify may miss) and ingests them (feedback_ingest.c: records
 * in the accounting log, suppressions, the file to cur/), handing each
 * complaint to the engine, which counts it against its job
 * (feedback_watch_take). Nothing here runs on the engine's loop or a
 * shard's. */
#define _GNU_SOURCE
#include "feedback_watch.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#define RESCAN_MS 5000
#define NOTES_MAX 100000 /* complaints waiting for the engine (beyond: dropped, counted) */

struct feedback_watch {
	struct feedback_ingest in;
	char *maildir, *log_path;
	pthread_t thread;
	bool running;
	int stop_fd, wake_fd, inotify_fd;
	pthread_mutex_t mu;
	struct feedback_note *notes; /* under mu */
	size_t nnotes, cap;
	struct feedback_ingest_counts counts; /* under mu */
	uint64_t dropped;
	bool warned;
};

static void note(void *arg, const char *job, const char *id, const char *rcpt, const char *source, enum result r)
{
	struct feedback_watch *w = arg;
	pthread_mutex_lock(&w->mu);
	if (w->nnotes < NOTES_MAX) {
		if (w->nnotes == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 64;
			w->notes = xrealloc(w->notes, w->cap * sizeof(*w->notes));
		}
		struct feedback_note *n = &w->notes[w->nnotes++];
		snprintf(n->job, sizeof(n->job), "%s", job ? job : "");
		snprintf(n->key, sizeof(n->key), "%s\x1f%s", id ? id : "", rcpt ? rcpt : "");
		snprintf(n->source, sizeof(n->source), "%s", source ? source : "");
		n->result = r;
	} else {
		w->dropped++;
	}
	pthread_mutex_unlock(&w->mu);
}

static void *watch_main(void *arg)
{
	struct feedback_watch *w = arg;
	for (;;) {
		struct feedback_ingest_counts c = { 0 };
		char why[600];
		int err = feedback_ingest_maildir(&w->in, &c, why, sizeof(why));
		if (err && !w->warned)
			warnx_("feedback.maildir: %s (tried again every %d s)", why, RESCAN_MS / 1000);
		w->warned = err != 0;
		pthread_mutex_lock(&w->mu);
		w->counts.files += c.files;
		w->counts.unknown += c.unknown;
		w->counts.forged += c.forged;
		w->counts.bounced += c.bounced;
		w->counts.complained += c.complained;
		w->counts.suppressed += c.suppressed;
		w->counts.ignored += c.ignored;
		bool any = w->nnotes > 0;
		pthread_mutex_unlock(&w->mu);
		if (any)
			eventfd_kick(w->wake_fd);
		struct pollfd p[2] = { { .fd = w->stop_fd, .events = POLLIN }, { .fd = w->inotify_fd, .events = POLLIN } };
		int n = poll(p, w->inotify_fd >= 0 ? 2 : 1, RESCAN_MS);
		if (n > 0 && p[0].revents)
			break;
		if (n > 0 && w->inotify_fd >= 0 && p[1].revents) {
			char ev[4096];
			while (read(w->inotify_fd, ev, sizeof(ev)) > 0) /* which file does not matter: all of new/ is read */
				;
		}
	}
	return NULL;
}

struct feedback_watch *feedback_watch_start(const struct feedback_ingest *in, int wake_fd)
{
	struct feedback_watch *w = xcalloc(1, sizeof(*w));
	w->in = *in;
	w->maildir = xstrdup(in->maildir);
	w->in.maildir = w->maildir;
	w->log_path = in->log_path ? xstrdup(in->log_path) : NULL;
	w->in.log_path = w->log_path;
	w->in.note = note;
	w->in.note_arg = w;
	w->wake_fd = wake_fd;
	pthread_mutex_init(&w->mu, NULL);
	w->stop_fd = eventfd(0, EFD_CLOEXEC);
	w->in.stop_fd = w->stop_fd;
	char path[4096];
	snprintf(path, sizeof(path), "%s/new", w->maildir);
	w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->inotify_fd >= 0 && inotify_add_watch(w->inotify_fd, path, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		warnx_("feedback.maildir: cannot watch %s: %s; looking every %d s", path, strerror(errno), RESCAN_MS / 1000);
		close(w->inotify_fd);
		w->inotify_fd = -1;
	}
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	w->running = w->stop_fd >= 0 && pthread_create(&w->thread, NULL, watch_main, w) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!w->running)
		warnx_("feedback.maildir: cannot start its thread; reports are not read");
	return w;
}

size_t feedback_watch_take(struct feedback_watch *w, struct feedback_note *out, size_t max)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	size_t n = w->nnotes < max ? w->nnotes : max;
	if (n) {
		memcpy(out, w->notes, n * sizeof(*out));
		memmove(w->notes, w->notes + n, (w->nnotes - n) * sizeof(*out));
		w->nnotes -= n;
	}
	pthread_mutex_unlock(&w->mu);
	return n;
}

void feedback_watch_counts(struct feedback_watch *w, struct feedback_ingest_counts *c)
{
	memset(c, 0, sizeof(*c));
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	*c = w->counts;
	pthread_mutex_unlock(&w->mu);
}

void feedback_watch_stop(struct feedback_watch *w)
{
	if (!w)
		return;
	if (w->running) {
		eventfd_kick(w->stop_fd);
		pthread_join(w->thread, NULL);
	}
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->inotify_fd >= 0)
		close(w->inotify_fd);
	pthread_mutex_destroy(&w->mu);
	free(w->notes);
	free(w->maildir);
	free(w->log_path);
	free(w);
}
