/* engine/doctor.h - `sluice doctor`'s checks of one sending domain: SPF
 * for each source IP, DKIM records against the private keys, DMARC and
 * alignment, reverse DNS against EHLO names, MX, and the optional
 * MTA-STS, TLS-RPT and BIMI records; all asked through sluice's own
 * resolver. And the lint of one spool file against the bulk-sender
 * rules (doctor_message.c). */
#ifndef SLUICE_DOCTOR_H
#define SLUICE_DOCTOR_H
#include "doctor_report.h"
#include "../dkim/keys.h"

struct dns_sync;

struct doctor_dkim {
	const char *selector;
	const struct dkim_key *key;   /* the private key it signs with, or NULL (record checks only) */
};

struct doctor_ip {
	const char *ip;               /* numeric */
	const char *helo;             /* its EHLO name, or NULL (not known) */
};

struct doctor_domain {
	const char *domain;           /* the From domain */
	const struct doctor_dkim *dkim;
	unsigned ndkim;
	const struct doctor_ip *ips;
	unsigned nips;
	const char *mail_from;        /* envelope sender (address or domain); NULL: the domain */
	const char *dkim_domain;      /* the d= its mail is signed with; NULL: none known */
	unsigned daily_volume;        /* messages a day (p=none warns above 5,000) */
};

void doctor_check_domain(struct dns_sync *dns, const struct doctor_domain *d, struct doctor_report *out);

/* Lints a spool file (envelope lines, then the message). dkim_domains:
 * the signing domains configured (its From domain should align with one). */
void doctor_check_message(const char *path, const char *const *dkim_domains, unsigned ndkim_domains,
                          struct doctor_report *out);

/* `sluice doctor` */
int doctor_main(int argc, char **argv);
/* At the start of `sluice run` (doctor.at-start): "warn" checks every
 * configured domain in the background and writes each failure to stderr
 * as a warning; "refuse" checks first and returns false on a failure;
 * "off" nothing. Skipped when every domain is routed (no DNS is asked). */
struct config;
bool doctor_at_start(const struct config *cfg);
/* When the run ends: waits a little (5 s at most) for the checks at start
 * to finish, and says so when they did not. */
void doctor_at_start_end(void);
#endif
