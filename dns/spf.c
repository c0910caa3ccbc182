/* dns/spf.c - see spf.h. A record is parsed whole first (a syntax error
 * anywhere is a permerror before any term is evaluated, RFC 7208 4.6),
 * then its mechanisms are evaluated in order; include and redirect
 * evaluate another domain's record with the same counters. */
#define _GNU_SOURCE
#include "spf.h"
#include "../engine/lib/util.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOOKUP_LIMIT 10           /* RFC 7208 4.6.4 */
#define VOID_LIMIT 2
#define NAMES_LIMIT 10            /* MX or PTR names per mechanism */
#define EXPANDED_MAX 2048

const char *spf_result_name(enum spf_result r)
{
	static const char *names[] = { "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" };
	return names[r];
}

enum mech { M_ALL, M_INCLUDE, M_A, M_MX, M_PTR, M_IP4, M_IP6, M_EXISTS };

struct term {
	char qual;                /* '+', '-', '~', '?' */
	enum mech mech;
	const char *text;         /* the whole term, for the detail */
	char *spec;               /* domain-spec (macro string), or NULL */
	int cidr4, cidr6;         /* -1: none given */
	uint8_t net[16];          /* ip4 / ip6 */
};

struct record {
	char *copy;               /* the record, cut into terms */
	struct term *t;           /* as many as the record has (flattened records have hundreds) */
	unsigned n, cap;
	char *redirect, *exp;
};

struct ctx {
	const struct spf_query *q;
	struct spf_eval *out;
	uint8_t ip[16];
	bool v6;
	char local[256], sender_domain[DNS_NAME_MAX + 1];
	char helo[DNS_NAME_MAX + 1];
	int pname_state;          /* %{p}: 0 not looked up yet, 1 found, -1 none */
	char pname[DNS_NAME_MAX + 1];
};

static void set_detail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_detail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->out->detail, sizeof(c->out->detail), fmt, ap);
	va_end(ap);
}

/* ---- records ---- */

static bool is_spf1(const char *s)
{
	return !strncasecmp(s, "v=spf1", 6) && (s[6] == ' ' || s[6] == 0);
}

unsigned spf_records(const struct dns_answer *txt, const char **first)
{
	unsigned n = 0;
	*first = NULL;
	if (txt->status != DNS_OK)
		return 0;
	for (unsigned i = 0; i < txt->n; i++)
		if (txt->rr[i].type == DNS_T_TXT && txt->rr[i].text && is_spf1(txt->rr[i].text)) {
			if (!n)
				*first = txt->rr[i].text;
			n++;
		}
	return n;
}

char spf_all_qualifier(const char *record)
{
	char q = 0;
	const char *p = record;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, " ");
		const char *m = p;
		char qual = '+';
		if (len && strchr("+-~?", *m)) {
			qual = *m;
			m++;
		}
		if ((size_t)(p + len - m) == 3 && !strncasecmp(m, "all", 3))
			q = qual;
		p += len;
	}
	return q;
}

/* ---- macros (RFC 7208 section 7) ---- */

static bool is_delim(char ch)
{
	return ch && strchr(".-+,/_=", ch) != NULL;
}

/* Checks one macro string; exp: the c, r, t letters are allowed. */
static bool macro_valid(const char *s, bool exp, char *why, size_t why_len)
{
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
			if (!(exp && *p == ' ')) {
				snprintf(why, why_len, "a character SPF does not allow in \"%s\"", s);
				return false;
			}
		}
		if (*p != '%')
			continue;
		p++;
		if (*p == '%' || *p == '_' || *p == '-')
			continue;
		if (*p != '{') {
			snprintf(why, why_len, "a '%%' that starts no macro in \"%s\"", s);
			return false;
		}
		p++;
		char letter = (char)tolower((unsigned char)*p);
		if (!letter || !strchr(exp ? "slodiphvcrt" : "slodiphv", letter)) {
			snprintf(why, why_len, "an unknown macro letter in \"%s\"", s);
			return false;
		}
		p++;
		if (*p == '0') {
			snprintf(why, why_len, "a macro keeping zero labels in \"%s\"", s);
			return false;
		}
		while (isdigit((unsigned char)*p))
			p++;
		if (*p == 'r' || *p == 'R')
			p++;
		while (is_delim(*p))
			p++;
		if (*p != '}') {
			snprintf(why, why_len, "an unterminated or malformed macro in \"%s\"", s);
			return false;
		}
	}
	return true;
}

