/* tests/unit/test_doctor_records.c - the doctor's record readers without
 * a DNS server: SPF macro expansion on RFC 7208 section 7.4's own
 * examples (the name an exists: asks is recorded by a fake DNS), limits
 * and syntax on hand-made answers; tag lists (duplicates, empty parts);
 * DMARC records and alignment through the public suffix list; DKIM p=
 * values against a generated key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "../../dns/spf.h"
#include "../../dns/dmarc.h"
#include "../../dkim/keys.h"
#include "../../engine/lib/tags.h"
#include "../../engine/lib/util.h"

/* ---- a fake DNS: TXT and A records by name; every name asked is kept ---- */

struct fake_rr { const char *name; uint16_t type; const char *text; };

static const struct fake_rr *zone;
static char asked[32][300];
static unsigned nasked;

static void fake_ask(void *arg, const char *name, uint16_t type, struct dns_answer *out, char *err, size_t len)
{
	(void)arg;
	(void)err;
	(void)len;
	if (nasked < 32)
		snprintf(asked[nasked++], sizeof(asked[0]), "%s", name);
	memset(out, 0, sizeof(*out));
	out->status = DNS_NXDOMAIN;
	for (const struct fake_rr *r = zone; r && r->name; r++) {
		if (strcasecmp(r->name, name))
			continue;
		out->status = DNS_NODATA;
		if (r->type != type)
			continue;
		out->status = DNS_OK;
		out->rr = realloc(out->rr, (out->n + 1) * sizeof(*out->rr));
		struct dns_rr *rr = &out->rr[out->n++];
		memset(rr, 0, sizeof(*rr));
		rr->type = type;
		if (type == DNS_T_A)
			inet_pton(AF_INET, r->text, rr->addr);
		else
			rr->text = xstrdup(r->text);
	}
}

static struct spf_eval run(const struct fake_rr *z, const char *ip, const char *sender)
{
	struct spf_eval e;
	struct spf_query q = { ip, sender, "mx.example.org", fake_ask, NULL };
	zone = z;
	nasked = 0;
	spf_check_host(&q, &e);
	return e;
}

static bool was_asked(const char *name)
{
	for (unsigned i = 0; i < nasked; i++)
		if (!strcmp(asked[i], name))
			return true;
	return false;
}

