/* shards/shard.c - one delivery thread: its io_uring loop, its inbox of
 * messages from the engine, its destinations (routes, and MX sites found
 * through its own DNS resolver) and connection pools, its retry queue, and
 * its outbox of outcome records. Per loop turn it touches only what
 * changed: schedule() visits the destinations that have something to do.
 * Shards share nothing; the SMTP conversation itself lives in
 * smtp_client.c. */
#define _GNU_SOURCE
#include "shard_internal.h"
#include "../engine/lib/rng.h"
#include "../engine/lib/alloc.h"
#include "../engine/lib/envelope.h"
#include "../engine/lib/retry_state.h"
#include "../dns/resolver.h"
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define OUTBOX_CAP 16384
#define ADAPT_IN_CAP 1024 /* engine -> shard adaptations waiting (rare: events) */
#define CQE_BATCH 256
#define STOP_GRACE_MS 2000
#define STOP_DRAIN_MS 1000 /* after the grace period, for cancelled operations to come back */
#define DEST_IDLE_MS 60000         /* a DNS destination unused this long goes */

static uint64_t pow2_at_least(uint64_t n)
{
	uint64_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* What a message is when it crosses into a shard: parsed, with pending
 * recipients, and no shard state left from before. */
#define MESSAGE_FRESH(m) ((m)->nrcpt > 0 && ((m)->npending > 0 || (m)->nsuppressed > 0) && \
                          (m)->npending <= (m)->nrcpt && \
                          (m)->legs_open == 0 && (m)->body_len >= 2 && !(m)->next)

/* ---- pairs and their owners ----
 * Every destination belongs to a (source IP, MX group) pair, and every
 * pair to exactly one shard: pair (source IP number i in the
 * configuration, group g) lives on shard (i + hash(g)) mod N. Its
 * throttle, connections and queue are there. A message is signed and
 * routed on the shard the engine gave it to (its origin); each of its
 * legs (one transaction) then goes to the shard that owns its pair,
 * through a ring of its own for that pair of shards, and comes back once
 * over (see struct leg). With several source IPs a provider's traffic
 * spreads over consecutive shards; with one IP it all goes through one
 * shard, whose limits then hold exactly however many shards run. */

static unsigned src_slots(const struct config *cfg)
{
	return cfg->nsources ? cfg->nsources : 1;
}

/* Routes are the first destinations: one per (route, source IP). */
static unsigned route_dests(const struct config *cfg)
{
	return cfg->nroutes * src_slots(cfg);
}

static uint32_t route_dest_index(const struct config *cfg, int route, int src)
{
	return (uint32_t)route * src_slots(cfg) + (src < 0 ? 0 : (uint32_t)src);
}

static const char *route_group(const struct route *r)
{
	return r->group ? r->group : r->label;
}

static uint32_t domain_hash(const char *d);
static void cross_send(struct shard *s, unsigned to, struct leg *l);
static void source_check(struct shard *s, struct message *m);

static uint16_t owner_of(unsigned nshards, int src, const char *group)
{
	return (uint16_t)(((uint32_t)(src < 0 ? 0 : src) + domain_hash(group)) % nshards);
}

static uint16_t pair_owner(const struct shard *s, int src, const char *group)
{
	return owner_of(s->npeers, src, group);
}

unsigned shard_pair_owner(const struct config *cfg, unsigned nshards, const char *source, const char *group)
{
	return owner_of(nshards, source && *source ? config_source_index(cfg, source) : -1, group);
}

/* ---- destination addresses ---- */

static void dest_clear_addrs(struct dest *d)
{
	for (unsigned i = 0; i < d->naddrs; i++)
		free(d->addrs[i].mx);
	free(d->addrs);
	d->addrs = NULL;
	d->naddrs = 0;
}

/* Frees what a destination owns (its site name leaves the site map). */
static void dest_free(struct shard *s, struct dest *d)
{
	if (d->site) {
		strmap_remove(&s->sites, &d->site->node);
		free(d->site->site);
		free(d->site);
		d->site = NULL;
	}
	dest_clear_addrs(d);
	free(d->group);
	d->group = NULL;
	free(d->source);
	free(d->helo);
	d->source = d->helo = NULL;
	if (d->thr)
		throttle_put(s, d->thr);
	d->thr = NULL;
	free(d->fail_why);
	d->fail_why = NULL;
	free(d->ready);
	d->ready = NULL;
	d->nready_refs = d->ready_cap = 0;
}

/* Settings of the MX plans, from the run configuration. */
static struct mx_config mx_config_of(const struct config *cfg)
{
	return (struct mx_config){ cfg->smtp_port, cfg->ipv6, cfg->mx_groups, cfg->nmx_groups, cfg->dns_cache_size };
}

/* A route's TLS policy: its domain's rule, else the default. */
static enum tls_policy route_tls_policy(const struct config *cfg, const struct route *r)
{
	return config_tls_policy(cfg, strcmp(r->domain, "*") ? r->domain : NULL, NULL);
}

static void dest_set_route(struct dest *d, const struct route *r)
{
	dest_clear_addrs(d);
	d->route = r;
	d->addrs = xcalloc(1, sizeof(*d->addrs));
	d->naddrs = 1;
	d->addrs[0].sa = r->addr;
	d->addrs[0].len = r->addr_len;
	d->addrs[0].mx = xstrdup(r->label);
	free(d->group);
	d->group = xstrdup(route_group(r));
}

/* The source IP d binds to, and its EHLO name, as cfg says (src: index
 * in cfg->sources, -1: unbound). */
static void dest_set_source(const struct config *cfg, struct dest *d, int src)
{
	free(d->source);
	free(d->helo);
	d->source = d->helo = NULL;
	d->source_len = 0;
	if (src < 0)
		return;
	const struct source_ip *ip = &cfg->sources[src];
	d->source = xstrdup(ip->text);
	d->source_sa = ip->addr;
	d->source_len = ip->addr_len;
	if (ip->helo)
		d->helo = xstrdup(ip->helo);
}

/* d's pair, its owner and, on the owner, its throttle (the connections d
 * has open move to the new one). Elsewhere d only gathers legs to cross. */
static void dest_bind_pair(struct shard *s, struct dest *d)
{
	int src = d->source ? config_source_index(s->cfg, d->source) : -1;
	d->owner = pair_owner(s, src, d->group);
	struct throttle *old = d->thr;
	d->thr = d->owner == s->index && !d->retired ? throttle_get(s, d->source, d->group) : NULL;
	if (old) {
		ASSERT(old->nconns >= d->nconns);
		old->nconns -= d->nconns;
		throttle_put(s, old);
	}
	if (d->thr)
		d->thr->nconns += d->nconns;
	d->max_conns = d->thr ? d->thr->lim.max_connections : 0;
}

/* The plan's addresses, in its order; dead marks of addresses that stay
 * are kept. */
static void dest_set_plan(struct dest *d, const struct mx_plan *p)
{
	struct dest_addr *a = xcalloc(p->naddr, sizeof(*a));
	for (unsigned i = 0; i < p->naddr; i++) {
		a[i].sa = p->addr[i].sa;
		a[i].len = p->addr[i].len;
		a[i].mx = xstrdup(p->addr[i].host);
		a[i].pref = p->addr[i].pref;
		for (unsigned j = 0; j < d->naddrs; j++)
			if (d->addrs[j].len == a[i].len && !memcmp(&d->addrs[j].sa, &a[i].sa, a[i].len))
				a[i].dead_until = d->addrs[j].dead_until;
	}
	dest_clear_addrs(d);
	d->addrs = a;
	d->naddrs = p->naddr;
	d->plan_serial = p->serial;
	if (!d->group || strcmp(d->group, p->group)) {
		free(d->group);
		d->group = xstrdup(p->group);
	}
}

struct shard *shard_new(unsigned index, const struct config *cfg, int engine_wake_fd)
{
	struct shard *s = xcalloc(1, sizeof(*s));
	s->index = index;
	s->cfg = cfg;
	s->engine_fd = engine_wake_fd;
	s->notify_val = 1;
	s->held.held_next = s->held.held_prev = &s->held;
	s->rng = 0x9e3779b97f4a7c15ull * (index + 1);
	/* Blocking on purpose: io_uring answers a read of an O_NONBLOCK eventfd
	 * with -EAGAIN at once instead of waiting for the engine's write. */
	s->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (s->wake_fd < 0)
		fatal("eventfd: %s", strerror(errno));
	spsc_init(&s->inbox, pow2_at_least(cfg->inflight_per_shard * 2u), sizeof(struct message *));
	spsc_init(&s->outbox, OUTBOX_CAP, sizeof(struct outcome));
	spsc_init(&s->adapt_in, ADAPT_IN_CAP, sizeof(struct adapt_cmd));
	pthread_mutex_init(&s->stats_mu, NULL);
	s->live.live_next = s->live.live_prev = &s->live;
	s->npeers = 1;
	s->ndests = route_dests(cfg);
	s->dests = xcalloc(s->ndests ? s->ndests : 1, sizeof(*s->dests));
	for (unsigned r = 0; r < cfg->nroutes; r++)
		for (unsigned k = 0; k < src_slots(cfg); k++) {
			struct dest *d = &s->dests[route_dest_index(cfg, (int)r, (int)k)];
			dest_set_route(d, &cfg->routes[r]);
			dest_set_source(cfg, d, cfg->nsources ? (int)k : -1);
			d->tls = route_tls_policy(cfg, &cfg->routes[r]);
		}
	return s; /* pairs are bound once the shards are linked (shard_setup) */
}

/* The shard's TLS client context for cfg (the system's CA certificates
 * only when a policy verifies: loading them costs). None: STARTTLS is
 * skipped where opportunistic, and fails where required. */
static void shard_tls_setup(struct shard *s, const struct config *cfg)
{
	tls_ctx_free(s->tls);
	s->tls = tls_client_ctx_new(cfg->tls_ca, config_tls_verifies(cfg), s->tls_ctx_error,
	                            sizeof(s->tls_ctx_error));
	if (!s->tls)
		warnx_("shard %u: no TLS: %s", s->index, s->tls_ctx_error);
}

void shard_tls_counters(const struct shard *s, uint64_t out[3])
{
	for (int i = 0; i < 3; i++)
		out[i] += s->tls_counters[i];
}

/* ---- what schedule() looks at ----
 * schedule() visits the destinations in s->work, not all of them: one is
 * put there (shard_dest_note) when legs are queued for it, when one of its
 * connections had an event while it has a queue (a connection closed or
 * got ready: it may open another), and, after a visit, when it still
 * wants connections and has room for them (a free slot, the cap's wait or
 * a probe may allow one later: looked at again each turn). A destination
 * without a queue needs nothing: its connections take work themselves
 * whenever they can start a transaction (smtp_client.c). */

