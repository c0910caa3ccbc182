/* dns/resolver.c - see resolver.h. Owns the resolver's sockets (one
 * connected UDP socket per server, a TCP socket per truncated answer), the
 * queries in flight and the cache. Everything runs on the owning shard's
 * thread; the only system calls outside the ring are socket/connect on
 * UDP sockets (no packet leaves) and close. */
#define _GNU_SOURCE
#include "resolver.h"
#include "../engine/lib/dlist.h"
#include "../engine/lib/strmap.h"
#include "../engine/lib/util.h"
#include "../engine/lib/ring.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define INFLIGHT_MAX 1024
#define UDP_BUF 65536
#define TCP_MAX 65537
#define TEMPFAIL_CACHE_S 5        /* RFC 2308 section 7: a failure may be cached briefly */
#define NEGATIVE_CACHE_MAX_S 3600
#define POSITIVE_CACHE_MAX_S 86400

enum { OPX_UDP_SEND = 0, OPX_UDP_RECV, OPX_TCP_CONNECT, OPX_TCP_SEND, OPX_TCP_RECV, OPX_TCP_CANCEL };

struct waiter { dns_done_fn fn; void *arg; };

struct entry {
	struct strmap_node node;
	char *key;                /* "TYPE/name" */
	const char *name;         /* inside key */
	uint16_t type;
	bool pending;             /* a query is out (or waiting for a slot) */
	bool busy;                /* its waiters are being called: not evictable */
	struct dns_answer ans;
	char err[160];
	int64_t expires;
	struct waiter *w;
	unsigned nw, cw;
	struct dlist link;        /* LRU (ready entries) or the send backlog (pending) */
};

struct query {
	uint32_t gen;
	struct entry *e;          /* NULL once answered (the slot may still wait for ops) */
	uint16_t id;
	unsigned tries, server;
	int64_t deadline;
	uint8_t wire[2 + DNS_QUERY_MAX]; /* 2-byte length prefix for TCP, then the query */
	size_t wlen;
	unsigned ops;             /* ring operations in flight on this slot */
	int tcp_fd;
	uint8_t *tbuf;
	size_t tlen;
	bool in_use;
};

struct server_sock {
	int fd;
	uint8_t *buf;
	bool armed;
};

struct dns_resolver {
	struct ring *ring;
	unsigned op_base;
	struct dns_server *servers;
	unsigned nservers, preferred;
	int timeout_ms;
	unsigned attempts, cache_max;
	struct server_sock *socks;
	struct query q[INFLIGHT_MAX];
	uint16_t free_q[INFLIGHT_MAX];
	unsigned nfree;
	uint16_t *idmap;          /* query ID -> slot + 1 */
	uint16_t ids[256];
	unsigned nids;
	struct strmap map;
	unsigned nready;
	struct dlist lru;         /* ready entries, most recent first */
	struct dlist backlog;     /* pending entries waiting for a query slot */
	int64_t next_scan, now;
	uint64_t sent, sent_tcp, timeouts;
};

static uint16_t random_id(struct dns_resolver *r)
{
	if (r->nids == 0) {
		if (getrandom(r->ids, sizeof(r->ids), 0) != (ssize_t)sizeof(r->ids))
			fatal("getrandom failed: %s", strerror(errno));
		r->nids = ARRAY_LEN(r->ids);
	}
	return r->ids[--r->nids];
}

static uint64_t ud(const struct dns_resolver *r, unsigned opx, uint32_t slot, uint32_t gen)
{
	return ring_ud(r->op_base + opx, slot, gen);
}

/* The query is still asking, over UDP, the server at index si: an answer
 * from that server's socket may be its own. */
static inline bool waits_on_udp(const struct query *q, unsigned si)
{
	return q->e && q->server == si && q->tcp_fd < 0;
}

static void arm_udp(struct dns_resolver *r, unsigned si)
{
	struct server_sock *k = &r->socks[si];
	if (k->armed || k->fd < 0)
		return;
	ring_recv(r->ring, k->fd, k->buf, UDP_BUF, ud(r, OPX_UDP_RECV, si, 0));
	k->armed = true;
}

