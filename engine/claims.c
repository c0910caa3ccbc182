/* engine/claims.c - the engine's book of spool files in flight (see
 * claims.h). */
#include "claims.h"
#include "spool.h"
#include "lib/util.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>

static bool id_taken(const struct claims *c, const char *id)
{
	return strmap_find(&c->by_id, id) != NULL;
}

struct claim *claims_take(struct claims *c, const char *name)
{
	if (strmap_find(&c->by_name, name))
		return NULL;
	size_t n = strlen(name);
	char id[NAME_MAX + 1];
	if (spool_name_keeps(name)) {
		snprintf(id, sizeof(id), "%s", name);
	} else {
		/* Too long: the same identity in every run (a job file's progress
		 * and a message's retry state are found by it), from the name's
		 * hash, while no other claim has it. */
		spool_name_variant(name, strmap_hash(name) % 1000000000u + 1, id, sizeof(id));
	}
	while (id_taken(c, id) || (strcmp(id, name) != 0 && strmap_find(&c->by_name, id)))
		spool_name_variant(name, ++c->seq, id, sizeof(id));
	size_t idn = strlen(id);
	struct claim *k = xcalloc(1, sizeof(*k) + n + 1 + idn + 1);
	memcpy(k->name, name, n + 1);
	k->id = k->name + n + 1;
	memcpy(k->id, id, idn + 1);
	strmap_insert(&c->by_name, &k->by_name, k->name);
	strmap_insert(&c->by_id, &k->by_id, k->id);
	k->in_new = k->id_used = true;
	c->n++;
	return k;
}

void claims_return(struct claims *c, const struct claim_return *r)
{
	struct claim *k = r->claim;
	if (!k)
		return;
	if (r->left_new && k->in_new) {
		strmap_remove(&c->by_name, &k->by_name);
		k->in_new = false;
	}
	if (r->id_free && k->id_used) {
		strmap_remove(&c->by_id, &k->by_id);
		k->id_used = false;
	}
	if (!k->in_new && !k->id_used) {
		c->n--;
		free(k);
	}
}

void claims_release(struct claims *c, struct claim *k)
{
	claims_return(c, &(struct claim_return){ .claim = k, .left_new = true, .id_free = true });
}

void claims_free(struct claims *c)
{
	/* Every claim is in by_id until it is freed. */
	for (size_t i = 0; i < c->by_id.nb; i++)
		for (struct strmap_node *nd = c->by_id.b[i], *next; nd; nd = next) {
			next = nd->next;
			free(container_of(nd, struct claim, by_id));
		}
	strmap_free(&c->by_name);
	strmap_free(&c->by_id);
	memset(c, 0, sizeof(*c));
}
