/* shards/reply_rules.c - matching a refusal against the reply rules (see
 * reply_rules.h). */
#define _GNU_SOURCE /* FNM_CASEFOLD */
#include "reply_rules.h"
#include "../engine/lib/util.h"
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

void reply_matcher_init(struct reply_matcher *m, const struct reply_rule *rules, unsigned n)
{
	memset(m, 0, sizeof(*m));
	m->rules = rules;
	m->n = n;
	if (!n)
		return;
	m->re = xcalloc(n, sizeof(*m->re));
	m->ok = xcalloc(n, sizeof(*m->ok));
	m->text = xmalloc(SMTP_REPLY_TEXT_MAX + 1);
	for (unsigned i = 0; i < n; i++)
		if (rules[i].text)
			m->ok[i] = regcomp(&m->re[i], rules[i].text, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0;
}

void reply_matcher_free(struct reply_matcher *m)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->ok[i])
			regfree(&m->re[i]);
	free(m->re);
	free(m->ok);
	free(m->text);
	memset(m, 0, sizeof(*m));
}

size_t reply_rule_text(const struct smtp_reply *r, char *out, size_t cap)
{
	size_t n = 0, len = strnlen(r->text, r->text_len); /* a server's NUL ends it */
	char cls = (char)('0' + r->code / 100), enh[12];
	for (size_t i = 0; i < len && cap;) {
		const char *nl = memchr(r->text + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - r->text) : len;
		size_t k = i + smtp_enhanced_code(r->text + i, end - i, cls, enh);
		while (k < end && (r->text[k] == ' ' || r->text[k] == '\t'))
			k++;
		if (n && k < end && n < cap - 1)
			out[n++] = ' ';
		size_t take = end - k < cap - 1 - n ? end - k : cap - 1 - n;
		memcpy(out + n, r->text + k, take);
		n += take;
		i = end + 1;
	}
	if (cap)
		out[n] = 0;
	return n;
}

static bool rule_matches(struct reply_matcher *m, unsigned i, const char *group, const struct smtp_reply *r,
                         bool *have_text)
{
	const struct reply_rule *rule = &m->rules[i];
	if (rule->code ? r->code != rule->code : rule->code_class && r->code / 100 != rule->code_class)
		return false;
	if (rule->enhanced && fnmatch(rule->enhanced, r->enhanced, 0) != 0)
		return false;
	if (rule->group && (!group || fnmatch(rule->group, group, FNM_CASEFOLD) != 0))
		return false;
	if (!rule->text)
		return true;
	if (!m->ok[i])
		return false;
	if (!*have_text) { /* once per reply, and only when an expression is to run */
		reply_rule_text(r, m->text, SMTP_REPLY_TEXT_MAX + 1);
		*have_text = true;
	}
	return regexec(&m->re[i], m->text, 0, NULL, 0) == 0;
}

int reply_matcher_find(struct reply_matcher *m, const char *group, const struct smtp_reply *r)
{
	if (r->code < 400)
		return -1;
	bool have_text = false;
	for (unsigned i = 0; i < m->n; i++)
		if (rule_matches(m, i, group, r, &have_text))
			return (int)i;
	return -1;
}
