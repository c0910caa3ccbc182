/* tests/unit/test_config_limits.c - the limits of a (source IP, MX group)
 * pair (defaults < shipped group rule < config any-group rule < config
 * group rule < pool rule < source rule, field by field; automatic burst),
 * the pool a message goes out of, rates; and the configuration that fills
 * them: pools, source IPs (flags first, deduplicated), pool rules, shaping
 * rules, the providers file (shipped, installed and built in), and the
 * errors that refuse a configuration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../../engine/config.h"
#include "../../engine/providers_embed.h"

/* Relative to the repository root, where make runs the unit tests. */
#define SHIPPED_PROVIDERS "share/sluice/providers.conf"

static void rates(void **state)
{
	double r = -1;
	assert_true(config_rate_parse("100/s", &r));
	assert_true(r == 100);
	assert_true(config_rate_parse("6000/m", &r));
	assert_true(r == 100);
	assert_true(config_rate_parse("36000/h", &r));
	assert_true(r == 10);
	assert_true(config_rate_parse("1.5/s", &r));
	assert_true(r == 1.5);
	assert_true(config_rate_parse("30/m", &r));
	assert_true(fabs(r - 0.5) < 1e-12);
	const char *bad[] = { "abc", "10/x", "0/s", "-1/s", "10/", "10/ss", "/s", "", "10", "inf/s", "nan/s",
	                      "1e400/s", "10 /s", "10/s " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		r = -1;
		if (config_rate_parse(bad[i], &r))
			fail_msg("'%s' parsed as %g", bad[i], r);
	}
}

/* A configuration by hand: two source IPs, pool "mk" holds the first. */
static struct source_ip srcs[2] = { { .text = "127.0.0.10" }, { .text = "127.0.0.11" } };
static struct pool_member mk_members[1] = { { 0, 1 } };
static struct pool pools3[3] = { { "a", mk_members, 1 }, { "b", mk_members, 1 }, { "c", mk_members, 1 } };
static struct pool mk_pool = { "mk", mk_members, 1 };

static void base(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->max_connections = 20;
	c->max_per_connection = 1000;
	c->sources = srcs;
	c->nsources = 2;
	c->pools = &mk_pool;
	c->npools = 1;
	c->default_pool = 0;
}

