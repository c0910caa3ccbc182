/* bench/mockmx.c - `sluice mockmx`: a fake MX on io_uring for tests and
 * benchmarks. Speaks ESMTP with PIPELINING and CHUNKING, counts messages,
 * recipients and bytes, optionally stores each message (--store), and
 * injects faults: reply codes per command with a probability, greylisting,
 * disconnects in the middle of DATA, slow replies, silence. It must cost
 * less per message than any sender it measures, so it parses in place and
 * answers a whole pipelined batch with one send.
 *
 * STARTTLS (--tls-cert/--tls-key, RFC 3207): after "220 2.0.0 ready to
 * start TLS" every byte of the connection is ciphertext through its struct
 * tls (engine/lib/tls.h, on memory buffers): the ciphertext is received at
 * the free tail of c->in, copied into the TLS input, and decrypted back
 * into c->in at the same place, so the SMTP parser runs unchanged on the
 * plaintext; a batch of replies (pbuf) is encrypted in records and the
 * ciphertext goes out as wbuf. Plaintext that came after the STARTTLS
 * line in the same read is discarded, as RFC 3207 says.
 *
 * --police-conns/--police-per-conn/--police-rate make it a mailbox
 * provider that polices each client source IP (concurrent connections,
 * MAIL FROMs per connection, a token bucket of MAIL FROMs per second),
 * answering 421 and closing; the counts per source go into the JSON. They
 * share one mutex across threads, taken only when one of them is given.
 *
 * --blocklist IP,... makes it a provider that lists some sources on a DNS
 * blocklist: their connections get a Spamhaus-style refusal (or
 * --blocklist-text) at the greeting, to MAIL FROM or to every RCPT TO
 * (--blocklist-at), and none of their messages is ever accepted. With
 * policing or a blocklist every source also gets a timeline: messages
 * accepted and refusals (421s and blocklist replies) per whole second
 * since the start, the first TIMELINE_MAX seconds, so that a plot shows
 * how a sender adapts to the provider's answers. Same mutex. */
#define _GNU_SOURCE
#include "bench.h"
#include "../engine/lib/rng.h"
#include "../engine/lib/util.h"
#include "../engine/lib/ring.h"
#include "../engine/lib/tls.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MOP_ACCEPT = 1, MOP_RECV, MOP_SEND, MOP_CLOSE, MOP_SLOW, MOP_CANCEL };
enum fcmd { F_CONNECT, F_EHLO, F_MAIL, F_RCPT, F_DATA, F_DOT, F_NCMDS };
static const char *const fcmd_names[F_NCMDS] = { "connect", "ehlo", "mail", "rcpt", "data", "dot" };

#define MAX_LISTEN 16
#define MAX_FAULTS 16
#define INBUF_MAX (256 * 1024)
#define RCPT_STORE_MAX 1000

struct fault { int cmd; int code; double prob; };

/* --tls-fault: what goes wrong once a client has said STARTTLS. */
enum tls_fault { TF_NONE, TF_CLOSE_AFTER_HELLO, TF_GARBAGE, TF_INJECT };
static const char *const tls_fault_names[] = { "none", "close-after-hello", "garbage", "inject" };

/* --blocklist-at: the reply that refuses a blocklisted source. */
enum block_at { BA_RCPT, BA_MAIL, BA_BANNER };
static const char *const block_at_names[] = { "rcpt", "mail", "banner" };
/* The default refusal; each %s becomes the client's IP. */
#define BLOCKLIST_TEXT "554 5.7.1 Service unavailable; Client host [%s] blocked using zen.spamhaus.org; " \
                       "https://www.spamhaus.org/query/ip/%s"
#define BLOCKLIST_TEXT_MAX 400

struct mx_opts {
	struct sockaddr_storage listen[MAX_LISTEN];
	socklen_t listen_len[MAX_LISTEN];
	unsigned nlisten;
	unsigned threads;
	const char *store;
	struct fault faults[MAX_FAULTS];
	unsigned nfaults;
	bool greylist;
	double disconnect_data;
	int slow_ms;
	bool silent, pipelining, chunking, smtputf8;
	unsigned max_rcpt;        /* 452 4.5.3 beyond this many per transaction; 0 = none */
	const char *defer_rcpt;   /* 451 for recipients containing this text */
	uint64_t size_limit;      /* advertised SIZE; larger messages get 552 5.3.4 */
	double max_time;
	const char *stats_path;
	unsigned seed;
	const char *tls_cert, *tls_key; /* STARTTLS offered when both are given */
	enum tls_fault tls_fault;
	bool tls_no_resume;       /* every handshake a full one */
	unsigned police_conns;    /* --police-conns: concurrent connections per source IP; 0 = none */
	unsigned police_per_conn; /* --police-per-conn: MAIL FROMs per connection; 0 = none */
	double police_rate;       /* --police-rate: MAIL FROMs per second per source IP; 0 = none */
	char (*blocklist)[INET6_ADDRSTRLEN]; /* --blocklist: source IPs refused, as peer_ip writes them */
	unsigned nblocklist;
	enum block_at blocklist_at; /* --blocklist-at: where they are refused */
	const char *blocklist_text; /* --blocklist-text, or NULL for BLOCKLIST_TEXT */
};

struct mx_stats {
	_Atomic uint64_t connections, messages, recipients, bytes, rejected, disconnects, bdat;
	_Atomic uint64_t tls_connections, tls_resumed, tls_failures;
};

enum mstate { M_CMD, M_DATA, M_BDAT, M_CLOSING };

struct mconn {
	int fd;
	uint32_t gen;
	bool used;
	enum mstate state;
	unsigned ops;
	bool sending, recv_armed, quit, drop_in_data, slow_pending;
	char *in;
	size_t inlen, incap;
	struct buf wbuf, pbuf;
	size_t woff;
	/* transaction */
	bool have_mail;
	unsigned nrcpt;
	struct buf sender, rcpts, body;
	uint64_t data_bytes;
	uint64_t bdat_left;
	bool bdat_last, bdat_fail;
	struct ring_ts slow_ts;
	/* STARTTLS: tls from the 220 on (every later byte is ciphertext);
	 * tls_up once the handshake is done; starttls_now: stop parsing (the
	 * rest of the read is discarded); tls_hello_seen: ciphertext came. */
	struct tls *tls;
	bool tls_up, starttls_now, tls_hello_seen, ehlo_seen;
	/* --police-*: the source's entry, whether this connection counts as one
	 * of its concurrent ones, MAIL FROMs accepted on it */
	struct psrc *src;
	bool src_held;
	unsigned nmail;
};

struct mx_thread {
	unsigned index;
	const struct mx_opts *o;
	struct mx_stats *st;
	pthread_t tid;
	struct ring *ring;
	int lfd[MAX_LISTEN];
	struct mconn *conns;
	unsigned nconns;
	uint64_t rng;
	uint64_t stored;
	uint64_t *grey;      /* open-addressing set of recipient hashes */
	size_t grey_cap, grey_n;
	struct tls_ctx *tls_ctx; /* this thread's server context (--tls-cert), or NULL */
	struct police *pol;       /* shared by all threads; NULL without --police-* */
};

static volatile sig_atomic_t mx_stop;
static void mx_on_signal(int sig) { (void)sig; mx_stop = 1; }

static double rnd(struct mx_thread *t)
{
	return rng_unit(&t->rng);
}

/* The injected failure for cmd, or 0. */
static int fault_for(struct mx_thread *t, int cmd)
{
	for (unsigned i = 0; i < t->o->nfaults; i++) {
		const struct fault *f = &t->o->faults[i];
		if (f->cmd == cmd && rnd(t) < f->prob)
			return f->code;
	}
	return 0;
}

static void reply_fault(struct mconn *c, int code, const char *cmd)
{
	buf_printf(&c->pbuf, "%d %c.%s mockmx: injected %d on %s\r\n", code, '0' + code / 100,
	           code >= 500 ? "1.1" : "3.0", code, cmd);
}

static uint64_t hash_str(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h | 1;
}

/* True the first time a recipient is seen (greylisting). */
static bool grey_first(struct mx_thread *t, const char *s, size_t n)
{
	if (t->grey_n * 2 >= t->grey_cap) {
		size_t cap = t->grey_cap ? t->grey_cap * 2 : 4096;
		uint64_t *g = xcalloc(cap, sizeof(*g));
		for (size_t i = 0; i < t->grey_cap; i++)
			if (t->grey[i]) {
				size_t j = t->grey[i] & (cap - 1);
				while (g[j])
					j = (j + 1) & (cap - 1);
				g[j] = t->grey[i];
			}
		free(t->grey);
		t->grey = g;
		t->grey_cap = cap;
	}
	uint64_t h = hash_str(s, n);
	size_t j = h & (t->grey_cap - 1);
	while (t->grey[j]) {
		if (t->grey[j] == h)
			return false;
		j = (j + 1) & (t->grey_cap - 1);
	}
	t->grey[j] = h;
	t->grey_n++;
	return true;
}

