/* engine/header_templates.h - Feedback-ID and List-Unsubscribe added from
 * the configuration's templates (see header_templates.c). */
#ifndef SLUICE_HEADER_TEMPLATES_H
#define SLUICE_HEADER_TEMPLATES_H
#include "lib/message.h"
#include "../shards/config_types.h"

/* Puts the configured fields the message lacks in front of its header
 * block (spool worker thread, before the message goes to its shard). */
void header_templates_apply(const struct config *cfg, struct message *m);
/* A template the configuration may hold: NULL, or why not. */
const char *header_template_invalid(const char *t);
#endif
