/* shards/smtp_client.c - one outbound SMTP connection: connect, banner,
 * EHLO (HELO fallback), then transactions, pipelined per RFC 2920 when the
 * server offers it: [RSET] MAIL RCPT.. DATA in one write, and after the 354
 * the content, the final dot and the next message's MAIL RCPT.. DATA in
 * one write. BDAT LAST (RFC 3030) replaces DATA when CHUNKING is offered;
 * its reply is awaited before the next MAIL (no RFC says they may share a
 * group). Replies are matched to commands by counting (the pq queue), a
 * deadline per awaited reply lives in the shard's timer wheel.
 *
 * Any trouble (refused connect, garbage, timeout, close) ends the
 * connection and defers every recipient whose fate is not yet known:
 * never a crash, never a lost recipient. */
#define _GNU_SOURCE
#include "shard_internal.h"
#include "smtp_data.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define RBUF_MIN 4096
#define ADDR_DEAD_MS 60000   /* an address that failed to connect/greet is tried last for this long */

static const char *cmd_name(uint8_t cmd)
{
	static const char *names[] = { "?", "banner", "EHLO", "HELO", "RSET", "MAIL", "RCPT",
	                               "DATA", "end of data", "BDAT", "QUIT" };
	return cmd < ARRAY_LEN(names) ? names[cmd] : "?";
}

static int cmd_timeout(const struct shard *s, uint8_t cmd)
{
	const struct smtp_timeouts *t = &s->cfg->timeouts;
	switch (cmd) {
	case CMD_BANNER: return t->banner;
	case CMD_EHLO: case CMD_HELO: return t->ehlo;
	case CMD_RSET: case CMD_MAIL: return t->mail;
	case CMD_RCPT: return t->rcpt;
	case CMD_DATA: return t->data;
	case CMD_DOT: return t->dot;
	case CMD_BDAT: return t->dot; /* the whole chunk plus its processing */
	case CMD_QUIT: return t->quit;
	}
	return t->mail;
}

static uint64_t ud(const struct conn *c, unsigned op)
{
	return ring_ud(op, c->slot, c->gen);
}

static struct pending *pq_at(struct conn *c, unsigned i)
{
	return &c->pq[(c->pq_head + i) % PQ_MAX];
}

/* Deadline for what the connection waits for now. */
static void rearm_timer(struct shard *s, struct conn *c)
{
	if (c->state == CS_CLOSING) {
		wheel_disarm(&c->timer);
		return;
	}
	if (c->state == CS_CONNECTING) {
		wheel_arm(&s->wheel, &c->timer, s->now + s->cfg->timeouts.connect);
	} else if (c->pq_len) {
		wheel_arm(&s->wheel, &c->timer, s->now + cmd_timeout(s, pq_at(c, 0)->cmd));
	} else if (c->state == CS_READY) {
		wheel_arm(&s->wheel, &c->timer, s->now + s->cfg->timeouts.idle);
	} else {
		wheel_disarm(&c->timer);
	}
}

static void flush_output(struct shard *s, struct conn *c)
{
	if (c->sending || c->pbuf.len == 0 || c->state == CS_CLOSING)
		return;
	buf_swap_out(&c->wbuf, &c->pbuf);
	c->woff = 0;
	ring_send(s->ring, c->fd, c->wbuf.p, c->wbuf.len, ud(c, OP_SEND));
	c->ops++;
	c->sending = true;
}

static void start_recv(struct shard *s, struct conn *c)
{
	if (c->receiving || c->state == CS_CLOSING)
		return;
	if (c->rcap - c->rlen < RBUF_MIN / 2) {
		c->rcap = c->rcap ? c->rcap * 2 : RBUF_MIN;
		c->rbuf = xrealloc(c->rbuf, c->rcap);
	}
	ring_recv(s->ring, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, ud(c, OP_RECV));
	c->ops++;
	c->receiving = true;
}

static bool may_send_now(const struct shard *s, const struct conn *c)
{
	if (c->pipelining && s->cfg->use_pipelining)
		return true;
	return c->pq_len == 0; /* lock-step: one command, one reply */
}

