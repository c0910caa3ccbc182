/* tests/unit/test_smtp_output.c - a connection's output (shards/smtp_output.c):
 * content sent by reference is byte-exact (dot-stuffing from the parser's
 * dot list, DKIM signature first, BDAT unstuffed), commands keep their
 * order around it, short sends resume at the right byte, more segments
 * than one sendmsg takes go in several, and every referenced message is
 * handed back once. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "../../engine/lib/envelope.h"
#include "../../shards/smtp_output.h"

/* A message parsed the way the spool's are (so body and dots are real). */
static struct message *parse(const char *body, const char *sig)
{
	struct message *m = calloc(1, sizeof(*m));
	struct buf raw = { 0 };
	buf_adds(&raw, "X-Sender: <a@example.org>\nX-Receiver: <b@example.net>\n");
	buf_add(&raw, body, strlen(body));
	buf_add(&raw, "", 1);
	m->raw = raw.p;
	m->raw_len = raw.len - 1;
	char why[256];
	assert_true(envelope_parse(m, why, sizeof(why)));
	if (sig) {
		m->dkim_sig = strdup(sig);
		m->dkim_sig_len = strlen(sig);
	}
	return m;
}

/* What DATA must carry: RFC 5321 4.5.2, done the obvious way. */
static void reference_stuff(struct buf *b, const char *body, size_t len)
{
	for (size_t i = 0; i < len;) {
		if (body[i] == '.')
			buf_add(b, ".", 1);
		const char *nl = memchr(body + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - body) + 1 : len;
		buf_add(b, body + i, end - i);
		i = end;
	}
	buf_add(b, ".\r\n", 3);
}

/* Sends everything queued, `chunk` bytes at most per "kernel" call,
 * appending what went out to wire; returns the references handed back. */
static unsigned drain(struct smtp_output *o, struct buf *wire, size_t chunk, unsigned *nsends)
{
	unsigned refs = 0;
	while (out_has_next(o)) {
		struct msghdr *msg = out_flush(o);
		while (msg) {
			assert_true(msg->msg_iovlen <= IOV_MAX);
			size_t took = 0;
			for (size_t i = 0; i < msg->msg_iovlen && took < chunk; i++) {
				size_t n = msg->msg_iov[i].iov_len;
				if (n > chunk - took)
					n = chunk - took;
				buf_add(wire, msg->msg_iov[i].iov_base, n);
				took += n;
			}
			(*nsends)++;
			msg = out_sent(o, took);
		}
		void **r;
		refs += out_wire_done(o, &r);
	}
	return refs;
}

static void check_body(const char *body, const char *sig, size_t chunk)
{
	struct message *m = parse(body, sig);
	struct smtp_output o = { 0 };
	out_add(&o, "MAIL FROM:<a>\r\n", 15);
	out_content(&o, m, m, true);
	out_add(&o, "QUIT\r\n", 6);
	struct buf want = { 0 }, wire = { 0 };
	buf_adds(&want, "MAIL FROM:<a>\r\n");
	if (sig)
		buf_adds(&want, sig);
	reference_stuff(&want, m->body, m->body_len);
	buf_adds(&want, "QUIT\r\n");
	unsigned sends = 0;
	assert_int_equal(drain(&o, &wire, chunk, &sends), 1);
	assert_int_equal(wire.len, want.len);
	assert_memory_equal(wire.p, want.p, want.len);
	assert_int_equal(o.sent, o.queued);
	assert_int_equal(o.queued, want.len);
	/* BDAT: the same content, not stuffed */
	out_content(&o, m, m, false);
	wire.len = 0;
	assert_int_equal(drain(&o, &wire, chunk, &sends), 1);
	assert_int_equal(wire.len, message_content_len(m));
	assert_memory_equal(wire.p + (sig ? strlen(sig) : 0), m->body, m->body_len);
	out_free(&o);
	buf_free(&want);
	buf_free(&wire);
	message_free(m);
}

static void stuffing_by_reference(void **state)
{
	const char *bodies[] = {
		"Subject: a\r\n\r\nb\r\n",
		".\r\n",
		"Subject: x\r\n\r\n.hidden\r\n..two\r\n",
		"Subject: x\r\n\r\nx.y\r\n .z\r\n",
		"Subject: x\r\n\r\na\r\n.\r\nb\r\n.",
		"Subject: x\n\n.lf only\n.\nend",
		"Subject: x\r\n\r\nmixed\n.dot\rbare cr\r\n",
		"\r\n",
	};
	size_t chunks[] = { 1, 2, 7, 1 << 20 };
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++)
		for (size_t k = 0; k < sizeof(chunks) / sizeof(*chunks); k++) {
			check_body(bodies[i], NULL, chunks[k]);
			check_body(bodies[i], "DKIM-Signature: v=1; d=example.org;\r\n\tb=abc\r\n", chunks[k]);
		}
}

static void already_crlf_is_not_copied(void **state)
{
	struct message *m = parse("Subject: x\r\n\r\nbody\r\n", NULL);
	assert_false(m->body_owned);
	assert_true(m->body > m->raw && m->body < m->raw + m->raw_len);
	assert_int_equal(m->ndots, 0);
	message_free(m);
	m = parse("Subject: x\n\nbody\n", NULL);
	assert_true(m->body_owned);
	assert_memory_equal(m->body, "Subject: x\r\n\r\nbody\r\n", m->body_len);
	message_free(m);
}

static void many_dots_need_several_sends(void **state)
{
	struct buf body = { 0 };
	buf_adds(&body, "Subject: dots\r\n\r\n");
	for (int i = 0; i < 3000; i++)
		buf_printf(&body, ".%d\r\n", i);
	buf_add(&body, "", 1);
	struct message *m = parse(body.p, NULL);
	assert_int_equal(m->ndots, 3000);
	struct smtp_output o = { 0 };
	out_content(&o, m, m, true);
	struct buf want = { 0 }, wire = { 0 };
	reference_stuff(&want, m->body, m->body_len);
	unsigned sends = 0;
	assert_int_equal(drain(&o, &wire, SIZE_MAX, &sends), 1);
	assert_true(sends >= 6); /* ~6000 segments, at most IOV_MAX per sendmsg */
	assert_int_equal(wire.len, want.len);
	assert_memory_equal(wire.p, want.p, want.len);
	out_free(&o);
	buf_free(&body);
	buf_free(&want);
	buf_free(&wire);
	message_free(m);
}

static void unsent_references_come_back(void **state)
{
	struct message *a = parse("Subject: a\r\n\r\na\r\n", NULL);
	struct message *b = parse("Subject: b\r\n\r\nb\r\n", NULL);
	struct smtp_output o = { 0 };
	out_content(&o, a, a, true);
	struct msghdr *msg = out_flush(&o);
	assert_non_null(msg);
	out_content(&o, b, b, false); /* next generation, never sent */
	void **r;
	assert_int_equal(out_drop_next(&o, &r), 1);
	assert_ptr_equal(r[0], b);
	assert_int_equal(out_wire_done(&o, &r), 1); /* the send failed */
	assert_ptr_equal(r[0], a);
	assert_false(out_has_next(&o));
	out_free(&o);
	message_free(a);
	message_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stuffing_by_reference), cmocka_unit_test(already_crlf_is_not_copied),
		cmocka_unit_test(many_dots_need_several_sends), cmocka_unit_test(unsent_references_come_back),
	};
	return cmocka_run_group_tests_name("smtp_output", tests, NULL, NULL);
}
