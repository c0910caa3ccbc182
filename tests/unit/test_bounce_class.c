/* tests/unit/test_bounce_class.c - the bounce classes (engine/
 * bounce_class.c): the shipped bounce-classes.conf against real replies
 * (tests/fixtures/bounce_replies.txt: the class each must get, so a rule
 * that catches too much or too little shows), the fallbacks on the
 * enhanced code and the reply code, which classes suppress, a rule of
 * the configuration's own first, and any bytes in a reply. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "../../engine/bounce_class.h"

#define SHIPPED "share/sluice/bounce-classes.conf"
#define FIXTURE "tests/fixtures/bounce_replies.txt"

static void shipped_replies(void **state)
{
	(void)state;
	char err[512];
	struct bounce_rules *r = bounce_rules_load(SHIPPED, err, sizeof(err));
	assert_non_null(r);
	FILE *f = fopen(FIXTURE, "r");
	assert_non_null(f);
	char line[4096];
	unsigned n = 0, bad = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		char *cls = strtok(line, "\t"), *code = strtok(NULL, "\t"), *enh = strtok(NULL, "\t"),
		     *text = strtok(NULL, "");
		assert_non_null(text);
		enum bounce_class want = bounce_class_of(cls);
		assert_int_not_equal(want, BC_COUNT);
		enum bounce_class got = bounce_classify(r, (unsigned)atoi(code), strcmp(enh, "-") ? enh : NULL, text,
		                                        strlen(text));
		if (got != want) {
			fprintf(stderr, "want %s, got %s: %s %s %s\n", cls, bounce_class_name(got), code, enh, text);
			bad++;
		}
		n++;
	}
	fclose(f);
	assert_true(n >= 40);
	assert_int_equal(bad, 0);
	bounce_rules_free(r);
}

static void fallbacks_and_names(void **state)
{
	(void)state;
	/* no rules at all: the enhanced code, then the reply code */
	assert_int_equal(bounce_classify(NULL, 550, "5.1.1", "x", 1), BC_BAD_MAILBOX);
	assert_int_equal(bounce_classify(NULL, 550, "5.1.2", "x", 1), BC_BAD_DOMAIN);
	assert_int_equal(bounce_classify(NULL, 550, "5.2.1", "x", 1), BC_INACTIVE_MAILBOX);
	assert_int_equal(bounce_classify(NULL, 452, "4.2.2", "x", 1), BC_MAILBOX_FULL);
	assert_int_equal(bounce_classify(NULL, 552, "5.3.4", "x", 1), BC_MESSAGE_TOO_LARGE);
	assert_int_equal(bounce_classify(NULL, 0, "4.4.7", "x", 1), BC_EXPIRED);
	assert_int_equal(bounce_classify(NULL, 550, "5.4.4", "x", 1), BC_ROUTING);
	assert_int_equal(bounce_classify(NULL, 550, "5.7.1", "x", 1), BC_POLICY);
	assert_int_equal(bounce_classify(NULL, 451, NULL, "x", 1), BC_TRANSIENT);
	assert_int_equal(bounce_classify(NULL, 554, NULL, "x", 1), BC_OTHER);
	assert_int_equal(bounce_classify(NULL, 0, "garbage", "x", 1), BC_OTHER);
	assert_true(bounce_class_hard(BC_BAD_MAILBOX) && bounce_class_hard(BC_BAD_DOMAIN) &&
	            bounce_class_hard(BC_INACTIVE_MAILBOX));
	for (int c = BC_MAILBOX_FULL; c < BC_COUNT; c++)
		assert_false(bounce_class_hard((enum bounce_class)c));
	for (int c = 1; c < BC_COUNT; c++)
		assert_int_equal(bounce_class_of(bounce_class_name((enum bounce_class)c)), c);
	assert_int_equal(bounce_class_of("nonsense"), BC_COUNT);
}

static void own_rules_and_bytes(void **state)
{
	(void)state;
	char path[] = "/tmp/sluice-bc-XXXXXX", err[512];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char conf[] =
		"classes = ( { name = \"mine\"; class = \"policy\"; code = \"5xx\"; enhanced = \"5.1.1\"; text = \"vip only\"; } );\n";
	assert_int_equal(write(fd, conf, sizeof(conf) - 1), (ssize_t)sizeof(conf) - 1);
	close(fd);
	struct bounce_rules *r = bounce_rules_load(path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(bounce_classify(r, 550, "5.1.1", "VIP ONLY here", 13), BC_POLICY);
	assert_int_equal(bounce_classify(r, 550, "5.1.1", "user unknown", 12), BC_BAD_MAILBOX); /* the fallback */
	assert_int_equal(bounce_classify(r, 450, "5.1.1", "vip only", 8), BC_BAD_MAILBOX);      /* 4xx: not the rule's */
	char nul[] = "vip\0only vip only";
	assert_int_equal(bounce_classify(r, 550, "5.1.1", nul, sizeof(nul) - 1), BC_POLICY);
	bounce_rules_free(r);
	static const char broken[] = "classes = ( { name = \"x\"; class = \"nope\"; text = \"a\"; } );\n";
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, broken, sizeof(broken) - 1), (ssize_t)sizeof(broken) - 1);
	close(fd);
	assert_null(bounce_rules_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "not a bounce class"));
	unlink(path);
	/* the built-in copy loads */
	r = bounce_rules_load(NULL, err, sizeof(err));
	assert_non_null(r);
	bounce_rules_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shipped_replies),
		cmocka_unit_test(fallbacks_and_names),
		cmocka_unit_test(own_rules_and_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