/* --police-* and --blocklist: a mailbox provider's limits and blocklist per
 * client source IP (the peer address of the accepted socket), shared by all
 * threads under one mutex; t->pol is NULL without one of these options, and
 * then none of this runs. A "mail" is a MAIL FROM that passed policing (the
 * sender spent its token when it started the transaction); a "message" is
 * one completed with 250 after DATA or BDAT LAST. */
#define POLICE_HELO_MAX 4
#define POLICE_HELO_LEN 64
#define POLICE_BUCKETS 256
#define TIMELINE_MAX 3600 /* seconds of per-second counts kept per source */

struct psrc {
	struct psrc *next; /* hash chain */
	char ip[INET6_ADDRSTRLEN];
	uint64_t connections, mails, messages;
	unsigned cur, max_concurrent;
	uint64_t v_conns, v_per_conn, v_rate;
	double tokens, refill_s;  /* --police-rate bucket, refilled at refill_s */
	int64_t first_ms, last_ms; /* first/last accepted MAIL FROM since the start; -1: none */
	unsigned nhelo;
	char helo[POLICE_HELO_MAX][POLICE_HELO_LEN];
	/* --blocklist: set when the entry is made, read without the mutex after */
	char *block_reply;         /* the refusal with its CRLF, or NULL: not listed */
	uint64_t blocklisted;      /* refusals sent */
	/* the timeline: messages accepted and refusals in second k since the
	 * start, for k < nsec (grown as needed, at most TIMELINE_MAX) */
	uint32_t *ok_s, *refused_s;
	size_t nsec;
};

struct police {
	pthread_mutex_t mu;
	double t0;
	unsigned conns_max, per_conn_max;
	double rate, depth; /* tokens per second; bucket depth max(1, rate) */
	struct psrc *bucket[POLICE_BUCKETS];
	struct psrc **list; /* in order of first connection */
	size_t n, cap;
	uint64_t v_conns, v_per_conn, v_rate;
	const struct mx_opts *o; /* its --blocklist* */
	uint64_t blocklisted;
};

/* The refusal for a blocklisted ip: TEXT (or BLOCKLIST_TEXT) with each %s
 * replaced by the IP, and CRLF. */
static char *block_reply_for(const struct mx_opts *o, const char *ip)
{
	const char *text = o->blocklist_text ? o->blocklist_text : BLOCKLIST_TEXT;
	struct buf b = { 0 };
	for (const char *q = text; *q;) {
		const char *pc = strstr(q, "%s");
		size_t n = pc ? (size_t)(pc - q) : strlen(q);
		buf_add(&b, q, n);
		q += n;
		if (pc) {
			buf_adds(&b, ip);
			q += 2;
		}
	}
	buf_add(&b, "\r\n", 3); /* with its NUL */
	return b.p;
}

/* The source's entry (made on first sight); under p->mu. */
static struct psrc *police_src(struct police *p, const char *ip)
{
	size_t h = (size_t)hash_str(ip, strlen(ip)) % POLICE_BUCKETS;
	for (struct psrc *s = p->bucket[h]; s; s = s->next)
		if (!strcmp(s->ip, ip))
			return s;
	struct psrc *s = xcalloc(1, sizeof(*s));
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	s->tokens = p->depth; /* starts full */
	s->refill_s = now_mono_s();
	s->first_ms = s->last_ms = -1;
	for (unsigned i = 0; i < p->o->nblocklist; i++)
		if (!strcmp(p->o->blocklist[i], ip))
			s->block_reply = block_reply_for(p->o, ip);
	s->next = p->bucket[h];
	p->bucket[h] = s;
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 16;
		p->list = xrealloc(p->list, p->cap * sizeof(*p->list));
	}
	p->list[p->n++] = s;
	return s;
}

/* One more message accepted (or, refused, one more refusal) by the source in
 * the current second since the start, if within the first TIMELINE_MAX;
 * under p->mu. */
static void timeline_add(struct police *p, struct psrc *s, bool refused)
{
	double d = now_mono_s() - p->t0;
	size_t k = d > 0 ? (size_t)d : 0;
	if (k >= TIMELINE_MAX)
		return;
	if (k >= s->nsec) {
		size_t n = s->nsec ? s->nsec * 2 : 64;
		while (n <= k)
			n *= 2;
		if (n > TIMELINE_MAX)
			n = TIMELINE_MAX;
		s->ok_s = xrealloc(s->ok_s, n * sizeof(*s->ok_s));
		s->refused_s = xrealloc(s->refused_s, n * sizeof(*s->refused_s));
		memset(s->ok_s + s->nsec, 0, (n - s->nsec) * sizeof(*s->ok_s));
		memset(s->refused_s + s->nsec, 0, (n - s->nsec) * sizeof(*s->refused_s));
		s->nsec = n;
	}
	(refused ? s->refused_s : s->ok_s)[k]++;
}

/* A blocklist refusal sent to the source: counted; under p->mu. */
static void block_count(struct police *p, struct psrc *s)
{
	s->blocklisted++;
	p->blocklisted++;
	timeline_add(p, s, true);
}

/* The peer address of fd as text ("127.0.0.10"; an IPv4-mapped IPv6 address
 * as its IPv4 form). */
static void peer_ip(int fd, char *ip, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	snprintf(ip, len, "?");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
	if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
		inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], ip, (socklen_t)len);
		return;
	}
	sockaddr_text(&ss, false, ip, len);
}

/* A new connection: counted for its source; false, with the refusal in
 * pbuf, when the source is blocklisted at the banner or (a "conns"
 * violation) already has --police-conns connections open. */
static bool police_connect(struct police *p, struct mconn *c)
{
	char ip[INET6_ADDRSTRLEN];
	peer_ip(c->fd, ip, sizeof(ip));
	pthread_mutex_lock(&p->mu);
	struct psrc *s = police_src(p, ip);
	c->src = s;
	s->connections++;
	bool blocked = s->block_reply && p->o->blocklist_at == BA_BANNER;
	bool ok = !blocked && (!p->conns_max || s->cur < p->conns_max);
	if (ok) {
		c->src_held = true;
		if (++s->cur > s->max_concurrent)
			s->max_concurrent = s->cur;
	} else if (blocked) {
		block_count(p, s);
	} else {
		s->v_conns++;
		p->v_conns++;
		timeline_add(p, s, true);
	}
	pthread_mutex_unlock(&p->mu);
	if (blocked)
		buf_adds(&c->pbuf, s->block_reply);
	else if (!ok)
		buf_printf(&c->pbuf, "421 4.7.0 [TSS09] Too many concurrent connections from %s; "
		           "mockmx --police-conns\r\n", s->ip);
	return ok;
}

/* Whether the source of c is blocklisted at `at` (MAIL or RCPT); if so the
 * refusal is in pbuf and counted. */
static bool police_blocked(struct police *p, struct mconn *c, enum block_at at)
{
	struct psrc *s = c->src;
	if (!s->block_reply || p->o->blocklist_at != at)
		return false;
	pthread_mutex_lock(&p->mu);
	block_count(p, s);
	pthread_mutex_unlock(&p->mu);
	buf_adds(&c->pbuf, s->block_reply);
	return true;
}

/* The connection no longer counts as concurrent (QUIT said, or closing). */
static void police_release(struct police *p, struct mconn *c)
{
	if (!c->src_held)
		return;
	c->src_held = false;
	pthread_mutex_lock(&p->mu);
	c->src->cur--;
	pthread_mutex_unlock(&p->mu);
}

/* The EHLO/HELO name (the first word after the verb) among the source's
 * distinct names, the first POLICE_HELO_MAX of them; bytes outside
 * printable ASCII, '"' and '\\' are kept as '?'. */
static void police_helo(struct police *p, struct mconn *c, const char *line, size_t n)
{
	char name[POLICE_HELO_LEN];
	size_t i = 4, k = 0;
	while (i < n && line[i] == ' ')
		i++;
	for (; i < n && line[i] != ' ' && k + 1 < sizeof(name); i++) {
		unsigned char b = (unsigned char)line[i];
		name[k++] = b > 0x20 && b < 0x7f && b != '"' && b != '\\' ? (char)b : '?';
	}
	name[k] = 0;
	pthread_mutex_lock(&p->mu);
	struct psrc *s = c->src;
	unsigned j;
	for (j = 0; j < s->nhelo && strcmp(s->helo[j], name); j++)
		;
	if (j == s->nhelo && j < POLICE_HELO_MAX)
		memcpy(s->helo[s->nhelo++], name, k + 1);
	pthread_mutex_unlock(&p->mu);
}

