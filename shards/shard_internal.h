/* shards/shard_internal.h - the types a shard's modules share: destinations
 * (one per route, and one per MX site found in DNS; each holds queued
 * transactions, the addresses to try and the connection pool),
 * legs (one message's recipients for one destination = one SMTP
 * transaction), and connections. Private to shards/. */
#ifndef SLUICE_SHARD_INTERNAL_H
#define SLUICE_SHARD_INTERNAL_H
#include "shard.h"
#include "../engine/lib/ring.h"
#include "../engine/lib/spsc.h"
#include "timer_wheel.h"
#include "smtp_output.h"
#include "smtp_reply.h"
#include "../dkim/signer.h"
#include "../dkim/track.h"
#include "../dns/mx.h"
#include "../engine/lib/strmap.h"
#include "../engine/lib/tls.h"
#include "../engine/lib/util.h"
#include <pthread.h>
#include "reply_rules.h"
#include <stdatomic.h>

enum op { OP_CONNECT = 1, OP_RECV, OP_SEND, OP_CANCEL, OP_CLOSE, OP_WAKE, OP_NOTIFY,
           OP_DNS_BASE = 16 /* .. OP_DNS_BASE + DNS_OPS - 1: the resolver's */ };

/* Per-recipient progress inside one transaction. RT_NEXT_TXN: the server
 * said "too many recipients" (RFC 5321 4.5.3.1.10): send it in the next
 * transaction of the same attempt. RT_REFUSED: the server refused it; the
 * outcome is held until the reply to DATA/BDAT shows that the reply
 * stream was in step (see smtp_client.c). */
enum rcpt_txn { RT_UNKNOWN = 0, RT_ACCEPTED, RT_RESOLVED, RT_NEXT_TXN, RT_REFUSED };

/* One allocation: ri and rt point into the block that follows the struct
 * (see leg_new in shard.c; freed with the leg).
 *
 * A leg is made on its message's shard (origin) and carried out by the
 * shard that owns its (source IP, MX group) pair: when that is another
 * shard, the leg crosses to it through the pair of shards' ring (see
 * "Pairs and their owners" in shard.c), and comes back once it is over
 * with the outcomes it collected (out), which only the origin may apply
 * to the message. The message's content and envelope are read-only while
 * any leg of it is away. */
struct leg {
	struct message *msg;
	struct leg *next;          /* destination queue, or a crossing queue */
	struct leg *live_prev, *live_next; /* the shard's live legs (freed at shard_free) */
	uint32_t dest;
	uint32_t nr;
	uint32_t *ri;              /* recipient indices into msg->rcpt */
	uint8_t *rt;               /* enum rcpt_txn per ri */
	uint16_t origin;           /* index of the shard that owns msg */
	bool done;                 /* its transaction ended (shard_leg_done) */
	bool home;                 /* crossing back to its origin */
	bool reroute;              /* home: route its recipients anew (its route left) */
	uint32_t holds;            /* sends of its content in flight */
	uint32_t children;         /* the rest of it after a 452, not done yet */
	struct leg *parent;        /* that it is the rest of, or NULL */
	char source[48];           /* the source IP it goes out of ("": unbound) */
	int64_t not_before;        /* deferred by adaptation: its message's next attempt
	                            * not before (monotonic, 0: none; see not_before_ms) */
	struct adapt_ban *full;    /* sent home because its pair's wave or warm-up day
	                            * is full: the origin learns it first (or NULL) */
	uint32_t waited;           /* recipients deferred by leg_wait... */
	uint8_t waits;             /* ...WAIT_* (a wave or a warm-up day, a hold) */
	struct outcome *out;       /* away from its origin: outcomes to apply there */
	uint32_t nout, out_cap;
};

/* A token bucket (shards/throttle.c): tokens in hand, topped up at. */
struct bucket {
	double tokens;
	int64_t at_ms;
};

/* The throttle of one (source IP, MX group) pair, on the shard that owns
 * the pair: every destination of the pair (one per route or MX site, and
 * TLS policy) counts against it. */
