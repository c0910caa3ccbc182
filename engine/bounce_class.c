/* engine/bounce_class.c - the bounce classes (see bounce_class.h): their
 * names, which suppress, and the rules compiled for classifying replies
 * (the engine's loop classes each deferred, bounced or expired line; the
 * feedback commands each reported recipient). */
#define _GNU_SOURCE
#include "bounce_class.h"
#include "config.h"
#include "lib/util.h"
#include <fnmatch.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX 2048 /* of a reply's text, searched (the rest is rarely more than a quote) */

static const char *const names[BC_COUNT] = {
	[BC_NONE] = "", [BC_BAD_MAILBOX] = "bad-mailbox", [BC_BAD_DOMAIN] = "bad-domain",
	[BC_INACTIVE_MAILBOX] = "inactive-mailbox", [BC_MAILBOX_FULL] = "mailbox-full",
	[BC_MESSAGE_TOO_LARGE] = "message-too-large", [BC_SPAM_BLOCK] = "spam-block",
	[BC_SPAM_CONTENT] = "spam-content", [BC_POLICY] = "policy", [BC_AUTH_FAILURE] = "auth-failure",
	[BC_ROUTING] = "routing", [BC_EXPIRED] = "expired", [BC_TRANSIENT] = "transient",
	[BC_COMPLAINT] = "complaint", [BC_UNSUBSCRIBE] = "unsubscribe", [BC_OTHER] = "other",
};

const char *bounce_class_name(enum bounce_class c)
{
	return (unsigned)c < BC_COUNT ? names[c] : "other";
}

enum bounce_class bounce_class_of(const char *name)
{
	for (unsigned i = 0; i < BC_COUNT; i++)
		if (name && strcmp(name, names[i]) == 0)
			return (enum bounce_class)i;
	return BC_COUNT;
}

bool bounce_class_hard(enum bounce_class c)
{
	return c == BC_BAD_MAILBOX || c == BC_BAD_DOMAIN || c == BC_INACTIVE_MAILBOX;
}

struct compiled {
	const struct bounce_rule *rule;
	regex_t re;
	bool has_re;
};

struct bounce_rules {
	struct config own;           /* when loaded from a file here */
	struct compiled *c;
	unsigned n;
};

struct bounce_rules *bounce_rules_compile(const struct bounce_rule *rules, unsigned n)
{
	struct bounce_rules *r = xcalloc(1, sizeof(*r));
	r->c = xcalloc(n ? n : 1, sizeof(*r->c));
	for (unsigned i = 0; i < n; i++) {
		struct compiled *c = &r->c[r->n];
		c->rule = &rules[i];
		/* checked when the configuration was read */
		c->has_re = rules[i].text && regcomp(&c->re, rules[i].text, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0;
		if (rules[i].text && !c->has_re)
			continue;
		r->n++;
	}
	return r;
}

struct bounce_rules *bounce_rules_load(const char *path, char *err, size_t err_len)
{
	struct config own;
	if (!config_read_classes(path, &own, err, err_len))
		return NULL;
	struct bounce_rules *r = bounce_rules_compile(own.bounce_rules, own.nbounce_rules);
	r->own = own; /* the rules point into own's array, which moves with it unchanged */
	return r;
}

void bounce_rules_free(struct bounce_rules *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->n; i++)
		if (r->c[i].has_re)
			regfree(&r->c[i].re);
	free(r->c);
	config_free(&r->own);
	free(r);
}

/* RFC 3463's subject and detail, when no rule matched. */
static enum bounce_class by_enhanced(const char *e)
{
	unsigned cls, subj, det;
	if (!e || sscanf(e, "%u.%u.%u", &cls, &subj, &det) != 3)
		return BC_COUNT;
	if (subj == 1 && (det == 1 || det == 3 || det == 6))
		return BC_BAD_MAILBOX;
	if (subj == 1 && (det == 2 || det == 10))
		return BC_BAD_DOMAIN;
	if (subj == 1 && (det == 7 || det == 8))
		return BC_POLICY; /* the sender's address, not the recipient's */
	if (subj == 2 && det == 1)
		return BC_INACTIVE_MAILBOX;
	if (subj == 2 && det == 2)
		return BC_MAILBOX_FULL;
	if ((subj == 2 && det == 3) || (subj == 3 && det == 4))
		return BC_MESSAGE_TOO_LARGE;
	if (subj == 4 && det == 7)
		return BC_EXPIRED;
	if (subj == 4)
		return BC_ROUTING;
	if (subj == 7)
		return BC_POLICY;
	return BC_COUNT;
}

/* Can an enhanced status say the recipient's address is dead? Only its
 * own subjects can (X.1.x but the sender's X.1.7 and X.1.8, X.2.1, and the
 * undetailed X.0.0), or none at all: a security or policy status (X.7.x),
 * a network one (X.4.x) and the rest never suppress, whatever the text. */
static bool address_status(const char *e)
{
	unsigned cls, subj, det;
	if (!e || sscanf(e, "%u.%u.%u", &cls, &subj, &det) != 3)
		return true;
	return (subj == 1 && det != 7 && det != 8) || (subj == 2 && det == 1) || (subj == 0 && det == 0);
}

static bool code_matches(const struct bounce_rule *b, unsigned code)
{
	if (b->code)
		return code == b->code;
	if (b->code_class)
		return code / 100 == b->code_class;
	return true;
}

enum bounce_class bounce_classify(const struct bounce_rules *r, unsigned code, const char *enhanced, const char *text,
                                  size_t len)
{
	/* the text as a C string, NULs (a hostile server's) as spaces */
	char t[TEXT_MAX + 1];
	size_t n = len < TEXT_MAX ? len : TEXT_MAX;
	for (size_t i = 0; i < n; i++)
		t[i] = text[i] ? text[i] : ' ';
	t[n] = 0;
	bool has_enh = enhanced && *enhanced;
	/* a permanent status under a 4xx code is still temporary, and the
	 * other way round: the reply code's class wins when both are given */
	unsigned cls = code ? code / 100 : has_enh ? (unsigned)(enhanced[0] - '0') : 0;
	for (unsigned i = 0; r && i < r->n; i++) {
		const struct compiled *c = &r->c[i];
		const struct bounce_rule *b = c->rule;
		if (!code_matches(b, code ? code : cls * 100))
			continue;
		if (b->enhanced && (!has_enh || fnmatch(b->enhanced, enhanced, 0) != 0))
			continue;
		if (c->has_re && regexec(&c->re, t, 0, NULL, 0) != 0)
			continue;
		enum bounce_class got = (enum bounce_class)b->bclass;
		if (bounce_class_hard(got) && !address_status(has_enh ? enhanced : NULL))
			continue; /* a rule's words, but the status says it is not the address */
		return got;
	}
	enum bounce_class e = by_enhanced(has_enh ? enhanced : NULL);
	if (e != BC_COUNT)
		return e;
	return cls == 4 ? BC_TRANSIENT : BC_OTHER;
}