/* A MAIL FROM about to be accepted: false, with the 421 in pbuf, when it
 * is one too many on this connection (--police-per-conn) or its source has
 * no token left (--police-rate). */
static bool police_mail(struct police *p, struct mconn *c)
{
	struct psrc *s = c->src;
	if (p->per_conn_max && c->nmail >= p->per_conn_max) {
		pthread_mutex_lock(&p->mu);
		s->v_per_conn++;
		p->v_per_conn++;
		timeline_add(p, s, true);
		pthread_mutex_unlock(&p->mu);
		buf_adds(&c->pbuf, "421 4.7.0 Too many messages on one connection (mockmx --police-per-conn)\r\n");
		return false;
	}
	pthread_mutex_lock(&p->mu);
	double now = now_mono_s();
	if (p->rate > 0) {
		s->tokens += (now - s->refill_s) * p->rate;
		if (s->tokens > p->depth)
			s->tokens = p->depth;
		s->refill_s = now;
		if (s->tokens < 1 - 1e-9) {
			s->v_rate++;
			p->v_rate++;
			timeline_add(p, s, true);
			pthread_mutex_unlock(&p->mu);
			buf_printf(&c->pbuf, "421 4.7.0 [TSS04] Messages from %s temporarily deferred due to "
			           "unexpected volume or user complaints (mockmx --police-rate)\r\n", s->ip);
			return false;
		}
		s->tokens -= 1;
	}
	c->nmail++;
	s->mails++;
	int64_t ms = (int64_t)((now - p->t0) * 1000);
	if (s->first_ms < 0)
		s->first_ms = ms;
	s->last_ms = ms;
	pthread_mutex_unlock(&p->mu);
	return true;
}

/* A message accepted from the source: counted, and in its timeline. */
static void police_message(struct police *p, struct mconn *c)
{
	pthread_mutex_lock(&p->mu);
	c->src->messages++;
	timeline_add(p, c->src, false);
	pthread_mutex_unlock(&p->mu);
}

static void txn_reset(struct mconn *c)
{
	c->have_mail = false;
	c->nrcpt = 0;
	c->sender.len = c->rcpts.len = c->body.len = 0;
	c->data_bytes = 0;
}

static void store_message(struct mx_thread *t, struct mconn *c)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%u-%llu.eml", t->o->store, t->index,
	         (unsigned long long)t->stored++);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		warnx_("mockmx: cannot store %s: %s", path, strerror(errno));
		return;
	}
	struct buf h = { 0 };
	buf_adds(&h, "X-Sender: <");
	buf_add(&h, c->sender.p, c->sender.len);
	buf_adds(&h, ">\n");
	buf_add(&h, c->rcpts.p, c->rcpts.len);
	bool ok = write(fd, h.p, h.len) == (ssize_t)h.len &&
	          write(fd, c->body.p, c->body.len) == (ssize_t)c->body.len;
	if (!ok)
		warnx_("mockmx: short write to %s", path);
	close(fd);
	buf_free(&h);
}

static void message_complete(struct mx_thread *t, struct mconn *c, bool bdat)
{
	int f = fault_for(t, F_DOT);
	if (c->data_bytes > t->o->size_limit) {
		buf_adds(&c->pbuf, "552 5.3.4 Error: message file too big\r\n");
		atomic_fetch_add(&t->st->rejected, 1);
	} else if (f) {
		reply_fault(c, f, "end of data");
		atomic_fetch_add(&t->st->rejected, 1);
	} else {
		atomic_fetch_add(&t->st->messages, 1);
		if (c->src)
			police_message(t->pol, c);
		atomic_fetch_add(&t->st->bdat, bdat);
		atomic_fetch_add(&t->st->recipients, c->nrcpt);
		atomic_fetch_add(&t->st->bytes, c->data_bytes);
		if (t->o->store)
			store_message(t, c);
		buf_adds(&c->pbuf, "250 2.0.0 Ok: queued as mockmx\r\n");
	}
	txn_reset(c);
}

/* Extracts the address between < and > after the colon of MAIL/RCPT. */
static bool path_arg(const char *line, size_t n, const char **a, size_t *alen)
{
	const char *lt = memchr(line, '<', n);
	if (!lt)
		return false;
	const char *gt = memchr(lt, '>', (size_t)(line + n - lt));
	if (!gt)
		return false;
	*a = lt + 1;
	*alen = (size_t)(gt - lt - 1);
	return true;
}

static void on_ehlo(struct mx_thread *t, struct mconn *c, const char *line, size_t n)
{
	int f;
	if (c->src)
		police_helo(t->pol, c, line, n);
	if ((f = fault_for(t, F_EHLO))) {
		reply_fault(c, f, "EHLO");
		return;
	}
	txn_reset(c);
	c->ehlo_seen = true;
	if (toupper((unsigned char)line[0]) == 'H') {
		buf_adds(&c->pbuf, "250 mockmx\r\n");
		return;
	}
	buf_adds(&c->pbuf, "250-mockmx\r\n");
	if (t->o->pipelining)
		buf_adds(&c->pbuf, "250-PIPELINING\r\n");
	if (t->o->chunking)
		buf_adds(&c->pbuf, "250-CHUNKING\r\n");
	if (t->tls_ctx && !c->tls)
		buf_adds(&c->pbuf, "250-STARTTLS\r\n");
	buf_printf(&c->pbuf, "250-SIZE %llu\r\n250-8BITMIME\r\n%s250 ENHANCEDSTATUSCODES\r\n",
	           (unsigned long long)t->o->size_limit, t->o->smtputf8 ? "250-SMTPUTF8\r\n" : "");
}

