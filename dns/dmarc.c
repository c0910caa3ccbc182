/* dns/dmarc.c - see dmarc.h. */
#define _GNU_SOURCE
#include "dmarc.h"
#include "psl.h"
#include "packet.h"
#include "../engine/lib/tags.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool dmarc_is_record(const char *text)
{
	while (*text == ' ' || *text == '\t')
		text++;
	if (strncasecmp(text, "v", 1))
		return false;
	text++;
	while (*text == ' ' || *text == '\t')
		text++;
	if (*text != '=')
		return false;
	text++;
	while (*text == ' ' || *text == '\t')
		text++;
	return !strncmp(text, "DMARC1", 6) && (!text[6] || text[6] == ';' || isspace((unsigned char)text[6]));
}

static bool policy_word(const char *v)
{
	return v && (!strcasecmp(v, "none") || !strcasecmp(v, "quarantine") || !strcasecmp(v, "reject"));
}

static bool mode_value(const char *v, char *out)
{
	if (!v) {
		*out = 'r';
		return true;
	}
	if ((v[0] == 'r' || v[0] == 's' || v[0] == 'R' || v[0] == 'S') && !v[1]) {
		*out = (char)tolower((unsigned char)v[0]);
		return true;
	}
	return false;
}

bool dmarc_parse(const char *text, struct dmarc_record *r, char *why, size_t why_len)
{
	struct tag_list l;
	memset(r, 0, sizeof(*r));
	bool ok = tags_parse(text, &l, why, why_len);
	if (ok && (l.n == 0 || strcasecmp(l.t[0].name, "v") || strcmp(l.t[0].value, "DMARC1"))) {
		snprintf(why, why_len, "v=DMARC1 is not the first tag");
		ok = false;
	}
	const char *p = ok ? tags_get(&l, "p") : NULL;
	if (ok && !policy_word(p)) {
		snprintf(why, why_len, p ? "p=%s is not none, quarantine or reject" : "no p= tag", p);
		ok = false;
	}
	const char *sp = ok ? tags_get(&l, "sp") : NULL;
	if (ok && sp && !policy_word(sp)) {
		snprintf(why, why_len, "sp=%s is not none, quarantine or reject", sp);
		ok = false;
	}
	if (ok && (!mode_value(tags_get(&l, "adkim"), &r->adkim) || !mode_value(tags_get(&l, "aspf"), &r->aspf))) {
		snprintf(why, why_len, "adkim= and aspf= take r or s");
		ok = false;
	}
	const char *pct = ok ? tags_get(&l, "pct") : NULL;
	char *end = NULL;
	long v = pct ? strtol(pct, &end, 10) : 100;
	if (ok && (pct && (!*pct || *end || v < 0 || v > 100))) {
		snprintf(why, why_len, "pct=%s is not 0..100", pct);
		ok = false;
	}
	const char *rua = ok ? tags_get(&l, "rua") : NULL;
	if (ok && rua && strncasecmp(rua, "mailto:", 7)) {
		snprintf(why, why_len, "rua=%s is not a mailto: URI", rua);
		ok = false;
	}
	if (ok) {
		snprintf(r->p, sizeof(r->p), "%s", p);
		for (char *c = r->p; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		snprintf(r->sp, sizeof(r->sp), "%s", sp ? sp : "");
		for (char *c = r->sp; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		r->pct = (unsigned)v;
		snprintf(r->rua, sizeof(r->rua), "%s", rua ? rua : "");
	}
	tags_free(&l);
	return ok;
}

const char *dmarc_org_domain(const char *name)
{
	return psl_registered_domain(name);
}

bool dmarc_aligned(const char *a, const char *b, char mode)
{
	if (!strcasecmp(a, b))
		return true;
	if (mode == 's')
		return false;
	char la[DNS_NAME_MAX + 1], lb[DNS_NAME_MAX + 1];
	snprintf(la, sizeof(la), "%s", a);
	snprintf(lb, sizeof(lb), "%s", b);
	for (char *c = la; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	for (char *c = lb; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return !strcmp(dmarc_org_domain(la), dmarc_org_domain(lb));
}