struct dns_resolver *dns_resolver_new(struct ring *ring, unsigned op_base,
                                      const struct dns_resolver_config *cfg)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	r->ring = ring;
	r->op_base = op_base;
	r->nservers = cfg->nservers;
	r->servers = xcalloc(cfg->nservers ? cfg->nservers : 1, sizeof(*r->servers));
	memcpy(r->servers, cfg->servers, cfg->nservers * sizeof(*r->servers));
	r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
	r->attempts = cfg->attempts ? cfg->attempts : 2;
	r->cache_max = cfg->cache_max ? cfg->cache_max : 10000;
	r->idmap = xcalloc(65536, sizeof(*r->idmap));
	dlist_init(&r->lru);
	dlist_init(&r->backlog);
	for (unsigned i = INFLIGHT_MAX; i-- > 0;) {
		r->q[i].tcp_fd = -1;
		r->free_q[r->nfree++] = (uint16_t)i;
	}
	r->socks = xcalloc(r->nservers ? r->nservers : 1, sizeof(*r->socks));
	for (unsigned i = 0; i < r->nservers; i++) {
		struct server_sock *k = &r->socks[i];
		k->buf = xmalloc(UDP_BUF);
		k->fd = socket(r->servers[i].sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* blocking: io_uring would answer -EAGAIN at once */
		int rcvbuf = 1 << 20; /* room for a burst of answers */
		if (k->fd >= 0)
			setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
		if (k->fd >= 0 && connect(k->fd, (struct sockaddr *)&r->servers[i].sa, r->servers[i].len) != 0) {
			warnx_("DNS server %s: %s", r->servers[i].label, strerror(errno));
			close(k->fd);
			k->fd = -1;
		}
		arm_udp(r, i);
	}
	return r;
}

/* ---- the cache ---- */

static void entry_free(struct dns_resolver *r, struct entry *e)
{
	strmap_remove(&r->map, &e->node);
	dlist_unlink(&e->link);
	dns_answer_free(&e->ans);
	free(e->w);
	free(e->key);
	free(e);
}

static void evict(struct dns_resolver *r)
{
	struct dlist *n = r->lru.prev;
	while (r->nready > r->cache_max && n != &r->lru) {
		struct dlist *prev = n->prev;
		struct entry *e = container_of(n, struct entry, link);
		if (!e->busy) {
			entry_free(r, e);
			r->nready--;
		}
		n = prev;
	}
}

static uint32_t cache_seconds(const struct dns_answer *a)
{
	switch (a->status) {
	case DNS_OK:
		return a->ttl < POSITIVE_CACHE_MAX_S ? a->ttl : POSITIVE_CACHE_MAX_S;
	case DNS_NODATA:
	case DNS_NXDOMAIN:
		return a->ttl < NEGATIVE_CACHE_MAX_S ? a->ttl : NEGATIVE_CACHE_MAX_S;
	default:
		return TEMPFAIL_CACHE_S;
	}
}

/* The query for e ended (answer or failure): cache it and call the waiters. */
static void entry_settle(struct dns_resolver *r, struct entry *e, const struct dns_answer *a, const char *err)
{
	dns_answer_free(&e->ans);
	e->ans = *a;
	snprintf(e->err, sizeof(e->err), "%s", err ? err : "");
	e->pending = false;
	e->expires = r->now + (int64_t)cache_seconds(a) * 1000;
	dlist_move_front(&r->lru, &e->link);
	r->nready++;
	struct waiter *w = e->w;
	unsigned nw = e->nw;
	e->w = NULL;
	e->nw = e->cw = 0;
	e->busy = true;
	for (unsigned i = 0; i < nw; i++)
		w[i].fn(w[i].arg, &e->ans, e->err[0] ? e->err : NULL);
	e->busy = false;
	free(w);
	evict(r);
}

/* ---- queries ---- */