static void on_mail(struct mx_thread *t, struct mconn *c, const char *line, size_t n)
{
	int f;
	const char *a;
	size_t alen;
	if (c->have_mail) {
		buf_adds(&c->pbuf, "503 5.5.1 Error: nested MAIL command\r\n");
	} else if (c->src && police_blocked(t->pol, c, BA_MAIL)) {
		/* refused; the connection stays open */
	} else if (c->src && path_arg(line, n, &a, &alen) && !police_mail(t->pol, c)) {
		c->quit = true; /* the 421 is the last reply: the connection closes */
	} else if ((f = fault_for(t, F_MAIL))) {
		reply_fault(c, f, "MAIL");
	} else if (!path_arg(line, n, &a, &alen)) {
		buf_adds(&c->pbuf, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
	} else {
		c->have_mail = true;
		buf_add(&c->sender, a, alen);
		buf_adds(&c->pbuf, "250 2.1.0 Ok\r\n");
	}
}

static void on_rcpt(struct mx_thread *t, struct mconn *c, const char *line, size_t n)
{
	int f;
	const char *a;
	size_t alen;
	if (!c->have_mail) {
		buf_adds(&c->pbuf, "503 5.5.1 Error: need MAIL command\r\n");
	} else if (!path_arg(line, n, &a, &alen)) {
		buf_adds(&c->pbuf, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
	} else if (c->src && police_blocked(t->pol, c, BA_RCPT)) {
		/* refused: with no recipient, DATA and BDAT get 554 */
	} else if ((f = fault_for(t, F_RCPT))) {
		reply_fault(c, f, "RCPT");
	} else if (t->o->defer_rcpt && memmem(a, alen, t->o->defer_rcpt, strlen(t->o->defer_rcpt))) {
		buf_adds(&c->pbuf, "451 4.2.0 mockmx: this recipient is deferred (--defer-rcpt)\r\n");
	} else if (t->o->max_rcpt && c->nrcpt >= t->o->max_rcpt) {
		buf_adds(&c->pbuf, "452 4.5.3 Error: too many recipients\r\n");
	} else if (t->o->greylist && grey_first(t, a, alen)) {
		buf_adds(&c->pbuf, "451 4.7.1 mockmx: greylisted, try again later\r\n");
	} else {
		c->nrcpt++;
		if (t->o->store && c->nrcpt <= RCPT_STORE_MAX) {
			buf_adds(&c->rcpts, "X-Receiver: <");
			buf_add(&c->rcpts, a, alen);
			buf_adds(&c->rcpts, ">\n");
		}
		buf_adds(&c->pbuf, "250 2.1.5 Ok\r\n");
	}
}

/* RFC 3207: the 220, then TLS from the next byte on; refused inside TLS
 * (554), inside a mail transaction or before EHLO (503), with an argument
 * (501). */
static void on_starttls(struct mx_thread *t, struct mconn *c, size_t n)
{
	if (n != 8) {
		buf_adds(&c->pbuf, "501 5.5.4 Syntax: STARTTLS\r\n");
	} else if (c->tls) {
		buf_adds(&c->pbuf, "554 5.5.1 Error: TLS already active\r\n");
	} else if (c->have_mail) {
		buf_adds(&c->pbuf, "503 5.5.1 Error: MAIL transaction in progress\r\n");
	} else if (!c->ehlo_seen) {
		buf_adds(&c->pbuf, "503 5.5.1 Error: send EHLO first\r\n");
	} else if (!(c->tls = tls_server_new(t->tls_ctx))) {
		buf_adds(&c->pbuf, "454 4.7.0 mockmx: TLS not available now\r\n");
	} else {
		buf_adds(&c->pbuf, t->o->tls_fault == TF_INJECT ? "220 ready\r\n250 injected\r\n"
		                                               : "220 2.0.0 ready to start TLS\r\n");
		c->starttls_now = true;
		c->ehlo_seen = false;
	}
}

static void on_command(struct mx_thread *t, struct mconn *c, const char *line, size_t n)
{
	int f;
	if (prefix_ci(line, n, "EHLO") || prefix_ci(line, n, "HELO")) {
		on_ehlo(t, c, line, n);
	} else if (prefix_ci(line, n, "MAIL FROM:")) {
		on_mail(t, c, line, n);
	} else if (prefix_ci(line, n, "RCPT TO:")) {
		on_rcpt(t, c, line, n);
	} else if (prefix_ci(line, n, "DATA") == n && n == 4) {
		if (!c->have_mail || c->nrcpt == 0) {
			buf_adds(&c->pbuf, "554 5.5.1 Error: no valid recipients\r\n");
			txn_reset(c);
		} else if ((f = fault_for(t, F_DATA))) {
			reply_fault(c, f, "DATA");
			txn_reset(c);
		} else {
			buf_adds(&c->pbuf, "354 End data with <CR><LF>.<CR><LF>\r\n");
			c->state = M_DATA;
			c->drop_in_data = rnd(t) < t->o->disconnect_data;
		}
	} else if (prefix_ci(line, n, "BDAT ")) {
		char *end;
		unsigned long long len = strtoull(line + 5, &end, 10);
		c->bdat_left = len;
		c->bdat_last = prefix_ci(end, (size_t)(line + n - end), " LAST") != 0;
		c->bdat_fail = !c->have_mail || c->nrcpt == 0;
		c->state = M_BDAT;
		c->drop_in_data = rnd(t) < t->o->disconnect_data;
	} else if (t->tls_ctx && prefix_ci(line, n, "STARTTLS")) {
		on_starttls(t, c, n);
	} else if (prefix_ci(line, n, "RSET")) {
		txn_reset(c);
		buf_adds(&c->pbuf, "250 2.0.0 Ok\r\n");
	} else if (prefix_ci(line, n, "NOOP")) {
		buf_adds(&c->pbuf, "250 2.0.0 Ok\r\n");
	} else if (prefix_ci(line, n, "QUIT")) {
		buf_adds(&c->pbuf, "221 2.0.0 Bye\r\n");
		c->quit = true;
		if (c->src) /* done: its connection slot is free before it reads the 221 */
			police_release(t->pol, c);
	} else {
		buf_adds(&c->pbuf, "502 5.5.2 Error: command not recognized\r\n");
	}
}

/* One DATA line (with its line ending). Returns true at the final dot. */
static bool on_data_line(struct mx_thread *t, struct mconn *c, const char *line, size_t n)
{
	if ((n == 3 && !memcmp(line, ".\r\n", 3)) || (n == 2 && !memcmp(line, ".\n", 2)))
		return true;
	if (line[0] == '.') {
		line++;
		n--;
	}
	c->data_bytes += n;
	if (t->o->store)
		buf_add(&c->body, line, n);
	return false;
}

/* Consumes what is in c->in; returns false when the connection must drop. */
static bool process(struct mx_thread *t, struct mconn *c)
{
	size_t off = 0;
	while (off < c->inlen && !c->quit && !c->starttls_now) {
		char *p = c->in + off;
		size_t avail = c->inlen - off;
		if (c->state == M_BDAT) {
			if (c->drop_in_data)
				return false;
			size_t take = avail < c->bdat_left ? avail : (size_t)c->bdat_left;
			c->data_bytes += take;
			if (t->o->store && !c->bdat_fail)
				buf_add(&c->body, p, take);
			c->bdat_left -= take;
			off += take;
			if (c->bdat_left)
				break;
			c->state = M_CMD;
			if (c->bdat_fail) {
				buf_adds(&c->pbuf, "554 5.5.1 Error: no valid recipients\r\n");
				txn_reset(c);
			} else if (c->bdat_last) {
				message_complete(t, c, true);
			} else {
				buf_adds(&c->pbuf, "250 2.0.0 chunk ok\r\n");
			}
			continue;
		}
		char *nl = memchr(p, '\n', avail);
		if (!nl) {
			if (avail >= INBUF_MAX / 2)
				return false; /* a line without end: drop the client */
			break;
		}
		size_t n = (size_t)(nl - p) + 1;
		off += n;
		if (c->state == M_DATA) {
			if (c->drop_in_data)
				return false;
			if (on_data_line(t, c, p, n)) {
				c->state = M_CMD;
				message_complete(t, c, false);
			}
			continue;
		}
		size_t ln = n - 1;
		if (ln && p[ln - 1] == '\r')
			ln--;
		on_command(t, c, p, ln);
	}
	if (c->starttls_now) { /* what came after STARTTLS was sent in clear: gone */
		c->starttls_now = false;
		off = c->inlen;
	}
	if (off) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
	return true;
}

static uint64_t mud(struct mx_thread *t, struct mconn *c, unsigned op)
{
	return ring_ud(op, (uint32_t)(c - t->conns), c->gen);
}

static void mx_recv(struct mx_thread *t, struct mconn *c)
{
	if (c->recv_armed || c->state == M_CLOSING)
		return;
	if (c->incap - c->inlen < 4096) {
		c->incap = c->incap ? c->incap * 2 : 16384;
		c->in = xrealloc(c->in, c->incap);
	}
	ring_recv(t->ring, c->fd, c->in + c->inlen, c->incap - c->inlen, mud(t, c, MOP_RECV));
	c->ops++;
	c->recv_armed = true;
}

static void mx_close(struct mx_thread *t, struct mconn *c)
{
	if (c->state != M_CLOSING) {
		c->state = M_CLOSING;
		if (c->src)
			police_release(t->pol, c);
		tls_free(c->tls); /* nothing touches it once closing */
		c->tls = NULL;
		if (c->ops) {
			ring_cancel_fd(t->ring, c->fd, mud(t, c, MOP_CANCEL));
			c->ops++;
		}
	}
	if (c->ops == 0 && c->fd >= 0) {
		ring_close(t->ring, c->fd, mud(t, c, MOP_CLOSE));
		c->fd = -1;
		c->ops++;
	}
}

/* Whether anything waits to go out: replies, or TLS handshake records. */
static bool mx_has_output(const struct mconn *c)
{
	return c->pbuf.len || (c->tls && tls_out_pending(c->tls));
}

/* Encrypts the collected replies (records of at most TLS_RECORD_MAX);
 * after QUIT's reply, a close_notify. False when wolfSSL fails. */
static bool mx_encrypt(struct mconn *c)
{
	for (size_t off = 0; off < c->pbuf.len;) {
		size_t n = c->pbuf.len - off < TLS_RECORD_MAX ? c->pbuf.len - off : TLS_RECORD_MAX;
		if (tls_write(c->tls, c->pbuf.p + off, n) != TLS_OK)
			return false;
		off += n;
	}
	c->pbuf.len = 0;
	if (c->quit)
		tls_close_notify(c->tls);
	return true;
}

/* Puts the collected replies on the wire (pbuf becomes wbuf). Under TLS:
 * what was written before the handshake ended goes in clear (the 220 to
 * STARTTLS, --tls-fault garbage), then the ciphertext. */
static void mx_send_pending(struct mx_thread *t, struct mconn *c)
{
	if (c->tls && (c->tls_up || c->pbuf.len == 0)) {
		if (c->tls_up && !mx_encrypt(c)) {
			atomic_fetch_add(&t->st->tls_failures, 1);
			mx_close(t, c);
			return;
		}
		c->wbuf.len = 0;
		tls_out_take(c->tls, &c->wbuf);
		if (c->wbuf.len == 0)
			return;
	} else {
		buf_swap_out(&c->wbuf, &c->pbuf);
	}
	c->woff = 0;
	ring_send(t->ring, c->fd, c->wbuf.p, c->wbuf.len, mud(t, c, MOP_SEND));
	c->ops++;
	c->sending = true;
}

static void mx_flush(struct mx_thread *t, struct mconn *c)
{
	if (c->sending || !mx_has_output(c) || c->state == M_CLOSING || c->slow_pending)
		return;
	if (t->o->slow_ms > 0) {
		/* Slow server: hold the replies for slow_ms, then send. */
		c->slow_pending = true;
		c->slow_ts.tv_sec = t->o->slow_ms / 1000;
		c->slow_ts.tv_nsec = (long long)(t->o->slow_ms % 1000) * 1000000;
		ring_timeout(t->ring, &c->slow_ts, mud(t, c, MOP_SLOW));
		c->ops++;
		return;
	}
	mx_send_pending(t, c);
}

static void mx_accept(struct mx_thread *t, int fd)
{
	unsigned i;
	for (i = 0; i < t->nconns && t->conns[i].used; i++)
		;
	if (i == t->nconns) {
		unsigned n = t->nconns ? t->nconns * 2 : 64;
		if (n > (1u << 20)) {
			close(fd);
			return;
		}
		t->conns = xrealloc(t->conns, n * sizeof(*t->conns));
		memset(t->conns + t->nconns, 0, (n - t->nconns) * sizeof(*t->conns));
		t->nconns = n;
	}
	struct mconn *c = &t->conns[i];
	uint32_t gen = c->gen + 1;
	char *in = c->in;
	size_t incap = c->incap;
	struct buf w = c->wbuf, p = c->pbuf, s = c->sender, r = c->rcpts, b = c->body;
	memset(c, 0, sizeof(*c));
	c->in = in;
	c->incap = incap;
	w.len = p.len = s.len = r.len = b.len = 0;
	c->wbuf = w; c->pbuf = p; c->sender = s; c->rcpts = r; c->body = b;
	c->gen = gen;
	c->used = true;
	c->fd = fd;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	atomic_fetch_add(&t->st->connections, 1);
	bool police_ok = !t->pol || police_connect(t->pol, c); /* false: its refusal in pbuf */
	if (!police_ok && t->o->silent) {
		c->pbuf.len = 0;
		mx_close(t, c);
		return;
	}
	if (!t->o->silent) {
		int f = police_ok ? fault_for(t, F_CONNECT) : 0;
		if (!police_ok) {
			c->quit = true;
		} else if (f) {
			reply_fault(c, f, "connect");
			c->quit = true;
		} else {
			buf_adds(&c->pbuf, "220 mockmx ESMTP ready\r\n");
		}
		mx_flush(t, c);
	}
	mx_recv(t, c);
}

/* A handshake or a record failed: the alert wolfSSL wrote goes out before
 * the close (then nothing more is read), or the connection drops now. */
static bool mx_tls_failed(struct mx_thread *t, struct mconn *c)
{
	atomic_fetch_add(&t->st->tls_failures, 1);
	c->pbuf.len = 0;
	if (tls_out_pending(c->tls) == 0)
		return false;
	c->quit = true;
	return true;
}

/* Ciphertext came at the tail of c->in (res bytes): into the TLS input,
 * the handshake advanced, and what it decrypts to appended to c->in in
 * its place. False when the connection must drop. */
static bool mx_tls_received(struct mx_thread *t, struct mconn *c, size_t res)
{
	const char *ct = c->in + c->inlen;
	if (!c->tls_hello_seen) {
		c->tls_hello_seen = true;
		if (t->o->tls_fault == TF_CLOSE_AFTER_HELLO)
			return false;
		if (t->o->tls_fault == TF_GARBAGE) { /* in clear: not a ServerHello */
			buf_adds(&c->pbuf, "mockmx: this is not TLS, just --tls-fault garbage\r\n");
			c->quit = true;
			return true;
		}
	}
	for (size_t off = 0; off < res;) {
		size_t cap;
		char *sp = tls_in_space(c->tls, &cap);
		size_t n = res - off < cap ? res - off : cap;
		memcpy(sp, ct + off, n);
		tls_in_commit(c->tls, n);
		off += n;
	}
	if (!c->tls_up) {
		int rc = tls_handshake(c->tls);
		if (rc == TLS_AGAIN)
			return true;
		if (rc != TLS_OK)
			return mx_tls_failed(t, c);
		c->tls_up = true; /* RFC 3207: forget everything said in clear */
		txn_reset(c);
		atomic_fetch_add(&t->st->tls_connections, 1);
		if (tls_resumed(c->tls))
			atomic_fetch_add(&t->st->tls_resumed, 1);
	}
	for (;;) {
		if (c->incap - c->inlen < 4096) {
			c->incap *= 2;
			c->in = xrealloc(c->in, c->incap);
		}
		long n = tls_read(c->tls, c->in + c->inlen, c->incap - c->inlen);
		if (n == 0)
			return true;
		if (n == TLS_CLOSED)
			return false;
		if (n < 0)
			return mx_tls_failed(t, c);
		c->inlen += (size_t)n;
	}
}

/* Bytes came in (res). False when the connection is closed (or closing). */
static bool mx_received(struct mx_thread *t, struct mconn *c, int res)
{
	if (res <= 0) {
		mx_close(t, c);
		return false;
	}
	if (c->tls) {
		if (c->quit) /* --tls-fault garbage: nothing more is read */
			return true;
		if (!mx_tls_received(t, c, (size_t)res)) {
			mx_close(t, c);
			return false;
		}
	} else {
		c->inlen += (size_t)res;
	}
	if (t->o->silent) {
		c->inlen = 0;
	} else if (!process(t, c)) {
		atomic_fetch_add(&t->st->disconnects, 1);
		mx_close(t, c);
		return false;
	}
	if (!c->quit)
		mx_recv(t, c);
	return true;
}

/* A send completed (res bytes). False when nothing more is to be done now
 * (the rest is on its way, or the connection closed). */
static bool mx_sent(struct mx_thread *t, struct mconn *c, int res)
{
	if (res < 0) {
		mx_close(t, c);
		return false;
	}
	c->woff += (size_t)res;
	if (c->woff < c->wbuf.len) {
		ring_send(t->ring, c->fd, c->wbuf.p + c->woff, c->wbuf.len - c->woff, mud(t, c, MOP_SEND));
		c->ops++;
		c->sending = true;
		return false;
	}
	c->wbuf.len = 0;
	if (c->quit && !mx_has_output(c)) {
		mx_close(t, c);
		return false;
	}
	return true;
}

static void mx_cqe(struct mx_thread *t, const struct ring_cqe *e)
{
	unsigned op = ring_ud_op(e->user_data);
	if (op == MOP_ACCEPT) {
		if (e->res >= 0)
			mx_accept(t, e->res);
		if (!ring_more(e)) /* multishot ended: re-arm it */
			ring_accept_multishot(t->ring, t->lfd[ring_ud_slot(e->user_data)], e->user_data);
		return;
	}
	uint32_t slot = ring_ud_slot(e->user_data);
	if (slot >= t->nconns)
		return;
	struct mconn *c = &t->conns[slot];
	if (!c->used || c->gen != ring_ud_gen(e->user_data))
		return;
	c->ops--;
	if (op == MOP_CLOSE) {
		c->used = false;
		return;
	}
	if (op == MOP_RECV)
		c->recv_armed = false;
	if (op == MOP_SEND)
		c->sending = false;
	if (op == MOP_SLOW)
		c->slow_pending = false;
	if (c->state == M_CLOSING) {
		mx_close(t, c);
		return;
	}
	switch (op) {
	case MOP_RECV:
		if (!mx_received(t, c, e->res))
			return;
		break;
	case MOP_SEND:
		if (!mx_sent(t, c, e->res))
			return;
		break;
	case MOP_SLOW:
		break;
	}
	if (op == MOP_SLOW && mx_has_output(c) && !c->sending) {
		mx_send_pending(t, c); /* the delay is over */
		return;
	}
	mx_flush(t, c);
}

static int listen_on(const struct sockaddr_storage *a, socklen_t len, bool reuseport)
{
	int fd = socket(a->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal("mockmx: socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)a, len) != 0)
		fatal("mockmx: cannot listen: bind: %s", strerror(errno));
	if (listen(fd, 4096) != 0)
		fatal("mockmx: listen: %s", strerror(errno));
	return fd;
}

static void *mx_thread_main(void *arg)
{
	struct mx_thread *t = arg;
	t->ring = ring_new(1024);
	for (unsigned i = 0; i < t->o->nlisten; i++)
		ring_accept_multishot(t->ring, t->lfd[i], ring_ud(MOP_ACCEPT, i, 0));
	struct ring_cqe cqes[256];
	double end = t->o->max_time > 0 ? now_mono_s() + t->o->max_time : 0;
	while (!mx_stop && (end == 0 || now_mono_s() < end)) {
		ring_submit_wait(t->ring, 100);
		unsigned n;
		while ((n = ring_reap(t->ring, cqes, 256)) > 0)
			for (unsigned i = 0; i < n; i++)
				mx_cqe(t, &cqes[i]);
	}
	mx_stop = 1;
	for (unsigned i = 0; i < t->nconns; i++) {
		struct mconn *c = &t->conns[i];
		if (c->used && c->fd >= 0)
			close(c->fd);
		tls_free(c->tls);
		free(c->in);
		buf_free(&c->wbuf);
		buf_free(&c->pbuf);
		buf_free(&c->sender);
		buf_free(&c->rcpts);
		buf_free(&c->body);
	}
	free(t->conns);
	free(t->grey);
	if (t->tls_ctx) {
		tls_ctx_free(t->tls_ctx);
		tls_thread_done();
	}
	ring_free(t->ring);
	return NULL;
}

static void parse_listen(struct mx_opts *o, const char *spec)
{
	if (o->nlisten == MAX_LISTEN)
		fatal("mockmx: at most %d --listen", MAX_LISTEN);
	const char *colon = strrchr(spec, ':');
	long port;
	if (!colon || !parse_uint(colon + 1, 1, 65535, &port))
		fatal("mockmx: --listen %s: expected ADDR:PORT", spec);
	char host[64];
	size_t hl = (size_t)(colon - spec);
	if (hl >= sizeof(host))
		fatal("mockmx: --listen %s: bad address", spec);
	memcpy(host, spec, hl);
	host[hl] = 0;
	char *h = host;
	if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
		h[hl - 1] = 0;
		h++;
	}
	struct sockaddr_storage *ss = &o->listen[o->nlisten];
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
		if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
			fatal("mockmx: --listen %s: only loopback addresses (127.0.0.0/8, ::1)", spec);
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		o->listen_len[o->nlisten] = sizeof(*a4);
	} else if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
			fatal("mockmx: --listen %s: only loopback addresses (127.0.0.0/8, ::1)", spec);
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		o->listen_len[o->nlisten] = sizeof(*a6);
	} else {
		fatal("mockmx: --listen %s: not a numeric address", spec);
	}
	o->nlisten++;
}

static void parse_fault(struct mx_opts *o, const char *spec)
{
	char cmd[16];
	int code;
	double prob;
	if (o->nfaults == MAX_FAULTS)
		fatal("mockmx: at most %d --fail", MAX_FAULTS);
	if (sscanf(spec, "%15[a-z]:%d:%lf", cmd, &code, &prob) != 3 || code < 400 || code > 599 ||
	    prob < 0 || prob > 1)
		fatal("mockmx: --fail %s: expected CMD:CODE:PROBABILITY, e.g. rcpt:451:0.05", spec);
	int k = -1;
	for (int i = 0; i < F_NCMDS; i++)
		if (!strcmp(cmd, fcmd_names[i]))
			k = i;
	if (!strcmp(cmd, "helo"))
		k = F_EHLO;
	if (k < 0)
		fatal("mockmx: --fail %s: CMD is one of connect, ehlo, mail, rcpt, data, dot", spec);
	o->faults[o->nfaults++] = (struct fault){ k, code, prob };
}

static void mx_usage(FILE *f)
{
	fputs("usage: sluice mockmx --listen ADDR:PORT [--listen ...] [options]\n"
	      "A fake MX for tests and benchmarks (loopback addresses only).\n\n"
	      "  --listen ADDR:PORT        address to accept SMTP on (repeatable)\n"
	      "  --threads N               io_uring threads (default 1)\n"
	      "  --store DIR               write each accepted message to DIR (with envelope)\n"
	      "  --fail CMD:CODE:P         answer CMD with CODE with probability P; CMD is\n"
	      "                            connect, ehlo, mail, rcpt, data or dot (repeatable)\n"
	      "  --greylist                first RCPT of each address gets 451 4.7.1\n"
	      "  --disconnect-data P       drop the connection inside DATA/BDAT with probability P\n"
	      "  --slow MS                 hold every batch of replies for MS milliseconds\n"
	      "  --silent                  accept connections and never answer\n"
	      "  --no-pipelining, --no-chunking, --no-smtputf8   do not offer these\n"
	      "  --max-rcpt N              452 4.5.3 (too many recipients) past N per transaction\n"
	      "  --defer-rcpt TEXT         451 4.2.0 for every recipient containing TEXT\n"
	      "  --size-limit BYTES        advertise SIZE BYTES; larger messages get 552 5.3.4\n"
	      "  --max-time SECONDS        exit after this long\n"
	      "  --stats FILE              write the counters as JSON to FILE at exit\n"
	      "                            (\"bdat\": messages that came by BDAT LAST)\n"
	      "  --seed N                  seed for the fault dice\n"
	      "  --tls-cert FILE --tls-key FILE   offer STARTTLS with this certificate chain and\n"
	      "                            key (PEM); counted as tls_connections, tls_resumed\n"
	      "                            (handshakes done, of which resumed), tls_failures\n"
	      "  --tls-fault F             after STARTTLS: close-after-hello (close when the\n"
	      "                            ClientHello comes), garbage (answer it with text, not\n"
	      "                            TLS), inject (\"220 ready\" and \"250 injected\" in one write)\n"
	      "  --tls-no-resume           no session cache, no tickets: every handshake is full\n"
	      "Policing per client source IP (the peer address), like a mailbox provider,\n"
	      "shared by all threads; any of these also adds \"police\" and \"sources\" to\n"
	      "the JSON and a line per source on standard error at exit:\n"
	      "  --police-conns N          at most N concurrent connections per source IP; the\n"
	      "                            next is answered 421 4.7.0 [TSS09] at greeting\n"
	      "  --police-per-conn N       at most N MAIL FROM per connection; the next gets\n"
	      "                            421 4.7.0 and the connection closes\n"
	      "  --police-rate R           MAIL FROM per second per source IP (also R/s, R/m,\n"
	      "                            R/h): a token bucket of depth max(1, R), full at the\n"
	      "                            start; a MAIL without a token gets 421 4.7.0 [TSS04]\n"
	      "                            and the connection closes\n"
	      "A provider's blocklist (adds \"police\" and \"sources\" to the JSON too):\n"
	      "  --blocklist IP[,IP...]    client source IPs listed (repeatable): they are\n"
	      "                            refused, and no message of theirs is accepted\n"
	      "  --blocklist-at WHERE      banner (the greeting, then close), mail (every MAIL\n"
	      "                            FROM) or rcpt (every RCPT TO; the default)\n"
	      "  --blocklist-text TEXT     the refusal, code included (4xx or 5xx, one line);\n"
	      "                            each %s becomes the client IP; the default, one line:\n"
	      "                            554 5.7.1 Service unavailable; Client host [%s]\n"
	      "                            blocked using zen.spamhaus.org;\n"
	      "                            https://www.spamhaus.org/query/ip/%s\n"
	      "With policing or a blocklist, each source in \"sources\" has \"blocklisted\"\n"
	      "(refusals sent), \"per_second\" (messages accepted in each whole second since\n"
	      "the start) and \"refused_per_second\" (421s and blocklist refusals), both for\n"
	      "the first 3600 seconds only; \"blocklisted\" at the top is the total.\n"
	      "The counters are printed as JSON on standard output at exit (SIGTERM/SIGINT).\n", f);
}

/* --police-rate R, R/s, R/m or R/h: messages per second, positive. */
static double parse_police_rate(const char *spec)
{
	char *end;
	double r = strtod(spec, &end);
	double per = !strcmp(end, "") || !strcmp(end, "/s") ? 1 : !strcmp(end, "/m") ? 60
	           : !strcmp(end, "/h") ? 3600 : 0;
	if (end == spec || per == 0 || !(r > 0) || r > 1e9)
		fatal("mockmx: --police-rate %s: expected a positive R, R/s, R/m or R/h", spec);
	return r / per;
}

/* --blocklist IP[,IP...]: each numeric address appended to o->blocklist in
 * the form peer_ip gives (an IPv4-mapped IPv6 address as IPv4). */
static void parse_blocklist(struct mx_opts *o, const char *spec)
{
	const char *q = spec;
	for (;;) {
		size_t n = strcspn(q, ",");
		char ip[INET6_ADDRSTRLEN];
		struct in_addr a4;
		struct in6_addr a6;
		if (n == 0 || n >= sizeof(ip))
			fatal("mockmx: --blocklist %s: expected IP[,IP...]", spec);
		memcpy(ip, q, n);
		ip[n] = 0;
		o->blocklist = xrealloc(o->blocklist, (o->nblocklist + 1) * sizeof(*o->blocklist));
		char *out = o->blocklist[o->nblocklist++];
		if (inet_pton(AF_INET, ip, &a4) == 1)
			inet_ntop(AF_INET, &a4, out, INET6_ADDRSTRLEN);
		else if (inet_pton(AF_INET6, ip, &a6) != 1)
			fatal("mockmx: --blocklist %s: '%s' is not a numeric IP address", spec, ip);
		else if (IN6_IS_ADDR_V4MAPPED(&a6))
			inet_ntop(AF_INET, &a6.s6_addr[12], out, INET6_ADDRSTRLEN);
		else
			inet_ntop(AF_INET6, &a6, out, INET6_ADDRSTRLEN);
		if (!q[n])
			return;
		q += n + 1;
	}
}

/* --blocklist-text: one line starting with a 4xx or 5xx code and a space (or
 * nothing more), printable, at most BLOCKLIST_TEXT_MAX bytes. */
static void check_blocklist_text(const char *text)
{
	bool ok = strlen(text) <= BLOCKLIST_TEXT_MAX && (text[0] == '4' || text[0] == '5') &&
	          isdigit((unsigned char)text[1]) && isdigit((unsigned char)text[2]) &&
	          (text[3] == ' ' || text[3] == 0);
	for (const char *q = text; ok && *q; q++)
		ok = (unsigned char)*q >= 0x20 && *q != 0x7f;
	if (!ok)
		fatal("mockmx: --blocklist-text: one printable line of at most %d bytes starting with "
		      "a 4xx or 5xx code, e.g. \"550 5.7.1 %%s is listed\"", BLOCKLIST_TEXT_MAX);
}

static double cpu_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Command-line options into o; returns -1 to go on, else the exit code. */
static int mx_parse_args(struct mx_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, 0, 'l' }, { "threads", required_argument, 0, 't' },
		{ "store", required_argument, 0, 's' }, { "fail", required_argument, 0, 'f' },
		{ "greylist", no_argument, 0, 'g' }, { "disconnect-data", required_argument, 0, 'd' },
		{ "slow", required_argument, 0, 'w' }, { "silent", no_argument, 0, 'q' },
		{ "no-pipelining", no_argument, 0, 'P' }, { "no-chunking", no_argument, 0, 'C' },
		{ "max-time", required_argument, 0, 'm' }, { "stats", required_argument, 0, 'S' },
		{ "seed", required_argument, 0, 'r' }, { "help", no_argument, 0, 'h' },
		{ "max-rcpt", required_argument, 0, 'R' }, { "size-limit", required_argument, 0, 'Z' },
		{ "no-smtputf8", no_argument, 0, 'U' }, { "defer-rcpt", required_argument, 0, 'D' },
		{ "tls-cert", required_argument, 0, 'c' }, { "tls-key", required_argument, 0, 'k' },
		{ "tls-fault", required_argument, 0, 'F' }, { "tls-no-resume", no_argument, 0, 'N' },
		{ "police-conns", required_argument, 0, 'x' }, { "police-per-conn", required_argument, 0, 'y' },
		{ "police-rate", required_argument, 0, 'z' }, { "blocklist", required_argument, 0, 'b' },
		{ "blocklist-at", required_argument, 0, 'a' }, { "blocklist-text", required_argument, 0, 'T' },
		{ 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->pipelining = o->chunking = o->smtputf8 = true;
	o->size_limit = 104857600;
	o->seed = 12345;
	int c;
	long v;
	bool blocklist_opts = false; /* --blocklist-at or --blocklist-text given */
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': parse_listen(o, optarg); break;
		case 't':
			if (!parse_uint(optarg, 1, 256, &v))
				fatal("mockmx: --threads 1..256");
			o->threads = (unsigned)v;
			break;
		case 's': o->store = optarg; break;
		case 'f': parse_fault(o, optarg); break;
		case 'g': o->greylist = true; break;
		case 'd': o->disconnect_data = strtod(optarg, NULL); break;
		case 'w':
			if (!parse_uint(optarg, 0, 600000, &v))
				fatal("mockmx: --slow MS (0..600000)");
			o->slow_ms = (int)v;
			break;
		case 'q': o->silent = true; break;
		case 'P': o->pipelining = false; break;
		case 'C': o->chunking = false; break;
		case 'm': o->max_time = strtod(optarg, NULL); break;
		case 'S': o->stats_path = optarg; break;
		case 'r': o->seed = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'R':
			if (!parse_uint(optarg, 1, 100000, &v))
				fatal("mockmx: --max-rcpt 1..100000");
			o->max_rcpt = (unsigned)v;
			break;
		case 'Z':
			if (!parse_uint(optarg, 1, 1L << 40, &v))
				fatal("mockmx: --size-limit BYTES");
			o->size_limit = (uint64_t)v;
			break;
		case 'U': o->smtputf8 = false; break;
		case 'D': o->defer_rcpt = optarg; break;
		case 'c': o->tls_cert = optarg; break;
		case 'N': o->tls_no_resume = true; break;
		case 'k': o->tls_key = optarg; break;
		case 'F': {
			unsigned k;
			for (k = 1; k < sizeof(tls_fault_names) / sizeof(*tls_fault_names); k++)
				if (!strcmp(optarg, tls_fault_names[k]))
					break;
			if (k == sizeof(tls_fault_names) / sizeof(*tls_fault_names))
				fatal("mockmx: --tls-fault is close-after-hello, garbage or inject");
			o->tls_fault = (enum tls_fault)k;
			break;
		}
		case 'x':
			if (!parse_uint(optarg, 1, 1000000, &v))
				fatal("mockmx: --police-conns 1..1000000");
			o->police_conns = (unsigned)v;
			break;
		case 'y':
			if (!parse_uint(optarg, 1, 1000000, &v))
				fatal("mockmx: --police-per-conn 1..1000000");
			o->police_per_conn = (unsigned)v;
			break;
		case 'z': o->police_rate = parse_police_rate(optarg); break;
		case 'b': parse_blocklist(o, optarg); break;
		case 'a': {
			unsigned k;
			for (k = 0; k < sizeof(block_at_names) / sizeof(*block_at_names); k++)
				if (!strcmp(optarg, block_at_names[k]))
					break;
			if (k == sizeof(block_at_names) / sizeof(*block_at_names))
				fatal("mockmx: --blocklist-at is banner, mail or rcpt");
			o->blocklist_at = (enum block_at)k;
			blocklist_opts = true;
			break;
		}
		case 'T':
			check_blocklist_text(optarg);
			o->blocklist_text = optarg;
			blocklist_opts = true;
			break;
		case 'h': mx_usage(stdout); return 0;
		default: mx_usage(stderr); return 2;
		}
	}
	if (optind < argc)
		fatal("mockmx: unexpected argument '%s'", argv[optind]);
	if (o->nlisten == 0)
		fatal("mockmx: give at least one --listen ADDR:PORT (see --help)");
	if (!o->tls_cert != !o->tls_key)
		fatal("mockmx: --tls-cert and --tls-key go together");
	if ((o->tls_fault || o->tls_no_resume) && !o->tls_cert)
		fatal("mockmx: --tls-fault and --tls-no-resume need --tls-cert and --tls-key");
	if (blocklist_opts && !o->nblocklist)
		fatal("mockmx: --blocklist-at and --blocklist-text need --blocklist");
	if (o->store && mkdir(o->store, 0755) != 0 && errno != EEXIST)
		fatal("mockmx: cannot create %s: %s", o->store, strerror(errno));
	return -1;
}

