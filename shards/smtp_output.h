/* shards/smtp_output.h - the bytes one SMTP connection sends, without
 * copying message content. Commands are small and copied into a buffer;
 * message content (DKIM signature, body) is referenced where it lies and
 * dot-stuffed by reference (a static "." before each line the parser found
 * starting with '.'); everything goes out by one sendmsg from an iovec.
 *
 * Two generations, as with double buffering: what is on the wire (one
 * sendmsg in flight, immutable until its completion) and what comes next.
 * Byte positions are counted over the connection's whole output stream
 * (queued: every byte added; sent: every byte the kernel took), so a
 * command's end is one number however its bytes were split.
 *
 * Content is referenced, so its message must outlive the send: with every
 * message added the caller names a reference (what keeps the message:
 * the shard's leg) that it releases when out_wire_done() / out_drop()
 * hand it back. Pure (no ring, no shard):
 * unit-tested on its own. */
#ifndef SLUICE_SMTP_OUTPUT_H
#define SLUICE_SMTP_OUTPUT_H
#include "../engine/lib/message.h"
#include "../engine/lib/util.h"
#include <sys/socket.h>
#include <sys/uio.h>

/* One piece of output: bytes of the generation's command buffer (ext
 * NULL, at off) or bytes elsewhere (ext). */
struct out_seg {
	const char *ext;
	size_t off, len;
};

struct out_gen {
	struct buf bytes;          /* copied command bytes */
	struct out_seg *seg;
	unsigned nseg, seg_cap;
	void **refs;               /* owners of the content the segments point into */
	unsigned nrefs, refs_cap;
	uint64_t len;              /* bytes in the segments */
};

struct smtp_output {
	struct out_gen next, wire;
	struct iovec *iov;         /* the wire generation as iovecs, from iov_head on unsent */
	unsigned niov, iov_cap, iov_head;
	struct msghdr msg;         /* what the ring sends: points into iov */
	uint64_t queued;           /* stream bytes added so far */
	uint64_t sent;             /* stream bytes the kernel took */
	uint64_t inflight_end;     /* where the bytes of the sendmsg in flight end: a
	                            * generation of more than IOV_MAX segments goes
	                            * in several, so bytes queued may be beyond it */
	bool sending;              /* a sendmsg of the wire generation is in flight */
};

/* Appends a copy of n bytes. */
void out_add(struct smtp_output *o, const void *p, size_t n);
/* Appends the message's content: its DKIM signature then its body; for
 * DATA (stuff) each line starting with '.' gets another '.' in front and
 * ".\r\n" ends it. Records ref (handed back through out_wire_done/out_drop). */
void out_content(struct smtp_output *o, const struct message *m, void *ref, bool stuff);
/* Bytes added and not yet handed to out_flush. */
static inline bool out_has_next(const struct smtp_output *o) { return o->next.len > 0; }
/* Makes the next generation the wire one and returns the msghdr to send
 * (at most IOV_MAX iovecs; out_sent continues). Only when !o->sending. */
struct msghdr *out_flush(struct smtp_output *o);
/* The kernel took n bytes of the wire generation (n > 0). Returns the
 * msghdr for the rest, or NULL when the generation is all sent: then
 * out_wire_done hands back its references. */
struct msghdr *out_sent(struct smtp_output *o, size_t n);
/* References of the wire generation, to release once nothing of it is in
 * flight any more (all sent, or its send failed or was cancelled); clears
 * the generation. Returns the count; *refs is valid until the next call. */
unsigned out_wire_done(struct smtp_output *o, void ***refs);
/* The same for the next generation (never sent: the connection ends). */
unsigned out_drop_next(struct smtp_output *o, void ***refs);
/* Frees the storage; references not handed back are forgotten (the
 * shard is stopping and frees its messages itself). */
void out_free(struct smtp_output *o);
#endif
