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
