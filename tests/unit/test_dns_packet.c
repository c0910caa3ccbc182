/* tests/unit/test_dns_packet.c - DNS answers built byte by byte here (not
 * with ldns): good ones, and malformed ones (truncated, compression loops,
 * wrong ID, another question, bad record data) that must give a clear
 * status, never a crash. Also query building, server specs, registered
 * domains and MX groups. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <arpa/inet.h>
#include "../../dns/packet.h"
#include "../../dns/resolver.h"
#include "../../dns/mx.h"
#include "../../dns/psl.h"

struct pkt { uint8_t b[2048]; size_t n; };

static void u8(struct pkt *p, unsigned v) { p->b[p->n++] = (uint8_t)v; }
static void u16(struct pkt *p, unsigned v) { u8(p, v >> 8); u8(p, v & 255); }
static void u32(struct pkt *p, uint32_t v) { u16(p, v >> 16); u16(p, v & 0xffff); }
static void name(struct pkt *p, const char *n)
{
	while (*n) {
		const char *dot = strchr(n, '.');
		size_t l = dot ? (size_t)(dot - n) : strlen(n);
		u8(p, (unsigned)l);
		memcpy(p->b + p->n, n, l);
		p->n += l;
		n += l + (dot ? 1 : 0);
	}
	u8(p, 0);
}
static void ptr(struct pkt *p, unsigned off) { u16(p, 0xc000 | off); }

/* Header + question "example.com" type t (at offset 12). */
static void head(struct pkt *p, uint16_t id, unsigned flags, unsigned an, unsigned ns, const char *q, uint16_t t)
{
	p->n = 0;
	u16(p, id);
	u16(p, flags);
	u16(p, 1);
	u16(p, an);
	u16(p, ns);
	u16(p, 0);
	name(p, q);
	u16(p, t);
	u16(p, 1);
}
#define QR_AA_RD 0x8500
#define QNAME_OFF 12

static void mx_rr(struct pkt *p, unsigned pref, const char *host, uint32_t ttl)
{
	ptr(p, QNAME_OFF);
	u16(p, DNS_T_MX);
	u16(p, 1);
	u32(p, ttl);
	size_t len_at = p->n;
	u16(p, 0);
	u16(p, pref);
	name(p, host);
	size_t rdlen = p->n - len_at - 2;
	p->b[len_at] = (uint8_t)(rdlen >> 8);
	p->b[len_at + 1] = (uint8_t)rdlen;
}

static void soa_rr(struct pkt *p, uint32_t ttl, uint32_t minimum)
{
	ptr(p, QNAME_OFF);
	u16(p, DNS_T_SOA);
	u16(p, 1);
	u32(p, ttl);
	size_t len_at = p->n;
	u16(p, 0);
	name(p, "ns.example.com");
	name(p, "host.example.com");
	u32(p, 1); u32(p, 3600); u32(p, 600); u32(p, 86400); u32(p, minimum);
	size_t rdlen = p->n - len_at - 2;
	p->b[len_at] = (uint8_t)(rdlen >> 8);
	p->b[len_at + 1] = (uint8_t)rdlen;
}

static enum dns_status parse(const struct pkt *p, uint16_t id, const char *q, uint16_t t, struct dns_answer *a)
{
	char err[160];
	dns_answer_parse(p->b, p->n, id, q, t, a, err, sizeof(err));
	if (a->status != DNS_OK && a->status != DNS_NODATA && a->status != DNS_NXDOMAIN)
		assert_true(err[0] != 0); /* a reason for everything else */
	return a->status;
}

static void mx_answer(void **state)
{
	struct pkt p;
	struct dns_answer a;
	head(&p, 0x1234, QR_AA_RD, 3, 0, "example.com", DNS_T_MX);
	mx_rr(&p, 20, "MX2.Example.COM", 300);
	mx_rr(&p, 10, "mx1.example.com", 120);
	mx_rr(&p, 0, "", 600); /* null MX "." */
	assert_int_equal(parse(&p, 0x1234, "EXAMPLE.com", DNS_T_MX, &a), DNS_OK);
	assert_int_equal(a.n, 3);
	assert_int_equal(a.rr[0].pref, 20);
	assert_string_equal(a.rr[0].text, "mx2.example.com");
	assert_string_equal(a.rr[1].text, "mx1.example.com");
	assert_string_equal(a.rr[2].text, "");
	assert_int_equal(a.ttl, 120);
	dns_answer_free(&a);
}

static void not_our_answer(void **state)
{
	struct pkt p;
	struct dns_answer a;
	head(&p, 0x1234, QR_AA_RD, 1, 0, "example.com", DNS_T_MX);
	mx_rr(&p, 10, "mx1.example.com", 300);
	assert_int_equal(parse(&p, 0x1235, "example.com", DNS_T_MX, &a), DNS_MISMATCH);   /* wrong ID */
	assert_int_equal(parse(&p, 0x1234, "example.org", DNS_T_MX, &a), DNS_MISMATCH);   /* another name */
	assert_int_equal(parse(&p, 0x1234, "example.com", DNS_T_A, &a), DNS_MISMATCH);    /* another type */
	head(&p, 0x1234, 0x0100, 0, 0, "example.com", DNS_T_MX);                         /* a query, QR=0 */
	assert_int_equal(parse(&p, 0x1234, "example.com", DNS_T_MX, &a), DNS_MISMATCH);
	head(&p, 0x1234, QR_AA_RD, 0, 0, "example.com", DNS_T_MX);
	p.b[5] = 0;                                                                        /* no question */
	assert_int_equal(parse(&p, 0x1234, "example.com", DNS_T_MX, &a), DNS_MISMATCH);
}