static void query_release(struct dns_resolver *r, uint32_t slot)
{
	struct query *q = &r->q[slot];
	if (q->ops || !q->in_use || q->e)
		return; /* still asking, or an operation still refers to it */
	if (q->tcp_fd >= 0)
		close(q->tcp_fd);
	q->tcp_fd = -1;
	free(q->tbuf);
	q->tbuf = NULL;
	q->tlen = 0;
	q->in_use = false;
	q->gen++;
	r->free_q[r->nfree++] = (uint16_t)slot;
}

static void start_backlog(struct dns_resolver *r);

static void tcp_abort(struct dns_resolver *r, uint32_t slot)
{
	struct query *q = &r->q[slot];
	if (q->tcp_fd >= 0 && q->ops) {
		ring_cancel_fd(r->ring, q->tcp_fd, ud(r, OPX_TCP_CANCEL, slot, q->gen));
		q->ops++;
	}
}

/* The query in slot ends with this answer; its entry is settled. */
static void query_finish(struct dns_resolver *r, uint32_t slot, const struct dns_answer *a, const char *err)
{
	struct query *q = &r->q[slot];
	struct entry *e = q->e;
	if (r->idmap[q->id] == slot + 1)
		r->idmap[q->id] = 0;
	q->e = NULL;
	tcp_abort(r, slot);
	query_release(r, slot);
	if (e)
		entry_settle(r, e, a, err);
	start_backlog(r);
}

static void query_fail(struct dns_resolver *r, uint32_t slot, const char *why)
{
	struct dns_answer a = { .status = DNS_TEMPFAIL };
	query_finish(r, slot, &a, why);
}

static void udp_send(struct dns_resolver *r, uint32_t slot)
{
	struct query *q = &r->q[slot];
	struct server_sock *k = &r->socks[q->server];
	q->deadline = r->now + r->timeout_ms;
	if (k->fd < 0)
		return; /* times out, then the next server */
	arm_udp(r, q->server);
	ring_send(r->ring, k->fd, q->wire + 2, q->wlen, ud(r, OPX_UDP_SEND, slot, q->gen));
	q->ops++;
	r->sent++;
}

/* Next server, or the end: a temporary failure. */
static void query_retry(struct dns_resolver *r, uint32_t slot, const char *why)
{
	struct query *q = &r->q[slot];
	tcp_abort(r, slot);
	if (q->tcp_fd >= 0 && q->ops == 0) {
		close(q->tcp_fd);
		q->tcp_fd = -1;
	}
	if (++q->tries >= r->nservers * r->attempts || q->tcp_fd >= 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "%s (after %u tries)", why, q->tries);
		query_fail(r, slot, msg);
		return;
	}
	q->server = (q->server + 1) % r->nservers;
	udp_send(r, slot);
}

static bool query_start(struct dns_resolver *r, struct entry *e)
{
	if (r->nfree == 0)
		return false;
	uint32_t slot = r->free_q[--r->nfree];
	struct query *q = &r->q[slot];
	q->in_use = true;
	q->e = e;
	q->tries = 0;
	q->server = r->preferred % r->nservers;
	do
		q->id = random_id(r);
	while (r->idmap[q->id]);
	r->idmap[q->id] = (uint16_t)(slot + 1);
	q->wlen = dns_query_build(q->wire + 2, DNS_QUERY_MAX, q->id, e->name, e->type);
	ASSERT(q->wlen > 0); /* names were checked before */
	q->wire[0] = (uint8_t)(q->wlen >> 8);
	q->wire[1] = (uint8_t)q->wlen;
	udp_send(r, slot);
	return true;
}

static void start_backlog(struct dns_resolver *r)
{
	while (!dlist_empty(&r->backlog) && r->nfree) {
		struct entry *e = container_of(r->backlog.next, struct entry, link);
		dlist_unlink(&e->link);
		query_start(r, e);
	}
}

