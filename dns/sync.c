/* dns/sync.c - see sync.h. */
#define _GNU_SOURCE
#include "sync.h"
#include "../engine/lib/ring.h"
#include "../engine/lib/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OP_BASE 16

struct dns_sync {
	struct ring *ring;
	struct dns_resolver *r;
	int64_t deadline_ms;      /* monotonic; 0: none */
};

struct wait {
	bool done;
	struct dns_answer *out;
	char *err;
	size_t err_len;
};

static void keep(struct wait *w, const struct dns_answer *a, const char *err)
{
	dns_answer_copy(w->out, a);
	snprintf(w->err, w->err_len, "%s", err ? err : "");
	w->done = true;
}

static void on_answer(void *arg, const struct dns_answer *a, const char *err)
{
	keep(arg, a, err);
}

struct dns_sync *dns_sync_new(const struct dns_server *servers, unsigned nservers, int timeout_ms,
                              unsigned attempts)
{
	int err;
	struct ring *ring = ring_try_new(64, &err);
	if (!ring)
		return NULL;
	struct dns_sync *d = xcalloc(1, sizeof(*d));
	d->ring = ring;
	struct dns_resolver_config dc = { servers, nservers, timeout_ms, attempts, 100000 };
	d->r = dns_resolver_new(d->ring, OP_BASE, &dc);
	return d;
}

void dns_sync_free(struct dns_sync *d)
{
	if (!d)
		return;
	dns_resolver_free(d->r);
	ring_free(d->ring);
	free(d);
}

void dns_sync_deadline(struct dns_sync *d, int64_t deadline_ms)
{
	d->deadline_ms = deadline_ms;
}

void dns_sync_ask(struct dns_sync *d, const char *name, uint16_t type, struct dns_answer *out,
                  char *err, size_t err_len)
{
	struct wait w = { false, out, err, err_len };
	const char *e = NULL;
	if (d->deadline_ms && now_mono_ms() >= d->deadline_ms) {
		static const struct dns_answer late = { .status = DNS_TEMPFAIL };
		keep(&w, &late, "not asked: the time allowed for these checks ran out");
		return;
	}
	const struct dns_answer *a = dns_lookup(d->r, name, type, on_answer, &w, &e);
	if (a) {
		keep(&w, a, e);
		return;
	}
	while (!w.done) {
		struct ring_cqe cqes[16];
		unsigned n;
		ring_submit_wait(d->ring, 20);
		int64_t now = now_mono_ms();
		while ((n = ring_reap(d->ring, cqes, ARRAY_LEN(cqes))) > 0)
			for (unsigned i = 0; i < n; i++)
				dns_on_cqe(d->r, &cqes[i], now);
		dns_tick(d->r, now_mono_ms());
	}
}

void dns_sync_ask_cb(void *arg, const char *name, uint16_t type, struct dns_answer *out, char *err,
                     size_t err_len)
{
	dns_sync_ask(arg, name, type, out, err, err_len);
}