static void ip_text_dotted(const struct ctx *c, char *out, size_t len)
{
	if (!c->v6) {
		snprintf(out, len, "%u.%u.%u.%u", c->ip[0], c->ip[1], c->ip[2], c->ip[3]);
		return;
	}
	size_t n = 0;
	for (int i = 0; i < 16 && n + 4 < len; i++)
		n += (size_t)snprintf(out + n, len - n, "%s%x.%x", i ? "." : "", c->ip[i] >> 4, c->ip[i] & 15);
}

static int validated_name(struct ctx *c, const char *target, bool counted, char *name_out, size_t name_len);

/* The value of a macro letter. */
static void macro_value(struct ctx *c, char letter, const char *domain, char *out, size_t len)
{
	switch (letter) {
	case 's': snprintf(out, len, "%s@%s", c->local, c->sender_domain); break;
	case 'l': snprintf(out, len, "%s", c->local); break;
	case 'o': snprintf(out, len, "%s", c->sender_domain); break;
	case 'd': snprintf(out, len, "%s", domain); break;
	case 'i': ip_text_dotted(c, out, len); break;
	case 'p': /* looked up once per evaluation: a record cannot make it ask again and again */
		if (!c->pname_state)
			c->pname_state = validated_name(c, NULL, false, c->pname, sizeof(c->pname)) > 0 ? 1 : -1;
		snprintf(out, len, "%s", c->pname_state > 0 ? c->pname : "unknown");
		break;
	case 'v': snprintf(out, len, "%s", c->v6 ? "ip6" : "in-addr"); break;
	case 'h': snprintf(out, len, "%s", c->helo); break;
	case 'c': {
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(c->v6 ? AF_INET6 : AF_INET, c->ip, ip, sizeof(ip));
		snprintf(out, len, "%s", ip);
		break;
	}
	case 'r': snprintf(out, len, "unknown"); break;
	case 't': snprintf(out, len, "%lld", (long long)time(NULL)); break;
	default: out[0] = 0;
	}
}

/* Splits value on delims, reverses when asked, keeps the rightmost keep
 * parts (0: all), joined with dots. */
static void transform(const char *value, const char *delims, bool reverse, unsigned keep, char *out,
                      size_t len)
{
	const char *part[256];
	size_t plen[256];
	unsigned n = 0;
	const char *p = value;
	for (;;) {
		size_t l = 0;
		while (p[l] && !strchr(delims, p[l]))
			l++;
		if (n < ARRAY_LEN(part)) {
			part[n] = p;
			plen[n++] = l;
		}
		if (!p[l])
			break;
		p += l + 1;
	}
	if (reverse)
		for (unsigned i = 0; i < n / 2; i++) {
			const char *tp = part[i];
			size_t tl = plen[i];
			part[i] = part[n - 1 - i], plen[i] = plen[n - 1 - i];
			part[n - 1 - i] = tp, plen[n - 1 - i] = tl;
		}
	unsigned from = keep && keep < n ? n - keep : 0;
	size_t o = 0;
	out[0] = 0;
	for (unsigned i = from; i < n && o + plen[i] + 2 < len; i++) {
		if (i > from)
			out[o++] = '.';
		memcpy(out + o, part[i], plen[i]);
		o += plen[i];
		out[o] = 0;
	}
}

