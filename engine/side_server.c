/* engine/side_server.c - see side_server.h: the thread, its bounded waits
 * on clients, and the request/answer handshake with the engine's loop. */
#define _GNU_SOURCE
#include "side_server.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WRITE_DEADLINE_MS 10000   /* a whole answer */
#define ENGINE_WAIT_MS 5000
#define LINGER_MS 200

struct side_server {
	int listen_fd, stop_fd, wake_fd;
	side_serve_fn serve;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_bool wanted;
	bool stopping;            /* under mu: waits end */
	bool running;             /* the thread was started */
	uint64_t asked, answered; /* generations, under mu */
	struct buf request;       /* under mu (the engine reads it while wanted) */
	struct buf answer;        /* the latest, under mu */
};

bool side_wait_fd(const struct side_server *s, int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_mono_ms();
		if (left <= 0)
			return false;
		struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = s->stop_fd, .events = POLLIN } };
		int n = poll(p, 2, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || p[1].revents)
			return false;
		return true;
	}
}

void side_send_all(const struct side_server *s, int fd, const char *p, size_t len)
{
	int64_t deadline = now_mono_ms() + WRITE_DEADLINE_MS;
	while (len) {
		if (!side_wait_fd(s, fd, POLLOUT, deadline))
			return;
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

bool side_read_until(const struct side_server *s, int fd, char *buf, size_t max, size_t *len, const char *end,
                     const char *end2, int64_t ms)
{
	int64_t deadline = now_mono_ms() + ms;
	*len = 0;
	while (!memmem(buf, *len, end, strlen(end)) && !(end2 && memmem(buf, *len, end2, strlen(end2)))) {
		if (*len >= max || !side_wait_fd(s, fd, POLLIN, deadline))
			return false;
		ssize_t n = recv(fd, buf + *len, max - *len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return false;
		*len += (size_t)n;
	}
	return true;
}

void side_linger(const struct side_server *s, int fd)
{
	shutdown(fd, SHUT_WR);
	int64_t until = now_mono_ms() + LINGER_MS;
	char sink[4096];
	while (side_wait_fd(s, fd, POLLIN, until) && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

bool side_ask(struct side_server *s, const char *request, struct buf *answer)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ENGINE_WAIT_MS / 1000;
	pthread_mutex_lock(&s->mu);
	uint64_t want = ++s->asked;
	s->request.len = 0;
	buf_add(&s->request, request, strlen(request) + 1);
	atomic_store(&s->wanted, true);
	uint64_t one = 1;
	if (!s->stopping)
		(void)!write(s->wake_fd, &one, sizeof(one));
	while (s->answered < want && !s->stopping)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
			break;
	bool ok = s->answered >= want;
	if (ok)
		buf_add(answer, s->answer.p, s->answer.len);
	else
		atomic_store(&s->wanted, false); /* not carried out later, unanswered */
	pthread_mutex_unlock(&s->mu);
	return ok;
}

uint64_t side_server_wanted(struct side_server *s, struct buf *request)
{
	if (!s || !atomic_load_explicit(&s->wanted, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&s->mu);
	uint64_t gen = atomic_load(&s->wanted) ? s->asked : 0;
	request->len = 0;
	if (gen)
		buf_add(request, s->request.p, s->request.len);
	pthread_mutex_unlock(&s->mu);
	return gen;
}

void side_server_answer(struct side_server *s, uint64_t gen, const struct buf *answer)
{
	pthread_mutex_lock(&s->mu);
	if (gen == s->asked) { /* else: that request was given up, another waits */
		atomic_store(&s->wanted, false);
		s->answer.len = 0;
		buf_add(&s->answer, answer->p, answer->len);
		s->answered = s->asked;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

static void *server_thread(void *arg)
{
	struct side_server *s = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = s->listen_fd, .events = POLLIN }, { .fd = s->stop_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		s->serve(s, fd, s->arg);
		close(fd);
	}
	return NULL;
}

struct side_server *side_server_new(int listen_fd, side_serve_fn serve, void *arg, char *err, size_t err_len)
{
	struct side_server *s = xcalloc(1, sizeof(*s));
	s->listen_fd = listen_fd;
	s->serve = serve;
	s->arg = arg;
	s->wake_fd = -1;
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (s->stop_fd < 0) {
		snprintf(err, err_len, "eventfd: %s", strerror(errno));
		side_server_stop(s);
		return NULL;
	}
	return s;
}

bool side_server_run(struct side_server *s, int wake_fd)
{
	s->wake_fd = wake_fd;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	s->running = pthread_create(&s->thread, NULL, server_thread, s) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return s->running;
}

void side_server_stop(struct side_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	uint64_t one = 1;
	if (s->stop_fd >= 0)
		(void)!write(s->stop_fd, &one, sizeof(one));
	if (s->running)
		pthread_join(s->thread, NULL);
	close(s->listen_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	buf_free(&s->request);
	buf_free(&s->answer);
	free(s);
}