static void index_push(uint32_t **a, unsigned *n, unsigned *cap, uint32_t v)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*a = xrealloc(*a, *cap * sizeof(**a));
	}
	(*a)[(*n)++] = v;
}

/* Destination di to be visited by the next schedule(); work: legs came. */
void shard_dest_note(struct shard *s, uint32_t di, bool work)
{
	ASSERT(di < s->ndests);
	struct dest *d = &s->dests[di];
	d->new_work |= work;
	if (d->listed)
		return;
	d->listed = true;
	index_push(&s->work, &s->nwork, &s->work_cap, di);
}

/* Queues l on destination di (at the front: the rest of a transaction). */
static void dest_enqueue(struct shard *s, uint32_t di, struct leg *l, bool front)
{
	ASSERT(l->dest == di && l->nr > 0);
	if (s->dests[di].owner != s->index && !l->parent) { /* a child stays (dest_visit) */
		cross_send(s, s->dests[di].owner, l);
		return;
	}
	if (front)
		dest_push_front(&s->dests[di], l);
	else
		dest_push(&s->dests[di], l);
	shard_dest_note(s, di, true);
}

/* ---- outcomes ---- */

void shard_outbox_put(struct shard *s, const struct outcome *o)
{
	s->unnotified++;
	if (s->nspill == 0 && spsc_push(&s->outbox, o))
		return;
	if (s->nspill == s->spill_cap) {
		s->spill_cap = s->spill_cap ? s->spill_cap * 2 : 256;
		s->spill = xrealloc(s->spill, s->spill_cap * sizeof(*s->spill));
	}
	s->spill[s->nspill++] = *o;
}

static bool outbox_flush(struct shard *s)
{
	size_t i = 0;
	while (i < s->nspill && spsc_push(&s->outbox, &s->spill[i]))
		i++;
	if (i) {
		memmove(s->spill, s->spill + i, (s->nspill - i) * sizeof(*s->spill));
		s->nspill -= i;
	}
	return i > 0;
}

void outcome_set_text(struct outcome *o, const char *text, size_t text_len, const char *mx,
                             const char *group)
{
	size_t mx_len = mx ? strlen(mx) + 1 : 0, group_len = group ? strlen(group) + 1 : 0;
	size_t resp_len = text ? text_len + 1 : 0;
	if (resp_len + mx_len + group_len == 0)
		return;
	char *p = xmalloc(resp_len + mx_len + group_len);
	if (text) {
		memcpy(p, text, text_len);
		p[text_len] = 0;
		o->response = p;
		o->response_len = (uint32_t)text_len;
		p += resp_len;
	}
	if (mx) {
		o->mx = memcpy(p, mx, mx_len);
		p += mx_len;
	}
	if (group)
		o->group = memcpy(p, group, group_len);
}

/* An outcome record for recipient rcpt of m; reads m, changes nothing
 * (it may run on a shard that does not own m: see struct leg). */
static void outcome_make(struct shard *s, struct outcome *out, const struct message *m, uint32_t rcpt,
                         enum result r, uint16_t code, const char *enhanced, const char *text,
                         size_t text_len, const struct conn *c, const struct leg *leg, int64_t start_ms)
{
	struct outcome o;
	memset(&o, 0, sizeof(o));
	o.kind = OUTCOME_RCPT;
	o.result = (uint8_t)r;
	o.code = code;
	o.rcpt = rcpt;
	o.attempt = m->attempt;
	o.ts_ms = now_real_ms();
	o.ms = start_ms ? (uint32_t)(s->now - start_ms) : 0;
	o.queue_ms = (uint32_t)(s->now - m->arrival_ms);
	o.msg = (struct message *)m;
	if (enhanced) /* as snprintf("%s") would: cut to fit, NUL-terminated */
		memcpy(o.enhanced, enhanced, strnlen(enhanced, sizeof(o.enhanced) - 1));
	/* without a connection (a leg deferred in its queue): its destination's
	 * group and source IP still say where it was going */
	const char *group = c ? s->dests[conn_dest(c)].group : leg ? s->dests[leg->dest].group : NULL;
	outcome_set_text(&o, text, text_len, c ? conn_mx(c) : NULL, group);
	if (!c && leg)
		snprintf(o.source, sizeof(o.source), "%s", leg->source);
	if (c && conn_tls(c))
		snprintf(o.tls, sizeof(o.tls), "%s", conn_tls(c));
	if (c) {
		snprintf(o.peer, sizeof(o.peer), "%s", conn_peer(c));
		snprintf(o.source, sizeof(o.source), "%s", conn_source(c));
	}
	*out = o;
}

/* On m's own shard: the recipient's state follows the outcome, which goes
 * to the engine. */
static void outcome_commit(struct shard *s, struct message *m, const struct outcome *o)
{
	enum result r = (enum result)o->result;
	m->deferred_now += r == RESULT_DEFERRED;
	if (r == RESULT_DELIVERED || r == RESULT_BOUNCED || r == RESULT_EXPIRED) {
		ASSERT(m->rcpt_state[o->rcpt] == RCPT_PENDING);
		m->rcpt_state[o->rcpt] = r == RESULT_DELIVERED ? RCPT_DELIVERED
		                       : r == RESULT_BOUNCED ? RCPT_BOUNCED : RCPT_EXPIRED;
		ASSERT(m->npending > 0);
		m->npending--;
	}
	shard_outbox_put(s, o);
}

static void emit_record(struct shard *s, struct message *m, uint32_t rcpt, enum result r,
                        uint16_t code, const char *enhanced, const char *text, size_t text_len,
                        const struct conn *c, int64_t start_ms)
{
	struct outcome o;
	outcome_make(s, &o, m, rcpt, r, code, enhanced, text, text_len, c, NULL, start_ms);
	outcome_commit(s, m, &o);
}

/* The same line for each recipient still pending: how many there were. */
static uint32_t emit_pending(struct shard *s, struct message *m, enum result r, uint16_t code, const char *enhanced,
                             const char *why)
{
	uint32_t n = 0;
	size_t len = strlen(why);
	for (uint32_t i = 0; i < m->nrcpt; i++)
		if (m->rcpt_state[i] == RCPT_PENDING) {
			emit_record(s, m, i, r, code, enhanced, why, len, NULL, 0);
			n++;
		}
	return n;
}

static void leg_out_push(struct leg *l, const struct outcome *o)
{
	if (l->nout == l->out_cap) {
		l->out_cap = l->out_cap ? l->out_cap * 2 : (l->nr < 4 ? 4 : l->nr);
		l->out = xrealloc(l->out, l->out_cap * sizeof(*l->out));
	}
	l->out[l->nout++] = *o;
}

void shard_emit(struct shard *s, struct leg *leg, uint32_t pos, enum result r,
                uint16_t code, const char *enhanced, const char *text, size_t text_len,
                const struct conn *c, int64_t start_ms)
{
	ASSERT(pos < leg->nr);
	if (atomic_load_explicit(&s->stop, memory_order_relaxed))
		return; /* stopping: the engine keeps the message in the spool */
	struct outcome o;
	outcome_make(s, &o, leg->msg, leg->ri[pos], r, code, enhanced, text, text_len, c, leg, start_ms);
	if (leg->origin == s->index)
		outcome_commit(s, leg->msg, &o);
	else
		leg_out_push(leg, &o); /* applied when the leg is home */
}

static void message_lets_go(struct shard *s, struct message *m, enum outcome_kind kind);

static void message_done(struct shard *s, struct message *m)
{
	message_lets_go(s, m, OUTCOME_MESSAGE_DONE);
}

uint64_t shard_random(struct shard *s)
{
	return rng_next(&s->rng);
}

/* base doubled n times, at most max: the waits of retries and back-off. */
static int64_t doubled_ms(int64_t base, uint32_t n, int64_t max)
{
	for (uint32_t i = 0; i < n && base < max; i++)
		base *= 2;
	return base < max ? base : max;
}

/* The wait before attempt n+1: retry-interval doubled per attempt, capped
 * at retry-max, with +-10% jitter so deferred mail does not come back in
 * one wave. */
static int64_t retry_wait_ms(struct shard *s, uint32_t attempts)
{
	int64_t w = doubled_ms(s->cfg->retry_interval_ms, attempts ? attempts - 1 : 0, s->cfg->retry_max_ms);
	int64_t j = w / 10;
	return j > 0 ? w - j + (int64_t)(shard_random(s) % (uint64_t)(2 * j + 1)) : w;
}

/* The retry queue is kept in due order; most inserts land at the tail. */
static void retry_insert(struct shard *s, struct message *m, int64_t due)
{
	m->next_attempt_ms = due;
	struct message **pp = &s->retry_head;
	if (s->retry_tail && s->retry_tail->next_attempt_ms <= due)
		pp = &s->retry_tail->next;
	else
		while (*pp && (*pp)->next_attempt_ms <= due)
			pp = &(*pp)->next;
	m->next = *pp;
	*pp = m;
	if (!m->next)
		s->retry_tail = m;
}

/* m waits for its next attempt in the spool (OUTCOME_MESSAGE_WAITS): a
 * file (a job's row is rendered from its job, which has no place for it)
 * whose wait is long enough, when no DSN needs what memory holds of its
 * earlier failures. */
static bool waits_in_spool(const struct shard *s, const struct message *m, int64_t wait)
{
	const struct config *cfg = s->cfg;
	return !m->row && !cfg->dsn_spool && cfg->wait_in_spool_ms > 0 && wait >= cfg->wait_in_spool_ms;
}

static void message_lets_go(struct shard *s, struct message *m, enum outcome_kind kind)
{
	struct outcome o;
	memset(&o, 0, sizeof(o));
	o.kind = (uint8_t)kind;
	o.msg = m;
	m->held_prev->held_next = m->held_next;
	m->held_next->held_prev = m->held_prev;
	m->held_prev = m->held_next = NULL;
	shard_outbox_put(s, &o);
}

