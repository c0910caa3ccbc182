/* shards/smtp_client.c - one outbound SMTP connection: connect, banner,
 * EHLO (HELO fallback), then transactions, pipelined per RFC 2920 when the
 * server offers it: [RSET] MAIL RCPT.. DATA in one write, and after the 354
 * the content, the final dot and the next message's MAIL RCPT.. DATA in
 * one write. BDAT LAST (RFC 3030) replaces DATA when CHUNKING is offered
 * and PIPELINING is not (it saves a round trip in lock-step; see below).
 * Replies are matched to commands by counting (the pq queue), a deadline
 * per awaited reply lives in the shard's timer wheel.
 *
 * Any trouble (refused connect, garbage, timeout, close) ends the
 * connection and defers every recipient whose fate is not yet known:
 * never a crash, never a lost recipient. A connection that fails before
 * completing a transaction counts against its destination (shard.c backs
 * it off).
 *
 * THE INVARIANT. A recipient is `delivered` only when the server
 * acknowledged the end of that message's data (the reply to the final
 * dot, or to BDAT LAST) on a connection whose reply stream is in step
 * with the commands sent. In step means, for every reply:
 *  - a command is waiting for it (pq_len > 0), and the oldest one is the
 *    one it answers (matching by counting, RFC 2920);
 *  - that command's bytes went to the kernel before the reply's bytes
 *    were reaped (REPLY_MAY_ANSWER: a reply cannot answer a command not
 *    yet sent, e.g. "354" then "250" in one read cannot acknowledge the
 *    content we have not written);
 *  - the reply is one that command can get (reply_fits: only 354
 *    continues DATA, and DATA gets nothing but 354, 4xx or 5xx; no other
 *    command gets a 3xx).
 * Anything else means the stream is out of step: the connection fails and
 * every transaction not yet acknowledged is deferred. Refusals of MAIL
 * and RCPT are held (RT_REFUSED) until the reply to DATA or BDAT shows the
 * stream in step, so a shifted reply never bounces the wrong recipient.
 * When commands are queued on a connection that has every earlier one
 * answered (after a 354, a lock-step reply, on an idle connection), the
 * socket must hold no unread byte until they are submitted
 * (conn_check_quiet, just before the ring submits). With PIPELINING the
 * content goes by DATA, never BDAT: a shifted RCPT reply fits BDAT LAST,
 * while only the 354 fits DATA. Residual, as with any SMTP client: a
 * server that sends an unsolicited reply between that check and the
 * moment the kernel sends our bytes (microseconds on an idle machine,
 * milliseconds when the shard thread is preempted), or after our next
 * command went out, cannot be told from one that answers it (TCP says
 * nothing of what the server read); with DATA the 354 check still catches
 * a shift. */
#define _GNU_SOURCE
#include "conn.h"
#include "smtp_output.h"
#include "../engine/lib/envelope.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define RBUF_MIN 4096
#define ADDR_DEAD_MS 60000   /* an address that failed to connect/greet is tried last for this long */

static void conn_noted(struct shard *s, struct conn *c);

/* ---- states and the trace ---- */

static const char *const state_names[] = {
	[CS_FREE] = "free", [CS_CONNECTING] = "connecting", [CS_GREETING] = "greeting",
	[CS_READY] = "ready", [CS_QUITTING] = "quitting", [CS_CLOSING] = "closing",
};

/* --trace smtp: one line per event, "time shardN/slot peer DIR text";
 * DIR is '>' sent, '<' received, '*' a state, '!' a failure. Nothing is
 * formatted when the trace is off. */
#define TRACING(s) ((s)->cfg->trace_smtp)

static void trace_line(struct shard *s, const struct conn *c, char dir, const char *p, size_t n)
{
	int64_t now = now_real_ms();
	buf_add_utc(&s->trace, "%H:%M:%S", now);
	buf_printf(&s->trace, ".%03lld shard%u/%u %s %c ", (long long)(now % 1000), s->index,
	           c->slot, c->peer, dir);
	buf_add_escaped(&s->trace, p, n); /* a multi-line reply's lines show as \n */
	buf_add(&s->trace, "\n", 1);
}

