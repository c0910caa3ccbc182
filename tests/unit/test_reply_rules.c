/* tests/unit/test_reply_rules.c - adaptation's pure parts: the reply
 * rules as sluice matches them
 * (shards/reply_rules.c): the shipped responses.conf, read by the
 * configuration, against real providers' replies (tests/fixtures/
 * provider_replies.txt: the rule that must match each first, or none),
 * each also wrapped over two lines as Gmail sends long replies; the text
 * a rule's expression searches; the configuration's own rules first;
 * codes, classes, enhanced patterns and groups; clean replies match
 * nothing; durations; budgets (a wave shared by weight, warm-up caps,
 * civil days). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../engine/config.h"
#include "../../shards/reply_rules.h"

/* Relative to the repository root, where make runs the unit tests. */
#define SHIPPED "share/sluice/responses.conf"
#define PROVIDERS "share/sluice/providers.conf"
#define FIXTURE "tests/fixtures/provider_replies.txt"

static char dir[64];

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void load(struct config *c, const char *conf)
{
	char *argv[] = { "sluice-run", "--dns-server", "127.0.0.1:53", "-c", (char *)write_file("r.conf", conf) };
	char err[600];
	if (!config_reload(c, 5, argv, err, sizeof(err)))
		fail_msg("refused: %s", err);
}

static void reply(struct smtp_reply *r, uint16_t code, const char *enh, const char *text)
{
	memset(r, 0, sizeof(*r));
	r->code = code;
	snprintf(r->enhanced, sizeof(r->enhanced), "%s", enh ? enh : "");
	r->text_len = (size_t)snprintf(r->text, sizeof(r->text), "%s", text);
}

static const char *matched(struct reply_matcher *m, const char *group, const struct smtp_reply *r)
{
	int i = reply_matcher_find(m, group, r);
	return i < 0 ? "-" : m->rules[i].name;
}

/* Every fixture reply, in its rule's group (or in every group of the
 * providers file and one no rule names), single-line and wrapped. */
static void shipped_rules(void **state)
{
	struct config c;
	load(&c, "adaptation: { responses = \"" SHIPPED "\"; };\nshaping: { providers = \"" PROVIDERS "\"; };\n");
	assert_true(c.nreply_rules >= 40);
	struct reply_matcher m;
	reply_matcher_init(&m, c.reply_rules, c.nreply_rules);
	for (unsigned i = 0; i < c.nreply_rules; i++)
		if (c.reply_rules[i].text && !m.ok[i])
			fail_msg("rule %s: its expression does not compile", c.reply_rules[i].name);
	FILE *f = fopen(FIXTURE, "r");
	assert_non_null(f);
	char line[4096];
	unsigned lines = 0, named = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		char *want = strtok(line, "\t"), *code = strtok(NULL, "\t"), *enh = strtok(NULL, "\t");
		char *text = strtok(NULL, "");
		assert_non_null(text);
		if (strcmp(enh, "-") == 0)
			enh = NULL;
		const char *group_of = NULL;
		for (unsigned i = 0; i < c.nreply_rules; i++)
			if (strcmp(c.reply_rules[i].name, want) == 0)
				group_of = c.reply_rules[i].group ? c.reply_rules[i].group : "";
		if (strcmp(want, "-") != 0 && !group_of)
			fail_msg("fixture names no rule of the file: %s", want);
		named += strcmp(want, "-") != 0;
		/* sluice's reply text starts with the enhanced code, as the server sent it */
		char single[SMTP_REPLY_TEXT_MAX], wrapped[SMTP_REPLY_TEXT_MAX];
		snprintf(single, sizeof(single), "%s%s%s", enh ? enh : "", enh ? " " : "", text);
		size_t cut = strlen(text) / 2;
		while (cut > 0 && text[cut] != ' ')
			cut--;
		if (cut)
			snprintf(wrapped, sizeof(wrapped), "%s%s%.*s\n%s%s%s", enh ? enh : "", enh ? " " : "", (int)cut,
			         text, enh ? enh : "", enh ? " " : "", text + cut + 1);
		else
			snprintf(wrapped, sizeof(wrapped), "%s", single);
		const char *groups[32];
		unsigned ng = 0;
		if (group_of && *group_of) {
			groups[ng++] = group_of;
		} else {
			for (unsigned i = 0; i < c.nshape_rules && ng < 30; i++)
				if (c.shape_rules[i].shipped)
					groups[ng++] = c.shape_rules[i].group;
			groups[ng++] = "example";
		}
		for (unsigned g = 0; g < ng; g++) {
			struct smtp_reply r;
			reply(&r, (uint16_t)atoi(code), enh, single);
			const char *got = matched(&m, groups[g], &r);
			if (strcmp(got, want) != 0)
				fail_msg("in group %s, %s %s %s: matched %s, want %s", groups[g], code, enh ? enh : "", text, got,
				         want);
			reply(&r, (uint16_t)atoi(code), enh, wrapped);
			got = matched(&m, groups[g], &r);
			if (strcmp(got, want) != 0)
				fail_msg("wrapped, in group %s: %s: matched %s, want %s", groups[g], wrapped, got, want);
		}
		lines++;
	}
	fclose(f);
	assert_true(lines >= 100 && named >= 80);
	reply_matcher_free(&m);
	config_free(&c);
}

