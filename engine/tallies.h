/* engine/tallies.h - per job and per (source IP, MX group): recipients
 * delivered, bounced, complaints... this run (see tallies.c). */
#ifndef SLUICE_TALLIES_H
#define SLUICE_TALLIES_H
#include "lib/message.h"
#include <stdint.h>
#include <stdio.h>

struct tally {
	uint64_t delivered, bounced, expired, suppressed, complained, unsubscribed;
};
struct tallies;

struct tallies *tallies_new(void);
/* One recipient's final line (a deferral is not counted); returns the
 * job's tally (NULL: no job, or too many). */
const struct tally *tallies_count(struct tallies *t, const char *job, const char *source, const char *group,
                                  enum result r);
/* n over what was sent (delivered + bounced); 0 when nothing was. */
double tally_rate(uint64_t n, const struct tally *x);
/* The summary's tables (the busiest first). */
void tallies_print(struct tallies *t, FILE *out);
void tallies_free(struct tallies *t);
#endif
