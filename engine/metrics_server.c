/* engine/metrics_server.c - see metrics.h: GET /metrics over HTTP/1.1 from
 * a thread of its own, one connection at a time (a scraper, not a web
 * server), each with one deadline for its request and one for its answer
 * (a client that dribbles bytes is cut off, and stopping cuts every wait
 * short); the text comes from the engine's loop, which renders it when
 * asked (so a scrape sees every line logged before it). The thread takes
 * no signal: the main thread's handlers see them all. */
#define _GNU_SOURCE
#include "metrics.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_MAX 8192
#define READ_DEADLINE_MS 5000     /* the whole request head */
#define WRITE_DEADLINE_MS 10000   /* the whole answer */
#define ENGINE_WAIT_MS 5000

struct metrics_server {
	int listen_fd, stop_fd, wake_fd;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_bool wanted;
	bool stopping;            /* under mu: waits end, scrapes get 503 */
	bool running;             /* the thread was started */
	uint64_t asked, answered; /* generations, under mu */
	struct buf text;          /* the latest rendering, under mu */
};

bool metrics_addr_parse(const char *spec, struct sockaddr_storage *sa, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(spec, ':');
	long port;
	if (!colon || (size_t)(colon - spec) >= sizeof(host) || !parse_uint(colon + 1, 1, 65535, &port))
		return false;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	size_t hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	memset(sa, 0, sizeof(*sa));
	struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		*len = sizeof(*v4);
		return true;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*v6);
		return true;
	}
	return false;
}

/* Waits for fd (events) until deadline (monotonic ms) or a stop: true
 * when fd is ready. */
static bool wait_fd(const struct metrics_server *s, int fd, short events, int64_t deadline)
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

static void send_all(const struct metrics_server *s, int fd, const char *p, size_t len)
{
	int64_t deadline = now_mono_ms() + WRITE_DEADLINE_MS;
	while (len) {
		if (!wait_fd(s, fd, POLLOUT, deadline))
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

static void respond(const struct metrics_server *s, int fd, const char *status, const char *type, const char *body,
                    size_t len)
{
	struct buf b = { 0 };
	buf_printf(&b, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
	           type, len);
	buf_add(&b, body, len);
	send_all(s, fd, b.p, b.len);
	buf_free(&b);
}

/* Asks the engine for a rendering and waits for it (bounded); answers. */
static void serve_metrics(struct metrics_server *s, int fd)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ENGINE_WAIT_MS / 1000;
	pthread_mutex_lock(&s->mu);
	uint64_t want = ++s->asked;
	atomic_store(&s->wanted, true);
	uint64_t one = 1;
	if (!s->stopping)
		(void)!write(s->wake_fd, &one, sizeof(one));
	while (s->answered < want && !s->stopping)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
			break;
	bool ok = s->answered >= want;
	struct buf copy = { 0 };
	if (ok)
		buf_add(&copy, s->text.p, s->text.len);
	pthread_mutex_unlock(&s->mu);
	if (ok)
		respond(s, fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", copy.p, copy.len);
	else
		respond(s, fd, "503 Service Unavailable", "text/plain", "the engine did not answer (stopping?)\n", 37);
	buf_free(&copy);
}

/* One connection: its request head (bounded in size and time), then the
 * answer; then what the client still sends is read briefly, so that
 * closing does not reset the answer away. */
static void serve(struct metrics_server *s, int fd)
{
	char req[REQUEST_MAX + 1];
	size_t len = 0;
	int64_t deadline = now_mono_ms() + READ_DEADLINE_MS;
	while (len < REQUEST_MAX && !memmem(req, len, "\r\n\r\n", 4) && !memmem(req, len, "\n\n", 2)) {
		if (!wait_fd(s, fd, POLLIN, deadline))
			return;
		ssize_t n = recv(fd, req + len, REQUEST_MAX - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return;
		len += (size_t)n;
	}
	req[len] = 0;
	static const char not_found[] = "only /metrics here\n";
	const char *path = req + 4;
	size_t pl = strcspn(path, " ?\r\n");
	if (strncmp(req, "GET ", 4))
		respond(s, fd, "405 Method Not Allowed", "text/plain", "GET /metrics\n", 13);
	else if (pl == 8 && !strncmp(path, "/metrics", 8))
		serve_metrics(s, fd);
	else
		respond(s, fd, "404 Not Found", "text/plain", not_found, sizeof(not_found) - 1);
	shutdown(fd, SHUT_WR);
	int64_t drain_until = now_mono_ms() + 200;
	char sink[4096];
	while (wait_fd(s, fd, POLLIN, drain_until) && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

static void *server_thread(void *arg)
{
	struct metrics_server *s = arg;
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
		serve(s, fd);
		close(fd);
	}
	return NULL;
}

struct metrics_server *metrics_server_start(const char *addr, char *err, size_t err_len)
{
	struct sockaddr_storage sa;
	socklen_t sl;
	if (!metrics_addr_parse(addr, &sa, &sl)) {
		snprintf(err, err_len, "%s: expected a numeric IP:PORT ([V6]:PORT)", addr);
		return NULL;
	}
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sl) < 0 || listen(fd, 16) < 0) {
		snprintf(err, err_len, "%s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct metrics_server *s = xcalloc(1, sizeof(*s));
	s->listen_fd = fd;
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
		metrics_server_stop(s);
		return NULL;
	}
	return s;
}

bool metrics_server_run(struct metrics_server *s, int wake_fd)
{
	s->wake_fd = wake_fd;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	s->running = pthread_create(&s->thread, NULL, server_thread, s) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return s->running;
}

bool metrics_server_wanted(struct metrics_server *s)
{
	return s && atomic_load_explicit(&s->wanted, memory_order_acquire);
}

void metrics_server_publish(struct metrics_server *s, const struct buf *text)
{
	pthread_mutex_lock(&s->mu);
	atomic_store(&s->wanted, false);
	s->text.len = 0;
	buf_add(&s->text, text->p, text->len);
	s->answered = s->asked;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void metrics_server_stop(struct metrics_server *s)
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
	buf_free(&s->text);
	free(s);
}
