/* tests/unit/test_envelope.c - spool file parsing: envelope lines, LF and
 * CRLF, malformed files, command injection through addresses, and CRLF
 * normalisation of the body. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>
#include "../../engine/lib/envelope.h"
#include "../../engine/lib/util.h"
#include <stdio.h>

static struct message *parse_mem(const char *data, size_t len, char *why, bool *ok)
{
	struct message *m = xcalloc(1, sizeof(*m));
	m->raw = xmalloc(len + 1);
	memcpy(m->raw, data, len);
	m->raw[len] = 0;
	m->raw_len = len;
	*ok = envelope_parse(m, why, 256);
	return m;
}

static struct message *parse(const char *data, char *why, bool *ok)
{
	return parse_mem(data, strlen(data), why, ok);
}

static void lf_file(void **state)
{
	char why[256];
	bool ok;
	struct message *m = parse("X-Sender: <a@x.example>\nX-Receiver: <b@y.example>\n"
	                          "X-Receiver: c@z.example\nX-Job: j1\nX-Pool: p\n"
	                          "Subject: hi\n\nbody\n", why, &ok);
	assert_true(ok);
	assert_string_equal(m->sender, "a@x.example");
	assert_int_equal(m->nrcpt, 2);
	assert_string_equal(m->rcpt[0], "b@y.example");
	assert_string_equal(m->rcpt[1], "c@z.example");
	assert_string_equal(m->job, "j1");
	assert_string_equal(m->pool, "p");
	assert_string_equal(m->body, "Subject: hi\r\n\r\nbody\r\n");
	assert_int_equal(m->npending, 2);
	assert_false(m->body_8bit);
	message_free(m);
}

static void crlf_file_and_case(void **state)
{
	char why[256];
	bool ok;
	struct message *m = parse("x-sender: <>\r\nX-RECEIVER: <b@y.example>\r\n"
	                          "Subject: caf\xc3\xa9\r\n\r\nbody", why, &ok);
	assert_true(ok);
	assert_string_equal(m->sender, "");
	assert_string_equal(m->rcpt[0], "b@y.example");
	assert_string_equal(m->body, "Subject: caf\xc3\xa9\r\n\r\nbody\r\n");
	assert_true(m->body_8bit);
	message_free(m);
}

static void expect_bad(const char *data, size_t len, const char *why_part)
{
	char why[256];
	bool ok;
	struct message *m = parse_mem(data, len, why, &ok);
	assert_false(ok);
	if (!strstr(why, why_part))
		fail_msg("reason '%s' lacks '%s'", why, why_part);
	message_free(m);
}

static void malformed_files(void **state)
{
	expect_bad("X-Receiver: <b@y.example>\nSubject: x\n\nb\n", 41, "no X-Sender");
	expect_bad("X-Sender: <a@x.example>\nSubject: x\n\nb\n", 38, "no X-Receiver");
	expect_bad("X-Sender: <a@x.example>\nX-Sender: <c@x.example>\nX-Receiver: <b@y.example>\n\nb\n",
	           76, "more than one X-Sender");
	expect_bad("X-Sender: <a@x.example>\nX-Receiver: <b@y.example>\n", 50, "no message");
	expect_bad("X-Sender: <a@x.example>\nX-Receiver: <b@y.example>", 49, "not followed");
	const char garbage[] = "\x7f" "ELF\x02\x01\x01\0\0\0\0\0\xff\xfe\n\x01\x02";
	expect_bad(garbage, sizeof(garbage) - 1, "no X-Sender");
	expect_bad("X-Sender: <a@x.example>\nX-Receiver: <nodomain>\n\nb\n", 49, "no '@'");
	expect_bad("X-Sender: <a@x.example>\nX-Receiver: <a b@y.example>\n\nb\n", 54, "white space");
	expect_bad("X-Sender: <a@x.example>\nX-Receiver: <>\n\nb\n", 42, "empty address");
}

static void injection_refused(void **state)
{
	/* CR inside an address: would end the RCPT line and start a command. */
	const char cr[] = "X-Sender: <a@x.example>\nX-Receiver: <b@y.example\rDATA>\n\nb\n";
	expect_bad(cr, sizeof(cr) - 1, "CR or LF");
	const char cr2[] = "X-Sender: <a@x.example\r\nRSET>\nX-Receiver: <b@y.example>\n\nb\n";
	expect_bad(cr2, sizeof(cr2) - 1, "");
	const char nul[] = "X-Sender: <a@x.example>\nX-Receiver: <b\0@y.example>\n\nb\n";
	expect_bad(nul, sizeof(nul) - 1, "NUL");
	const char ctl[] = "X-Sender: <a@x\x1b.example>\nX-Receiver: <b@y.example>\n\nb\n";
	expect_bad(ctl, sizeof(ctl) - 1, "control");
	const char job[] = "X-Sender: <a@x.example>\nX-Receiver: <b@y.example>\nX-Job: a\rb\n\nb\n";
	expect_bad(job, sizeof(job) - 1, "control");
	const char tab[] = "X-Sender: <a@x.example>\nX-Receiver: <b@y.example>\nX-Job: a\tb\n\nb\n";
	expect_bad(tab, sizeof(tab) - 1, "control"); /* a job name is one field of the spool's state */
	char longjob[256];
	snprintf(longjob, sizeof(longjob), "X-Sender: <a@x.example>\nX-Receiver: <b@y.example>\nX-Job: %064d\n\nb\n", 0);
	expect_bad(longjob, strlen(longjob), "longer than 63");
}

static void address_rules(void **state)
{
	assert_null(address_check("a@b", 3, false));
	assert_non_null(address_check("", 0, false));
	assert_null(address_check("", 0, true));
	assert_non_null(address_check("@b", 2, false));
	assert_non_null(address_check("a@", 2, false));
	char long_local[96];
	memset(long_local, 'l', 70);
	strcpy(long_local + 70, "@x.example");
	assert_non_null(address_check(long_local, strlen(long_local), false));
	assert_string_equal(address_domain("u@Example.COM"), "Example.COM");
}

static void normalise(void **state)
{
	size_t n;
	char *s = crlf_normalise("a\nb\r\nc\rd", 8, &n);
	assert_string_equal(s, "a\r\nb\r\nc\r\nd\r\n");
	assert_int_equal(n, 12);
	free(s);
	s = crlf_normalise("x\r\n", 3, &n);
	assert_string_equal(s, "x\r\n");
	free(s);
	s = crlf_normalise("\n\n", 2, &n);
	assert_string_equal(s, "\r\n\r\n");
	free(s);
	s = crlf_normalise("\r\r\n", 3, &n);
	assert_string_equal(s, "\r\n\r\n");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lf_file), cmocka_unit_test(crlf_file_and_case),
		cmocka_unit_test(malformed_files), cmocka_unit_test(injection_refused),
		cmocka_unit_test(address_rules), cmocka_unit_test(normalise),
	};
	return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
