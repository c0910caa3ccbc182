/* dns/mx.c - see mx.h. One cache entry per domain: a plan, or the state
 * of building one (the MX query, then A/AAAA per MX host), with the
 * callers waiting for it. */
#define _GNU_SOURCE
#include "mx.h"
#include "psl.h"
#include "../engine/lib/rng.h"
#include "../engine/lib/dlist.h"
#include "../engine/lib/strmap.h"
#include "../engine/lib/util.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOSTS_MAX 10              /* MX hosts tried per domain (Postfix: 5 sessions, 10 addresses) */
#define ADDRS_PER_HOST 4
#define PLAN_DEFER_CACHE_MS 5000
#define PLAN_MAX_CACHE_MS (3600 * 1000)

/* Provider rules every operator would write (MX rollup as in KumoMTA's
 * shaping and PowerMTA's mx-rollup); the config's rules come first. */
static const struct { const char *pattern, *group; } builtin_rules[] = {
	{ "*.google.com", "gmail" },         { "*.googlemail.com", "gmail" },
	{ "*.yahoodns.net", "yahoo" },       { "*.protection.outlook.com", "outlook" },
	{ "*.mail.icloud.com", "icloud" },   { "*.gmx.net", "gmx" },
	{ "*.web.de", "gmx" },               { "*.mail.ru", "mailru" },
	{ "*.yandex.net", "yandex" },        { "*.yandex.ru", "yandex" },
	{ "*.comcast.net", "comcast" },      { "*.orange.fr", "orange" },
	{ "*.zoho.com", "zoho" },            { "*.pphosted.com", "proofpoint" },
	{ "*.mimecast.com", "mimecast" },
};

struct lookup {                   /* one outstanding DNS answer for a domain */
	struct dom *d;
	unsigned host;
	uint16_t type;
};

struct dom {
	struct strmap_node node;
	char *name;
	struct mx_resolver *m;
	bool pending, implicit;
	struct mx_plan plan;
	int64_t expires;
	int64_t ttl_ms;           /* shortest TTL seen while building */
	/* building */
	uint16_t *pref;
	struct dns_answer *ans;   /* [2 * host + (AAAA ? 1 : 0)] */
	bool any_tempfail;
	unsigned outstanding;
	struct lookup *lk;
	struct { mx_done_fn fn; void *arg; } *w;
	unsigned nw, cw;
	struct dlist link;        /* LRU of ready plans */
};

struct mx_resolver {
	struct dns_resolver *dns;
	struct mx_config cfg;
	struct strmap map;
	struct dlist lru;         /* ready plans, most recent first */
	unsigned nready;
	uint64_t serial, rng;
};

/* The group of the first rule whose pattern matches host, or NULL. */
static const char *rule_group(const struct mx_group_rule *rules, unsigned nrules, const char *host)
{
	for (unsigned i = 0; i < nrules; i++)
		if (fnmatch(rules[i].pattern, host, FNM_CASEFOLD) == 0)
			return rules[i].group;
	return NULL;
}

void mx_group_of(const struct mx_group_rule *rules, unsigned nrules, const char *host,
                 char *out, size_t out_len)
{
	const char *g = rule_group(rules, nrules, host);
	if (g) {
		snprintf(out, out_len, "%s", g);
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(builtin_rules); i++)
		if (fnmatch(builtin_rules[i].pattern, host, FNM_CASEFOLD) == 0) {
			snprintf(out, out_len, "%s", builtin_rules[i].group);
			return;
		}
	snprintf(out, out_len, "%s", psl_registered_domain(host));
}

/* ---- plans ---- */

static void plan_clear(struct mx_plan *p)
{
	for (unsigned i = 0; i < p->nhosts; i++)
		free(p->hosts[i]);
	free(p->hosts);
	free(p->addr);
	free(p->site);
	free(p->group);
	memset(p, 0, sizeof(*p));
}

static void building_clear(struct dom *d)
{
	if (d->ans)
		for (unsigned i = 0; i < 2 * d->plan.nhosts; i++)
			dns_answer_free(&d->ans[i]);
	free(d->ans);
	free(d->lk);
	free(d->pref);
	d->ans = NULL;
	d->lk = NULL;
	d->pref = NULL;
}