/* The source's timeline as JSON members ",\"per_second\":[...],
 * \"refused_per_second\":[...]", nsec seconds each (zeros where nothing
 * happened). */
static void timeline_report(const struct psrc *s, size_t nsec, struct buf *j)
{
	for (int refused = 0; refused < 2; refused++) {
		const uint32_t *v = refused ? s->refused_s : s->ok_s;
		buf_adds(j, refused ? ",\"refused_per_second\":[" : ",\"per_second\":[");
		for (size_t k = 0; k < nsec; k++)
			buf_printf(j, "%s%u", k ? "," : "", k < s->nsec ? v[k] : 0);
		buf_adds(j, "]");
	}
}

/* --police-* and --blocklist: the totals and limits, then every source, as
 * JSON members (",\"police\":{...},\"blocklisted\":N,\"sources\":{...}"),
 * each timeline as long as the run (at most TIMELINE_MAX seconds); a line
 * per source on stderr. */
static void police_report(struct police *p, struct buf *j)
{
	pthread_mutex_lock(&p->mu);
	double secs = now_mono_s() - p->t0;
	size_t nsec = secs > 0 ? (size_t)secs + 1 : 1;
	if (nsec > TIMELINE_MAX)
		nsec = TIMELINE_MAX;
	buf_printf(j, ",\"police\":{\"conns\":%llu,\"per_conn\":%llu,\"rate\":%llu,"
	           "\"limits\":{\"conns\":%u,\"per_conn\":%u,\"rate\":%.6g}},\"blocklisted\":%llu,"
	           "\"sources\":{", (unsigned long long)p->v_conns, (unsigned long long)p->v_per_conn,
	           (unsigned long long)p->v_rate, p->conns_max, p->per_conn_max, p->rate,
	           (unsigned long long)p->blocklisted);
	fprintf(stderr, "mockmx: police: %zu source%s; violations conns %llu, per_conn %llu, rate %llu "
	        "(limits: conns %u, per-conn %u, rate %.6g/s; 0 = none)\n", p->n, p->n == 1 ? "" : "s",
	        (unsigned long long)p->v_conns, (unsigned long long)p->v_per_conn,
	        (unsigned long long)p->v_rate, p->conns_max, p->per_conn_max, p->rate);
	for (size_t i = 0; i < p->n; i++) {
		const struct psrc *s = p->list[i];
		buf_printf(j, "%s\"%s\":{\"connections\":%llu,\"mails\":%llu,\"messages\":%llu,"
		           "\"max_concurrent\":%u,\"violations\":{\"conns\":%llu,\"per_conn\":%llu,"
		           "\"rate\":%llu},\"helo\":[", i ? "," : "", s->ip,
		           (unsigned long long)s->connections, (unsigned long long)s->mails,
		           (unsigned long long)s->messages, s->max_concurrent,
		           (unsigned long long)s->v_conns, (unsigned long long)s->v_per_conn,
		           (unsigned long long)s->v_rate);
		struct buf names = { 0 };
		for (unsigned k = 0; k < s->nhelo; k++) {
			buf_printf(j, "%s\"%s\"", k ? "," : "", s->helo[k]);
			buf_printf(&names, "%s%s", k ? "," : "", s->helo[k]);
		}
		if (s->first_ms < 0)
			buf_adds(j, "],\"first_ms\":null,\"last_ms\":null");
		else
			buf_printf(j, "],\"first_ms\":%lld,\"last_ms\":%lld", (long long)s->first_ms,
			           (long long)s->last_ms);
		buf_printf(j, ",\"blocklisted\":%llu", (unsigned long long)s->blocklisted);
		timeline_report(s, nsec, j);
		buf_adds(j, "}");
		double span = (double)(s->last_ms - s->first_ms) / 1000;
		fprintf(stderr, "mockmx: police %s: %llu connections (max %u concurrent), %llu MAIL FROM "
		        "accepted, %llu messages, violations conns %llu per_conn %llu rate %llu, "
		        "MAIL FROM rate %.2f/s over %.3f s, helo %s\n", s->ip,
		        (unsigned long long)s->connections, s->max_concurrent, (unsigned long long)s->mails,
		        (unsigned long long)s->messages, (unsigned long long)s->v_conns,
		        (unsigned long long)s->v_per_conn, (unsigned long long)s->v_rate,
		        s->mails >= 2 && span > 0 ? (double)(s->mails - 1) / span : 0, s->mails ? span : 0,
		        names.len ? names.p : "-");
		if (s->block_reply)
			fprintf(stderr, "mockmx: blocklist %s: listed, %llu refusals\n", s->ip,
			        (unsigned long long)s->blocklisted);
		buf_free(&names);
	}
	buf_adds(j, "}");
	pthread_mutex_unlock(&p->mu);
}