/* The text an expression searches; the configuration's rules before the
 * file's; codes, classes, enhanced patterns, groups; 2xx never. */
static void matching(void **state)
{
	struct smtp_reply r;
	char out[SMTP_REPLY_TEXT_MAX + 1];
	reply(&r, 421, "4.7.28", "4.7.28 [192.0.2.1] Our system has detected an\n4.7.28 unusual rate of mail");
	reply_rule_text(&r, out, sizeof(out));
	assert_string_equal(out, "[192.0.2.1] Our system has detected an unusual rate of mail");
	reply(&r, 451, "", "try later\n\nagain");
	reply_rule_text(&r, out, sizeof(out));
	assert_string_equal(out, "try later again");
	reply_rule_text(&r, out, 6);
	assert_string_equal(out, "try l");

	struct config c;
	load(&c, "adaptation: { responses = \"" SHIPPED "\";\n"
	         "  rules = ( { name = \"mine\"; code = \"421\"; text = \"TSS04\"; action = \"defer\"; },\n"
	         "            { name = \"class\"; group = \"big*\"; code = \"4xx\"; enhanced = \"4.7.6[0-9]\"; action = \"slow\"; },\n"
	         "            { name = \"five\"; code = \"5xx\"; text = \"^no such$\"; action = \"bounce\"; } ); };\n");
	assert_false(c.reply_rules[0].shipped);
	assert_true(c.reply_rules[c.nreply_rules - 1].shipped);
	struct reply_matcher m;
	reply_matcher_init(&m, c.reply_rules, c.nreply_rules);
	reply(&r, 421, "4.7.0", "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred");
	assert_string_equal(matched(&m, "yahoo", &r), "mine"); /* before the file's yahoo-tss04 */
	reply(&r, 451, "4.7.65", "4.7.65 busy");
	assert_string_equal(matched(&m, "bigcorp", &r), "class");
	assert_string_equal(matched(&m, "BIGcorp", &r), "class"); /* groups: case ignored */
	assert_string_equal(matched(&m, "smallcorp", &r), "-");
	assert_string_equal(matched(&m, NULL, &r), "-");
	reply(&r, 451, "4.7.6", "4.7.6 busy");
	assert_string_equal(matched(&m, "bigcorp", &r), "-");
	reply(&r, 550, "5.1.1", "5.1.1 no such");
	assert_string_equal(matched(&m, "x", &r), "five"); /* anchored on the text without its code */
	reply(&r, 450, "4.1.1", "4.1.1 no such");
	assert_string_equal(matched(&m, "x", &r), "-");
	reply(&r, 250, "2.0.0", "2.0.0 [TSS04] rate limit exceeded spamhaus");
	assert_string_equal(matched(&m, "yahoo", &r), "-");
	/* clean refusals the shipped file leaves to their code */
	reply(&r, 550, "5.1.1", "5.1.1 The email account that you tried to reach does not exist.");
	assert_string_equal(matched(&m, "gmail", &r), "-");
	reply(&r, 452, "4.2.2", "4.2.2 The email account that you tried to reach is over quota.");
	assert_string_equal(matched(&m, "gmail", &r), "-");
	/* a NUL from a server ends the text an expression sees */
	reply(&r, 421, "", "fine");
	memcpy(r.text + 4, "\0 TSS04", 8);
	r.text_len = 11;
	assert_string_equal(matched(&m, "yahoo", &r), "-");
	reply_matcher_free(&m);
	config_free(&c);
}