static void url_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < len; p++) {
		if (isalnum(*p) || strchr("-._~", *p))
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", *p);
	}
	out[o] = 0;
}

/* Expands a checked macro string for the current domain. */
static void expand(struct ctx *c, const char *s, const char *domain, char *out, size_t len)
{
	size_t o = 0;
	for (const char *p = s; *p && o + 1 < len; p++) {
		if (*p != '%') {
			out[o++] = *p;
			continue;
		}
		p++;
		if (*p == '%' || *p == '_' || *p == '-') {
			const char *lit = *p == '%' ? "%" : *p == '_' ? " " : "%20";
			size_t l = strlen(lit);
			if (o + l < len) {
				memcpy(out + o, lit, l);
				o += l;
			}
			continue;
		}
		p++; /* '{' */
		char letter = *p++;
		unsigned keep = 0;
		for (; isdigit((unsigned char)*p); p++)
			if (keep < 1000)
				keep = keep * 10 + (unsigned)(*p - '0');
		bool reverse = false;
		if (*p == 'r' || *p == 'R') {
			reverse = true;
			p++;
		}
		char delims[16] = "";
		size_t nd = 0;
		while (*p != '}') {
			if (nd + 1 < sizeof(delims))
				delims[nd++] = *p;
			p++;
		}
		delims[nd] = 0;
		char value[EXPANDED_MAX], shaped[EXPANDED_MAX], esc[EXPANDED_MAX * 3];
		macro_value(c, (char)tolower((unsigned char)letter), domain, value, sizeof(value));
		transform(value, nd ? delims : ".", reverse, keep, shaped, sizeof(shaped));
		const char *v = shaped;
		if (isupper((unsigned char)letter)) {
			url_escape(shaped, esc, sizeof(esc));
			v = esc;
		}
		size_t l = strlen(v);
		if (o + l >= len)
			l = len - o - 1;
		memcpy(out + o, v, l);
		o += l;
	}
	out[o] = 0;
}

/* A domain-spec expanded into a name to ask: longer than 253 bytes, the
 * left labels go (RFC 7208 7.3); a trailing dot goes. False when what
 * remains cannot be asked. */
static bool expand_domain(struct ctx *c, const char *spec, const char *domain, char *out, size_t len)
{
	char buf[4 * EXPANDED_MAX]; /* then cut on the left to 253 bytes */
	expand(c, spec, domain, buf, sizeof(buf));
	size_t l = strlen(buf);
	if (l && buf[l - 1] == '.')
		buf[--l] = 0;
	const char *p = buf;
	while (strlen(p) > DNS_NAME_MAX && strchr(p, '.'))
		p = strchr(p, '.') + 1;
	snprintf(out, len, "%s", p);
	return dns_name_askable(out);
}

/* ---- parsing ---- */

/* Whether a (checked) macro string ends in a macro-expand: "%{...}",
 * "%%", "%_" or "%-". */
static bool ends_in_macro(const char *spec)
{
	bool last = false;
	for (const char *p = spec; *p;) {
		last = false;
		if (p[0] == '%' && p[1] == '{') {
			const char *close = strchr(p, '}');
			if (!close)
				return false;
			p = close + 1;
			last = true;
		} else if (p[0] == '%' && p[1] && strchr("%_-", p[1])) {
			p += 2;
			last = true;
		} else {
			p++;
		}
	}
	return last;
}

/* domain-end: a domain-spec that does not end in a macro-expand ends in
 * a top label with a letter (RFC 7208 7.1), after at least one dot. */
static bool domain_end_valid(const char *spec)
{
	if (ends_in_macro(spec))
		return true;
	size_t l = strlen(spec);
	if (l && spec[l - 1] == '.')
		l--;
	size_t dot = l;
	while (dot > 0 && spec[dot - 1] != '.')
		dot--;
	if (dot == 0 || dot == l)
		return false; /* one label only, or an empty top label */
	const char *top = spec + dot;
	size_t tl = l - dot;
	bool letter = false;
	for (size_t i = 0; i < tl; i++) {
		if (isalpha((unsigned char)top[i]))
			letter = true;
		else if (!isdigit((unsigned char)top[i]) && top[i] != '-')
			return false;
	}
	return letter && top[0] != '-' && top[tl - 1] != '-';
}