const struct dns_answer *dns_lookup(struct dns_resolver *r, const char *name, uint16_t type,
                                    dns_done_fn done, void *arg, const char **err)
{
	static const struct dns_answer badname = { .status = DNS_BADNAME };
	static const struct dns_answer noserver = { .status = DNS_TEMPFAIL };
	char key[DNS_NAME_MAX + 16];
	*err = NULL;
	r->now = now_mono_ms(); /* callers run between loop turns */
	if (!dns_name_askable(name)) {
		*err = "not a valid DNS name";
		return &badname;
	}
	if (r->nservers == 0) {
		*err = "no DNS server configured";
		return &noserver;
	}
	int n = snprintf(key, sizeof(key), "%u/", type);
	for (const char *p = name; *p; p++)
		key[n++] = (char)tolower((unsigned char)*p);
	key[n] = 0;
	struct strmap_node *node = strmap_find(&r->map, key);
	struct entry *e = node ? container_of(node, struct entry, node) : NULL;
	if (e && !e->pending && e->expires > r->now) {
		dlist_move_front(&r->lru, &e->link);
		*err = e->err[0] ? e->err : NULL;
		return &e->ans;
	}
	if (!e) {
		e = xcalloc(1, sizeof(*e));
		e->key = xstrdup(key);
		e->name = strchr(e->key, '/') + 1;
		e->type = type;
		strmap_insert(&r->map, &e->node, e->key);
	} else if (!e->pending) {
		dlist_unlink(&e->link); /* expired: asked again */
		r->nready--;
	}
	if (e->nw == e->cw) {
		e->cw = e->cw ? e->cw * 2 : 4;
		e->w = xrealloc(e->w, e->cw * sizeof(*e->w));
	}
	e->w[e->nw++] = (struct waiter){ done, arg };
	if (!e->pending) {
		e->pending = true;
		if (!query_start(r, e))
			dlist_push_back(&r->backlog, &e->link);
	}
	return NULL;
}

/* ---- completions ---- */

/* The UDP answer was truncated: ask the same server over TCP. */
static void tcp_start(struct dns_resolver *r, uint32_t slot)
{
	struct query *q = &r->q[slot];
	const struct dns_server *sv = &r->servers[q->server];
	q->tcp_fd = socket(sv->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->tcp_fd < 0) {
		query_retry(r, slot, "cannot open a TCP socket");
		return;
	}
	q->deadline = r->now + r->timeout_ms;
	r->sent_tcp++;
	ring_connect(r->ring, q->tcp_fd, (const struct sockaddr *)&sv->sa, sv->len, ud(r, OPX_TCP_CONNECT, slot, q->gen));
	q->ops++;
}

static void on_answer(struct dns_resolver *r, uint32_t slot, const uint8_t *wire, size_t len)
{
	struct query *q = &r->q[slot];
	ASSERT(q->e);
	struct dns_answer a;
	char err[160];
	dns_answer_parse(wire, len, q->id, q->e->name, q->e->type, &a, err, sizeof(err));
	char why[240];
	switch (a.status) {
	case DNS_MISMATCH:
		return; /* not ours (spoofed or stale): keep waiting */
	case DNS_TRUNCATED:
		if (q->tcp_fd < 0)
			tcp_start(r, slot);
		else
			query_retry(r, slot, "truncated answer over TCP");
		return;
	case DNS_MALFORMED:
	case DNS_TEMPFAIL: /* SERVFAIL, REFUSED..: the next server may know (as glibc does) */
		snprintf(why, sizeof(why), "%s: %s", r->servers[q->server].label, err);
		query_retry(r, slot, why);
		return;
	default:
		query_finish(r, slot, &a, NULL);
	}
}

static void tcp_read_more(struct dns_resolver *r, uint32_t slot)
{
	struct query *q = &r->q[slot];
	if (!q->tbuf)
		q->tbuf = xmalloc(TCP_MAX);
	ring_recv(r->ring, q->tcp_fd, q->tbuf + q->tlen, TCP_MAX - q->tlen, ud(r, OPX_TCP_RECV, slot, q->gen));
	q->ops++;
}

