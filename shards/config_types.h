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
	unsigned max_connections;     /* per destination, all shards together */
	unsigned max_per_connection;  /* messages per connection */
	unsigned max_rcpt_per_txn;
	int retry_interval_ms;          /* first wait before a retry, doubled per attempt */
	int retry_max_ms;               /* cap on that wait */
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
	uint64_t generation;          /* 0 at start, then one more per SIGHUP reload */
};

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