/* "/N" with no leading zero, N <= max; advances *p. */
static bool cidr_parse(const char **p, int max, int *out)
{
	const char *s = *p + 1;
	if (!isdigit((unsigned char)*s) || (s[0] == '0' && isdigit((unsigned char)s[1])))
		return false;
	int v = 0;
	while (isdigit((unsigned char)*s)) {
		v = v * 10 + (*s++ - '0');
		if (v > max)
			return false;
	}
	*p = s;
	*out = v;
	return true;
}

/* The dual-cidr-length at the end of a/mx arguments ("/24", "//64",
 * "/24//64"), cut off the string. */
static bool dual_cidr(char *arg, struct term *t)
{
	char *tail = strrchr(arg, '}'); /* a cidr follows the last macro: "//" or "/" inside one is a delimiter */
	tail = tail ? tail + 1 : arg;
	char *s = strstr(tail, "//");
	if (s) {
		const char *p = s + 1;
		if (!cidr_parse(&p, 128, &t->cidr6) || *p)
			return false;
		*s = 0;
	}
	char *slash = strrchr(tail, '/');
	if (slash) {
		/* a '/' may be part of the name; a cidr is digits to the end */
		const char *p = slash;
		if (p[1] && strspn(p + 1, "0123456789") == strlen(p + 1)) {
			if (!cidr_parse(&p, 32, &t->cidr4) || *p)
				return false;
			*slash = 0;
		} else if (!p[1]) {
			return false;
		}
	}
	return true;
}

static bool modifier_name(const char *term, size_t *name_len)
{
	const char *eq = strchr(term, '=');
	if (!eq || !isalpha((unsigned char)term[0]))
		return false;
	for (const char *p = term; p < eq; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
			return false;
	*name_len = (size_t)(eq - term);
	return true;
}

static bool parse_mechanism(char *m, struct term *t, char *why, size_t why_len)
{
	static const struct { const char *name; enum mech mech; } mechs[] = {
		{ "all", M_ALL }, { "include", M_INCLUDE }, { "a", M_A }, { "mx", M_MX },
		{ "ptr", M_PTR }, { "ip4", M_IP4 }, { "ip6", M_IP6 }, { "exists", M_EXISTS } };
	t->qual = '+';
	if (strchr("+-~?", *m))
		t->qual = *m++;
	size_t nl = strcspn(m, ":/");
	size_t i = 0;
	while (i < ARRAY_LEN(mechs) && (strlen(mechs[i].name) != nl || strncasecmp(mechs[i].name, m, nl)))
		i++;
	if (i == ARRAY_LEN(mechs)) {
		snprintf(why, why_len, "unknown mechanism \"%s\"", t->text);
		return false;
	}
	t->mech = mechs[i].mech;
	t->cidr4 = t->cidr6 = -1;
	char *arg = m + nl;
	switch (t->mech) {
	case M_ALL:
		if (*arg)
			goto bad;
		return true;
	case M_INCLUDE:
	case M_EXISTS:
		if (*arg != ':' || !arg[1])
			goto bad;
		t->spec = arg + 1;
		break;
	case M_A:
	case M_MX:
	case M_PTR: /* an optional ":domain-spec"; a and mx then a dual cidr */
		if (t->mech != M_PTR && !dual_cidr(arg, t))
			goto bad;
		if ((*arg && *arg != ':') || (*arg == ':' && !arg[1]))
			goto bad;
		if (*arg)
			t->spec = arg + 1;
		break;
	case M_IP4:
	case M_IP6: {
		if (*arg != ':')
			goto bad;
		char *addr = arg + 1, *slash = strchr(addr, '/');
		bool v6 = t->mech == M_IP6;
		if (slash) {
			const char *p = slash;
			if (!cidr_parse(&p, v6 ? 128 : 32, v6 ? &t->cidr6 : &t->cidr4) || *p)
				goto bad;
			*slash = 0;
		}
		if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, t->net) != 1)
			goto bad;
		return true;
	}
	}
	if (t->spec && !macro_valid(t->spec, false, why, why_len))
		return false;
	if (t->spec && !domain_end_valid(t->spec)) {
		snprintf(why, why_len, "\"%s\" does not end in a valid top-level label", t->text);
		return false;
	}
	return true;