static void police_free(struct police *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->list[i]->block_reply);
		free(p->list[i]->ok_s);
		free(p->list[i]->refused_s);
		free(p->list[i]);
	}
	free(p->list);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* The counters as one JSON line, on stdout and into --stats FILE. */
static void mx_report(const struct mx_opts *o, const struct mx_stats *st, struct police *pol,
                      double secs)
{
	struct buf j = { 0 };
	buf_printf(&j, "{\"connections\":%llu,\"messages\":%llu,\"recipients\":%llu,\"bytes\":%llu,"
	           "\"rejected\":%llu,\"disconnects\":%llu,\"bdat\":%llu,\"tls_connections\":%llu,"
	           "\"tls_resumed\":%llu,\"tls_failures\":%llu,\"cpu_s\":%.3f,\"seconds\":%.3f",
	           (unsigned long long)st->connections, (unsigned long long)st->messages,
	           (unsigned long long)st->recipients, (unsigned long long)st->bytes,
	           (unsigned long long)st->rejected, (unsigned long long)st->disconnects,
	           (unsigned long long)st->bdat, (unsigned long long)st->tls_connections,
	           (unsigned long long)st->tls_resumed, (unsigned long long)st->tls_failures, cpu_self(), secs);
	if (pol)
		police_report(pol, &j);
	buf_adds(&j, "}\n");
	fwrite(j.p, 1, j.len, stdout); /* buf_adds does not NUL-terminate */
	fflush(stdout);
	if (o->stats_path) {
		FILE *f = fopen(o->stats_path, "w");
		if (f) {
			fwrite(j.p, 1, j.len, f);
			fclose(f);
		}
	}
	buf_free(&j);
}

