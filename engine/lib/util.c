/* engine/lib/util.c - clocks, fatal errors, checked allocation, byte buffers,
 * escaping for display. */
#define _GNU_SOURCE
#include "util.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t now_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double now_mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *fmt, va_list ap)
{
	fputs("sluice: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(fmt, ap);
	va_end(ap);
	exit(2);
}

void warnx_(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(fmt, ap);
	va_end(ap);
}

void util_assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "sluice: assertion failed: %s (%s:%d)\n", what, file, line);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		fatal("out of memory (%zu x %zu bytes)", n, m);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		fatal("out of memory (%zu bytes)", n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

size_t prefix_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	if (len < n || strncasecmp(s, prefix, n) != 0)
		return 0;
	return n;
}

void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void buf_add(struct buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	buf_reserve(b, 128);
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	ASSERT(n >= 0);
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void buf_swap_out(struct buf *out, struct buf *next)
{
	struct buf t = *out;
	*out = *next;
	*next = t;
	next->len = 0;
}

void eventfd_wait(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, ms) > 0) {
		uint64_t v;
		if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			warnx_("eventfd read: %s", strerror(errno));
	}
}

void eventfd_kick(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		warnx_("eventfd write: %s", strerror(errno));
}

int read_full(int fd, void *p, size_t len, int64_t off, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t n = pread(fd, (char *)p + *got, len - *got, (off_t)(off + (int64_t)*got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return 0;
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void str_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

bool parse_uint(const char *s, long min, long max, long *out)
{
	char *end;
	if (!s || !*s)
		return false;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

void buf_add_utc(struct buf *b, const char *fmt, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char s[128];
	size_t n = strftime(s, sizeof(s), fmt, &tm);
	buf_add(b, s, n);
}

void sockaddr_text(const struct sockaddr_storage *ss, bool with_port, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
		port = ntohs(v4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
		port = ntohs(v6->sin6_port);
	}
	if (!with_port)
		snprintf(out, len, "%s", ip);
	else if (ss->ss_family == AF_INET6)
		snprintf(out, len, "[%s]:%u", ip, port);
	else
		snprintf(out, len, "%s:%u", ip, port);
}

/* One byte as printable ASCII (see escape_text): its length in e. */
static size_t escape_byte(unsigned char b, char e[4])
{
	static const char hex[] = "0123456789abcdef";
	if (b >= 0x20 && b < 0x7f && b != '\\') {
		e[0] = (char)b;
		return 1;
	}
	e[0] = '\\';
	if (b == '\\' || b == '\n' || b == '\r' || b == '\t') {
		e[1] = b == '\\' ? '\\' : b == '\n' ? 'n' : b == '\r' ? 'r' : 't';
		return 2;
	}
	e[1] = 'x';
	e[2] = hex[b >> 4];
	e[3] = hex[b & 15];
	return 4;
}

void buf_add_escaped(struct buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char e[4];
		buf_add(b, e, escape_byte((unsigned char)p[i], e));
	}
}

const char *escape_text(const char *s, char *out, size_t len)
{
	ASSERT(len >= 4);
	size_t o = 0, cut = 0; /* cut: where "..." goes if the rest does not fit */
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[4];
		size_t n = escape_byte(*p, e);
		if (o + n + 1 > len) {
			memcpy(out + cut, "...", 4);
			return out;
		}
		memcpy(out + o, e, n);
		o += n;
		if (o + 4 <= len)
			cut = o;
	}
	out[o] = 0;
	return out;
}

unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int write_rest(int fd, const void *p, size_t len, size_t *done)
{
	while (*done < len) {
		ssize_t n = write(fd, (const char *)p + *done, len - *done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : ENOSPC;
		*done += (size_t)n;
	}
	return 0;
}

int write_all(int fd, const void *p, size_t len)
{
	size_t done = 0;
	return write_rest(fd, p, len, &done);
}

bool bytes_8bit(const char *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w & 0x8080808080808080ull)
			return true;
	}
	for (; i < len; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