struct throttle {
	struct strmap_node node;
	char *key;                 /* "SOURCE\nGROUP" */
	char *source;              /* "" when unbound */
	char *group;
	struct shape_limits lim;
	struct bucket msgs;        /* messages that may start now */
	struct bucket conns;       /* connections that may open now */
	uint32_t nconns;           /* sockets open (connecting .. closed) */
	uint32_t refs;             /* destinations using it */
	int64_t idle_since;        /* refs fell to 0 */
	/* Adaptation (adapt.c) */
	double slow_rate;          /* > 0: slowed down to this (messages per second) */
	double base_rate;          /* with no configured rate: where it was slowed from */
	int64_t slowed_at;         /* the last step down */
	int64_t stepped_at;        /* the last step down or up */
	int64_t suspended_until;   /* sends nothing before */
	char suspended_by[64];     /* the rule */
	uint32_t meter_n;          /* messages started since meter_at... */
	int64_t meter_at;
	double meter_rate;         /* ...and per second in the window before */
	struct budget *budgets;    /* waves and warm-up days counted */
	unsigned nbudgets, budgets_cap;
	int src;                   /* its source IP's index (-1: unbound; set by throttle_get) */
	uint64_t opened, failed;   /* its connections started; ended before ready */
	uint32_t stat_queued;      /* pair_stats.c's scratch */
};

/* An adaptation in force on a shard that covers throttles made later
 * too: a suspension of a group or a source IP, or one the engine kept
 * across a restart; a slowed rate kept across a restart. */
struct adapt_ban {
	struct strmap_node node;   /* s->ban_index (not for the full list) */
	char key[400];
	uint8_t kind;              /* ADAPT_CMD_* */
	uint8_t scope;             /* enum adapt_scope */
	char source[48];           /* "" for a group's */
	char group[256];           /* "" for a source IP's */
	char rule[64];
	char job[64];              /* FULL, COUNT */
	int64_t until;             /* shard clock */
	double rate, base;         /* ADAPT_CMD_SLOW */
	int64_t period;            /* COUNT */
	uint32_t count;
};

/* A count within a period (adapt.c, "budgets"): a wave of a job, or a
 * warm-up day ("" job), of one pair, on its owner. */
struct budget {
	char job[64];
	int64_t period;
	int64_t end_wall;          /* when the period ends (then it goes) */
	uint32_t used;
};

/* What a reply rule says (adapt_on_reply): of the recipient's result
 * (bounce; defer; suspended: deferred too, the address is fine), or that
 * the pair was slowed down (the result is the code's). Slowed and
 * suspended: the refusal is the pace the provider asks for, not a failure
 * of the destination (no back-off, no address marked dead). */
enum { VERDICT_NONE = 0, VERDICT_BOUNCE, VERDICT_DEFER, VERDICT_SLOWED, VERDICT_SUSPENDED };

/* A connection slot as it was: stale once conns[slot]->gen moved on. */
struct slot_ref {
	uint32_t slot, gen;
};

/* The name under which a DNS destination is found (its MX host set). */
struct site_ref {
	struct strmap_node node;
	char *site;
	uint32_t dest;
};

struct dest_addr {
	struct sockaddr_storage sa;
	socklen_t len;
	char *mx;                  /* MX host name, or the route's HOST:PORT */
	uint16_t pref;             /* its MX preference */
	int64_t dead_until;        /* connecting failed: try the others first */
	int64_t refused_until;     /* it greeted with 5xx (a permanent refusal) */
};

