/* dns/sync.h - the resolver (resolver.h) asked one question at a time and
 * waited for, on a ring of its own: for commands (`sluice doctor`) and
 * threads that are not a shard's loop, never for a shard. Answers are
 * cached like the shards' (TTL, negative entries). */
#ifndef SLUICE_DNS_SYNC_H
#define SLUICE_DNS_SYNC_H
#include "resolver.h"

struct dns_sync;

/* NULL when the kernel refuses an io_uring ring. */
struct dns_sync *dns_sync_new(const struct dns_server *servers, unsigned nservers, int timeout_ms,
                              unsigned attempts);
/* From deadline_ms (monotonic; 0: never) on, questions are not asked:
 * each answers TEMPFAIL at once. Bounds a whole set of checks. */
void dns_sync_deadline(struct dns_sync *d, int64_t deadline_ms);
void dns_sync_free(struct dns_sync *d);
/* Asks and waits (bounded: every try times out). *out is a copy the
 * caller frees with dns_answer_free; err gets the reason when the status
 * is not OK, NODATA or NXDOMAIN. */
void dns_sync_ask(struct dns_sync *d, const char *name, uint16_t type, struct dns_answer *out,
                  char *err, size_t err_len);
/* The same as a lookup callback (spf_ask_fn): arg is the dns_sync. */
void dns_sync_ask_cb(void *arg, const char *name, uint16_t type, struct dns_answer *out, char *err,
                     size_t err_len);
#endif