/* All transactions of this attempt ended: final, expired or retry later. */
static void message_attempt_done(struct shard *s, struct message *m)
{
	if (m->npending == 0) {
		message_done(s, m);
		return;
	}
	int64_t wall = now_real_ms();
	if (wall - m->first_wall_ms >= (int64_t)s->cfg->bounce_after_s * 1000) {
		emit_pending(s, m, RESULT_EXPIRED, 0, "4.4.7", "deferred for longer than bounce-after");
		message_done(s, m);
		return;
	}
	int64_t wait = retry_wait_ms(s, m->attempt);
	if (m->not_before_ms > s->now) { /* adaptation's wait: exact, unless others failed too */
		int64_t nb = m->not_before_ms - s->now;
		wait = m->deferred_now > m->waited_now && wait > nb ? wait : nb;
	}
	uint8_t waits = m->waits;
	m->not_before_ms = 0;
	m->deferred_now = m->waited_now = 0;
	m->waits = 0;
	/* A message the suppression list could not be checked for is read
	 * again from its file (and checked again) for its next attempt; a job
	 * row, or one whose DSN needs memory, keeps waiting here, never sent
	 * unchecked. */
	bool in_spool = waits_in_spool(s, m, wait) || (m->suppress_error && !m->row && !s->cfg->dsn_spool);
	m->held_wait = (waits & WAIT_HELD) != 0; /* a resume brings it forward */
	if (!in_spool)
		retry_insert(s, m, s->now + wait);
	/* Saved (after this attempt's lines are logged) so that a restart
	 * neither retries early nor resends to recipients already final. */
	struct outcome o;
	memset(&o, 0, sizeof(o));
	o.kind = OUTCOME_RETRY_STATE;
	o.msg = m;
	o.response = retry_state_format(m, wall + wait, waits);
	if (in_spool) { /* the engine has it read again when due, once this is saved */
		o.until_ms = wall + wait;
		o.code = waits;
	}
	m->has_state = true;
	shard_outbox_put(s, &o);
	if (in_spool) {
		m->due_wall_ms = wall + wait;
		message_lets_go(s, m, OUTCOME_MESSAGE_WAITS);
	}
}

/* ---- a leg's life ----
 * A leg is over when its transaction ended (done), no send of its content
 * is in flight (holds) and the rest of it after a 452 is over (children;
 * a child gives its outcomes to its parent). Then, on its origin, the
 * message's count of open legs drops; elsewhere it goes home with its
 * outcomes. Every leg a shard holds is on its live list (queued, in a
 * transaction, waiting for DNS), so that shard_free finds them all. */

static void live_link(struct shard *s, struct leg *l)
{
	l->live_next = s->live.live_next;
	l->live_prev = &s->live;
	s->live.live_next->live_prev = l;
	s->live.live_next = l;
}

static void live_unlink(struct leg *l)
{
	l->live_prev->live_next = l->live_next;
	l->live_next->live_prev = l->live_prev;
	l->live_prev = l->live_next = NULL;
}

static void leg_free(struct leg *l)
{
	free(l->full);
	for (uint32_t i = 0; i < l->nout; i++)
		outcome_free_text(&l->out[i]);
	free(l->out);
	free(l); /* ri and rt with it */
}

static void cross_send(struct shard *s, unsigned to, struct leg *l);
static void leg_send_back(struct shard *s, struct leg *l, const char *why);

static void leg_try_finish(struct shard *s, struct leg *l)
{
	if (!l->done || l->holds || l->children)
		return;
	struct message *m = l->msg;
	if (atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		live_unlink(l);
		leg_free(l); /* stopping: the messages stay in the spool */
		return;
	}
	struct leg *parent = l->parent;
	if (!parent && l->origin != s->index) {
		/* Counted as open on its origin until its outcomes are there
		 * (shard_idle: SIGTERM waits for them to be logged). */
		atomic_fetch_add_explicit(&s->peers[l->origin]->txns_open, 1, memory_order_relaxed);
		l->home = true;
		cross_send(s, l->origin, l); /* off the live list there */
		return;
	}
	live_unlink(l);
	if (parent) {
		for (uint32_t i = 0; i < l->nout; i++)
			leg_out_push(parent, &l->out[i]);
		l->nout = 0;
		if (l->not_before > parent->not_before)
			parent->not_before = l->not_before;
		parent->waited += l->waited;
		parent->waits |= l->waits;
		leg_free(l);
		ASSERT(parent->children > 0);
		parent->children--;
		leg_try_finish(s, parent);
	} else {
		if (l->not_before > m->not_before_ms) /* home: adaptation's wait reaches m */
			m->not_before_ms = l->not_before;
		m->waited_now += l->waited;
		m->waits |= l->waits;
		leg_free(l);
		ASSERT(m->legs_open > 0);
		if (--m->legs_open == 0)
			message_attempt_done(s, m);
	}
}

void shard_leg_done(struct shard *s, struct leg *leg)
{
	ASSERT(!leg->done);
	leg->done = true;
	leg_try_finish(s, leg);
}

void shard_leg_hold(struct leg *leg)
{
	leg->holds++;
}

void shard_leg_release(struct shard *s, struct leg *leg)
{
	ASSERT(leg->holds > 0);
	leg->holds--;
	leg_try_finish(s, leg);
}

static struct leg *leg_new(struct shard *s, struct message *m, uint32_t dest, uint32_t cap);

void shard_leg_requeue_next(struct shard *s, struct leg *leg)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < leg->nr; i++)
		n += leg->rt[i] == RT_NEXT_TXN;
	if (n == 0)
		return;
	struct leg *l = leg_new(s, leg->msg, leg->dest, n); /* its source: the destination's */
	l->origin = leg->origin;
	for (uint32_t i = 0; i < leg->nr; i++)
		if (leg->rt[i] == RT_NEXT_TXN) {
			l->ri[l->nr++] = leg->ri[i];
			leg->rt[i] = RT_RESOLVED;
		}
	l->parent = leg;
	leg->children++;
	dest_enqueue(s, leg->dest, l, true);
}

/* ---- destinations ---- */

/* ---- back-off (Postfix's dead destination, with a probe) ----
 * A connection that fails before completing a transaction (refused,
 * 4xx/5xx or garbage greeting, failed EHLO, timeout, dropped) adds to the
 * destination's streak; one completed transaction clears it. From
 * cfg->dest_failures failures in a row (and at least one per address, so
 * every MX host is tried) the destination is suspended for
 * dest-backoff, doubled per further failure up to dest-backoff-max: its
 * queue, and whatever is routed to it meanwhile, is deferred with the
 * last failure's text (the messages get a retry state). While a streak
 * runs, and before any connection has got ready, one connection at a
 * time is set up: a refusing server never sees a burst. A 421 anywhere
 * makes the connection count as failed. A new connection refused while
 * others to the destination work is a concurrency limit, not a failure:
 * the destination holds at the connections that work (dest_conn_capped). */

#define CAP_WAIT_MIN_MS 1000
#define CAP_WAIT_MAX_MS 300000

void dest_conn_ready(struct dest *d)
{
	d->proven = true;
	if (d->conn_cap && d->nready >= d->conn_cap) /* the extra one works */
		d->cap_wait_ms = CAP_WAIT_MIN_MS;
	if (d->conn_cap >= d->max_conns) {
		d->conn_cap = 0;
		d->cap_wait_ms = 0;
	}
}

void dest_txn_done(struct dest *d)
{
	d->fail_streak = 0;
	d->suspended_until = 0;
}

/* A new connection was refused while others to d work: not a failure of
 * d, a limit on how many it takes from us. d holds at the connections
 * that work and tries one more after cap_wait_ms: doubled by each such
 * refusal (a hard cap is probed ever more rarely), back to the minimum
 * when the extra connection works (a passing refusal costs little). */
void dest_conn_capped(struct shard *s, struct dest *d)
{
	d->conn_cap = d->nready > 0 ? d->nready : 1;
	d->conn_cap_since = s->now;
	d->cap_wait_ms = d->cap_wait_ms ? d->cap_wait_ms * 2 : CAP_WAIT_MIN_MS;
	if (d->cap_wait_ms > CAP_WAIT_MAX_MS)
		d->cap_wait_ms = CAP_WAIT_MAX_MS;
}

/* At the cap, and not yet time to try one more (trying raises it). */
static bool dest_capped(const struct shard *s, struct dest *d)
{
	if (!d->conn_cap || d->nconns < d->conn_cap)
		return false;
	if (s->now - d->conn_cap_since < d->cap_wait_ms)
		return true;
	d->conn_cap++;
	d->conn_cap_since = s->now;
	return false;
}

static bool dest_suspended(const struct shard *s, const struct dest *d)
{
	return d->suspended_until > s->now;
}

static bool dest_may_open(const struct shard *s, struct dest *d)
{
	if (d->nconns >= d->max_conns) /* schedule() skips suspended ones */
		return false;
	if (dest_capped(s, d))
		return false;                     /* the server caps us */
	if (d->fail_streak > 0 || !d->proven)
		return d->nconns == d->nready;    /* probing: one in setup at a time */
	return true;
}

/* The queue of a suspended destination waits for the next attempt. */
static void dest_defer_suspended(struct shard *s, struct dest *d)
{
	bool temp = d->fail_code >= 400 && d->fail_code < 500;
	char why[SMTP_REPLY_TEXT_MAX + 160];
	snprintf(why, sizeof(why), "delivery suspended for %lld s after %u failed connections; last: %s",
	         (long long)((d->suspended_until - s->now + 999) / 1000), d->fail_streak,
	         d->fail_why ? d->fail_why : "?");
	dest_settle_queue(s, d, RESULT_DEFERRED, temp ? d->fail_code : 451,
	                  temp && d->fail_enhanced[0] ? d->fail_enhanced : "4.4.2", why, NULL);
}

void dest_conn_failed(struct shard *s, struct dest *d, uint16_t code, const char *enhanced,
                      const char *why)
{
	const struct config *cfg = s->cfg;
	d->fail_streak++;
	d->proven = false;
	d->fail_code = code;
	snprintf(d->fail_enhanced, sizeof(d->fail_enhanced), "%s", enhanced ? enhanced : "");
	free(d->fail_why);
	d->fail_why = xstrdup(why);
	uint32_t limit = cfg->dest_failures > d->naddrs ? cfg->dest_failures : d->naddrs;
	if (d->fail_streak < limit)
		return;
	int64_t wait = doubled_ms(cfg->dest_backoff_ms, d->fail_streak - limit, cfg->dest_backoff_max_ms);
	d->suspended_until = s->now + wait; /* said in the deferrals' text, in the log */
	dest_defer_suspended(s, d);
}

/* "2026-12-02T03:18:04Z": when until (the shard's clock) is on the wall clock. */
static void until_text(const struct shard *s, int64_t until, char *out, size_t len)
{
	struct buf b = { 0 };
	buf_add_utc(&b, "%Y-%m-%dT%H:%M:%SZ", now_real_ms() + (until - s->now));
	snprintf(out, len, "%.*s", (int)b.len, b.p);
	buf_free(&b);
}

/* The queue of a pair suspended for long waits in the spool, not here:
 * deferred until the suspension ends (not counted as a failure). */
static void dest_wait_suspended(struct shard *s, struct dest *d)
{
	char why[200], at[40];
	const struct throttle *t = d->thr;
	until_text(s, t->suspended_until, at, sizeof(at));
	snprintf(why, sizeof(why), "%s toward %s is suspended until %s (rule %s)",
	         t->source[0] ? t->source : "sending", t->group, at, t->suspended_by);
	struct leg *l;
	while ((l = dest_pop(d)))
		leg_wait(s, l, t->suspended_until, WAIT_HELD, why);
}

