/* shards/reply_rules.h - which reply rule (struct reply_rule, see
 * config_types.h) a server's refusal matches. Pure: no I/O, no shard;
 * unit-tested against real providers' replies. Each user (a shard) builds
 * its own matcher: glibc's regexec takes a lock on a compiled expression. */
#ifndef SLUICE_REPLY_RULES_H
#define SLUICE_REPLY_RULES_H
#include "config_types.h"
#include "smtp_reply.h"
#include <regex.h>

struct reply_matcher {
	const struct reply_rule *rules;
	unsigned n;
	regex_t *re;               /* by rule; compiled when it has a text */
	bool *ok;
	char *text;                /* scratch: the text a rule's expression searches */
};

/* Compiles the rules' expressions (checked by the configuration). */
void reply_matcher_init(struct reply_matcher *m, const struct reply_rule *rules, unsigned n);
void reply_matcher_free(struct reply_matcher *m);
/* The first rule r (a reply to a destination of this MX group, NULL when
 * none) matches, or -1. Only refusals (>= 400) match; a rule's code,
 * enhanced code and group are looked at before its expression, which
 * searches the reply's text as the rules file says: each line without its
 * enhanced code, the lines joined by a space. */
int reply_matcher_find(struct reply_matcher *m, const char *group, const struct smtp_reply *r);
/* That text of r, in out (cap bytes, NUL-terminated); its length. */
size_t reply_rule_text(const struct smtp_reply *r, char *out, size_t cap);
#endif
