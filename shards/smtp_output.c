/* shards/smtp_output.c - a connection's output as segments and iovecs (see
 * smtp_output.h). */
#define _GNU_SOURCE
#include "smtp_output.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Storage above these goes back after a generation is sent: one large
 * burst of commands must not keep its memory for the connection's life. */
#define KEEP_BYTES (64u << 10)
#define KEEP_SEGS 1024u

static void seg_push(struct out_gen *g, const char *ext, size_t off, size_t len)
{
	if (len == 0)
		return;
	struct out_seg *last = g->nseg ? &g->seg[g->nseg - 1] : NULL;
	if (last && !ext && !last->ext && last->off + last->len == off) {
		last->len += len; /* commands in a row: one segment */
	} else if (last && ext && last->ext && last->ext + last->len == ext) {
		last->len += len;
	} else {
		if (g->nseg == g->seg_cap) {
			g->seg_cap = g->seg_cap ? g->seg_cap * 2 : 16;
			g->seg = xrealloc(g->seg, g->seg_cap * sizeof(*g->seg));
		}
		g->seg[g->nseg++] = (struct out_seg){ ext, off, len };
	}
	g->len += len;
}

void out_add(struct smtp_output *o, const void *p, size_t n)
{
	size_t off = o->next.bytes.len;
	buf_add(&o->next.bytes, p, n);
	seg_push(&o->next, NULL, off, n);
	o->queued += n;
}

static void out_ref(struct smtp_output *o, const char *p, size_t n)
{
	seg_push(&o->next, p, 0, n);
	o->queued += n;
}

void out_content(struct smtp_output *o, const struct message *m, void *ref, bool stuff)
{
	struct out_gen *g = &o->next;
	if (g->nrefs == g->refs_cap) {
		g->refs_cap = g->refs_cap ? g->refs_cap * 2 : 4;
		g->refs = xrealloc(g->refs, g->refs_cap * sizeof(*g->refs));
	}
	g->refs[g->nrefs++] = ref;
	if (m->dkim_sig) { /* header fields: no line of them starts with '.' */
		ASSERT(m->dkim_sig[0] != '.');
		out_ref(o, m->dkim_sig, m->dkim_sig_len);
	}
	if (m->track_hdr)
		out_ref(o, m->track_hdr, m->track_hdr_len);
	ASSERT(m->body_len >= 2 && m->body[m->body_len - 2] == '\r' && m->body[m->body_len - 1] == '\n');
	size_t at = 0;
	for (uint32_t i = 0; stuff && i < m->ndots; i++) {
		size_t dot = m->dots[i];
		ASSERT(dot >= at && dot < m->body_len); /* (its byte is the parser's to check) */
		out_ref(o, m->body + at, dot - at);
		out_ref(o, ".", 1); /* static: the doubled dot */
		at = dot;
	}
	out_ref(o, m->body + at, m->body_len - at);
	if (stuff)
		out_ref(o, ".\r\n", 3);
}

/* The iovecs from iov_head on, at most IOV_MAX of them. */
static struct msghdr *msg_from_head(struct smtp_output *o)
{
	unsigned n = o->niov - o->iov_head;
	memset(&o->msg, 0, sizeof(o->msg));
	o->msg.msg_iov = o->iov + o->iov_head;
	o->msg.msg_iovlen = n < IOV_MAX ? n : IOV_MAX;
	o->inflight_end = o->sent;
	for (size_t i = 0; i < o->msg.msg_iovlen; i++)
		o->inflight_end += o->msg.msg_iov[i].iov_len;
	o->sending = true;
	return &o->msg;
}

struct msghdr *out_flush(struct smtp_output *o)
{
	ASSERT(!o->sending && o->wire.len == 0 && o->wire.nrefs == 0 && o->next.len > 0);
	struct out_gen t = o->wire;
	o->wire = o->next;
	o->next = t; /* empty, keeps its storage */
	struct out_gen *g = &o->wire;
	if (g->nseg > o->iov_cap) {
		o->iov_cap = g->nseg;
		free(o->iov);
		o->iov = xmalloc(o->iov_cap * sizeof(*o->iov));
	}
	for (unsigned i = 0; i < g->nseg; i++) {
		const struct out_seg *sg = &g->seg[i];
		o->iov[i].iov_base = (void *)(sg->ext ? sg->ext : g->bytes.p + sg->off);
		o->iov[i].iov_len = sg->len;
	}
	o->niov = g->nseg;
	o->iov_head = 0;
	return msg_from_head(o);
}

struct msghdr *out_sent(struct smtp_output *o, size_t n)
{
	ASSERT(o->sending && n > 0);
	o->sending = false;
	o->sent += n;
	while (n && o->iov_head < o->niov) {
		struct iovec *v = &o->iov[o->iov_head];
		if (n >= v->iov_len) {
			n -= v->iov_len;
			o->iov_head++;
		} else {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
	ASSERT(n == 0);
	return o->iov_head < o->niov ? msg_from_head(o) : NULL;
}

static unsigned gen_clear(struct out_gen *g, void ***refs)
{
	unsigned n = g->nrefs;
	*refs = g->refs;
	g->nrefs = 0;
	g->nseg = 0;
	g->len = 0;
	g->bytes.len = 0;
	if (g->bytes.cap > KEEP_BYTES)
		buf_free(&g->bytes);
	if (g->seg_cap > KEEP_SEGS) {
		free(g->seg);
		g->seg = NULL;
		g->seg_cap = 0;
	}
	return n;
}

unsigned out_wire_done(struct smtp_output *o, void ***refs)
{
	/* all sent, or dropped unsent (the connection ends): either way the
	 * stream goes on after it, so the connection that reuses this output
	 * counts its commands from where the queue is */
	o->sent = o->queued - o->next.len;
	o->inflight_end = o->sent;
	o->sending = false;
	o->niov = o->iov_head = 0;
	if (o->iov_cap > KEEP_SEGS) {
		free(o->iov);
		o->iov = NULL;
		o->iov_cap = 0;
	}
	return gen_clear(&o->wire, refs);
}

unsigned out_drop_next(struct smtp_output *o, void ***refs)
{
	o->queued -= o->next.len;
	return gen_clear(&o->next, refs);
}

void out_free(struct smtp_output *o)
{
	buf_free(&o->next.bytes);
	buf_free(&o->wire.bytes);
	free(o->next.seg);
	free(o->wire.seg);
	free(o->next.refs);
	free(o->wire.refs);
	free(o->iov);
	memset(o, 0, sizeof(*o));
}
