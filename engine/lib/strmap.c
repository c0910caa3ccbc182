/* engine/lib/strmap.c - see strmap.h. */
#include "strmap.h"
#include "util.h"
#include <stdlib.h>
#include <string.h>

uint64_t strmap_hash(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

struct strmap_node *strmap_find(const struct strmap *m, const char *key)
{
	if (!m->nb)
		return NULL;
	uint64_t h = strmap_hash(key);
	for (struct strmap_node *n = m->b[h & (m->nb - 1)]; n; n = n->next)
		if (n->hash == h && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

static void grow(struct strmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 64;
	struct strmap_node **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < m->nb; i++)
		for (struct strmap_node *n = m->b[i], *next; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

void strmap_insert(struct strmap *m, struct strmap_node *node, const char *key)
{
	if (m->n >= m->nb)
		grow(m);
	node->key = key;
	node->hash = strmap_hash(key);
	struct strmap_node **head = &m->b[node->hash & (m->nb - 1)];
	node->next = *head;
	*head = node;
	m->n++;
}

void strmap_remove(struct strmap *m, struct strmap_node *node)
{
	struct strmap_node **pp = &m->b[node->hash & (m->nb - 1)];
	while (*pp && *pp != node)
		pp = &(*pp)->next;
	ASSERT(*pp == node);
	*pp = node->next;
	node->next = NULL;
	m->n--;
}

void strmap_free(struct strmap *m)
{
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}
