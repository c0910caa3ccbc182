/* engine/control.c - the control socket's server (see control.h): the
 * unix socket (made 0660, a stale one replaced), reading one request line
 * per connection on a side server's thread (side_server.h), and, for
 * `why`, the accounting log's last lines about the message, read on that
 * thread so that the engine's loop never reads the log. */
#define _GNU_SOURCE
#include "control.h"
#include "side_server.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_DEADLINE_MS 1000 /* one client at a time: an idle one must not hold the others long */
#define LOG_TAIL_BYTES (16 << 20) /* why: how far back the log is read */
#define LOG_LINES_MAX 20          /* why: the message's last lines shown */

struct control_server {
	struct side_server *side;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct buf scratch;
};

static bool word_ok(const char *w)
{
	if (!*w || strlen(w) > CONTROL_WORD_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)w; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/* The request line into words; an error text when it is not one. */
static const char *split(struct control_request *r)
{
	size_t n = strcspn(r->line, "\r\n");
	r->line[n] = 0;
	r->argc = 0;
	for (char *p = r->line, *w; (w = strsep(&p, " "));) {
		if (r->argc == (int)ARRAY_LEN(r->argv))
			return "too many words";
		if (!word_ok(w))
			return "a word is empty, too long, or holds a control byte";
		r->argv[r->argc++] = w;
	}
	return r->argc ? NULL : "an empty request";
}

/* The message's last lines in the log (its "id" field is id). */
static void add_log_lines(struct buf *out, const char *log_path, const char *id)
{
	int fd = open(log_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		buf_printf(out, "(the accounting log %s cannot be read: %s)\n", log_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	off_t from = st.st_size > LOG_TAIL_BYTES ? st.st_size - LOG_TAIL_BYTES : 0;
	size_t want = (size_t)(st.st_size - from), got = 0;
	char *text = xmalloc(want + 1);
	while (got < want) {
		ssize_t n = pread(fd, text + got, want - got, from + (off_t)got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	text[got] = 0;
	char needle[CONTROL_WORD_MAX + 16];
	snprintf(needle, sizeof(needle), "\"id\":\"%s\"", id);
	const char *lines[LOG_LINES_MAX];
	size_t lens[LOG_LINES_MAX], n = 0, total = 0;
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		size_t len = next ? (size_t)(next - line) : strlen(line);
		if (next)
			next++;
		if (!memmem(line, len, needle, strlen(needle)))
			continue;
		lines[total % LOG_LINES_MAX] = line;
		lens[total % LOG_LINES_MAX] = len;
		total++;
	}
	n = total < LOG_LINES_MAX ? total : LOG_LINES_MAX;
	if (!total)
		buf_printf(out, "no line about it in the accounting log's last %d MiB\n", LOG_TAIL_BYTES >> 20);
	else
		buf_printf(out, "its last %zu line%s in the accounting log:\n", n, n == 1 ? "" : "s");
	for (size_t i = total - n; i < total; i++) {
		buf_add(out, lines[i % LOG_LINES_MAX], lens[i % LOG_LINES_MAX]);
		buf_adds(out, "\n");
	}
	free(text);
}

static void serve(struct side_server *side, int fd, void *arg)
{
	struct control_request r = { 0 };
	size_t len = 0;
	struct buf reply = { 0 };
	if (!side_read_until(side, fd, r.line, CONTROL_LINE_MAX, &len, "\n", NULL, READ_DEADLINE_MS)) {
		static const char slow[] = "error: no request line (one line, ending in a newline, within 1 s)\n";
		side_send_all(side, fd, slow, sizeof(slow) - 1);
		side_linger(side, fd);
		return;
	}
	r.line[len] = 0;
	struct ucred cred = { 0 };
	socklen_t cl = sizeof(cred);
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
	/* the engine gets "UID PID LINE" and splits it again */
	char line[CONTROL_LINE_MAX + 1];
	snprintf(line, sizeof(line), "%s", r.line);
	const char *bad = split(&r);
	if (bad) {
		buf_printf(&reply, "error: %s\n", bad);
	} else {
		struct buf ask = { 0 };
		buf_printf(&ask, "%u %u %s", (unsigned)cred.uid, (unsigned)cred.pid, line);
		buf_add(&ask, "", 1);
		if (!side_ask(side, ask.p, &reply))
			buf_adds(&reply, "error: the engine did not answer within 5 s (stopping?)\n");
		buf_free(&ask);
	}
	/* why: the log's lines, read here */
	char *mark = reply.len ? memmem(reply.p, reply.len, CONTROL_LOG_MARK, strlen(CONTROL_LOG_MARK)) : NULL;
	if (mark) {
		size_t at = (size_t)(mark - reply.p);
		char *path = xstrndup(mark + strlen(CONTROL_LOG_MARK), reply.len - at - strlen(CONTROL_LOG_MARK));
		path[strcspn(path, "\n")] = 0;
		reply.len = at;
		if (r.argc == 2)
			add_log_lines(&reply, path, r.argv[1]);
		free(path);
	}
	side_send_all(side, fd, reply.p, reply.len);
	side_linger(side, fd);
	buf_free(&reply);
}

bool control_server_wanted(struct control_server *s, struct control_request *r)
{
	if (!s || !(r->gen = side_server_wanted(s->side, &s->scratch)))
		return false;
	unsigned uid = 0, pid = 0;
	int used = 0;
	if (sscanf(s->scratch.p, "%u %u %n", &uid, &pid, &used) < 2 || used <= 0)
		used = 0;
	r->uid = uid;
	r->pid = pid;
	snprintf(r->line, sizeof(r->line), "%s", s->scratch.p + used);
	if (split(r)) /* checked on the thread already */
		r->argc = 0;
	return true;
}

void control_server_answer(struct control_server *s, const struct control_request *r, const struct buf *reply)
{
	side_server_answer(s->side, r->gen, reply);
}

/* A socket file at path: one that refuses connections is a crash's and
 * goes; one that answers, is busy (a full backlog) or is not ours to try
 * is another sluice's: an error, never removed. */
static bool clear_stale(const char *path, const struct sockaddr_un *sa, char *err, size_t err_len)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT || (snprintf(err, err_len, "%s: %s", path, strerror(errno)), false);
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_len, "%s exists and is not a socket", path);
		return false;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, err_len, "socket: %s", strerror(errno));
		return false;
	}
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), why = rc == 0 ? 0 : errno;
	close(fd);
	if (rc == 0 || why != ECONNREFUSED) {
		snprintf(err, err_len, "%s: %s", path, rc == 0 ? "another sluice answers there"
		                                     : why == EAGAIN ? "in use (another sluice is busy there)"
		                                                     : strerror(why));
		return false;
	}
	unlink(path);
	return true;
}

struct control_server *control_server_start(const char *path, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "%s: longer than a unix socket's path may be", path);
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (!clear_stale(path, &sa, err, err_len))
		return NULL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_len, "socket: %s", strerror(errno));
		return NULL;
	}
	/* Made 0660 from the start (no moment with a wider mode): no thread
	 * that makes files runs yet, so the process's umask may change for
	 * the bind. */
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc != 0 || chmod(path, 0660) != 0 || listen(fd, 16) != 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		if (rc == 0)
			unlink(path);
		close(fd);
		return NULL;
	}
	struct control_server *s = xcalloc(1, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (!(s->side = side_server_new(fd, serve, NULL, err, err_len))) {
		unlink(path);
		free(s);
		return NULL;
	}
	return s;
}

bool control_server_run(struct control_server *s, int wake_fd)
{
	return side_server_run(s->side, wake_fd);
}

void control_server_stop(struct control_server *s)
{
	if (!s)
		return;
	side_server_stop(s->side);
	unlink(s->path);
	buf_free(&s->scratch);
	free(s);
}