bad:
	snprintf(why, why_len, "malformed mechanism \"%s\"", t->text);
	return false;
}

/* Cuts the record into terms; false (a permerror) on any syntax error. */
static bool record_parse(const char *text, struct record *r, char *why, size_t why_len)
{
	memset(r, 0, sizeof(*r));
	r->copy = xstrdup(text + 6);
	/* a second copy, cut alike: the terms' text for the detail */
	char *orig = xstrdup(text + 6);
	char *save = NULL, *osave = NULL;
	bool ok = true;
	for (char *tok = strtok_r(r->copy, " ", &save), *otok = strtok_r(orig, " ", &osave); tok && ok;
	     tok = strtok_r(NULL, " ", &save), otok = strtok_r(NULL, " ", &osave)) {
		size_t nl;
		if (modifier_name(tok, &nl)) {
			char *value = tok + nl + 1;
			bool is_exp = nl == 3 && !strncasecmp(tok, "exp", 3);
			bool is_redirect = nl == 8 && !strncasecmp(tok, "redirect", 8);
			if (!macro_valid(value, false, why, why_len)) {
				ok = false;
			} else if (is_redirect || is_exp) {
				char **slot = is_redirect ? &r->redirect : &r->exp;
				if (*slot) {
					snprintf(why, why_len, "more than one %s= modifier", is_redirect ? "redirect" : "exp");
					ok = false;
				} else if (!*value || !domain_end_valid(value)) {
					snprintf(why, why_len, "malformed modifier \"%s\"", otok);
					ok = false;
				}
				*slot = value;
			}
			continue;
		}
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 16;
			r->t = xrealloc(r->t, r->cap * sizeof(*r->t));
		}
		struct term *t = &r->t[r->n++];
		memset(t, 0, sizeof(*t));
		t->text = xstrdup(otok); /* tok gets cut while parsed */
		ok = parse_mechanism(tok, t, why, why_len);
	}
	free(orig);
	return ok;
}

static void record_free(struct record *r)
{
	for (unsigned i = 0; i < r->n; i++)
		free((char *)r->t[i].text);
	free(r->t);
	free(r->copy);
}

/* ---- evaluation ---- */

/* One more DNS-querying term: false (a permerror) beyond the limit. */
static bool count_lookup(struct ctx *c, const struct term *t, const char *domain)
{
	if (++c->out->lookups <= LOOKUP_LIMIT)
		return true;
	set_detail(c, "more than %d DNS lookups (%s in %s)", LOOKUP_LIMIT, t ? t->text : "redirect", domain);
	return false;
}

enum ask_outcome { ASK_RECORDS, ASK_VOID, ASK_VOID_LIMIT, ASK_ERROR };

/* Asks; NXDOMAIN and NODATA count as void lookups when counted is set. */
static enum ask_outcome ask(struct ctx *c, const char *name, uint16_t type, bool counted, struct dns_answer *a)
{
	char err[200] = "";
	c->q->ask(c->q->ask_arg, name, type, a, err, sizeof(err));
	if (a->status == DNS_OK && a->n)
		return ASK_RECORDS;
	/* a name no server could hold (from another record's data): nothing there */
	if (a->status == DNS_OK || a->status == DNS_NODATA || a->status == DNS_NXDOMAIN || a->status == DNS_BADNAME) {
		if (counted && ++c->out->voids > VOID_LIMIT) {
			set_detail(c, "more than %d void lookups (the last: %s)", VOID_LIMIT, name);
			return ASK_VOID_LIMIT;
		}
		return ASK_VOID;
	}
	set_detail(c, "DNS error asking %s: %s", name, err[0] ? err : dns_status_name(a->status));
	return ASK_ERROR;
}