static void dom_free(struct mx_resolver *m, struct dom *d)
{
	strmap_remove(&m->map, &d->node);
	dlist_unlink(&d->link);
	building_clear(d);
	plan_clear(&d->plan);
	free(d->w);
	free(d->name);
	free(d);
}

static void take_ttl(struct dom *d, uint32_t ttl_s)
{
	int64_t ms = (int64_t)ttl_s * 1000;
	if (ms < d->ttl_ms)
		d->ttl_ms = ms;
}

/* The plan is there: cache it, call the waiters. */
static void finish(struct mx_resolver *m, struct dom *d)
{
	building_clear(d);
	d->pending = false;
	d->plan.serial = ++m->serial;
	int64_t ms = d->plan.kind == MX_DEFER ? PLAN_DEFER_CACHE_MS : d->ttl_ms;
	if (ms > PLAN_MAX_CACHE_MS)
		ms = PLAN_MAX_CACHE_MS;
	d->expires = now_mono_ms() + ms;
	dlist_push_front(&m->lru, &d->link);
	m->nready++;
	__typeof__(d->w) w = d->w;
	unsigned nw = d->nw;
	d->w = NULL;
	d->nw = d->cw = 0;
	for (unsigned i = 0; i < nw; i++)
		w[i].fn(w[i].arg, &d->plan);
	free(w);
	/* bounded: the least recently used ready plans go */
	while (m->nready > m->cfg.cache_max && m->lru.prev != &m->lru && m->lru.prev != &d->link) {
		dom_free(m, container_of(m->lru.prev, struct dom, link));
		m->nready--;
	}
}

static void fail(struct mx_resolver *m, struct dom *d, enum mx_kind kind, uint16_t code, const char *enh,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void fail(struct mx_resolver *m, struct dom *d, enum mx_kind kind, uint16_t code, const char *enh,
                 const char *fmt, ...)
{
	building_clear(d);
	plan_clear(&d->plan);
	d->plan.kind = kind;
	d->plan.code = code;
	snprintf(d->plan.enhanced, sizeof(d->plan.enhanced), "%s", enh);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->plan.why, sizeof(d->plan.why), fmt, ap);
	va_end(ap);
	finish(m, d);
}

/* The address lookups of a host: t 0 asks A, t 1 AAAA (when IPv6 is used);
 * answers are kept at d->ans[2 * host + t]. */
static inline uint16_t addr_type(unsigned t)
{
	return t ? DNS_T_AAAA : DNS_T_A;
}

static inline bool type_asked(const struct mx_resolver *m, unsigned t)
{
	return t == 0 || m->cfg.ipv6;
}

static void add_addr(struct mx_plan *p, unsigned host, uint16_t pref, uint16_t type, const uint8_t *a,
                     uint16_t port)
{
	struct mx_addr *x = &p->addr[p->naddr++];
	memset(x, 0, sizeof(*x));
	x->host = p->hosts[host];
	x->pref = pref;
	if (type == DNS_T_A) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&x->sa;
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		memcpy(&v4->sin_addr, a, 4);
		x->len = sizeof(*v4);
	} else {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&x->sa;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		memcpy(&v6->sin6_addr, a, 16);
		x->len = sizeof(*v6);
	}
}

static int by_pref_name(const void *a, const void *b, void *arg)
{
	const struct dns_rr *rr = arg;
	unsigned i = *(const unsigned *)a, j = *(const unsigned *)b;
	if (rr[i].pref != rr[j].pref)
		return rr[i].pref < rr[j].pref ? -1 : 1;
	return strcmp(rr[i].text, rr[j].text);
}

/* The site (every MX host, sorted: the same set gives the same site
 * whatever the random order) and the MX group: the first host in
 * preference order that a rule matches, else the best host's registered
 * domain. */