/* Room for cap recipients: the leg, ri[] and rt[] in one block (ri[]
 * starts at a multiple of 8 bytes: sizeof(struct leg) is one). */
static struct leg *leg_new(struct shard *s, struct message *m, uint32_t dest, uint32_t cap)
{
	_Static_assert(sizeof(struct leg) % _Alignof(uint32_t) == 0, "ri[] after the leg is aligned");
	struct leg *l = xmalloc(sizeof(*l) + (size_t)cap * (sizeof(*l->ri) + sizeof(*l->rt)));
	*l = (struct leg){ .msg = m, .dest = dest, .origin = (uint16_t)s->index };
	live_link(s, l);
	if (s->dests[dest].source)
		snprintf(l->source, sizeof(l->source), "%s", s->dests[dest].source);
	l->ri = (uint32_t *)(l + 1);
	l->rt = (uint8_t *)(l->ri + cap);
	memset(l->rt, RT_UNKNOWN, cap);
	return l;
}

/* Room in the per-destination scratch of queue_legs for every destination
 * (new entries zero, as all entries are between calls). */
static void leg_scratch_grow(struct shard *s)
{
	if (s->leg_scratch_cap >= s->ndests)
		return;
	unsigned cap = s->ndests * 2;
	s->open_leg = xrealloc(s->open_leg, cap * sizeof(*s->open_leg));
	s->rcpts_left = xrealloc(s->rcpts_left, cap * sizeof(*s->rcpts_left));
	memset(s->open_leg + s->leg_scratch_cap, 0, (cap - s->leg_scratch_cap) * sizeof(*s->open_leg));
	memset(s->rcpts_left + s->leg_scratch_cap, 0,
	       (cap - s->leg_scratch_cap) * sizeof(*s->rcpts_left));
	s->leg_scratch_cap = cap;
}

/* Queues the recipients ri[k] whose dest[k] >= 0 as transactions of at
 * most max_rcpt_per_txn recipients per destination, in their order (m->
 * legs_open counts each). Linear: one pass counts each destination's
 * recipients, one fills its open leg (s->open_leg, by destination),
 * queued when full or when that destination's last recipient is in. */
static void queue_legs(struct shard *s, struct message *m, const uint32_t *ri, const int32_t *dest,
                       uint32_t n)
{
	uint32_t max = s->cfg->max_rcpt_per_txn;
	leg_scratch_grow(s);
	for (uint32_t k = 0; k < n; k++)
		if (dest[k] >= 0)
			s->rcpts_left[dest[k]]++;
	for (uint32_t k = 0; k < n; k++) {
		if (dest[k] < 0)
			continue;
		uint32_t r = (uint32_t)dest[k];
		ASSERT(r < s->ndests && s->rcpts_left[r] > 0);
		struct leg *l = s->open_leg[r];
		if (!l)
			l = s->open_leg[r] = leg_new(s, m, r, max < s->rcpts_left[r] ? max : s->rcpts_left[r]);
		l->ri[l->nr++] = ri[k];
		if (--s->rcpts_left[r] == 0 || l->nr == max) {
			m->legs_open++;
			dest_enqueue(s, r, l, false);
			s->open_leg[r] = NULL;
		}
	}
}

/* ---- destinations found in DNS ---- */

static uint32_t dest_slot(struct shard *s)
{
	for (unsigned i = route_dests(s->cfg); i < s->ndests; i++)
		if (s->dests[i].unused)
			return i;
	s->dests = xrealloc(s->dests, (s->ndests + 1) * sizeof(*s->dests));
	return s->ndests++;
}

/* The destination for an MX plan's site, made on first use. Recipients
 * whose domain has a TLS rule of its own get a destination of their own
 * for the site (its key names the policy), so that one connection never
 * carries mail of two policies. */
static uint32_t dest_for_plan(struct shard *s, const struct mx_plan *p, const char *domain, int src)
{
	enum tls_policy pol = config_tls_policy(s->cfg, NULL, p->group);
	enum tls_policy dpol = config_tls_policy(s->cfg, domain, p->group);
	struct buf keyed = s->key_scratch; /* as long as the site is: never cut */
	keyed.len = 0;
	const char *key = p->site;
	if (dpol != pol || src >= 0) {
		buf_adds(&keyed, p->site);
		if (dpol != pol) {
			buf_adds(&keyed, "\ntls=");
			buf_adds(&keyed, tls_policy_name(dpol));
		}
		if (src >= 0) {
			buf_adds(&keyed, "\nsrc=");
			buf_adds(&keyed, s->cfg->sources[src].text);
		}
		buf_add(&keyed, "", 1);
		key = keyed.p;
	}
	struct strmap_node *node = strmap_find(&s->sites, key);
	uint32_t di;
	if (node) {
		di = container_of(node, struct site_ref, node)->dest;
	} else {
		di = dest_slot(s);
		struct dest *d = &s->dests[di];
		memset(d, 0, sizeof(*d)); /* a new slot, or one released */
		dest_set_source(s->cfg, d, src);
		d->tls = dpol;
		d->tls_by_domain = dpol != pol;
		d->site = xcalloc(1, sizeof(*d->site));
		d->site->site = xstrdup(key);
		d->site->dest = di;
		strmap_insert(&s->sites, &d->site->node, d->site->site);
	}
	struct dest *d = &s->dests[di];
	if (d->plan_serial != p->serial) {
		dest_set_plan(d, p);
		dest_bind_pair(s, d); /* the group may have changed */
	}
	d->used_ms = s->now;
	s->key_scratch = keyed; /* kept for the next call */
	return di;
}

static void dest_release(struct shard *s, struct dest *d)
{
	dest_free(s, d);
	memset(d, 0, sizeof(*d));
	d->unused = true;
}

/* DNS destinations without work, connections or use for a while go. */
static void dest_gc(struct shard *s)
{
	if (s->now < s->next_gc)
		return;
	s->next_gc = s->now + DEST_IDLE_MS / 4;
	throttles_refresh(s, true);
	adapt_gc(s);
	for (unsigned i = route_dests(s->cfg); i < s->ndests; i++) {
		struct dest *d = &s->dests[i];
		if (d->site && !d->qlen && !d->nconns && s->now - d->used_ms > DEST_IDLE_MS &&
		    !d->fail_streak && !dest_suspended(s, d)) /* keep what back-off learnt */
			dest_release(s, d);
	}
}

/* The source IP for recipient rcpt of m toward group: m->source, or
 * another of its pool when m->source's wave or warm-up day is full there;
 * -1 (the recipient deferred here, m waits until one frees up) when none
 * of them has room. */
static int recipient_source(struct shard *s, struct message *m, uint32_t rcpt, const char *group, int *src)
{
	int64_t until = 0;
	*src = adapt_source_for(s, m, group, &until);
	if (*src != ADAPT_NO_ROOM)
		return 0;
	char why[300], at[40];
	until_text(s, until, at, sizeof(at));
	snprintf(why, sizeof(why), "%s toward %s is full for every IP of its pool, until %s",
	         m->job && config_wave_for(s->cfg, m->job) ? "this job's wave" : "the warm-up day", group, at);
	emit_record(s, m, rcpt, RESULT_DEFERRED, 451, "4.7.0", why, strlen(why), NULL, 0);
	if (until > m->not_before_ms)
		m->not_before_ms = until;
	m->waited_now++;
	m->waits |= WAIT_BUDGET;
	return -1;
}

/* A recipient's destination from its domain's plan, or -1 when the plan
 * settles it (bounce or defer, logged here). */
static int32_t dest_of_plan(struct shard *s, struct message *m, uint32_t rcpt, const struct mx_plan *p)
{
	int src;
	if (p->kind == MX_DELIVER)
		return recipient_source(s, m, rcpt, p->group, &src) < 0
		       ? -1 : (int32_t)dest_for_plan(s, p, address_domain(m->rcpt[rcpt]), src);
	emit_record(s, m, rcpt, p->kind == MX_BOUNCE ? RESULT_BOUNCED : RESULT_DEFERRED, p->code,
	            p->enhanced, p->why, strlen(p->why), NULL, 0);
	return -1;
}

/* Recipients of one domain waiting for its MX plan; holds one count of
 * the message's legs_open. */
struct dns_wait {
	struct shard *s;
	struct message *m;
	uint32_t n;
	uint32_t ri[];
};

static void on_plan(void *arg, const struct mx_plan *p)
{
	struct dns_wait *w = arg;
	struct shard *s = w->s;
	struct message *m = w->m;
	if (!p || atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		free(w); /* stopping: the message stays in the spool */
		return;
	}
	int32_t *dest = xmalloc(w->n * sizeof(*dest)); /* not s->route_dest: may run inside route_recipients */
	source_check(s, m);
	for (uint32_t i = 0; i < w->n; i++)
		dest[i] = dest_of_plan(s, m, w->ri[i], p);
	queue_legs(s, m, w->ri, dest, w->n);
	free(dest);
	free(w);
	if (--m->legs_open == 0)
		message_attempt_done(s, m);
}

/* ASCII case ignored, as strcasecmp compares. */
static uint32_t domain_hash(const char *d)
{
	uint32_t h = 2166136261u;
	for (; *d; d++) {
		unsigned char c = (unsigned char)*d;
		h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32 : c)) * 16777619u;
	}
	return h;
}

/* The recipients of m at positions k with dest[k] == WAITING, grouped by
 * domain (ASCII case ignored): one struct dns_wait each, in the order the
 * domains first appear, each holding its recipients in their order and
 * one count of m->legs_open; then each domain's plan is asked for.
 * Linear: a hash table from domain to group. */
#define WAITING (-2)
static void wait_for_plans(struct shard *s, struct message *m, const uint32_t *idx, const int32_t *dest,
                           uint32_t n, uint32_t nwait)
{
	uint32_t cap = (uint32_t)pow2_at_least(2 * (uint64_t)nwait);
	uint32_t *table = xcalloc(cap, sizeof(*table)); /* group + 1, 0: empty */
	uint32_t *group = xmalloc(n * sizeof(*group));  /* by position, for the waiting */
	uint32_t *first = xmalloc(nwait * sizeof(*first)), *count = xcalloc(nwait, sizeof(*count));
	uint32_t ngroups = 0;
	for (uint32_t k = 0; k < n; k++) {
		if (dest[k] != WAITING)
			continue;
		const char *domain = address_domain(m->rcpt[idx[k]]);
		uint32_t h = domain_hash(domain) & (cap - 1);
		while (table[h] &&
		       strcasecmp(address_domain(m->rcpt[idx[first[table[h] - 1]]]), domain) != 0)
			h = (h + 1) & (cap - 1);
		if (!table[h]) {
			first[ngroups] = k;
			table[h] = ++ngroups;
		}
		group[k] = table[h] - 1;
		count[group[k]]++;
	}
	struct dns_wait **w = xmalloc(ngroups * sizeof(*w));
	for (uint32_t g = 0; g < ngroups; g++) {
		w[g] = xmalloc(sizeof(*w[g]) + count[g] * sizeof(w[g]->ri[0]));
		*w[g] = (struct dns_wait){ .s = s, .m = m };
	}
	for (uint32_t k = 0; k < n; k++)
		if (dest[k] == WAITING)
			w[group[k]]->ri[w[group[k]]->n++] = idx[k];
	for (uint32_t g = 0; g < ngroups; g++) {
		ASSERT(w[g]->n == count[g]);
		m->legs_open++;
		mx_lookup(s->mx, address_domain(m->rcpt[idx[first[g]]]), on_plan, w[g]); /* may answer at once */
	}
	free(w);
	free(table);
	free(group);
	free(first);
	free(count);
}