static bool in_net(const uint8_t *ip, const uint8_t *net, int bits)
{
	int full = bits / 8, rest = bits % 8;
	if (memcmp(ip, net, (size_t)full))
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (ip[full] & mask) == (net[full] & mask);
}

/* The client's address among the A/AAAA records of a. */
static bool addr_match(const struct ctx *c, const struct dns_answer *a, int cidr4, int cidr6)
{
	int bits = c->v6 ? (cidr6 < 0 ? 128 : cidr6) : (cidr4 < 0 ? 32 : cidr4);
	uint16_t want = c->v6 ? DNS_T_AAAA : DNS_T_A;
	for (unsigned i = 0; i < a->n; i++)
		if (a->rr[i].type == want && in_net(c->ip, a->rr[i].addr, bits))
			return true;
	return false;
}

/* The client's validated domain name (RFC 7208 5.5): a PTR name whose
 * A/AAAA records hold the client's address; with target, one equal to it
 * or under it (the ptr mechanism), else the first. 1: found, 0: none (a
 * DNS error too: the mechanism does not match), -1: a void PTR lookup
 * over the limit (counted: for the ptr mechanism, as pyspf counts). */
static int validated_name(struct ctx *c, const char *target, bool counted, char *name_out, size_t name_len)
{
	char ip[INET6_ADDRSTRLEN], rev[80];
	inet_ntop(c->v6 ? AF_INET6 : AF_INET, c->ip, ip, sizeof(ip));
	if (!dns_ptr_name(ip, rev, sizeof(rev)))
		return 0;
	struct dns_answer ptr;
	char err[200];
	if (ask(c, rev, DNS_T_PTR, counted, &ptr) == ASK_VOID_LIMIT) {
		dns_answer_free(&ptr);
		return -1;
	}
	bool found = false;
	for (unsigned i = 0; i < ptr.n && i < NAMES_LIMIT && !found; i++) {
		const char *name = ptr.rr[i].text;
		if (ptr.rr[i].type != DNS_T_PTR || !name || !*name)
			continue;
		struct dns_answer a;
		c->q->ask(c->q->ask_arg, name, c->v6 ? DNS_T_AAAA : DNS_T_A, &a, err, sizeof(err));
		bool valid = a.status == DNS_OK && addr_match(c, &a, -1, -1);
		dns_answer_free(&a);
		if (!valid)
			continue;
		size_t nl = strlen(name), tl = target ? strlen(target) : 0;
		bool under = target && (!strcasecmp(name, target) ||
		                        (nl > tl && name[nl - tl - 1] == '.' && !strcasecmp(name + nl - tl, target)));
		if (!target || under) {
			snprintf(name_out, name_len, "%s", name);
			found = true;
		}
	}
	dns_answer_free(&ptr);
	return found;
}

static enum spf_result check_domain(struct ctx *c, const char *domain, int depth);