static void tracef(struct shard *s, const struct conn *c, char dir, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void tracef(struct shard *s, const struct conn *c, char dir, const char *fmt, ...)
{
	char line[SMTP_REPLY_TEXT_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	trace_line(s, c, dir, line, n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* A blocking write to stderr: the trace is for debugging a provider, and
 * a slow reader of stderr slows the shard while it is on. */
void conn_trace_flush(struct shard *s)
{
	if (s->trace.len)
		write_all(2, s->trace.p, s->trace.len); /* stderr gone: the trace is lost, nothing else */
	s->trace.len = 0;
}

/* The one door for state changes: the destination's connection counts
 * (nconns: open or opening; nready: past EHLO) follow from the states. */
static void conn_enter(struct shard *s, struct conn *c, enum conn_state to)
{
	static const unsigned allowed[] = {
		[CS_FREE] = 1u << CS_CONNECTING,
		[CS_CONNECTING] = 1u << CS_GREETING | 1u << CS_CLOSING,
		[CS_GREETING] = 1u << CS_READY | 1u << CS_CLOSING,
		[CS_READY] = 1u << CS_QUITTING | 1u << CS_CLOSING,
		[CS_QUITTING] = 1u << CS_CLOSING,
		[CS_CLOSING] = 1u << CS_FREE,
	};
	enum conn_state from = c->state;
	ASSERT(allowed[from] & (1u << to));
	int open = (to != CS_FREE && to != CS_CLOSING) - (from != CS_FREE && from != CS_CLOSING);
	int ready = (to == CS_READY || to == CS_QUITTING) - (from == CS_READY || from == CS_QUITTING);
	if (open || ready) {
		struct dest *d = &s->dests[c->dest];
		ASSERT((open >= 0 || d->nconns > 0) && (ready >= 0 || d->nready > 0));
		d->nconns = open > 0 ? d->nconns + 1 : open < 0 ? d->nconns - 1 : d->nconns;
		if (open)
			throttle_conn_count(d, open);
		d->nready = ready > 0 ? d->nready + 1 : ready < 0 ? d->nready - 1 : d->nready;
	}
	c->state = to;
	if (TRACING(s))
		tracef(s, c, '*', "%s -> %s", state_names[from], state_names[to]);
}

static const char *cmd_name(uint8_t cmd)
{
	static const char *names[] = { "?", "banner", "EHLO", "HELO", "RSET", "MAIL", "RCPT",
	                               "DATA", "end of data", "BDAT", "QUIT", "STARTTLS",
	                               "TLS handshake" };
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
	case CMD_STARTTLS: case CMD_HANDSHAKE: return t->ehlo;
	}
	return t->mail;
}

static void conn_failf(struct shard *s, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static uint64_t ud(const struct conn *c, unsigned op)
{
	return ring_ud(op, c->slot, c->gen);
}

/* The pipeline queue. A transaction needs at most max-recipients + 3
 * entries (RSET, MAIL, RCPT.., DATA, and the dot), two may be open, plus
 * QUIT: bounded by the configuration, which caps recipients at 1,000. */
#define PQ_BOUND 4096
#define PIPELINED(s, c) ((c)->pipelining && (s)->cfg->use_pipelining)
#define ALL_SENT(c) ((c)->pq_sent == (c)->pq_len)
/* The oldest awaited command went to the kernel before the bytes in hand
 * were reaped: a reply in them may answer it. */
#define REPLY_MAY_ANSWER(s, c) \
	((c)->pq_len > 0 && (c)->pq_flushed > 0 && pq_at(c, 0)->epoch < (s)->reap_submits)

static struct pending *pq_at(struct conn *c, unsigned i)
{
	return &c->pq[(c->pq_head + i) & (c->pq_cap - 1)];
}

static void pq_grow(struct conn *c)
{
	unsigned cap = c->pq_cap ? c->pq_cap * 2 : 64;
	ASSERT(cap <= PQ_BOUND);
	struct pending *q = xmalloc(cap * sizeof(*q));
	for (unsigned i = 0; i < c->pq_len; i++)
		q[i] = *pq_at(c, i);
	free(c->pq);
	c->pq = q;
	c->pq_cap = cap;
	c->pq_head = 0;
}

static void pq_pop(struct conn *c)
{
	ASSERT(c->pq_len > 0 && c->pq_sent > 0 && c->pq_flushed > 0);
	c->pq_head = (c->pq_head + 1) & (c->pq_cap - 1);
	c->pq_len--;
	c->pq_sent--;
	c->pq_flushed--;
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

/* Not yet with the kernel: no reply can answer it (REPLY_MAY_ANSWER). */
#define NOT_SENT UINT64_MAX

/* How far the output stream is on the ring (in flight or sent) and with
 * the kernel, in plaintext bytes. Through TLS only whole records count: a
 * server cannot read a command before the record that holds it is in. */
static uint64_t wire_inflight_end(const struct conn *c)
{
	return c->tls ? c->p_inflight_end : c->out.inflight_end;
}

static uint64_t wire_sent(const struct conn *c)
{
	return c->tls ? c->p_sent : c->out.sent;
}

/* A command whose bytes all are in the send just prepared was sent at
 * this epoch; one whose bytes end beyond it (a generation of more than
 * IOV_MAX segments goes in several sendmsg; through TLS, plaintext not yet
 * encrypted) is not sent yet. */
static void stamp_sent(struct conn *c, struct pending *p, uint64_t epoch)
{
	p->epoch = p->end <= wire_inflight_end(c) ? epoch : NOT_SENT;
}

/* A send went to the ring: commands not yet all with the kernel are
 * stamped again, those added since the last one for the first time. */
static void stamp_submitted(struct shard *s, struct conn *c)
{
	uint64_t epoch = ring_submits(s->ring);
	for (unsigned i = 0; i < c->pq_flushed; i++) {
		struct pending *p = pq_at(c, i);
		if (p->end > wire_sent(c))
			stamp_sent(c, p, epoch);
	}
	for (; c->pq_flushed < c->pq_sent; c->pq_flushed++)
		stamp_sent(c, pq_at(c, c->pq_flushed), epoch);
}

static void tls_send(struct shard *s, struct conn *c);

/* Every command added since the last flush goes to the ring: note when
 * (see REPLY_MAY_ANSWER). Read after ring_sendmsg, which may submit on its
 * own. */
static void flush_output(struct shard *s, struct conn *c)
{
	if (c->tls) {
		tls_send(s, c);
		return;
	}
	if (c->out.sending || !out_has_next(&c->out) || c->state == CS_CLOSING)
		return;
	bool none_outstanding = c->pq_flushed == 0;
	ring_sendmsg(s->ring, c->fd, out_flush(&c->out), ud(c, OP_SEND));
	c->ops++;
	uint64_t epoch = ring_submits(s->ring);
	for (; c->pq_flushed < c->pq_sent; c->pq_flushed++)
		stamp_sent(c, pq_at(c, c->pq_flushed), epoch);
	if (none_outstanding && !c->quiet_pending && s->pool.nquiet < s->pool.max) {
		/* Every earlier command is answered: until this goes out, the
		 * server has nothing to say (conn_check_quiet looks). */
		c->quiet_pending = true;
		c->quiet_epoch = epoch;
		s->pool.quiet[s->pool.nquiet++] = (struct slot_ref){ c->slot, c->gen };
	}
}

void conn_check_quiet(struct shard *s)
{
	for (unsigned i = 0; i < s->pool.nquiet; i++) {
		struct conn *c = s->pool.conns[s->pool.quiet[i].slot];
		if (c->gen != s->pool.quiet[i].gen)
			continue;
		c->quiet_pending = false;
		int n = 0;
		/* Only while what we queued is still unsubmitted: after a submit a
		 * fast server may already have answered it. */
		if (c->state == CS_CLOSING || c->state == CS_FREE || ring_submits(s->ring) != c->quiet_epoch)
			continue;
		if (ioctl(c->fd, FIONREAD, &n) == 0 && n > 0) {
			conn_failf(s, c, "server sent data nobody asked for (%d bytes before our next command)", n);
			conn_noted(s, c); /* its destination looks again */
		}
	}
	s->pool.nquiet = 0;
}

/* Room for replies after what rbuf holds. */
static void rbuf_room(struct conn *c)
{
	if (c->rcap - c->rlen < RBUF_MIN / 2) {
		c->rcap = c->rcap ? c->rcap * 2 : RBUF_MIN;
		c->rbuf = xrealloc(c->rbuf, c->rcap);
	}
}

static void start_recv(struct shard *s, struct conn *c)
{
	if (c->receiving || c->state == CS_CLOSING)
		return;
	if (c->tls) { /* ciphertext: into the TLS input */
		size_t cap;
		void *p = tls_in_space(c->tls, &cap);
		ring_recv(s->ring, c->fd, p, cap, ud(c, OP_RECV));
	} else {
		rbuf_room(c);
		ring_recv(s->ring, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, ud(c, OP_RECV));
	}
	c->ops++;
	c->receiving = true;
}

static bool may_send_now(const struct shard *s, const struct conn *c)
{
	if (PIPELINED(s, c))
		return true;
	return c->pq_len == 0; /* lock-step: one command, one reply */
}

/* ---- output: commands copied, content referenced (smtp_output.c) ---- */

/* Adds the leg's message content to the output; the leg (and so its
 * message) stays until the send that carries it has ended (wire_release /
 * drop_unsent). */
static void add_content(struct shard *s, struct conn *c, struct leg *leg, bool stuff)
{
	(void)s;
	shard_leg_hold(leg);
	out_content(&c->out, leg->msg, leg, stuff);
}

static void release_refs(struct shard *s, void **refs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		shard_leg_release(s, refs[i]);
}

/* Nothing of the wire generation is in flight any more. */
static void wire_release(struct shard *s, struct conn *c)
{
	void **refs;
	unsigned n = out_wire_done(&c->out, &refs);
	release_refs(s, refs, n);
}

/* The connection ends: what was never handed to the ring never will be. */
static void drop_unsent(struct shard *s, struct conn *c)
{
	void **refs;
	unsigned n = out_drop_next(&c->out, &refs);
	release_refs(s, refs, n);
	c->hold.len = 0;
}

/* The bytes of one command (and, for BDAT, the content after its line). */
static void cmd_bytes_out(struct shard *s, struct conn *c, struct pending *p, const char *bytes,
                          size_t len)
{
	if (len)
		out_add(&c->out, bytes, len);
	if (p->content)
		add_content(s, c, c->txn[p->txn].leg, false);
	p->end = c->out.queued; /* the dot: the content added before it */
	c->pq_sent++;
}

/* Queues a command (bytes may be NULL for the banner) expecting one reply;
 * content: BDAT's, sent right after its line. */
static void cmd_push(struct shard *s, struct conn *c, uint8_t cmd, uint8_t txn, uint32_t idx,
                     const char *bytes, size_t len, bool content)
{
	if (c->pq_len == c->pq_cap)
		pq_grow(c);
	bool was_empty = c->pq_len == 0;
	if (TRACING(s) && len) {
		trace_line(s, c, '>', bytes, len - 2); /* without its CRLF */
		if (content)
			tracef(s, c, '>', "[content, %zu bytes]",
			       message_content_len(c->txn[txn].leg->msg));
	}
	struct pending *p = pq_at(c, c->pq_len);
	memset(p, 0, sizeof(*p));
	p->cmd = cmd;
	p->txn = txn;
	p->idx = idx;
	p->content = content;
	bool send_now = ALL_SENT(c) && may_send_now(s, c);
	c->pq_len++;
	if (cmd == CMD_BANNER || cmd == CMD_HANDSHAKE) { /* the connection itself asked: "sent" at once */
		ASSERT(c->pq_len == 1);
		c->pq_sent = c->pq_flushed = 1;
	} else if (send_now) {
		cmd_bytes_out(s, c, p, bytes, len);
	} else {
		p->off = (uint32_t)c->hold.len;
		p->len = (uint32_t)len;
		buf_add(&c->hold, bytes, len);
	}
	if (was_empty)
		rearm_timer(s, c);
}

/* Lock-step servers: after a reply, send the next held command. */
static void send_next_held(struct shard *s, struct conn *c)
{
	if (!ALL_SENT(c)) {
		struct pending *p = pq_at(c, c->pq_sent);
		cmd_bytes_out(s, c, p, c->hold.p + p->off, p->len);
	}
	if (ALL_SENT(c))
		c->hold.len = 0;
}

/* A command line built with memcpy: no format parsing per command. */
struct cmd_line {
	char p[SMTP_LINE_MAX + 64];
	size_t n;
};

static void line_add(struct cmd_line *l, const char *p, size_t n)
{
	ASSERT(l->n + n <= sizeof(l->p));
	memcpy(l->p + l->n, p, n);
	l->n += n;
}

static void line_adds(struct cmd_line *l, const char *p)
{
	line_add(l, p, strlen(p));
}

static void line_num(struct cmd_line *l, uint64_t v)
{
	char d[20];
	unsigned i = sizeof(d);
	do
		d[--i] = (char)('0' + v % 10);
	while ((v /= 10));
	line_add(l, d + i, sizeof(d) - i);
}

#define CMD_LIT(s, c, cmd, txn, text) cmd_push(s, c, cmd, txn, 0, text, sizeof(text) - 1, false)

/* "VERB arg\r\n" (EHLO, HELO). */
static void cmd_with_arg(struct shard *s, struct conn *c, uint8_t cmd, const char *verb,
                         const char *arg)
{
	struct cmd_line l = { .n = 0 };
	line_adds(&l, verb);
	line_adds(&l, arg);
	line_add(&l, "\r\n", 2);
	cmd_push(s, c, cmd, 0, 0, l.p, l.n, false);
}

/* ---- refusals held until the stream is known in step ---- */

static void txn_hold(struct txn *t, uint32_t idx, const struct smtp_reply *r, uint8_t verdict)
{
	if (t->nheld == t->held_cap) {
		t->held_cap = t->held_cap ? t->held_cap * 2 : 8;
		t->held = xrealloc(t->held, t->held_cap * sizeof(*t->held));
	}
	struct held_reply *h = &t->held[t->nheld++];
	h->idx = idx;
	h->verdict = verdict;
	h->code = r->code;
	memcpy(h->enhanced, r->enhanced, sizeof(h->enhanced));
	h->text = xstrndup(r->text, r->text_len);
	h->len = r->text_len;
}

static void txn_drop_held(struct txn *t)
{
	for (uint32_t i = 0; i < t->nheld; i++)
		free(t->held[i].text);
	t->nheld = 0;
}

/* A refusal's result: its code's, unless a reply rule said otherwise
 * (verdict, see adapt_on_reply): a refusal that suspended the pair is
 * about the sender's IP, not the address: deferred, even a 5xx (a
 * blocklist answer). */
static enum result result_of(uint16_t code, uint8_t verdict)
{
	if (code >= 200 && code < 300)
		return RESULT_DELIVERED;
	if (verdict == VERDICT_BOUNCE)
		return RESULT_BOUNCED;
	if (verdict == VERDICT_DEFER || verdict == VERDICT_SUSPENDED)
		return RESULT_DEFERRED;
	return code >= 500 ? RESULT_BOUNCED : RESULT_DEFERRED;
}

/* The reply to DATA or BDAT fitted: the refusals held so far were the
 * server's word on those recipients. Log them. */
static void txn_release_held(struct shard *s, struct conn *c, struct txn *t)
{
	struct leg *leg = t->leg;
	for (uint32_t k = 0; k < t->nheld; k++) {
		const struct held_reply *h = &t->held[k];
		ASSERT(h->code >= 400 && (h->idx == HELD_MAIL || h->idx < leg->nr));
		uint32_t from = h->idx == HELD_MAIL ? 0 : h->idx;
		uint32_t to = h->idx == HELD_MAIL ? leg->nr : h->idx + 1;
		for (uint32_t i = from; i < to; i++) {
			if (leg->rt[i] == RT_RESOLVED)
				continue;
			leg->rt[i] = RT_RESOLVED;
			shard_emit(s, leg, i, result_of(h->code, h->verdict), h->code, h->enhanced, h->text, h->len,
			           c, t->start_ms);
		}
	}
	txn_drop_held(t);
}

/* ---- connection end ---- */

static void conn_release(struct shard *s, struct conn *c)
{
	c->fd = -1;
	conn_enter(s, c, CS_FREE);
	c->gen++;
	ASSERT(!c->out.sending && !out_has_next(&c->out));
	c->hold.len = 0;
	c->rlen = 0;
	c->pq_head = c->pq_len = c->pq_sent = c->pq_flushed = 0;
	tls_free(c->tls); /* nothing of it is on the ring any more */
	c->tls = NULL;
	c->tls_phase = CT_PLAIN;
	c->tls_desc[0] = 0;
	c->pt_rest = NULL;
	c->csending = false;
	buf_free(&c->cwire); /* an idle slot keeps no ciphertext storage */
	c->cwire_off = 0;
	c->marks_head = c->nmarks = 0;
	s->pool.free_slots[s->pool.nfree++] = c->slot;
}

static void conn_free(struct conn *c)
{
	out_free(&c->out);
	buf_free(&c->hold);
	tls_free(c->tls);
	buf_free(&c->cwire);
	free(c->marks);
	free(c->rbuf);
	free(c->pq);
	for (int i = 0; i < 2; i++) {
		txn_drop_held(&c->txn[i]);
		free(c->txn[i].held);
	}
	free(c);
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
	conn_enter(s, c, CS_CLOSING);
	drop_unsent(s, c);
	if (c->pt_rest) { /* through TLS its plaintext was copied: nothing points into it */
		c->pt_rest = NULL;
		wire_release(s, c);
	}
	wheel_disarm(&c->timer);
	if (c->ops > 0 && c->fd >= 0) {
		ring_cancel_fd(s->ring, c->fd, ud(c, OP_CANCEL));
		c->ops++;
	}
	maybe_close_fd(s, c);
}

static void txn_finish(struct shard *s, struct txn *t)
{
	struct leg *leg = t->leg;
	txn_drop_held(t);
	t->active = false;
	t->leg = NULL;
	atomic_fetch_sub_explicit(&s->txns_open, 1, memory_order_relaxed);
	shard_leg_done(s, leg);
}

/* The transaction ended with a reply (not a failure): recipients the
 * server had no room for go into the next transaction. */
static void txn_complete(struct shard *s, struct conn *c, struct txn *t)
{
	ASSERT(t->nheld == 0); /* released when the stream showed in step */
	if (!c->saw_421) { /* the destination works: back-off forgets */
		c->productive = true;
		dest_txn_done(&s->dests[c->dest]);
	}
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
	txn_finish(s, t);
}

/* Defers every recipient of the leg whose fate is not settled (held
 * refusals included: the stream that carried them is not trusted). */
static void leg_defer_unsettled(struct shard *s, struct conn *c, struct leg *leg, uint16_t code,
                                const char *enh, const char *why, int64_t start_ms)
{
	for (uint32_t i = 0; i < leg->nr; i++)
		if (leg->rt[i] != RT_RESOLVED) {
			leg->rt[i] = RT_RESOLVED;
			shard_emit(s, leg, i, RESULT_DEFERRED, code, enh, why, strlen(why), c, start_ms);
		}
}

/* Of the family of d's source IP (any when unbound). */
static bool addr_reachable(const struct dest *d, const struct dest_addr *a)
{
	return !d->source_len || a->sa.ss_family == d->source_sa.ss_family;
}

/* Not marked dead, and reachable from d's source IP. */
static bool addr_live(const struct shard *s, const struct dest *d, const struct dest_addr *a)
{
	return a->dead_until <= s->now && addr_reachable(d, a);
}

/* The first live address (none: the first of the source's family, else
 * the first: binding then says why it cannot be reached). */
static unsigned first_live_addr(const struct shard *s, const struct dest *d)
{
	for (unsigned i = 0; i < d->naddrs; i++)
		if (addr_live(s, d, &d->addrs[i]))
			return i;
	for (unsigned i = 0; i < d->naddrs; i++)
		if (addr_reachable(d, &d->addrs[i]))
			return i;
	return 0;
}

/* Every address of d greeted with 5xx lately: a permanent refusal
 * (RFC 5321 3.1, 4.2.1) after every MX host was tried. */
static bool dest_all_refused(const struct shard *s, const struct dest *d)
{
	for (unsigned i = 0; i < d->naddrs; i++)
		if (d->addrs[i].refused_until <= s->now)
			return false;
	return d->naddrs > 0;
}

enum fail_kind {
	FAIL_REMOTE,     /* the server or the network: counts against the destination */
	FAIL_REFUSED,    /* a 5xx greeting */
	FAIL_TLS,        /* no TLS where the policy asks for it: counts, never a cap */
	FAIL_LOCAL,      /* sluice's own doing (shutdown): counts for nothing */
};

/* The connection failed: defer what is open on it. If it never got
 * ready while others to the destination work, the server caps our
 * connections: noted, nothing more. Otherwise, if it failed before
 * completing a transaction (or heard a 421), it counts against the
 * destination: the queue waits for the next probe (another address, one
 * connection at a time) until the destination is suspended and its queue
 * deferred. A 5xx greeting from every address bounces the queue only with
 * delivery.bounce-on-5xx-greeting (as Postfix's smtp_skip_5xx_greeting,
 * the default treats it as temporary: such greetings mostly mean a
 * blocklisted IP or a connection cap, which pass). */
static void conn_abort(struct shard *s, struct conn *c, enum fail_kind kind, uint16_t code,
                       const char *enh, const char *why)
{
	if (c->state == CS_CLOSING)
		return;
	if (TRACING(s))
		tracef(s, c, '!', "%u %s", code, why);
	bool never_ready = c->state == CS_CONNECTING || c->state == CS_GREETING;
	bool unproductive = c->saw_421 || (!c->productive && (never_ready || c->msgs > 0));
	if (never_ready) { /* whatever the cause: refused, timed out, a cap, a local error */
		s->conns_failed++;
		if (s->dests[c->dest].thr)
			s->dests[c->dest].thr->failed++;
	}
	for (int i = 0; i < 2; i++) {
		struct txn *t = &c->txn[i];
		if (!t->active)
			continue;
		leg_defer_unsettled(s, c, t->leg, code, enh, why, t->start_ms);
		txn_finish(s, t);
	}
	struct dest *d = &s->dests[c->dest];
	if (never_ready && (kind == FAIL_REMOTE || kind == FAIL_REFUSED) && d->nready > 0) {
		/* Others to d work: a cap on connections (per client IP), not a
		 * dead server. Nothing counted, nothing bounced; the queue waits. */
		enter_closing(s, c);
		dest_conn_capped(s, d);
		return;
	}
	if (c->paced) { /* a reply rule slowed or suspended the pair: that is the answer */
		enter_closing(s, c);
		return;
	}
	if (never_ready && kind != FAIL_LOCAL && c->addr < d->naddrs) {
		d->addrs[c->addr].dead_until = s->now + ADDR_DEAD_MS;
		if (kind == FAIL_REFUSED)
			d->addrs[c->addr].refused_until = s->now + ADDR_DEAD_MS;
	}
	enter_closing(s, c);
	if (kind == FAIL_LOCAL || !unproductive)
		return;
	if (kind == FAIL_REFUSED && s->cfg->bounce_5xx_greeting && dest_all_refused(s, d))
		dest_settle_queue(s, d, RESULT_BOUNCED, code, enh, why, c);
	dest_conn_failed(s, d, code, enh, why); /* the queue waits for the next probe, or is
	                                         * deferred when d is suspended */
}

static void conn_failf(struct shard *s, struct conn *c, const char *fmt, ...)
{
	char why[SMTP_REPLY_TEXT_MAX + 128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	conn_abort(s, c, FAIL_REMOTE, 451, "4.4.2", why);
}

static void conn_shutdown(struct shard *s, struct conn *c, bool graceful)
{
	if (c->state == CS_CLOSING || c->state == CS_FREE)
		return;
	bool busy = c->txn[0].active || c->txn[1].active || c->pq_len;
	if (graceful && c->state == CS_READY && !busy) {
		CMD_LIT(s, c, CMD_QUIT, 0, "QUIT\r\n");
		conn_enter(s, c, CS_QUITTING);
		flush_output(s, c);
		return;
	}
	conn_abort(s, c, FAIL_LOCAL, 451, "4.4.2", "connection closed by sluice (shutting down)");
}

/* ---- opening ---- */

/* A new connection goes to the best preference that has live addresses,
 * to one of them at random, so that equal-preference MX hosts share the
 * load (RFC 5321 5.1) even when one plan serves every message. */
/* Binds the socket to the source IP before connect (a plain syscall at
 * set-up; IP_BIND_ADDRESS_NO_PORT leaves the port to connect(), so the
 * ephemeral ports of one IP are shared by every destination, not used up
 * by binds). False: the connection failed, with the reason. */
static bool bind_source(struct shard *s, struct conn *c, const struct dest *d, const struct dest_addr *a)
{
	if (!addr_reachable(d, a)) {
		conn_failf(s, c, "source IP %s cannot reach %s (address family)", d->source, c->peer);
		return false;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(c->fd, (const struct sockaddr *)&d->source_sa, d->source_len) != 0) {
		conn_failf(s, c, "cannot bind to source IP %s: %s", d->source, strerror(errno));
		return false;
	}
	return true;
}

void conn_open(struct shard *s, uint32_t dest)
{
	struct dest *d = &s->dests[dest];
	ASSERT(s->pool.nfree > 0 && d->naddrs > 0);
	unsigned ai = first_live_addr(s, d), live = 0;
	for (unsigned i = ai; i < d->naddrs && d->addrs[i].pref == d->addrs[ai].pref; i++)
		live += addr_live(s, d, &d->addrs[i]);
	if (live > 1) { /* the pick-th live address of that preference */
		unsigned pick = (unsigned)(shard_random(s) % live);
		while (!addr_live(s, d, &d->addrs[ai]) || pick--)
			ai++;
	}
	const struct dest_addr *a = &d->addrs[ai];
	struct conn *c = s->pool.conns[s->pool.free_slots[--s->pool.nfree]];
	ASSERT(c->state == CS_FREE && c->pq_len == 0);
	s->conns_opened++;
	if (d->thr)
		d->thr->opened++;
	ASSERT(!c->txn[0].active && !c->txn[1].active);
	c->dest = dest;
	c->ops = 0;
	c->esmtp = c->pipelining = c->chunking = c->eightbit = c->smtputf8 = false;
	c->size_max = 0;
	c->receiving = false;
	c->msgs = 0;
	c->productive = false;
	c->saw_421 = false;
	c->paced = false;
	c->quiet_pending = false;
	c->need_rset = false;
	c->starttls = false;
	c->source[0] = 0;
	c->addr = ai;
	smtp_reply_reset(&c->reply);
	snprintf(c->mx, sizeof(c->mx), "%s", a->mx);
	if (d->route)
		snprintf(c->peer, sizeof(c->peer), "%s", d->route->label);
	else
		sockaddr_text(&a->sa, true, c->peer, sizeof(c->peer));
	conn_enter(s, c, CS_CONNECTING);
	c->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_failf(s, c, "cannot create socket: %s", strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(c->helo, sizeof(c->helo), "%s", d->helo ? d->helo : s->cfg->helo);
	if (d->source_len && !bind_source(s, c, d, a))
		return;
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
	ASSERT(!t->active && t->nheld == 0);
	ASSERT(leg->nr > 0 && leg->nr <= PQ_BOUND / 4);
	const struct message *m = leg->msg;
	/* BDAT only in lock-step: pipelined, a shifted reply to RCPT would fit
	 * BDAT LAST as well as its own; DATA's 354 proves the stream in step
	 * before the content goes, at the same cost in round trips. */
	bool bdat = c->chunking && s->cfg->use_chunking && !PIPELINED(s, c);
	t->leg = leg;
	t->active = true;
	adapt_leg_started(s, &s->dests[c->dest], leg);
	t->mail_failed = false;
	t->data_started = false;
	t->bdat = bdat;
	t->naccepted = 0;
	t->start_ms = s->now;
	atomic_fetch_add_explicit(&s->txns_open, 1, memory_order_relaxed);
	c->msgs++;
	if (c->need_rset) {
		CMD_LIT(s, c, CMD_RSET, (uint8_t)ti, "RSET\r\n");
		c->need_rset = false;
	}
	bool utf8 = c->smtputf8 && has_non_ascii(m->sender);
	for (uint32_t i = 0; i < leg->nr && !utf8; i++)
		utf8 = c->smtputf8 && has_non_ascii(m->rcpt[leg->ri[i]]);
	struct cmd_line l = { .n = 0 };
	line_adds(&l, "MAIL FROM:<");
	line_adds(&l, m->sender);
	line_add(&l, ">", 1);
	if (c->esmtp) {
		line_adds(&l, " SIZE=");
		line_num(&l, message_content_len(m));
	}
	if (m->body_8bit && c->eightbit)
		line_adds(&l, " BODY=8BITMIME");
	if (utf8)
		line_adds(&l, " SMTPUTF8");
	line_add(&l, "\r\n", 2);
	cmd_push(s, c, CMD_MAIL, (uint8_t)ti, 0, l.p, l.n, false);
	for (uint32_t i = 0; i < leg->nr; i++) {
		if (leg->rt[i] == RT_RESOLVED) /* settled before sending (SMTPUTF8) */
			continue;
		l.n = 0;
		line_adds(&l, "RCPT TO:<");
		line_adds(&l, m->rcpt[leg->ri[i]]);
		line_add(&l, ">\r\n", 3);
		cmd_push(s, c, CMD_RCPT, (uint8_t)ti, i, l.p, l.n, false);
	}
	if (bdat) {
		l.n = 0;
		line_adds(&l, "BDAT ");
		line_num(&l, message_content_len(m));
		line_adds(&l, " LAST\r\n");
		cmd_push(s, c, CMD_BDAT, (uint8_t)ti, 0, l.p, l.n, true);
		t->data_started = true;
	} else {
		CMD_LIT(s, c, CMD_DATA, (uint8_t)ti, "DATA\r\n");
	}
}

/* A route carries every domain it matches ("*": all) at its own policy:
 * a recipient whose domain's rule asks more than this connection gives
 * waits (deferred) rather than going with less. */
static bool tls_short_of(const struct shard *s, const struct conn *c, const char *rcpt)
{
	const struct dest *d = &s->dests[c->dest];
	if (!d->route || s->cfg->ntls_rules == 0)
		return false; /* DNS destinations are made per policy (dest_for_plan) */
	enum tls_policy want = config_tls_policy(s->cfg, address_domain(rcpt), NULL);
	if (want <= TLS_POLICY_OPPORTUNISTIC)
		return false;
	return c->tls_phase != CT_ON || (want == TLS_POLICY_VERIFY && d->tls != TLS_POLICY_VERIFY);
}

/* Settles the whole leg without sending when the server cannot take it:
 * larger than its SIZE (RFC 1870), or an address that needs SMTPUTF8
 * (RFC 6531 3.2) which it does not offer; or sends it elsewhere when its
 * pair's wave or warm-up day is full (adapt.c). Returns true if so. */
static bool leg_refused_before_sending(struct shard *s, struct conn *c, struct leg *leg)
{
	const struct message *m = leg->msg;
	struct adapt_ban full;
	if (!adapt_leg_may_start(s, &s->dests[c->dest], leg, &full)) {
		shard_leg_over_budget(s, leg, &full);
		return true;
	}
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
			} else if (tls_short_of(s, c, m->rcpt[leg->ri[i]])) {
				snprintf(why, sizeof(why), "TLS %s: this route's connection is %s (give the domain "
				         "a route of its own)", tls_policy_name(config_tls_policy(
				         s->cfg, address_domain(m->rcpt[leg->ri[i]]), NULL)),
				         c->tls_phase == CT_ON ? "not verified" : "not encrypted");
				leg->rt[i] = RT_RESOLVED;
				shard_emit(s, leg, i, RESULT_DEFERRED, 451, "4.7.5", why, strlen(why), c, s->now);
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
	bool pipelined = PIPELINED(s, c);
	for (int i = 0; i < 2; i++) {
		const struct txn *t = &c->txn[i];
		if (!t->active)
			continue;
		if (!pipelined || t->bdat || !t->data_started)
			return false;
	}
	return !(c->txn[0].active && c->txn[1].active);
}

static void conn_take_work(struct shard *s, struct conn *c)
{
	if (!can_start_txn(s, c))
		return;
	struct dest *d = &s->dests[c->dest];
	/* Limit reached, or more connections than a reload allows (or none,
	 * for a route that left): QUIT when idle; schedule() opens a fresh one. */
	if (c->msgs >= dest_max_per_connection(s, d) || d->nconns > d->max_conns ||
	    (d->thr && d->thr->nconns > throttle_max_conns(d->thr)) || /* a reload or a slow-down lowered it */
	    (d->thr && throttle_suspended(s, d->thr))) { /* the provider asked for a pause */
		if (!c->txn[0].active && !c->txn[1].active)
			conn_shutdown(s, c, true);
		return;
	}
	struct leg *leg = NULL;
	unsigned budget = 64; /* bounded: refused legs do not keep the loop here */
	/* Without a token of the pair's rate it waits (schedule looks again). */
	if (d->qhead && throttle_has_message(s, d))
		while ((leg = dest_pop(d)) && leg_refused_before_sending(s, c, leg) && --budget)
			;
	if (leg && budget) {
		bool token = throttle_take_message(s, d);
		ASSERT(token); /* there was one, and the clock did not move */
		(void)token;
		txn_start(s, c, leg);
		flush_output(s, c);
	} else if (!c->txn[0].active && !c->txn[1].active && !d->qhead) {
		rearm_timer(s, c); /* idle from now (waiting for a token, it keeps the
		                    * deadline it had: a slow pair's connections end) */
	}
}

/* Settles every accepted recipient of t with the reply to DATA, the dot
 * or BDAT; the invariant is asserted here, where deliveries are born. */
static void txn_settle_accepted(struct shard *s, struct conn *c, struct txn *t,
                                const struct pending *p, const struct smtp_reply *r, uint8_t verdict)
{
	struct leg *leg = t->leg;
	enum result res = result_of(r->code, verdict);
	ASSERT(res != RESULT_DELIVERED || p->cmd == CMD_DOT || p->cmd == CMD_BDAT);
	ASSERT(res != RESULT_DELIVERED || p->epoch < s->reap_submits);
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

/* One line of the EHLO reply (on_line, as parsed: a reply may have any
 * number of lines; the keywords we know are kept, the rest dropped). */
static void ehlo_line(void *arg, uint32_t lineno, const char *p, size_t n)
{
	struct conn *c = arg;
	if (lineno == 0) /* the greeting: the server's name */
		return;
	if (n == 10 && prefix_ci(p, n, "PIPELINING"))
		c->pipelining = true;
	else if (n == 8 && prefix_ci(p, n, "CHUNKING"))
		c->chunking = true;
	else if (n == 8 && prefix_ci(p, n, "8BITMIME"))
		c->eightbit = true;
	else if (n == 8 && prefix_ci(p, n, "SMTPUTF8"))
		c->smtputf8 = true;
	else if (n == 8 && prefix_ci(p, n, "STARTTLS"))
		c->starttls = true;
	else if (n >= 4 && prefix_ci(p, n, "SIZE") && (n == 4 || p[4] == ' ')) {
		uint64_t v = 0;
		for (size_t i = 5; i < n && p[i] >= '0' && p[i] <= '9' && v < (UINT64_MAX - 9) / 10; i++)
			v = v * 10 + (uint64_t)(p[i] - '0');
		c->size_max = v;
	}
}

static void become_ready(struct shard *s, struct conn *c)
{
	conn_enter(s, c, CS_READY);
	dest_conn_ready(&s->dests[c->dest]);
	conn_take_work(s, c);
}

static void tls_failed(struct shard *s, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool tls_before_ready(struct shard *s, struct conn *c);
static void starttls_reply(struct shard *s, struct conn *c, const struct smtp_reply *r);

static void handle_greeting(struct shard *s, struct conn *c, uint8_t cmd, const struct smtp_reply *r)
{
	bool ok = r->code >= 200 && r->code < 300;
	if (cmd == CMD_BANNER && ok) {
		cmd_with_arg(s, c, CMD_EHLO, "EHLO ", c->helo);
	} else if (cmd == CMD_EHLO && ok) {
		c->esmtp = true; /* the keywords came through ehlo_line */
		if (c->tls_phase == CT_ON) {
			if (!tls_resumed(c->tls)) /* TLS 1.3 tickets came after the handshake; a
			                           * resumed session is not kept again: wolfSSL's
			                           * copy of it fails the next binder check */
				tls_save_session(c->tls);
		} else if (tls_before_ready(s, c)) {
			return;
		}
		become_ready(s, c);
	} else if (cmd == CMD_EHLO && r->code >= 500) {
		c->pipelining = c->chunking = c->eightbit = c->smtputf8 = c->starttls = false;
		c->size_max = 0;
		cmd_with_arg(s, c, CMD_HELO, "HELO ", c->helo);
	} else if (cmd == CMD_HELO && ok) {
		if (c->tls_phase != CT_ON && tls_before_ready(s, c))
			return;
		become_ready(s, c);
	} else {
		char why[SMTP_REPLY_TEXT_MAX + 64];
		snprintf(why, sizeof(why), "%s refused: %u %.*s", cmd_name(cmd), r->code, (int)r->text_len,
		         r->text);
		bool permanent = cmd == CMD_BANNER && r->code >= 500;
		conn_abort(s, c, permanent ? FAIL_REFUSED : FAIL_REMOTE, r->code,
		           r->enhanced[0] ? r->enhanced : NULL, why);
	}
}

/* Can this reply answer this command at all? (See THE INVARIANT.) */
static bool reply_fits(uint8_t cmd, uint16_t code)
{
	switch (cmd) {
	case CMD_DATA: return code == 354 || code >= 400;
	case CMD_QUIT: return true;
	default: return code < 300 || code >= 400;
	}
}

/* The reply to DATA: 354 sends the content (and, pipelining, the next
 * transaction's commands behind it); a refusal settles the transaction. */
static void handle_data_reply(struct shard *s, struct conn *c, const struct pending *p,
                              const struct smtp_reply *r, uint8_t verdict)
{
	struct txn *t = &c->txn[p->txn];
	txn_release_held(s, c, t);
	if (r->code == 354) {
		t->data_started = true;
		uint64_t before = c->out.queued;
		/* The content goes straight out: cmd_push would hold it behind
		 * nothing, since every earlier command was answered. */
		ASSERT(c->pq_len == 0);
		if (t->naccepted)
			add_content(s, c, t->leg, true);
		else
			out_add(&c->out, ".\r\n", 3); /* RFC 2920 3.1: 354 with no recipient */
		if (TRACING(s))
			tracef(s, c, '>', "[content, %llu bytes, dot-stuffed] .",
			       (unsigned long long)(c->out.queued - before));
		cmd_push(s, c, CMD_DOT, p->txn, 0, NULL, 0, false);
		conn_take_work(s, c); /* pipelining: next MAIL in the same write */
		return;
	}
	txn_settle_accepted(s, c, t, p, r, verdict);
	c->need_rset = true;
	txn_complete(s, c, t);
	conn_take_work(s, c);
}

static void handle_reply(struct shard *s, struct conn *c, const struct pending *p, const struct smtp_reply *r)
{
	struct txn *t = &c->txn[p->txn];
	bool ok = r->code >= 200 && r->code < 300;
	if (r->code == 421) /* RFC 5321 3.8: the server is closing the channel */
		c->saw_421 = true;
	/* Reply rules look at refusals only: nothing runs on a 2xx or 3xx. */
	uint8_t verdict = r->code >= 400 && s->rules.n
	                  ? adapt_on_reply(s, &s->dests[c->dest], r, c->state == CS_GREETING) : VERDICT_NONE;
	if (verdict == VERDICT_SLOWED || verdict == VERDICT_SUSPENDED)
		c->paced = true;
	if (!reply_fits(p->cmd, r->code)) {
		conn_failf(s, c, "reply out of step with the commands: %u to %s (%.*s)", r->code,
		           cmd_name(p->cmd), (int)(r->text_len < 200 ? r->text_len : 200), r->text);
		return;
	}
	if (r->code == 530 && c->tls_phase == CT_PLAIN && p->cmd >= CMD_RSET && p->cmd <= CMD_BDAT) {
		/* "must issue STARTTLS first" (or authenticate): the connection's
		 * fault, not the recipients'. Their mail is deferred, and the host
		 * is no longer marked for plaintext: the next connection tries TLS. */
		if (s->tls)
			tls_host_set_plain(s->tls, c->mx, 0);
		conn_failf(s, c, "the server refuses mail in plaintext: %u %.*s", r->code,
		           (int)(r->text_len < 200 ? r->text_len : 200), r->text);
		return;
	}
	switch (p->cmd) {
	case CMD_BANNER: case CMD_EHLO: case CMD_HELO:
		handle_greeting(s, c, p->cmd, r);
		return;
	case CMD_STARTTLS:
		starttls_reply(s, c, r);
		return;
	case CMD_QUIT:
		enter_closing(s, c);
		return;
	case CMD_RSET:
		if (!ok)
			conn_failf(s, c, "RSET refused: %u %.*s", r->code, (int)r->text_len, r->text);
		return;
	case CMD_MAIL:
		if (!ok) {
			t->mail_failed = true;
			txn_hold(t, HELD_MAIL, r, verdict);
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
			t->leg->rt[p->idx] = RT_REFUSED;
			txn_hold(t, p->idx, r, verdict);
		}
		return;
	case CMD_DATA:
		handle_data_reply(s, c, p, r, verdict);
		return;
	case CMD_DOT:
	case CMD_BDAT:
		txn_release_held(s, c, t);
		txn_settle_accepted(s, c, t, p, r, verdict);
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
		if (!c->reply.in_progress && !REPLY_MAY_ANSWER(s, c)) {
			size_t n = c->rlen - off;
			struct buf shown = { 0 };
			buf_add_escaped(&shown, c->rbuf + off, n < 60 ? n : 60);
			conn_failf(s, c, "server sent data nobody asked for: %.*s", (int)shown.len, shown.p);
			buf_free(&shown);
			return;
		}
		size_t used;
		const char *err = NULL;
		struct pending p = *pq_at(c, 0);
		bool ehlo = p.cmd == CMD_EHLO;
		c->reply.on_line = ehlo ? ehlo_line : NULL;
		c->reply.on_line_arg = c;
		int rc = smtp_reply_parse(c->rbuf + off, c->rlen - off, &c->reply, &used, &err);
		off += used;
		if (rc == REPLY_NEED_MORE)
			break;
		if (rc == REPLY_ERROR) {
			conn_failf(s, c, "bad reply to %s: %s", cmd_name(p.cmd), err);
			return;
		}
		if (TRACING(s)) { /* the whole text, NULs and all */
			char line[sizeof(c->reply.text) + 8];
			size_t n = (size_t)snprintf(line, sizeof(line), "%u ", c->reply.code);
			size_t t = c->reply.text_len < sizeof(line) - n ? c->reply.text_len : sizeof(line) - n;
			memcpy(line + n, c->reply.text, t);
			trace_line(s, c, '<', line, n + t);
		}
		pq_pop(c);
		if (!PIPELINED(s, c))
			send_next_held(s, c);
		else if (ALL_SENT(c))
			c->hold.len = 0;
		handle_reply(s, c, &p, &c->reply);
		rearm_timer(s, c);
		if (c->tls_phase == CT_HANDSHAKE && off < c->rlen && c->state != CS_CLOSING) {
			/* RFC 3207 and CVE-2011-0411: what came with the 220 was sent
			 * in clear before TLS; never read as the server's word */
			tls_failed(s, c, "handshake failed: the server sent %zu bytes after its 220 to "
			           "STARTTLS, before the handshake (STARTTLS injection?)", c->rlen - off);
			return;
		}
	}
	if (c->state == CS_CLOSING)
		return;
	if (off) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
}


/* ---- STARTTLS (RFC 3207) ----
 * After the EHLO reply offers it and the destination's policy wants it,
 * STARTTLS goes alone (nothing is queued behind it); on 220 the handshake
 * runs through the shard's TLS context (engine/lib/tls.c: wolfSSL on
 * memory buffers, so ciphertext moves only through this ring), then
 * everything the server said before is forgotten and EHLO goes again.
 * Output: the plaintext generations of c->out are encrypted in records of
 * at most TLS_RECORD_MAX, up to TLS_WINDOW ahead of the kernel; each
 * record's ends are kept (struct rec_mark) so that a command counts as
 * sent only once the whole record holding it went to the kernel (see
 * THE INVARIANT: REPLY_MAY_ANSWER works unchanged, in plaintext
 * positions). The quiet check (FIONREAD) is plaintext's only: through TLS
 * the socket also carries records that are not replies (session tickets),
 * and only the server itself can write into the TLS stream. Residual: a
 * reply is checked when its record is decrypted, so a record whose first
 * bytes arrived before a command was submitted and whose last bytes came
 * after is judged by the later arrival (TLS 1.3 hides which records are
 * replies: tickets travel as application data too); the 354 and the
 * reply_fits checks still hold. */
#define TLS_WINDOW (256u << 10)

static __thread char tls_stage[TLS_RECORD_MAX];

/* The name TLS sends (SNI) and verifies: a route's tls-name, else its
 * domain (not "*"); a DNS destination's MX host name. NULL: none. */
static const char *conn_tls_name(const struct shard *s, const struct conn *c)
{
	const struct route *r = s->dests[c->dest].route;
	if (!r)
		return c->mx;
	if (r->tls_name)
		return r->tls_name;
	return strcmp(r->domain, "*") != 0 ? r->domain : NULL;
}

static void tls_failed(struct shard *s, struct conn *c, const char *fmt, ...)
{
	char what[320], why[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	enum tls_policy pol = s->dests[c->dest].tls;
	snprintf(why, sizeof(why), "TLS %s: %s", tls_policy_name(pol), what);
	if (c->tls)
		tls_forget_session(c->tls); /* in case resuming was the trouble */
	if (pol == TLS_POLICY_OPPORTUNISTIC && s->cfg->tls_plain_fallback && s->tls) {
		/* a new connection to this host goes in plaintext for a while */
		tls_host_set_plain(s->tls, c->mx, s->now + s->cfg->tls_plain_fallback_ms);
		s->tls_counters[2]++;
		if (TRACING(s))
			tracef(s, c, '!', "%s; plaintext to %s for %d s", why, c->mx,
			       s->cfg->tls_plain_fallback_ms / 1000);
		conn_abort(s, c, FAIL_LOCAL, 451, "4.7.5", why);
		return;
	}
	conn_abort(s, c, FAIL_TLS, 451, strstr(what, "not offered") ? "4.7.4" : "4.7.5", why);
}

/* After EHLO (or HELO) in plaintext. True when the connection is not
 * ready: STARTTLS went, or the policy refused the connection. */
static bool tls_before_ready(struct shard *s, struct conn *c)
{
	enum tls_policy pol = s->dests[c->dest].tls;
	if (pol == TLS_POLICY_NONE || c->tls_phase != CT_PLAIN)
		return false;
	if (pol == TLS_POLICY_OPPORTUNISTIC && (!s->tls || tls_host_plain_until(s->tls, c->mx, s->now)))
		return false;
	if (c->starttls) {
		CMD_LIT(s, c, CMD_STARTTLS, 0, "STARTTLS\r\n");
		return true;
	}
	if (pol == TLS_POLICY_OPPORTUNISTIC)
		return false;
	tls_failed(s, c, "not offered");
	return true;
}

static void starttls_reply(struct shard *s, struct conn *c, const struct smtp_reply *r)
{
	const struct dest *d = &s->dests[c->dest];
	if (r->code == 421) { /* closing: nothing more on this connection */
		conn_failf(s, c, "STARTTLS refused: %u %.*s", r->code,
		           (int)(r->text_len < 200 ? r->text_len : 200), r->text);
		return;
	}
	if (r->code != 220) {
		if (d->tls == TLS_POLICY_OPPORTUNISTIC) { /* RFC 3207 4: go on without */
			become_ready(s, c);
			return;
		}
		tls_failed(s, c, "not offered (STARTTLS refused: %u %.*s)", r->code,
		           (int)(r->text_len < 200 ? r->text_len : 200), r->text);
		return;
	}
	const char *name = conn_tls_name(s, c);
	const char *verify = d->tls != TLS_POLICY_VERIFY ? NULL
	                   : name ? name : d->route ? d->route->host : c->mx;
	c->tls = s->tls ? tls_client_new(s->tls, name, verify, c->mx) : NULL;
	if (!c->tls) {
		tls_failed(s, c, "handshake failed: %s", s->tls ? "cannot start TLS" : s->tls_ctx_error);
		return;
	}
	c->tls_phase = CT_HANDSHAKE;
	c->p_sent = c->p_inflight_end = c->out.queued; /* the STARTTLS line was answered: all sent */
	c->c_sent = 0;
	c->cwire_off = 0;
	c->cwire.len = 0;
	c->marks_head = c->nmarks = 0;
	cmd_push(s, c, CMD_HANDSHAKE, 0, 0, NULL, 0, false);
	if (tls_handshake(c->tls) == TLS_FAIL) /* the ClientHello goes with flush_output */
		tls_failed(s, c, "handshake failed: %s", tls_error(c->tls));
}

static void tls_established(struct shard *s, struct conn *c)
{
	ASSERT(c->pq_len == 1 && pq_at(c, 0)->cmd == CMD_HANDSHAKE);
	pq_pop(c);
	c->tls_phase = CT_ON;
	bool resumed = tls_resumed(c->tls);
	s->tls_counters[resumed ? 1 : 0]++;
	tls_describe(c->tls, c->tls_desc, sizeof(c->tls_desc));
	if (TRACING(s))
		tracef(s, c, '*', "TLS %s%s", c->tls_desc, resumed ? " (resumed)" : "");
	/* RFC 3207 4.2: forget what the server said in clear; EHLO again */
	c->esmtp = c->pipelining = c->chunking = c->eightbit = c->smtputf8 = c->starttls = false;
	c->size_max = 0;
	cmd_with_arg(s, c, CMD_EHLO, "EHLO ", c->helo);
}

/* Ciphertext came in: the handshake goes on, or records become replies. */
static void tls_input(struct shard *s, struct conn *c)
{
	if (c->tls_phase == CT_HANDSHAKE) {
		int rc = tls_handshake(c->tls);
		if (rc == TLS_FAIL) {
			tls_failed(s, c, "%s%s", tls_cert_failed(c->tls) ? "" : "handshake failed: ",
			           tls_error(c->tls));
			return;
		}
		if (rc == TLS_AGAIN)
			return;
		tls_established(s, c);
	}
	while (c->state != CS_CLOSING) {
		rbuf_room(c);
		long n = tls_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (n == 0)
			return;
		if (n == TLS_CLOSED && c->state == CS_QUITTING) {
			enter_closing(s, c);
			return;
		}
		if (n < 0) {
			conn_failf(s, c, "TLS: %s while waiting for reply to %s", tls_error(c->tls),
			           c->pq_len ? cmd_name(pq_at(c, 0)->cmd) : "nothing");
			return;
		}
		c->rlen += (size_t)n;
		process_input(s, c);
	}
}

static void mark_push(struct conn *c, uint64_t plain_end, uint64_t cipher_end)
{
	if (c->nmarks == c->marks_cap && c->marks_head > 0) {
		memmove(c->marks, c->marks + c->marks_head, (c->nmarks - c->marks_head) * sizeof(*c->marks));
		c->nmarks -= c->marks_head;
		c->marks_head = 0;
	}
	if (c->nmarks == c->marks_cap) {
		c->marks_cap = c->marks_cap ? c->marks_cap * 2 : 16;
		c->marks = xrealloc(c->marks, c->marks_cap * sizeof(*c->marks));
	}
	c->marks[c->nmarks++] = (struct rec_mark){ plain_end, cipher_end };
}

/* Encrypts queued plaintext until TLS_WINDOW of ciphertext waits. False
 * when the connection failed. */
static bool tls_encrypt(struct shard *s, struct conn *c)
{
	while (tls_out_pending(c->tls) < TLS_WINDOW) {
		if (!c->pt_rest) {
			if (!out_has_next(&c->out))
				return true;
			c->pt_rest = out_flush(&c->out);
		}
		const struct msghdr *m = c->pt_rest;
		const char *p = m->msg_iov[0].iov_base;
		size_t n = m->msg_iov[0].iov_len;
		if (n < TLS_RECORD_MAX && m->msg_iovlen > 1) { /* pieces: one record of them */
			n = 0;
			for (size_t i = 0; i < m->msg_iovlen && n < TLS_RECORD_MAX; i++) {
				size_t k = m->msg_iov[i].iov_len < TLS_RECORD_MAX - n ? m->msg_iov[i].iov_len
				                                                      : TLS_RECORD_MAX - n;
				memcpy(tls_stage + n, m->msg_iov[i].iov_base, k);
				n += k;
			}
			p = tls_stage;
		} else if (n > TLS_RECORD_MAX) {
			n = TLS_RECORD_MAX;
		}
		if (tls_write(c->tls, p, n) != TLS_OK) {
			conn_failf(s, c, "TLS: cannot encrypt: %s", tls_error(c->tls));
			return false;
		}
		mark_push(c, c->out.sent + n, tls_out_total(c->tls));
		c->pt_rest = out_sent(&c->out, n);
		if (!c->pt_rest) /* copied into records: the content is free to go */
			wire_release(s, c);
	}
	return true;
}

static void tls_send(struct shard *s, struct conn *c)
{
	/* one send at a time; a plaintext one (the STARTTLS line) may still be out */
	if (c->csending || (c->out.sending && !c->pt_rest) || c->state == CS_CLOSING)
		return;
	if (c->tls_phase == CT_ON && !tls_encrypt(s, c))
		return;
	if (tls_out_pending(c->tls) == 0)
		return;
	c->cwire.len = 0;
	c->cwire_off = 0;
	tls_out_take(c->tls, &c->cwire);
	uint64_t inflight_end = c->c_sent + c->cwire.len;
	for (unsigned i = c->marks_head; i < c->nmarks && c->marks[i].cipher_end <= inflight_end; i++)
		c->p_inflight_end = c->marks[i].plain_end;
	ring_send(s->ring, c->fd, c->cwire.p, c->cwire.len, ud(c, OP_SEND));
	c->ops++;
	c->csending = true;
	stamp_submitted(s, c);
}

static void tls_sent(struct shard *s, struct conn *c, int res)
{
	c->csending = false;
	if (res <= 0) {
		conn_failf(s, c, "send failed: %s", res ? strerror(-res) : "nothing sent");
		return;
	}
	c->cwire_off += (size_t)res;
	c->c_sent += (uint64_t)res;
	while (c->marks_head < c->nmarks && c->marks[c->marks_head].cipher_end <= c->c_sent)
		c->p_sent = c->marks[c->marks_head++].plain_end;
	if (c->cwire_off < c->cwire.len) { /* short: the rest, from now on */
		ring_send(s->ring, c->fd, c->cwire.p + c->cwire_off, c->cwire.len - c->cwire_off,
		          ud(c, OP_SEND));
		c->ops++;
		c->csending = true;
		stamp_submitted(s, c);
		return;
	}
	buf_free(&c->cwire); /* flush_output sends what waits; idle, nothing is kept */
}

/* A short send, or the next IOV_MAX segments: the rest goes again. The
 * commands whose bytes end in that rest were not all on the wire: they
 * are sent from now on, or later still when they end beyond this sendmsg. */
static void resend_rest(struct shard *s, struct conn *c, struct msghdr *rest)
{
	ring_sendmsg(s->ring, c->fd, rest, ud(c, OP_SEND));
	c->ops++;
	uint64_t epoch = ring_submits(s->ring);
	for (unsigned i = 0; i < c->pq_flushed; i++) {
		struct pending *p = pq_at(c, i);
		if (p->end > c->out.sent)
			stamp_sent(c, p, epoch);
	}
}

static void tls_input(struct shard *s, struct conn *c);
static void tls_sent(struct shard *s, struct conn *c, int res);

static void conn_event(struct shard *s, struct conn *c, const struct ring_cqe *cqe)
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
			wire_release(s, c);
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
		conn_enter(s, c, CS_GREETING);
		cmd_push(s, c, CMD_BANNER, 0, 0, NULL, 0, false);
		start_recv(s, c);
		break;
	case OP_RECV:
		c->receiving = false;
		if (cqe->res <= 0 && c->tls_phase == CT_HANDSHAKE) {
			tls_failed(s, c, "handshake failed: %s", cqe->res ? strerror(-cqe->res)
			                                                  : "the server closed the connection");
			return;
		}
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
		if (c->tls) {
			tls_in_commit(c->tls, (size_t)cqe->res);
			tls_input(s, c);
		} else {
			c->rlen += (size_t)cqe->res;
			process_input(s, c);
		}
		start_recv(s, c);
		break;
	case OP_SEND:
		if (c->csending) {
			tls_sent(s, c, cqe->res);
			break;
		}
		if (cqe->res <= 0) {
			wire_release(s, c);
			conn_failf(s, c, "send failed: %s", cqe->res ? strerror(-cqe->res) : "nothing sent");
			return;
		}
		struct msghdr *rest = out_sent(&c->out, (size_t)cqe->res);
		if (rest) {
			resend_rest(s, c, rest);
			return;
		}
		wire_release(s, c);
		break;
	}
	flush_output(s, c);
}

static void conn_deadline(struct shard *s, struct conn *c)
{
	if (c->state == CS_CLOSING || c->state == CS_FREE)
		return;
	if (c->state == CS_CONNECTING) {
		conn_failf(s, c, "connect to %s timed out", c->peer);
	} else if (c->pq_len && (pq_at(c, 0)->cmd == CMD_HANDSHAKE || pq_at(c, 0)->cmd == CMD_STARTTLS)) {
		tls_failed(s, c, "handshake failed: no answer to %s in %d s", cmd_name(pq_at(c, 0)->cmd),
		           cmd_timeout(s, pq_at(c, 0)->cmd) / 1000);
	} else if (c->pq_len) {
		conn_failf(s, c, "timeout after %d s waiting for reply to %s",
		           cmd_timeout(s, pq_at(c, 0)->cmd) / 1000, cmd_name(pq_at(c, 0)->cmd));
	} else if (c->state == CS_READY) {
		conn_shutdown(s, c, true); /* idle */
	} else {
		enter_closing(s, c);
	}
}

/* ---- the pool: the shard asks, the SMTP client does ---- */

void conn_pool_grow(struct shard *s, unsigned n)
{
	struct conn_pool *p = &s->pool;
	if (n <= p->max)
		return;
	p->conns = xrealloc(p->conns, n * sizeof(*p->conns));
	p->free_slots = xrealloc(p->free_slots, n * sizeof(*p->free_slots));
	p->quiet = xrealloc(p->quiet, n * sizeof(*p->quiet));
	p->ready_gen = xrealloc(p->ready_gen, n * sizeof(*p->ready_gen));
	memset(p->ready_gen + p->max, 0, (n - p->max) * sizeof(*p->ready_gen));
	for (unsigned i = n; i-- > p->max;) {
		p->conns[i] = xcalloc(1, sizeof(**p->conns));
		p->conns[i]->slot = i;
		p->conns[i]->fd = -1;
		p->free_slots[p->nfree++] = i;
	}
	p->max = n;
}

unsigned conn_pool_slots(const struct shard *s)
{
	return s->pool.max;
}

unsigned conn_pool_free_slots(const struct shard *s)
{
	return s->pool.nfree;
}

void conn_pool_free(struct shard *s)
{
	struct conn_pool *p = &s->pool;
	for (unsigned i = 0; i < p->max; i++)
		conn_free(p->conns[i]);
	free(p->conns);
	free(p->free_slots);
	free(p->quiet);
	free(p->ready_gen);
	memset(p, 0, sizeof(*p));
}

/* A slot reference still names a READY connection (else it is stale). */
static bool ref_live(const struct shard *s, struct slot_ref r)
{
	const struct conn *c = s->pool.conns[r.slot];
	return c->gen == r.gen && c->state == CS_READY;
}

/* Drops the ref (its connection is no longer READY, or it was reused). */
static void ref_forget(struct shard *s, struct slot_ref r)
{
	if (s->pool.ready_gen[r.slot] == r.gen + 1)
		s->pool.ready_gen[r.slot] = 0;
}

#define CONN_IDLE(c) (!(c)->txn[0].active && !(c)->txn[1].active)

/* After an event on c: a connection that got ready joins its destination's
 * ready refs; its destination, when it has a queue, is looked at. */
static void conn_noted(struct shard *s, struct conn *c)
{
	if (c->dest >= s->ndests)
		return; /* a free slot's old destination, gone with a reload */
	struct dest *d = &s->dests[c->dest];
	if (c->state == CS_READY && s->pool.ready_gen[c->slot] != c->gen + 1) {
		if (d->nready_refs == d->ready_cap) { /* full: first drop the stale ones */
			uint32_t keep = 0;
			for (uint32_t i = 0; i < d->nready_refs; i++)
				if (ref_live(s, d->ready[i]))
					d->ready[keep++] = d->ready[i];
				else
					ref_forget(s, d->ready[i]);
			d->nready_refs = keep;
		}
		if (d->nready_refs == d->ready_cap) {
			d->ready_cap = d->ready_cap ? d->ready_cap * 2 : 8;
			d->ready = xrealloc(d->ready, d->ready_cap * sizeof(*d->ready));
		}
		d->ready[d->nready_refs++] = (struct slot_ref){ c->slot, c->gen };
		s->pool.ready_gen[c->slot] = c->gen + 1;
	}
	if (d->qlen) /* an idle one with legs waiting gave up (bounded): it looks again */
		shard_dest_note(s, c->dest, c->state == CS_READY && CONN_IDLE(c));
}

bool conn_dest_give_work(struct shard *s, struct dest *d)
{
	uint32_t keep = 0;
	bool idle_left = false;
	for (uint32_t i = 0; i < d->nready_refs; i++) {
		struct slot_ref r = d->ready[i];
		struct conn *c = s->pool.conns[r.slot];
		if (ref_live(s, r) && (d->qlen || d->nconns > d->max_conns))
			conn_take_work(s, c);
		if (!ref_live(s, r)) {
			ref_forget(s, r);
			continue;
		}
		d->ready[keep++] = r;
		idle_left |= d->qlen && CONN_IDLE(c);
	}
	d->nready_refs = keep;
	return idle_left;
}

void conn_on_cqe(struct shard *s, const struct ring_cqe *cqe)
{
	uint32_t slot = ring_ud_slot(cqe->user_data);
	ASSERT(slot < s->pool.max);
	struct conn *c = s->pool.conns[slot];
	if (c->gen != ring_ud_gen(cqe->user_data))
		return; /* stale: the slot was reused */
	conn_event(s, c, cqe);
	conn_noted(s, c);
}

void conn_on_timer(struct timer *t, void *arg)
{
	struct conn *c = container_of(t, struct conn, timer);
	conn_deadline(arg, c);
	conn_noted(arg, c);
}

void conn_pool_mark_dests(const struct shard *s, bool *referenced)
{
	for (unsigned i = 0; i < s->pool.max; i++)
		if (s->pool.conns[i]->state != CS_FREE)
			referenced[s->pool.conns[i]->dest] = true;
}

void conn_pool_retarget(struct shard *s, const int32_t *map, unsigned ndests)
{
	for (unsigned i = 0; i < s->pool.max; i++) {
		struct conn *c = s->pool.conns[i];
		if (c->state == CS_FREE)
			continue;
		/* -1 (UINT32_MAX) only for a closing one whose idle destination
		 * was released: nothing looks it up any more */
		c->dest = (uint32_t)map[c->dest];
		for (int k = 0; k < 2; k++)
			if (c->txn[k].active)
				c->txn[k].leg->dest = c->dest;
		ASSERT(c->state == CS_CLOSING || c->dest < ndests);
	}
}

void conn_pool_shutdown(struct shard *s, bool graceful)
{
	for (unsigned i = 0; i < s->pool.max; i++) {
		struct conn *c = s->pool.conns[i];
		if (c->state != CS_FREE && c->state != CS_CLOSING && (c->state != CS_QUITTING || !graceful))
			conn_shutdown(s, c, graceful);
	}
}

void conn_pool_cancel_all(struct shard *s)
{
	for (unsigned i = 0; i < s->pool.max; i++) {
		struct conn *c = s->pool.conns[i];
		if (c->state != CS_FREE && c->state != CS_CLOSING)
			enter_closing(s, c); /* cancels what is in flight */
	}
}

unsigned conn_pool_ops(const struct shard *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->pool.max; i++)
		n += s->pool.conns[i]->ops;
	return n;
}

void conn_pool_close_fds(struct shard *s)
{
	for (unsigned i = 0; i < s->pool.max; i++)
		if (s->pool.conns[i]->fd >= 0)
			close(s->pool.conns[i]->fd);
}

const char *conn_mx(const struct conn *c) { return c->mx; }
const char *conn_tls(const struct conn *c) { return c->tls_phase == CT_ON ? c->tls_desc : NULL; }
const char *conn_peer(const struct conn *c) { return c->peer; }
const char *conn_source(const struct conn *c) { return c->source; }
uint32_t conn_dest(const struct conn *c) { return c->dest; }