/* Queues recipients idx[0..n) of m: a route when one matches the domain,
 * else the domain's MX plan; recipients whose plan is not known yet wait
 * for it, grouped by domain. Not reentrant (s->route_dest is scratch). */
static void route_recipients(struct shard *s, struct message *m, const uint32_t *idx, uint32_t n)
{
	const struct config *cfg = s->cfg;
	ASSERT(!s->routing);
	s->routing = true;
	if (s->route_dest_cap < n) {
		s->route_dest_cap = n;
		s->route_dest = xrealloc(s->route_dest, n * sizeof(*s->route_dest));
	}
	int32_t *dest = s->route_dest;
	uint32_t nwait = 0;
	source_check(s, m);
	for (uint32_t k = 0; k < n; k++) {
		const char *domain = address_domain(m->rcpt[idx[k]]);
		int r = config_route_for(cfg, domain), src;
		if (r >= 0) {
			dest[k] = recipient_source(s, m, idx[k], route_group(&cfg->routes[r]), &src) < 0
			          ? -1 : (int32_t)route_dest_index(cfg, r, src);
			continue;
		}
		const struct mx_plan *p = mx_lookup(s->mx, domain, NULL, NULL);
		dest[k] = p ? dest_of_plan(s, m, idx[k], p) : WAITING;
		nwait += dest[k] == WAITING;
	}
	if (nwait)
		wait_for_plans(s, m, idx, dest, n, nwait);
	queue_legs(s, m, idx, dest, n); /* the waiting ones are < 0: left out */
	s->routing = false;
}
#undef WAITING

/* Signs m once in this process (on its first attempt here): a message
 * whose signing fails is deferred with the reason, never sent unsigned. */
static bool sign(struct shard *s, struct message *m)
{
	if (m->dkim_done || !s->signer)
		return true;
	char why[512];
	if (dkim_sign_message(s->signer, m, why, sizeof(why)) == DKIM_SIGN_FAILED) {
		m->attempt++;
		emit_pending(s, m, RESULT_DEFERRED, 451, "4.3.0", why);
		message_attempt_done(s, m);
		return false;
	}
	m->dkim_done = true;
	return true;
}

/* ---- source IPs ----
 * A message goes out of its pool (config_pool_for: X-Pool, else its job's
 * or sender domain's, else the default), through one of the pool's IPs
 * picked by smooth weighted round robin (nginx's: each pick adds every
 * member's weight to its counter, takes the largest and subtracts the
 * total), per shard: over any run of picks each IP gets its share within
 * one message. The pick holds for the whole attempt. */

static unsigned pool_offset(const struct config *cfg, unsigned pool)
{
	unsigned off = 0;
	for (unsigned i = 0; i < pool; i++)
		off += cfg->pools[i].nmembers;
	return off;
}

static int pick_source(struct shard *s, unsigned pool)
{
	const struct config *cfg = s->cfg;
	unsigned need = pool_offset(cfg, cfg->npools);
	if (s->nswrr != need) { /* first use, or a reload changed the pools */
		free(s->swrr);
		s->swrr = xcalloc(need ? need : 1, sizeof(*s->swrr));
		s->nswrr = need;
	}
	const struct pool *p = &cfg->pools[pool];
	int32_t *cur = s->swrr + pool_offset(cfg, pool);
	int32_t total = 0;
	unsigned best = 0;
	for (unsigned i = 0; i < p->nmembers; i++) {
		cur[i] += (int32_t)p->members[i].weight;
		total += (int32_t)p->members[i].weight;
		if (cur[i] > cur[best])
			best = i;
	}
	cur[best] -= total;
	return (int)p->members[best].source;
}

/* m's pool (config_pool_for) and m->source, one of its IPs (-1: no pool,
 * or none known: unbound). */
static int pool_pick(struct shard *s, struct message *m)
{
	int pool = config_pool_for(s->cfg, m->pool, m->job, m->sender);
	m->source = pool >= 0 ? pick_source(s, (unsigned)pool) : -1;
	return pool;
}

/* m->source for this attempt; false (m deferred, logged) when its X-Pool
 * names no pool: a clear error for the producer, and a reload that adds
 * the pool lets it go; never another pool silently. */
static bool choose_source(struct shard *s, struct message *m)
{
	if (pool_pick(s, m) == CONFIG_UNKNOWN_POOL) {
		char why[300];
		snprintf(why, sizeof(why), "X-Pool \"%.200s\" names no pool of the configuration", m->pool);
		emit_pending(s, m, RESULT_DEFERRED, 451, "4.3.5", why);
		return false;
	}
	return true;
}

/* A source index from before a reload may name another IP now: pick again
 * (its pool left: unbound this once). */
static void source_check(struct shard *s, struct message *m)
{
	if (m->source >= (int32_t)s->cfg->nsources)
		pool_pick(s, m);
}

/* The operator paused or bounced m's job (hold): this attempt defers
 * its pending recipients until resumed, or bounces them. */
static void job_held(struct shard *s, struct message *m, const struct adapt_ban *hold)
{
	char why[200];
	bool bounce = hold->kind == ADAPT_CMD_BOUNCE;
	snprintf(why, sizeof(why), bounce ? "job %s was bounced by the operator (sluice ctl bounce)"
	                                  : "job %s is paused by the operator (sluice ctl pause): it waits until resumed",
	         m->job);
	m->not_before_ms = hold->until; /* not an attempt: nothing was tried */
	m->deferred_now = m->waited_now = 0;
	m->waits = WAIT_HELD;
	m->waited_now = emit_pending(s, m, bounce ? RESULT_BOUNCED : RESULT_DEFERRED, bounce ? 550 : 451,
	                             bounce ? "5.0.0" : "4.7.0", why);
	message_attempt_done(s, m);
}

/* The tracking header of this attempt (its source IP is the attempt's;
 * dkim/track.h): a bounce or complaint that comes back names the message. */
static void track_header(struct shard *s, struct message *m)
{
	const char *source = m->source >= 0 ? s->cfg->sources[m->source].text : "";
	char *v = track_make(s->cfg->track_secret, s->cfg->track_secret_len, m->id, m->nrcpt == 1 ? m->rcpt[0] : "",
	                     source, m->job);
	struct buf b = { 0 };
	buf_printf(&b, TRACK_HEADER ": %s\r\n", v);
	free(v);
	free(m->track_hdr);
	m->track_hdr = b.p;
	m->track_hdr_len = b.len;
}

/* Starts one delivery attempt for the pending recipients. */
static void dispatch(struct shard *s, struct message *m)
{
	if (m->suppress_error) { /* the spool worker could not read the list: nothing goes before it can */
		m->attempt++;
		emit_pending(s, m, RESULT_DEFERRED, 451, "4.3.0", m->suppress_error);
		message_attempt_done(s, m);
		return;
	}
	const struct adapt_ban *hold = s->job_holds && m->job ? adapt_job_hold(s, m) : NULL;
	if (hold) {
		job_held(s, m, hold);
		return;
	}
	if (!sign(s, m))
		return;
	m->attempt++;
	m->not_before_ms = 0; /* this attempt's (see message_attempt_done) */
	m->deferred_now = m->waited_now = 0;
	m->waits = 0;
	if (!choose_source(s, m)) {
		message_attempt_done(s, m);
		return;
	}
	if (s->cfg->track_secret)
		track_header(s, m);
	ASSERT(m->legs_open == 0); /* the last attempt, and its sends, are over */
	m->legs_open = 1; /* held until every leg is queued */
	if (s->pending_cap < m->nrcpt) {
		s->pending_cap = m->nrcpt;
		s->pending_idx = xrealloc(s->pending_idx, m->nrcpt * sizeof(*s->pending_idx));
	}
	uint32_t *idx = s->pending_idx, n = 0;
	for (uint32_t i = 0; i < m->nrcpt; i++)
		if (m->rcpt_state[i] == RCPT_PENDING)
			idx[n++] = i;
	route_recipients(s, m, idx, n);
	if (--m->legs_open == 0)
		message_attempt_done(s, m);
}

/* Transactions queued for a destination that left the configuration go
 * where the new routes say, within the same attempt. */
static void reroute_queue(struct shard *s, struct dest *d)
{
	/* Taken off d first: routing may find a new DNS destination and move
	 * s->dests, which d may point into. */
	struct dest q = { 0 };
	struct leg *l;
	dest_move_all(d, &q);
	while ((l = dest_pop(&q))) {
		if (l->origin != s->index) {
			leg_send_back(s, l, "its route left the configuration");
			continue;
		}
		route_recipients(s, l->msg, l->ri, l->nr);
		shard_leg_done(s, l);
	}
}

/* A reload gave d's pair to another shard: what d holds goes there (the
 * rest of a transaction cut short by 452 is deferred: its parent is here). */
static void dest_forward_queue(struct shard *s, struct dest *d)
{
	struct dest q = { 0 };
	struct leg *l;
	dest_move_all(d, &q);
	while ((l = dest_pop(&q))) {
		if (l->parent)
			leg_send_back(s, l, "a reload moved its (source IP, MX group) pair to another shard");
		else
			cross_send(s, d->owner, l);
	}
}

/* ---- legs crossing between shards ----
 * Shard k's legs for shard j go through j's ring xin[k] (one producer,
 * one consumer: no lock); when it is full they wait in k's xout[j], in
 * order, and go at the next turn. A leg on the way is on no live list:
 * shard_free of the receiving shard frees what is left in its rings. */

#define XRING_CAP 1024
#define XTAKE_BUDGET 1024 /* legs taken per ring and loop turn */

void shard_link(struct shard **all, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct shard *s = all[i];
		s->peers = all;
		s->npeers = n;
		s->xin = xcalloc(n, sizeof(*s->xin));
		s->xout = xcalloc(n, sizeof(*s->xout));
		s->xkick = xcalloc(n, sizeof(*s->xkick));
		for (unsigned k = 0; k < n; k++)
			if (k != i)
				spsc_init(&s->xin[k], XRING_CAP, sizeof(struct leg *));
	}
}