/* RFC 7208 7.4: sender strong-bad@email.example.com, IP 192.0.2.3 and 2001:db8::cb01. */
static void test_spf_macros_rfc_examples(void **state)
{
	(void)state;
	static const struct { const char *macro, *want; } cases[] = {
		{ "%{s}.x.test", "strong-bad@email.example.com.x.test" },
		{ "%{S}.x.test", "strong-bad%40email.example.com.x.test" },
		{ "a%%b%_c%-d.x.test", "a%b c%20d.x.test" },
		{ "%{o}.x.test", "email.example.com.x.test" },
		{ "%{d4}.x.test", "email.example.com.x.test" },
		{ "%{d3}.x.test", "email.example.com.x.test" },
		{ "%{d2}.x.test", "example.com.x.test" },
		{ "%{d1}.x.test", "com.x.test" },
		{ "%{dr}.x.test", "com.example.email.x.test" },
		{ "%{d2r}.x.test", "example.email.x.test" },
		{ "%{l}.x.test", "strong-bad.x.test" },
		{ "%{l-}.x.test", "strong.bad.x.test" },
		{ "%{lr}.x.test", "strong-bad.x.test" },
		{ "%{lr-}.x.test", "bad.strong.x.test" },
		{ "%{l1r-}.x.test", "strong.x.test" },
		{ "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com" },
		{ "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com" },
		{ "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
		{ "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com" },
		{ "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net" },
		{ "%{h}.x.test", "mx.example.org.x.test" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char rec[300];
		snprintf(rec, sizeof(rec), "v=spf1 exists:%s -all", cases[i].macro);
		struct fake_rr z[] = { { "email.example.com", DNS_T_TXT, rec }, { 0 } };
		struct spf_eval e = run(z, "192.0.2.3", "strong-bad@email.example.com");
		if (!was_asked(cases[i].want))
			fail_msg("%s: asked %s, want %s", cases[i].macro, nasked > 1 ? asked[1] : "nothing", cases[i].want);
		assert_int_equal(e.result, SPF_FAIL);
		assert_int_equal(e.lookups, 1);
		assert_int_equal(e.voids, 1);
	}
	struct fake_rr z6[] = { { "email.example.com", DNS_T_TXT, "v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all" }, { 0 } };
	run(z6, "2001:db8::cb01", "strong-bad@email.example.com");
	assert_true(was_asked("1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"));
}

static void test_spf_results(void **state)
{
	(void)state;
	struct fake_rr z[] = {
		{ "a.test", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 include:b.test ~all" },
		{ "b.test", DNS_T_TXT, "v=spf1 a:host.b.test/30 -all" },
		{ "host.b.test", DNS_T_A, "198.51.100.1" },
		{ "two.test", DNS_T_TXT, "v=spf1 -all" },
		{ "two.test", DNS_T_TXT, "v=spf1 +all" },
		{ "other.test", DNS_T_TXT, "some other text" },
		{ "bad.test", DNS_T_TXT, "v=spf1 ip4:192.0.2.1/33 -all" },
		{ "unknown.test", DNS_T_TXT, "v=spf1 foo:bar -all" },
		{ "voids.test", DNS_T_TXT, "v=spf1 a:n1.voids.test a:n2.voids.test a:n3.voids.test -all" },
		{ "redir.test", DNS_T_TXT, "v=spf1 redirect=a.test" },
		{ "redirnone.test", DNS_T_TXT, "v=spf1 redirect=nothing.test" },
		{ 0 } };
	struct spf_eval e = run(z, "192.0.2.77", "u@a.test");
	assert_int_equal(e.result, SPF_PASS);
	assert_int_equal(e.lookups, 0);
	e = run(z, "198.51.100.2", "u@a.test");
	assert_int_equal(e.result, SPF_PASS);
	assert_int_equal(e.lookups, 2);
	e = run(z, "198.51.100.9", "u@a.test");
	assert_int_equal(e.result, SPF_SOFTFAIL);
	assert_int_equal(run(z, "192.0.2.1", "two.test").result, SPF_PERMERROR);
	assert_int_equal(run(z, "192.0.2.1", "other.test").result, SPF_NONE);
	assert_int_equal(run(z, "192.0.2.1", "nothing.test").result, SPF_NONE);
	assert_int_equal(run(z, "192.0.2.1", "bad.test").result, SPF_PERMERROR);
	assert_int_equal(run(z, "192.0.2.1", "unknown.test").result, SPF_PERMERROR);
	e = run(z, "192.0.2.1", "voids.test");
	assert_int_equal(e.result, SPF_PERMERROR);
	assert_int_equal(e.voids, 3);
	assert_int_equal(run(z, "192.0.2.9", "redir.test").result, SPF_PASS);
	assert_int_equal(run(z, "192.0.2.9", "redirnone.test").result, SPF_PERMERROR);
	assert_int_equal(run(z, "192.0.2.9", "localhost").result, SPF_NONE); /* not fully qualified */
	/* where a domain-spec ends: a stray '}' is no macro; %- and %_ are; a
	 * "//" inside a macro is its delimiters, not a cidr */
	struct fake_rr z2[] = {
		{ "brace.test", DNS_T_TXT, "v=spf1 a:foo.bar} -all" },
		{ "pct.test", DNS_T_TXT, "v=spf1 a:foo.com%- ?all" },
		{ "delim.test", DNS_T_TXT, "v=spf1 a:%{d//}.x.com ?all" },
		{ 0 } };
	assert_int_equal(run(z2, "192.0.2.1", "brace.test").result, SPF_PERMERROR);
	assert_int_equal(run(z2, "192.0.2.1", "pct.test").result, SPF_NEUTRAL);
	assert_int_equal(run(z2, "192.0.2.1", "delim.test").result, SPF_NEUTRAL);
	assert_true(was_asked("delim.test.x.com"));
	/* a flattened record: hundreds of terms */
	static char flat[8192];
	size_t n = (size_t)snprintf(flat, sizeof(flat), "v=spf1");
	for (int i = 0; i < 300; i++)
		n += (size_t)snprintf(flat + n, sizeof(flat) - n, " ip4:198.51.%d.%d", i / 250, i % 250);
	snprintf(flat + n, sizeof(flat) - n, " ip4:192.0.2.1 -all");
	struct fake_rr z3[] = { { "flat.test", DNS_T_TXT, flat }, { 0 } };
	assert_int_equal(run(z3, "192.0.2.1", "flat.test").result, SPF_PASS);
	assert_int_equal(spf_all_qualifier("v=spf1 a -all"), '-');
	assert_int_equal(spf_all_qualifier("v=spf1 a all"), '+');
	assert_int_equal(spf_all_qualifier("v=spf1 a ?ALL"), '?');
	assert_int_equal(spf_all_qualifier("v=spf1 redirect=x.test"), 0);
}

/* include chains: 10 lookups are allowed, the 11th is a permerror */
static void test_spf_lookup_limit(void **state)
{
	(void)state;
	static char names[12][32], recs[12][64];
	struct fake_rr z[14];
	memset(z, 0, sizeof(z));
	for (int i = 0; i < 12; i++) {
		snprintf(names[i], sizeof(names[i]), "l%d.test", i);
		snprintf(recs[i], sizeof(recs[i]), i < 11 ? "v=spf1 include:l%d.test -all" : "v=spf1 +all", i + 1);
		z[i] = (struct fake_rr){ names[i], DNS_T_TXT, recs[i] };
	}
	struct spf_eval e = run(z, "192.0.2.1", "l1.test"); /* l1 -> l11: 10 includes */
	assert_int_equal(e.result, SPF_PASS);
	assert_int_equal(e.lookups, 10);
	e = run(z, "192.0.2.1", "l0.test");
	assert_int_equal(e.result, SPF_PERMERROR);
	assert_non_null(strstr(e.detail, "more than 10 DNS lookups"));
}

static void test_tags_and_dmarc(void **state)
{
	(void)state;
	struct tag_list l;
	char why[200];
	assert_true(tags_parse(" v = DKIM1 ; k=rsa;p=AB CD ;", &l, why, sizeof(why)));
	assert_string_equal(tags_get(&l, "v"), "DKIM1");
	assert_string_equal(tags_get(&l, "p"), "AB CD");
	assert_null(tags_get(&l, "t"));
	tags_free(&l);
	assert_false(tags_parse("v=DKIM1; p=x; p=y", &l, why, sizeof(why)));
	tags_free(&l);
	assert_false(tags_parse("v=DKIM1; junk", &l, why, sizeof(why)));
	tags_free(&l);

	struct dmarc_record r;
	assert_true(dmarc_is_record("v=DMARC1; p=none"));
	assert_false(dmarc_is_record("v=DMARC10; p=none"));
	assert_true(dmarc_parse("v=DMARC1; p=Reject; adkim=s; rua=mailto:d@x.test; pct=50", &r, why, sizeof(why)));
	assert_string_equal(r.p, "reject");
	assert_int_equal(r.adkim, 's');
	assert_int_equal(r.aspf, 'r');
	assert_int_equal(r.pct, 50);
	assert_false(dmarc_parse("p=none; v=DMARC1", &r, why, sizeof(why)));
	assert_string_equal(r.problems, "");
	/* what receivers get past: defaults apply, the problem is told */
	assert_true(dmarc_parse("v=DMARC1; rua=mailto:d@x.test", &r, why, sizeof(why)));
	assert_string_equal(r.p, "none");
	assert_non_null(strstr(r.problems, "no p="));
	assert_true(dmarc_parse("v=DMARC1; p=none; aspf=x; pct=200; p=reject", &r, why, sizeof(why)));
	assert_string_equal(r.p, "none");
	assert_int_equal(r.aspf, 'r');
	assert_int_equal(r.pct, 100);
	assert_non_null(strstr(r.problems, "aspf=x"));
	assert_non_null(strstr(r.problems, "twice"));
	assert_true(dmarc_parse("v=DMARC1; p=none; rua=https://x.test", &r, why, sizeof(why)));
	assert_string_equal(r.rua, "");
	/* not usable: no valid policy and no rua */
	assert_false(dmarc_parse("v=DMARC1; p=maybe", &r, why, sizeof(why)));
	assert_false(dmarc_parse("v=DMARC1", &r, why, sizeof(why)));
	assert_true(dmarc_aligned("mail.brand.co.uk", "brand.co.uk", 'r'));
	assert_false(dmarc_aligned("mail.brand.co.uk", "brand.co.uk", 's'));
	assert_false(dmarc_aligned("other.co.uk", "brand.co.uk", 'r'));
	assert_true(dmarc_aligned("News.Example.COM", "example.com", 'r'));
	assert_string_equal(dmarc_org_domain("a.b.example.co.uk"), "example.co.uk");
}

static void test_dkim_record_key(void **state)
{
	(void)state;
	char *pem, *pub, *pem2, *pub2, err[200], warn[200];
	assert_true(dkim_key_generate(DKIM_ALG_RSA, 1024, &pem, &pub, err, sizeof(err)));
	assert_true(dkim_key_generate(DKIM_ALG_RSA, 2048, &pem2, &pub2, err, sizeof(err)));
	char path[] = "/tmp/sluice-unit-key-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
	close(fd);
	struct dkim_key k;
	assert_true(dkim_key_load(&k, path, err, sizeof(err), warn, sizeof(warn)));
	unlink(path);
	unsigned bits;
	bool same;
	assert_true(dkim_record_key(DKIM_ALG_RSA, pub, &k, &bits, &same, err, sizeof(err)));
	assert_int_equal(bits, 1024);
	assert_true(same);
	assert_true(dkim_record_key(DKIM_ALG_RSA, pub2, &k, &bits, &same, err, sizeof(err)));
	assert_int_equal(bits, 2048);
	assert_false(same);
	char *derived = dkim_key_public(&k);
	assert_string_equal(derived, pub);
	assert_false(dkim_record_key(DKIM_ALG_RSA, "not base64!", &k, &bits, &same, err, sizeof(err)));
	assert_false(dkim_record_key(DKIM_ALG_ED25519, pub, NULL, &bits, &same, err, sizeof(err)));
	free(derived);
	dkim_key_free(&k);
	free(pem);
	free(pub);
	free(pem2);
	free(pub2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spf_macros_rfc_examples),
		cmocka_unit_test(test_spf_results),
		cmocka_unit_test(test_spf_lookup_limit),
		cmocka_unit_test(test_tags_and_dmarc),
		cmocka_unit_test(test_dkim_record_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