/* A receive on the UDP socket of server si ended with res. */
static void udp_received(struct dns_resolver *r, unsigned si, int res)
{
	ASSERT(si < r->nservers);
	struct server_sock *k = &r->socks[si];
	k->armed = false;
	/* One datagram came with the completion; the ones queued behind it
	 * are read now without waiting (a burst of answers would otherwise
	 * wait a loop turn each, and overflow the socket buffer). */
	ssize_t got = res;
	for (int burst = 0; got >= 0 && burst < 256; burst++) {
		uint16_t id = dns_wire_id(k->buf, (size_t)got);
		uint32_t qs = r->idmap[id];
		if (qs && waits_on_udp(&r->q[qs - 1], si))
			on_answer(r, qs - 1, k->buf, (size_t)got);
		if (k->armed) /* a callback armed the next receive already */
			break;
		got = recv(k->fd, k->buf, UDP_BUF, MSG_DONTWAIT);
	}
	if (res == -ECONNREFUSED) {
		/* ICMP port unreachable: nobody serves there; move the
		 * queries waiting on this server on at once. */
		for (uint32_t i = 0; i < INFLIGHT_MAX; i++)
			if (waits_on_udp(&r->q[i], si))
				query_retry(r, i, "connection refused");
	}
	arm_udp(r, si);
}

/* res more bytes of the TCP answer came: a whole answer ends the query
 * (or tries the next server), else read on. */
static void tcp_received(struct dns_resolver *r, uint32_t slot, int res)
{
	struct query *q = &r->q[slot];
	ASSERT(q->tbuf); /* tcp_read_more asked for these bytes */
	if (res <= 0) {
		query_retry(r, slot, "TCP connection closed before the answer");
		return;
	}
	q->tlen += (size_t)res;
	if (q->tlen >= 2 && q->tlen >= 2 + (size_t)(q->tbuf[0] << 8 | q->tbuf[1])) {
		size_t n = (size_t)(q->tbuf[0] << 8 | q->tbuf[1]);
		struct dns_answer a;
		char err[160];
		dns_answer_parse(q->tbuf + 2, n, q->id, q->e->name, q->e->type, &a, err, sizeof(err));
		if (a.status == DNS_OK || a.status == DNS_NODATA || a.status == DNS_NXDOMAIN ||
		    a.status == DNS_TEMPFAIL)
			query_finish(r, slot, &a, a.status == DNS_TEMPFAIL ? err : NULL);
		else
			query_retry(r, slot, err[0] ? err : dns_status_name(a.status));
	} else if (q->tlen >= TCP_MAX) {
		query_retry(r, slot, "TCP answer too long");
	} else {
		tcp_read_more(r, slot);
	}
}

void dns_on_cqe(struct dns_resolver *r, const struct ring_cqe *cqe, int64_t now)
{
	r->now = now;
	unsigned opx = ring_ud_op(cqe->user_data) - r->op_base;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	if (opx == OPX_UDP_RECV) {
		udp_received(r, slot, cqe->res);
		return;
	}
	if (slot >= INFLIGHT_MAX || !r->q[slot].in_use || ring_ud_gen(cqe->user_data) != r->q[slot].gen)
		return;
	struct query *q = &r->q[slot];
	ASSERT(q->ops > 0);
	q->ops--;
	if (!q->e) { /* answered or abandoned: only waiting for this op */
		query_release(r, slot);
		return;
	}
	switch (opx) {
	case OPX_UDP_SEND:
		if (cqe->res < 0)
			query_retry(r, slot, strerror(-cqe->res));
		break;
	case OPX_TCP_CONNECT:
		if (cqe->res < 0) {
			query_retry(r, slot, "TCP connect failed");
			break;
		}
		ring_send(r->ring, q->tcp_fd, q->wire, q->wlen + 2, ud(r, OPX_TCP_SEND, slot, q->gen));
		q->ops++;
		break;
	case OPX_TCP_SEND:
		if (cqe->res != (int)(q->wlen + 2)) {
			query_retry(r, slot, "TCP send failed");
			break;
		}
		tcp_read_more(r, slot);
		break;
	case OPX_TCP_RECV:
		tcp_received(r, slot, cqe->res);
		break;
	case OPX_TCP_CANCEL:
		break;
	}
	query_release(r, slot); /* when abandoned and idle */
}

