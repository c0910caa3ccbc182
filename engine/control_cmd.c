/* engine/control_cmd.c - the client side of the control socket (see
 * control.h for the protocol): control_request (one request and its whole
 * reply, bounded in size and time) and the commands built on it:
 *   sluice status  the daemon's state as a table, or its JSON as is;
 *   sluice top     the same, live, with rates from successive replies;
 *   sluice ctl     suspend, resume, pause, bounce, reload, why.
 * Also the small JSON reader the status reply needs (unknown fields are
 * ignored, so the server may add some). */
#define _GNU_SOURCE
#include "control.h"
#include "control_cmd.h"
#include "config.h"
#include "../dns/packet.h"
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONTROL_SOCKET "/var/spool/sluice/control"
#define REPLY_MAX (64u << 20)       /* bytes of one reply */
#define REQUEST_MS 10000            /* one request, connect to close */
#define JSON_DEPTH_MAX 64
#define DURATION_MAX_S (365L * 86400) /* ctl suspend --for (the daemon takes 400 days) */
#define FOREVER_S (366.0 * 86400)      /* a suspension this long is one "until resumed" */
#define NAME_COLUMN_MAX 40          /* a longer group name is cut in tables */

/* ---- one request ---- */

static bool fail_with(char *err, size_t err_len, const char *fmt, const char *path, int e)
{
	const char *hint = "";
	if (e == ECONNREFUSED || e == ENOENT)
		hint = " (is sluice run going, with this control socket?)";
	else if (e == EACCES || e == EPERM)
		hint = " (the socket is for the daemon's user and group (mode 0660))";
	char what[64];
	snprintf(what, sizeof(what), "%s", strerror(e));
	snprintf(err, err_len, fmt, path, what, hint);
	return false;
}

/* Waits until fd is ready for events or deadline (monotonic ms): 0, or
 * ETIMEDOUT, or poll's errno. */
static int wait_ready(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_mono_ms();
		if (left <= 0)
			return ETIMEDOUT;
		struct pollfd pf = { .fd = fd, .events = events };
		int n = poll(&pf, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return errno;
	}
}

static bool connect_within(int fd, const struct sockaddr_un *sa, const char *path, int64_t deadline,
                           char *err, size_t err_len)
{
	while (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) { /* its backlog is full: a busy or stuck server */
			if (now_mono_ms() >= deadline)
				return fail_with(err, err_len, "cannot connect to %s: %s%s", path, ETIMEDOUT);
			poll(NULL, 0, 10);
			continue;
		}
		if (errno != EINPROGRESS)
			return fail_with(err, err_len, "cannot connect to %s: %s%s", path, errno);
		int e = wait_ready(fd, POLLOUT, deadline);
		socklen_t el = sizeof(e);
		if (!e && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
			e = errno;
		if (e)
			return fail_with(err, err_len, "cannot connect to %s: %s%s", path, e);
		break;
	}
	return true;
}

