/* engine/acct_log.c - accounting log lines (see acct_log.h). Written by the
 * engine thread only, never on a shard loop; the timestamp's text is
 * formatted once per second. */
#define _GNU_SOURCE
#include "acct_log.h"
#include "bounce_class.h"
#include "lib/json.h"
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* "2026-11-26T05:30:36.421Z", quoted. The date and time to the second are
 * formatted (strftime) once per second and kept; the milliseconds are
 * written as digits. Per thread, though only the engine formats lines. */
static void add_ts(struct buf *b, int64_t ms)
{
	static _Thread_local int64_t cached_sec = INT64_MIN;
	static _Thread_local char cached[40];
	static _Thread_local size_t cached_len;
	if (ms < 0) { /* not a wall clock time: no cache, no arithmetic surprises */
		buf_adds(b, "\"");
		buf_add_utc(b, "%Y-%m-%dT%H:%M:%S", ms);
		buf_printf(b, ".%03dZ\"", (int)(ms % 1000));
		return;
	}
	int64_t sec = ms / 1000;
	if (sec != cached_sec) {
		struct buf t = { 0 };
		buf_adds(&t, "\"");
		buf_add_utc(&t, "%Y-%m-%dT%H:%M:%S", ms);
		ASSERT(t.len < sizeof(cached));
		memcpy(cached, t.p, t.len);
		cached_len = t.len;
		cached_sec = sec;
		buf_free(&t);
	}
	unsigned milli = (unsigned)(ms % 1000);
	char tail[6] = { '.', (char)('0' + milli / 100), (char)('0' + milli / 10 % 10),
	                 (char)('0' + milli % 10), 'Z', '"' };
	buf_reserve(b, cached_len + sizeof(tail));
	buf_add(b, cached, cached_len);
	buf_add(b, tail, sizeof(tail));
}

void acct_add_reply(struct buf *b, unsigned code, const char *enhanced, const char *text, size_t len)
{
	buf_adds(b, ",\"code\":");
	if (code)
		buf_printf(b, "%u", code);
	else
		buf_adds(b, "null");
	buf_adds(b, ",\"enhanced\":");
	json_add_cstr(b, enhanced && enhanced[0] ? enhanced : NULL);
	buf_adds(b, ",\"response\":");
	json_add_string(b, text, len);
}

/* The reply an outcome carries. */
static void add_reply(struct buf *b, const struct outcome *o)
{
	size_t rlen = o->response ? strlen(o->response) : 0;
	if (o->response_len > rlen) /* a server's NUL stays, escaped, not a cut */
		rlen = o->response_len;
	acct_add_reply(b, o->code, o->enhanced, o->response, rlen);
}

void acct_format(struct buf *b, const struct outcome *o)
{
	const struct message *m = o->msg;
	acct_line_open(b, o->ts_ms);
	buf_adds(b, ",\"id\":");
	json_add_cstr(b, m->id);
	buf_adds(b, ",\"file\":");
	json_add_cstr(b, m->file);
	buf_adds(b, ",\"job\":");
	json_add_cstr(b, m->job);
	if (m->row)
		buf_printf(b, ",\"row\":%llu", (unsigned long long)m->row);
	else
		buf_adds(b, ",\"row\":null");
	buf_adds(b, ",\"from\":");
	json_add_cstr(b, m->sender);
	buf_adds(b, ",\"rcpt\":");
	json_add_cstr(b, m->rcpt[o->rcpt]);
	buf_printf(b, ",\"result\":\"%s\",\"class\":", result_name(o->result));
	json_add_cstr(b, o->bclass ? bounce_class_name((enum bounce_class)o->bclass) : NULL);
	add_reply(b, o);
	buf_adds(b, ",\"mx\":");
	json_add_cstr(b, o->mx);
	buf_adds(b, ",\"group\":");
	json_add_cstr(b, o->group);
	buf_adds(b, ",\"peer\":");
	json_add_cstr(b, o->peer[0] ? o->peer : NULL);
	buf_adds(b, ",\"source\":");
	json_add_cstr(b, o->source[0] ? o->source : NULL);
	buf_adds(b, ",\"dkim\":");
	buf_adds(b, m->dkim_log ? m->dkim_log : "null");
	buf_adds(b, ",\"tls\":");
	json_add_cstr(b, o->tls[0] ? o->tls : NULL);
	buf_printf(b, ",\"attempt\":%u,\"ms\":%u,\"queue_ms\":%u}\n", o->attempt, o->ms, o->queue_ms);
}

/* An adaptation's line (OUTCOME_EVENT): "event" instead of "result". */
void acct_add_ts(struct buf *b, int64_t ms)
{
	add_ts(b, ms);
}

void acct_line_open(struct buf *b, int64_t ts_ms)
{
	buf_adds(b, "{\"ts\":");
	add_ts(b, ts_ms);
}

void acct_event_open(struct buf *b, int64_t ts_ms, const char *event)
{
	acct_line_open(b, ts_ms);
	buf_adds(b, ",\"event\":");
	json_add_cstr(b, event);
}

