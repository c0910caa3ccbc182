/* dns/psl.c - see psl.h. The list is read once per process (the first
 * caller's thread), then only read. */
#define _GNU_SOURCE
#include "psl.h"
#include "../engine/lib/strmap.h"
#include "../engine/lib/util.h"
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PSL_PATH "/usr/share/publicsuffix/public_suffix_list.dat"

struct psl_rule { struct strmap_node node; char *text; };
static struct strmap psl;
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;

static void psl_load(void)
{
	FILE *f = fopen(PSL_PATH, "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		char *p = line;
		p[strcspn(p, " \t\r\n")] = 0;
		if (!*p || (p[0] == '/' && p[1] == '/'))
			continue;
		str_lower(p);
		if (strmap_find(&psl, p))
			continue;
		struct psl_rule *r = xcalloc(1, sizeof(*r));
		r->text = xstrdup(p);
		strmap_insert(&psl, &r->node, r->text);
	}
	fclose(f);
}

static bool psl_has(const char *prefix, const char *s)
{
	char key[300];
	snprintf(key, sizeof(key), "%s%s", prefix, s);
	return strmap_find(&psl, key) != NULL;
}

/* Without the list: two labels, three under a ccTLD's co/com/net/org/ac/gov/edu. */
static const char *short_rule_suffix(const char *host)
{
	const char *last = strrchr(host, '.');
	if (!last)
		return host;
	const char *p = last, *second = NULL;
	while (p > host && p[-1] != '.')
		p--;
	second = p;
	static const char *sld[] = { "co.", "com.", "net.", "org.", "ac.", "gov.", "edu.", "ne.", "or." };
	if (strlen(last + 1) == 2)
		for (size_t i = 0; i < ARRAY_LEN(sld); i++)
			if (!strncmp(second, sld[i], strlen(sld[i])))
				return second;
	return last + 1;
}

const char *psl_registered_domain(const char *host)
{
	pthread_once(&psl_once, psl_load);
	const char *ps = NULL;
	if (psl.n) {
		for (const char *s = host; s && *s; s = strchr(s, '.') ? strchr(s, '.') + 1 : NULL) {
			const char *parent = strchr(s, '.') ? strchr(s, '.') + 1 : NULL;
			if (psl_has("!", s)) {
				ps = parent;
				break;
			}
			if (psl_has("", s) || (parent && psl_has("*.", parent))) {
				ps = s;
				break;
			}
		}
		if (!ps)
			ps = strrchr(host, '.') ? strrchr(host, '.') + 1 : host;
	} else {
		ps = short_rule_suffix(host);
	}
	if (!ps || ps == host)
		return host;
	const char *p = ps - 1; /* the dot before the suffix */
	while (p > host && p[-1] != '.')
		p--;
	return p;
}

bool psl_available(void)
{
	pthread_once(&psl_once, psl_load);
	return psl.n > 0;
}
