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
	char problems[400];       /* errors receivers get past (defaults apply), "" when none */
};

/* True when text starts with "v=DMARC1" (what selects a record). */
bool dmarc_is_record(const char *text);
/* False with why when the record is not usable: v=DMARC1 not first, or
 * no valid p= and no rua= (with an rua, a bad p= is none, RFC 7489
 * 6.6.3). Other errors (a bad sp, adkim, aspf, pct, an rua that is not a
 * mailto: URI, tag syntax) leave their defaults and are described in
 * r->problems, as receivers read such a record (RFC 7489 6.3). */
bool dmarc_parse(const char *text, struct dmarc_record *r, char *why, size_t why_len);
/* The organisational domain of a (lower case) name (public suffix list). */
const char *dmarc_org_domain(const char *name);
/* Whether domain a aligns with b: 's' equal, 'r' the same organisational
 * domain (names compared ignoring case). */
bool dmarc_aligned(const char *a, const char *b, char mode);
#endif
