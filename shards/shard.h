/* shards/shard.h - one delivery thread per core. The engine hands messages
 * in through shard_offer() and takes outcome records out through
 * shard_collect(); nothing else crosses the thread boundary. */
#ifndef SLUICE_SHARD_H
#define SLUICE_SHARD_H
#include "config_types.h"
#include "../engine/lib/message.h"

struct shard;

struct shard *shard_new(unsigned index, const struct config *cfg, int engine_wake_fd);
/* Before any shard starts: gives the shards their rings to each other
 * (legs cross to the shard that owns their (source IP, MX group) pair). */
void shard_link(struct shard **all, unsigned n);
void shard_start(struct shard *s);
/* Engine side: queue a message (false: the shard's inbox is full). */
bool shard_offer(struct shard *s, struct message *m);
/* Engine side: wake the shard after a batch of offers. */
void shard_kick(struct shard *s);
/* Engine side: take up to max outcome records. */
size_t shard_collect(struct shard *s, struct outcome *out, size_t max);
/* Engine side, on SIGHUP: the shard moves to cfg at the top of its loop
 * (see apply_config). cfg->generation grows with each reload; a
 * configuration older than every shard's shard_config_generation() is
 * used by no shard any more (a shard only ever moves to the newest). */
void shard_reconfigure(struct shard *s, const struct config *cfg);
uint64_t shard_config_generation(struct shard *s);
/* Engine -> shard: an adaptation in force (see shards/adapt.c): a
 * suspension of a group or a source IP made on another shard, or, at
 * start, a suspension or slowed rate the spool's state kept. */
enum { ADAPT_CMD_SUSPEND = 1, ADAPT_CMD_SLOW, ADAPT_CMD_FULL, ADAPT_CMD_COUNT,
       ADAPT_CMD_LIFT,     /* the operator's resume: the suspensions of a group
                            * (scope group: every pair of it too) or of a pair end now */
       ADAPT_CMD_PAUSE,    /* job: its messages wait, until until_wall_ms or resumed */
       ADAPT_CMD_BOUNCE,   /* job: its messages bounce, until until_wall_ms or resumed */
       ADAPT_CMD_RELEASE }; /* job: its pause or bounce ends */
struct adapt_cmd {
	uint8_t kind;
	uint8_t scope;             /* enum adapt_scope */
	char source[48];           /* "" for a group's */
	char group[256];           /* "" for a source IP's */
	int64_t until_wall_ms;     /* ADAPT_CMD_SUSPEND, ADAPT_CMD_FULL */
	char rule[64];             /* that set it off */
	char job[64];              /* FULL, COUNT: the wave's job ("" for warm-up) */
	int64_t period;            /* COUNT: the wave or local day */
	uint32_t count;            /* COUNT: counted in it so far */
	double rate, base;         /* ADAPT_CMD_SLOW: the rate, and what it climbs back to */
};
/* False when the shard's queue of them is full (try again later). */
bool shard_adapt(struct shard *s, const struct adapt_cmd *c);
/* The shard (of nshards) that owns the pair (source IP text, "" for
 * unbound; MX group) under cfg. */
unsigned shard_pair_owner(const struct config *cfg, unsigned nshards, const char *source, const char *group);
/* Engine side, on SIGTERM: start no new transaction, let the open ones
 * end; shard_idle() says when none is left. */
void shard_finish(struct shard *s);
bool shard_idle(struct shard *s);
/* Engine side: ask the shard to stop (QUIT idle connections, abandon the
 * rest: their messages stay in the spool) and join the thread. Ask every
 * shard first (shard_stop_begin), then join each: a shard still running
 * would carry on transactions for one that stopped, whose outcomes could
 * not be logged. */
void shard_stop_begin(struct shard *s);
void shard_stop(struct shard *s);
void shard_free(struct shard *s);
/* Live counters, for a scrape while the shard runs (each one stored once
 * per loop turn by the shard, read relaxed): added to out. */
enum { SHARD_LIVE_CONNS_OPEN, SHARD_LIVE_CONNS_OPENED, SHARD_LIVE_CONNS_FAILED, SHARD_LIVE_TLS_FULL,
       SHARD_LIVE_TLS_RESUMED, SHARD_LIVE_TLS_PLAIN, SHARD_LIVE_DNS_UDP, SHARD_LIVE_DNS_TCP,
       SHARD_LIVE_DNS_TIMEOUTS, SHARD_LIVE_N };
void shard_live_counters(const struct shard *s, uint64_t out[SHARD_LIVE_N]);
/* What a (source IP, MX group) pair the shard owns is doing, published by
 * the shard about once a second (shards/pair_stats.c). */
struct shard_pair_stat {
	char source[48];           /* "" when unbound */
	char group[256];
	char suspended_by[64];     /* the rule, while suspended */
	int64_t suspended_until;   /* wall clock ms (0: not suspended) */
	uint32_t conns;            /* sockets open */
	uint32_t queued;           /* transactions waiting for a connection */
	uint64_t opened, failed;   /* connections opened; failed before ready */
	double rate;               /* messages per second allowed now (0: no limit) */
	double fill;               /* its token bucket, 0..1 (-1: no limit) */
};
/* Engine side: a copy of the shard's latest (malloc'd into *out, which
 * is reused: *cap its room); returns how many. */
size_t shard_pair_stats(struct shard *s, struct shard_pair_stat **out, size_t *cap);
/* After shard_stop: adds its DNS queries (UDP, TCP) and timeouts to out. */
void shard_dns_counters(const struct shard *s, uint64_t out[3]);
/* After shard_stop: adds its TLS handshakes (full, resumed) and fallbacks
 * to plaintext (opportunistic, after a failed handshake) to out. */
void shard_tls_counters(const struct shard *s, uint64_t out[3]);
#endif
