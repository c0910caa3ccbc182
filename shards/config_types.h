/* shards/config_types.h - the run configuration as every layer reads it:
 * routes, limits, timeouts, keys, resolvers. engine/config.c fills it
 * (built-in defaults, then the config file, then flags); shards get it
 * const and never change it. */
#ifndef SLUICE_CONFIG_TYPES_H
#define SLUICE_CONFIG_TYPES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "../dkim/keys.h"
#include "../dns/mx.h"

struct route {
	char *domain;                 /* "*" or a domain, matched case-insensitively */
	char *host;                   /* numeric address as given */
	uint16_t port;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char *label;                  /* "host:port", logged as mx */
	char *tls_name;               /* the name TLS sends (SNI) and verifies, or NULL */
	char *group;                  /* its MX group (throttles key on it); NULL: label */
};

/* A source IP: connections from it are bound to it before connect and
 * say its EHLO name. */
struct source_ip {
	char *text;                   /* canonical numeric text ("127.0.0.10", "::1") */
	struct sockaddr_storage addr; /* port 0 */
	socklen_t addr_len;
	char *helo;                   /* its EHLO name; NULL: cfg->helo */
};

/* A pool: source IPs (indices into cfg->sources) and their weights. */
struct pool_member {
	unsigned source;
	unsigned weight;              /* >= 1 */
};
struct pool {
	char *name;
	struct pool_member *members;  /* at least one */
	unsigned nmembers;
};

/* The pool for mail without X-Pool: by its job (X-Job), else by its
 * sender's domain (exactly one of job, sender_domain set). */
struct pool_rule {
	char *job;
	char *sender_domain;
	unsigned pool;                /* index into cfg->pools */
};

/* The limits of one (source IP, MX group) pair. */
struct shape_limits {
	unsigned max_connections;     /* open at once */
	unsigned max_per_connection;  /* messages (transactions) before QUIT */
	double max_rate;              /* messages per second; 0: no limit */
	unsigned burst;               /* bucket depth in messages; 0: automatic */
	double max_new_conn_rate;     /* connections opened per second; 0: no limit */
};

/* A refinement of the limits: for one MX group (NULL: every group), and
 * optionally only for one source IP or one pool's IPs. Only the fields in
 * set apply (SHAPE_*). */
enum { SHAPE_MAXCONN = 1, SHAPE_PERCONN = 2, SHAPE_RATE = 4, SHAPE_BURST = 8, SHAPE_NEWCONN = 16 };
struct shape_rule {
	char *group;
	char *source;                 /* canonical source IP text, or NULL */
	char *pool;                   /* pool name, or NULL */
	unsigned set;
	struct shape_limits lim;
	bool shipped;                 /* from the providers file (weaker than the config's) */
};

/* Reply rules (adaptation): what sluice does when a server's reply
 * matches one (shipped in share/sluice/responses.conf; the configuration's
 * adaptation.rules are tried first; the first match wins). slow: the
 * pair's rate falls by a factor, then climbs back while replies stay clean
 * (AIMD); suspend: a pair, a group (every source IP) or a source IP
 * (every group) sends nothing for a while, its queue waits; bounce / defer:
 * the recipient's result whatever the code says. */
enum reply_action { REPLY_SLOW = 1, REPLY_SUSPEND, REPLY_BOUNCE, REPLY_DEFER };
enum adapt_scope { SCOPE_PAIR = 0, SCOPE_GROUP, SCOPE_SOURCE };
struct reply_rule {
	char *name;                   /* logged as "rule" */
	char *group;                  /* MX group (fnmatch pattern), NULL: any */
	uint16_t code;                /* exact code; 0: code_class */
	uint8_t code_class;           /* 4 or 5 ("4xx"); 0 with code 0: any >= 400 */
	char *enhanced;               /* fnmatch pattern on the enhanced code, NULL: any */
	char *text;                   /* POSIX ERE, case ignored, NULL: any (each shard compiles it) */
	enum reply_action action;
	enum adapt_scope scope;       /* suspend */
	int64_t duration_ms;          /* suspend; 0: adaptation.suspend-time */
	double factor;                /* slow; 0: adaptation.slow-factor */
	bool shipped;
};
/* A bounce class rule (feedback.class-rules, bounce-classes.conf): the
 * first whose code, enhanced code and text all match a reply names its
 * class (engine/bounce_class.h). */