static bool request_within(const char *path, const char *line, struct buf *out, int timeout_ms,
                           char *err, size_t err_len)
{
	int64_t deadline = now_mono_ms() + timeout_ms;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	out->len = 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, err_len, "control socket %s: longer than a unix socket's path may be (%zu bytes)",
		         path, sizeof(sa.sun_path) - 1);
		return false;
	}
	if (strlen(line) >= CONTROL_LINE_MAX || strchr(line, '\n')) {
		snprintf(err, err_len, "request too long or more than one line");
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail_with(err, err_len, "cannot connect to %s: socket: %s%s", path, errno);
	bool ok = connect_within(fd, &sa, path, deadline, err, err_len);
	struct buf req = { 0 };
	buf_adds(&req, line);
	buf_adds(&req, "\n");
	for (size_t sent = 0; ok && sent < req.len;) {
		ssize_t n = send(fd, req.p + sent, req.len - sent, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		int e = n < 0 && errno == EAGAIN ? wait_ready(fd, POLLOUT, deadline) : n < 0 && errno == EINTR ? 0 : errno;
		if (e == ETIMEDOUT)
			snprintf(err, err_len, "%s: the daemon took no request within %g s", path, timeout_ms / 1000.0);
		else if (e)
			fail_with(err, err_len, "%s: sending the request: %s%s", path, e);
		ok = !e;
	}
	buf_free(&req);
	while (ok) {
		buf_reserve(out, 65536);
		ssize_t n = recv(fd, out->p + out->len, out->cap - out->len, 0);
		if (n == 0)
			break;
		if (n > 0) {
			out->len += (size_t)n;
			if (out->len > REPLY_MAX) {
				snprintf(err, err_len, "%s: the reply is longer than %u MiB", path, REPLY_MAX >> 20);
				ok = false;
			}
			continue;
		}
		int e = errno == EAGAIN ? wait_ready(fd, POLLIN, deadline) : errno == EINTR ? 0 : errno;
		if (e == ETIMEDOUT)
			snprintf(err, err_len, "%s: no whole reply within %g s", path, timeout_ms / 1000.0);
		else if (e)
			fail_with(err, err_len, "%s: reading the reply: %s%s", path, e);
		ok = !e;
	}
	close(fd);
	buf_reserve(out, 1);
	out->p[out->len] = 0; /* text after the bytes, for the callers */
	return ok;
}

bool control_request(const char *path, const char *line, struct buf *out, char *err, size_t err_len)
{
	return request_within(path, line, out, REQUEST_MS, err, err_len);
}

/* A reply split: *ok, the error's text (when not ok) and the body. False
 * when it is neither "ok" nor "error: ..." (then text says so). */
struct reply {
	bool ok;
	char text[1100];
	const char *body;
	size_t body_len;
};

static bool reply_split(const struct buf *r, struct reply *out)
{
	const char *nl = memchr(r->p, '\n', r->len);
	size_t first = nl ? (size_t)(nl - r->p) : r->len;
	out->body = nl ? nl + 1 : r->p + r->len;
	out->body_len = r->len - (size_t)(out->body - r->p);
	out->text[0] = 0;
	out->ok = first == 2 && !memcmp(r->p, "ok", 2);
	if (out->ok)
		return true;
	if (first >= 7 && !memcmp(r->p, "error: ", 7)) {
		struct buf t = { 0 };
		buf_add_escaped(&t, r->p + 7, first - 7 < 1000 ? first - 7 : 1000);
		snprintf(out->text, sizeof(out->text), "%.*s", (int)t.len, t.p ? t.p : "");
		buf_free(&t);
		return true;
	}
	if (r->len == 0) {
		snprintf(out->text, sizeof(out->text), "the daemon closed the connection without a reply");
	} else {
		struct buf t = { 0 };
		buf_add_escaped(&t, r->p, first < 80 ? first : 80);
		snprintf(out->text, sizeof(out->text), "not a control socket's reply: \"%.*s\"", (int)t.len, t.p);
		buf_free(&t);
	}
	return false;
}

/* ---- which socket ---- */

struct target {
	const char *control, *config, *spool;
};

#define TARGET_OPTIONS \
	{ "control", required_argument, 0, 'C' }, { "config", required_argument, 0, 'c' }, \
	{ "spool", required_argument, 0, 'S' }

#define TARGET_USAGE \
	"The socket: --control PATH, else -c sluice.conf's control-socket, else\n" \
	"--spool DIR's DIR/control, else " DEFAULT_CONTROL_SOCKET ".\n"

static bool target_option(struct target *t, int opt, const char *arg)
{
	switch (opt) {
	case 'C': t->control = arg; return true;
	case 'c': t->config = arg; return true;
	case 'S': t->spool = arg; return true;
	default: return false;
	}
}

/* The socket's path (caller frees); exits 2 when a configuration has none. */
static char *target_path(const struct target *t)
{
	if (t->control)
		return xstrdup(t->control);
	if (t->config) {
		struct config cfg;
		memset(&cfg, 0, sizeof(cfg));
		char *args[] = { "run", "-c", (char *)t->config, "--spool", (char *)t->spool, NULL };
		config_from_run_args(&cfg, t->spool ? 5 : 3, args);
		if (!cfg.control_socket)
			fatal("%s: no control socket (control-socket = \"off\", or the spool's path is too long)", t->config);
		char *p = xstrdup(cfg.control_socket);
		config_free(&cfg);
		return p;
	}
	if (t->spool) {
		struct buf b = { 0 };
		buf_printf(&b, "%s/control", t->spool);
		return b.p;
	}
	return xstrdup(DEFAULT_CONTROL_SOCKET);
}

/* ---- a JSON reader (the status reply) ---- */

enum jtype { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	double num;
	char *str;          /* J_STR: decoded (a \u0000 ends it early) */
	char *key;          /* a member of an object: its name */
	struct jval *kids;  /* J_ARR, J_OBJ */
	size_t nkids;
};

struct jreader {
	const char *p, *end;
	int depth;
};

static void jfree(struct jval *v)
{
	for (size_t i = 0; i < v->nkids; i++)
		jfree(&v->kids[i]);
	free(v->kids);
	free(v->str);
	free(v->key);
	memset(v, 0, sizeof(*v));
}

static void jspace(struct jreader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static void utf8_put(struct buf *b, unsigned c)
{
	char u[4];
	size_t n;
	if (c < 0x80) {
		u[0] = (char)c, n = 1;
	} else if (c < 0x800) {
		u[0] = (char)(0xc0 | c >> 6), u[1] = (char)(0x80 | (c & 63)), n = 2;
	} else if (c < 0x10000) {
		u[0] = (char)(0xe0 | c >> 12), u[1] = (char)(0x80 | (c >> 6 & 63)), u[2] = (char)(0x80 | (c & 63)), n = 3;
	} else {
		u[0] = (char)(0xf0 | c >> 18), u[1] = (char)(0x80 | (c >> 12 & 63));
		u[2] = (char)(0x80 | (c >> 6 & 63)), u[3] = (char)(0x80 | (c & 63)), n = 4;
	}
	buf_add(b, u, n);
}

static bool jhex4(struct jreader *r, unsigned *out)
{
	if (r->end - r->p < 4)
		return false;
	*out = 0;
	for (int i = 0; i < 4; i++) {
		char c = *r->p++;
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
		           : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
		if (d == 16)
			return false;
		*out = *out << 4 | d;
	}
	return true;
}

/* A string at r->p (its opening quote): the decoded text, caller frees. */
static char *jstring(struct jreader *r)
{
	struct buf b = { 0 };
	r->p++;
	while (r->p < r->end && *r->p != '"') {
		unsigned char c = (unsigned char)*r->p++;
		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			buf_add(&b, &c, 1);
			continue;
		}
		if (r->p == r->end)
			goto bad;
		char e = *r->p++;
		const char *plain = strchr("\"\\/bfnrt", e);
		if (e && plain) {
			static const char with[] = "\"\\/\b\f\n\r\t";
			buf_add(&b, &with[plain - "\"\\/bfnrt"], 1);
			continue;
		}
		unsigned u, lo;
		if (e != 'u' || !jhex4(r, &u))
			goto bad;
		if (u >= 0xd800 && u < 0xdc00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
			const char *back = r->p;
			r->p += 2;
			if (jhex4(r, &lo) && lo >= 0xdc00 && lo < 0xe000)
				u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			else
				r->p = back;
		}
		utf8_put(&b, u >= 0xd800 && u < 0xe000 ? 0xfffd : u);
	}
	if (r->p == r->end)
		goto bad;
	r->p++;
	buf_add(&b, "", 1);
	return b.p;
bad:
	buf_free(&b);
	return NULL;
}

static bool jvalue(struct jreader *r, struct jval *v);

/* The members of an array or an object, after its opening bracket. */
static bool jmembers(struct jreader *r, struct jval *v, char close)
{
	size_t cap = 0;
	jspace(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		return true;
	}
	for (;;) {
		char *key = NULL;
		if (close == '}') {
			jspace(r);
			if (r->p == r->end || *r->p != '"' || !(key = jstring(r)))
				return false;
			jspace(r);
			if (r->p == r->end || *r->p++ != ':') {
				free(key);
				return false;
			}
		}
		if (v->nkids == cap) {
			cap = cap ? 2 * cap : 8;
			v->kids = xrealloc(v->kids, cap * sizeof(*v->kids));
		}
		struct jval *kid = &v->kids[v->nkids++];
		memset(kid, 0, sizeof(*kid));
		kid->key = key;
		if (!jvalue(r, kid))
			return false;
		jspace(r);
		if (r->p == r->end)
			return false;
		char c = *r->p++;
		if (c == close)
			return true;
		if (c != ',')
			return false;
	}
}

static bool jword(struct jreader *r, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n))
		return false;
	r->p += n;
	return true;
}

