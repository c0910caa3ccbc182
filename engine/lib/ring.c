/* engine/lib/ring.c - io_uring wrapper (see ring.h). */
#define _GNU_SOURCE
#include "ring.h"
#include "util.h"
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

struct ring {
	struct io_uring uring;
	uint64_t submits;          /* calls that handed SQEs to the kernel */
};

uint64_t ring_submits(const struct ring *r)
{
	return r->submits;
}

struct ring *ring_new(unsigned entries)
{
	int err;
	struct ring *r = ring_try_new(entries, &err);
	if (!r)
		fatal("io_uring_queue_init: %s", strerror(err));
	return r;
}

struct ring *ring_try_new(unsigned entries, int *err)
{
	struct ring *r = xcalloc(1, sizeof(*r));
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 4;
	int rc = io_uring_queue_init_params(entries, &r->uring, &p);
	if (rc == -EINVAL) {
		/* Older kernel: plain ring. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		rc = io_uring_queue_init_params(entries, &r->uring, &p);
	}
	if (rc < 0) {
		free(r);
		*err = -rc;
		return NULL;
	}
	return r;
}

void ring_free(struct ring *r)
{
	if (!r)
		return;
	io_uring_queue_exit(&r->uring);
	free(r);
}

static struct io_uring_sqe *sqe_get(struct ring *r)
{
	for (int tries = 0;; tries++) {
		struct io_uring_sqe *s = io_uring_get_sqe(&r->uring);
		if (s)
			return s;
		/* Full submission queue: hand what we have to the kernel. */
		r->submits++;
		int rc = io_uring_submit(&r->uring);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			fatal("io_uring_submit: %s", strerror(-rc));
		ASSERT(tries < 1000000);
	}
}

void ring_submit_wait(struct ring *r, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	r->submits++;
	if (timeout_ms < 0) {
		io_uring_submit_and_get_events(&r->uring);
		return;
	}
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
	};
	int rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		fatal("io_uring_submit_and_wait: %s", strerror(-rc));
}

unsigned ring_reap(struct ring *r, struct ring_cqe *out, unsigned max)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&r->uring, head, cqe) {
		if (n == max)
			break;
		out[n].user_data = cqe->user_data;
		out[n].res = cqe->res;
		out[n].flags = cqe->flags;
		n++;
	}
	io_uring_cq_advance(&r->uring, n);
	return n;
}

bool ring_more(const struct ring_cqe *c)
{
	return (c->flags & IORING_CQE_F_MORE) != 0;
}

void ring_connect(struct ring *r, int fd, const struct sockaddr *sa, socklen_t len, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_connect(s, fd, sa, len);
	io_uring_sqe_set_data64(s, ud);
}

void ring_recv(struct ring *r, int fd, void *buf, size_t len, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_recv(s, fd, buf, len, 0);
	io_uring_sqe_set_data64(s, ud);
}

void ring_send(struct ring *r, int fd, const void *buf, size_t len, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_send(s, fd, buf, len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, ud);
}

void ring_sendmsg(struct ring *r, int fd, const struct msghdr *msg, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_sendmsg(s, fd, msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, ud);
}

/* Zero-copy sendmsg (IORING_OP_SENDMSG_ZC, kernel 6.1+; usage reporting
 * 6.2+). The kernel pins the pages behind msg's iovecs instead of copying
 * them, so one request completes twice, both CQEs carrying ud:
 *  1. the result (bytes sent or -errno), with IORING_CQE_F_MORE set when a
 *     notification follows (it is not set if the request failed early);
 *  2. a notification CQE with IORING_CQE_F_NOTIF, posted once the network
 *     stack released the pages (for TCP: the data was acknowledged).
 *     Only after it may the iovecs' bytes be changed or freed.
 * IORING_SEND_ZC_REPORT_USAGE is asked for: the notification's res then
 * has RING_NOTIF_COPIED set when the kernel fell back to copying (always
 * the case on loopback, where the receiver must not hold sender pages). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
void ring_sendmsg_zc(struct ring *r, int fd, const struct msghdr *msg, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_sendmsg_zc(s, fd, msg, MSG_NOSIGNAL);
	s->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
	io_uring_sqe_set_data64(s, ud);
}

bool ring_notif(const struct ring_cqe *c)
{
	return (c->flags & IORING_CQE_F_NOTIF) != 0;
}

void ring_read(struct ring *r, int fd, void *buf, size_t len, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_read(s, fd, buf, (unsigned)len, (uint64_t)-1);
	io_uring_sqe_set_data64(s, ud);
}

void ring_write(struct ring *r, int fd, const void *buf, size_t len, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_write(s, fd, buf, (unsigned)len, (uint64_t)-1);
	io_uring_sqe_set_data64(s, ud);
}

void ring_close(struct ring *r, int fd, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_close(s, fd);
	io_uring_sqe_set_data64(s, ud);
}

void ring_cancel_fd(struct ring *r, int fd, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(s, ud);
}

void ring_accept_multishot(struct ring *r, int fd, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_multishot_accept(s, fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, ud);
}

void ring_timeout(struct ring *r, struct ring_ts *ts, uint64_t ud)
{
	_Static_assert(sizeof(struct ring_ts) == sizeof(struct __kernel_timespec), "timespec layout");
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_timeout(s, (struct __kernel_timespec *)ts, 0, 0);
	io_uring_sqe_set_data64(s, ud);
}

void ring_unlinkat(struct ring *r, int dfd, const char *path, int flags, uint64_t ud)
{
	struct io_uring_sqe *s = sqe_get(r);
	io_uring_prep_unlinkat(s, dfd, path, flags);
	io_uring_sqe_set_data64(s, ud);
}

int ring_iowq_max_workers(struct ring *r, unsigned bounded, unsigned unbounded)
{
	unsigned v[2] = { bounded, unbounded };
	int rc = io_uring_register_iowq_max_workers(&r->uring, v);
	return rc < 0 ? -rc : 0;
}