void dns_tick(struct dns_resolver *r, int64_t now)
{
	r->now = now;
	if (now < r->next_scan)
		return;
	r->next_scan = now + 50;
	for (uint32_t i = 0; i < INFLIGHT_MAX; i++) {
		struct query *q = &r->q[i];
		if (!q->e || q->deadline > now)
			continue;
		char why[120];
		snprintf(why, sizeof(why), "%s: no answer within %d ms", r->servers[q->server].label, r->timeout_ms);
		r->timeouts++;
		if (q->server == r->preferred % r->nservers)
			r->preferred++; /* ask the next server first from now on */
		query_retry(r, i, why);
	}
}

void dns_counters(const struct dns_resolver *r, uint64_t *udp, uint64_t *tcp, uint64_t *timeouts)
{
	*udp = r->sent;
	*tcp = r->sent_tcp;
	*timeouts = r->timeouts;
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->nservers; i++) {
		if (r->socks[i].fd >= 0)
			close(r->socks[i].fd);
		free(r->socks[i].buf);
	}
	for (unsigned i = 0; i < INFLIGHT_MAX; i++) {
		if (r->q[i].tcp_fd >= 0)
			close(r->q[i].tcp_fd);
		free(r->q[i].tbuf);
	}
	for (size_t b = 0; b < r->map.nb; b++)
		for (struct strmap_node *n = r->map.b[b], *next; n; n = next) {
			next = n->next;
			struct entry *e = container_of(n, struct entry, node);
			dns_answer_free(&e->ans);
			free(e->w);
			free(e->key);
			free(e);
		}
	strmap_free(&r->map);
	free(r->socks);
	free(r->servers);
	free(r->idmap);
	free(r);
}

/* ---- configuration ---- */

bool dns_server_parse(const char *spec, struct dns_server *out)
{
	char host[48];
	unsigned long port = 53;
	const char *colon;
	memset(out, 0, sizeof(*out));
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || (size_t)(end - spec - 1) >= sizeof(host))
			return false;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = 0;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return false;
	} else {
		colon = strchr(spec, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* a bare IPv6 address */
		size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
		if (hl >= sizeof(host))
			return false;
		memcpy(host, spec, hl);
		host[hl] = 0;
	}
	if (colon) {
		char *end;
		port = strtoul(colon + 1, &end, 10);
		if (*end || port == 0 || port > 65535)
			return false;
	}
	struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		out->len = sizeof(*v4);
		snprintf(out->label, sizeof(out->label), "%s:%lu", host, port);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		out->len = sizeof(*v6);
		snprintf(out->label, sizeof(out->label), "[%s]:%lu", host, port);
	} else {
		return false;
	}
	return true;
}

bool dns_read_resolv_conf(const char *path, struct dns_server *out, unsigned max, unsigned *n,
                          int *timeout_ms, unsigned *attempts)
{
	FILE *f = fopen(path, "r");
	*n = 0;
	if (!f)
		return false;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char word[64], arg[128];
		if (sscanf(line, "%63s %127s", word, arg) != 2)
			continue;
		if (!strcmp(word, "nameserver") && *n < max && dns_server_parse(arg, &out[*n]))
			(*n)++;
		if (!strcmp(word, "options")) {
			for (char *tok = strtok(line + 7, " \t\n"); tok; tok = strtok(NULL, " \t\n")) {
				if (!strncmp(tok, "timeout:", 8))
					*timeout_ms = atoi(tok + 8) * 1000;
				else if (!strncmp(tok, "attempts:", 9))
					*attempts = (unsigned)atoi(tok + 9);
			}
		}
	}
	fclose(f);
	return *n > 0;
}
