/* tests/unit/test_tls.c - TLS on memory buffers (engine/lib/tls.c): a
 * client and a server context talk by copying ciphertext between them (no
 * socket anywhere): the handshake completes at TLS 1.2 or 1.3, bytes
 * arrive intact whichever way the ciphertext is split, one write of up to
 * TLS_RECORD_MAX is one record, the second connection to a host resumes,
 * verification fails with the reason for an untrusted chain and for
 * another name and passes with the CA given, garbage instead of a
 * ServerHello fails with a reason, and a host can be marked for plaintext.
 * Certificates are made at run time with openssl(1). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../../engine/lib/tls.h"

static char dir[] = "/tmp/sluice-tls-unit.XXXXXX";
static char cert[256], key[256];

static int make_cert(void **state)
{
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
	         "-subj /CN=mx.test.example -addext subjectAltName=DNS:mx.test.example "
	         "-keyout %s -out %s 2>/dev/null",
	         key, cert);
	return system(cmd) == 0 ? 0 : -1;
}

static int remove_cert(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Moves what a produced into b's input, at most chunk bytes per step. */
static size_t pass(struct tls *a, struct tls *b, size_t chunk)
{
	struct buf wire = { 0 };
	tls_out_take(a, &wire);
	size_t off = 0;
	while (off < wire.len) {
		size_t cap;
		void *p = tls_in_space(b, &cap);
		size_t n = wire.len - off;
		n = n < cap ? n : cap;
		n = n < chunk ? n : chunk;
		memcpy(p, wire.p + off, n);
		tls_in_commit(b, n);
		off += n;
	}
	size_t moved = wire.len;
	buf_free(&wire);
	return moved;
}

/* Runs both handshakes to the end (or a failure): the client's result. */
static int handshake(struct tls *c, struct tls *s, int *server_rc)
{
	int rc = TLS_AGAIN, src = TLS_AGAIN;
	for (int i = 0; i < 20 && (rc == TLS_AGAIN || src == TLS_AGAIN); i++) {
		if (rc == TLS_AGAIN)
			rc = tls_handshake(c);
		pass(c, s, 7);
		if (src == TLS_AGAIN)
			src = tls_handshake(s);
		pass(s, c, 1000);
		if (rc == TLS_FAIL || src == TLS_FAIL)
			break;
	}
	if (server_rc)
		*server_rc = src;
	return rc;
}

static void test_handshake_and_data(void **state)
{
	char err[256];
	struct tls_ctx *cc = tls_client_ctx_new(NULL, false, err, sizeof(err));
	struct tls_ctx *sc = tls_server_ctx_new(cert, key, err, sizeof(err));
	assert_non_null(cc);
	assert_non_null(sc);
	struct tls *c = tls_client_new(cc, "mx.test.example", NULL, "mx.test.example");
	struct tls *s = tls_server_new(sc);
	assert_int_equal(handshake(c, s, NULL), TLS_OK);
	char d[128];
	tls_describe(c, d, sizeof(d));
	assert_true(strncmp(d, "TLSv1.3:TLS_", 12) == 0 || strncmp(d, "TLSv1.2:TLS_", 12) == 0);
	assert_false(tls_resumed(c));
	/* a large write in records, passed in odd pieces */
	static char big[100000], got[100000];
	long r;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 3);
	for (size_t off = 0; off < sizeof(big); off += TLS_RECORD_MAX) {
		size_t n = sizeof(big) - off < TLS_RECORD_MAX ? sizeof(big) - off : TLS_RECORD_MAX;
		uint64_t before = tls_out_total(c);
		assert_int_equal(tls_write(c, big + off, n), TLS_OK);
		assert_true(tls_out_total(c) - before > n); /* one record: header and tag */
		assert_true(tls_out_total(c) - before < n + 64);
	}
	pass(c, s, 333);
	size_t have = 0;
	while (have < sizeof(got) && (r = tls_read(s, got + have, sizeof(got) - have)) > 0)
		have += (size_t)r;
	char more[16];
	assert_int_equal(tls_read(s, more, sizeof(more)), 0);
	assert_int_equal(have, sizeof(big));
	assert_memory_equal(got, big, sizeof(big));
	/* the server answers; TLS 1.3 tickets ride along */
	assert_int_equal(tls_write(s, "250 ok\r\n", 8), TLS_OK);
	pass(s, c, 5);
	r = tls_read(c, got, sizeof(got));
	assert_int_equal(r, 8);
	assert_memory_equal(got, "250 ok\r\n", 8);
	tls_save_session(c);
	assert_int_equal(tls_ctx_hosts(cc), 1);
	/* close_notify reads as TLS_CLOSED */
	tls_close_notify(s);
	pass(s, c, 1000);
	assert_int_equal(tls_read(c, got, sizeof(got)), TLS_CLOSED);
	tls_free(c);
	tls_free(s);
	/* the next connection to the host resumes */
	c = tls_client_new(cc, "mx.test.example", NULL, "mx.test.example");
	s = tls_server_new(sc);
	assert_int_equal(handshake(c, s, NULL), TLS_OK);
	assert_true(tls_resumed(c));
	tls_free(c);
	tls_free(s);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