static bool jvalue(struct jreader *r, struct jval *v)
{
	jspace(r);
	if (r->p == r->end)
		return false;
	char c = *r->p;
	if (c == '{' || c == '[') {
		if (++r->depth > JSON_DEPTH_MAX)
			return false;
		r->p++;
		v->type = c == '{' ? J_OBJ : J_ARR;
		bool ok = jmembers(r, v, c == '{' ? '}' : ']');
		r->depth--;
		return ok;
	}
	if (c == '"') {
		v->type = J_STR;
		return (v->str = jstring(r)) != NULL;
	}
	if (c == 't' || c == 'f' || c == 'n') {
		v->type = c == 't' ? J_TRUE : c == 'f' ? J_FALSE : J_NULL;
		return jword(r, c == 't' ? "true" : c == 'f' ? "false" : "null");
	}
	char num[64];
	size_t n = 0;
	while (r->p < r->end && n < sizeof(num) - 1 && strchr("+-.0123456789eE", *r->p) && *r->p)
		num[n++] = *r->p++;
	num[n] = 0;
	char *stop;
	v->type = J_NUM;
	v->num = strtod(num, &stop);
	return n > 0 && *stop == 0 && (num[0] == '-' || (num[0] >= '0' && num[0] <= '9'));
}

/* Reads the one JSON value of text (whitespace around it allowed). */
static bool json_read(const char *text, size_t len, struct jval *out)
{
	struct jreader r = { .p = text, .end = text + len };
	memset(out, 0, sizeof(*out));
	bool ok = jvalue(&r, out);
	jspace(&r);
	if (!ok || r.p != r.end) {
		jfree(out);
		return false;
	}
	return true;
}

static const struct jval *jget(const struct jval *o, const char *key)
{
	if (!o || o->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->nkids; i++)
		if (!strcmp(o->kids[i].key, key))
			return &o->kids[i];
	return NULL;
}

static double jnum(const struct jval *o, const char *key, double otherwise)
{
	const struct jval *v = jget(o, key);
	return v && v->type == J_NUM && isfinite(v->num) ? v->num : otherwise;
}

static const char *jstr(const struct jval *o, const char *key)
{
	const struct jval *v = jget(o, key);
	return v && v->type == J_STR ? v->str : "";
}

static size_t jcount(const struct jval *o, const char *key, const struct jval **items)
{
	const struct jval *v = jget(o, key);
	*items = v && v->type == J_ARR ? v->kids : NULL;
	return v && v->type == J_ARR ? v->nkids : 0;
}

/* ---- the status reply ---- */

struct pair_row {
	char *group, *source, *suspended_by; /* escaped for a terminal */
	double connections, queued, delivered, deferred, bounced, expired;
	double suspended_s, rate_limit, fill; /* fill < 0: no limit */
	double rate;                          /* delivered per second; < 0: not known */
};

struct snapshot {
	struct jval root;
	double pid, uptime_s, shards;
	const struct jval *totals, *spool;
	struct pair_row *pairs;   /* by (group, source) */
	size_t npairs;
	int64_t at_ms;            /* when the reply came (monotonic) */
};

static char *escaped_dup(const char *s)
{
	char e[ESCAPED_MAX];
	return xstrdup(escape_text(s, e, sizeof(e)));
}

static int pair_key_cmp(const void *a, const void *b)
{
	const struct pair_row *x = a, *y = b;
	int c = strcmp(x->group, y->group);
	return c ? c : strcmp(x->source, y->source);
}

static void snapshot_free(struct snapshot *s)
{
	for (size_t i = 0; i < s->npairs; i++) {
		free(s->pairs[i].group);
		free(s->pairs[i].source);
		free(s->pairs[i].suspended_by);
	}
	free(s->pairs);
	jfree(&s->root);
	memset(s, 0, sizeof(*s));
}

static bool snapshot_read(const char *body, size_t len, struct snapshot *s, char *err, size_t err_len)
{
	memset(s, 0, sizeof(*s));
	s->at_ms = now_mono_ms();
	if (!json_read(body, len, &s->root) || s->root.type != J_OBJ || !jget(&s->root, "pid")) {
		snprintf(err, err_len, "the daemon's status is not the JSON object expected");
		jfree(&s->root);
		return false;
	}
	s->pid = jnum(&s->root, "pid", 0);
	s->uptime_s = jnum(&s->root, "uptime_s", 0);
	s->shards = jnum(&s->root, "shards", 0);
	s->totals = jget(&s->root, "totals");
	s->spool = jget(&s->root, "spool");
	const struct jval *items;
	size_t n = jcount(&s->root, "pairs", &items);
	s->pairs = xcalloc(n + 1, sizeof(*s->pairs));
	for (size_t i = 0; i < n; i++) {
		const struct jval *o = &items[i];
		if (o->type != J_OBJ)
			continue;
		struct pair_row *p = &s->pairs[s->npairs++];
		p->group = escaped_dup(jstr(o, "group"));
		p->source = escaped_dup(jstr(o, "source"));
		p->suspended_by = escaped_dup(jstr(o, "suspended_by"));
		p->connections = jnum(o, "connections", 0);
		p->queued = jnum(o, "queued", 0);
		p->delivered = jnum(o, "delivered", 0);
		p->deferred = jnum(o, "deferred", 0);
		p->bounced = jnum(o, "bounced", 0);
		p->expired = jnum(o, "expired", 0);
		p->suspended_s = jnum(o, "suspended_s", 0);
		p->rate_limit = jnum(o, "rate_limit", 0);
		p->fill = jnum(o, "fill", -1);
		p->rate = -1;
	}
	qsort(s->pairs, s->npairs, sizeof(*s->pairs), pair_key_cmp);
	return true;
}