/* 1: the term matches, 0: it does not, -1: evaluation ends with *res. */
static int eval_term(struct ctx *c, const struct term *t, const char *domain, int depth, enum spf_result *res)
{
	char target[DNS_NAME_MAX + 1];
	struct dns_answer a;
	enum ask_outcome o;
	int match = 0;
	if (t->mech == M_ALL)
		return 1;
	if (t->mech == M_IP4 || t->mech == M_IP6) {
		if (c->v6 != (t->mech == M_IP6))
			return 0;
		return in_net(c->ip, t->net, c->v6 ? (t->cidr6 < 0 ? 128 : t->cidr6) : (t->cidr4 < 0 ? 32 : t->cidr4));
	}
	if (!count_lookup(c, t, domain)) {
		*res = SPF_PERMERROR;
		return -1;
	}
	if (t->spec) {
		if (!expand_domain(c, t->spec, domain, target, sizeof(target))) {
			if (t->mech == M_INCLUDE) { /* check_host() of a malformed name is none: a permerror */
				set_detail(c, "%s in %s: the target is not a valid domain name", t->text, domain);
				*res = SPF_PERMERROR;
				return -1;
			}
			return 0; /* nothing can match a name that cannot exist */
		}
	} else {
		snprintf(target, sizeof(target), "%s", domain);
	}
	switch (t->mech) {
	case M_INCLUDE: {
		enum spf_result r = check_domain(c, target, depth + 1);
		if (r == SPF_PASS)
			return 1;
		if (r == SPF_FAIL || r == SPF_SOFTFAIL || r == SPF_NEUTRAL)
			return 0;
		if (r == SPF_NONE) {
			set_detail(c, "%s in %s: %s has no SPF record", t->text, domain, target);
			r = SPF_PERMERROR;
		}
		*res = r;
		return -1;
	}
	case M_A:
	case M_EXISTS:
		o = ask(c, target, t->mech == M_EXISTS || !c->v6 ? DNS_T_A : DNS_T_AAAA, true, &a);
		if (o == ASK_RECORDS)
			match = t->mech == M_EXISTS ? 1 : addr_match(c, &a, t->cidr4, t->cidr6);
		dns_answer_free(&a);
		break;
	case M_MX:
		o = ask(c, target, DNS_T_MX, true, &a);
		if (o == ASK_RECORDS && a.n > NAMES_LIMIT) {
			set_detail(c, "%s in %s: %s has %u MX names (at most %d)", t->text, domain, target, a.n, NAMES_LIMIT);
			dns_answer_free(&a);
			*res = SPF_PERMERROR;
			return -1;
		}
		for (unsigned i = 0; o == ASK_RECORDS && i < a.n && !match; i++) {
			if (a.rr[i].type != DNS_T_MX || !a.rr[i].text || !*a.rr[i].text)
				continue;
			struct dns_answer h;
			enum ask_outcome ho = ask(c, a.rr[i].text, c->v6 ? DNS_T_AAAA : DNS_T_A, true, &h);
			if (ho == ASK_RECORDS)
				match = addr_match(c, &h, t->cidr4, t->cidr6);
			dns_answer_free(&h);
			if (ho == ASK_ERROR || ho == ASK_VOID_LIMIT) {
				o = ho;
				break;
			}
		}
		dns_answer_free(&a);
		break;
	case M_PTR: {
		char name[DNS_NAME_MAX + 1];
		c->out->used_ptr = true;
		int v = validated_name(c, target, true, name, sizeof(name));
		if (v < 0) {
			*res = SPF_PERMERROR;
			return -1;
		}
		return v;
	}
	default:
		return 0;
	}
	if (o == ASK_ERROR) {
		*res = SPF_TEMPERROR;
		return -1;
	}
	if (o == ASK_VOID_LIMIT) {
		*res = SPF_PERMERROR;
		return -1;
	}
	return match;
}

static enum spf_result qual_result(char q)
{
	return q == '-' ? SPF_FAIL : q == '~' ? SPF_SOFTFAIL : q == '?' ? SPF_NEUTRAL : SPF_PASS;
}