struct bounce_rule {
	char *name;
	uint16_t code;                /* exact code; 0: code_class */
	uint8_t code_class;           /* 4 or 5 ("4xx"); 0 with code 0: any */
	char *enhanced;               /* fnmatch pattern, NULL: any */
	char *text;                   /* POSIX ERE, case ignored, NULL: any */
	uint8_t bclass;               /* enum bounce_class */
	bool shipped;
};
/* adaptation.*: the AIMD steps and the defaults of the rules. */
struct adapt_params {
	double slow_factor;           /* rate multiplied by this on "slow" */
	double floor;                 /* never below (messages per second) */
	double increase;              /* then + this share of the configured rate... */
	int increase_every_ms;        /* ...after this long without a slow-down */
	int holdoff_ms;               /* replies this soon after a slow-down are the same overshoot */
	int suspend_ms;               /* a suspend rule without a duration */
};

/* Waves: a job's messages go at most size per MX group per wave, one
 * wave every every_ms (waves start at multiples of it since the Unix
 * epoch: hourly waves start on the hour, UTC). */
struct wave_rule {
	char *job;
	unsigned size;
	int64_t every_ms;
};

/* IP warm-up: a source IP's daily cap per MX group follows its plan from
 * its start day (local calendar days in warmup.timezone); after the plan,
 * no cap. */
struct warm_ip {
	char *ip;                     /* as configured (canonical) */
	unsigned source;              /* index into cfg->sources */
	int64_t start_day;            /* days since 1970-01-01 of its first day */
	unsigned *plan;               /* messages per day per group, by day; NULL: cfg->warm_plan */
	unsigned nplan;
};

/* STARTTLS (RFC 3207): none never; opportunistic when offered, the
 * certificate unchecked; required: defer without it; verify: required and
 * a chain valid for the MX host name. Ordered: each asks more. */
enum tls_policy { TLS_POLICY_NONE, TLS_POLICY_OPPORTUNISTIC, TLS_POLICY_REQUIRED, TLS_POLICY_VERIFY };

/* A TLS policy for a recipient domain or an MX group (one of the two set). */
struct tls_rule {
	char *domain;
	char *group;
	enum tls_policy policy;
};

struct smtp_timeouts {            /* milliseconds, RFC 5321 4.5.3.2 defaults */
	int connect, banner, ehlo, mail, rcpt, data, data_block, dot, quit, idle;
};

