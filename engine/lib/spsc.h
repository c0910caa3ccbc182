/* engine/lib/spsc.h - single-producer single-consumer ring of pointers or small
 * records, the only way data crosses between threads (engine <-> shard).
 * Fixed capacity (a power of two): a full ring is back-pressure. */
#ifndef SLUICE_SPSC_H
#define SLUICE_SPSC_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct spsc {
	_Alignas(64) _Atomic uint64_t head;   /* consumer position */
	_Alignas(64) _Atomic uint64_t tail;   /* producer position */
	_Alignas(64) uint64_t mask;
	size_t elem;
	unsigned char *slots;
};

static inline void spsc_init(struct spsc *q, uint64_t cap_pow2, size_t elem)
{
	atomic_store(&q->head, 0);
	atomic_store(&q->tail, 0);
	q->mask = cap_pow2 - 1;
	q->elem = elem;
	q->slots = calloc(cap_pow2, elem);
	if (!q->slots)
		abort();
}

static inline void spsc_destroy(struct spsc *q) { free(q->slots); q->slots = NULL; }

static inline bool spsc_push(struct spsc *q, const void *item)
{
	uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	if (t - h > q->mask)
		return false;
	memcpy(q->slots + (t & q->mask) * q->elem, item, q->elem);
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
	return true;
}

static inline bool spsc_pop(struct spsc *q, void *item)
{
	uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
	if (h == t)
		return false;
	memcpy(item, q->slots + (h & q->mask) * q->elem, q->elem);
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
	return true;
}

static inline uint64_t spsc_count(struct spsc *q)
{
	return atomic_load_explicit(&q->tail, memory_order_acquire) -
	       atomic_load_explicit(&q->head, memory_order_acquire);
}
#endif