/* check_host() for one domain (RFC 7208 4.3-4.7). */
static enum spf_result check_domain(struct ctx *c, const char *domain, int depth)
{
	struct dns_answer txt;
	char err[200] = "";
	c->q->ask(c->q->ask_arg, domain, DNS_T_TXT, &txt, err, sizeof(err));
	if (txt.status != DNS_OK && txt.status != DNS_NODATA && txt.status != DNS_NXDOMAIN && txt.status != DNS_BADNAME) {
		set_detail(c, "DNS error asking TXT %s: %s", domain, err[0] ? err : dns_status_name(txt.status));
		dns_answer_free(&txt);
		return SPF_TEMPERROR;
	}
	const char *text;
	unsigned n = spf_records(&txt, &text);
	if (n == 0) {
		set_detail(c, "%s has no SPF record", domain);
		dns_answer_free(&txt);
		return SPF_NONE;
	}
	if (n > 1) {
		set_detail(c, "%s has %u SPF records (one allowed)", domain, n);
		dns_answer_free(&txt);
		return SPF_PERMERROR;
	}
	struct record r;
	char why[300];
	bool ok = record_parse(text, &r, why, sizeof(why));
	dns_answer_free(&txt);
	if (!ok) {
		set_detail(c, "%s: %s", domain, why);
		record_free(&r);
		return SPF_PERMERROR;
	}
	enum spf_result res = SPF_NEUTRAL;
	for (unsigned i = 0; i < r.n; i++) {
		int m = eval_term(c, &r.t[i], domain, depth, &res);
		if (m < 0)
			goto done;
		if (m > 0) {
			res = qual_result(r.t[i].qual);
			set_detail(c, "%s matched %s in %s", spf_result_name(res), r.t[i].text, domain);
			goto done;
		}
	}
	if (r.redirect) {
		char target[DNS_NAME_MAX + 1];
		if (!count_lookup(c, NULL, domain)) {
			res = SPF_PERMERROR;
			goto done;
		}
		if (!expand_domain(c, r.redirect, domain, target, sizeof(target))) {
			set_detail(c, "redirect=%s in %s: not a valid domain name", r.redirect, domain);
			res = SPF_PERMERROR;
			goto done;
		}
		res = check_domain(c, target, depth + 1);
		if (res == SPF_NONE) {
			set_detail(c, "redirect=%s in %s: %s has no SPF record", r.redirect, domain, target);
			res = SPF_PERMERROR;
		}
		goto done;
	}
	set_detail(c, "neutral: no term matched in %s and it has no redirect", domain);
done:
	record_free(&r);
	return res;
}

void spf_check_host(const struct spf_query *q, struct spf_eval *out)
{
	struct ctx c = { .q = q, .out = out };
	memset(out, 0, sizeof(*out));
	if (!dns_ip_parse(q->ip, c.ip, &c.v6)) {
		out->result = SPF_PERMERROR;
		set_detail(&c, "\"%s\" is not an IP address", q->ip);
		return;
	}
	const char *at = strrchr(q->sender, '@');
	if (at) {
		snprintf(c.local, sizeof(c.local), "%.*s", (int)(at - q->sender), q->sender);
		snprintf(c.sender_domain, sizeof(c.sender_domain), "%s", at + 1);
	} else {
		snprintf(c.sender_domain, sizeof(c.sender_domain), "%s", q->sender);
	}
	if (!c.local[0])
		snprintf(c.local, sizeof(c.local), "postmaster");
	size_t dl = strlen(c.sender_domain);
	if (dl && c.sender_domain[dl - 1] == '.')
		c.sender_domain[dl - 1] = 0;
	snprintf(c.helo, sizeof(c.helo), "%s", q->helo && *q->helo ? q->helo : c.sender_domain);
	snprintf(out->domain, sizeof(out->domain), "%s", c.sender_domain);
	/* RFC 7208 4.3: a malformed domain or one that is not fully qualified: none */
	if (!dns_name_valid(c.sender_domain) || !strchr(c.sender_domain, '.')) {
		out->result = SPF_NONE;
		set_detail(&c, "\"%s\" is not a fully qualified domain name", c.sender_domain);
		return;
	}
	out->result = check_domain(&c, c.sender_domain, 0);
}