static void durations(void **state)
{
	int64_t ms = 0;
	assert_true(config_duration_parse("90", &ms) && ms == 90000);
	assert_true(config_duration_parse("90s", &ms) && ms == 90000);
	assert_true(config_duration_parse("30m", &ms) && ms == 1800000);
	assert_true(config_duration_parse("2h", &ms) && ms == 7200000);
	assert_true(config_duration_parse("1d", &ms) && ms == 86400000);
	assert_true(config_duration_parse("0.5s", &ms) && ms == 500);
	const char *bad[] = { "", "0", "-1h", "2w", "h", "1hh", "400d", "nan", "1 h" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (config_duration_parse(bad[i], &ms))
			fail_msg("'%s' parsed", bad[i]);
}

/* Budgets: a wave's size shared by weight (the shares add up), warm-up
 * days and caps, civil days. */
static void budgets(void **state)
{
	struct source_ip srcs[3] = { { .text = "127.0.0.10" }, { .text = "127.0.0.11" }, { .text = "127.0.0.12" } };
	struct pool_member mem[3] = { { 0, 3 }, { 1, 1 }, { 2, 1 } };
	struct pool p = { "a", mem, 3 };
	struct config c;
	memset(&c, 0, sizeof(c));
	c.sources = srcs;
	c.nsources = 3;
	c.pools = &p;
	c.npools = 1;
	for (unsigned n = 0; n < 200; n++) {
		unsigned a = config_pool_share(&c, 0, 0, n), b = config_pool_share(&c, 0, 1, n), d = config_pool_share(&c, 0, 2, n);
		if (a + b + d != n)
			fail_msg("size %u shared as %u + %u + %u", n, a, b, d);
		assert_true(a >= 3 * n / 5 && a <= 3 * n / 5 + 1 && b <= n / 5 + 1 && d <= n / 5 + 1);
	}
	assert_int_equal(config_pool_share(&c, 0, 0, 40), 24);
	assert_int_equal(config_pool_share(&c, 0, 1, 40), 8);
	assert_int_equal(config_pool_share(&c, 0, 1, 7), 2); /* 4.2, 1.4, 1.4: the first of the tied .4s */
	assert_int_equal(config_pool_share(&c, 0, 2, 7), 1);
	assert_int_equal(config_pool_share(&c, -1, 0, 40), 40); /* unbound: the whole wave */
	assert_int_equal(config_pool_share(&c, 0, 7, 40), 40);
	assert_true(civil_days(1970, 1, 1) == 0);
	assert_true(civil_days(2000, 3, 1) == 11017);
	assert_true(civil_days(2026, 12, 2) == 20789);
	assert_true(civil_days(2024, 3, 1) - civil_days(2024, 2, 28) == 2); /* leap year */
	unsigned plan[3] = { 50, 100, 500 };
	struct warm_ip w = { .start_day = 20789, .plan = plan, .nplan = 3 };
	assert_int_equal(config_warm_cap(&c, &w, 20788), 50); /* before its start: day one's */
	assert_int_equal(config_warm_cap(&c, &w, 20789), 50);
	assert_int_equal(config_warm_cap(&c, &w, 20791), 500);
	assert_int_equal(config_warm_cap(&c, &w, 20792), 0);  /* after the plan: no cap */
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-rules.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shipped_rules),
		cmocka_unit_test(matching),
		cmocka_unit_test(durations),
		cmocka_unit_test(budgets),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = rc ? rc : 1;
	return rc;
}
