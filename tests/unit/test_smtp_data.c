/* tests/unit/test_smtp_data.c - dot-stuffing is byte-exact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "../../shards/smtp_data.h"

static void check(const char *in, const char *want)
{
	struct buf b = { 0 };
	smtp_data_stuff(&b, in, strlen(in));
	buf_add(&b, "", 1);
	assert_string_equal(b.p, want);
	buf_free(&b);
}

static void stuffing(void **state)
{
	check("a\r\nb\r\n", "a\r\nb\r\n.\r\n");
	check(".\r\n", "..\r\n.\r\n");
	check(".hidden\r\n..two\r\n", "..hidden\r\n...two\r\n.\r\n");
	check("x.y\r\n .z\r\n", "x.y\r\n .z\r\n.\r\n");
	check("a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n");
	check("\r\n", "\r\n.\r\n");
}

static void missing_final_crlf(void **state)
{
	check("no end", "no end\r\n.\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stuffing), cmocka_unit_test(missing_final_crlf),
	};
	return cmocka_run_group_tests_name("smtp_data", tests, NULL, NULL);
}