/* Queues a command (bytes may be NULL for the banner) expecting one reply. */
static void cmd_push(struct shard *s, struct conn *c, uint8_t cmd, uint8_t txn, uint32_t idx,
                     const char *bytes, size_t len)
{
	ASSERT(c->pq_len < PQ_MAX);
	bool was_empty = c->pq_len == 0;
	struct pending *p = pq_at(c, c->pq_len);
	memset(p, 0, sizeof(*p));
	p->cmd = cmd;
	p->txn = txn;
	p->idx = idx;
	if (c->pq_sent == c->pq_len && may_send_now(s, c)) {
		if (len)
			buf_add(&c->pbuf, bytes, len);
		c->pq_sent++;
	} else {
		p->off = (uint32_t)c->hold.len;
		p->len = (uint32_t)len;
		buf_add(&c->hold, bytes, len);
	}
	c->pq_len++;
	if (was_empty)
		rearm_timer(s, c);
}

/* Lock-step servers: after a reply, send the next held command. */
static void send_next_held(struct conn *c)
{
	if (c->pq_sent < c->pq_len) {
		struct pending *p = pq_at(c, c->pq_sent);
		buf_add(&c->pbuf, c->hold.p + p->off, p->len);
		c->pq_sent++;
	}
	if (c->pq_sent == c->pq_len)
		c->hold.len = 0;
}

