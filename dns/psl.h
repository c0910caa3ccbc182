/* dns/psl.h - registered (organisational) domains: the public suffix list
 * (Debian's publicsuffix package) and its wildcard and exception rules.
 * MX groups and DMARC's organisational domain both use it. */
#ifndef SLUICE_DNS_PSL_H
#define SLUICE_DNS_PSL_H
#include <stdbool.h>

/* "a.b.example.co.uk" -> "example.co.uk": the label below the public
 * suffix, from the list when installed, else a short rule. host is in
 * lower case; the result points into it (host itself when it is a public
 * suffix or has one label). */
const char *psl_registered_domain(const char *host);
/* True when the list was found and read. */
bool psl_available(void);
#endif
