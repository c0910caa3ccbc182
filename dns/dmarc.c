/* dns/dmarc.c - see dmarc.h. */
#define _GNU_SOURCE
#include "dmarc.h"
#include "psl.h"
#include "packet.h"
#include "../engine/lib/tags.h"
#include "../engine/lib/util.h"
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

/* Notes a problem the record's readers get past (RFC 7489 6.3: the
 * default value is used). */
static void problem(struct dmarc_record *r, const char *fmt, const char *v)
{
	size_t n = strlen(r->problems);
	snprintf(r->problems + n, sizeof(r->problems) - n, "%s", n ? "; " : "");
	n = strlen(r->problems);
	snprintf(r->problems + n, sizeof(r->problems) - n, fmt, v);
}

static void lower_copy(char *out, size_t len, const char *v)
{
	snprintf(out, len, "%s", v);
	str_lower(out);
}

bool dmarc_parse(const char *text, struct dmarc_record *r, char *why, size_t why_len)
{
	struct tag_list l;
	char syntax[200];
	memset(r, 0, sizeof(*r));
	r->adkim = r->aspf = 'r';
	r->pct = 100;
	if (!tags_parse(text, &l, syntax, sizeof(syntax)))
		problem(r, "%s (ignored)", syntax);
	bool ok = l.n > 0 && !strcasecmp(l.t[0].name, "v") && !strcmp(l.t[0].value, "DMARC1");
	if (!ok)
		snprintf(why, why_len, "v=DMARC1 is not the first tag");
	const char *p = tags_get(&l, "p"), *sp = tags_get(&l, "sp"), *pct = tags_get(&l, "pct");
	const char *rua = tags_get(&l, "rua");
	if (rua && strncasecmp(rua, "mailto:", 7)) {
		problem(r, "rua=%s is not a mailto: URI (ignored)", rua);
		rua = NULL;
	}
	if (rua)
		snprintf(r->rua, sizeof(r->rua), "%s", rua);
	if (ok && policy_word(p)) {
		lower_copy(r->p, sizeof(r->p), p);
	} else if (ok && r->rua[0]) { /* RFC 7489 6.6.3: a bad p= with a valid rua is p=none */
		problem(r, p ? "p=%s is not none, quarantine or reject: receivers apply none" : "%sno p=: receivers apply none", p ? p : "");
		snprintf(r->p, sizeof(r->p), "none");
	} else if (ok) {
		snprintf(why, why_len, p ? "p=%s is not none, quarantine or reject (and no rua=)" : "no p= (and no rua=)", p);
		ok = false;
	}
	if (sp && policy_word(sp))
		lower_copy(r->sp, sizeof(r->sp), sp);
	else if (sp)
		problem(r, "sp=%s is not none, quarantine or reject (ignored)", sp);
	if (!mode_value(tags_get(&l, "adkim"), &r->adkim)) {
		problem(r, "adkim=%s takes r or s (r applies)", tags_get(&l, "adkim"));
		r->adkim = 'r';
	}
	if (!mode_value(tags_get(&l, "aspf"), &r->aspf)) {
		problem(r, "aspf=%s takes r or s (r applies)", tags_get(&l, "aspf"));
		r->aspf = 'r';
	}
	char *end = NULL;
	long v = pct ? strtol(pct, &end, 10) : 100;
	if (pct && (!*pct || *end || v < 0 || v > 100))
		problem(r, "pct=%s is not 0..100 (100 applies)", pct);
	else
		r->pct = (unsigned)v;
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
	lower_copy(la, sizeof(la), a);
	lower_copy(lb, sizeof(lb), b);
	return !strcmp(dmarc_org_domain(la), dmarc_org_domain(lb));
}
