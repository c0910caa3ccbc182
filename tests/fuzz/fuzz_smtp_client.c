/* tests/fuzz/fuzz_smtp_client.c - libFuzzer target for the SMTP client's
 * whole state machine (shards/smtp_client.c) driven by a fuzzed server,
 * with no io_uring, no threads and no network: the ring is fake_ring.c,
 * the shard.c functions the client calls are faked below (they keep the
 * books the checks need), and the "kernel" is this file: it carries out
 * what the client submitted (connect, send - fully, partially or failing,
 * recv - with the server's bytes, cancel, close) in submission order.
 *
 * One shard, one destination (one or two addresses), one connection slot
 * (reopened up to three times while work is queued), up to four queued
 * messages of one to three recipients (bodies with dot lines, 8-bit text,
 * a DKIM signature, non-ASCII addresses, the null sender).
 *
 * The input: byte 0 = configuration (bit 0: script mode; bit 1: no
 * PIPELINING use; bit 2: no CHUNKING use; bits 3-4: messages per
 * connection 1000/1/2/3; bit 5: two addresses; bit 6: reaps in batches of
 * one, with the ring submitting on its own in between, as a full
 * submission queue makes it), byte 1 = number of messages, then a byte
 * per message (template, recipients, DKIM, non-ASCII, null sender: see
 * make_message), then (raw mode) two bytes giving the length of the
 * control bytes that follow, the server's bytes after them. The control
 * bytes: per step, the client takes work, then one byte says whether to
 * submit, whether the server speaks (when a recv waits, at any time, not
 * at all), whether time runs out (the connection's timer fires), in which
 * order completions are reaped (two values: the shard finishes, or stops
 * the connection); the "kernel" takes a byte per connect and
 * per send (ok, failing, partial). Control bytes read as zeros once spent:
 * the happy path. Raw mode: the server's bytes are taken from the input
 * as they are (a line, or a count, per speak). Script mode: a small SMTP server reads what the client wrote and
 * queues plausible replies (220, EHLO with PIPELINING/CHUNKING/SIZE/...,
 * 250, 354, 4xx, 5xx, 452 too many recipients, 221), an input byte per
 * reply picks the answer or a fault (no reply, an extra or duplicated
 * 250, a 354 out of place, garbage, a bare LF, 421 and close); the input
 * says how many of the queued bytes go out at each step. When the input
 * ends, the server closes and the harness drains: the connection must end
 * and be freed, with every operation completed.
 *
 * Checked:
 *  - THE INVARIANT (smtp_client.c): an outcome `delivered` is emitted
 *    only while a reply read by a recv is processed, and for each message
 *    the number of its transactions delivered on this connection is at
 *    most the number of complete ends of its data (dot-stuffed content
 *    then ".\r\n" after DATA, or "BDAT n LAST\r\n" and the n bytes) that
 *    were written to the connection before the server produced the
 *    bytes of that recv;
 *  - every recipient of a transaction gets exactly one outcome
 *    (delivered, deferred, bounced), or is moved to the next transaction
 *    (452 too many recipients), before the transaction is done; a
 *    transaction is done once; a recipient is final (delivered, bounced)
 *    at most once; at the end every transaction the client took is done;
 *  - the client never writes a bare LF or a bare CR, nothing after QUIT,
 *    and never changes a buffer between handing it to a send and the send;
 *  - operations only on the connection's own open socket; closed only when
 *    nothing else is in flight on it; the socket is closed at the end;
 *  - no crash, no assertion, no leak (ASan, UBSan, LSan). */
#define _GNU_SOURCE
#include "../../shards/conn.h"
#include "fake_ring.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_smtp_client: check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

/* ---- input ---- */

/* Control bytes (steps, faults, the scripted server's choices) come from
 * in[in_pos, ctl_end); in raw mode the server's bytes from
 * in[srv_pos, in_len). Past its end a stream reads as zeros: the happy
 * path (submit, speak, full sends, 2xx replies). */
static const uint8_t *in;
static size_t in_len, in_pos, ctl_end, srv_pos;

static uint8_t u8(void)
{
	return in_pos < ctl_end ? in[in_pos++] : 0;
}

/* Known, reported: after a partial send, the client takes a reply for the
 * answer to a command whose bytes are still in the unsent rest of the
 * buffer (tests/fuzz/crashes/smtp_client_partial_send_bdat). Built with
 * -DFUZZ_KNOWN_PARTIAL_SEND, sends are never partial, so that the fuzzer
 * looks for other trouble, until the client is fixed. */
#ifdef FUZZ_KNOWN_PARTIAL_SEND
#define KNOWN_PARTIAL_SEND 1
#else
#define KNOWN_PARTIAL_SEND 0
#endif
/* Known, reported: bytes that were already in the socket when the client
 * sent the end of a message's data, but that a recv submitted with (or
 * after) that send picks up, are taken for the answer to it
 * (tests/fuzz/crashes/smtp_client_early_reply_data). Built with
 * -DFUZZ_KNOWN_EARLY_REPLY, the check counts what was written up to the
 * end of the submission that completed the recv (the client's own
 * notion), until the client is fixed. */
#ifdef FUZZ_KNOWN_EARLY_REPLY
#define KNOWN_EARLY_REPLY 1
#else
#define KNOWN_EARLY_REPLY 0
#endif

/* FUZZ_SMTP_TRACE=1: say what happens (for reading a reproducer). */
static int trace = -1;

/* ---- growable bytes ---- */

struct bytes { char *p; size_t len, cap; };