int mockmx_main(int argc, char **argv)
{
	static struct mx_opts o;
	int rc = mx_parse_args(&o, argc, argv);
	if (rc >= 0)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = mx_on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	static struct mx_stats st;
	struct police *pol = NULL;
	if (o.police_conns || o.police_per_conn || o.police_rate > 0 || o.nblocklist) {
		pol = xcalloc(1, sizeof(*pol));
		pthread_mutex_init(&pol->mu, NULL);
		pol->o = &o;
		pol->conns_max = o.police_conns;
		pol->per_conn_max = o.police_per_conn;
		pol->rate = o.police_rate;
		pol->depth = o.police_rate > 1 ? o.police_rate : 1;
	}
	struct mx_thread *th = xcalloc(o.threads, sizeof(*th));
	for (unsigned i = 0; i < o.threads; i++) {
		th[i].index = i;
		th[i].o = &o;
		th[i].st = &st;
		th[i].pol = pol;
		th[i].rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)o.seed * 2654435761u + i + 1);
		if (o.tls_cert) { /* made here so that a bad file stops the start; used by its thread only */
			char err[256];
			if (!(th[i].tls_ctx = tls_server_ctx_new(o.tls_cert, o.tls_key, err, sizeof(err))))
				fatal("mockmx: %s", err);
			if (o.tls_no_resume)
				tls_server_ctx_no_resumption(th[i].tls_ctx);
		}
		for (unsigned k = 0; k < o.nlisten; k++)
			th[i].lfd[k] = listen_on(&o.listen[k], o.listen_len[k], o.threads > 1);
	}
	fprintf(stderr, "mockmx: listening (%u listener%s, %u thread%s)\n", o.nlisten,
	        o.nlisten == 1 ? "" : "s", o.threads, o.threads == 1 ? "" : "s");
	double t0 = now_mono_s();
	if (pol)
		pol->t0 = t0;
	for (unsigned i = 0; i < o.threads; i++)
		if (pthread_create(&th[i].tid, NULL, mx_thread_main, &th[i]) != 0)
			fatal("mockmx: cannot start thread");
	for (unsigned i = 0; i < o.threads; i++)
		pthread_join(th[i].tid, NULL);
	mx_report(&o, &st, pol, now_mono_s() - t0);
	if (pol)
		police_free(pol);
	for (unsigned i = 0; i < o.threads; i++)
		for (unsigned k = 0; k < o.nlisten; k++)
			close(th[i].lfd[k]);
	free(th);
	free(o.blocklist);
	return 0;
}
