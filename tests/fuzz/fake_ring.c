/* tests/fuzz/fake_ring.c - the ring.h functions over a recorder (see
 * fake_ring.h). No kernel, no threads, no I/O. */
#include "fake_ring.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FCHECK(c) do { if (!(c)) { fprintf(stderr, "fake_ring: check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

struct ring *fake_ring_new(void)
{
	struct ring *r = calloc(1, sizeof(*r));
	FCHECK(r);
	return r;
}

void fake_ring_free(struct ring *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nops; i++)
		free(r->ops[i].snap);
	free(r->ops);
	free(r->cq);
	free(r);
}

struct ring *ring_new(unsigned entries)
{
	(void)entries;
	return fake_ring_new();
}

void ring_free(struct ring *r)
{
	fake_ring_free(r);
}

uint64_t ring_submits(const struct ring *r)
{
	return r->submits;
}

void fake_ring_submit(struct ring *r)
{
	r->submits++;
	for (size_t i = 0; i < r->nops; i++)
		r->ops[i].state = FS_KERNEL;
	if (r->on_submit)
		r->on_submit(r, r->arg);
}

void ring_submit_wait(struct ring *r, int timeout_ms)
{
	(void)timeout_ms;
	fake_ring_submit(r);
}

static struct fake_op *record(struct ring *r, enum fake_kind kind, int fd, uint64_t ud)
{
	if (r->auto_submit) {
		r->auto_submit--;
		fake_ring_submit(r);
	}
	if (r->nops == r->ops_cap) {
		r->ops_cap = r->ops_cap ? r->ops_cap * 2 : 16;
		r->ops = realloc(r->ops, r->ops_cap * sizeof(*r->ops));
		FCHECK(r->ops);
	}
	struct fake_op *o = &r->ops[r->nops++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->state = FS_PREPARED;
	o->fd = fd;
	o->ud = ud;
	o->prepared_at = r->submits;
	return o;
}

void fake_ring_post(struct ring *r, uint64_t ud, int32_t res)
{
	if (r->ncq == r->cq_cap) {
		if (r->cq_head) { /* compact */
			memmove(r->cq, r->cq + r->cq_head, (r->ncq - r->cq_head) * sizeof(*r->cq));
			r->ncq -= r->cq_head;
			r->cq_head = 0;
		}
		if (r->ncq == r->cq_cap) {
			r->cq_cap = r->cq_cap ? r->cq_cap * 2 : 16;
			r->cq = realloc(r->cq, r->cq_cap * sizeof(*r->cq));
			FCHECK(r->cq);
		}
	}
	r->cq[r->ncq++] = (struct ring_cqe){ .user_data = ud, .res = res, .flags = 0 };
}

void fake_ring_complete(struct ring *r, size_t i, int32_t res)
{
	FCHECK(i < r->nops);
	fake_ring_post(r, r->ops[i].ud, res);
	free(r->ops[i].snap);
	memmove(r->ops + i, r->ops + i + 1, (r->nops - i - 1) * sizeof(*r->ops));
	r->nops--;
}

size_t fake_ring_pending_cqes(const struct ring *r)
{
	return r->ncq - r->cq_head;
}

unsigned ring_reap(struct ring *r, struct ring_cqe *out, unsigned max)
{
	unsigned n = 0;
	while (n < max && r->cq_head < r->ncq)
		out[n++] = r->cq[r->cq_head++];
	if (r->cq_head == r->ncq)
		r->cq_head = r->ncq = 0;
	return n;
}

bool ring_more(const struct ring_cqe *c)
{
	(void)c;
	return false;
}

void ring_connect(struct ring *r, int fd, const struct sockaddr *sa, socklen_t len, uint64_t ud)
{
	FCHECK(sa && len > 0);
	record(r, FK_CONNECT, fd, ud);
}

void ring_recv(struct ring *r, int fd, void *buf, size_t len, uint64_t ud)
{
	FCHECK(buf && len > 0);
	struct fake_op *o = record(r, FK_RECV, fd, ud);
	o->rbuf = buf;
	o->len = len;
}

/* The bytes of msg's iovecs, one after the other, into out (NULL: count). */
static size_t gather(const struct msghdr *msg, char *out)
{
	size_t n = 0;
	for (size_t i = 0; i < msg->msg_iovlen; i++) {
		if (out)
			memcpy(out + n, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
		n += msg->msg_iov[i].iov_len;
	}
	return n;
}

void ring_sendmsg(struct ring *r, int fd, const struct msghdr *msg, uint64_t ud)
{
	size_t len = gather(msg, NULL);
	FCHECK(len > 0);
	struct fake_op *o = record(r, FK_SEND, fd, ud);
	o->msg = msg;
	o->len = len;
	o->snap = malloc(len);
	FCHECK(o->snap);
	gather(msg, o->snap);
}

bool fake_send_unchanged(const struct fake_op *o)
{
	char *now = malloc(o->len);
	FCHECK(now && gather(o->msg, NULL) == o->len);
	gather(o->msg, now);
	bool same = memcmp(now, o->snap, o->len) == 0;
	free(now);
	return same;
}

/* Not used by the SMTP client since it sends by sendmsg. */
void ring_send(struct ring *r, int fd, const void *buf, size_t len, uint64_t ud)
{
	record(r, FK_OTHER, fd, ud);
}

void ring_close(struct ring *r, int fd, uint64_t ud)
{
	record(r, FK_CLOSE, fd, ud);
}

void ring_cancel_fd(struct ring *r, int fd, uint64_t ud)
{
	record(r, FK_CANCEL, fd, ud);
}

/* Not used by the SMTP client: recorded as operations nobody completes,
 * so that a call shows up as a leftover in the harness's checks. */
void ring_read(struct ring *r, int fd, void *buf, size_t len, uint64_t ud)
{
	(void)buf;
	(void)len;
	record(r, FK_OTHER, fd, ud);
}

void ring_write(struct ring *r, int fd, const void *buf, size_t len, uint64_t ud)
{
	(void)buf;
	(void)len;
	record(r, FK_OTHER, fd, ud);
}

void ring_accept_multishot(struct ring *r, int fd, uint64_t ud)
{
	record(r, FK_OTHER, fd, ud);
}

void ring_timeout(struct ring *r, struct ring_ts *ts, uint64_t ud)
{
	(void)ts;
	record(r, FK_OTHER, -1, ud);
}