static void cmd_printf(struct shard *s, struct conn *c, uint8_t cmd, uint8_t txn, uint32_t idx,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void cmd_printf(struct shard *s, struct conn *c, uint8_t cmd, uint8_t txn, uint32_t idx,
                       const char *fmt, ...)
{
	char line[SMTP_LINE_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	ASSERT(n > 0 && (size_t)n < sizeof(line));
	cmd_push(s, c, cmd, txn, idx, line, (size_t)n);
}

/* ---- connection end ---- */

static void conn_release(struct shard *s, struct conn *c)
{
	c->fd = -1;
	c->state = CS_FREE;
	c->gen++;
	c->wbuf.len = c->pbuf.len = c->hold.len = 0;
	c->rlen = 0;
	c->pq_head = c->pq_len = c->pq_sent = 0;
	s->free_slots[s->nfree++] = c->slot;
}

static void maybe_close_fd(struct shard *s, struct conn *c)
{
	if (c->state != CS_CLOSING || c->ops != 0)
		return;
	if (c->fd < 0) {
		conn_release(s, c);
		return;
	}
	ring_close(s->ring, c->fd, ud(c, OP_CLOSE));
	c->fd = -1;
	c->ops++;
}

static void enter_closing(struct shard *s, struct conn *c)
{
	struct dest *d = &s->dests[c->dest];
	if (c->state == CS_READY || c->state == CS_QUITTING)
		d->nready--;
	d->nconns--;
	c->state = CS_CLOSING;
	wheel_disarm(&c->timer);
	if (c->ops > 0 && c->fd >= 0) {
		ring_cancel_fd(s->ring, c->fd, ud(c, OP_CANCEL));
		c->ops++;
	}
	maybe_close_fd(s, c);
}

/* The transaction ended with a reply (not a failure): recipients the
 * server had no room for go into the next transaction. */
static void txn_complete(struct shard *s, struct conn *c, struct txn *t);

static void txn_finish(struct shard *s, struct conn *c, struct txn *t)
{
	struct leg *leg = t->leg;
	t->active = false;
	t->leg = NULL;
	atomic_fetch_sub_explicit(&s->txns_open, 1, memory_order_relaxed);
	shard_leg_done(s, leg);
	(void)c;
}

static void txn_complete(struct shard *s, struct conn *c, struct txn *t)
{
	if (t->naccepted > 0)
		shard_leg_requeue_next(s, t->leg);
	else /* not even one fitted: do not loop, retry later */
		for (uint32_t i = 0; i < t->leg->nr; i++)
			if (t->leg->rt[i] == RT_NEXT_TXN) {
				static const char why[] = "server accepted no recipient (too many recipients)";
				t->leg->rt[i] = RT_RESOLVED;
				shard_emit(s, t->leg, i, RESULT_DEFERRED, 452, "4.5.3", why, sizeof(why) - 1, c,
				           t->start_ms);
			}
	txn_finish(s, c, t);
}

/* Defers every recipient of the leg whose fate this transaction has not
 * settled, with our own reason. */
static void leg_defer_unsettled(struct shard *s, struct conn *c, struct leg *leg, bool mail_failed,
                                uint16_t code, const char *enh, const char *why, int64_t start_ms)
{
	for (uint32_t i = 0; i < leg->nr; i++)
		if (!mail_failed && leg->rt[i] != RT_RESOLVED)
			shard_emit(s, leg, i, RESULT_DEFERRED, code, enh, why, strlen(why), c, start_ms);
}

static bool addr_live(const struct shard *s, const struct dest_addr *a)
{
	return a->dead_until <= s->now;
}

/* The first address not marked dead (all dead: the first). */
static unsigned first_live_addr(const struct shard *s, const struct dest *d)
{
	for (unsigned i = 0; i < d->naddrs; i++)
		if (addr_live(s, &d->addrs[i]))
			return i;
	return 0;
}

/* The connection failed: defer what is open on it; if it never became
 * usable and the destination has no working connection, defer the queued
 * transactions too, so that a dead server does not spin. */
static void conn_fail(struct shard *s, struct conn *c, uint16_t code, const char *enh, const char *why)
{
	if (c->state == CS_CLOSING)
		return;
	bool never_ready = c->state == CS_CONNECTING || c->state == CS_GREETING;
	for (int i = 0; i < 2; i++) {
		struct txn *t = &c->txn[i];
		if (!t->active)
			continue;
		leg_defer_unsettled(s, c, t->leg, t->mail_failed, code, enh, why, t->start_ms);
		txn_finish(s, c, t);
	}
	struct dest *d = &s->dests[c->dest];
	uint32_t others_alive = d->nconns - 1;
	bool untried = false; /* another address may work: the queue waits for it */
	if (never_ready && c->addr < d->naddrs) {
		d->addrs[c->addr].dead_until = s->now + ADDR_DEAD_MS;
		untried = addr_live(s, &d->addrs[first_live_addr(s, d)]);
	}
	enter_closing(s, c);
	if (never_ready && others_alive == 0 && !untried) {
		struct leg *l;
		while ((l = dest_pop(d))) {
			leg_defer_unsettled(s, c, l, false, code, enh, why, 0);
			shard_leg_done(s, l);
		}
	}
}

static void conn_failf(struct shard *s, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_failf(struct shard *s, struct conn *c, const char *fmt, ...)
{
	char why[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	conn_fail(s, c, 451, "4.4.2", why);
}

void conn_shutdown(struct shard *s, struct conn *c, bool graceful)
{
	if (c->state == CS_CLOSING || c->state == CS_FREE)
		return;
	bool busy = c->txn[0].active || c->txn[1].active || c->pq_len;
	if (graceful && c->state == CS_READY && !busy) {
		cmd_printf(s, c, CMD_QUIT, 0, 0, "QUIT\r\n");
		c->state = CS_QUITTING;
		flush_output(s, c);
		return;
	}
	conn_fail(s, c, 451, "4.4.2", "connection closed by sluice (shutting down)");
}

/* ---- opening ---- */

/* A new connection goes to the best preference that has live addresses,
 * to one of them at random, so that equal-preference MX hosts share the
 * load (RFC 5321 5.1) even when one plan serves every message. */
void conn_open(struct shard *s, uint32_t dest)
{
	struct dest *d = &s->dests[dest];
	ASSERT(s->nfree > 0 && d->naddrs > 0);
	unsigned ai = first_live_addr(s, d), live = 0;
	for (unsigned i = ai; i < d->naddrs && d->addrs[i].pref == d->addrs[ai].pref; i++)
		live += addr_live(s, &d->addrs[i]);
	if (live > 1) { /* the pick-th live address of that preference */
		unsigned pick = (unsigned)(shard_random(s) % live);
		while (!addr_live(s, &d->addrs[ai]) || pick--)
			ai++;
	}
	const struct dest_addr *a = &d->addrs[ai];
	struct conn *c = s->conns[s->free_slots[--s->nfree]];
	ASSERT(c->state == CS_FREE);
	c->dest = dest;
	c->ops = 0;
	c->esmtp = c->pipelining = c->chunking = c->eightbit = c->smtputf8 = false;
	c->size_max = 0;
	c->sending = c->receiving = false;
	c->msgs = 0;
	c->need_rset = false;
	c->txn[0].active = c->txn[1].active = false;
	c->source[0] = 0;
	c->addr = ai;
	snprintf(c->mx, sizeof(c->mx), "%s", a->mx);
	if (d->route)
		snprintf(c->peer, sizeof(c->peer), "%s", d->route->label);
	else
		sockaddr_text(&a->sa, true, c->peer, sizeof(c->peer));
	d->nconns++;
	c->state = CS_CONNECTING;
	c->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_failf(s, c, "cannot create socket: %s", strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ring_connect(s->ring, c->fd, (const struct sockaddr *)&a->sa, a->len, ud(c, OP_CONNECT));
	c->ops++;
	rearm_timer(s, c);
}

static void note_source(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_text(&ss, false, c->source, sizeof(c->source));
}

/* ---- transactions ---- */

static bool has_non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

static void txn_start(struct shard *s, struct conn *c, struct leg *leg)
{
	int ti = c->txn[0].active ? 1 : 0;
	struct txn *t = &c->txn[ti];
	ASSERT(!t->active);
	const struct message *m = leg->msg;
	bool bdat = c->chunking && s->cfg->use_chunking;
	*t = (struct txn){ .leg = leg, .active = true, .start_ms = s->now, .bdat = bdat };
	atomic_fetch_add_explicit(&s->txns_open, 1, memory_order_relaxed);
	c->msgs++;
	if (c->need_rset) {
		cmd_printf(s, c, CMD_RSET, (uint8_t)ti, 0, "RSET\r\n");
		c->need_rset = false;
	}
	bool utf8 = c->smtputf8 && has_non_ascii(m->sender);
	for (uint32_t i = 0; i < leg->nr && !utf8; i++)
		utf8 = c->smtputf8 && has_non_ascii(m->rcpt[leg->ri[i]]);
	char size[32] = "";
	if (c->size_max || c->esmtp)
		snprintf(size, sizeof(size), " SIZE=%zu", message_content_len(m));
	cmd_printf(s, c, CMD_MAIL, (uint8_t)ti, 0, "MAIL FROM:<%s>%s%s%s\r\n", m->sender,
	           c->esmtp ? size : "", m->body_8bit && c->eightbit ? " BODY=8BITMIME" : "",
	           utf8 ? " SMTPUTF8" : "");
	for (uint32_t i = 0; i < leg->nr; i++)
		if (leg->rt[i] != RT_RESOLVED) /* settled before sending (SMTPUTF8) */
			cmd_printf(s, c, CMD_RCPT, (uint8_t)ti, i, "RCPT TO:<%s>\r\n", m->rcpt[leg->ri[i]]);
	if (bdat) {
		struct buf b = { 0 };
		buf_printf(&b, "BDAT %zu LAST\r\n", message_content_len(m));
		if (m->dkim_sig)
			buf_add(&b, m->dkim_sig, m->dkim_sig_len);
		buf_add(&b, m->body, m->body_len);
		cmd_push(s, c, CMD_BDAT, (uint8_t)ti, 0, b.p, b.len);
		buf_free(&b);
		t->data_started = true;
	} else {
		cmd_printf(s, c, CMD_DATA, (uint8_t)ti, 0, "DATA\r\n");
	}
}

/* Settles the whole leg without sending when the server cannot take it:
 * larger than its SIZE (RFC 1870), or an address that needs SMTPUTF8
 * (RFC 6531 3.2) which it does not offer. Returns true if settled. */
static bool leg_refused_before_sending(struct shard *s, struct conn *c, struct leg *leg)
{
	const struct message *m = leg->msg;
	char why[160];
	uint16_t code;
	const char *enh;
	if (c->size_max && message_content_len(m) > c->size_max) {
		code = 552;
		enh = "5.3.4";
		snprintf(why, sizeof(why), "message of %zu bytes exceeds the server's SIZE limit of %llu",
		         message_content_len(m), (unsigned long long)c->size_max);
	} else if (!c->smtputf8 && has_non_ascii(m->sender)) {
		code = 553;
		enh = "5.6.7";
		snprintf(why, sizeof(why), "the sender address needs SMTPUTF8, which the server does not offer");
	} else {
		bool refused = false;
		for (uint32_t i = 0; i < leg->nr; i++)
			if (!c->smtputf8 && has_non_ascii(m->rcpt[leg->ri[i]])) {
				static const char w[] = "the recipient address needs SMTPUTF8, which the server does not offer";
				leg->rt[i] = RT_RESOLVED;
				shard_emit(s, leg, i, RESULT_BOUNCED, 553, "5.6.7", w, sizeof(w) - 1, c, s->now);
				refused = true;
			}
		if (!refused)
			return false;
		for (uint32_t i = 0; i < leg->nr; i++)
			if (leg->rt[i] != RT_RESOLVED)
				return false; /* the others still go */
		shard_leg_done(s, leg);
		return true;
	}
	for (uint32_t i = 0; i < leg->nr; i++) {
		leg->rt[i] = RT_RESOLVED;
		shard_emit(s, leg, i, RESULT_BOUNCED, code, enh, why, strlen(why), c, s->now);
	}
	shard_leg_done(s, leg);
	return true;
}

/* A new transaction may start when no other is before its data phase, no
 * BDAT reply is awaited, and (without pipelining) nothing is open at all. */
static bool can_start_txn(struct shard *s, const struct conn *c)
{
	if (c->state != CS_READY || atomic_load_explicit(&s->finishing, memory_order_relaxed))
		return false;
	bool pipelined = c->pipelining && s->cfg->use_pipelining;
	for (int i = 0; i < 2; i++) {
		const struct txn *t = &c->txn[i];
		if (!t->active)
			continue;
		if (!pipelined || t->bdat || !t->data_started)
			return false;
	}
	return !(c->txn[0].active && c->txn[1].active);
}

void conn_take_work(struct shard *s, struct conn *c)
{
	if (!can_start_txn(s, c))
		return;
	struct dest *d = &s->dests[c->dest];
	/* Limit reached, or more connections than a reload allows (or none,
	 * for a route that left): QUIT when idle; schedule() opens a fresh one. */
	if (c->msgs >= s->cfg->max_per_connection || d->nconns > d->max_conns) {
		if (!c->txn[0].active && !c->txn[1].active)
			conn_shutdown(s, c, true);
		return;
	}
	struct leg *leg;
	unsigned budget = 64; /* bounded: refused legs do not keep the loop here */
	while ((leg = dest_pop(d)) && leg_refused_before_sending(s, c, leg) && --budget)
		;
	if (leg && budget) {
		txn_start(s, c, leg);
		flush_output(s, c);
	} else if (!c->txn[0].active && !c->txn[1].active) {
		rearm_timer(s, c);
	}
}

static enum result result_of(uint16_t code)
{
	if (code >= 200 && code < 300)
		return RESULT_DELIVERED;
	return code >= 500 ? RESULT_BOUNCED : RESULT_DEFERRED;
}

/* Settles every accepted recipient of t with the reply to DATA / dot / BDAT. */
static void txn_settle_accepted(struct shard *s, struct conn *c, struct txn *t, const struct smtp_reply *r)
{
	struct leg *leg = t->leg;
	enum result res = result_of(r->code);
	for (uint32_t i = 0; i < leg->nr; i++)
		if (leg->rt[i] == RT_ACCEPTED) {
			leg->rt[i] = RT_RESOLVED;
			shard_emit(s, leg, i, res, r->code, r->enhanced, r->text, r->text_len, c, t->start_ms);
		}
}

/* RFC 5321 4.5.3.1.10: 452 (or the older 552) "too many recipients". */
static bool too_many_recipients(const struct smtp_reply *r)
{
	if (r->code != 452 && r->code != 552)
		return false;
	if (r->enhanced[0])
		return strcmp(r->enhanced + 1, ".5.3") == 0;
	return strcasestr(r->text, "too many recipients") != NULL;
}

static void parse_ehlo(struct conn *c, const struct smtp_reply *r)
{
	c->esmtp = true;
	const char *p = r->text, *end = r->text + r->text_len;
	bool first = true;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (!first) {
			if (prefix_ci(p, n, "PIPELINING") == n && n == 10)
				c->pipelining = true;
			else if (n == 8 && prefix_ci(p, n, "CHUNKING"))
				c->chunking = true;
			else if (n == 8 && prefix_ci(p, n, "8BITMIME"))
				c->eightbit = true;
			else if (n == 8 && prefix_ci(p, n, "SMTPUTF8"))
				c->smtputf8 = true;
			else if (prefix_ci(p, n, "SIZE") && (n == 4 || p[4] == ' '))
				c->size_max = n > 5 ? strtoull(p + 5, NULL, 10) : 0;
		}
		first = false;
		p += n + 1;
	}
}

static void become_ready(struct shard *s, struct conn *c)
{
	c->state = CS_READY;
	s->dests[c->dest].nready++;
	conn_take_work(s, c);
}

static void handle_greeting(struct shard *s, struct conn *c, uint8_t cmd, const struct smtp_reply *r)
{
	bool ok = r->code >= 200 && r->code < 300;
	if (cmd == CMD_BANNER && ok) {
		cmd_printf(s, c, CMD_EHLO, 0, 0, "EHLO %s\r\n", s->cfg->helo);
	} else if (cmd == CMD_EHLO && ok) {
		parse_ehlo(c, r);
		become_ready(s, c);
	} else if (cmd == CMD_EHLO && r->code >= 500) {
		cmd_printf(s, c, CMD_HELO, 0, 0, "HELO %s\r\n", s->cfg->helo);
	} else if (cmd == CMD_HELO && ok) {
		become_ready(s, c);
	} else {
		char why[SMTP_REPLY_TEXT_MAX + 64];
		snprintf(why, sizeof(why), "%s refused: %u %s", cmd_name(cmd), r->code, r->text);
		conn_fail(s, c, r->code, r->enhanced[0] ? r->enhanced : NULL, why);
	}
}

static void handle_reply(struct shard *s, struct conn *c, const struct pending *p, const struct smtp_reply *r)
{
	struct txn *t = &c->txn[p->txn];
	bool ok = r->code >= 200 && r->code < 300;
	switch (p->cmd) {
	case CMD_BANNER: case CMD_EHLO: case CMD_HELO:
		handle_greeting(s, c, p->cmd, r);
		return;
	case CMD_QUIT:
		enter_closing(s, c);
		return;
	case CMD_RSET:
		if (!ok)
			conn_failf(s, c, "RSET refused: %u %s", r->code, r->text);
		return;
	case CMD_MAIL:
		if (!ok) {
			t->mail_failed = true;
			for (uint32_t i = 0; i < t->leg->nr; i++) {
				t->leg->rt[i] = RT_RESOLVED;
				shard_emit(s, t->leg, i, result_of(r->code), r->code, r->enhanced, r->text,
				           r->text_len, c, t->start_ms);
			}
		}
		return;
	case CMD_RCPT:
		if (t->mail_failed)
			return;
		if (ok) {
			t->leg->rt[p->idx] = RT_ACCEPTED;
			t->naccepted++;
		} else if (too_many_recipients(r)) {
			t->leg->rt[p->idx] = RT_NEXT_TXN;
		} else {
			t->leg->rt[p->idx] = RT_RESOLVED;
			shard_emit(s, t->leg, p->idx, result_of(r->code), r->code, r->enhanced, r->text,
			           r->text_len, c, t->start_ms);
		}
		return;
	case CMD_DATA:
		if (r->code == 354) {
			t->data_started = true;
			if (t->naccepted) {
				const struct message *m = t->leg->msg;
				if (m->dkim_sig) /* header fields: no line starts with '.' */
					buf_add(&c->pbuf, m->dkim_sig, m->dkim_sig_len);
				smtp_data_stuff(&c->pbuf, m->body, m->body_len);
			}
			else
				buf_add(&c->pbuf, ".\r\n", 3); /* RFC 2920 3.1: 354 with no recipient */
			/* The content goes straight out: cmd_push would hold it behind
			 * nothing, since every earlier command was answered. */
			cmd_push(s, c, CMD_DOT, p->txn, 0, NULL, 0);
			conn_take_work(s, c); /* pipelining: next MAIL in the same write */
			return;
		}
		if (!t->mail_failed)
			txn_settle_accepted(s, c, t, r);
		c->need_rset = true;
		txn_complete(s, c, t);
		conn_take_work(s, c);
		return;
	case CMD_DOT:
	case CMD_BDAT:
		if (!t->mail_failed)
			txn_settle_accepted(s, c, t, r);
		if (!ok)
			c->need_rset = p->cmd == CMD_BDAT;
		txn_complete(s, c, t);
		conn_take_work(s, c);
		return;
	}
	ASSERT(0);
}

/* ---- input ---- */

static void process_input(struct shard *s, struct conn *c)
{
	size_t off = 0;
	while (off < c->rlen && c->state != CS_CLOSING) {
		if (c->pq_len == 0 || c->pq_sent == 0) {
			conn_failf(s, c, "server sent data nobody asked for: %.60s", c->rbuf + off);
			return;
		}
		size_t used;
		const char *err = NULL;
		int rc = smtp_reply_parse(c->rbuf + off, c->rlen - off, &c->reply, &used, &err);
		if (rc == REPLY_NEED_MORE)
			break;
		if (rc == REPLY_ERROR) {
			conn_failf(s, c, "bad reply to %s: %s", cmd_name(pq_at(c, 0)->cmd), err);
			return;
		}
		off += used;
		struct pending p = *pq_at(c, 0);
		c->pq_head = (c->pq_head + 1) % PQ_MAX;
		c->pq_len--;
		c->pq_sent--;
		if (!(c->pipelining && s->cfg->use_pipelining))
			send_next_held(c);
		else if (c->pq_sent == c->pq_len)
			c->hold.len = 0;
		handle_reply(s, c, &p, &c->reply);
		rearm_timer(s, c);
	}
	if (c->state == CS_CLOSING)
		return;
	if (off) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
}

void conn_on_cqe(struct shard *s, struct conn *c, const struct ring_cqe *cqe)
{
	unsigned op = ring_ud_op(cqe->user_data);
	ASSERT(c->ops > 0);
	c->ops--;
	if (op == OP_CLOSE) {
		conn_release(s, c);
		return;
	}
	if (op == OP_CANCEL || c->state == CS_CLOSING) {
		if (op == OP_SEND)
			c->sending = false;
		if (op == OP_RECV)
			c->receiving = false;
		maybe_close_fd(s, c);
		return;
	}
	switch (op) {
	case OP_CONNECT:
		if (cqe->res < 0) {
			conn_failf(s, c, "connect to %s failed: %s", c->peer, strerror(-cqe->res));
			return;
		}
		note_source(c);
		c->state = CS_GREETING;
		c->pq_head = c->pq_len = c->pq_sent = 0;
		cmd_push(s, c, CMD_BANNER, 0, 0, NULL, 0);
		start_recv(s, c);
		break;
	case OP_RECV:
		c->receiving = false;
		if (cqe->res <= 0) {
			if (c->state == CS_QUITTING) {
				enter_closing(s, c);
				return;
			}
			conn_failf(s, c, "connection lost%s%s while waiting for reply to %s",
			           cqe->res ? ": " : " (closed by server)",
			           cqe->res ? strerror(-cqe->res) : "",
			           c->pq_len ? cmd_name(pq_at(c, 0)->cmd) : "nothing");
			return;
		}
		c->rlen += (size_t)cqe->res;
		process_input(s, c);
		start_recv(s, c);
		break;
	case OP_SEND:
		c->sending = false;
		if (cqe->res < 0) {
			conn_failf(s, c, "send failed: %s", strerror(-cqe->res));
			return;
		}
		c->woff += (size_t)cqe->res;
		if (c->woff < c->wbuf.len) {
			ring_send(s->ring, c->fd, c->wbuf.p + c->woff, c->wbuf.len - c->woff, ud(c, OP_SEND));
			c->ops++;
			c->sending = true;
			return;
		}
		c->wbuf.len = 0;
		c->woff = 0;
		break;
	}
	flush_output(s, c);
}

void conn_on_timer(struct shard *s, struct conn *c)
{
	if (c->state == CS_CLOSING || c->state == CS_FREE)
		return;
	if (c->state == CS_CONNECTING) {
		conn_failf(s, c, "connect to %s timed out", c->peer);
	} else if (c->pq_len) {
		conn_failf(s, c, "timeout after %d s waiting for reply to %s",
		           cmd_timeout(s, pq_at(c, 0)->cmd) / 1000, cmd_name(pq_at(c, 0)->cmd));
	} else if (c->state == CS_READY) {
		conn_shutdown(s, c, true); /* idle */
	} else {
		enter_closing(s, c);
	}
}
