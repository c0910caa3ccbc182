/* engine/tallies.c - what happened to each job's recipients, and to each
 * (source IP, MX group) pair's, this run: delivered, bounced, complaints,
 * unsubscribes, suppressed. The engine counts every recipient line it
 * writes (and every complaint feedback brings); the summary prints the
 * bounce and complaint rates, and a job whose complaint rate passes
 * feedback.complaint-threshold is paused (run.c). Engine thread only. */
#include "tallies.h"
#include "lib/strmap.h"
#include "lib/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TALLIES_MAX 100000 /* keys kept (beyond: not counted, said in the summary) */
#define PRINTED_MAX 20     /* rows of each table in the summary */

struct entry {
	struct strmap_node node;
	struct tally t;
	char key[];
};

struct tallies {
	struct strmap jobs, pairs;
	struct entry **all_jobs, **all_pairs;
	size_t njobs, npairs, caps[2];
	bool full;
};

struct tallies *tallies_new(void)
{
	return xcalloc(1, sizeof(struct tallies));
}

static struct entry *entry_of(struct tallies *t, bool pair, const char *key)
{
	struct strmap *m = pair ? &t->pairs : &t->jobs;
	struct strmap_node *n = strmap_find(m, key);
	if (n)
		return container_of(n, struct entry, node);
	size_t *count = pair ? &t->npairs : &t->njobs;
	struct entry ***all = pair ? &t->all_pairs : &t->all_jobs;
	if (*count >= TALLIES_MAX) {
		t->full = true;
		return NULL;
	}
	size_t len = strlen(key) + 1;
	struct entry *e = xcalloc(1, sizeof(*e) + len);
	memcpy(e->key, key, len);
	strmap_insert(m, &e->node, e->key);
	if (*count == t->caps[pair]) {
		t->caps[pair] = t->caps[pair] ? t->caps[pair] * 2 : 64;
		*all = xrealloc(*all, t->caps[pair] * sizeof(**all));
	}
	(*all)[(*count)++] = e;
	return e;
}

static void add(struct tally *x, enum result r)
{
	switch (r) {
	case RESULT_DELIVERED: x->delivered++; break;
	case RESULT_BOUNCED: x->bounced++; break;
	case RESULT_EXPIRED: x->expired++; break;
	case RESULT_SUPPRESSED: x->suppressed++; break;
	case RESULT_COMPLAINED: x->complained++; break;
	case RESULT_UNSUBSCRIBED: x->unsubscribed++; break;
	default: break;
	}
}

const struct tally *tallies_count(struct tallies *t, const char *job, const char *source, const char *group,
                                  enum result r)
{
	if (r == RESULT_DEFERRED)
		return NULL;
	char key[400];
	snprintf(key, sizeof(key), "%.47s\x1f%.255s", source ? source : "", group ? group : "");
	struct entry *p = group && *group ? entry_of(t, true, key) : NULL; /* a pair it went toward */
	if (p)
		add(&p->t, r);
	struct entry *j = job ? entry_of(t, false, job) : NULL;
	if (j)
		add(&j->t, r);
	return j ? &j->t : NULL;
}

double tally_rate(uint64_t n, const struct tally *x)
{
	uint64_t sent = x->delivered + x->bounced;
	return sent ? (double)n / (double)sent : 0.0;
}

static int by_volume(const void *a, const void *b)
{
	const struct tally *x = &(*(struct entry *const *)a)->t, *y = &(*(struct entry *const *)b)->t;
	uint64_t vx = x->delivered + x->bounced, vy = y->delivered + y->bounced;
	return vx < vy ? 1 : vx > vy ? -1 : 0;
}

static void print_rows(FILE *out, const char *title, struct entry **all, size_t n, bool pair)
{
	if (!n)
		return;
	qsort(all, n, sizeof(*all), by_volume);
	fprintf(out, "  %s (bounce rate, complaint rate):\n", title);
	for (size_t i = 0; i < n && i < PRINTED_MAX; i++) {
		const struct tally *x = &all[i]->t;
		char name[440];
		const char *key = all[i]->key, *sep = pair ? strchr(key, '\x1f') : NULL;
		if (sep) { /* "source -> group" (a pair always has its group) */
			int sl = (int)(sep - key);
			snprintf(name, sizeof(name), "%.*s -> %.300s", sl ? sl : 9, sl ? key : "(unbound)", sep + 1);
		} else
			snprintf(name, sizeof(name), "%.400s", all[i]->key);
		fprintf(out, "    %-36s %llu delivered, %llu bounced (%.2f%%), %llu complaints (%.3f%%)", name,
		        (unsigned long long)x->delivered, (unsigned long long)x->bounced, 100 * tally_rate(x->bounced, x),
		        (unsigned long long)x->complained, 100 * tally_rate(x->complained, x));
		if (x->suppressed || x->unsubscribed)
			fprintf(out, ", %llu suppressed, %llu unsubscribed", (unsigned long long)x->suppressed,
			        (unsigned long long)x->unsubscribed);
		fputc('\n', out);
	}
	if (n > PRINTED_MAX)
		fprintf(out, "    ... %zu more\n", n - PRINTED_MAX);
}

void tallies_print(struct tallies *t, FILE *out)
{
	print_rows(out, "by job", t->all_jobs, t->njobs, false);
	print_rows(out, "by source IP and MX group", t->all_pairs, t->npairs, true);
	if (t->full)
		fprintf(out, "    (more than %d jobs or pairs: the rest were not counted)\n", TALLIES_MAX);
}

void tallies_free(struct tallies *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->njobs; i++)
		free(t->all_jobs[i]);
	for (size_t i = 0; i < t->npairs; i++)
		free(t->all_pairs[i]);
	free(t->all_jobs);
	free(t->all_pairs);
	strmap_free(&t->jobs);
	strmap_free(&t->pairs);
	free(t);
}