static void bytes_add(struct bytes *b, const void *d, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p);
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void bytes_addf(struct bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bytes_addf(struct bytes *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	CHECK(n >= 0 && (size_t)n < sizeof(tmp));
	bytes_add(b, tmp, (size_t)n);
}

static void bytes_drop(struct bytes *b, size_t n)
{
	if (!n)
		return;
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static size_t count_occurrences(const char *hay, size_t n, const char *needle, size_t m)
{
	size_t k = 0, i = 0;
	while (hay && m && i + m <= n) {
		const char *f = memmem(hay + i, n - i, needle, m);
		if (!f)
			break;
		k++;
		i = (size_t)(f - hay) + m;
	}
	return k;
}

/* ---- the messages ---- */

#define NMSG_MAX 4
#define NRCPT_MAX 3
#define NLEG_MAX 64

struct msgrec {
	struct message *m;
	uint8_t final[NRCPT_MAX];     /* final outcomes (delivered, bounced) per recipient */
	unsigned delivered_here;      /* its transactions delivered on this connection */
	struct bytes mark_data, mark_bdat; /* the complete end of its data */
};

struct legrec {
	struct leg *leg;
	struct msgrec *mr;
	bool done, freed, delivered;
	uint8_t outcomes[NRCPT_MAX];
	bool moved[NRCPT_MAX];
};

/* ---- the world ---- */

enum pmode { PM_CMD, PM_DATA, PM_BDAT };

static struct world {
	struct shard *s;
	struct config cfg;
	struct route route;
	struct ring *ring;
	bool script, batch_split;
	struct msgrec msgs[NMSG_MAX];
	unsigned nmsgs;
	struct legrec legs[NLEG_MAX];
	unsigned nlegs;
	unsigned opens;
	/* the connection */
	int fd;
	bool fd_open;
	struct bytes wire;            /* what the client wrote on it */
	size_t quit_end;              /* 0, or where its QUIT ends */
	/* the server side of the socket: bytes not read yet, and the wire
	 * length when the server produced each */
	struct bytes sock;
	size_t *stamp;
	size_t stamp_cap;
	bool eof;                     /* the server closed: recv gets 0 once sock is empty */
	/* recvs completed, not reaped yet: the wire length their bytes followed */
	size_t recv_w[8];
	unsigned nrecv_w;
	long cur_w;                   /* while a recv's completion is handled, else -1 */
	/* script mode: the server */
	struct bytes srvq;            /* replies not spoken yet */
	bool close_after_srvq;
	size_t parse_pos;
	enum pmode pmode;
	size_t bdat_left;
} W;

/* ---- fake shard.c ---- */

/* The record of a live leg (a freed leg's memory may be reused by a new
 * one; using a freed leg is ASan's to catch). */
static struct legrec *leg_rec(const struct leg *leg)
{
	for (unsigned i = W.nlegs; i-- > 0;)
		if (W.legs[i].leg == leg && !W.legs[i].freed)
			return &W.legs[i];
	CHECK(!"unknown leg");
	return NULL;
}

static struct leg *leg_new(struct msgrec *mr, uint32_t cap)
{
	CHECK(W.nlegs < NLEG_MAX);
	struct leg *l = xcalloc(1, sizeof(*l));
	l->msg = mr->m;
	l->dest = 0;
	l->ri = xmalloc(cap * sizeof(*l->ri));
	l->rt = xcalloc(cap, 1);
	struct legrec *lr = &W.legs[W.nlegs++];
	memset(lr, 0, sizeof(*lr));
	lr->leg = l;
	lr->mr = mr;
	mr->m->legs_open++;
	return l;
}

static void leg_free(struct leg *l)
{
	free(l->ri);
	free(l->rt);
	free(l);
}

/* Sends of message content in flight (smtp_output references). */
static unsigned wire_refs;

/* As shard.c: a leg is over once done and no send of its content is in
 * flight; then its message's count drops. */
static void leg_try_free(struct legrec *lr)
{
	if (!lr->done || lr->leg->holds)
		return;
	CHECK(lr->leg->msg->legs_open > 0);
	lr->leg->msg->legs_open--;
	lr->freed = true;
	leg_free(lr->leg);
}

uint64_t shard_random(struct shard *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

void shard_emit(struct shard *s, struct leg *leg, uint32_t pos, enum result r,
                uint16_t code, const char *enhanced, const char *text, size_t text_len,
                const struct conn *c, int64_t start_ms)
{
	(void)s;
	(void)start_ms;
	struct legrec *lr = leg_rec(leg);
	if (trace)
		fprintf(stderr, "[emit] %s rcpt %u: %s %u %.*s (reply bytes after %ld of %zu written)\n",
		        leg->msg->id, leg->ri[pos], r == RESULT_DELIVERED ? "delivered" : r == RESULT_BOUNCED ? "bounced" : "deferred", code, (int)(text_len > 80 ? 80 : text_len),
		        text ? text : "", W.cur_w, W.wire.len);
	CHECK(!lr->done);
	CHECK(pos < leg->nr && pos < NRCPT_MAX);
	CHECK(!lr->moved[pos]);
	CHECK(lr->outcomes[pos] == 0); /* one outcome per recipient per transaction */
	lr->outcomes[pos]++;
	CHECK(r == RESULT_DELIVERED || r == RESULT_DEFERRED || r == RESULT_BOUNCED);
	CHECK(text_len == 0 || text);
	CHECK(!enhanced || strlen(enhanced) < 12);
	struct msgrec *mr = lr->mr;
	uint32_t rcpt = leg->ri[pos];
	CHECK(rcpt < mr->m->nrcpt);
	if (r == RESULT_DELIVERED || r == RESULT_BOUNCED) {
		CHECK(mr->final[rcpt] == 0);
		mr->final[rcpt]++;
	}
	if (r != RESULT_DELIVERED)
		return;
	/* THE INVARIANT */
	CHECK(c != NULL);
	CHECK(code >= 200 && code < 300);
	CHECK(W.cur_w >= 0); /* only a reply the client read delivers */
	if (!lr->delivered) {
		lr->delivered = true;
		mr->delivered_here++;
	}
	size_t w = (size_t)W.cur_w;
	size_t ends = count_occurrences(W.wire.p, w, mr->mark_data.p, mr->mark_data.len) +
	              count_occurrences(W.wire.p, w, mr->mark_bdat.p, mr->mark_bdat.len);
	if (mr->delivered_here > ends)
		fprintf(stderr, "fuzz_smtp_client: message %s delivered %u times on this connection, "
		        "but the end of its data was written %zu times before the server's reply\n",
		        mr->m->id, mr->delivered_here, ends);
	CHECK(mr->delivered_here <= ends);
}

void shard_leg_done(struct shard *s, struct leg *leg)
{
	(void)s;
	struct legrec *lr = leg_rec(leg);
	CHECK(!lr->done);
	for (uint32_t i = 0; i < leg->nr; i++)
		CHECK(lr->outcomes[i] == 1 || (lr->moved[i] && lr->outcomes[i] == 0));
	for (struct leg *q = s->dests[0].qhead; q; q = q->next)
		CHECK(q != leg);
	lr->done = true;
	leg_try_free(lr);
}

/* schedule() above looks at the one destination every step anyway. */
void shard_dest_note(struct shard *s, uint32_t di, bool new_work)
{
	CHECK(di < s->ndests);
	(void)new_work;
}

void shard_leg_hold(struct leg *leg)
{
	leg_rec(leg);
	leg->holds++;
	wire_refs++;
}

void shard_leg_release(struct shard *s, struct leg *leg)
{
	(void)s;
	struct legrec *lr = leg_rec(leg);
	CHECK(leg->holds > 0 && wire_refs > 0);
	leg->holds--;
	wire_refs--;
	leg_try_free(lr);
}

/* No throttle in the harness: the connection's own limits only. */
bool throttle_has_message(struct shard *s, struct dest *d) { (void)s; (void)d; return true; }
bool throttle_take_message(struct shard *s, struct dest *d) { (void)s; (void)d; return true; }
unsigned dest_max_per_connection(const struct shard *s, const struct dest *d)
{
	(void)d;
	return s->cfg->max_per_connection;
}
void throttle_conn_count(struct dest *d, int delta) { (void)d; (void)delta; }
/* Adaptation (shards/adapt.c, throttle.c): no pair, no rule, no budget here. */
unsigned throttle_max_conns(const struct throttle *t) { (void)t; return 1000; }
bool throttle_suspended(struct shard *s, const struct throttle *t) { (void)s; (void)t; return false; }
uint8_t adapt_on_reply(struct shard *s, struct dest *d, const struct smtp_reply *r, bool greeting)
{
	(void)s; (void)d; (void)r; (void)greeting;
	return VERDICT_NONE;
}
bool adapt_leg_may_start(struct shard *s, struct dest *d, struct leg *l, struct adapt_ban *full)
{
	(void)s; (void)d; (void)l; (void)full;
	return true;
}
void adapt_leg_started(struct shard *s, struct dest *d, struct leg *l) { (void)s; (void)d; (void)l; }
void shard_leg_over_budget(struct shard *s, struct leg *leg, const struct adapt_ban *full)
{
	(void)s; (void)leg; (void)full;
	abort(); /* adapt_leg_may_start never says no here */
}

void shard_leg_requeue_next(struct shard *s, struct leg *leg)
{
	struct legrec *lr = leg_rec(leg);
	uint32_t n = 0;
	for (uint32_t i = 0; i < leg->nr; i++)
		n += leg->rt[i] == RT_NEXT_TXN;
	if (n == 0)
		return;
	struct leg *l = leg_new(lr->mr, n);
	for (uint32_t i = 0; i < leg->nr; i++)
		if (leg->rt[i] == RT_NEXT_TXN) {
			CHECK(lr->outcomes[i] == 0);
			l->ri[l->nr++] = leg->ri[i];
			leg->rt[i] = RT_RESOLVED;
			lr->moved[i] = true;
		}
	dest_push_front(&s->dests[leg->dest], l);
}




void dest_conn_ready(struct dest *d)
{
	d->proven = true;
}

void dest_txn_done(struct dest *d)
{
	d->fail_streak = 0;
	d->suspended_until = 0;
}

void dest_conn_capped(struct shard *s, struct dest *d)
{
	(void)s;
	d->conn_cap = d->nready > 0 ? d->nready : 1;
}

void dest_conn_failed(struct shard *s, struct dest *d, uint16_t code, const char *enhanced,
                      const char *why)
{
	(void)s;
	CHECK(why && *why);
	CHECK(!enhanced || strlen(enhanced) < 12);
	d->fail_streak++;
	d->proven = false;
	d->fail_code = code;
}


/* ---- the socket's unread bytes (the client asks with FIONREAD) ---- */

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (W.s && fd == W.fd && request == FIONREAD) {
		CHECK(W.fd_open);
		*(int *)arg = (int)W.sock.len;
		return 0;
	}
	return (int)syscall(SYS_ioctl, fd, request, arg);
}

/* ---- the wire ---- */

static void wire_add(const char *p, size_t n)
{
	if (trace)
		fprintf(stderr, "[client wrote] %.*s\n", (int)n, p);
	CHECK(W.quit_end == 0); /* nothing after QUIT */
	size_t old = W.wire.len;
	bytes_add(&W.wire, p, n);
	const char *w = W.wire.p;
	for (size_t i = old ? old - 1 : 0; i < W.wire.len; i++) { /* (n > 0: res > 0) */
		if (w[i] == '\n')
			CHECK(i > 0 && w[i - 1] == '\r'); /* no bare LF */
		if (w[i] == '\r' && i + 1 < W.wire.len)
			CHECK(w[i + 1] == '\n');          /* no bare CR */
	}
	size_t from = old > 8 ? old - 8 : 0;
	const char *q = memmem(w + from, W.wire.len - from, "\r\nQUIT\r\n", 8);
	if (q) {
		W.quit_end = (size_t)(q - w) + 8;
		CHECK(W.quit_end == W.wire.len);
	}
}

/* ---- the scripted server ---- */

enum sk { SK_BANNER, SK_EHLO, SK_HELO, SK_MAIL, SK_RCPT, SK_DATA, SK_DOT, SK_BDAT, SK_RSET, SK_QUIT, SK_OTHER };

static void srv_ok(enum sk k)
{
	switch (k) {
	case SK_BANNER: bytes_addf(&W.srvq, "220 mx.fuzz.example ESMTP\r\n"); break;
	case SK_EHLO: {
		uint8_t o = u8();
		const char *lines[8];
		unsigned n = 0;
		lines[n++] = "mx.fuzz.example hello";
		if (!(o & 1)) lines[n++] = "PIPELINING";
		if (!(o & 2)) lines[n++] = "CHUNKING";
		if (o & 4) lines[n++] = "8BITMIME";
		if (o & 8) lines[n++] = "SMTPUTF8";
		if (o & 16) lines[n++] = (o & 32) ? "SIZE 100" : "SIZE 10000000";
		if (o & 64) lines[n++] = "ENHANCEDSTATUSCODES";
		if (o & 128) lines[n++] = "HELP";
		for (unsigned i = 0; i < n; i++)
			bytes_addf(&W.srvq, "250%c%s\r\n", i + 1 < n ? '-' : ' ', lines[i]);
		break;
	}
	case SK_DATA: bytes_addf(&W.srvq, "354 go ahead\r\n"); break;
	case SK_DOT: case SK_BDAT: bytes_addf(&W.srvq, "250 2.0.0 Ok: queued as F%zu\r\n", W.wire.len); break;
	case SK_QUIT: bytes_addf(&W.srvq, "221 2.0.0 bye\r\n"); W.close_after_srvq = true; break;
	case SK_OTHER: bytes_addf(&W.srvq, "500 5.5.2 what\r\n"); break;
	default: bytes_addf(&W.srvq, "250 2.1.0 Ok\r\n"); break;
	}
}

/* Queues the reply to a command (an input byte picks it); returns true
 * when the answer lets the client go on (for DATA: a 354). */
static bool srv_reply(enum sk k)
{
	uint8_t b = u8();
	if (trace)
		fprintf(stderr, "[server plans reply %d to command kind %d: input byte %zu]\n", b, (int)k, in_pos - 1);
	if (k == SK_QUIT) {
		srv_ok(k);
		return true;
	}
	if (b < 200) {
		srv_ok(k);
		return true;
	}
	if (b < 220) {
		bytes_addf(&W.srvq, "%s\r\n", k == SK_RCPT ? "450 4.2.0 mailbox busy" : k == SK_BANNER ?
		           "421 4.3.2 try later" : "451 4.3.0 local error");
		return false;
	}
	if (b < 236) {
		bytes_addf(&W.srvq, "%s\r\n", k == SK_RCPT ? "550 5.1.1 no such user" : k == SK_BANNER ?
		           "554 5.7.1 go away" : k == SK_EHLO ? "502 5.5.1 unknown command" :
		           "554 5.7.1 refused");
		return false;
	}
	if (k == SK_RCPT && b < 242) {
		bytes_addf(&W.srvq, "%s\r\n", b & 1 ? "452 4.5.3 Too many recipients" :
		           "452 Too many recipients");
		return false;
	}
	switch (b) {
	case 242: case 243: /* no reply at all */
		return k == SK_DATA;
	case 244: case 245: /* the reply twice */
		srv_ok(k);
		srv_ok(k);
		return true;
	case 246: /* an unsolicited 250 first */
		bytes_addf(&W.srvq, "250 2.0.0 unasked\r\n");
		srv_ok(k);
		return true;
	case 247: case 248: /* an unsolicited 250 after the reply */
		srv_ok(k);
		bytes_addf(&W.srvq, "250 2.0.0 unasked\r\n");
		return true;
	case 249: /* multi-line */
		bytes_addf(&W.srvq, "%s-first line\r\n", k == SK_DATA ? "354" : k == SK_BANNER ? "220" : "250");
		srv_ok(k);
		return true;
	case 250: /* a 354 out of place */
		bytes_addf(&W.srvq, "354 start\r\n");
		return k == SK_DATA;
	case 251: /* garbage */
		bytes_addf(&W.srvq, "hello there\r\n");
		return false;
	case 252: /* bare LF line ends */
		bytes_addf(&W.srvq, "%s\n", k == SK_DATA ? "354 go" : k == SK_BANNER ? "220 hi" : "250 ok");
		return true;
	case 253: /* 421 and close */
		bytes_addf(&W.srvq, "421 4.4.2 closing\r\n");
		W.close_after_srvq = true;
		return false;
	case 254: /* 2xx to DATA, 354 to the others */
		bytes_addf(&W.srvq, "%s\r\n", k == SK_DATA ? "250 2.0.0 data?" : "354 what");
		return false;
	default: /* an empty-text reply */
		bytes_addf(&W.srvq, "%s\r\n", k == SK_DATA ? "354" : k == SK_BANNER ? "220" : "250");
		return true;
	}
}

/* Reads what the client wrote as an SMTP server would, queueing replies. */
static void srv_parse(void)
{
	while (W.wire.p) {
		const char *w = W.wire.p + W.parse_pos;
		size_t avail = W.wire.len - W.parse_pos;
		if (W.pmode == PM_BDAT) {
			size_t n = avail < W.bdat_left ? avail : W.bdat_left;
			W.parse_pos += n;
			W.bdat_left -= n;
			if (W.bdat_left)
				return;
			W.pmode = PM_CMD;
			srv_reply(SK_BDAT);
			continue;
		}
		const char *eol = avail ? memmem(w, avail, "\r\n", 2) : NULL;
		if (!eol)
			return;
		size_t n = (size_t)(eol - w);
		W.parse_pos += n + 2;
		if (W.pmode == PM_DATA) {
			if (n == 1 && w[0] == '.') {
				W.pmode = PM_CMD;
				srv_reply(SK_DOT);
			}
			continue;
		}
		if (n >= 5 && !strncasecmp(w, "EHLO ", 5))
			srv_reply(SK_EHLO);
		else if (n >= 5 && !strncasecmp(w, "HELO ", 5))
			srv_reply(SK_HELO);
		else if (n >= 10 && !strncasecmp(w, "MAIL FROM:", 10))
			srv_reply(SK_MAIL);
		else if (n >= 8 && !strncasecmp(w, "RCPT TO:", 8))
			srv_reply(SK_RCPT);
		else if (n == 4 && !strncasecmp(w, "DATA", 4)) {
			if (srv_reply(SK_DATA))
				W.pmode = PM_DATA;
		} else if (n >= 5 && !strncasecmp(w, "BDAT ", 5)) {
			W.bdat_left = strtoul(w + 5, NULL, 10);
			W.pmode = PM_BDAT;
		} else if (n == 4 && !strncasecmp(w, "RSET", 4))
			srv_reply(SK_RSET);
		else if (n == 4 && !strncasecmp(w, "QUIT", 4))
			srv_reply(SK_QUIT);
		else
			srv_reply(SK_OTHER);
	}
}

/* ---- the kernel ---- */

static void sock_add(const char *p, size_t n)
{
	if (trace && n)
		fprintf(stderr, "[server said, after %zu bytes written] %.*s\n", W.wire.len, (int)n, p);
	if (W.sock.len + n > W.stamp_cap) {
		W.stamp_cap = (W.sock.len + n) * 2;
		W.stamp = realloc(W.stamp, W.stamp_cap * sizeof(*W.stamp));
		CHECK(W.stamp);
	}
	for (size_t i = 0; i < n; i++)
		W.stamp[W.sock.len + i] = W.wire.len;
	bytes_add(&W.sock, p, n);
}

static bool fd_busy(const struct ring *r, int fd, size_t except)
{
	for (size_t i = 0; i < r->nops; i++)
		if (i != except && r->ops[i].fd == fd)
			return true;
	return false;
}

/* Completes the first operation in the kernel that can complete now;
 * false when none can. */
static bool kernel_step(struct ring *r)
{
	for (size_t i = 0; i < r->nops; i++) {
		struct fake_op *o = &r->ops[i];
		if (o->state != FS_KERNEL)
			continue;
		CHECK(o->kind != FK_OTHER);
		CHECK(o->fd >= 0 && o->fd == W.fd && W.fd_open); /* its own open socket */
		switch (o->kind) {
		case FK_CONNECT: {
			uint8_t f = u8();
			if (f >= 250) {
				fake_ring_complete(r, i, f & 1 ? -ECONNREFUSED : -ETIMEDOUT);
				return true;
			}
			if (W.script)
				srv_reply(SK_BANNER);
			fake_ring_complete(r, i, 0);
			return true;
		}
		case FK_SEND: {
			/* the buffer must not change while the send is in flight */
			CHECK(fake_send_unchanged(o));
			uint8_t f = u8();
			int32_t res = (int32_t)o->len;
			if (f >= 253)
				res = -EPIPE;
			else if (f >= 224 && o->len > 1 && !KNOWN_PARTIAL_SEND)
				res = (int32_t)(1 + (size_t)(f - 224) * (o->len - 1) / 29);
			if (res > 0) {
				wire_add(o->snap, (size_t)res);
				if (W.script)
					srv_parse();
			}
			fake_ring_complete(r, i, res);
			return true;
		}
		case FK_RECV: {
			if (W.sock.len) {
				size_t n = W.sock.len < o->len ? W.sock.len : o->len;
				memcpy(o->rbuf, W.sock.p, n);
				CHECK(W.nrecv_w < ARRAY_LEN(W.recv_w));
				W.recv_w[W.nrecv_w++] = W.stamp[n - 1];
				memmove(W.stamp, W.stamp + n, (W.sock.len - n) * sizeof(*W.stamp));
				bytes_drop(&W.sock, n);
				fake_ring_complete(r, i, (int32_t)n);
				return true;
			}
			if (W.eof) {
				CHECK(W.nrecv_w < ARRAY_LEN(W.recv_w));
				W.recv_w[W.nrecv_w++] = W.wire.len;
				fake_ring_complete(r, i, 0);
				return true;
			}
			break;
		}
		case FK_CANCEL: {
			int32_t n = 0;
			int fd = o->fd;
			for (size_t j = 0; j < r->nops;) {
				if (j != i && r->ops[j].fd == fd && r->ops[j].state == FS_KERNEL &&
				    r->ops[j].kind == FK_RECV) {
					fake_ring_complete(r, j, -ECANCELED);
					if (j < i)
						i--;
					n++;
				} else {
					j++;
				}
			}
			fake_ring_complete(r, i, n ? n : -ENOENT);
			return true;
		}
		case FK_CLOSE:
			CHECK(!fd_busy(r, o->fd, i)); /* nothing else in flight on it */
			close(o->fd);
			W.fd_open = false;
			fake_ring_complete(r, i, 0);
			return true;
		default:
			CHECK(0);
		}
	}
	return false;
}

static void on_submit(struct ring *r, void *arg)
{
	(void)arg;
	unsigned before = W.nrecv_w;
	while (kernel_step(r))
		;
	if (KNOWN_EARLY_REPLY)
		for (unsigned i = before; i < W.nrecv_w; i++)
			W.recv_w[i] = W.wire.len;
}

static bool recv_waiting(const struct ring *r)
{
	for (size_t i = 0; i < r->nops; i++)
		if (r->ops[i].kind == FK_RECV && r->ops[i].state == FS_KERNEL)
			return true;
	return false;
}

/* The server speaks: bytes go to the socket (a recv waiting gets them). */
static void speak(void)
{
	if (W.eof)
		return;
	if (W.script) {
		uint8_t b = u8();
		size_t n = W.srvq.len;
		if (b >= 160 && n > (size_t)(b & 15) + 1)
			n = (size_t)(b & 15) + 1;
		sock_add(W.srvq.p, n);
		bytes_drop(&W.srvq, n);
		if (W.srvq.len == 0 && W.close_after_srvq)
			W.eof = true;
	} else {
		/* < 128: up to the next LF; then 1..126 bytes; 254: all; 255: close */
		uint8_t b = u8();
		size_t left = in_len - srv_pos, n;
		if (b == 0xFF) {
			W.eof = true;
			n = 0;
		} else if (b < 128) {
			const uint8_t *nl = memchr(in + srv_pos, '\n', left);
			n = nl ? (size_t)(nl - (in + srv_pos)) + 1 : left;
		} else if (b == 254) {
			n = left;
		} else {
			n = (size_t)(b - 128) + 1;
		}
		if (n > left)
			n = left;
		sock_add((const char *)in + srv_pos, n);
		srv_pos += n;
	}
	on_submit(W.ring, NULL);
}

static void deliver(struct shard *s, const struct ring_cqe *cqe)
{
	uint32_t slot = ring_ud_slot(cqe->user_data);
	CHECK(slot < s->pool.max);
	struct conn *c = s->pool.conns[slot];
	unsigned op = ring_ud_op(cqe->user_data);
	long w = -1;
	if (op == OP_RECV && cqe->res >= 0) {
		CHECK(W.nrecv_w > 0);
		w = (long)W.recv_w[0];
		memmove(W.recv_w, W.recv_w + 1, (--W.nrecv_w) * sizeof(W.recv_w[0]));
	}
	if (c->gen != ring_ud_gen(cqe->user_data))
		return; /* stale */
	W.cur_w = w;
	conn_on_cqe(s, cqe);
	W.cur_w = -1;
}

/* The shard loop's reap: reverse = the kernel completed them the other
 * way round; split = batches of one, the ring submitting on its own
 * (full submission queue) between them. */
static void reap(struct shard *s, bool reverse, bool split)
{
	struct ring_cqe cqes[64];
	for (;;) {
		s->reap_submits = ring_submits(s->ring);
		unsigned n = ring_reap(s->ring, cqes, split ? 1 : ARRAY_LEN(cqes));
		if (n == 0)
			break;
		s->now += 1;
		for (unsigned k = 0; k < n; k++)
			deliver(s, &cqes[reverse ? n - 1 - k : k]);
		if (split)
			s->ring->auto_submit = 1;
	}
	s->ring->auto_submit = 0;
}

static void fire_timer(struct shard *s)
{
	struct conn *c = s->pool.conns[0];
	if (!timer_armed(&c->timer))
		return;
	if (s->now < c->timer.expire_ms)
		s->now = c->timer.expire_ms;
	wheel_advance(&s->wheel, s->now, conn_on_timer, s);
}

/* shard.c's schedule(), for one connection slot. */
static void schedule(struct shard *s)
{
	struct dest *d = &s->dests[0];
	struct conn *c = s->pool.conns[0];
	conn_dest_give_work(s, d);
	if (c->state == CS_FREE && d->qlen && d->nconns == 0 && W.opens < 3 && conn_pool_free_slots(s) > 0) {
		CHECK(!W.fd_open && W.ring->nops == 0);
		W.opens++;
		W.wire.len = 0;
		W.quit_end = 0;
		W.sock.len = 0;
		W.eof = false;
		W.nrecv_w = 0;
		W.srvq.len = 0;
		W.close_after_srvq = false;
		W.parse_pos = 0;
		W.pmode = PM_CMD;
		W.bdat_left = 0;
		for (unsigned i = 0; i < W.nmsgs; i++)
			W.msgs[i].delivered_here = 0;
		conn_open(s, 0);
		W.fd = c->fd;
		W.fd_open = c->fd >= 0;
	}
}

/* ---- setting up ---- */

static const char *const templates[] = {
	"Subject: plain\r\nMessage-ID: <%u@fuzz>\r\n\r\nhello\r\n",
	"Subject: dots\r\nMessage-ID: <%u@fuzz>\r\n\r\n.\r\n..\r\n.x\r\nend\r\n",
	".leading dot header?\r\nMessage-ID: <%u@fuzz>\r\n\r\n. \r\n",
	"Subject: 8bit\r\nMessage-ID: <%u@fuzz>\r\n\r\ncaf\xc3\xa9\r\n",
	"Message-ID: <%u@fuzz>\r\n",
	"Subject: long\r\nMessage-ID: <%u@fuzz>\r\n\r\n",  /* + long lines */
	"Subject: last dot\r\nMessage-ID: <%u@fuzz>\r\n\r\ntext\r\n.\r\n",
	"Subject: crlf dot\r\nMessage-ID: <%u@fuzz>\r\n\r\n\r\n.\r\n\r\n..\r\n",
};

static const char dkim_sig[] = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1;\r\n\tbh=x; b=y\r\n";

static void stuff(struct bytes *out, const char *body, size_t len)
{
	for (size_t i = 0; i < len;) {
		if (body[i] == '.')
			bytes_add(out, ".", 1);
		size_t e = i;
		while (e < len && body[e] != '\n')
			e++;
		if (e < len)
			e++;
		bytes_add(out, body + i, e - i);
		i = e;
	}
	bytes_add(out, ".\r\n", 3);
}

static void make_message(unsigned k, uint8_t b)
{
	struct msgrec *mr = &W.msgs[k];
	memset(mr, 0, sizeof(*mr));
	struct message *m = xcalloc(1, sizeof(*m));
	mr->m = m;
	char id[32];
	snprintf(id, sizeof(id), "msg%u", k);
	m->id = xstrdup(id);
	struct bytes body = { 0 };
	bytes_addf(&body, templates[b & 7], k);
	if ((b & 7) == 5) /* message 1: 600 dot lines, more segments than one sendmsg takes */
		for (unsigned i = 0; i < (k == 1 ? 1200u : 40u); i++)
			bytes_addf(&body, "%s%u abcdefghijklmnopqrstuvwxyz0123456789 abcdefghijklmnopqrstuvwxyz\r\n",
			           i % (k == 1 ? 2 : 3) ? "" : ".", i);
	m->body = body.p;
	m->body_len = body.len;
	m->body_owned = true;
	for (size_t i = 0; i < m->body_len; i = (size_t)((char *)memchr(m->body + i, '\n', m->body_len - i) - m->body) + 1)
		if (m->body[i] == '.') {
			m->dots = xrealloc(m->dots, (m->ndots + 1) * sizeof(*m->dots));
			m->dots[m->ndots++] = (uint32_t)i;
		}
	for (size_t i = 0; i < m->body_len; i++)
		m->body_8bit |= (unsigned char)m->body[i] >= 0x80;
	if (b & 0x20) {
		m->dkim_sig = xstrdup(dkim_sig);
		m->dkim_sig_len = strlen(dkim_sig);
	}
	m->sender = b & 0x80 ? "" : (b & 0x18) == 0x18 ? "s\xc3\xa9nder@example.org" : "sender@example.org";
	m->nrcpt = 1 + (uint32_t)((b >> 3) & 3) % NRCPT_MAX;
	m->rcpt = xcalloc(m->nrcpt, sizeof(*m->rcpt));
	static const char *const names[NMSG_MAX][NRCPT_MAX] = {
		{ "a0@example.net", "b0@example.net", "c0@example.net" },
		{ "a1@example.net", "b1@example.net", "c1@example.net" },
		{ "a2@example.net", "\xc3\xbc" "2@example.net", "c2@example.net" },
		{ "a3@example.net", "b3@example.net", "c3@example.net" },
	};
	for (uint32_t i = 0; i < m->nrcpt; i++)
		m->rcpt[i] = names[k][i];
	if (b & 0x40)
		m->rcpt[0] = "\xc3\xbc" "ber@example.net";
	m->rcpt_state = xcalloc(m->nrcpt, 1);
	m->npending = m->nrcpt;
	/* the end of its data, as each command sends it */
	if (m->dkim_sig)
		bytes_add(&mr->mark_data, m->dkim_sig, m->dkim_sig_len);
	stuff(&mr->mark_data, m->body, m->body_len);
	bytes_addf(&mr->mark_bdat, "BDAT %zu LAST\r\n", message_content_len(m));
	if (m->dkim_sig)
		bytes_add(&mr->mark_bdat, m->dkim_sig, m->dkim_sig_len);
	bytes_add(&mr->mark_bdat, m->body, m->body_len);
	struct leg *l = leg_new(mr, m->nrcpt);
	for (uint32_t i = 0; i < m->nrcpt; i++)
		l->ri[l->nr++] = i;
}

static void free_message(struct msgrec *mr)
{
	struct message *m = mr->m;
	free(m->id);
	free(m->body);
	free(m->dots);
	free(m->dkim_sig);
	free(m->rcpt);
	free(m->rcpt_state);
	free(m);
	free(mr->mark_data.p);
	free(mr->mark_bdat.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (trace < 0)
		trace = getenv("FUZZ_SMTP_TRACE") != NULL;
	if (size < 2)
		return 0;
	in = data;
	in_len = size;
	in_pos = 0;
	ctl_end = srv_pos = size;
	memset(&W, 0, sizeof(W));
	W.fd = -1;
	W.cur_w = -1;

	uint8_t conf = u8();
	W.script = conf & 1;
	W.batch_split = conf & 64;
	struct config *cfg = &W.cfg;
	cfg->helo = "client.fuzz.example";
	cfg->use_pipelining = !(conf & 2);
	cfg->use_chunking = !(conf & 4);
	static const unsigned per_conn[] = { 1000, 1, 2, 3 };
	cfg->max_per_connection = per_conn[(conf >> 3) & 3];
	cfg->max_rcpt_per_txn = 100;
	cfg->timeouts = (struct smtp_timeouts){
		.connect = 30000, .banner = 300000, .ehlo = 300000, .mail = 300000,
		.rcpt = 300000, .data = 120000, .data_block = 180000, .dot = 600000,
		.quit = 10000, .idle = 5000,
	};

	struct shard *s = xcalloc(1, sizeof(*s));
	W.s = s;
	s->cfg = cfg;
	s->rng = 0x9e3779b97f4a7c15ull;
	s->now = 1000000;
	wheel_init(&s->wheel, s->now);
	W.ring = fake_ring_new();
	W.ring->on_submit = on_submit;
	s->ring = W.ring;
	conn_pool_grow(s, 1);
	s->dests = xcalloc(1, sizeof(*s->dests));
	s->ndests = 1;
	struct dest *d = &s->dests[0];
	W.route.label = "127.0.0.1:2525";
	d->route = &W.route;
	d->group = "fuzz";
	d->max_conns = 1;
	d->naddrs = conf & 32 ? 2 : 1;
	d->addrs = xcalloc(d->naddrs, sizeof(*d->addrs));
	for (unsigned i = 0; i < d->naddrs; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&d->addrs[i].sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(2525);
		sin->sin_addr.s_addr = htonl(0x7f000001 + i);
		d->addrs[i].len = sizeof(*sin);
		d->addrs[i].mx = (char *)(i ? "mx2.fuzz.example" : "mx1.fuzz.example");
		d->addrs[i].pref = 10;
	}

	W.nmsgs = 1 + u8() % NMSG_MAX;
	for (unsigned k = 0; k < W.nmsgs; k++) {
		make_message(k, u8());
		dest_push(d, W.legs[W.nlegs - 1].leg);
	}
	if (!W.script) { /* two bytes: how many control bytes; the rest is the server's */
		size_t n = u8();
		n |= (size_t)u8() << 8;
		ctl_end = in_pos + n < size ? in_pos + n : size;
		srv_pos = ctl_end;
	}

	/* the steps, then a few more on the happy path once the input is spent */
	unsigned extra = 0;
	for (unsigned step = 0; step < 4096; step++) {
		if (in_pos >= ctl_end && srv_pos >= in_len && ++extra > 64)
			break;
		schedule(s);
		if (s->pool.conns[0]->state == CS_FREE && !d->qlen)
			break;
		uint8_t a = u8();
		if (trace)
			fprintf(stderr, "[step %u: input byte %zu = %d]\n", step, in_pos - 1, a);
		if ((a & 7) != 7) { /* the shard loop: the quiet check, then the submit */
			conn_check_quiet(s);
			fake_ring_submit(W.ring);
		}
		/* the server speaks: when a recv waits (0), at any time (1, 2), not (3) */
		if ((a & 0x18) == 0 ? recv_waiting(W.ring) : (a & 0x18) != 0x18)
			speak();
		if ((a & 0xE0) == 0xE0)
			fire_timer(s);
		if (a == 0xD5) /* SIGTERM: no new transactions (shard_finish) */
			atomic_store(&s->finishing, 1);
		if (a == 0xD6) /* the shard stops: QUIT when idle, else abandon (stop_all) */
			conn_pool_shutdown(s, true);
		reap(s, (a & 0x60) == 0x20, W.batch_split && (a & 0x60) == 0x40);
		s->now += 1;
	}

	/* the end: the server closes, the client must finish the connection */
	W.eof = true;
	struct conn *c = s->pool.conns[0];
	for (unsigned k = 0; k < 64; k++) {
		if (c->state == CS_FREE && W.ring->nops == 0 && !fake_ring_pending_cqes(W.ring))
			break;
		if (k == 16)
			conn_pool_shutdown(s, false);
		if (k >= 32)
			fire_timer(s);
		conn_check_quiet(s);
		fake_ring_submit(W.ring);
		reap(s, false, false);
		s->now += 1;
	}
	CHECK(c->state == CS_FREE);
	CHECK(W.ring->nops == 0 && fake_ring_pending_cqes(W.ring) == 0);
	CHECK(!W.fd_open);
	CHECK(wire_refs == 0); /* every send of content ended before its message could go */
	CHECK(atomic_load(&s->txns_open) == 0);
	CHECK(d->nconns == 0 && d->nready == 0);
	CHECK(!timer_armed(&c->timer));

	/* every transaction the client took is done; the rest is still queued */
	struct leg *l;
	while ((l = dest_pop(d))) {
		struct legrec *lr = leg_rec(l);
		CHECK(!lr->done);
		for (uint32_t i = 0; i < l->nr; i++)
			CHECK(lr->outcomes[i] == 0);
		lr->done = true;
		leg_free(l);
	}
	for (unsigned i = 0; i < W.nlegs; i++)
		CHECK(W.legs[i].done);

	conn_pool_free(s);
	free(d->ready);
	free(d->addrs);
	free(s->dests);
	fake_ring_free(W.ring);
	free(s);
	for (unsigned k = 0; k < W.nmsgs; k++)
		free_message(&W.msgs[k]);
	free(W.wire.p);
	free(W.sock.p);
	free(W.stamp);
	free(W.srvq.p);
	memset(&W, 0, sizeof(W));
	W.fd = -1;
	return 0;
}