static void precedence(void **state)
{
	/* in an order that is none of the ranks: the rank decides, not the place */
	struct shape_rule rules[] = {
		{ .group = "gmail", .source = "127.0.0.10", .set = SHAPE_MAXCONN, .lim = { .max_connections = 6 } },
		{ .group = "gmail", .pool = "mk", .set = SHAPE_MAXCONN | SHAPE_PERCONN,
		  .lim = { .max_connections = 5, .max_per_connection = 40 } },
		{ .group = "gmail", .set = SHAPE_MAXCONN | SHAPE_PERCONN | SHAPE_RATE,
		  .lim = { .max_connections = 4, .max_per_connection = 30, .max_rate = 3 } },
		{ .group = NULL, .set = SHAPE_MAXCONN | SHAPE_PERCONN | SHAPE_RATE | SHAPE_NEWCONN,
		  .lim = { .max_connections = 3, .max_per_connection = 20, .max_rate = 2, .max_new_conn_rate = 1 } },
		{ .group = "gmail", .shipped = true,
		  .set = SHAPE_MAXCONN | SHAPE_PERCONN | SHAPE_RATE | SHAPE_BURST | SHAPE_NEWCONN,
		  .lim = { 2, 10, 1, 7, 0.5 } },
		{ .group = "yahoo", .shipped = true, .set = SHAPE_RATE, .lim = { .max_rate = 25 } },
		{ .group = "other", .source = "127.0.0.11", .set = SHAPE_PERCONN, .lim = { .max_per_connection = 9 } },
	};
	struct config c;
	base(&c);
	c.shape_rules = rules;
	c.nshape_rules = sizeof(rules) / sizeof(*rules);
	struct shape_limits l;
	/* the first IP, in pool mk: every level has its say on some field */
	config_pair_limits(&c, 0, "gmail", &l);
	assert_int_equal(l.max_connections, 6);        /* source rule */
	assert_int_equal(l.max_per_connection, 40);    /* pool rule */
	assert_true(l.max_rate == 3);                   /* config group rule */
	assert_int_equal(l.burst, 7);                   /* shipped group rule */
	assert_true(l.max_new_conn_rate == 1);          /* config any-group beats shipped group */
	/* the second IP: no source or pool rule of gmail */
	config_pair_limits(&c, 1, "gmail", &l);
	assert_int_equal(l.max_connections, 4);
	assert_int_equal(l.max_per_connection, 30);
	assert_true(l.max_rate == 3);
	assert_int_equal(l.burst, 7);
	/* another group: the config's any-group rule over the defaults */
	config_pair_limits(&c, 0, "hotmail", &l);
	assert_int_equal(l.max_connections, 3);
	assert_int_equal(l.max_per_connection, 20);
	assert_true(l.max_rate == 2);
	assert_int_equal(l.burst, 1);                   /* automatic: 2/s -> 1 */
	/* the config's any-group rate (2) beats the shipped yahoo rate (25) */
	config_pair_limits(&c, 0, "yahoo", &l);
	assert_true(l.max_rate == 2);
	/* a source rule only for its own IP and group */
	config_pair_limits(&c, 1, "other", &l);
	assert_int_equal(l.max_per_connection, 9);
	config_pair_limits(&c, 0, "other", &l);
	assert_int_equal(l.max_per_connection, 20);
	/* the unbound source (-1) and no group: only rules for every group and IP */
	config_pair_limits(&c, -1, NULL, &l);
	assert_int_equal(l.max_connections, 3);
	assert_true(l.max_rate == 2);
	/* no rules: the defaults */
	c.nshape_rules = 0;
	config_pair_limits(&c, 0, "gmail", &l);
	assert_int_equal(l.max_connections, 20);
	assert_int_equal(l.max_per_connection, 1000);
	assert_true(l.max_rate == 0 && l.max_new_conn_rate == 0);
	assert_int_equal(l.burst, 1);
}