static void name_site(struct mx_resolver *m, struct dom *d, const struct dns_rr *rr, const unsigned *idx, unsigned n)
{
	unsigned *ord = xmalloc(n * sizeof(*ord));
	memcpy(ord, idx, n * sizeof(*ord));
	qsort_r(ord, n, sizeof(*ord), by_pref_name, (void *)rr);
	struct buf b = { 0 };
	for (unsigned i = 0; i < n; i++)
		buf_printf(&b, "%s%s", i ? "," : "", rr[ord[i]].text);
	buf_printf(&b, ":%u", m->cfg.port);
	d->plan.site = xstrndup(b.p, b.len);
	buf_free(&b);
	const char *g = NULL;
	for (unsigned i = 0; i < n && !g; i++)
		g = rule_group(m->cfg.rules, m->cfg.nrules, rr[ord[i]].text);
	char group[256];
	if (g)
		snprintf(group, sizeof(group), "%s", g);
	else
		mx_group_of(NULL, 0, rr[ord[0]].text, group, sizeof(group));
	d->plan.group = xstrdup(group);
	free(ord);
}

/* Every address answer is in: the addresses in try order, or why none. */
static void build(struct mx_resolver *m, struct dom *d)
{
	struct mx_plan *p = &d->plan;
	ASSERT(d->outstanding == 0);
	p->addr = xcalloc(p->nhosts * 2 * ADDRS_PER_HOST + 1, sizeof(*p->addr));
	bool nxdomain_all = true;
	for (unsigned h = 0; h < p->nhosts; h++)
		for (unsigned t = 0; t < 2; t++) {
			const struct dns_answer *a = &d->ans[2 * h + t];
			if (!type_asked(m, t))
				continue;
			if (a->status != DNS_NXDOMAIN)
				nxdomain_all = false;
			for (unsigned k = 0; a->status == DNS_OK && k < a->n && k < ADDRS_PER_HOST; k++)
				add_addr(p, h, d->pref[h], addr_type(t), a->rr[k].addr, m->cfg.port);
		}
	if (p->naddr == 0) {
		if (d->any_tempfail)
			fail(m, d, MX_DEFER, 451, "4.4.3", "DNS: address lookup for the MX hosts of %s failed", d->name);
		else if (d->implicit)
			fail(m, d, MX_BOUNCE, 550, nxdomain_all ? "5.1.2" : "5.4.4",
			     "DNS: %s has no MX and no address record", d->name);
		else
			fail(m, d, MX_DEFER, 451, "4.4.4",
			     "DNS: the MX hosts of %s have no address (no fallback to the domain's own address, RFC 5321 5.1)",
			     d->name);
		return;
	}
	p->kind = MX_DELIVER;
	finish(m, d);
}

static void got_addr(struct mx_resolver *m, struct dom *d, unsigned h, uint16_t type,
                     const struct dns_answer *a)
{
	struct dns_answer *slot = &d->ans[2 * h + (type == DNS_T_AAAA)];
	*slot = *a;
	slot->rr = NULL;
	slot->n = 0;
	if (a->status == DNS_OK) {
		slot->rr = xcalloc(a->n, sizeof(*slot->rr));
		memcpy(slot->rr, a->rr, a->n * sizeof(*a->rr));
		for (unsigned i = 0; i < a->n; i++)
			slot->rr[i].text = a->rr[i].text ? xstrdup(a->rr[i].text) : NULL;
		slot->n = a->n;
	}
	if (a->status == DNS_OK || a->status == DNS_NODATA || a->status == DNS_NXDOMAIN)
		take_ttl(d, a->ttl);
	else if (a->status != DNS_BADNAME)
		d->any_tempfail = true;
	if (--d->outstanding == 0)
		build(m, d);
}

static void on_addr(void *arg, const struct dns_answer *a, const char *err)
{
	struct lookup *lk = arg;
	got_addr(lk->d->m, lk->d, lk->host, lk->type, a);
}

static void ask_addresses(struct mx_resolver *m, struct dom *d)
{
	struct mx_plan *p = &d->plan;
	ASSERT(p->nhosts > 0 && d->pref && !d->ans);
	d->ans = xcalloc(2 * p->nhosts, sizeof(*d->ans));
	d->lk = xcalloc(2 * p->nhosts, sizeof(*d->lk));
	d->outstanding = 2 * p->nhosts + 1; /* +1: held until all are asked */
	for (unsigned h = 0; h < p->nhosts; h++)
		for (unsigned t = 0; t < 2; t++) {
			uint16_t type = addr_type(t);
			if (!type_asked(m, t)) {
				d->ans[2 * h + 1].status = DNS_NODATA;
				d->outstanding--;
				continue;
			}
			d->lk[2 * h + t] = (struct lookup){ d, h, type };
			const char *err;
			const struct dns_answer *a = dns_lookup(m->dns, p->hosts[h], type, on_addr, &d->lk[2 * h + t], &err);
			if (a)
				got_addr(m, d, h, type, a);
		}
	if (--d->outstanding == 0)
		build(m, d);
}

