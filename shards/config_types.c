/* shards/config_types.c - lookups over the run configuration that shards
 * make while delivering (see config_types.h). */
#include "config_types.h"
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
