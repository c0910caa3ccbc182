/* tests/fuzz/fake_ring.h - a ring (engine/lib/ring.h) without io_uring, for
 * fuzz_smtp_client: the ring_* calls the SMTP client makes are recorded
 * as operations; the harness decides when they are "submitted"
 * (fake_ring_submit: ring_submits() grows, the operations go to the
 * "kernel", where the harness's on_submit hook carries them out) and
 * completes them (fake_ring_complete), and the shard loop's reap takes
 * the completions in order (fake_ring_reap). */
#ifndef SLUICE_FAKE_RING_H
#define SLUICE_FAKE_RING_H
#include "../../engine/lib/ring.h"
#include <stdbool.h>
#include <sys/socket.h>

enum fake_kind { FK_CONNECT = 1, FK_RECV, FK_SEND, FK_CLOSE, FK_CANCEL, FK_OTHER };
enum fake_state { FS_PREPARED = 1, FS_KERNEL };

struct fake_op {
	enum fake_kind kind;
	enum fake_state state;
	int fd;
	uint64_t ud;
	const struct msghdr *msg;  /* send: the caller's iovecs */
	void *snap;                /* send: a copy taken when it was prepared */
	void *rbuf;                /* recv */
	size_t len;
	uint64_t prepared_at;      /* ring_submits() then */
};

struct ring {
	uint64_t submits;
	struct fake_op *ops;       /* not completed yet, in submission order */
	size_t nops, ops_cap;
	struct ring_cqe *cq;       /* completed, not reaped */
	size_t ncq, cq_head, cq_cap;
	/* When > 0, the next ring_* call first submits what is queued (as
	 * the real ring does when its submission queue is full), once. */
	unsigned auto_submit;
	/* Called by fake_ring_submit after the operations went to the kernel. */
	void (*on_submit)(struct ring *r, void *arg);
	void *arg;
};

struct ring *fake_ring_new(void);
void fake_ring_free(struct ring *r);
void fake_ring_submit(struct ring *r);
/* Completes ops[i] with res and removes it (the order of the others stays). */
void fake_ring_complete(struct ring *r, size_t i, int32_t res);
/* Adds a completion for no recorded operation (a cancel's own result). */
void fake_ring_post(struct ring *r, uint64_t ud, int32_t res);
size_t fake_ring_pending_cqes(const struct ring *r);
/* A send's bytes are still those it was prepared with. */
bool fake_send_unchanged(const struct fake_op *o);
#endif
