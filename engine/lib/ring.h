/* engine/lib/ring.h - the one module that talks to liburing. A ring per thread
 * (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them), a get_sqe that
 * never fails (it submits and retries), batched submission, and typed prep
 * helpers. user_data is packed as (op 8 bits | slot 24 bits | generation
 * 32 bits) so stale completions for a reused slot are recognised. */
#ifndef SLUICE_RING_H
#define SLUICE_RING_H
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct ring;

struct ring_cqe {
	uint64_t user_data;
	int32_t res;
	uint32_t flags;
};

static inline uint64_t ring_ud(unsigned op, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffff) << 32) | gen;
}
static inline unsigned ring_ud_op(uint64_t ud) { return (unsigned)(ud >> 56); }
static inline uint32_t ring_ud_slot(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffff; }
static inline uint32_t ring_ud_gen(uint64_t ud) { return (uint32_t)ud; }

struct ring *ring_new(unsigned entries);
/* The same, NULL with *err (an errno) when the kernel refuses a ring. */
struct ring *ring_try_new(unsigned entries, int *err);
void ring_free(struct ring *r);

/* Submits what is queued and waits until at least one completion is there
 * or timeout_ms passed (timeout_ms < 0: no wait). Interrupted = no error. */
void ring_submit_wait(struct ring *r, int timeout_ms);
/* How many times queued SQEs were handed to the kernel so far. An SQE
 * prepared when this read k is in the kernel once it reads more than k:
 * the SMTP client uses it to know whether a command can have been sent
 * before the bytes of a reply arrived. */
uint64_t ring_submits(const struct ring *r);
/* Copies up to max completions out and marks them seen. */
unsigned ring_reap(struct ring *r, struct ring_cqe *out, unsigned max);
bool ring_more(const struct ring_cqe *c);  /* multishot still armed */

void ring_connect(struct ring *r, int fd, const struct sockaddr *sa, socklen_t len, uint64_t ud);
void ring_recv(struct ring *r, int fd, void *buf, size_t len, uint64_t ud);
void ring_send(struct ring *r, int fd, const void *buf, size_t len, uint64_t ud);
/* msg (and its iovecs and their bytes) must stay valid until the CQE. */
struct msghdr;
void ring_sendmsg(struct ring *r, int fd, const struct msghdr *msg, uint64_t ud);
void ring_read(struct ring *r, int fd, void *buf, size_t len, uint64_t ud);
/* Zero-copy sendmsg: completes twice with ud, first the result (with
 * IORING_CQE_F_MORE: ring_more), then a notification (ring_notif) after
 * which msg's bytes may be reused; see ring.c. Kernel 6.2+. */
void ring_sendmsg_zc(struct ring *r, int fd, const struct msghdr *msg, uint64_t ud);
bool ring_notif(const struct ring_cqe *c);  /* zero-copy send notification */
/* In a notification's res: the kernel copied (part of) the data after all. */
#define RING_NOTIF_COPIED (1U << 31)
void ring_write(struct ring *r, int fd, const void *buf, size_t len, uint64_t ud);
void ring_close(struct ring *r, int fd, uint64_t ud);
void ring_cancel_fd(struct ring *r, int fd, uint64_t ud);
void ring_accept_multishot(struct ring *r, int fd, uint64_t ud);
/* Same layout as the kernel's timespec; must stay valid until completion. */
struct ring_ts { int64_t tv_sec; long long tv_nsec; };
void ring_timeout(struct ring *r, struct ring_ts *ts, uint64_t ud);
/* unlinkat(dfd, path, flags) (kernel 5.11+); path must stay valid until the
 * CQE. The kernel runs it on its io-wq worker threads (a blocking call). */
void ring_unlinkat(struct ring *r, int dfd, const char *path, int flags, uint64_t ud);
/* Caps this ring's io-wq worker threads: bounded (file system work, such
 * as unlinkat) and unbounded; 0 leaves that limit as it is. 0 or an errno. */
int ring_iowq_max_workers(struct ring *r, unsigned bounded, unsigned unbounded);
#endif
