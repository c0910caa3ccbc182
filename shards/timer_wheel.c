/* shards/timer_wheel.c - hashed timer wheel (see timer_wheel.h). Timers
 * further out than one revolution stay in their slot and are skipped until
 * their round comes. */
#include "timer_wheel.h"
#include <stddef.h>

void wheel_init(struct timer_wheel *w, int64_t now_ms)
{
	for (int i = 0; i < WHEEL_SLOTS; i++)
		w->slots[i].next = w->slots[i].prev = &w->slots[i];
	w->tick = now_ms / WHEEL_TICK_MS;
}

void wheel_disarm(struct timer *t)
{
	if (!t->next)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
}

void wheel_arm(struct timer_wheel *w, struct timer *t, int64_t expire_ms)
{
	wheel_disarm(t);
	t->expire_ms = expire_ms;
	int64_t tick = expire_ms / WHEEL_TICK_MS;
	if (tick <= w->tick)
		tick = w->tick + 1;
	struct timer *head = &w->slots[tick % WHEEL_SLOTS];
	t->next = head;
	t->prev = head->prev;
	head->prev->next = t;
	head->prev = t;
}

void wheel_advance(struct timer_wheel *w, int64_t now_ms,
                   void (*fire)(struct timer *t, void *arg), void *arg)
{
	int64_t target = now_ms / WHEEL_TICK_MS;
	int64_t steps = 0;
	while (w->tick < target && steps++ < WHEEL_SLOTS) {
		w->tick++;
		struct timer *head = &w->slots[w->tick % WHEEL_SLOTS];
		/* Detach the slot so re-arming inside fire() cannot loop. */
		struct timer pending = { head->next, head->prev, 0 };
		if (head->next == head)
			continue;
		pending.next->prev = &pending;
		pending.prev->next = &pending;
		head->next = head->prev = head;
		while (pending.next != &pending) {
			struct timer *t = pending.next;
			wheel_disarm(t);
			if (t->expire_ms / WHEEL_TICK_MS > w->tick) {
				wheel_arm(w, t, t->expire_ms); /* a later round */
				continue;
			}
			fire(t, arg);
		}
	}
	if (w->tick < target)
		w->tick = target; /* a long stall: later timers are re-hashed on visit */
}