static void test_verify(void **state)
{
	char err[256];
	struct tls_ctx *sc = tls_server_ctx_new(cert, key, err, sizeof(err));
	assert_non_null(sc);
	/* untrusted: an empty store (the system's does not hold our cert) */
	struct tls_ctx *cc = tls_client_ctx_new(NULL, false, err, sizeof(err));
	struct tls *c = tls_client_new(cc, "mx.test.example", "mx.test.example", NULL);
	struct tls *s = tls_server_new(sc);
	assert_int_equal(handshake(c, s, NULL), TLS_FAIL);
	assert_true(tls_cert_failed(c));
	assert_non_null(strstr(tls_error(c), "certificate: "));
	tls_free(c);
	tls_free(s);
	tls_ctx_free(cc);
	/* trusted, right name */
	cc = tls_client_ctx_new(cert, true, err, sizeof(err));
	assert_non_null(cc);
	c = tls_client_new(cc, "mx.test.example", "mx.test.example", NULL);
	s = tls_server_new(sc);
	assert_int_equal(handshake(c, s, NULL), TLS_OK);
	tls_free(c);
	tls_free(s);
	/* trusted, another name */
	c = tls_client_new(cc, "other.example", "other.example", NULL);
	s = tls_server_new(sc);
	assert_int_equal(handshake(c, s, NULL), TLS_FAIL);
	assert_true(tls_cert_failed(c));
	assert_non_null(strstr(tls_error(c), "certificate: "));
	tls_free(c);
	tls_free(s);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
	/* a CA file that does not exist is an error at start */
	assert_null(tls_client_ctx_new("/nonexistent/ca.pem", true, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

static void test_garbage_and_close(void **state)
{
	char err[256];
	struct tls_ctx *cc = tls_client_ctx_new(NULL, false, err, sizeof(err));
	struct tls *c = tls_client_new(cc, NULL, NULL, NULL);
	assert_int_equal(tls_handshake(c), TLS_AGAIN);
	assert_true(tls_out_pending(c) > 0); /* the ClientHello */
	size_t cap;
	char *p = tls_in_space(c, &cap);
	const char junk[] = "250 this is not a ServerHello\r\n";
	memcpy(p, junk, sizeof(junk) - 1);
	tls_in_commit(c, sizeof(junk) - 1);
	assert_int_equal(tls_handshake(c), TLS_FAIL);
	assert_true(strlen(tls_error(c)) > 0);
	assert_false(tls_cert_failed(c));
	tls_free(c);
	tls_ctx_free(cc);
}

/* A server context without resumption: the client's saved session is
 * offered and not taken, every handshake is full. */
static void test_server_no_resumption(void **state)
{
	char err[256];
	struct tls_ctx *cc = tls_client_ctx_new(NULL, false, err, sizeof(err));
	struct tls_ctx *sc = tls_server_ctx_new(cert, key, err, sizeof(err));
	assert_non_null(cc);
	assert_non_null(sc);
	tls_server_ctx_no_resumption(sc);
	for (int i = 0; i < 2; i++) {
		struct tls *c = tls_client_new(cc, "mx.test.example", NULL, "mx.test.example");
		struct tls *s = tls_server_new(sc);
		assert_int_equal(handshake(c, s, NULL), TLS_OK);
		assert_false(tls_resumed(c));
		assert_false(tls_resumed(s));
		char got[16];
		assert_int_equal(tls_write(s, "250 ok\r\n", 8), TLS_OK);
		pass(s, c, 1000);
		assert_int_equal(tls_read(c, got, sizeof(got)), 8);
		tls_save_session(c);
		tls_free(c);
		tls_free(s);
	}
	tls_ctx_free(cc);
	tls_ctx_free(sc);
}

static void test_host_memory(void **state)
{
	char err[256];
	struct tls_ctx *cc = tls_client_ctx_new(NULL, false, err, sizeof(err));
	assert_int_equal(tls_host_plain_until(cc, "mx.a", 100), 0);
	tls_host_set_plain(cc, "mx.a", 1000);
	assert_int_equal(tls_host_plain_until(cc, "mx.a", 100), 1000);
	assert_int_equal(tls_host_plain_until(cc, "mx.a", 1000), 0); /* expired */
	assert_int_equal(tls_host_plain_until(cc, "mx.b", 100), 0);
	char h[32];
	for (int i = 0; i < 5000; i++) { /* bounded: the oldest go */
		snprintf(h, sizeof(h), "mx%d", i);
		tls_host_set_plain(cc, h, 1000);
	}
	assert_true(tls_ctx_hosts(cc) <= 4096);
	assert_int_equal(tls_host_plain_until(cc, "mx4999", 100), 1000);
	assert_int_equal(tls_host_plain_until(cc, "mx.a", 100), 0);
	tls_ctx_free(cc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_garbage_and_close),
		cmocka_unit_test(test_host_memory),
		cmocka_unit_test(test_server_no_resumption),
	};
	return cmocka_run_group_tests(tests, make_cert, remove_cert);
}
