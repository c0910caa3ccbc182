/* shards/config_types.c - lookups over the run configuration that shards
 * make while delivering (see config_types.h). */
#include "config_types.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int config_route_for(const struct config *cfg, const char *domain)
{
	int star = -1;
	for (unsigned i = 0; i < cfg->nroutes; i++) {
		if (strcmp(cfg->routes[i].domain, "*") == 0) {
			if (star < 0)
				star = (int)i;
		} else if (strcasecmp(cfg->routes[i].domain, domain) == 0) {
			return (int)i;
		}
	}
	return star;
}

enum tls_policy config_tls_policy(const struct config *cfg, const char *domain, const char *group)
{
	for (unsigned i = 0; domain && i < cfg->ntls_rules; i++)
		if (cfg->tls_rules[i].domain && strcasecmp(cfg->tls_rules[i].domain, domain) == 0)
			return cfg->tls_rules[i].policy;
	for (unsigned i = 0; group && i < cfg->ntls_rules; i++)
		if (cfg->tls_rules[i].group && strcmp(cfg->tls_rules[i].group, group) == 0)
			return cfg->tls_rules[i].policy;
	return cfg->tls_policy;
}

bool config_tls_verifies(const struct config *cfg)
{
	bool v = cfg->tls_policy == TLS_POLICY_VERIFY;
	for (unsigned i = 0; i < cfg->ntls_rules; i++)
		v = v || cfg->tls_rules[i].policy == TLS_POLICY_VERIFY;
	return v;
}

static const char *const policy_names[] = {
	[TLS_POLICY_NONE] = "none", [TLS_POLICY_OPPORTUNISTIC] = "opportunistic",
	[TLS_POLICY_REQUIRED] = "required", [TLS_POLICY_VERIFY] = "verify",
};

const char *tls_policy_name(enum tls_policy p)
{
	return policy_names[p];
}

bool tls_policy_parse(const char *word, enum tls_policy *p)
{
	for (unsigned i = 0; i < sizeof(policy_names) / sizeof(*policy_names); i++)
		if (strcmp(word, policy_names[i]) == 0) {
			*p = (enum tls_policy)i;
			return true;
		}
	return false;
}

/* ---- sources, pools and limits ---- */

int config_source_index(const struct config *cfg, const char *text)
{
	for (unsigned i = 0; text && i < cfg->nsources; i++)
		if (strcmp(cfg->sources[i].text, text) == 0)
			return (int)i;
	return -1;
}

