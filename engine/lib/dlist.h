/* engine/lib/dlist.h - an intrusive circular doubly linked list (the DNS
 * caches' LRU orders and the resolver's send backlog). A node not in a
 * list has NULL links; a head is a node linked to itself. */
#ifndef SLUICE_DLIST_H
#define SLUICE_DLIST_H
#include <stdbool.h>
#include <stddef.h>

struct dlist { struct dlist *prev, *next; };

static inline void dlist_init(struct dlist *head) { head->prev = head->next = head; }
static inline bool dlist_empty(const struct dlist *head) { return head->next == head; }

static inline void dlist_unlink(struct dlist *n)
{
	if (n->prev) {
		n->prev->next = n->next;
		n->next->prev = n->prev;
	}
	n->prev = n->next = NULL;
}

static inline void dlist_push_front(struct dlist *head, struct dlist *n)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}

static inline void dlist_push_back(struct dlist *head, struct dlist *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Moves n (linked or not) to the front. */
static inline void dlist_move_front(struct dlist *head, struct dlist *n)
{
	dlist_unlink(n);
	dlist_push_front(head, n);
}
#endif
