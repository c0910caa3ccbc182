/* tests/unit/test_json.c - JSON escaping of arbitrary server text and the
 * accounting line's shape. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "../../engine/lib/json.h"
#include "../../engine/acct_log.h"
#include "../../engine/bounce_class.h"

static void check(const char *in, size_t len, const char *want)
{
	struct buf b = { 0 };
	json_add_string(&b, in, len);
	buf_add(&b, "", 1);
	assert_string_equal(b.p, want);
	buf_free(&b);
}

static void escapes(void **state)
{
	check("plain", 5, "\"plain\"");
	check("q\"b\\", 4, "\"q\\\"b\\\\\"");
	check("a\r\nb\t", 5, "\"a\\r\\nb\\t\"");
	check("\x01\x7f", 2, "\"\\u0001\\u007f\"");
	check("nul\0x", 5, "\"nul\\u0000x\"");
	check("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");
	check("bad\xff\xc3", 5, "\"bad\\ufffd\\ufffd\"");
	check("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
	check("\xe2\x82\xac", 3, "\"\xe2\x82\xac\"");
	struct buf b = { 0 };
	json_add_string(&b, NULL, 0);
	buf_add(&b, "", 1);
	assert_string_equal(b.p, "null");
	buf_free(&b);
}

static void accounting_line(void **state)
{
	const char *rcpts[] = { "r@d.example" };
	struct message m = { .id = "f1~2", .file = "f1", .sender = "s@x.example", .rcpt = rcpts, .nrcpt = 1 };
	struct outcome o = { .kind = OUTCOME_RCPT, .result = RESULT_BOUNCED, .code = 550,
	                     .attempt = 2, .ms = 7, .queue_ms = 9, .ts_ms = 1700000000123, .msg = &m,
	                     .response = "5.1.1 \"no\" such\nuser", .mx = "127.0.0.1:25", .group = "gmail",
	                     .bclass = BC_BAD_MAILBOX };
	strcpy(o.enhanced, "5.1.1");
	strcpy(o.peer, "127.0.0.1:25");
	struct buf b = { 0 };
	acct_format(&b, &o);
	buf_add(&b, "", 1);
	assert_string_equal(b.p,
		"{\"ts\":\"2023-11-14T22:13:20.123Z\",\"id\":\"f1~2\",\"file\":\"f1\",\"job\":null,\"row\":null,\"from\":\"s@x.example\","
		"\"rcpt\":\"r@d.example\",\"result\":\"bounced\",\"class\":\"bad-mailbox\",\"code\":550,\"enhanced\":\"5.1.1\","
		"\"response\":\"5.1.1 \\\"no\\\" such\\nuser\",\"mx\":\"127.0.0.1:25\",\"group\":\"gmail\",\"peer\":\"127.0.0.1:25\","
		"\"source\":null,\"dkim\":null,\"tls\":null,\"attempt\":2,\"ms\":7,\"queue_ms\":9}\n");
	/* A job file's row: its job and row number. */
	m.job = "spring";
	m.row = 7;
	b.len = 0;
	acct_format(&b, &o);
	buf_add(&b, "", 1);
	assert_non_null(strstr(b.p, ",\"job\":\"spring\",\"row\":7,\"from\":"));
	m.job = NULL;
	m.row = 0;
	/* Signed: domain and selectors. */
	char dkim[] = "{\"d\":\"x.example\",\"s\":[\"a\",\"b\"]}";
	m.dkim_log = dkim;
	b.len = 0;
	acct_format(&b, &o);
	buf_add(&b, "", 1);
	assert_non_null(strstr(b.p, ",\"dkim\":{\"d\":\"x.example\",\"s\":[\"a\",\"b\"]},\"tls\":null,"));
	buf_free(&b);
}

/* escape_text (engine/lib/util.c): spool names on stderr and in DSN headers. */
static void display_escapes(void **state)
{
	char out[ESCAPED_MAX];
	assert_string_equal(escape_text("plain name~3", out, sizeof(out)), "plain name~3");
	assert_string_equal(escape_text("a\nb\r\t\\\x01\x7f\xc3\xa9", out, sizeof(out)),
	                    "a\\nb\\r\\t\\\\\\x01\\x7f\\xc3\\xa9");
	char small[8];
	assert_string_equal(escape_text("abcdefgh", small, sizeof(small)), "abcd...");
	assert_string_equal(escape_text("abcdefg", small, sizeof(small)), "abcdefg");
	assert_string_equal(escape_text("abc\x01", small, sizeof(small)), "abc\\x01");
	assert_string_equal(escape_text("abc\x01" "d", small, sizeof(small)), "abc...");
	char name[256];
	memset(name, 0x01, 255);
	name[255] = 0;
	assert_int_equal(strlen(escape_text(name, out, sizeof(out))), 4 * 255);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(escapes), cmocka_unit_test(accounting_line), cmocka_unit_test(display_escapes),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