static void cross_send(struct shard *s, unsigned to, struct leg *l)
{
	ASSERT(to != s->index && to < s->npeers);
	live_unlink(l);
	struct dest *q = &s->xout[to];
	if (!q->qlen && spsc_push(&s->peers[to]->xin[s->index], &l)) {
		s->xkick[to] = true;
		return;
	}
	dest_push(q, l);
}

/* What waited for room goes; the shards that got legs are woken. */
static void cross_flush(struct shard *s)
{
	for (unsigned k = 0; k < s->npeers; k++) {
		struct dest *q = &s->xout[k];
		while (q->qhead) {
			/* Off the queue before the push: once pushed, the leg is
			 * the peer's, and its next field with it. */
			struct leg *l = dest_pop(q);
			if (!spsc_push(&s->peers[k]->xin[s->index], &l)) {
				dest_push_front(q, l);
				break;
			}
			s->xkick[k] = true;
		}
		if (s->xkick[k]) {
			s->xkick[k] = false;
			shard_kick(s->peers[k]);
		}
	}
}

static void leg_arrived(struct shard *s, struct leg *l);
static void leg_came_home(struct shard *s, struct leg *l);

static void cross_take(struct shard *s)
{
	for (unsigned k = 0; k < s->npeers; k++) {
		if (k == s->index)
			continue;
		struct leg *l;
		unsigned budget = XTAKE_BUDGET;
		for (; budget && spsc_pop(&s->xin[k], &l); budget--) {
			live_link(s, l);
			if (l->home)
				leg_came_home(s, l);
			else
				leg_arrived(s, l);
		}
		if (!budget)
			s->wake_at = s->now; /* more waiting: the next turn does not sleep */
	}
}

/* Back on its origin: its outcomes apply to the message; recipients of a
 * leg whose route left go where the routes say now. */
static void leg_came_home(struct shard *s, struct leg *l)
{
	struct message *m = l->msg;
	for (uint32_t i = 0; i < l->nout; i++)
		outcome_commit(s, m, &l->out[i]);
	l->nout = 0; /* their text is the engine's now */
	if (l->full) /* known here before its recipients are routed again */
		adapt_learn_full(s, l->full);
	if (l->reroute) {
		uint32_t n = 0;
		for (uint32_t i = 0; i < l->nr; i++)
			if (l->rt[i] != RT_RESOLVED)
				l->ri[n++] = l->ri[i];
		if (n)
			route_recipients(s, m, l->ri, n);
	}
	l->home = l->reroute = false;
	l->done = true;
	atomic_fetch_sub_explicit(&s->txns_open, 1, memory_order_relaxed);
	leg_try_finish(s, l);
}

/* Its recipients not settled yet are deferred with why (retried later;
 * never sent on to yet another shard, which could go on for as long as two
 * shards' DNS caches disagree). */
static void leg_defer_here(struct shard *s, struct leg *l, const char *why)
{
	leg_settle(s, l, RESULT_DEFERRED, 451, "4.4.0", why, NULL);
}

void shard_leg_over_budget(struct shard *s, struct leg *l, const struct adapt_ban *full)
{
	if (l->parent) { /* a rest after a 452: its parent is here; the next attempt */
		leg_wait(s, l, full->until, WAIT_BUDGET, "its source IP's wave or warm-up day toward the group is full");
		return;
	}
	if (l->origin != s->index) {
		l->full = xmalloc(sizeof(*l->full));
		*l->full = *full;
		leg_send_back(s, l, "over budget");
		return;
	}
	uint32_t n = 0; /* here: routed again, the budget known full */
	for (uint32_t i = 0; i < l->nr; i++)
		if (l->rt[i] != RT_RESOLVED)
			l->ri[n++] = l->ri[i];
	if (n)
		route_recipients(s, l->msg, l->ri, n);
	shard_leg_done(s, l);
}

/* A leg whose route or source left while it was away goes home to be
 * routed anew (a rest after a 452 is deferred instead: its parent is
 * here). */
static void leg_send_back(struct shard *s, struct leg *l, const char *why)
{
	if (l->origin == s->index || l->parent) {
		leg_defer_here(s, l, why);
		return;
	}
	l->reroute = true;
	l->done = true;
	leg_try_finish(s, l);
}

struct leg_wait {
	struct shard *s;
	struct leg *leg;
};

/* The leg's plan is known on this shard: its destination here, unless the
 * plan puts it in another pair than the origin's did (DNS changed in
 * between): then it is deferred here, not sent on again. */
static void leg_place(struct shard *s, struct leg *l, const struct mx_plan *p, int src)
{
	const char *domain = address_domain(l->msg->rcpt[l->ri[0]]);
	if (p->kind != MX_DELIVER) {
		leg_settle(s, l, p->kind == MX_BOUNCE ? RESULT_BOUNCED : RESULT_DEFERRED, p->code, p->enhanced,
		           p->why, NULL);
		return;
	}
	uint32_t di = dest_for_plan(s, p, domain, src);
	if (s->dests[di].owner != s->index) {
		leg_defer_here(s, l, "its MX group changed while it crossed shards (DNS); retried");
		return;
	}
	l->dest = di;
	dest_enqueue(s, di, l, false);
}

/* The index here of the leg's source IP (-1: unbound); false when that
 * IP left the configuration: then the leg went back. */
static bool leg_source_here(struct shard *s, struct leg *l, int *src)
{
	*src = l->source[0] ? config_source_index(s->cfg, l->source) : -1;
	if (l->source[0] && *src < 0) {
		leg_send_back(s, l, "its source IP left the configuration");
		return false;
	}
	return true;
}

static void on_leg_plan(void *arg, const struct mx_plan *p)
{
	struct leg_wait *w = arg;
	int src;
	if (p && !atomic_load_explicit(&w->s->stop, memory_order_relaxed) && leg_source_here(w->s, w->leg, &src))
		leg_place(w->s, w->leg, p, src);
	/* stopping: the leg stays on the live list, freed with the shard */
	free(w);
}

/* A leg for a pair this shard owns: to its destination here (found as on
 * the origin: the route for its domain, else the domain's MX plan from
 * this shard's own resolver, cached after the first). */
static void leg_arrived(struct shard *s, struct leg *l)
{
	const struct config *cfg = s->cfg;
	int src;
	if (!leg_source_here(s, l, &src))
		return;
	const char *domain = address_domain(l->msg->rcpt[l->ri[0]]);
	int r = config_route_for(cfg, domain);
	if (r >= 0) {
		uint32_t di = route_dest_index(cfg, r, src);
		if (s->dests[di].owner != s->index) { /* a reload changed groups or IPs in between */
			leg_defer_here(s, l, "its MX group changed while it crossed shards (reload); retried");
			return;
		}
		l->dest = di;
		dest_enqueue(s, di, l, false);
		return;
	}
	struct leg_wait *w = xmalloc(sizeof(*w));
	*w = (struct leg_wait){ s, l };
	const struct mx_plan *p = mx_lookup(s->mx, domain, on_leg_plan, w);
	if (p) {
		free(w);
		leg_place(s, l, p, src);
	}
}

/* ---- reload ---- */

static bool same_route(const struct route *a, const struct route *b)
{
	return strcasecmp(a->domain, b->domain) == 0 && strcmp(a->label, b->label) == 0;
}

/* A new table of destinations (nd, room for every route and every old
 * destination) during apply_config; map: old index -> new, or -1. */
struct dest_remap {
	struct dest *nd;
	unsigned n;
	int32_t *map;
};

