/* dns/spf.h - SPF (RFC 7208): check_host() for one client IP and sender,
 * with the limits receivers enforce counted as they count them (10
 * DNS-querying terms, 2 void lookups, 10 MX or PTR names), and macros.
 * The DNS is asked through a callback, so `sluice doctor` runs it on
 * sluice's own resolver and a test can feed it answers. */
#ifndef SLUICE_DNS_SPF_H
#define SLUICE_DNS_SPF_H
#include "packet.h"

enum spf_result { SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_TEMPERROR, SPF_PERMERROR };
const char *spf_result_name(enum spf_result r);

/* Asks name/type and fills *out (freed by the caller with dns_answer_free);
 * err gets the reason of a failure other than NODATA/NXDOMAIN. */
typedef void (*spf_ask_fn)(void *arg, const char *name, uint16_t type, struct dns_answer *out,
                           char *err, size_t err_len);

struct spf_query {
	const char *ip;           /* the client's address, numeric */
	const char *sender;       /* MAIL FROM: "local@domain", or a domain (local part "postmaster") */
	const char *helo;         /* its EHLO name (%{h}); NULL: the sender's domain */
	spf_ask_fn ask;
	void *ask_arg;
};

struct spf_eval {
	enum spf_result result;
	unsigned lookups;         /* DNS-querying terms evaluated (include a mx ptr exists redirect) */
	unsigned voids;           /* lookups that found nothing (NXDOMAIN or no records) */
	bool used_ptr;            /* a ptr mechanism was evaluated (RFC 7208 5.5: do not use) */
	char domain[DNS_NAME_MAX + 1]; /* the sender's domain, where evaluation started */
	char detail[600];         /* what decided: the matching term and where, or the error */
};

/* RFC 7208 section 4: evaluates the sender's domain's record for ip.
 * Bounded: at most 10 terms that query DNS, each lookup bounded by the
 * resolver's timeouts. */
void spf_check_host(const struct spf_query *q, struct spf_eval *out);

/* The records of a TXT answer that are SPF records ("v=spf1" then a space
 * or the end, case ignored): how many, and the first in *first. */
unsigned spf_records(const struct dns_answer *txt, const char **first);
/* The qualifier of a record's top-level `all` ('+', '-', '~', '?'), or 0
 * when it has none (then a redirect= or the neutral default decides). */
char spf_all_qualifier(const char *record);
#endif
