/* engine/lib/rng.h - the one pseudo-random generator (xorshift64): retry
 * jitter, MX shuffling, fault injection, test data. Not for secrets. The
 * state must never be 0 (rng_seed makes sure). */
#ifndef SLUICE_RNG_H
#define SLUICE_RNG_H
#include <stdint.h>

static inline uint64_t rng_seed(uint64_t x)
{
	x *= 0x9e3779b97f4a7c15ull;
	return x ? x : 0x9e3779b97f4a7c15ull;
}

static inline uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}
#endif
