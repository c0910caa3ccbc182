/* shards/timer_wheel.h - a hashed timer wheel for per-connection deadlines
 * (RFC 5321 command timeouts, idle close). Linked timeouts cannot guard a
 * multishot receive, and one timer op per command would double the SQEs, so
 * deadlines live here in user space and the shard cancels on expiry.
 * O(1) add/remove; advance visits only the slots that passed. */
#ifndef SLUICE_TIMER_WHEEL_H
#define SLUICE_TIMER_WHEEL_H
#include <stdint.h>
#include <stdbool.h>

#define WHEEL_SLOTS 1024
#define WHEEL_TICK_MS 50

struct timer {
	struct timer *next, *prev;  /* NULL when not armed */
	int64_t expire_ms;
};

struct timer_wheel {
	struct timer slots[WHEEL_SLOTS]; /* list heads */
	int64_t tick;                    /* last processed tick */
};

void wheel_init(struct timer_wheel *w, int64_t now_ms);
void wheel_arm(struct timer_wheel *w, struct timer *t, int64_t expire_ms);
void wheel_disarm(struct timer *t);
static inline bool timer_armed(const struct timer *t) { return t->next != 0; }
/* Calls fire(t, arg) for each timer whose deadline passed; a fired timer
 * is disarmed before the call and may be re-armed inside it. */
void wheel_advance(struct timer_wheel *w, int64_t now_ms,
                   void (*fire)(struct timer *t, void *arg), void *arg);
#endif