static bool same_text(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* The routes first, in the new order, one per source IP: a (route,
 * source IP) still there keeps its destination (queue, connections,
 * back-off), a new one starts fresh. */
static void remap_routes(struct shard *s, const struct config *cfg, struct dest_remap *rm)
{
	for (unsigned r = 0; r < cfg->nroutes; r++)
		for (unsigned k = 0; k < src_slots(cfg); k++) {
			uint32_t i = route_dest_index(cfg, (int)r, (int)k);
			int src = cfg->nsources ? (int)k : -1;
			bool kept = false;
			for (unsigned j = 0; j < s->ndests && !kept; j++)
				if (rm->map[j] < 0 && s->dests[j].route && !s->dests[j].retired &&
				    same_route(s->dests[j].route, &cfg->routes[r]) &&
				    same_text(s->dests[j].source, src >= 0 ? cfg->sources[src].text : NULL)) {
					rm->nd[i] = s->dests[j];
					rm->map[j] = (int32_t)i;
					kept = true;
				}
			rm->nd[i].route = &cfg->routes[r];
			if (!kept) {
				dest_set_route(&rm->nd[i], &cfg->routes[r]);
			} else if (strcmp(rm->nd[i].group, route_group(&cfg->routes[r]))) {
				free(rm->nd[i].group);
				rm->nd[i].group = xstrdup(route_group(&cfg->routes[r]));
			}
			dest_set_source(cfg, &rm->nd[i], src); /* EHLO name as configured now */
			rm->nd[i].retired = false;
			rm->nd[i].tls = route_tls_policy(cfg, &cfg->routes[r]);
		}
	rm->n = route_dests(cfg);
}

/* Destinations found in DNS stay as they are, after the routes. */
static void remap_dns_dests(struct shard *s, const struct config *cfg, struct dest_remap *rm)
{
	for (unsigned j = 0; j < s->ndests; j++) {
		struct dest *d = &s->dests[j];
		if (d->route || d->unused || d->retired)
			continue;
		if (d->source && config_source_index(cfg, d->source) < 0)
			continue; /* its source IP left: retired (remap_retired) */
		rm->nd[rm->n] = *d;
		if (!d->tls_by_domain) /* the group's policy as the new configuration says */
			rm->nd[rm->n].tls = config_tls_policy(cfg, NULL, d->group);
		rm->nd[rm->n].site->dest = rm->n;
		rm->map[j] = (int32_t)rm->n++;
	}
}

/* Routes that left: their queues go to orphans (routed anew by the
 * caller); one with connections stays, retired, until they end. */
static void remap_retired(struct shard *s, struct dest_remap *rm, struct dest *orphans)
{
	bool *referenced = xcalloc(s->ndests ? s->ndests : 1, 1);
	conn_pool_mark_dests(s, referenced);
	for (unsigned j = 0; j < s->ndests; j++) {
		if (rm->map[j] >= 0 || s->dests[j].unused)
			continue;
		dest_move_all(&s->dests[j], orphans);
		if (referenced[j] || s->dests[j].nconns) {
			struct site_ref *site = s->dests[j].site;
			if (site) { /* nothing is routed to it again */
				strmap_remove(&s->sites, &site->node);
				free(site->site);
				free(site);
				s->dests[j].site = NULL;
			}
			rm->nd[rm->n] = s->dests[j];
			rm->nd[rm->n].route = NULL; /* it points into the old configuration */
			rm->nd[rm->n].max_conns = 0;
			rm->nd[rm->n].retired = true;
			rm->map[j] = (int32_t)rm->n++;
		} else {
			dest_free(s, &s->dests[j]);
		}
	}
	free(referenced);
}

/* Connections and queued legs follow their destinations' new indices;
 * the new table replaces the old, every destination to be looked at. */
static void remap_install(struct shard *s, struct dest_remap *rm)
{
	conn_pool_retarget(s, rm->map, rm->n);
	for (unsigned i = 0; i < rm->n; i++)
		for (struct leg *l = rm->nd[i].qhead; l; l = l->next)
			l->dest = i;
	free(s->dests);
	s->dests = rm->nd;
	s->ndests = rm->n;
	s->nwork = 0;
	for (unsigned i = 0; i < s->ndests; i++) {
		s->dests[i].listed = s->dests[i].polled = false;
		shard_dest_note(s, i, true); /* lowered limits: idle connections QUIT */
	}
}

/* Do two configurations give every domain and group the same TLS policy? */
static bool tls_config_same(const struct config *a, const struct config *b)
{
	if (a->tls_policy != b->tls_policy || a->ntls_rules != b->ntls_rules)
		return false;
	for (unsigned i = 0; i < a->ntls_rules; i++) {
		const struct tls_rule *x = &a->tls_rules[i], *y = &b->tls_rules[i];
		if (x->policy != y->policy || !x->domain != !y->domain || !x->group != !y->group ||
		    (x->domain && strcasecmp(x->domain, y->domain)) || (x->group && strcmp(x->group, y->group)))
			return false;
	}
	return true;
}

/* SIGHUP: takes the new configuration at the top of the loop. A route
 * that is still there keeps its destination: queue, connections and
 * their state. A route that left becomes a retired destination whose
 * connections finish what they carry and QUIT; its queue is routed anew.
 * New limits apply from now on (connections over a lowered limit QUIT
 * when idle). Nothing keeps pointing into the old configuration (a
 * retired destination forgets its route; connections copied their
 * labels), so the engine can free it once every shard has moved on. */
static void apply_config(struct shard *s, const struct config *cfg)
{
	unsigned nold = s->ndests;
	struct dest_remap rm = {
		.nd = xcalloc(route_dests(cfg) + nold + 1, sizeof(*rm.nd)),
		.map = xmalloc((nold ? nold : 1) * sizeof(*rm.map)),
	};
	for (unsigned j = 0; j < nold; j++)
		rm.map[j] = -1;
	remap_routes(s, cfg, &rm);
	remap_dns_dests(s, cfg, &rm);
	struct dest orphans = { 0 };
	remap_retired(s, &rm, &orphans);
	remap_install(s, &rm);
	free(rm.map);
	struct mx_config mc = mx_config_of(cfg);
	mx_resolver_configure(s->mx, &mc);
	dkim_signer_free(s->signer); /* keys may have changed */
	s->signer = dkim_signer_new(cfg->dkim_keys, cfg->ndkim_keys, cfg->dkim_fallback);
	const struct config *old = s->cfg;
	/* CA files are read again (the same path may hold new certificates);
	 * without verification the context, its sessions and plaintext marks
	 * stay. Connections keep the old context until they end. */
	if (!s->tls || config_tls_verifies(old) || config_tls_verifies(cfg) || old->tls_ca || cfg->tls_ca)
		shard_tls_setup(s, cfg);
	if (!tls_config_same(old, cfg)) /* queued mail goes where the new policies say */
		for (unsigned i = route_dests(cfg); i < s->ndests; i++)
			if (!s->dests[i].unused && !s->dests[i].retired)
				dest_move_all(&s->dests[i], &orphans);
	s->cfg = cfg;
	adapt_rules_compile(s);
	if (!config_budgets_same(old, cfg))
		adapt_budgets_changed(s);
	/* Limits, owners and throttles as the new configuration says; a pair
	 * now owned elsewhere sends its queue there (dest_visit). */
	throttles_refresh(s, false);
	for (unsigned i = 0; i < s->ndests; i++)
		if (!s->dests[i].unused)
			dest_bind_pair(s, &s->dests[i]);
	reroute_queue(s, &orphans);
	atomic_store_explicit(&s->cfg_generation, cfg->generation, memory_order_release);
}

uint64_t shard_config_generation(struct shard *s)
{
	return atomic_load_explicit(&s->cfg_generation, memory_order_acquire);
}

void shard_reconfigure(struct shard *s, const struct config *cfg)
{
	atomic_store_explicit(&s->new_cfg, cfg, memory_order_release);
	shard_kick(s);
}

/* One destination's turn: a retired one's queue is routed anew, idle
 * connections take new legs, a suspended one defers its queue, and
 * connections are opened up to the limits. True: look again next turn
 * (it wants connections and has room, or legs wait by an idle one). */
static bool dest_visit(struct shard *s, uint32_t di)
{
	if (s->dests[di].unused)
		return false;
	if (s->dests[di].retired && s->dests[di].qlen)
		reroute_queue(s, &s->dests[di]); /* e.g. the rest after a 452 */
	struct dest *d = &s->dests[di]; /* routing may have moved s->dests */
	if (d->owner != s->index) {
		if (d->qlen)
			dest_forward_queue(s, d);
		return false;
	}
	if (d->qlen && d->thr && s->cfg->wait_in_spool_ms > 0 &&
	    d->thr->suspended_until - s->now >= s->cfg->wait_in_spool_ms)
		dest_wait_suspended(s, d);
	bool idle_left = false;
	if (d->new_work || d->nconns > d->max_conns)
		idle_left = conn_dest_give_work(s, d);
	d->new_work = idle_left; /* then next turn the idle ones try again */
	if (dest_suspended(s, d)) {
		if (d->qlen)
			dest_defer_suspended(s, d);
		return false;
	}
	/* More connections only while every ready one is busy (an idle one
	 * left waits for its pair's token: another would wait too). */
	while (!idle_left && d->qlen > d->nconns - d->nready && dest_may_open(s, d) &&
	       throttle_open_conn(s, d)) {
		if (conn_pool_free_slots(s) == 0)
			conn_pool_grow(s, conn_pool_slots(s) + 16);
		conn_open(s, di);
	}
	return d->qlen && (idle_left || (d->qlen > d->nconns - d->nready && d->nconns < d->max_conns));
}

/* Puts queued transactions on idle connections and opens connections up
 * to the destination's limit, for the destinations in s->work (see
 * shard_dest_note); those to look at again go back there for the next turn. */
static void schedule(struct shard *s)
{
	s->wake_at = 0; /* throttles out of tokens set it again */
	dest_gc(s);
	for (unsigned i = 0; i < s->nwork; i++) { /* visits may add to s->work */
		uint32_t di = s->work[i];
		s->dests[di].listed = false;
		if (dest_visit(s, di) && !s->dests[di].polled) {
			s->dests[di].polled = true;
			index_push(&s->poll, &s->npoll, &s->poll_cap, di);
		}
	}
	s->nwork = 0;
	for (unsigned i = 0; i < s->npoll; i++) {
		s->dests[s->poll[i]].polled = false;
		shard_dest_note(s, s->poll[i], false);
	}
	s->npoll = 0;
}

/* ---- the loop ---- */

static void arm_wake(struct shard *s)
{
	if (s->wake_armed)
		return;
	ring_read(s->ring, s->wake_fd, &s->wake_buf, sizeof(s->wake_buf), ring_ud(OP_WAKE, 0, 0));
	s->wake_armed = true;
}

static void handle_cqes(struct shard *s)
{
	struct ring_cqe cqes[CQE_BATCH];
	unsigned n;
	for (;;) {
		/* Replies in these completions arrived before any SQE prepared
		 * from now on was submitted (see smtp_client.c, THE INVARIANT). */
		s->reap_submits = ring_submits(s->ring);
		if ((n = ring_reap(s->ring, cqes, CQE_BATCH)) == 0)
			break;
		s->now = now_mono_ms();
		for (unsigned i = 0; i < n; i++) {
			const struct ring_cqe *c = &cqes[i];
			unsigned op = ring_ud_op(c->user_data);
			if (op == OP_WAKE) {
				s->wake_armed = false;
				continue;
			}
			if (op == OP_NOTIFY) {
				s->notify_inflight = false;
				continue;
			}
			if (op >= OP_DNS_BASE && op < OP_DNS_BASE + DNS_OPS) {
				dns_on_cqe(s->dns, c, s->now);
				continue;
			}
			conn_on_cqe(s, c);
		}
		if (n < CQE_BATCH)
			break;
	}
}

/* The recipients the spool worker found on the suppression list: their
 * lines; false when no recipient is left to send to (the message is done). */
static bool log_suppressed(struct shard *s, struct message *m)
{
	for (uint32_t i = 0; i < m->nrcpt; i++)
		if (m->rcpt_state[i] == RCPT_SUPPRESSED && m->suppress_why && m->suppress_why[i]) {
			emit_record(s, m, i, RESULT_SUPPRESSED, 0, NULL, m->suppress_why[i], strlen(m->suppress_why[i]), NULL, 0);
			free(m->suppress_why[i]);
			m->suppress_why[i] = NULL;
		}
	m->nsuppressed = 0;
	if (m->npending)
		return true;
	message_done(s, m);
	return false;
}

static void take_inbox(struct shard *s)
{
	struct message *m;
	unsigned budget = 1024; /* bounded work per loop turn */
	while (budget-- && spsc_pop(&s->inbox, &m)) {
		ASSERT(MESSAGE_FRESH(m));
		m->held_next = s->held.held_next;
		m->held_prev = &s->held;
		s->held.held_next->held_prev = m;
		s->held.held_next = m;
		if (m->nsuppressed && !log_suppressed(s, m))
			continue; /* every recipient was suppressed: done */
		m->held_wait = (m->waits & WAIT_HELD) != 0; /* its saved state says a hold: a resume wakes it */
		int64_t wait = m->due_wall_ms - now_real_ms();
		if (wait > 0)
			retry_insert(s, m, s->now + wait); /* saved state: not due yet */
		else
			dispatch(s, m);
	}
}

static void take_due_retries(struct shard *s)
{
	while (s->retry_head && s->retry_head->next_attempt_ms <= s->now) {
		struct message *m = s->retry_head;
		s->retry_head = m->next;
		if (!s->retry_head)
			s->retry_tail = NULL;
		m->next = NULL;
		dispatch(s, m);
	}
}

void shard_wake_held(struct shard *s, const char *job)
{
	struct message *due = NULL, **tail = &due;
	for (struct message **pp = &s->retry_head; *pp;) {
		struct message *m = *pp;
		if (!m->held_wait || (job && (!m->job || strcmp(m->job, job) != 0))) {
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		m->next = NULL;
		*tail = m;
		tail = &m->next;
	}
	s->retry_tail = NULL; /* found again: the list may have lost its last */
	for (struct message *m = s->retry_head; m; m = m->next)
		s->retry_tail = m;
	while (due) {
		struct message *m = due;
		due = m->next;
		m->held_wait = false;
		retry_insert(s, m, s->now);
	}
}

static int wait_ms(struct shard *s)
{
	int ms = WHEEL_TICK_MS;
	if (s->wake_at && s->wake_at <= s->now) {
		ms = 0;
		s->wake_at = 0; /* once: schedule() sets it again if still out of tokens */
	} else if (s->wake_at && s->wake_at - s->now < ms) {
		ms = (int)(s->wake_at - s->now);
	}
	if (s->retry_head) {
		int64_t d = s->retry_head->next_attempt_ms - s->now;
		if (d < ms)
			ms = d < 0 ? 0 : (int)d;
	}
	return ms;
}

static unsigned conns_open(struct shard *s)
{
	return conn_pool_slots(s) - conn_pool_free_slots(s);
}

/* The live counters, for the engine's scrapes (one relaxed store each). */
static void publish_live(struct shard *s)
{
	uint64_t v[SHARD_LIVE_N] = { conns_open(s), s->conns_opened, s->conns_failed, s->tls_counters[0],
	                             s->tls_counters[1], s->tls_counters[2] };
	if (s->dns)
		dns_counters(s->dns, &v[SHARD_LIVE_DNS_UDP], &v[SHARD_LIVE_DNS_TCP], &v[SHARD_LIVE_DNS_TIMEOUTS]);
	for (int i = 0; i < SHARD_LIVE_N; i++)
		atomic_store_explicit(&s->live_counters[i], v[i], memory_order_relaxed);
}

void shard_live_counters(const struct shard *s, uint64_t out[SHARD_LIVE_N])
{
	for (int i = 0; i < SHARD_LIVE_N; i++)
		out[i] += atomic_load_explicit(&s->live_counters[i], memory_order_relaxed);
}

static void stop_all(struct shard *s)
{
	conn_pool_shutdown(s, true);
	for (unsigned di = 0; di < s->ndests; di++) {
		struct leg *l;
		while ((l = dest_pop(&s->dests[di])))
			shard_leg_done(s, l);
	}
}

/* Wakes the engine once per batch of outcomes: one eventfd write in
 * flight at most, and none when nothing new was produced (a write per loop
 * turn would wake this loop again and spin). */
static void notify_engine(struct shard *s)
{
	if (!s->unnotified || s->notify_inflight)
		return;
	s->unnotified = 0;
	s->notify_inflight = true;
	ring_write(s->ring, s->engine_fd, &s->notify_val, sizeof(s->notify_val), ring_ud(OP_NOTIFY, 0, 0));
}

/* The thread's own resources: pinned to its core, named, its arena,
 * signer, ring and resolvers. */
static void shard_setup(struct shard *s)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(s->index % online_cpus(), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	char name[16];
	snprintf(name, sizeof(name), "shard%u", s->index);
	pthread_setname_np(pthread_self(), name);
	alloc_thread_arena();
	s->signer = dkim_signer_new(s->cfg->dkim_keys, s->cfg->ndkim_keys, s->cfg->dkim_fallback);
	shard_tls_setup(s, s->cfg);
	s->ring = ring_new(1024);
	const struct config *cfg = s->cfg;
	struct dns_resolver_config dc = { cfg->dns_servers, cfg->ndns_servers, cfg->dns_timeout_ms,
	                                  cfg->dns_attempts, cfg->dns_cache_size };
	s->dns = dns_resolver_new(s->ring, OP_DNS_BASE, &dc);
	struct mx_config mc = mx_config_of(cfg);
	s->mx = mx_resolver_new(s->dns, &mc);
	s->now = now_mono_ms();
	wheel_init(&s->wheel, s->now);
	adapt_rules_compile(s);
	adapt_take_commands(s); /* what the spool's state kept, before any pair is made */
	for (unsigned i = 0; i < s->ndests; i++)
		dest_bind_pair(s, &s->dests[i]);
}

/* After the loop: connections still open after the grace period have
 * their operations cancelled and reaped (a send may point into a message,
 * which is freed after this thread ends), then their sockets closed
 * outright; the ring and resolvers go. */
static void shard_teardown(struct shard *s)
{
	conn_trace_flush(s); /* what the last turn said */
	conn_pool_cancel_all(s);
	for (int64_t end = now_mono_ms() + STOP_DRAIN_MS; conn_pool_ops(s) && now_mono_ms() < end;) {
		ring_submit_wait(s->ring, 10);
		handle_cqes(s);
	}
	conn_pool_close_fds(s);
	dns_counters(s->dns, &s->dns_counters[0], &s->dns_counters[1], &s->dns_counters[2]);
	mx_resolver_free(s->mx); /* waiting recipients: their files stay */
	s->mx = NULL;
	dns_resolver_free(s->dns);
	s->dns = NULL;
	ring_free(s->ring);
	s->ring = NULL;
	dkim_signer_free(s->signer);
	s->signer = NULL;
	tls_ctx_free(s->tls); /* every connection let go of it above */
	s->tls = NULL;
	tls_thread_done();
}

static void *shard_main(void *arg)
{
	struct shard *s = arg;
	shard_setup(s);
	int64_t stop_deadline = 0;
	for (;;) {
		arm_wake(s);
		conn_check_quiet(s);
		ring_submit_wait(s->ring, wait_ms(s));
		s->now = now_mono_ms();
		handle_cqes(s);
		if (atomic_load_explicit(&s->stop, memory_order_acquire)) {
			if (!stop_deadline) {
				stop_deadline = s->now + STOP_GRACE_MS;
				stop_all(s);
			}
			if (conns_open(s) == 0 || s->now > stop_deadline)
				break;
		} else if (!atomic_load_explicit(&s->finishing, memory_order_relaxed)) {
			const struct config *ncfg = atomic_exchange_explicit(&s->new_cfg, NULL, memory_order_acq_rel);
			if (ncfg)
				apply_config(s, ncfg);
			adapt_take_commands(s);
			take_inbox(s);
			cross_take(s);
			take_due_retries(s);
			schedule(s);
		} else {
			cross_take(s); /* SIGTERM: legs coming home bring outcomes to log */
		}
		wheel_advance(&s->wheel, s->now, conn_on_timer, s);
		conn_trace_flush(s);
		dns_tick(s->dns, s->now);
		outbox_flush(s);
		publish_live(s);
		pair_stats_publish(s);
		notify_engine(s);
		if (!atomic_load_explicit(&s->stop, memory_order_relaxed))
			cross_flush(s); /* stopping: what waits to cross is freed with the shard */
	}
	shard_teardown(s);
	atomic_store_explicit(&s->exited, 1, memory_order_release);
	return NULL;
}

void shard_start(struct shard *s)
{
	if (pthread_create(&s->thread, NULL, shard_main, s) != 0)
		fatal("cannot start shard thread %u", s->index);
}

bool shard_adapt(struct shard *s, const struct adapt_cmd *c)
{
	if (!spsc_push(&s->adapt_in, c))
		return false;
	shard_kick(s);
	return true;
}

bool shard_offer(struct shard *s, struct message *m)
{
	ASSERT(MESSAGE_FRESH(m));
	return spsc_push(&s->inbox, &m);
}

void shard_kick(struct shard *s)
{
	eventfd_kick(s->wake_fd);
}

size_t shard_collect(struct shard *s, struct outcome *out, size_t max)
{
	size_t n = 0;
	while (n < max && spsc_pop(&s->outbox, &out[n]))
		n++;
	if (n == 0 && s->nspill && atomic_load_explicit(&s->exited, memory_order_acquire)) {
		/* After the thread ended, what it could not fit into the outbox. */
		n = s->nspill < max ? s->nspill : max;
		memcpy(out, s->spill, n * sizeof(*out));
		memmove(s->spill, s->spill + n, (s->nspill - n) * sizeof(*s->spill));
		s->nspill -= n;
	}
	return n;
}

void shard_finish(struct shard *s)
{
	atomic_store(&s->finishing, 1);
	shard_kick(s);
}

bool shard_idle(struct shard *s)
{
	return atomic_load(&s->txns_open) == 0;
}

void shard_stop_begin(struct shard *s)
{
	atomic_store_explicit(&s->stop, 1, memory_order_release);
	shard_kick(s);
}

void shard_stop(struct shard *s)
{
	shard_stop_begin(s);
	pthread_join(s->thread, NULL);
}

void shard_dns_counters(const struct shard *s, uint64_t out[3])
{
	for (int i = 0; i < 3; i++)
		out[i] += s->dns_counters[i];
}

void shard_free(struct shard *s)
{
	if (!s)
		return;
	/* The engine has collected every outcome: what is left it never saw
	 * finish, and its file is still in the spool. */
	struct outcome o;
	while (spsc_pop(&s->outbox, &o))
		outcome_free_text(&o);
	struct message *m;
	while (spsc_pop(&s->inbox, &m))
		message_free(m);
	while (s->held.held_next != &s->held) {
		m = s->held.held_next;
		s->held.held_next = m->held_next;
		message_free(m);
	}
	for (size_t i = 0; i < s->nspill; i++)
		outcome_free_text(&s->spill[i]);
	/* Legs: those it held, those on their way to it, those waiting to go. */
	while (s->live.live_next != &s->live) {
		struct leg *l = s->live.live_next;
		live_unlink(l);
		leg_free(l);
	}
	for (unsigned k = 0; s->xin && k < s->npeers; k++) {
		struct leg *l;
		if (k == s->index)
			continue;
		while (spsc_pop(&s->xin[k], &l))
			leg_free(l);
		while ((l = dest_pop(&s->xout[k])))
			leg_free(l);
		spsc_destroy(&s->xin[k]);
	}
	free(s->xin);
	free(s->xout);
	free(s->xkick);
	free(s->swrr);
	for (unsigned i = 0; i < s->ndests; i++)
		dest_free(s, &s->dests[i]);
	strmap_free(&s->sites);
	throttles_free(s);
	conn_pool_free(s);
	free(s->spill);
	free(s->work);
	free(s->poll);
	free(s->pending_idx);
	free(s->route_dest);
	free(s->open_leg);
	free(s->rcpts_left);
	buf_free(&s->trace);
	buf_free(&s->key_scratch);
	free(s->dests);
	spsc_destroy(&s->inbox);
	spsc_destroy(&s->outbox);
	spsc_destroy(&s->adapt_in);
	adapt_free(s);
	pair_stats_free(s);
	close(s->wake_fd);
	free(s);
}