struct dest {
	const struct route *route; /* NULL: found in DNS */
	struct site_ref *site;     /* DNS destinations */
	char *group;               /* MX group, logged (throttles key on it) */
	char *source;              /* source IP it binds to (NULL: unbound) */
	char *helo;                /* that IP's EHLO name (NULL: cfg->helo) */
	struct sockaddr_storage source_sa; /* source as an address (port 0) */
	socklen_t source_len;      /* 0: unbound */
	struct throttle *thr;      /* its pair's (on the owner shard) */
	uint16_t owner;            /* the shard that owns its pair */
	enum tls_policy tls;       /* STARTTLS policy of its recipients (see dest_for_plan) */
	bool tls_by_domain;        /* that policy is a recipient domain's rule */
	struct dest_addr *addrs;   /* in the order to try */
	unsigned naddrs;
	uint64_t plan_serial;      /* which MX plan the addresses came from */
	int64_t used_ms;           /* last routed to (idle DNS destinations go) */
	bool unused;               /* a free slot in s->dests */
	struct leg *qhead, *qtail;
	uint32_t qlen;
	uint32_t nconns;           /* open or opening */
	uint32_t nready;           /* past EHLO, able to take work */
	uint32_t max_conns;
	bool retired;              /* its route left the configuration (SIGHUP):
	                            * its connections QUIT when idle */
	/* Back-off: connections in a row that failed before completing a
	 * transaction; from cfg->dest_failures on, the destination waits
	 * (suspended_until) and its queue is deferred with the last reason. */
	uint32_t fail_streak;
	bool proven;               /* a connection got ready since the last failure */
	/* A server that refuses new connections while others to it work is
	 * capping concurrency (per client IP): hold at what works, try one
	 * more after cap_wait_ms, doubled per refusal (0: no cap known). */
	uint32_t conn_cap;
	int64_t conn_cap_since;
	int64_t cap_wait_ms;
	int64_t suspended_until;
	uint16_t fail_code;
	char fail_enhanced[12];
	char *fail_why;            /* the last failure, for the deferrals */
	/* schedule() visits only the destinations in s->work (see there). */
	bool listed;               /* in s->work */
	bool polled;               /* in s->poll (during schedule()) */
	bool new_work;             /* legs queued since the last visit: ready connections look */
	struct slot_ref *ready;    /* its READY connections (entries of others are stale);
	                            * kept by smtp_client.c */
	uint32_t nready_refs, ready_cap;
};

/* A connection: its fields are the SMTP client's alone (shards/conn.h,
 * included by smtp_client.c only); the rest of the shard holds opaque
 * pointers and uses the functions declared below. */
struct conn;

/* The shard's connection slots, owned by smtp_client.c: nothing else
 * reads or changes them (shard.c asks through conn_pool_* below). */
struct conn_pool {
	struct conn **conns;       /* by slot; never move (the timer wheel links them) */
	unsigned max;              /* slots */
	uint32_t *free_slots;
	unsigned nfree;
	uint32_t *ready_gen;       /* by slot: gen + 1 while in its destination's ready refs */
	/* Connections that queued commands while none was outstanding: just
	 * before the ring submits, their sockets must hold no unread byte. */
	struct slot_ref *quiet;
	unsigned nquiet;
};