static int pool_index(const struct config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->npools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

int config_pool_for(const struct config *cfg, const char *xpool, const char *job, const char *sender)
{
	if (cfg->npools == 0)
		return xpool ? CONFIG_UNKNOWN_POOL : CONFIG_NO_POOL;
	if (xpool) {
		int p = pool_index(cfg, xpool);
		return p >= 0 ? p : CONFIG_UNKNOWN_POOL;
	}
	const char *at = sender ? strrchr(sender, '@') : NULL;
	for (unsigned i = 0; job && i < cfg->npool_rules; i++)
		if (cfg->pool_rules[i].job && strcmp(cfg->pool_rules[i].job, job) == 0)
			return (int)cfg->pool_rules[i].pool;
	for (unsigned i = 0; at && i < cfg->npool_rules; i++)
		if (cfg->pool_rules[i].sender_domain && strcasecmp(cfg->pool_rules[i].sender_domain, at + 1) == 0)
			return (int)cfg->pool_rules[i].pool;
	return cfg->default_pool >= 0 ? cfg->default_pool : 0;
}

static bool in_pool(const struct config *cfg, const char *pool, int source)
{
	int p = pool_index(cfg, pool);
	for (unsigned i = 0; p >= 0 && i < cfg->pools[p].nmembers; i++)
		if ((int)cfg->pools[p].members[i].source == source)
			return true;
	return false;
}

/* How specific a rule is for this pair (higher wins), or -1 if it does
 * not apply. */
static int rule_rank(const struct config *cfg, const struct shape_rule *r, int source, const char *group)
{
	if (r->group && (!group || strcmp(r->group, group) != 0))
		return -1;
	if (r->source && (source < 0 || strcmp(cfg->sources[source].text, r->source) != 0))
		return -1;
	if (r->pool && (source < 0 || !in_pool(cfg, r->pool, source)))
		return -1;
	int rank = r->shipped ? 0 : 1;
	rank = rank * 2 + (r->group != NULL);
	return rank * 3 + (r->source ? 2 : r->pool ? 1 : 0);
}

static void limits_apply(struct shape_limits *out, const struct shape_rule *r)
{
	if (r->set & SHAPE_MAXCONN)
		out->max_connections = r->lim.max_connections;
	if (r->set & SHAPE_PERCONN)
		out->max_per_connection = r->lim.max_per_connection;
	if (r->set & SHAPE_RATE)
		out->max_rate = r->lim.max_rate;
	if (r->set & SHAPE_BURST)
		out->burst = r->lim.burst;
	if (r->set & SHAPE_NEWCONN)
		out->max_new_conn_rate = r->lim.max_new_conn_rate;
}

void config_pair_limits(const struct config *cfg, int source, const char *group, struct shape_limits *out)
{
	*out = (struct shape_limits){ cfg->max_connections, cfg->max_per_connection, cfg->max_rate,
	                              cfg->rate_burst, cfg->max_new_conn_rate };
	enum { RANKS = 12 };
	for (int rank = 0; rank < RANKS; rank++) /* least specific first; few rules */
		for (unsigned i = 0; i < cfg->nshape_rules; i++)
			if (rule_rank(cfg, &cfg->shape_rules[i], source, group) == rank)
				limits_apply(out, &cfg->shape_rules[i]);
	/* A tenth of a second's worth: the bucket smooths, a provider
	 * counting per second or minute never sees a burst. */
	if (out->burst == 0)
		out->burst = out->max_rate > 10 ? (unsigned)ceil(out->max_rate / 10) : 1;
}

bool config_rate_parse(const char *spec, double *per_second)
{
	char *end;
	double n = strtod(spec, &end);
	if (end == spec || !(n > 0) || !isfinite(n) || end[0] != '/' || !end[1] || end[2])
		return false;
	switch (end[1]) {
	case 's': *per_second = n; return true;
	case 'm': *per_second = n / 60; return true;
	case 'h': *per_second = n / 3600; return true;
	default: return false;
	}
}

bool config_duration_parse(const char *spec, int64_t *ms)
{
	char *end;
	double n = strtod(spec, &end);
	if (end == spec || !(n > 0) || !isfinite(n) || n > 366 * 86400.0 || (end[0] && end[1]))
		return false;
	double unit;
	switch (end[0]) {
	case 0: case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	default: return false;
	}
	if (n * unit > 366 * 86400.0)
		return false;
	*ms = (int64_t)(n * unit * 1000 + 0.5);
	return *ms > 0;
}

const struct wave_rule *config_wave_for(const struct config *cfg, const char *job)
{
	for (unsigned i = 0; job && i < cfg->nwaves; i++)
		if (strcmp(cfg->waves[i].job, job) == 0)
			return &cfg->waves[i];
	return NULL;
}

const struct warm_ip *config_warm_for(const struct config *cfg, int source)
{
	for (unsigned i = 0; source >= 0 && i < cfg->nwarm_ips; i++)
		if ((int)cfg->warm_ips[i].source == source)
			return &cfg->warm_ips[i];
	return NULL;
}

unsigned config_warm_cap(const struct config *cfg, const struct warm_ip *w, int64_t day)
{
	const unsigned *plan = w->plan ? w->plan : cfg->warm_plan;
	unsigned n = w->plan ? w->nplan : cfg->nwarm_plan;
	int64_t i = day - w->start_day;
	if (i < 0)
		i = 0; /* not started yet: its first day's cap */
	return i < (int64_t)n ? plan[i] : 0;
}

unsigned config_pool_share(const struct config *cfg, int pool, int source, unsigned n)
{
	if (pool < 0 || (unsigned)pool >= cfg->npools)
		return n;
	const struct pool *p = &cfg->pools[pool];
	uint64_t total = 0;
	int at = -1;
	for (unsigned i = 0; i < p->nmembers; i++) {
		total += p->members[i].weight;
		if ((int)p->members[i].source == source && at < 0)
			at = (int)i;
	}
	if (at < 0 || !total)
		return n;
	/* floor shares, then one more for the largest remainders */
	unsigned given = 0;
	for (unsigned i = 0; i < p->nmembers; i++)
		given += (unsigned)((uint64_t)n * p->members[i].weight / total);
	unsigned left = n - given, mine = (unsigned)((uint64_t)n * p->members[at].weight / total);
	uint64_t my_rem = (uint64_t)n * p->members[at].weight % total;
	unsigned ahead = 0; /* members whose remainder beats mine */
	for (unsigned i = 0; i < p->nmembers; i++) {
		uint64_t rem = (uint64_t)n * p->members[i].weight % total;
		if (rem > my_rem || (rem == my_rem && i < (unsigned)at))
			ahead++;
	}
	return mine + (ahead < left ? 1 : 0);
}

int64_t civil_days(int y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool plans_same(const unsigned *a, unsigned na, const unsigned *b, unsigned nb)
{
	return na == nb && (!na || memcmp(a, b, na * sizeof(*a)) == 0);
}

static bool text_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* The same pools (members, weights) and pool rules: wave shares follow them. */
static bool pools_same(const struct config *a, const struct config *b)
{
	if (a->npools != b->npools || a->npool_rules != b->npool_rules || a->default_pool != b->default_pool)
		return false;
	for (unsigned i = 0; i < a->npools; i++) {
		const struct pool *x = &a->pools[i], *y = &b->pools[i];
		if (strcmp(x->name, y->name) != 0 || x->nmembers != y->nmembers)
			return false;
		for (unsigned k = 0; k < x->nmembers; k++)
			if (x->members[k].weight != y->members[k].weight ||
			    strcmp(a->sources[x->members[k].source].text, b->sources[y->members[k].source].text) != 0)
				return false;
	}
	for (unsigned i = 0; i < a->npool_rules; i++)
		if (!text_same(a->pool_rules[i].job, b->pool_rules[i].job) ||
		    !text_same(a->pool_rules[i].sender_domain, b->pool_rules[i].sender_domain) ||
		    a->pool_rules[i].pool != b->pool_rules[i].pool)
			return false;
	return true;
}

bool config_budgets_same(const struct config *a, const struct config *b)
{
	if (!a->nwaves && !b->nwaves && !a->nwarm_ips && !b->nwarm_ips)
		return true; /* no budget at all */
	if (!pools_same(a, b))
		return false;
	if (a->nwaves != b->nwaves || a->nwarm_ips != b->nwarm_ips ||
	    !plans_same(a->warm_plan, a->nwarm_plan, b->warm_plan, b->nwarm_plan))
		return false;
	for (unsigned i = 0; i < a->nwaves; i++)
		if (strcmp(a->waves[i].job, b->waves[i].job) != 0 || a->waves[i].size != b->waves[i].size ||
		    a->waves[i].every_ms != b->waves[i].every_ms)
			return false;
	for (unsigned i = 0; i < a->nwarm_ips; i++) {
		const struct warm_ip *x = &a->warm_ips[i], *y = &b->warm_ips[i];
		if (strcmp(x->ip, y->ip) != 0 || x->start_day != y->start_day || !plans_same(x->plan, x->nplan, y->plan, y->nplan))
			return false;
	}
	return true;
}