static void malformed(void **state)
{
	struct pkt p;
	struct dns_answer a;
	head(&p, 7, QR_AA_RD, 1, 0, "example.com", DNS_T_MX);
	mx_rr(&p, 10, "mx1.example.com", 300);
	size_t full = p.n;
	for (size_t cut = 0; cut < full; cut++) { /* every truncation */
		p.n = cut;
		enum dns_status st = parse(&p, 7, "example.com", DNS_T_MX, &a);
		assert_true(st == DNS_MALFORMED || st == DNS_MISMATCH);
		dns_answer_free(&a);
	}
	/* a compression pointer pointing at itself, and a two-pointer loop */
	head(&p, 7, QR_AA_RD, 1, 0, "example.com", DNS_T_MX);
	size_t at = p.n;
	ptr(&p, (unsigned)at);
	u16(&p, DNS_T_MX); u16(&p, 1); u32(&p, 60); u16(&p, 4); u16(&p, 10); ptr(&p, (unsigned)at);
	assert_int_equal(parse(&p, 7, "example.com", DNS_T_MX, &a), DNS_MALFORMED);
	head(&p, 7, QR_AA_RD, 1, 0, "example.com", DNS_T_MX);
	at = p.n;
	ptr(&p, (unsigned)at + 2);
	ptr(&p, (unsigned)at);
	u16(&p, DNS_T_MX); u16(&p, 1); u32(&p, 60); u16(&p, 2); u16(&p, 10);
	assert_int_equal(parse(&p, 7, "example.com", DNS_T_MX, &a), DNS_MALFORMED);
	/* an A record with 3 bytes of address */
	head(&p, 7, QR_AA_RD, 1, 0, "example.com", DNS_T_A);
	ptr(&p, QNAME_OFF); u16(&p, DNS_T_A); u16(&p, 1); u32(&p, 60); u16(&p, 3); u8(&p, 1); u8(&p, 2); u8(&p, 3);
	assert_int_equal(parse(&p, 7, "example.com", DNS_T_A, &a), DNS_MALFORMED);
	/* an answer count larger than the records there */
	head(&p, 7, QR_AA_RD, 5, 0, "example.com", DNS_T_MX);
	mx_rr(&p, 10, "mx1.example.com", 300);
	assert_int_equal(parse(&p, 7, "example.com", DNS_T_MX, &a), DNS_MALFORMED);
	/* random garbage of every length */
	uint32_t x = 12345;
	for (size_t len = 0; len < 300; len++) {
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245 + 12345;
			p.b[i] = (uint8_t)(x >> 16);
		}
		p.n = len;
		parse(&p, dns_wire_id(p.b, len), "example.com", DNS_T_MX, &a);
		dns_answer_free(&a);
	}
}

static void negative_and_failures(void **state)
{
	struct pkt p;
	struct dns_answer a;
	head(&p, 9, QR_AA_RD | 3 /* NXDOMAIN */, 0, 1, "nosuch.example.com", DNS_T_MX);
	soa_rr(&p, 3600, 60);
	assert_int_equal(parse(&p, 9, "nosuch.example.com", DNS_T_MX, &a), DNS_NXDOMAIN);
	assert_int_equal(a.ttl, 60); /* RFC 2308: min(SOA TTL, MINIMUM) */
	head(&p, 9, QR_AA_RD, 0, 1, "example.com", DNS_T_AAAA);
	soa_rr(&p, 30, 600);
	assert_int_equal(parse(&p, 9, "example.com", DNS_T_AAAA, &a), DNS_NODATA);
	assert_int_equal(a.ttl, 30);
	head(&p, 9, QR_AA_RD | 2 /* SERVFAIL */, 0, 0, "example.com", DNS_T_MX);
	assert_int_equal(parse(&p, 9, "example.com", DNS_T_MX, &a), DNS_TEMPFAIL);
	head(&p, 9, QR_AA_RD | 5 /* REFUSED */, 0, 0, "example.com", DNS_T_MX);
	assert_int_equal(parse(&p, 9, "example.com", DNS_T_MX, &a), DNS_TEMPFAIL);
	head(&p, 9, QR_AA_RD | 0x0200 /* TC */, 0, 0, "example.com", DNS_T_MX);
	assert_int_equal(parse(&p, 9, "example.com", DNS_T_MX, &a), DNS_TRUNCATED);
}

