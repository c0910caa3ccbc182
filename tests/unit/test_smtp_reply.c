/* tests/unit/test_smtp_reply.c - the SMTP reply parser: single and multi
 * line replies, partial input, garbage, over-long lines, enhanced codes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include "../../shards/smtp_reply.h"

static struct smtp_reply r;

static int parse(const char *s, size_t *used, const char **err)
{
	return smtp_reply_parse(s, strlen(s), &r, used, err);
}

static void single_line(void **state)
{
	size_t used;
	const char *err = NULL;
	assert_int_equal(parse("250 2.1.0 Ok\r\n", &used, &err), REPLY_OK);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.enhanced, "2.1.0");
	assert_string_equal(r.text, "2.1.0 Ok");
	assert_int_equal(used, 14);
	assert_int_equal(r.nlines, 1);
}

static void multi_line(void **state)
{
	const char *s = "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\nNEXT";
	size_t used;
	const char *err = NULL;
	assert_int_equal(parse(s, &used, &err), REPLY_OK);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 4);
	assert_string_equal(r.text, "mx.example\nPIPELINING\nSIZE 1000\nCHUNKING");
	assert_int_equal(used, strlen(s) - 4);
}

static void partial_needs_more(void **state)
{
	const char *full = "250-first\r\n250 second\r\n";
	size_t used;
	const char *err = NULL;
	for (size_t n = 0; n < 11; n++) { /* no complete line: nothing taken */
		assert_int_equal(smtp_reply_parse(full, n, &r, &used, &err), REPLY_NEED_MORE);
		assert_int_equal(used, 0);
		assert_false(r.in_progress);
	}
	/* the first line complete: taken, the reply goes on in r */
	assert_int_equal(smtp_reply_parse(full, 15, &r, &used, &err), REPLY_NEED_MORE);
	assert_int_equal(used, 11);
	assert_true(r.in_progress);
	assert_int_equal(smtp_reply_parse(full + 11, strlen(full) - 11, &r, &used, &err), REPLY_OK);
	assert_int_equal(used, strlen(full) - 11);
	assert_string_equal(r.text, "first\nsecond");
	assert_int_equal(r.nlines, 2);
}

/* Fed one byte at a time, as the worst network would: the same reply. */
static void byte_at_a_time(void **state)
{
	const char *full = "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
	size_t off = 0, pending = 0, used;
	const char *err = NULL;
	int rc = REPLY_NEED_MORE;
	for (size_t end = 1; end <= strlen(full) && rc == REPLY_NEED_MORE; end++) {
		pending = end - off;
		rc = smtp_reply_parse(full + off, pending, &r, &used, &err);
		off += used;
	}
	assert_int_equal(rc, REPLY_OK);
	assert_int_equal(off, strlen(full));
	assert_string_equal(r.text, "mx.example\nPIPELINING\nSIZE 1000");
}

static void nul_in_text_kept(void **state)
{
	const char s[] = "550 5.1.1 bad\0mailbox tail\r\n";
	size_t used;
	const char *err = NULL;
	assert_int_equal(smtp_reply_parse(s, sizeof(s) - 1, &r, &used, &err), REPLY_OK);
	assert_int_equal(r.text_len, strlen("5.1.1 bad") + 1 + strlen("mailbox tail"));
	assert_memory_equal(r.text + 10, "mailbox tail", 12);
}

static void two_replies_one_at_a_time(void **state)
{
	const char *s = "250 a\r\n354 go ahead\r\n";
	size_t used, used2;
	const char *err = NULL;
	assert_int_equal(parse(s, &used, &err), REPLY_OK);
	assert_int_equal(r.code, 250);
	assert_int_equal(parse(s + used, &used2, &err), REPLY_OK);
	assert_int_equal(r.code, 354);
	assert_int_equal(used + used2, strlen(s));
}

static void bare_code_and_lf_only(void **state)
{
	size_t used;
	const char *err = NULL;
	assert_int_equal(parse("250\r\n", &used, &err), REPLY_OK);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "");
	assert_int_equal(parse("451 4.7.1 later\n", &used, &err), REPLY_OK);
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enhanced, "4.7.1");
}

static void garbage_is_an_error(void **state)
{
	const char *bad[] = { "HTTP/1.1 400 Bad Request\r\n", "25 short\r\n", "2500 x\r\n",
	                      "650 six hundred\r\n", "150 one\r\n", "250x\r\n", "\x01\x02\x03\r\n",
	                      "abc", "25a", "250+nope" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t used;
		const char *err = NULL;
		assert_int_equal(parse(bad[i], &used, &err), REPLY_ERROR);
		assert_non_null(err);
	}
}