struct shard {
	unsigned index;
	const struct config *cfg;
	pthread_t thread;
	_Atomic int stop;
	_Atomic int exited;        /* the thread has returned: spill is the engine's */
	_Atomic int finishing;     /* SIGTERM: no new transactions */
	_Atomic uint32_t txns_open;
	struct ring *ring;
	int wake_fd;               /* engine -> shard */
	int engine_fd;             /* shard -> engine */
	uint64_t wake_buf;
	bool wake_armed;
	uint64_t notify_val;
	bool notify_inflight;      /* a write to engine_fd is on the ring */
	uint32_t unnotified;       /* outcomes pushed since the last notify */
	struct spsc inbox;         /* struct message * */
	struct spsc outbox;        /* struct outcome */
	struct outcome *spill;     /* outcomes waiting for room in outbox */
	size_t nspill, spill_cap;
	struct timer_wheel wheel;
	struct dest *dests;
	unsigned ndests;
	/* Pairs and their owners (shard.c): legs from shard k arrive in
	 * xin[k]; legs for shard k wait in xout[k] when its ring is full. */
	struct shard **peers;
	unsigned npeers;
	struct spsc *xin;
	struct dest *xout;         /* only qhead/qtail/qlen used */
	bool *xkick;               /* peer k has new legs: wake it */
	struct strmap throttles;   /* key -> struct throttle */
	struct throttle **thrs;    /* the same, to walk */
	unsigned nthrs, thrs_cap;
	int64_t wake_at;           /* a throttle refills then (0: none) */
	/* Adaptation (adapt.c): the reply rules' expressions compiled for this
	 * shard, and the actions in force that reach beyond one pair. */
	struct reply_matcher rules;
	struct adapt_ban **bans;   /* suspensions, slowed rates, counts (adapt.c) */
	unsigned nbans, bans_cap;
	struct strmap ban_index;   /* the same by key */
	struct adapt_ban *fulls;   /* waves and warm-up days full (none: source choice costs nothing) */
	unsigned nfulls, fulls_cap;
	int64_t day, day_end_wall; /* the local calendar day (warmup.timezone), and its end */
	struct spsc adapt_in;      /* struct adapt_cmd, from the engine */
	int32_t *swrr;             /* smooth weighted round robin, per pool member */
	unsigned nswrr;
	struct leg live;           /* list head: legs this shard holds */
	_Atomic(const struct config *) new_cfg; /* SIGHUP: to apply at the top of the loop */
	_Atomic uint64_t cfg_generation; /* of s->cfg, for the engine to free older ones */
	struct conn_pool pool;     /* smtp_client.c's */
	struct message *retry_head, *retry_tail; /* in due order */
	uint64_t rng;              /* retry jitter */
	struct message held;       /* list head: messages this shard owns */
	struct dkim_signer *signer; /* NULL when no DKIM key is configured */
	struct tls_ctx *tls;       /* the shard's TLS client context (NULL: none could be made) */
	char tls_ctx_error[200];   /* why not */
	uint64_t tls_counters[3];  /* full handshakes, resumed, fallbacks to plaintext */
	struct dns_resolver *dns;
	struct mx_resolver *mx;
	struct strmap sites;       /* site -> struct site_ref */
	uint64_t dns_counters[3];  /* kept when the resolver goes */
	uint64_t conns_opened, conns_failed; /* connections started; ended before they were ready (any cause) */
	/* The counters above as the engine reads them at a scrape (metrics):
	 * stored once per loop turn, relaxed, by this shard alone. */
	_Atomic uint64_t live_counters[SHARD_LIVE_N];
	/* The pairs' state as the engine reads it (pair_stats.c): written
	 * about once a second under stats_mu, which only the engine's reads
	 * share. */
	pthread_mutex_t stats_mu;
	struct shard_pair_stat *stats;
	size_t nstats, stats_cap;
	int64_t stats_at;          /* the next publication (monotonic) */
	/* Jobs the operator paused or bounced (adapt.c): how many bans of
	 * kind ADAPT_CMD_PAUSE/BOUNCE are in force (0: nothing to look up). */
	unsigned job_holds;
	int64_t next_gc;
	int64_t now;
	uint64_t reap_submits;     /* ring_submits() when the CQEs in hand were reaped */
	struct buf trace;          /* --trace smtp: lines written out once per loop turn */
	struct buf key_scratch;    /* dest_for_plan's site keys */
	/* Destinations schedule() looks at: those that got legs, whose
	 * connections had events while they have a queue, or that want more
	 * connections and have room for them (looked at each turn). */
	uint32_t *work, *poll;
	unsigned nwork, npoll, work_cap, poll_cap;
	/* Scratch of route_recipients and queue_legs, kept between calls. */
	bool routing;
	uint32_t *pending_idx, pending_cap;
	int32_t *route_dest;
	uint32_t route_dest_cap;
	struct leg **open_leg;     /* by destination: the leg being filled (NULL between calls) */
	uint32_t *rcpts_left;      /* by destination: recipients not in a leg yet (0 between calls) */
	unsigned leg_scratch_cap;
};

/* shard.c: outcomes and message bookkeeping used by the SMTP client */
void shard_outbox_put(struct shard *s, const struct outcome *o);
/* The outcome's strings in one block: response (NULs and all), mx, group. */
void outcome_set_text(struct outcome *o, const char *text, size_t text_len, const char *mx,
                      const char *group);
uint64_t shard_random(struct shard *s);
void shard_emit(struct shard *s, struct leg *leg, uint32_t pos, enum result r,
                uint16_t code, const char *enhanced, const char *text, size_t text_len,
                const struct conn *c, int64_t start_ms);
void shard_leg_done(struct shard *s, struct leg *leg);
/* The SMTP client's send of the leg's content is in flight (hold) or over
 * (release): the leg does not end, nor go home, before. */
void shard_leg_hold(struct leg *leg);
void shard_leg_release(struct shard *s, struct leg *leg);
/* Throttles (shard.c): may a transaction start on d now (takes a token);
 * the message limit per connection of d's pair. */