struct config {
	char *config_path;
	char *spool;
	char *log_path;
	char *helo;
	unsigned shards;              /* 0 = online CPUs */
	unsigned spool_workers;       /* 0 = min(shards, 4) */
	struct route *routes;
	unsigned nroutes;
	/* Default limits of every (source IP, MX group) pair (flags and
	 * delivery.*), refined by shape_rules (config_pair_limits). */
	unsigned max_connections;     /* per pair, all shards together */
	unsigned max_per_connection;  /* messages per connection */
	double max_rate;              /* messages per second; 0: no limit */
	unsigned rate_burst;          /* 0: automatic (see config_pair_limits) */
	double max_new_conn_rate;     /* connections per second; 0: no limit */
	struct shape_rule *shape_rules; /* providers file first, then the config's */
	unsigned nshape_rules;
	char *providers_path;         /* the providers file read, or NULL (none, or built in) */
	struct reply_rule *reply_rules; /* the configuration's, then the responses file's */
	unsigned nreply_rules;
	char *responses_path;         /* the responses file read, or NULL (none, or built in) */
	struct bounce_rule *bounce_rules; /* feedback.class-rules, then the classes file's */
	unsigned nbounce_rules;
	char *classes_path;           /* the bounce classes file read, or NULL (none, or built in) */
	char *feedback_secret_file;   /* feedback.secret-file: the tracking header's HMAC key, or NULL */
	char *track_secret;           /* its bytes (NULL: no tracking header is added) */
	char *feedback_id_tpl;        /* feedback.feedback-id: Feedback-ID template, or NULL */
	char *unsubscribe_tpl;        /* feedback.list-unsubscribe: List-Unsubscribe template, or NULL */
	bool unsubscribe_post;        /* feedback.list-unsubscribe-post: add RFC 8058's field too */
	char *feedback_maildir;       /* feedback.maildir: reports the daemon ingests, or NULL */
	int require_track;            /* feedback.require-track: 1 yes, 0 no, -1 unset (yes with a secret) */
	double complaint_threshold;   /* feedback.complaint-threshold: a job's complaint rate that pauses it */
	unsigned complaint_min;       /* feedback.complaint-min: ...once this many of it were sent */
	char *suppression_list;       /* suppression-list: the store's directory (default SPOOL/suppress), NULL: off */
	size_t track_secret_len;
	struct adapt_params adapt;
	struct wave_rule *waves;
	unsigned nwaves;
	struct warm_ip *warm_ips;
	unsigned nwarm_ips;
	unsigned *warm_plan;          /* the default plan (warmup.plan, else shipped) */
	unsigned nwarm_plan;
	char *warm_tz;                /* warmup.timezone (NULL: the system's) */
	/* Source IPs (none: the kernel picks, one unbound source) and pools. */
	struct source_ip *sources;
	unsigned nsources;
	struct pool *pools;
	unsigned npools;
	int default_pool;             /* index, or -1 when there are no pools */
	struct pool_rule *pool_rules;
	unsigned npool_rules;
	unsigned max_rcpt_per_txn;
	int retry_interval_ms;          /* first wait before a retry, doubled per attempt */
	int retry_max_ms;               /* cap on that wait */
	int wait_in_spool_ms;           /* a deferred file whose next attempt is at least this
	                                 * far waits in the spool, out of memory (0: never) */
	unsigned bounce_after_s;
	/* per destination: after dest_failures connections in a row fail before
	 * their first transaction completes, it waits dest_backoff_ms, doubled
	 * per further failure up to dest_backoff_max_ms */
	unsigned dest_failures;
	int dest_backoff_ms;
	int dest_backoff_max_ms;
	bool bounce_5xx_greeting;
	bool trace_smtp;              /* --trace smtp: each connection's dialogue on stderr */     /* a 5xx greeting from every address bounces (else defers) */
	bool drain;
	double max_time_s;            /* 0 = no limit */
	double stop_timeout_s;        /* SIGTERM: wait this long for open transactions */
	bool log_fsync;               /* lines durable (fdatasync) before files leave */
	bool use_chunking, use_pipelining;
	unsigned inflight_per_shard;  /* messages a shard holds at once */
	uint64_t inflight_bytes_per_shard; /* and their memory (file + body) */
	uint64_t max_message_bytes;
	struct smtp_timeouts timeouts;
	struct dkim_key *dkim_keys;   /* loaded and checked at start (and reload) */
	unsigned ndkim_keys;
	char *dkim_fallback;          /* signs mail from domains without keys, or NULL */
	char *dsn_spool;              /* write DSNs for bounces into this spool, or NULL */
	/* DNS: for recipient domains no route matches */
	struct dns_server dns_servers[8]; /* --dns-server, else /etc/resolv.conf */
	unsigned ndns_servers;
	int dns_timeout_ms;           /* per try */
	unsigned dns_attempts;        /* rounds over the servers */
	unsigned dns_cache_size;      /* names (and domains) cached per shard */
	uint16_t smtp_port;           /* for MX hosts found in DNS (25) */
	bool ipv6;                    /* ask AAAA for MX hosts (default: when routable) */
	struct mx_group_rule *mx_groups; /* MX host pattern -> provider group */
	unsigned nmx_groups;
	/* TLS: the policy where no rule matches, rules (a domain's first, then
	 * its MX group's), the CA file for verify (NULL: the system's), and
	 * how long an MX host whose handshake failed gets plaintext
	 * (opportunistic; 0: never, the failure counts against it) */
	enum tls_policy tls_policy;
	struct tls_rule *tls_rules;
	unsigned ntls_rules;
	char *tls_ca;
	bool tls_plain_fallback;
	int tls_plain_fallback_ms;
	char *metrics;                /* --metrics / metrics: "IP:PORT" of /metrics, or NULL (off; start only) */
	char *control_socket;         /* --control / control-socket: the unix control socket's path
	                               * (default SPOOL/control), or NULL (off; start only) */
	char *doctor_at_start;        /* doctor.at-start: "warn" (default), "refuse" or "off" */
	unsigned doctor_daily_volume; /* doctor.daily-volume: messages a day (p=none warns above 5,000) */
	uint64_t generation;          /* 0 at start, then one more per SIGHUP reload */
};

