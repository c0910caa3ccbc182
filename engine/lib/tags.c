/* engine/lib/tags.c - see tags.h. */
#include "tags.h"
#include "util.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *trim(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	size_t l = strlen(s);
	while (l && isspace((unsigned char)s[l - 1]))
		s[--l] = 0;
	return s;
}

bool tags_parse(const char *text, struct tag_list *l, char *why, size_t why_len)
{
	memset(l, 0, sizeof(*l));
	l->copy = xstrdup(text);
	bool ok = true;
	char *save = NULL;
	for (char *part = strtok_r(l->copy, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(part, '=');
		char *problem = NULL;
		if (!eq) {
			if (!*trim(part))
				continue; /* an empty part (";;" or a final ";") */
			if (ok)
				snprintf(why, why_len, "\"%s\" is not tag=value", trim(part));
			ok = false;
			continue;
		}
		*eq = 0;
		char *name = trim(part), *value = trim(eq + 1);
		bool name_ok = isalpha((unsigned char)name[0]);
		for (const char *p = name; *p && name_ok; p++)
			name_ok = isalnum((unsigned char)*p) || *p == '_';
		char msg[160];
		if (!name_ok)
			snprintf(msg, sizeof(msg), "\"%.100s\" is not a tag name", name), problem = msg;
		else if (tags_get(l, name))
			snprintf(msg, sizeof(msg), "the tag %.100s= appears twice", name), problem = msg;
		else if (l->n == TAGS_MAX)
			snprintf(msg, sizeof(msg), "more than %d tags", TAGS_MAX), problem = msg;
		if (problem) {
			if (ok)
				snprintf(why, why_len, "%s", problem);
			ok = false;
			continue;
		}
		l->t[l->n].name = name;
		l->t[l->n++].value = value;
	}
	return ok;
}

const char *tags_get(const struct tag_list *l, const char *name)
{
	for (unsigned i = 0; i < l->n; i++)
		if (!strcasecmp(l->t[i].name, name))
			return l->t[i].value;
	return NULL;
}

void tags_free(struct tag_list *l)
{
	free(l->copy);
	l->copy = NULL;
	l->n = 0;
}