bool throttle_take_message(struct shard *s, struct dest *d);
unsigned dest_max_per_connection(const struct shard *s, const struct dest *d);
/* A socket of d's pair opened (+1) or closed (-1). */
void throttle_conn_count(struct dest *d, int delta);
/* Is a message token there (the loop wakes when one is due if not)? */
bool throttle_has_message(struct shard *s, struct dest *d);
/* May d's pair open one more connection now (takes its token)? */
bool throttle_open_conn(struct shard *s, struct dest *d);
/* The pair's throttle if this shard has it, or NULL. */
struct throttle *throttle_find(struct shard *s, const char *source, const char *group);
/* The pair's throttle, made on first use; put when a destination lets go. */
struct throttle *throttle_get(struct shard *s, const char *source, const char *group);
void throttle_put(struct shard *s, struct throttle *t);
/* New limits from s->cfg (unless gc_only); unused pairs go after a while. */
void throttles_refresh(struct shard *s, bool gc_only);
void throttles_free(struct shard *s);
/* The pair's rate (or its suspension) changed: tokens in hand are cut to
 * the new depth. */
void throttle_rate_changed(struct throttle *t);
/* The pair's rate now (messages per second, 0: none), and the one it
 * climbs back to while slowed: its configured rate, else where it was
 * slowed from. */
double throttle_rate(const struct throttle *t);
double throttle_target_rate(const struct throttle *t);
/* The connections the pair may have open now (fewer while slowed). */
unsigned throttle_max_conns(const struct throttle *t);
/* Is the pair suspended? (The loop wakes when it ends.) */
bool throttle_suspended(struct shard *s, const struct throttle *t);
/* adapt.c (see there) */
void adapt_rules_compile(struct shard *s);
/* A refusal on d (greeting: to a connection not ready yet): the first
 * rule it matches acts; returns a VERDICT_*. */
uint8_t adapt_on_reply(struct shard *s, struct dest *d, const struct smtp_reply *r, bool greeting);
void adapt_meter(struct shard *s, struct throttle *t);
void adapt_climb(struct shard *s, struct throttle *t);
void adapt_throttle_new(struct shard *s, struct throttle *t);
void adapt_take_commands(struct shard *s);
/* A reload changed waves or warm-up plans: full ones are found again. */
void adapt_budgets_changed(struct shard *s);
/* What is over goes (the shard's GC). */
void adapt_gc(struct shard *s);
/* t's counts of waves and days that are over go. */
void adapt_budgets_gc(struct shard *s, struct throttle *t, int64_t wall);
/* Budgets (waves, warm-up), on the pair's owner: may leg l start on d
 * now? If not (the pair's wave or day is full), *full says until when
 * (monotonic) and for which job, and the leg goes elsewhere. */
bool adapt_leg_may_start(struct shard *s, struct dest *d, struct leg *l, struct adapt_ban *full);
void adapt_leg_started(struct shard *s, struct dest *d, struct leg *l);
/* On the message's shard: the source IP for m's recipients in group:
 * m->source, unless its wave or warm-up day toward the group is known to
 * be full: then the next IP of m's pool with room; ADAPT_NO_ROOM when
 * none has (*until: when the first of them frees up, monotonic). */
#define ADAPT_NO_ROOM (-2)
int adapt_source_for(struct shard *s, const struct message *m, const char *group, int64_t *until);
/* A full budget learnt from a leg sent home. */
void adapt_learn_full(struct shard *s, const struct adapt_ban *full);
void adapt_free(struct shard *s);
/* The operator's hold on m's job (ADAPT_CMD_PAUSE or _BOUNCE), or NULL. */
const struct adapt_ban *adapt_job_hold(const struct shard *s, const struct message *m);
/* shard.c: messages waiting in memory for a hold (a suspension, a paused
 * job; job given: that job's only) are due now: a hold was lifted. */
void shard_wake_held(struct shard *s, const char *job);
/* pair_stats.c: about once a second, the pairs' state for the engine. */
void pair_stats_publish(struct shard *s);
void pair_stats_free(struct shard *s);
/* throttle.c: a bucket's fill, 0..1, as of now (-1: no limit). */
double throttle_fill(const struct shard *s, const struct throttle *t);
/* The leg's pair's wave or warm-up day is full (full): its recipients go
 * from another IP of the pool, or wait (see adapt.c, "budgets"). */
