/* engine/bounce_class.h - the bounce classes: what an SMTP reply, or a
 * report read later (a DSN's status and diagnostic, an ARF complaint),
 * says about a recipient, in one documented taxonomy; and which classes
 * suppress the recipient (only the permanent, recipient-level ones: a
 * reputation or policy refusal is the sender's problem, not the
 * address's). The rules (reply code + enhanced code + regular expression
 * on the text) come from a shipped file users can extend
 * (PREFIX/share/sluice/bounce-classes.conf, also built in). */
#ifndef SLUICE_BOUNCE_CLASS_H
#define SLUICE_BOUNCE_CLASS_H
#include <stdbool.h>
#include <stddef.h>

enum bounce_class {
	BC_NONE = 0,          /* delivered: no class */
	BC_BAD_MAILBOX,       /* "bad-mailbox": no such user (5.1.1, 5.1.0 user unknown) */
	BC_BAD_DOMAIN,        /* "bad-domain": no such domain, null MX (5.1.2, 5.1.10) */
	BC_INACTIVE_MAILBOX,  /* "inactive-mailbox": disabled, expired account (5.2.1 disabled) */
	BC_MAILBOX_FULL,      /* "mailbox-full": over quota (4.2.2, 5.2.2) */
	BC_MESSAGE_TOO_LARGE, /* "message-too-large" (5.3.4, 5.2.3) */
	BC_SPAM_BLOCK,        /* "spam-block": IP or domain reputation, blocklists */
	BC_SPAM_CONTENT,      /* "spam-content": the content was judged spam */
	BC_POLICY,            /* "policy": refused by the receiver's policy */
	BC_AUTH_FAILURE,      /* "auth-failure": SPF/DKIM/DMARC (5.7.25, 5.7.26, 5.7.515 ...) */
	BC_ROUTING,           /* "routing": no route, relaying denied, loops (5.4.x) */
	BC_EXPIRED,           /* "expired": deferred past bounce-after (4.4.7) */
	BC_TRANSIENT,         /* "transient": try again (4xx not otherwise classed) */
	BC_COMPLAINT,         /* "complaint": an ARF abuse report */
	BC_UNSUBSCRIBE,       /* "unsubscribe" */
	BC_OTHER,             /* "other": nothing matched */
	BC_COUNT
};

/* "bad-mailbox", ...; "" for BC_NONE. */
const char *bounce_class_name(enum bounce_class c);
/* By name; BC_COUNT when it is none. */
enum bounce_class bounce_class_of(const char *name);
/* Does this class suppress the recipient? (bad-mailbox, bad-domain,
 * inactive-mailbox; complaints and unsubscribes suppress too, but as
 * feedback, not as a bounce: see feedback.) */
bool bounce_class_hard(enum bounce_class c);

struct bounce_rules;
/* The rules of path (libconfig; NULL: the shipped ones built in). NULL
 * with err set when the file cannot be used. */
struct bounce_rules *bounce_rules_load(const char *path, char *err, size_t err_len);
/* The rules of a configuration (they must outlive the result). */
struct bounce_rule;
struct bounce_rules *bounce_rules_compile(const struct bounce_rule *rules, unsigned n);
void bounce_rules_free(struct bounce_rules *r);
/* The class of a reply: code (0: none, e.g. from a report with only a
 * status), enhanced ("5.1.1" or "" / NULL), text (len bytes, may hold
 * anything). The first rule that matches wins; then a fallback on the
 * enhanced code's subject and detail (RFC 3463), then on the code's
 * class: 4xx transient, 5xx other. */
enum bounce_class bounce_classify(const struct bounce_rules *r, unsigned code, const char *enhanced, const char *text,
                                  size_t len);
#endif