static uint64_t rnd(struct mx_resolver *m)
{
	return rng_next(&m->rng);
}

/* No MX: the domain itself is the implicit MX (RFC 5321 5.1). */
static void implicit_mx(struct mx_resolver *m, struct dom *d)
{
	d->implicit = true;
	d->plan.hosts = xcalloc(1, sizeof(char *));
	d->plan.hosts[0] = xstrdup(d->name);
	d->plan.nhosts = 1;
	struct dns_rr self = { .text = d->name };
	unsigned zero = 0;
	name_site(m, d, &self, &zero, 1);
	d->pref = xcalloc(1, sizeof(*d->pref));
	ask_addresses(m, d);
}

/* The MX records worth trying, as indexes into rr: once per host name,
 * without the null MX ("MX 0 ."). Returns how many. */
static unsigned distinct_hosts(const struct dns_rr *rr, unsigned nrr, unsigned *idx)
{
	unsigned n = 0;
	for (unsigned i = 0; i < nrr; i++) {
		if (rr[i].text[0] == 0)
			continue;
		bool dup = false;
		for (unsigned j = 0; j < n && !dup; j++)
			dup = !strcmp(rr[idx[j]].text, rr[i].text);
		if (!dup)
			idx[n++] = i;
	}
	return n;
}

static void swap_idx(unsigned *a, unsigned *b)
{
	unsigned t = *a;
	*a = *b;
	*b = t;
}

/* By preference; random order among equal preference (RFC 5321 5.1): a
 * shuffle, then a stable sort. */
static void order_hosts(struct mx_resolver *m, const struct dns_rr *rr, unsigned *idx, unsigned n)
{
	for (unsigned i = n; i > 1; i--)
		swap_idx(&idx[i - 1], &idx[(unsigned)(rnd(m) % i)]);
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && rr[idx[j - 1]].pref > rr[idx[j]].pref; j--)
			swap_idx(&idx[j], &idx[j - 1]);
}

/* The first HOSTS_MAX hosts of idx become the plan's, in that order. */
static void take_hosts(struct dom *d, const struct dns_rr *rr, const unsigned *idx, unsigned n)
{
	if (n > HOSTS_MAX)
		n = HOSTS_MAX;
	d->plan.hosts = xcalloc(n, sizeof(char *));
	d->pref = xcalloc(n, sizeof(*d->pref));
	for (unsigned i = 0; i < n; i++) {
		d->plan.hosts[i] = xstrdup(rr[idx[i]].text);
		d->pref[i] = rr[idx[i]].pref;
	}
	d->plan.nhosts = n;
}

static void got_mx(struct mx_resolver *m, struct dom *d, const struct dns_answer *a, const char *err)
{
	ASSERT(d->pending && !d->plan.hosts); /* plans are built from empty */
	switch (a->status) {
	case DNS_NXDOMAIN:
		take_ttl(d, a->ttl);
		fail(m, d, MX_BOUNCE, 550, "5.1.2", "DNS: domain %s does not exist (NXDOMAIN)", d->name);
		return;
	case DNS_BADNAME:
		d->ttl_ms = PLAN_MAX_CACHE_MS;
		fail(m, d, MX_BOUNCE, 550, "5.1.2", "%s is not a valid DNS domain name", d->name);
		return;
	case DNS_NODATA:
		take_ttl(d, a->ttl);
		implicit_mx(m, d);
		return;
	case DNS_OK:
		break;
	default:
		fail(m, d, MX_DEFER, 451, "4.4.3", "DNS: MX lookup for %s failed: %s", d->name,
		     err ? err : dns_status_name(a->status));
		return;
	}
	take_ttl(d, a->ttl);
	unsigned *idx = xmalloc(a->n * sizeof(*idx));
	unsigned n = distinct_hosts(a->rr, a->n, idx);
	if (n == 0) {
		free(idx);
		fail(m, d, MX_BOUNCE, 556, "5.1.10", "%s does not accept mail (null MX, RFC 7505)", d->name);
		return;
	}
	name_site(m, d, a->rr, idx, n);
	order_hosts(m, a->rr, idx, n);
	take_hosts(d, a->rr, idx, n);
	free(idx);
	ask_addresses(m, d);
}

