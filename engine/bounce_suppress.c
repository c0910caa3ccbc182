/* engine/bounce_suppress.c - a recipient that bounced for good with a
 * class about the address itself (bad-mailbox, bad-domain,
 * inactive-mailbox) goes on the suppression list, globally: the next
 * message to it is logged "suppressed" instead of mailing a dead address
 * again. The engine hands the addresses over as it logs their lines; a
 * thread of its own adds them, a batch per commit (one sync for many), so
 * the engine's loop never waits for the disk. A failure is said and the
 * batch dropped (the bounce lines are in the log: `sluice suppress import`
 * can add them again). */
#include "bounce_suppress.h"
#include "lib/util.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PENDING_MAX 1000000 /* addresses waiting (beyond: dropped, counted) */

struct bounce_suppress {
	struct suppress *store;
	pthread_t thread;
	bool running, stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct buf csv;           /* under mu: address,,reason,added,source lines */
	size_t pending;
	uint64_t added, failed, dropped;
};

static void *writer_main(void *arg)
{
	struct bounce_suppress *w = arg;
	struct buf batch = { 0 };
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->pending && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->pending && w->stop)
			break;
		batch.len = 0;
		buf_add(&batch, w->csv.p, w->csv.len);
		size_t n = w->pending;
		w->csv.len = 0;
		w->pending = 0;
		pthread_mutex_unlock(&w->mu);
		FILE *f = fmemopen(batch.p, batch.len, "r");
		struct suppress_import_stats st = { 0 };
		char err[300] = "";
		bool ok = f && suppress_import(w->store, f, NULL, NULL, "bounce", &st, NULL, NULL, err, sizeof(err));
		if (f)
			fclose(f);
		if (!ok)
			warnx_("suppression list: %zu bounced address(es) not added: %s", n, f ? err : "fmemopen failed");
		pthread_mutex_lock(&w->mu);
		w->added += ok ? st.added : 0;
		w->failed += ok ? st.bad : n;
	}
	pthread_mutex_unlock(&w->mu);
	buf_free(&batch);
	return NULL;
}

struct bounce_suppress *bounce_suppress_start(struct suppress *store)
{
	struct bounce_suppress *w = xcalloc(1, sizeof(*w));
	w->store = store;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	w->running = pthread_create(&w->thread, NULL, writer_main, w) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!w->running)
		warnx_("suppression list: cannot start its writer; hard bounces are not added to it");
	return w;
}

/* A CSV field as suppress_import reads it: quoted, "" for a quote. */
static void add_field(struct buf *b, const char *v)
{
	buf_adds(b, "\"");
	for (const char *p = v; *p; p++)
		if (*p == '"')
			buf_adds(b, "\"\"");
		else
			buf_add(b, p, 1);
	buf_adds(b, "\"");
}

void bounce_suppress_add(struct bounce_suppress *w, const char *rcpt, const char *reason, const char *id)
{
	if (!w || !w->running)
		return;
	pthread_mutex_lock(&w->mu);
	if (w->pending >= PENDING_MAX) {
		w->dropped++;
	} else {
		add_field(&w->csv, rcpt);
		buf_printf(&w->csv, ",,%s,%lld,", reason, (long long)time(NULL));
		char source[300];
		snprintf(source, sizeof(source), "bounce:%.250s", id);
		add_field(&w->csv, source);
		buf_adds(&w->csv, "\n");
		w->pending++;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
}

void bounce_suppress_stop(struct bounce_suppress *w)
{
	if (!w)
		return;
	if (w->running) {
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL); /* what waits is added first */
	}
	if (w->dropped || w->failed)
		warnx_("suppression list: %llu bounced address(es) not added (%llu refused, %llu over the queue's bound)",
		       (unsigned long long)(w->failed + w->dropped), (unsigned long long)w->failed,
		       (unsigned long long)w->dropped);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	buf_free(&w->csv);
	free(w);
}
