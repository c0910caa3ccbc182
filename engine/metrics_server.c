/* engine/metrics_server.c - see metrics.h: GET /metrics over HTTP/1.1 from
 * a side server (side_server.h: a thread of its own, one connection at a
 * time, every wait bounded); the text comes from the engine's loop, which
 * renders it when asked (so a scrape sees every line logged before it). */
#define _GNU_SOURCE
#include "metrics.h"
#include "side_server.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_MAX 8192
#define READ_DEADLINE_MS 5000     /* the whole request head */

struct metrics_server {
	struct side_server *side;
	uint64_t asked;           /* the scrape being answered (engine side) */
	struct buf scratch;
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

static void respond(const struct side_server *s, int fd, const char *status, const char *type, const char *body,
                    size_t len)
{
	struct buf b = { 0 };
	buf_printf(&b, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
	           type, len);
	buf_add(&b, body, len);
	side_send_all(s, fd, b.p, b.len);
	buf_free(&b);
}

/* Asks the engine for a rendering and waits for it (bounded); answers. */
static void serve_metrics(struct side_server *s, int fd)
{
	struct buf text = { 0 };
	if (side_ask(s, "", &text))
		respond(s, fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text.p, text.len);
	else
		respond(s, fd, "503 Service Unavailable", "text/plain", "the engine did not answer (stopping?)\n", 37);
	buf_free(&text);
}

/* One connection: its request head (bounded in size and time), then the
 * answer. */
static void serve(struct side_server *s, int fd, void *arg)
{
	char req[REQUEST_MAX + 1];
	size_t len = 0;
	if (!side_read_until(s, fd, req, REQUEST_MAX, &len, "\n\r\n", "\n\n", READ_DEADLINE_MS))
		return;
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
	side_linger(s, fd);
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
	struct side_server *side = side_server_new(fd, serve, NULL, err, err_len);
	if (!side)
		return NULL;
	struct metrics_server *s = xcalloc(1, sizeof(*s));
	s->side = side;
	return s;
}

bool metrics_server_run(struct metrics_server *s, int wake_fd)
{
	return side_server_run(s->side, wake_fd);
}

bool metrics_server_wanted(struct metrics_server *s)
{
	return s && (s->asked = side_server_wanted(s->side, &s->scratch)) != 0;
}

void metrics_server_publish(struct metrics_server *s, const struct buf *text)
{
	side_server_answer(s->side, s->asked, text);
}

void metrics_server_stop(struct metrics_server *s)
{
	if (!s)
		return;
	side_server_stop(s->side);
	buf_free(&s->scratch);
	free(s);
}
