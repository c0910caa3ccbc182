/* engine/lib/tags.h - tag=value lists, the syntax of DKIM key records
 * (RFC 6376 3.2) and DMARC records (RFC 7489 6.4): "v=DKIM1; k=rsa; p=...".
 * Whitespace around names and values is dropped; a duplicate tag makes
 * the whole list invalid. */
#ifndef SLUICE_TAGS_H
#define SLUICE_TAGS_H
#include <stdbool.h>
#include <stddef.h>

#define TAGS_MAX 32

struct tag_list {
	char *copy;
	struct { char *name, *value; } t[TAGS_MAX];
	unsigned n;
};

/* False with why set (the first problem) when text is not a valid tag
 * list; l then holds the parts that were valid (the first of duplicates),
 * for readers that ignore errors (DMARC). Free l with tags_free always. */
bool tags_parse(const char *text, struct tag_list *l, char *why, size_t why_len);
/* The value of a tag (names compared ignoring case), or NULL. */
const char *tags_get(const struct tag_list *l, const char *name);
void tags_free(struct tag_list *l);
#endif
