/* dns/mx.h - where mail for a domain goes (RFC 5321 section 5, RFC 7505):
 * the MX hosts by preference (random among equal preference), their
 * addresses, or the reason there is none: NXDOMAIN and null MX bounce at
 * once, DNS trouble and MX hosts without addresses defer. The answer is a
 * plan, cached per domain for the shortest TTL that built it, with
 * lookups for a domain coalesced while its plan is being built.
 *
 * A plan also names its site (the MX host set: domains with the same set
 * share connections) and its MX group (the provider: the first group rule
 * matching an MX host, else the registered domain of the best MX host),
 * the key throttles use. */
#ifndef SLUICE_DNS_MX_H
#define SLUICE_DNS_MX_H
#include "resolver.h"

struct mx_group_rule {
	char *pattern;            /* "*.google.com" (fnmatch, case-insensitive) */
	char *group;              /* "gmail" */
};

struct mx_config {
	uint16_t port;            /* --smtp-port */
	bool ipv6;                /* use AAAA records (the machine routes IPv6) */
	const struct mx_group_rule *rules;  /* the config's, tried before the built-in ones */
	unsigned nrules;
	unsigned cache_max;       /* domains */
};

struct mx_addr {
	struct sockaddr_storage sa;
	socklen_t len;
	const char *host;         /* the MX host name (inside the plan) */
	uint16_t pref;            /* its preference */
};

enum mx_kind { MX_DELIVER = 0, MX_BOUNCE, MX_DEFER };

struct mx_plan {
	enum mx_kind kind;
	uint16_t code;            /* bounce/defer: SMTP-like code, enhanced status, reason */
	char enhanced[8];
	char why[300];
	uint64_t serial;          /* changes whenever the plan is rebuilt */
	char *site;               /* "mx1.example.com,mx2.example.com" */
	char *group;
	char **hosts;             /* in try order */
	unsigned nhosts;
	struct mx_addr *addr;     /* in try order */
	unsigned naddr;
};

/* Called once with the plan (valid during the call), or with NULL when the
 * resolver is freed before it is ready. */
typedef void (*mx_done_fn)(void *arg, const struct mx_plan *plan);

struct mx_resolver;
struct mx_resolver *mx_resolver_new(struct dns_resolver *dns, const struct mx_config *cfg);
void mx_resolver_free(struct mx_resolver *m);
/* New settings (SIGHUP): cached plans are dropped when they change. */
void mx_resolver_configure(struct mx_resolver *m, const struct mx_config *cfg);
/* The cached plan for domain (valid until the next call), or NULL: then,
 * if done is given, done(arg, plan) is called later. */
const struct mx_plan *mx_lookup(struct mx_resolver *m, const char *domain, mx_done_fn done, void *arg);

/* The MX group of one MX host name: rules first, then the built-in
 * provider list, then the host's registered domain. Writes into out. */
void mx_group_of(const struct mx_group_rule *rules, unsigned nrules, const char *host,
                 char *out, size_t out_len);
#endif