static void cname_chain(void **state)
{
	struct pkt p;
	struct dns_answer a;
	head(&p, 3, QR_AA_RD, 3, 0, "www.example.com", DNS_T_A);
	ptr(&p, QNAME_OFF); u16(&p, DNS_T_CNAME); u16(&p, 1); u32(&p, 50);
	size_t t1 = p.n + 2;
	u16(&p, 10); name(&p, "edge.cdn"); /* 10 bytes */
	ptr(&p, (unsigned)t1); u16(&p, DNS_T_A); u16(&p, 1); u32(&p, 300); u16(&p, 4); u8(&p, 192); u8(&p, 0); u8(&p, 2); u8(&p, 7);
	/* an A for a name not in the chain is ignored */
	name(&p, "other.example"); u16(&p, DNS_T_A); u16(&p, 1); u32(&p, 300); u16(&p, 4); u32(&p, 0x01020304);
	assert_int_equal(parse(&p, 3, "www.example.com", DNS_T_A, &a), DNS_OK);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.rr[0].addr[3], 7);
	assert_int_equal(a.ttl, 50); /* the chain's shortest TTL */
	dns_answer_free(&a);
	/* a CNAME to itself: no data after the hops allowed, nothing kept
	 * (under ASan, the last hop's name leaked: fuzz_dns_packet found it) */
	head(&p, 4, QR_AA_RD, 1, 0, "loop.example.com", DNS_T_A);
	ptr(&p, QNAME_OFF); u16(&p, DNS_T_CNAME); u16(&p, 1); u32(&p, 50); u16(&p, 2); ptr(&p, QNAME_OFF);
	assert_int_equal(parse(&p, 4, "loop.example.com", DNS_T_A, &a), DNS_NODATA);
	dns_answer_free(&a);
}

static void queries(void **state)
{
	uint8_t q[DNS_QUERY_MAX];
	size_t n = dns_query_build(q, sizeof(q), 0xbeef, "Example.com", DNS_T_MX);
	assert_true(n > 12 + 13 + 4);
	assert_int_equal(dns_wire_id(q, n), 0xbeef);
	assert_int_equal(q[2] & 1, 1);          /* RD */
	assert_int_equal(q[5], 1);              /* one question */
	assert_int_equal(q[11], 1);             /* EDNS0 OPT record */
	const char *bad[] = { "", "a..b", ".a", "caf\xc3\xa9.example", "x\r\nRCPT",
	                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com" /* 64 */ };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dns_query_build(q, sizeof(q), 1, bad[i], DNS_T_A), 0);
	/* visible bytes are asked as they are (SPF macros), never read as escapes */
	n = dns_query_build(q, sizeof(q), 1, "a\\065b.x", DNS_T_A);
	assert_true(n > 12);
	assert_int_equal(q[12], 6);
	assert_memory_equal(q + 13, "a\\065b", 6);
	assert_false(dns_name_valid("a\\065b.x"));
	assert_true(dns_name_valid("_dmarc.example.com"));
	assert_true(dns_name_valid("example.com."));
	char big[300];
	memset(big, 'a', sizeof(big));
	for (int i = 50; i < 299; i += 50)
		big[i] = '.';
	big[299] = 0;
	assert_false(dns_name_valid(big)); /* over 253 */
}

static void servers(void **state)
{
	struct dns_server s;
	assert_true(dns_server_parse("127.0.0.1:5353", &s));
	assert_string_equal(s.label, "127.0.0.1:5353");
	assert_true(dns_server_parse("127.0.0.1", &s));
	assert_string_equal(s.label, "127.0.0.1:53");
	assert_true(dns_server_parse("[::1]:53", &s));
	assert_true(dns_server_parse("::1", &s));
	assert_false(dns_server_parse("dns.example:53", &s));
	assert_false(dns_server_parse("127.0.0.1:0", &s));
	assert_false(dns_server_parse("127.0.0.1:70000", &s));
}

static void groups(void **state)
{
	char g[256];
	mx_group_of(NULL, 0, "alt1.gmail-smtp-in.l.google.com", g, sizeof(g));
	assert_string_equal(g, "gmail");
	mx_group_of(NULL, 0, "mta7.am0.yahoodns.net", g, sizeof(g));
	assert_string_equal(g, "yahoo");
	mx_group_of(NULL, 0, "example-com.mail.protection.outlook.com", g, sizeof(g));
	assert_string_equal(g, "outlook");
	mx_group_of(NULL, 0, "mx1.mail.example.co.uk", g, sizeof(g));
	assert_string_equal(g, "example.co.uk");
	mx_group_of(NULL, 0, "mx.example.com", g, sizeof(g));
	assert_string_equal(g, "example.com");
	struct mx_group_rule r = { "*.example.com", "mine" };
	mx_group_of(&r, 1, "MX.Example.com", g, sizeof(g));
	assert_string_equal(g, "mine");
	assert_string_equal(psl_registered_domain("localhost"), "localhost");
	assert_string_equal(psl_registered_domain("a.b.c.example.org"), "example.org");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mx_answer), cmocka_unit_test(not_our_answer), cmocka_unit_test(malformed),
		cmocka_unit_test(negative_and_failures), cmocka_unit_test(cname_chain), cmocka_unit_test(queries),
		cmocka_unit_test(servers), cmocka_unit_test(groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