/* Seconds between two replies of the same daemon (its uptime, else our
 * clock); 0 when they cannot be compared. */
static double seconds_between(const struct snapshot *prev, const struct snapshot *cur)
{
	if (!prev || !prev->root.type || prev->pid != cur->pid)
		return 0;
	double d = cur->uptime_s - prev->uptime_s;
	if (!(d > 0.05))
		d = (double)(cur->at_ms - prev->at_ms) / 1000.0;
	return d > 0.05 ? d : 0;
}

/* Each pair's delivered per second since prev (both sorted by key). */
static void pair_rates(struct snapshot *cur, const struct snapshot *prev)
{
	double secs = seconds_between(prev, cur);
	if (secs <= 0)
		return;
	size_t j = 0;
	for (size_t i = 0; i < cur->npairs; i++) {
		struct pair_row *p = &cur->pairs[i];
		while (j < prev->npairs && pair_key_cmp(&prev->pairs[j], p) < 0)
			j++;
		double before = j < prev->npairs && !pair_key_cmp(&prev->pairs[j], p) ? prev->pairs[j].delivered : 0;
		p->rate = p->delivered >= before ? (p->delivered - before) / secs : 0;
	}
}

/* ---- the table ---- */

/* "42s", "12m03s", "3h05m", "2d04h". */
static void duration_text(char *out, size_t len, double s)
{
	long t = s > 0 ? (long)((s < 1e9 ? s : 1e9) + 0.5) : 0;
	if (t < 60)
		snprintf(out, len, "%lds", t);
	else if (t < 3600)
		snprintf(out, len, "%ldm%02lds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(out, len, "%ldh%02ldm", t / 3600, t % 3600 / 60);
	else
		snprintf(out, len, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

/* A suspension's time left: "12m03s left", or "until resumed". */
static void left_text(char *out, size_t len, double s)
{
	if (s > 0 && s < FOREVER_S) {
		duration_text(out, len, s);
		snprintf(out + strlen(out), len - strlen(out), " left");
	} else {
		snprintf(out, len, "until resumed");
	}
}

static void limit_text(char *out, size_t len, double per_s)
{
	if (!(per_s > 0))
		snprintf(out, len, "-");
	else if (per_s >= 1)
		snprintf(out, len, "%.3g/s", per_s);
	else if (per_s * 60 >= 1)
		snprintf(out, len, "%.3g/m", per_s * 60);
	else
		snprintf(out, len, "%.3g/h", per_s * 3600);
}

static void count_and_rate(struct buf *b, const char *name, double now, double before, double secs)
{
	buf_printf(b, "  %s %.0f", name, now);
	if (secs > 0)
		buf_printf(b, " (%.1f/s)", now >= before ? (now - before) / secs : 0.0);
}

struct view {
	bool rates;     /* a RATE/s column and rates in the header (top) */
	size_t rows;    /* lines the screen has; 0: no limit */
	double interval;
	bool keys;      /* 'q' quits */
};

static int busiest_first(const void *a, const void *b)
{
	const struct pair_row *x = *(const struct pair_row *const *)a, *y = *(const struct pair_row *const *)b;
	double keys[][2] = { { x->rate, y->rate }, { x->connections, y->connections },
	                     { x->queued, y->queued }, { x->delivered, y->delivered } };
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		if (keys[i][0] != keys[i][1])
			return keys[i][0] > keys[i][1] ? -1 : 1;
	return pair_key_cmp(x, y);
}

/* Appends the first lines of src (each ending in "\n") to out: all of
 * them if they fit in cap (0: no limit), else cap - 1 and a line saying
 * how many more there are. */
static void add_lines_capped(struct buf *out, const struct buf *src, size_t cap, const char *what)
{
	size_t lines = 0;
	for (size_t i = 0; i < src->len; i++)
		lines += src->p[i] == '\n';
	if (!cap || lines <= cap) {
		if (src->len)
			buf_add(out, src->p, src->len);
		return;
	}
	size_t keep = cap - 1, at = 0;
	for (size_t n = 0; n < keep; at++)
		n += src->p[at] == '\n';
	buf_add(out, src->p, at);
	buf_printf(out, "  ... %zu more %s\n", lines - keep, what);
}

static void pair_table(struct buf *b, const struct snapshot *s, const struct view *v)
{
	const struct pair_row **order = xcalloc(s->npairs + 1, sizeof(*order));
	int gw = 5, sw = 6;
	for (size_t i = 0; i < s->npairs; i++) {
		order[i] = &s->pairs[i];
		int g = (int)strlen(s->pairs[i].group), src = (int)strlen(s->pairs[i].source);
		gw = g > gw ? g : gw;
		sw = src > sw ? src : sw;
	}
	gw = gw > NAME_COLUMN_MAX ? NAME_COLUMN_MAX : gw;
	qsort(order, s->npairs, sizeof(*order), busiest_first);
	buf_printf(b, "%-*s %-*s %s%5s %7s %8s %7s %7s %8s %5s  %s\n", gw, "GROUP", sw, "SOURCE",
	           v->rates ? " RATE/s " : "", "CONN", "QUEUED", "DELIV", "DEFER", "BOUNCE", "LIMIT", "FILL", "SUSPENDED");
	for (size_t i = 0; i < s->npairs; i++) {
		const struct pair_row *p = order[i];
		char limit[32], fill[16], susp[ESCAPED_MAX + 32] = "-", rate[16] = "";
		limit_text(limit, sizeof(limit), p->rate_limit);
		snprintf(fill, sizeof(fill), p->fill >= 0 ? "%.0f%%" : "-", p->fill * 100);
		if (p->suspended_s > 0 || p->suspended_by[0]) { /* "12m03s ctl", "until resumed ctl" */
			if (p->suspended_s > 0 && p->suspended_s < FOREVER_S)
				duration_text(susp, sizeof(susp), p->suspended_s);
			else
				snprintf(susp, sizeof(susp), "until resumed");
			if (p->suspended_by[0])
				snprintf(susp + strlen(susp), sizeof(susp) - strlen(susp), " %s", p->suspended_by);
		}
		if (v->rates && p->rate >= 0)
			snprintf(rate, sizeof(rate), "%7.1f ", p->rate);
		else if (v->rates)
			snprintf(rate, sizeof(rate), "%7s ", "-");
		int glen = (int)strlen(p->group);
		buf_printf(b, "%-*.*s%s %-*s %s%5.0f %7.0f %8.0f %7.0f %7.0f %8s %5s  %s\n",
		           glen > gw ? gw - 1 : gw, glen > gw ? gw - 1 : gw, p->group, glen > gw ? "~" : "",
		           sw, p->source[0] ? p->source : "-", rate, p->connections, p->queued, p->delivered,
		           p->deferred, p->bounced, limit, fill, susp);
	}
	if (!s->npairs)
		buf_adds(b, "  (no (group, source) pair yet)\n");
	free(order);
}

/* The suspensions and the paused or bouncing jobs ("" when none). */
static void tail_lines(struct buf *b, const struct snapshot *s)
{
	const struct jval *items;
	size_t n = jcount(&s->root, "suspensions", &items);
	if (n)
		buf_adds(b, "\nsuspensions:\n");
	for (size_t i = 0; i < n; i++) {
		char g[ESCAPED_MAX], src[ESCAPED_MAX], rule[ESCAPED_MAX], left[32];
		const char *scope = jstr(&items[i], "scope");
		escape_text(jstr(&items[i], "group"), g, sizeof(g));
		escape_text(jstr(&items[i], "source"), src, sizeof(src));
		escape_text(jstr(&items[i], "rule"), rule, sizeof(rule));
		left_text(left, sizeof(left), jnum(&items[i], "remaining_s", 0));
		buf_printf(b, "  %-6s", *scope ? scope : "pair");
		if (!strcmp(scope, "source"))
			buf_printf(b, " source %s (every group)", src);
		else if (!strcmp(scope, "group"))
			buf_printf(b, " group %s (every source)", g);
		else
			buf_printf(b, " group %s, source %s", g, src[0] ? src : "-");
		buf_printf(b, "  %s%s%s%s\n", rule[0] ? "by " : "", rule, rule[0] ? ", " : "", left);
	}
	n = jcount(&s->root, "jobs", &items);
	if (n)
		buf_adds(b, "\njobs:\n");
	for (size_t i = 0; i < n; i++) {
		char job[ESCAPED_MAX], state[64], left[32] = "";
		escape_text(jstr(&items[i], "job"), job, sizeof(job));
		escape_text(jstr(&items[i], "state"), state, sizeof(state));
		double rem = jnum(&items[i], "remaining_s", 0); /* a hold ends by itself after a while */
		if (rem > 0)
			left_text(left, sizeof(left), rem);
		buf_printf(b, "  %-20s %s%s%s\n", job, state, left[0] ? ", " : "", left);
	}
}

static void header(struct buf *b, const struct snapshot *s, const struct snapshot *prev, const struct view *v)
{
	char up[32], mode[64];
	duration_text(up, sizeof(up), s->uptime_s);
	escape_text(jstr(&s->root, "mode"), mode, sizeof(mode));
	if (v->rates) {
		char when[32];
		time_t t = time(NULL);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		buf_printf(b, "sluice top  %s  pid %.0f  up %s  %.0f shards  %s", when, s->pid, up, s->shards,
		           mode[0] ? mode : "-");
		buf_printf(b, "  (every %gs%s)\n", v->interval, v->keys ? ", q quits" : "");
	} else {
		buf_printf(b, "sluice pid %.0f: %s, %.0f shards, up %s\n", s->pid, mode[0] ? mode : "-", s->shards, up);
	}
	double secs = v->rates ? seconds_between(prev, s) : 0;
	static const char *const totals[] = { "messages", "delivered", "deferred", "bounced", "expired", "bad" };
	for (size_t i = 0; i < ARRAY_LEN(totals); i++) {
		double now = jnum(s->totals, totals[i], 0), before = secs > 0 ? jnum(prev->totals, totals[i], 0) : 0;
		count_and_rate(b, totals[i], now, before, i < 4 ? secs : 0);
	}
	buf_adds(b, "\n");
	double open = jnum(s->spool, "jobs_open", 0);
	buf_printf(b, "  spool: %.0f in memory, %.0f waiting, %.0f job%s open\n", jnum(s->spool, "in_memory", 0),
	           jnum(s->spool, "waiting", 0), open, open == 1 ? "" : "s");
}

/* A whole screen: the header, the pairs (busiest first) and what is
 * suspended or paused, cut to v->rows when it is not 0. */
static void screen(struct buf *out, const struct snapshot *s, const struct snapshot *prev, const struct view *v)
{
	struct buf pairs = { 0 }, tail = { 0 };
	header(out, s, prev, v);
	buf_adds(out, "\n");
	pair_table(&pairs, s, v);
	tail_lines(&tail, s);
	if (!v->rows) {
		add_lines_capped(out, &pairs, 0, "pairs");
		add_lines_capped(out, &tail, 0, "lines");
	} else {
		size_t used = 0, tail_want = 0, pair_want = 0;
		for (size_t i = 0; i < out->len; i++)
			used += out->p[i] == '\n';
		for (size_t i = 0; i < pairs.len; i++)
			pair_want += pairs.p[i] == '\n';
		for (size_t i = 0; i < tail.len; i++)
			tail_want += tail.p[i] == '\n';
		size_t avail = v->rows > used + 2 ? v->rows - used : 2; /* the heading and a row at least */
		size_t half = avail / 2 > 2 ? avail / 2 : 2;
		size_t pair_min = pair_want < half ? pair_want : half;
		size_t tail_room = avail > pair_min ? avail - pair_min : 0;
		size_t tail_show = tail_want < tail_room ? tail_want : tail_room;
		size_t pair_show = avail - tail_show < pair_want ? avail - tail_show : pair_want;
		add_lines_capped(out, &pairs, pair_show < 2 ? 2 : pair_show, "pairs");
		if (tail_show > 2)
			add_lines_capped(out, &tail, tail_show, "lines");
	}
	buf_free(&pairs);
	buf_free(&tail);
}

/* ---- sluice status ---- */

static void status_usage(FILE *f)
{
	fputs("usage: sluice status [--json] [--control PATH | -c sluice.conf | --spool DIR]\n"
	      "What a running sluice is doing: its totals, the spool, each (MX group, source\n"
	      "IP) pair (connections, queued, delivered, deferred, bounced, its rate limit,\n"
	      "its token bucket's fill, a suspension), the suspensions and the paused or\n"
	      "bouncing jobs. --json prints the daemon's JSON object (one line) as is.\n"
	      TARGET_USAGE
	      "Exit status 1 when the daemon cannot be reached or says no.\n", f);
}

/* Sends line, checks the reply: true with *r and the reply's bytes in
 * raw; else says why on stderr. */
static bool ask(const char *path, const char *line, struct buf *raw, struct reply *r)
{
	char err[1400];
	if (!control_request(path, line, raw, err, sizeof(err))) {
		warnx_("%s", err);
		return false;
	}
	if (!reply_split(raw, r)) {
		warnx_("%s: %s", path, r->text);
		return false;
	}
	if (!r->ok) {
		warnx_("%s", r->text);
		return false;
	}
	return true;
}

int status_main(int argc, char **argv)
{
	static const struct option opts[] = {
		TARGET_OPTIONS, { "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	struct target t = { 0 };
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (target_option(&t, opt, optarg))
			continue;
		if (opt == 'j')
			json = true;
		else if (opt == 'h')
			return status_usage(stdout), 0;
		else
			return status_usage(stderr), 2;
	}
	if (optind < argc)
		fatal("status: unexpected argument '%s' (see sluice status --help)", argv[optind]);
	char *path = target_path(&t);
	struct buf raw = { 0 };
	struct reply r;
	int rc = 1;
	if (ask(path, "status", &raw, &r)) {
		if (json) {
			fwrite(r.body, 1, r.body_len, stdout);
			rc = 0;
		} else {
			struct snapshot s;
			char err[200];
			if (snapshot_read(r.body, r.body_len, &s, err, sizeof(err))) {
				struct buf out = { 0 };
				struct view v = { 0 };
				screen(&out, &s, NULL, &v);
				fwrite(out.p, 1, out.len, stdout);
				buf_free(&out);
				snapshot_free(&s);
				rc = 0;
			} else {
				warnx_("%s: %s", path, err);
			}
		}
	}
	buf_free(&raw);
	free(path);
	return fflush(stdout) == 0 ? rc : 1;
}

/* ---- sluice top ---- */

static volatile sig_atomic_t top_signal, top_resized, top_tstp;
static struct termios saved_termios;
static bool termios_saved, alt_screen;

static void on_stop_signal(int sig) { top_signal = sig; }
static void on_winch(int sig) { top_resized = 1; }
static void on_tstp(int sig) { top_tstp = 1; }

static void on_signal(int sig, void (*handler)(int))
{
	struct sigaction sa = { .sa_handler = handler }; /* no SA_RESTART: poll returns */
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

static void terminal_restore(void)
{
	if (alt_screen) {
		static const char leave[] = "\033[?25h\033[?1049l";
		if (write(STDOUT_FILENO, leave, sizeof(leave) - 1) < 0) { /* nothing more to do */
		}
		alt_screen = false;
	}
	if (termios_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
		termios_saved = false;
	}
}

/* Non-canonical input without echo (stdin a terminal), the alternate
 * screen without a cursor (stdout a terminal). */
static void terminal_enter(bool tty_out, bool tty_in)
{
	if (tty_in && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		struct termios raw = saved_termios;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		termios_saved = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	if (tty_out) {
		fputs("\033[?1049h\033[?25l", stdout);
		fflush(stdout);
		alt_screen = true;
	}
}

static void terminal_setup(bool tty_out, bool tty_in)
{
	on_signal(SIGINT, on_stop_signal);
	on_signal(SIGTERM, on_stop_signal);
	on_signal(SIGHUP, on_stop_signal);
	on_signal(SIGWINCH, on_winch);
	if (tty_out || tty_in)
		on_signal(SIGTSTP, on_tstp);
	atexit(terminal_restore);
	terminal_enter(tty_out, tty_in);
}

/* Ctrl-Z: gives the terminal back, stops; continued, takes it again. */
static void terminal_stop(bool tty_out, bool tty_in)
{
	top_tstp = 0;
	terminal_restore();
	signal(SIGTSTP, SIG_DFL);
	raise(SIGTSTP);
	on_signal(SIGTSTP, on_tstp);
	terminal_enter(tty_out, tty_in);
}

static void terminal_size(size_t *rows, size_t *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* Writes a screen: on a terminal over the last one (each line cut to the
 * width and cleared to its end, the rest of the screen cleared), else as
 * plain lines and an empty one after it. */
static void show(const struct buf *scr, bool tty, size_t cols)
{
	struct buf out = { 0 };
	if (tty)
		buf_adds(&out, "\033[H");
	for (size_t at = 0; at < scr->len;) {
		const char *nl = memchr(scr->p + at, '\n', scr->len - at);
		size_t n = nl ? (size_t)(nl - (scr->p + at)) : scr->len - at;
		size_t shown = tty && cols && n > cols ? cols : n;
		buf_add(&out, scr->p + at, shown);
		buf_adds(&out, tty ? "\033[K" : "");
		at += n + 1;
		if (at < scr->len || !tty)
			buf_adds(&out, tty ? "\r\n" : "\n");
	}
	buf_adds(&out, tty ? "\033[J" : "\n");
	fwrite(out.p, 1, out.len, stdout);
	fflush(stdout);
	buf_free(&out);
}

static void top_usage(FILE *f)
{
	fputs("usage: sluice top [--interval SECONDS] [--count N] [--control PATH | -c sluice.conf | --spool DIR]\n"
	      "A live view of a running sluice, redrawn every --interval (1 s): its totals with\n"
	      "rates per second, then each (MX group, source IP) pair, busiest first (delivered\n"
	      "per second, connections, queued, delivered, deferred, bounced, its limit, its\n"
	      "token bucket's fill, a suspension's time left and cause), cut to the\n"
	      "terminal's height; then the suspensions and the paused or bouncing jobs.\n"
	      "q (or Ctrl-C) quits; --count N stops after N screens (0: never). When the\n"
	      "daemon does not answer it says why and tries again each interval. Not on a\n"
	      "terminal: one plain screen per interval.\n"
	      TARGET_USAGE
	      "Exit status 1 when its last try did not reach the daemon.\n", f);
}

/* Waits until deadline for 'q' on a terminal, a signal or the time:
 * true when it is time to stop. */
static bool top_wait(int64_t deadline, bool tty_in)
{
	while (!top_signal && !top_resized && !top_tstp) {
		int64_t left = deadline - now_mono_ms();
		if (left <= 0)
			return false;
		struct pollfd pf = { .fd = STDIN_FILENO, .events = POLLIN };
		int n = poll(&pf, tty_in ? 1 : 0, (int)left);
		if (n > 0) {
			char keys[64];
			ssize_t got = read(STDIN_FILENO, keys, sizeof(keys));
			if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
				return true; /* the terminal went away */
			for (ssize_t i = 0; i < got; i++)
				if (keys[i] == 'q' || keys[i] == 'Q')
					return true;
		}
	}
	return top_signal != 0;
}

int top_main(int argc, char **argv)
{
	static const struct option opts[] = {
		TARGET_OPTIONS, { "interval", required_argument, 0, 'i' }, { "count", required_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	struct target t = { 0 };
	double interval = 1;
	long count = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (target_option(&t, opt, optarg))
			continue;
		char *end;
		switch (opt) {
		case 'i':
			interval = strtod(optarg, &end);
			if (end == optarg || *end || !(interval >= 0.1 && interval <= 3600))
				fatal("top: --interval %s: seconds, from 0.1 to 3600", optarg);
			break;
		case 'n':
			if (!parse_uint(optarg, 0, 1000000000, &count))
				fatal("top: --count %s: a whole number of screens (0: until q)", optarg);
			break;
		case 'h': top_usage(stdout); return 0;
		default: top_usage(stderr); return 2;
		}
	}
	if (optind < argc)
		fatal("top: unexpected argument '%s' (see sluice top --help)", argv[optind]);
	char *path = target_path(&t);
	bool tty_out = isatty(STDOUT_FILENO), tty_in = tty_out && isatty(STDIN_FILENO);
	terminal_setup(tty_out, tty_in);
	struct snapshot prev = { 0 }, cur = { 0 };
	struct buf raw = { 0 }, scr = { 0 };
	char err[1400] = "";
	struct view v = { .rates = true, .interval = interval, .keys = tty_in };
	int timeout_ms = interval < 1 ? 1000 : interval > 10 ? REQUEST_MS : (int)(interval * 1000);
	bool reached = false;
	for (long shown = 0; !top_signal;) {
		int64_t next = now_mono_ms() + (int64_t)(interval * 1000);
		struct reply r;
		reached = false;
		if (!request_within(path, "status", &raw, timeout_ms, err, sizeof(err))) {
		} else if (!reply_split(&raw, &r) || !r.ok) {
			snprintf(err, sizeof(err), "%s: %s", path, r.text);
		} else {
			snapshot_free(&prev);
			prev = cur;
			reached = snapshot_read(r.body, r.body_len, &cur, err, sizeof(err));
			if (reached)
				pair_rates(&cur, &prev);
			else
				memset(&cur, 0, sizeof(cur));
		}
		for (bool again = true; again;) {
			size_t cols;
			terminal_size(&v.rows, &cols);
			top_resized = 0;
			scr.len = 0;
			if (reached) {
				screen(&scr, &cur, &prev, &v);
			} else {
				char when[32];
				time_t now = time(NULL);
				strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
				buf_printf(&scr, "sluice top  %s  (every %gs%s)\n\nnot reachable: %s\ntrying again every %gs\n",
				           when, interval, tty_in ? ", q quits" : "", err, interval);
			}
			show(&scr, tty_out, cols);
			if (count && ++shown >= count)
				goto done;
			again = false;
			if (top_wait(next, tty_in))
				goto done;
			bool stopped = top_tstp;
			if (stopped)
				terminal_stop(tty_out, tty_in);
			again = top_resized || stopped; /* redraw (at the new size), then wait on */
			if (again)
				shown--;
		}
	}
done:
	terminal_restore();
	snapshot_free(&prev);
	snapshot_free(&cur);
	buf_free(&raw);
	buf_free(&scr);
	free(path);
	if (top_signal) {
		signal(top_signal, SIG_DFL);
		raise(top_signal);
	}
	return reached ? 0 : 1;
}

/* ---- sluice ctl ---- */

static void ctl_usage(FILE *f)
{
	fputs("usage: sluice ctl [--control PATH | -c sluice.conf | --spool DIR] COMMAND ...\n"
	      "  suspend GROUP [--source IP] [--for DURATION]\n"
	      "                 MX group GROUP waits (only its pair with source IP IP):\n"
	      "                 nothing is sent to it until resumed, or for DURATION\n"
	      "                 (seconds, or with s, m, h or d: 90, 30m, 2h, 1d)\n"
	      "  resume NAME [--source IP]\n"
	      "                 lifts the suspensions of MX group NAME (of its pair\n"
	      "                 with IP) and the pause of job NAME\n"
	      "  pause JOB      the job's messages wait (deferred, not tried)\n"
	      "  bounce JOB     the job's queued messages bounce\n"
	      "  reload         read the configuration again (as SIGHUP)\n"
	      "  why ID         why message ID (its spool id) waits\n"
	      "Prints the daemon's answer. Every command is a line in the accounting log.\n"
	      TARGET_USAGE
	      "Exit status 0 done, 1 the daemon said no (its reason on stderr) or could not\n"
	      "be reached, 2 a usage error.\n", f);
}

/* A word of a request: not empty, no space or control byte, not too long. */
static const char *word(const char *w, const char *what)
{
	size_t n = strlen(w);
	if (!n)
		fatal("ctl: %s is empty", what);
	if (n > CONTROL_WORD_MAX)
		fatal("ctl: %s is longer than %d bytes", what, CONTROL_WORD_MAX);
	for (const unsigned char *p = (const unsigned char *)w; *p; p++)
		if (*p <= ' ' || *p == 0x7f) {
			char e[ESCAPED_MAX];
			fatal("ctl: %s \"%s\" holds a space or a control byte", what, escape_text(w, e, sizeof(e)));
		}
	return w;
}

/* "90", "90s", "30m", "2h", "1d": seconds, more than 0. */
static long duration_arg(const char *v)
{
	char digits[32];
	size_t n = strlen(v);
	long unit = 1, secs;
	if (n && n < sizeof(digits)) {
		const char *u = strchr("smhd", v[n - 1]);
		if (v[n - 1] && u) {
			static const long units[] = { 1, 60, 3600, 86400 };
			unit = units[u - "smhd"];
			n--;
		}
		memcpy(digits, v, n);
		digits[n] = 0;
		if (parse_uint(digits, 1, DURATION_MAX_S / unit, &secs))
			return secs * unit;
	}
	fatal("ctl: --for %s: a duration: seconds, or a number with s, m, h or d (30m, 2h, 1d); "
	      "more than 0, at most 365 days", v);
}

/* Prints a reply's text for a person: bytes other than printable ones,
 * UTF-8, newlines and tabs are escaped. */
static void print_text(FILE *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x20 ? c != 0x7f : c == '\n' || c == '\t')
			fputc(c, f);
		else
			fprintf(f, "\\x%02x", c);
	}
}

int ctl_main(int argc, char **argv)
{
	static const struct option opts[] = {
		TARGET_OPTIONS, { "source", required_argument, 0, 's' }, { "for", required_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	struct target t = { 0 };
	const char *source = NULL;
	char source_text[INET6_ADDRSTRLEN] = "-";
	long secs = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (target_option(&t, opt, optarg))
			continue;
		uint8_t a[16];
		bool v6;
		switch (opt) {
		case 's': /* as the daemon writes it (an IPv4-mapped address is IPv4) */
			source = optarg;
			if (!dns_ip_parse(optarg, a, &v6) || !inet_ntop(v6 ? AF_INET6 : AF_INET, a, source_text, sizeof(source_text)))
				fatal("ctl: --source %s: not a numeric IP address", optarg);
			break;
		case 'f': secs = duration_arg(optarg); break;
		case 'h': ctl_usage(stdout); return 0;
		default: ctl_usage(stderr); return 2;
		}
	}
	char **words = argv + optind;
	int nwords = argc - optind;
	if (nwords < 1) {
		ctl_usage(stderr);
		return 2;
	}
	static const struct { const char *name, *arg; bool source, secs; } commands[] = {
		{ "suspend", "GROUP", true, true }, { "resume", "NAME", true, false }, { "pause", "JOB", false, false },
		{ "bounce", "JOB", false, false },  { "reload", NULL, false, false },   { "why", "ID", false, false },
	};
	size_t c = 0;
	while (c < ARRAY_LEN(commands) && strcmp(commands[c].name, words[0]))
		c++;
	if (c == ARRAY_LEN(commands)) {
		char e[ESCAPED_MAX];
		fatal("ctl: unknown command '%s': suspend, resume, pause, bounce, reload or why (see sluice ctl --help)",
		      escape_text(words[0], e, sizeof(e)));
	}
	int want = commands[c].arg ? 2 : 1;
	if (nwords < want)
		fatal("ctl %s: give its %s (see sluice ctl --help)", words[0], commands[c].arg);
	if (nwords > want) {
		char e[ESCAPED_MAX];
		fatal("ctl %s: unexpected argument '%s' (see sluice ctl --help)", words[0], escape_text(words[want], e, sizeof(e)));
	}
	if (source && !commands[c].source)
		fatal("ctl %s: --source is for suspend and resume", words[0]);
	if (secs && !commands[c].secs)
		fatal("ctl %s: --for is for suspend", words[0]);
	struct buf line = { 0 };
	buf_printf(&line, "%s", words[0]); /* buf_printf keeps the text NUL-terminated */
	if (commands[c].arg)
		buf_printf(&line, " %s", word(words[1], commands[c].arg));
	if (commands[c].source)
		buf_printf(&line, " %s", source_text);
	if (commands[c].secs)
		buf_printf(&line, " %ld", secs);
	char *path = target_path(&t);
	struct buf raw = { 0 };
	struct reply r;
	char err[1400];
	int rc = 1;
	if (!control_request(path, line.p, &raw, err, sizeof(err))) {
		warnx_("%s", err);
	} else if (!reply_split(&raw, &r)) {
		warnx_("%s: %s", path, r.text);
	} else {
		if (!r.ok)
			warnx_("%s", r.text);
		print_text(r.ok ? stdout : stderr, r.body, r.body_len);
		rc = r.ok ? 0 : 1;
	}
	buf_free(&line);
	buf_free(&raw);
	free(path);
	return fflush(stdout) == 0 ? rc : 1;
}