static void automatic_burst(void **state)
{
	struct config c;
	struct shape_limits l;
	base(&c);
	const struct { double rate; unsigned burst; } cases[] = {
		{ 0, 1 }, { 0.5, 1 }, { 5, 1 }, { 10, 1 }, { 25, 3 }, { 100, 10 }, { 101, 11 }, { 10000, 1000 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		c.max_rate = cases[i].rate;
		config_pair_limits(&c, 0, "g", &l);
		assert_int_equal(l.burst, cases[i].burst);
	}
	c.max_rate = 100;
	c.rate_burst = 9; /* delivery.rate-burst: no longer automatic */
	config_pair_limits(&c, 0, "g", &l);
	assert_int_equal(l.burst, 9);
	struct shape_rule r = { .group = "g", .set = SHAPE_RATE, .lim = { .max_rate = 300 } };
	c.rate_burst = 0;
	c.shape_rules = &r;
	c.nshape_rules = 1;
	config_pair_limits(&c, 0, "g", &l); /* a rule's rate, the burst automatic for it */
	assert_int_equal(l.burst, 30);
}

static void pool_for(void **state)
{
	struct pool_rule rules[] = {
		{ .sender_domain = "News.Example.com", .pool = 0 },
		{ .job = "spring-sale", .pool = 2 },
	};
	struct config c;
	base(&c);
	c.pools = pools3;
	c.npools = 3;
	c.default_pool = 1;
	c.pool_rules = rules;
	c.npool_rules = 2;
	assert_int_equal(config_pool_for(&c, "c", "spring-sale", "a@news.example.com"), 2);
	assert_int_equal(config_pool_for(&c, "a", NULL, NULL), 0);
	assert_int_equal(config_pool_for(&c, "zz", NULL, NULL), CONFIG_UNKNOWN_POOL);
	assert_int_equal(config_pool_for(&c, "A", NULL, NULL), CONFIG_UNKNOWN_POOL); /* names are exact */
	/* a job rule before a sender-domain rule, whatever their order */
	assert_int_equal(config_pool_for(&c, NULL, "spring-sale", "a@news.example.com"), 2);
	assert_int_equal(config_pool_for(&c, NULL, "Spring-Sale", "x@NEWS.example.COM"), 0);
	assert_int_equal(config_pool_for(&c, NULL, NULL, "x@news.example.com"), 0);
	assert_int_equal(config_pool_for(&c, NULL, NULL, "x@sub.news.example.com"), 1);
	assert_int_equal(config_pool_for(&c, NULL, "other", "x@else.example"), 1);
	assert_int_equal(config_pool_for(&c, NULL, NULL, ""), 1);
	assert_int_equal(config_pool_for(&c, NULL, NULL, NULL), 1);
	c.default_pool = -1; /* none named: the first */
	assert_int_equal(config_pool_for(&c, NULL, NULL, NULL), 0);
	c.npools = 0;
	assert_int_equal(config_pool_for(&c, NULL, "spring-sale", NULL), CONFIG_NO_POOL);
	assert_int_equal(config_pool_for(&c, "a", NULL, NULL), CONFIG_UNKNOWN_POOL);
	base(&c);
	assert_int_equal(config_source_index(&c, "127.0.0.11"), 1);
	assert_int_equal(config_source_index(&c, "127.0.0.12"), -1);
	assert_int_equal(config_source_index(&c, NULL), -1);
}

/* ---- the configuration file ---- */

static char dir[64];

static const char *write_file(const char *name, const char *text)
{
	static char path[2][128];
	static int n;
	char *p = path[n++ % 2];
	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

/* config_reload() on "run" + args (NULL-terminated): true when accepted. */
static bool load(struct config *c, char *err, size_t len, ...)
{
	char *argv[32] = { "sluice-run", "--dns-server", "127.0.0.1:53" };
	int argc = 3;
	va_list ap;
	va_start(ap, len);
	for (char *a; (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	err[0] = 0;
	return config_reload(c, argc, argv, err, len);
}

static const char providers_test[] =
	"# two providers\n"
	"providers = (\n"
	"  { group = \"gmail\"; mx = [ \"*.google.com\" ]; max-connections = 2; max-rate = \"10/m\"; },\n"
	"  { group = \"yahoo\"; mx = [ \"*.yahoodns.net\" ]; max-per-connection = 20; }\n"
	");\n";

static void file_full(void **state)
{
	char conf[2048], err[600];
	const char *prov = write_file("prov.conf", providers_test);
	snprintf(conf, sizeof(conf),
	         "helo = \"mta.example.net\";\n"
	         "pools = (\n"
	         "  { name = \"marketing\";\n"
	         "    ips = ( { ip = \"127.0.0.10\"; helo = \"mta10.example.net\"; weight = 2; },\n"
	         "            { ip = \"127.0.0.11\"; } ); },\n"
	         "  { name = \"transactional\"; ips = ( { ip = \"127.0.0.12\"; }, { ip = \"127.0.0.10\"; } ); }\n"
	         ");\n"
	         "default-pool = \"transactional\";\n"
	         "pool-rules = ( { job = \"spring-sale\"; pool = \"transactional\"; },\n"
	         "               { sender-domain = \"news.example.com\"; pool = \"marketing\"; } );\n"
	         "routes = ( { domain = \"*\"; host = \"127.0.0.1\"; port = 2525; group = \"bigmail\"; } );\n"
	         "mx-groups = ( { group = \"corp\"; mx = [ \"*.corp.example\" ]; } );\n"
	         "delivery: { max-rate = \"6000/m\"; rate-burst = 7; max-new-connections = \"60/m\";\n"
	         "            max-connections = 8; max-per-connection = 90; };\n"
	         "shaping: {\n"
	         "  providers = \"%s\";\n"
	         "  rules = ( { group = \"gmail\"; mx = [ \"*.google.example\" ]; source = \"127.0.0.10\";\n"
	         "              max-connections = 5; max-per-connection = 50; max-rate = \"20/s\"; burst = 5;\n"
	         "              max-new-connections = \"30/m\"; },\n"
	         "            { group = \"*\"; pool = \"marketing\"; max-rate = \"1/s\"; },\n"
	         "            { max-per-connection = 3; } );\n"
	         "};\n", prov);
	const char *path = write_file("full.conf", conf);
	struct config c;
	if (!load(&c, err, sizeof(err), "-c", path, (char *)NULL))
		fail_msg("refused: %s", err);
	assert_int_equal(c.nsources, 3); /* 127.0.0.10 once */
	assert_string_equal(c.sources[0].text, "127.0.0.10");
	assert_string_equal(c.sources[0].helo, "mta10.example.net");
	assert_string_equal(c.sources[1].text, "127.0.0.11");
	assert_null(c.sources[1].helo);
	assert_string_equal(c.sources[2].text, "127.0.0.12");
	assert_int_equal(c.npools, 2);
	assert_string_equal(c.pools[0].name, "marketing");
	assert_int_equal(c.pools[0].nmembers, 2);
	assert_int_equal(c.pools[0].members[0].source, 0);
	assert_int_equal(c.pools[0].members[0].weight, 2);
	assert_int_equal(c.pools[0].members[1].weight, 1);
	assert_int_equal(c.pools[1].members[0].source, 2);
	assert_int_equal(c.pools[1].members[1].source, 0);
	assert_int_equal(c.default_pool, 1);
	assert_int_equal(c.npool_rules, 2);
	assert_int_equal(c.pool_rules[0].pool, 1);
	assert_int_equal(c.pool_rules[1].pool, 0);
	assert_int_equal(config_pool_for(&c, NULL, NULL, "a@News.Example.com"), 0);
	assert_string_equal(c.routes[0].group, "bigmail");
	assert_true(c.max_rate == 100);
	assert_int_equal(c.rate_burst, 7);
	assert_true(c.max_new_conn_rate == 1);
	assert_string_equal(c.providers_path, prov);
	/* shipped first, then the config's, in order */
	assert_int_equal(c.nshape_rules, 5);
	assert_true(c.shape_rules[0].shipped && c.shape_rules[1].shipped);
	assert_string_equal(c.shape_rules[0].group, "gmail");
	assert_int_equal(c.shape_rules[0].set, SHAPE_MAXCONN | SHAPE_RATE);
	assert_true(fabs(c.shape_rules[0].lim.max_rate - 10.0 / 60) < 1e-12);
	assert_string_equal(c.shape_rules[1].group, "yahoo");
	const struct shape_rule *r = &c.shape_rules[2];
	assert_false(r->shipped);
	assert_string_equal(r->group, "gmail");
	assert_string_equal(r->source, "127.0.0.10");
	assert_null(r->pool);
	assert_int_equal(r->set, SHAPE_MAXCONN | SHAPE_PERCONN | SHAPE_RATE | SHAPE_BURST | SHAPE_NEWCONN);
	assert_int_equal(r->lim.max_connections, 5);
	assert_int_equal(r->lim.max_per_connection, 50);
	assert_true(r->lim.max_rate == 20);
	assert_int_equal(r->lim.burst, 5);
	assert_true(r->lim.max_new_conn_rate == 0.5);
	r = &c.shape_rules[3];
	assert_null(r->group); /* "*" */
	assert_string_equal(r->pool, "marketing");
	assert_int_equal(r->set, SHAPE_RATE);
	assert_null(c.shape_rules[4].group);
	assert_int_equal(c.shape_rules[4].set, SHAPE_PERCONN);
	/* MX patterns: the config's (mx-groups, then shaping.rules), then the providers' */
	assert_int_equal(c.nmx_groups, 4);
	assert_string_equal(c.mx_groups[0].pattern, "*.corp.example");
	assert_string_equal(c.mx_groups[1].pattern, "*.google.example");
	assert_string_equal(c.mx_groups[1].group, "gmail");
	assert_string_equal(c.mx_groups[2].pattern, "*.google.com");
	assert_string_equal(c.mx_groups[3].group, "yahoo");
	/* and what they add up to */
	struct shape_limits l;
	config_pair_limits(&c, 0, "gmail", &l); /* 127.0.0.10: its source rule */
	assert_int_equal(l.max_connections, 5);
	assert_int_equal(l.max_per_connection, 50);
	assert_true(l.max_rate == 20);
	config_pair_limits(&c, 1, "gmail", &l); /* 127.0.0.11, marketing */
	assert_int_equal(l.max_connections, 2);        /* shipped */
	assert_int_equal(l.max_per_connection, 3);     /* config, every group */
	assert_true(l.max_rate == 1);                   /* marketing's pool rule */
	config_pair_limits(&c, 2, "yahoo", &l);         /* 127.0.0.12: not in marketing */
	assert_int_equal(l.max_connections, 8);
	assert_int_equal(l.max_per_connection, 3);
	assert_true(l.max_rate == 100);
	assert_int_equal(l.burst, 7);
	config_free(&c);
}

/* --source-ip: first in sources, the pool "default" (replacing the file's),
 * the default pool whatever default-pool says. */
static void source_flags(void **state)
{
	char err[600];
	const char *path = write_file("flags.conf",
		"pools = ( { name = \"default\"; ips = ( { ip = \"192.0.2.1\"; } ); },\n"
		"          { name = \"m\"; ips = ( { ip = \"127.0.0.11\"; }, { ip = \"127.0.0.10\"; helo = \"m10.example\"; } ); } );\n"
		"default-pool = \"m\";\n"
		"shaping: { providers = \"\"; rules = ( { pool = \"default\"; max-rate = \"1/s\"; } ); };\n");
	struct config c;
	if (!load(&c, err, sizeof(err), "-c", path, "--source-ip", "127.0.0.12", "--source-ip", "127.0.0.10",
	          "--source-ip", "127.0.0.12", "--max-rate", "50/s", (char *)NULL))
		fail_msg("refused: %s", err);
	assert_int_equal(c.nsources, 3);
	assert_string_equal(c.sources[0].text, "127.0.0.12");
	assert_string_equal(c.sources[1].text, "127.0.0.10");
	assert_string_equal(c.sources[2].text, "127.0.0.11");
	assert_null(c.sources[0].helo);
	assert_string_equal(c.sources[1].helo, "m10.example"); /* a pool named it */
	assert_int_equal(c.npools, 2);
	assert_string_equal(c.pools[0].name, "default");
	assert_int_equal(c.pools[0].nmembers, 2);
	assert_int_equal(c.pools[0].members[0].source, 0);
	assert_int_equal(c.pools[0].members[0].weight, 1);
	assert_int_equal(c.pools[0].members[1].source, 1);
	assert_int_equal(c.default_pool, 0);
	assert_true(c.max_rate == 50);
	assert_null(c.providers_path); /* "": none */
	assert_int_equal(c.nshape_rules, 1);
	config_free(&c);
	/* flags alone */
	if (!load(&c, err, sizeof(err), "--source-ip", "::1", "--source-ip", "0:0::1", "--helo", "x.example",
	          (char *)NULL))
		fail_msg("refused: %s", err);
	assert_int_equal(c.nsources, 1);
	assert_string_equal(c.sources[0].text, "::1");
	assert_int_equal(c.npools, 1);
	assert_int_equal(c.default_pool, 0);
	config_free(&c);
	/* no source IPs at all */
	if (!load(&c, err, sizeof(err), (char *)NULL))
		fail_msg("refused: %s", err);
	assert_int_equal(c.nsources, 0);
	assert_int_equal(c.npools, 0);
	assert_int_equal(c.default_pool, -1);
	assert_int_equal(config_pool_for(&c, NULL, NULL, NULL), CONFIG_NO_POOL);
	config_free(&c);
}

/* Each refused with a clear message (where the file has one: its line). */
static void refusals(void **state)
{
	const struct { const char *conf, *flag, *want; } cases[] = {
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"192.0.2.1\"; } ); } );", NULL,
		  "bad.conf:1: pools[0].ips[0].ip: source IP 192.0.2.1 is not an address of this machine" },
		{ "\npools = ( { name = \"a\"; ips = ( { ip = \"mx.example\"; } ); } );", NULL,
		  "bad.conf:2: pools[0].ips[0].ip: source IP 'mx.example' must be a numeric" },
		{ "pools = ( { name = \"a\"; ips = (); } );", NULL, "pool 'a' has no IPs" },
		{ "pools = ( { name = \"a\"; } );", NULL, "pool 'a' has no IPs" },
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"127.0.0.10\"; weight = 0; } ); } );", NULL,
		  "bad.conf:1: pools[0].ips[0].weight must be 1..1000000" },
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"127.0.0.10\"; } ); },\n"
		  "          { name = \"a\"; ips = ( { ip = \"127.0.0.11\"; } ); } );", NULL,
		  "bad.conf:2: pools[1]: pool name 'a' is used twice" },
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"127.0.0.10\"; }, { ip = \"127.0.0.10\"; } ); } );", NULL,
		  "127.0.0.10 is listed twice in pool 'a'" },
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"127.0.0.10\"; helo = \"a.example\"; } ); },\n"
		  "          { name = \"b\"; ips = ( { ip = \"127.0.0.10\"; helo = \"b.example\"; } ); } );", NULL,
		  "one name per IP" },
		{ "default-pool = \"x\";", NULL, "bad.conf:1: default-pool: no pool named 'x'" },
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"127.0.0.10\"; } ); } );\n"
		  "pool-rules = ( { job = \"j\"; pool = \"b\"; } );", NULL,
		  "bad.conf:2: pool-rules[0].pool: no pool named 'b' (pools: a)" },
		{ "pool-rules = ( { job = \"j\"; sender-domain = \"x.example\"; pool = \"b\"; } );", NULL,
		  "needs pool and one of job or sender-domain" },
		{ "shaping: { rules = ( { pool = \"zz\"; max-rate = \"1/s\"; } ); };", NULL,
		  "bad.conf:1: shaping.rules[0]: no pool named 'zz'" },
		{ "pools = ( { name = \"a\"; ips = ( { ip = \"127.0.0.10\"; } ); } );\n"
		  "shaping: { rules = ( { pool = \"a\"; source = \"127.0.0.10\"; } ); };", NULL,
		  "bad.conf:2: shaping.rules[0]: source and pool exclude each other" },
		{ "shaping: { rules = ( { source = \"127.0.0.1\"; max-connections = 1; } ); };", NULL,
		  "shaping.rules[0].source 127.0.0.1 is not one of the source IPs" },
		{ "shaping: { rules = ( { max-rate = \"0/s\"; } ); };", NULL, "shaping.rules[0].max-rate '0/s' is not a rate" },
		{ "shaping: { rules = ( { max-rate = \"-1/s\"; } ); };", NULL, "'-1/s' is not a rate" },
		{ "shaping: { rules = ( { max-new-connections = \"abc\"; } ); };", NULL, "'abc' is not a rate" },
		{ "delivery: { max-rate = \"10/x\"; };", NULL, "bad.conf:1: delivery.max-rate '10/x' is not a rate" },
		{ "delivery: { max-rate = 10; };", NULL, "delivery.max-rate must be a rate" },
		{ "delivery: { rate-burst = 0; };", NULL, "delivery.rate-burst must be 1..1000000" },
		{ "shaping: { rules = ( { mx = [ \"*.x\" ]; max-rate = \"1/s\"; } ); };", NULL, "mx needs a group name" },
		{ "shaping: { rules = ( { group = \"g\"; weight = 1; } ); };", NULL, "unknown setting 'shaping.rules[0].weight'" },
		{ "shaping: { providers = \"/nonexistent/p.conf\"; };", NULL, "shaping.providers /nonexistent/p.conf" },
		{ "", "--max-rate=abc", "--max-rate 'abc' is not a rate" },
		{ "", "--max-rate=10/x", "--max-rate '10/x' is not a rate" },
		{ "", "--source-ip=192.0.2.1", "--source-ip: source IP 192.0.2.1 is not an address of this machine" },
		{ "", "--source-ip=mx.example", "must be a numeric IPv4 or IPv6 address" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char err[600];
		struct config c;
		const char *path = write_file("bad.conf", cases[i].conf);
		bool ok = cases[i].flag ? load(&c, err, sizeof(err), "-c", path, cases[i].flag, (char *)NULL)
		                        : load(&c, err, sizeof(err), "-c", path, (char *)NULL);
		if (ok) {
			config_free(&c);
			fail_msg("accepted: %s %s", cases[i].conf, cases[i].flag ? cases[i].flag : "");
		}
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, err);
	}
}

