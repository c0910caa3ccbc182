/* engine/bounce_suppress.h - hard bounces onto the suppression list, from
 * a thread of their own (see bounce_suppress.c). */
#ifndef SLUICE_BOUNCE_SUPPRESS_H
#define SLUICE_BOUNCE_SUPPRESS_H
#include "suppress.h"

struct bounce_suppress;
struct bounce_suppress *bounce_suppress_start(struct suppress *store);
/* Engine side: rcpt bounced for good with class reason (message id). */
void bounce_suppress_add(struct bounce_suppress *w, const char *rcpt, const char *reason, const char *id);
/* Adds what waits, then stops. */
void bounce_suppress_stop(struct bounce_suppress *w);
#endif