/* The limits of the pair (source IP index, or -1 for the unbound
 * source; MX group): the defaults, then the matching rules from least to
 * most specific (shipped, then config: any group, group; then pool, then
 * source IP), each setting only its fields. burst is never 0 on return. */
void config_pair_limits(const struct config *cfg, int source, const char *group,
                        struct shape_limits *out);
/* The pool a message goes out of: its X-Pool (xpool, may be NULL), else a
 * rule for its job, else for its sender's domain, else the default.
 * Returns the pool index; CONFIG_NO_POOL when no pool is configured (one
 * unbound source); CONFIG_UNKNOWN_POOL when xpool names none. */
#define CONTROL_PATH_MAX 108           /* sizeof(sun_path): a unix socket path and its NUL */
#define CONFIG_NO_POOL (-1)
#define CONFIG_UNKNOWN_POOL (-2)
int config_pool_for(const struct config *cfg, const char *xpool, const char *job, const char *sender);
/* The source index of a canonical IP text, or -1. */
int config_source_index(const struct config *cfg, const char *text);
/* "100/s", "6000/m", "50000/h" -> messages per second; false when malformed. */
bool config_rate_parse(const char *spec, double *per_second);
/* The same waves and warm-up (plans, IPs, start days) in both. */
bool config_budgets_same(const struct config *a, const struct config *b);
/* The wave rule of a job, or NULL. */
const struct wave_rule *config_wave_for(const struct config *cfg, const char *job);
/* The warm-up entry of a source IP (index), or NULL. */
const struct warm_ip *config_warm_for(const struct config *cfg, int source);
/* A warming IP's cap per group on local day `day` (days since the epoch);
 * 0: no cap (after its plan). */
unsigned config_warm_cap(const struct config *cfg, const struct warm_ip *w, int64_t day);
/* A source IP's share of n by weight among its pool's members
 * (largest remainder, ties to the earlier member: the shares add up to n);
 * n when the source is in no such pool. */
unsigned config_pool_share(const struct config *cfg, int pool, int source, unsigned n);
/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int64_t civil_days(int y, unsigned m, unsigned d);
/* "90", "90s", "30m", "2h", "1d" -> milliseconds (> 0); false if not one. */
bool config_duration_parse(const char *spec, int64_t *ms);

/* Index of the route for a recipient domain, or -1 (then DNS decides). */
int config_route_for(const struct config *cfg, const char *domain);
/* The TLS policy for a recipient domain (NULL: any) reached through an MX
 * group (NULL: none): a rule for the domain, else one for the group, else
 * the default. */
enum tls_policy config_tls_policy(const struct config *cfg, const char *domain, const char *group);
/* Does any policy, default or rule, ask for verification? */
bool config_tls_verifies(const struct config *cfg);
const char *tls_policy_name(enum tls_policy p);
/* "none" ... "verify" -> policy; false when the word is none of them. */
bool tls_policy_parse(const char *word, enum tls_policy *p);
#endif