static void mixed_codes_error(void **state)
{
	size_t used;
	const char *err = NULL;
	assert_int_equal(parse("250-a\r\n550 b\r\n", &used, &err), REPLY_ERROR);
}

static void overlong_line_truncated(void **state)
{
	enum { n = 3000 };
	static char s[n + 8];
	memcpy(s, "550 ", 4);
	memset(s + 4, 'x', n);
	memcpy(s + 4 + n, "\r\n", 3);
	size_t used;
	const char *err = NULL;
	assert_int_equal(smtp_reply_parse(s, strlen(s), &r, &used, &err), REPLY_OK);
	assert_true(r.truncated);
	assert_true(r.text_len <= SMTP_LINE_MAX);
	assert_int_equal(used, strlen(s));
}

static void endless_line_error(void **state)
{
	size_t n = SMTP_LINE_HARD_MAX + 10;
	char *s = malloc(n);
	memcpy(s, "250-", 4);
	memset(s + 4, 'y', n - 4);
	size_t used;
	const char *err = NULL;
	assert_int_equal(smtp_reply_parse(s, n, &r, &used, &err), REPLY_ERROR);
	free(s);
}

static unsigned lines_seen;
static void count_line(void *arg, uint32_t lineno, const char *text, size_t len)
{
	(void)arg; (void)text; (void)len;
	assert_int_equal(lineno, lines_seen);
	lines_seen++;
}

/* Any number of lines: each is seen by on_line, the text kept is bounded. */
static void many_lines_ok(void **state)
{
	char *s = malloc(30 * 1000 + 16);
	size_t o = 0;
	for (int i = 0; i < 1000; i++)
		o += (size_t)sprintf(s + o, "250-X-FILLER-%d\r\n", i);
	o += (size_t)sprintf(s + o, "250 PIPELINING\r\n");
	size_t used;
	const char *err = NULL;
	lines_seen = 0;
	r.on_line = count_line;
	assert_int_equal(smtp_reply_parse(s, o, &r, &used, &err), REPLY_OK);
	r.on_line = NULL;
	assert_int_equal(lines_seen, 1001);
	assert_int_equal(r.nlines, 1001);
	assert_true(r.text_len < SMTP_REPLY_TEXT_MAX);
	free(s);
}

static void reply_over_bytes_max_error(void **state)
{
	size_t n = SMTP_REPLY_BYTES_MAX + 4096;
	char *s = malloc(n);
	size_t o = 0;
	while (o + 20 < n)
		o += (size_t)sprintf(s + o, "250-filler line\r\n");
	size_t used;
	const char *err = NULL;
	assert_int_equal(smtp_reply_parse(s, o, &r, &used, &err), REPLY_ERROR);
	assert_false(r.in_progress);
	free(s);
}

static void enhanced_code_rules(void **state)
{
	char out[12];
	assert_int_equal(smtp_enhanced_code("5.1.1 no such user", 18, '5', out), 5);
	assert_string_equal(out, "5.1.1");
	assert_int_equal(smtp_enhanced_code("4.7.500 busy", 12, '4', out), 7);
	assert_int_equal(smtp_enhanced_code("4.1.1 wrong class", 17, '5', out), 0);
	assert_int_equal(smtp_enhanced_code("5.1 short", 9, '5', out), 0);
	assert_int_equal(smtp_enhanced_code("5.1.1x", 6, '5', out), 0);
	assert_int_equal(smtp_enhanced_code("5.1234.1 x", 10, '5', out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(single_line), cmocka_unit_test(multi_line),
		cmocka_unit_test(partial_needs_more), cmocka_unit_test(two_replies_one_at_a_time),
		cmocka_unit_test(bare_code_and_lf_only), cmocka_unit_test(garbage_is_an_error),
		cmocka_unit_test(mixed_codes_error), cmocka_unit_test(overlong_line_truncated),
		cmocka_unit_test(endless_line_error), cmocka_unit_test(many_lines_ok),
		cmocka_unit_test(reply_over_bytes_max_error), cmocka_unit_test(byte_at_a_time),
		cmocka_unit_test(nul_in_text_kept),
		cmocka_unit_test(enhanced_code_rules),
	};
	return cmocka_run_group_tests_name("smtp_reply", tests, NULL, NULL);
}
