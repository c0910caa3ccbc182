/* dns/resolver.h - a stub resolver that runs on a shard's io_uring: UDP
 * queries with retry over the configured servers, TCP when an answer is
 * truncated, a TTL cache with negative entries, and in-flight coalescing
 * (a name asked while its query is out waits for that query).
 *
 * One resolver per shard, not one shared cache: shards share nothing, so
 * a lookup never takes a lock or wakes another thread, and coalescing is a
 * list of callbacks on the shard's own thread. The price is at most one
 * query per shard for a name per TTL (16 queries instead of 1 for a domain
 * that receives millions of messages, which the recursive resolver in
 * front answers from its cache) and a copy of hot entries per shard.
 * Messages reach the shards round robin, so every shard meets the big
 * domains anyway; the cache is bounded (LRU) per shard. */
#ifndef SLUICE_DNS_RESOLVER_H
#define SLUICE_DNS_RESOLVER_H
#include "packet.h"
#include <sys/socket.h>

struct ring;
struct ring_cqe;

struct dns_server {
	struct sockaddr_storage sa;
	socklen_t len;
	char label[64];           /* "127.0.0.1:53" */
};

struct dns_resolver_config {
	const struct dns_server *servers;
	unsigned nservers;
	int timeout_ms;           /* per try */
	unsigned attempts;        /* rounds over all servers */
	unsigned cache_max;       /* entries */
};

/* The answer (and err when it is not OK/NODATA/NXDOMAIN) are valid only
 * during the call. */
typedef void (*dns_done_fn)(void *arg, const struct dns_answer *a, const char *err);

struct dns_resolver;

/* Ops op_base .. op_base+DNS_OPS-1 on the ring belong to the resolver:
 * the shard passes their completions to dns_on_cqe. */
#define DNS_OPS 6
struct dns_resolver *dns_resolver_new(struct ring *ring, unsigned op_base,
                                      const struct dns_resolver_config *cfg);
void dns_resolver_free(struct dns_resolver *r);

/* A cached answer (valid until the next call into the resolver) or NULL:
 * then done(arg, ...) is called once, later, from dns_on_cqe/dns_tick. A
 * name that cannot be asked answers DNS_BADNAME at once. */
const struct dns_answer *dns_lookup(struct dns_resolver *r, const char *name, uint16_t type,
                                    dns_done_fn done, void *arg, const char **err);
void dns_on_cqe(struct dns_resolver *r, const struct ring_cqe *cqe, int64_t now);
/* Timeouts and retries; cheap to call every loop turn. */
void dns_tick(struct dns_resolver *r, int64_t now);
/* Queries sent so far over UDP and over TCP, and tries that timed out
 * (for tests and the benchmark). */
void dns_counters(const struct dns_resolver *r, uint64_t *udp, uint64_t *tcp, uint64_t *timeouts);
/* Reads /etc/resolv.conf-style nameserver lines (port 53) and its
 * timeout/attempts options; false when none is listed. */
bool dns_read_resolv_conf(const char *path, struct dns_server *out, unsigned max, unsigned *n,
                          int *timeout_ms, unsigned *attempts);
/* "HOST:PORT", "[V6]:PORT" or "HOST" (port 53) with a numeric host. */
bool dns_server_parse(const char *spec, struct dns_server *out);
#endif
