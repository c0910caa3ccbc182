/* dns/dmarc.h - DMARC (RFC 7489): reading a policy record, the
 * organisational domain its lookup falls back to, and identifier
 * alignment. */
#ifndef SLUICE_DNS_DMARC_H
#define SLUICE_DNS_DMARC_H
#include <stdbool.h>
#include <stddef.h>

struct dmarc_record {
	char p[16], sp[16];       /* "none" | "quarantine" | "reject"; sp "" when absent */
	char adkim, aspf;         /* 'r' (relaxed, default) or 's' (strict) */
	unsigned pct;             /* 0..100, default 100 */
	char rua[512];            /* "" when absent */
};

/* True when text starts with "v=DMARC1" (what selects a record). */
bool dmarc_is_record(const char *text);
/* False with why when the record is not valid: v=DMARC1 not first, no
 * valid p=, a bad adkim/aspf/pct/sp, an rua that is not a mailto: URI. */
bool dmarc_parse(const char *text, struct dmarc_record *r, char *why, size_t why_len);
/* The organisational domain of a (lower case) name (public suffix list). */
const char *dmarc_org_domain(const char *name);
/* Whether domain a aligns with b: 's' equal, 'r' the same organisational
 * domain (names compared ignoring case). */
bool dmarc_aligned(const char *a, const char *b, char mode);
#endif
