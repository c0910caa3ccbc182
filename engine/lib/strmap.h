/* engine/lib/strmap.h - an intrusive hash map from a string key to the struct
 * that embeds the node (chaining, grows by doubling, no allocation per
 * entry). Keys are compared byte for byte: callers lower-case DNS names. */
#ifndef SLUICE_STRMAP_H
#define SLUICE_STRMAP_H
#include <stddef.h>
#include <stdint.h>

struct strmap_node {
	struct strmap_node *next;
	uint64_t hash;
	const char *key;          /* owned by the embedding struct */
};

struct strmap {
	struct strmap_node **b;
	size_t nb, n;
};

uint64_t strmap_hash(const char *key);
struct strmap_node *strmap_find(const struct strmap *m, const char *key);
/* The key must not be there yet; node->key must stay valid while inserted. */
void strmap_insert(struct strmap *m, struct strmap_node *node, const char *key);
void strmap_remove(struct strmap *m, struct strmap_node *node);
void strmap_free(struct strmap *m);   /* the table only, not the entries */
#endif