void shard_leg_over_budget(struct shard *s, struct leg *leg, const struct adapt_ban *full);
/* Queues the leg's RT_NEXT_TXN recipients as a new transaction, first in line. */
void shard_leg_requeue_next(struct shard *s, struct leg *leg);
/* dest_queue.c */
struct leg *dest_pop(struct dest *d);
void dest_push(struct dest *d, struct leg *leg);
void dest_push_front(struct dest *d, struct leg *leg);
/* Appends every leg of from to to, in order (from ends empty). */
void dest_move_all(struct dest *from, struct dest *to);
/* Back-off bookkeeping (shard.c owns struct dest): a connection got past
 * EHLO; a transaction ended with a reply; a connection failed before
 * completing one (may suspend the destination and defer its queue). */
void dest_conn_ready(struct dest *d);
void dest_txn_done(struct dest *d);
void dest_conn_capped(struct shard *s, struct dest *d);
void dest_conn_failed(struct shard *s, struct dest *d, uint16_t code, const char *enhanced,
                      const char *why);
/* Settles the leg's recipients not settled yet with this result and
 * reason, and ends it (shard_leg_done). */
void leg_settle(struct shard *s, struct leg *l, enum result r, uint16_t code, const char *enhanced,
                const char *why, const struct conn *c);
/* Defers the leg's open recipients for adaptation's reason (a suspension,
 * a wave, a daily cap): its message's next attempt not before until
 * (monotonic), exactly then; a long wait is out of memory. */
void leg_wait(struct shard *s, struct leg *l, int64_t until, uint8_t waits, const char *why);
/* Settles every queued transaction of d with this result (deferred or
 * bounced) and reason. */
void dest_settle_queue(struct shard *s, struct dest *d, enum result r, uint16_t code,
                       const char *enhanced, const char *why, const struct conn *c);

/* Asks schedule() to look at destination di next turn; new_work: legs
 * were queued (or a ready connection is idle while legs wait). */
void shard_dest_note(struct shard *s, uint32_t di, bool new_work);

/* smtp_client.c: the connections and their pool. The SMTP client runs in
 * the shard's context (its ring, timer wheel, clock, configuration and
 * destinations); the pool and every connection are its alone. */
/* Makes room for n connection slots in all; the slots not in use. */
void conn_pool_grow(struct shard *s, unsigned n);
unsigned conn_pool_slots(const struct shard *s);
unsigned conn_pool_free_slots(const struct shard *s);
void conn_pool_free(struct shard *s);
void conn_open(struct shard *s, uint32_t dest);
/* A completion of a connection's operation (stale ones are dropped). */
void conn_on_cqe(struct shard *s, const struct ring_cqe *cqe);
/* The timer wheel's callback for connection deadlines (arg: the shard). */
void conn_on_timer(struct timer *t, void *arg);
/* d's ready connections take its queued legs (or QUIT, when d has more
 * connections than its limit). True when an idle one is left while legs
 * wait (conn_take_work gives up after a bounded number refused). */
bool conn_dest_give_work(struct shard *s, struct dest *d);
/* referenced[dest] = true for every destination a connection is on. */
void conn_pool_mark_dests(const struct shard *s, bool *referenced);
/* After a reload renumbered the destinations: connections and their
 * legs follow map (old index -> new, -1: gone, only for closing ones). */
void conn_pool_retarget(struct shard *s, const int32_t *map, unsigned ndests);
/* Stop: QUIT idle connections (graceful), end the rest (their legs defer). */
void conn_pool_shutdown(struct shard *s, bool graceful);
/* After the grace period: cancel every connection's operations; count
 * those still in flight; close every socket still open outright. */
void conn_pool_cancel_all(struct shard *s);
unsigned conn_pool_ops(const struct shard *s);
void conn_pool_close_fds(struct shard *s);
/* What an outcome says of the connection (c may be NULL). */
const char *conn_mx(const struct conn *c);
/* "TLSv1.3:cipher" when the connection is through TLS, else NULL. */
const char *conn_tls(const struct conn *c);
const char *conn_peer(const struct conn *c);
const char *conn_source(const struct conn *c);
uint32_t conn_dest(const struct conn *c);
/* --trace smtp: writes what the connections said this loop turn. */
void conn_trace_flush(struct shard *s);
/* Before each submit: fails the connections in the quiet list whose
 * server sent bytes nobody asked for (see THE INVARIANT in smtp_client.c). */
void conn_check_quiet(struct shard *s);
#endif