void acct_format_event(struct buf *b, const struct outcome *o)
{
	static const char *const scopes[] = { "pair", "group", "source" };
	enum adapt_event ev = (enum adapt_event)o->result;
	bool wave = ev == EVENT_FULL && o->response && o->response[0];
	acct_event_open(b, o->ts_ms, ev != EVENT_FULL ? adapt_event_name(ev) : wave ? "wave-full" : "warmup-full");
	buf_adds(b, ",\"source\":");
	json_add_cstr(b, o->source[0] ? o->source : NULL);
	buf_adds(b, ",\"group\":");
	json_add_cstr(b, o->group);
	if (ev == EVENT_SUSPEND || ev == EVENT_RESUME)
		buf_printf(b, ",\"scope\":\"%s\"", o->scope < ARRAY_LEN(scopes) ? scopes[o->scope] : "pair");
	if (ev == EVENT_SUSPEND) {
		buf_adds(b, ",\"until\":");
		add_ts(b, o->until_ms);
	}
	if (ev == EVENT_SLOW || ev == EVENT_SPEEDUP || ev == EVENT_RESTORE) {
		/* messages per second; a restored pair without a configured rate has none */
		if (o->rate > 0)
			buf_printf(b, ",\"rate\":%.4g", o->rate);
		else
			buf_adds(b, ",\"rate\":null");
		buf_printf(b, ",\"rate_before\":%.4g", o->rate_before);
	}
	if (ev == EVENT_FULL) { /* the job, the cap of its wave or day, when it ends */
		buf_adds(b, ",\"job\":");
		json_add_cstr(b, wave ? o->response : NULL);
		buf_printf(b, ",\"cap\":%u,\"until\":", o->cap);
		add_ts(b, o->until_ms);
		buf_adds(b, "}\n");
		return;
	}
	buf_adds(b, ",\"rule\":");
	json_add_cstr(b, o->mx);
	add_reply(b, o);
	buf_adds(b, "}\n");
}

static void *syncer_main(void *arg)
{
	struct acct_log *l = arg;
	pthread_setname_np(pthread_self(), "logsync");
	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (!l->sync_wanted && !l->quit)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->quit)
			break;
		l->sync_wanted = false;
		int fd = l->fd;
		pthread_mutex_unlock(&l->mu);
		int err = fdatasync(fd) == 0 ? 0 : errno;
		if (err == EINVAL)
			err = 0; /* a pipe or /dev/null: nothing to make durable */
		pthread_mutex_lock(&l->mu);
		l->sync_error = err;
		l->sync_running = false;
		l->sync_finished = true;
		pthread_cond_broadcast(&l->cv); /* acct_reopen may wait for this */
		eventfd_kick(l->notify_fd);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

bool acct_sync_start(struct acct_log *l)
{
	if (l->fd < 0 || l->no_sync) {
		l->sync_finished = true; /* nothing to make durable */
		return true;
	}
	pthread_mutex_lock(&l->mu);
	bool ok = !l->sync_running;
	if (ok) {
		l->sync_running = l->sync_wanted = true;
		l->sync_finished = false;
		pthread_cond_signal(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	return ok;
}

bool acct_sync_done(struct acct_log *l, int *err)
{
	if (l->fd < 0 || l->no_sync) {
		bool f = l->sync_finished;
		l->sync_finished = false;
		*err = 0;
		return f;
	}
	pthread_mutex_lock(&l->mu);
	bool f = l->sync_finished;
	l->sync_finished = false;
	*err = l->sync_error;
	pthread_mutex_unlock(&l->mu);
	return f;
}

/* Opens the file for appending; -1 with errno on failure. A crash can leave
 * a torn last line: it is ended, so that it stands alone and the first line
 * written now parses. */
static int open_log_file(struct acct_log *l, const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	off_t end = lseek(fd, 0, SEEK_END);
	char last = '\n';
	if (end > 0 && pread(fd, &last, 1, end - 1) == 1 && last != '\n')
		buf_add(&l->pending, "\n", 1);
	return fd;
}

void acct_open(struct acct_log *l, const char *path, int notify_fd)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->notify_fd = notify_fd;
	if (!path)
		return;
	l->fd = open_log_file(l, path);
	if (l->fd < 0)
		fatal("cannot open accounting log %s: %s", path, strerror(errno));
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (pthread_create(&l->syncer, NULL, syncer_main, l) != 0)
		fatal("cannot start the accounting log's sync thread");
}

bool acct_flush(struct acct_log *l)
{
	size_t off = 0;
	bool ok = true;
	int e = l->fd >= 0 ? write_rest(l->fd, l->pending.p, l->pending.len, &off) : 0;
	if (e) {
		l->error = e;
		ok = false;
	}
	/* Keep exactly the bytes not written: a line cut by a full disk is
	 * completed by the next flush. */
	if (off) {
		memmove(l->pending.p, l->pending.p + off, l->pending.len - off);
		l->pending.len -= off;
	}
	if (l->fd < 0)
		l->pending.len = 0;
	return ok;
}

bool acct_reopen(struct acct_log *l, const char *path)
{
	if (l->fd < 0 || !path)
		return true; /* a log cannot be added or dropped by a reload */
	if (!acct_flush(l))
		return false;
	int fd = open_log_file(l, path);
	if (fd < 0) {
		l->error = errno;
		return false;
	}
	pthread_mutex_lock(&l->mu);
	while (l->sync_running)
		pthread_cond_wait(&l->cv, &l->mu);
	int old = l->fd;
	l->fd = fd;
	pthread_mutex_unlock(&l->mu);
	/* A sync started later covers only the new file: this one ends durable. */
	if (fdatasync(old) != 0)
		warnx_("accounting log: cannot sync the old file to disk: %s", strerror(errno));
	close(old);
	return true;
}

void acct_close(struct acct_log *l)
{
	if (!acct_flush(l))
		warnx_("accounting log: %zu bytes could not be written: %s", l->pending.len, strerror(l->error));
	if (l->fd >= 0) {
		pthread_mutex_lock(&l->mu);
		l->quit = true;
		pthread_cond_signal(&l->cv);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->syncer, NULL);
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		if (fdatasync(l->fd) != 0)
			warnx_("accounting log: cannot sync it to disk: %s", strerror(errno));
		close(l->fd);
	}
	buf_free(&l->pending);
	l->fd = -1;
}