static void on_mx(void *arg, const struct dns_answer *a, const char *err)
{
	struct dom *d = arg;
	got_mx(d->m, d, a, err);
}

const struct mx_plan *mx_lookup(struct mx_resolver *m, const char *domain, mx_done_fn done, void *arg)
{
	char key[DNS_NAME_MAX + 2];
	size_t n = strlen(domain);
	if (n >= sizeof(key))
		n = sizeof(key) - 1; /* too long for DNS: the lookup says so */
	for (size_t i = 0; i < n; i++)
		key[i] = (char)tolower((unsigned char)domain[i]);
	key[n] = 0;
	struct strmap_node *node = strmap_find(&m->map, key);
	struct dom *d = node ? container_of(node, struct dom, node) : NULL;
	if (d && !d->pending) {
		if (d->expires > now_mono_ms()) {
			dlist_move_front(&m->lru, &d->link);
			return &d->plan;
		}
		if (!done)
			return NULL;
		dlist_unlink(&d->link); /* expired: built again */
		m->nready--;
		plan_clear(&d->plan);
	}
	if (!done)
		return NULL;
	if (!d) {
		d = xcalloc(1, sizeof(*d));
		d->name = xstrdup(key);
		d->m = m;
		strmap_insert(&m->map, &d->node, d->name);
	}
	if (d->nw == d->cw) {
		d->cw = d->cw ? d->cw * 2 : 4;
		d->w = xrealloc(d->w, d->cw * sizeof(*d->w));
	}
	d->w[d->nw].fn = done;
	d->w[d->nw++].arg = arg;
	if (d->pending)
		return NULL;
	d->pending = true;
	d->implicit = d->any_tempfail = false;
	d->ttl_ms = PLAN_MAX_CACHE_MS;
	const char *err;
	const struct dns_answer *a = dns_lookup(m->dns, d->name, DNS_T_MX, on_mx, d, &err);
	if (a)
		got_mx(m, d, a, err);
	return NULL; /* even when it finished at once: the waiter was called */
}

struct mx_resolver *mx_resolver_new(struct dns_resolver *dns, const struct mx_config *cfg)
{
	struct mx_resolver *m = xcalloc(1, sizeof(*m));
	m->dns = dns;
	dlist_init(&m->lru);
	m->rng = (uint64_t)now_real_ms() * 0x9e3779b97f4a7c15ull | 1;
	mx_resolver_configure(m, cfg);
	return m;
}

static void drop_ready(struct mx_resolver *m)
{
	while (!dlist_empty(&m->lru)) {
		dom_free(m, container_of(m->lru.next, struct dom, link));
		m->nready--;
	}
}

void mx_resolver_configure(struct mx_resolver *m, const struct mx_config *cfg)
{
	bool changed = m->cfg.port != cfg->port || m->cfg.ipv6 != cfg->ipv6 || m->cfg.rules != cfg->rules;
	m->cfg = *cfg;
	if (!m->cfg.cache_max)
		m->cfg.cache_max = 10000;
	if (changed)
		drop_ready(m);
}

void mx_resolver_free(struct mx_resolver *m)
{
	if (!m)
		return;
	drop_ready(m);
	for (size_t b = 0; b < m->map.nb; b++)
		for (struct strmap_node *n = m->map.b[b], *next; n; n = next) {
			next = n->next;
			struct dom *d = container_of(n, struct dom, node);
			for (unsigned i = 0; i < d->nw; i++)
				d->w[i].fn(d->w[i].arg, NULL);
			d->nw = 0;
		}
	for (size_t b = 0; b < m->map.nb; b++)
		while (m->map.b[b])
			dom_free(m, container_of(m->map.b[b], struct dom, node));
	strmap_free(&m->map);
	free(m);
}