/* The providers file: errors name it and the line; the shipped one parses. */
static void providers_file(void **state)
{
	char err[600], conf[300];
	struct config c;
	const char *prov = write_file("prov.conf", "providers = (\n  { group = \"g\"; max-rate = \"fast\"; }\n);\n");
	snprintf(conf, sizeof(conf), "shaping: { providers = \"%s\"; };\n", prov);
	char path[128];
	snprintf(path, sizeof(path), "%s", write_file("p.conf", conf));
	assert_false(load(&c, err, sizeof(err), "-c", path, (char *)NULL));
	if (!strstr(err, "prov.conf:2: providers[0].max-rate 'fast' is not a rate"))
		fail_msg("got '%s'", err);
	write_file("prov.conf", "providers = ( { group = \"g\"; source = \"127.0.0.1\"; } );\n");
	assert_false(load(&c, err, sizeof(err), "-c", path, (char *)NULL));
	if (!strstr(err, "prov.conf:1: unknown setting 'providers[0].source'"))
		fail_msg("got '%s'", err);
	write_file("prov.conf", "providers = ( { max-connections = 3; } );\n");
	assert_false(load(&c, err, sizeof(err), "-c", path, (char *)NULL));
	if (!strstr(err, "prov.conf:1: providers[0] needs group"))
		fail_msg("got '%s'", err);
	write_file("prov.conf", "providers = ( { group = \"g\"; }\n");
	assert_false(load(&c, err, sizeof(err), "-c", path, (char *)NULL));
	if (!strstr(err, "prov.conf:2: syntax error"))
		fail_msg("got '%s'", err);

	/* the shipped file */
	snprintf(conf, sizeof(conf), "shaping: { providers = \"%s\"; };\n", SHIPPED_PROVIDERS);
	snprintf(path, sizeof(path), "%s", write_file("p.conf", conf));
	if (!load(&c, err, sizeof(err), "-c", path, (char *)NULL))
		fail_msg("the shipped providers.conf is refused: %s", err);
	unsigned shipped = c.nshape_rules;
	assert_true(shipped >= 10);
	const char *groups[] = { "gmail", "yahoo", "outlook", "icloud", "gmx", "comcast", "orange", "free",
	                         "mailru", "yandex" };
	for (size_t g = 0; g < sizeof(groups) / sizeof(*groups); g++) {
		bool found = false;
		for (unsigned i = 0; i < c.nshape_rules; i++)
			if (strcmp(c.shape_rules[i].group, groups[g]) == 0) {
				found = true;
				assert_true(c.shape_rules[i].shipped);
				assert_true(c.shape_rules[i].set & SHAPE_MAXCONN);
				assert_true(c.shape_rules[i].set & SHAPE_PERCONN);
				assert_true(c.shape_rules[i].set & SHAPE_RATE);
			}
		if (!found)
			fail_msg("no provider rule for %s", groups[g]);
	}
	bool yahoo_mx = false;
	for (unsigned i = 0; i < c.nmx_groups; i++)
		yahoo_mx = yahoo_mx || (strcmp(c.mx_groups[i].pattern, "*.yahoodns.net") == 0 &&
		                        strcmp(c.mx_groups[i].group, "yahoo") == 0);
	assert_true(yahoo_mx);
	config_free(&c);

	/* the copy built in is the shipped file, and is what a configuration
	 * without shaping.providers reads when none is installed */
	FILE *f = fopen(SHIPPED_PROVIDERS, "r");
	assert_non_null(f);
	static char text[1 << 16];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	assert_string_equal(sluice_providers_conf, text);
	assert_true(load(&c, err, sizeof(err), (char *)NULL));
	if (access(SLUICE_DATADIR "/providers.conf", F_OK) != 0) {
		assert_null(c.providers_path);
		assert_int_equal(c.nshape_rules, shipped);
	} else {
		assert_string_equal(c.providers_path, SLUICE_DATADIR "/providers.conf");
	}
	config_free(&c);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-cfgtest.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rates),
		cmocka_unit_test(precedence),
		cmocka_unit_test(automatic_burst),
		cmocka_unit_test(pool_for),
		cmocka_unit_test(file_full),
		cmocka_unit_test(source_flags),
		cmocka_unit_test(refusals),
		cmocka_unit_test(providers_file),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = rc ? rc : 1;
	return rc;
}
