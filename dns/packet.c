/* dns/packet.c - see packet.h. ldns does the wire format (name compression,
 * pointer loops, bounds); this file decides whether a message answers our
 * question and reduces it to records. */
#include "packet.h"
#include "../engine/lib/util.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CNAME_HOPS_MAX 8

const char *dns_status_name(enum dns_status st)
{
	static const char *names[] = { "ok", "no data", "NXDOMAIN", "temporary failure", "truncated",
	                               "malformed answer", "answer to another question", "bad name" };
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/* Labels of 1 to 63 bytes between dots (a final dot allowed), at most
 * 253 bytes; each byte a host-name one (letters, digits, '-', '_') or,
 * when !host, any printable ASCII. */
static bool name_shaped(const char *name, bool host)
{
	size_t len = strlen(name), label = 0;
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	if (len > 1 && name[len - 1] == '.')
		len--; /* fully qualified */
	for (const char *p = name; p < name + len; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		unsigned char ch = (unsigned char)*p;
		bool ok = host ? isalnum(ch) || ch == '-' || ch == '_' : ch >= 0x20 && ch <= 0x7e;
		if (!ok || ++label > 63)
			return false;
	}
	return label > 0;
}

bool dns_name_valid(const char *name)
{
	return name_shaped(name, true);
}

bool dns_name_askable(const char *name)
{
	return name_shaped(name, false);
}

/* The name as a wire-format owner name, its labels taken literally (no
 * backslash escapes: an SPF macro may expand to any visible byte). */
static ldns_rdf *dname_of(const char *name)
{
	uint8_t wire[DNS_NAME_MAX + 2];
	size_t n = 0, len = strlen(name);
	if (len > 1 && name[len - 1] == '.')
		len--;
	if (len > DNS_NAME_MAX)
		return NULL;
	for (size_t start = 0; start < len;) {
		size_t l = 0;
		while (start + l < len && name[start + l] != '.')
			l++;
		wire[n++] = (uint8_t)l;
		memcpy(wire + n, name + start, l);
		n += l;
		start += l + 1;
	}
	wire[n++] = 0;
	return ldns_dname_new_frm_data((uint16_t)n, wire);
}

size_t dns_query_build(uint8_t *out, size_t cap, uint16_t id, const char *name, uint16_t type)
{
	if (!dns_name_askable(name))
		return 0;
	ldns_rdf *qname = dname_of(name);
	if (!qname)
		return 0;
	ldns_pkt *p = ldns_pkt_query_new(qname, (ldns_rr_type)type, LDNS_RR_CLASS_IN, LDNS_RD);
	if (!p)
		return 0; /* qname is freed by ldns on failure */
	ldns_pkt_set_id(p, id);
	ldns_pkt_set_edns_udp_size(p, DNS_UDP_PAYLOAD);
	uint8_t *wire = NULL;
	size_t len = 0;
	if (ldns_pkt2wire(&wire, p, &len) != LDNS_STATUS_OK || len > cap)
		len = 0;
	else
		memcpy(out, wire, len);
	free(wire);
	ldns_pkt_free(p);
	return len;
}

uint16_t dns_wire_id(const uint8_t *wire, size_t len)
{
	return len >= 2 ? (uint16_t)(wire[0] << 8 | wire[1]) : 0;
}

/* "Mx1.Example.COM." -> "mx1.example.com"; the root -> "". */
static char *dname_text(const ldns_rdf *d)
{
	char *s = d ? ldns_rdf2str(d) : NULL;
	if (!s)
		return strdup("");
	size_t n = strlen(s);
	if (n && s[n - 1] == '.')
		s[--n] = 0;
	str_lower(s);
	return s;
}

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* RFC 2308 section 5: the SOA in the authority section gives how long a
 * negative answer may be cached. */
static uint32_t negative_ttl(const ldns_pkt *p)
{
	ldns_rr_list *auth = ldns_pkt_authority(p);
	for (size_t i = 0; i < ldns_rr_list_rr_count(auth); i++) {
		ldns_rr *rr = ldns_rr_list_rr(auth, i);
		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 7)
			continue;
		return min_u32(ldns_rr_ttl(rr), ldns_rdf2native_int32(ldns_rr_rdf(rr, 6)));
	}
	return 0;
}

static bool take_record(const ldns_rr *rr, uint16_t type, struct dns_rr *out)
{
	memset(out, 0, sizeof(*out));
	out->type = type;
	out->ttl = ldns_rr_ttl(rr);
	const ldns_rdf *f = ldns_rr_rd_count(rr) ? ldns_rr_rdf(rr, 0) : NULL;
	switch (type) {
	case DNS_T_A:
	case DNS_T_AAAA: {
		size_t want = type == DNS_T_A ? 4 : 16;
		if (!f || ldns_rdf_size(f) != want)
			return false;
		memcpy(out->addr, ldns_rdf_data(f), want);
		return true;
	}
	case DNS_T_MX:
		if (ldns_rr_rd_count(rr) != 2 || ldns_rdf_size(f) != 2)
			return false;
		out->pref = ldns_rdf2native_int16(f);
		out->text = dname_text(ldns_rr_rdf(rr, 1));
		return out->text != NULL;
	case DNS_T_PTR:
	case DNS_T_CNAME:
		out->text = dname_text(f);
		return out->text != NULL;
	case DNS_T_TXT: {
		size_t total = 0;
		for (size_t i = 0; i < ldns_rr_rd_count(rr); i++)
			total += ldns_rdf_size(ldns_rr_rdf(rr, i));
		out->text = malloc(total + 1);
		if (!out->text)
			return false;
		size_t n = 0;
		for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
			const ldns_rdf *s = ldns_rr_rdf(rr, i);
			const uint8_t *d = ldns_rdf_data(s);
			size_t sz = ldns_rdf_size(s);
			if (sz == 0 || d[0] != sz - 1)
				continue;
			memcpy(out->text + n, d + 1, sz - 1);
			n += sz - 1;
		}
		out->text[n] = 0;
		return true;
	}
	}
	return false;
}

static void set_err(struct dns_answer *a, enum dns_status st, char *err, size_t err_len,
                    const char *fmt, const char *detail)
{
	a->status = st;
	if (err && err_len)
		snprintf(err, err_len, fmt, detail);
}

/* A record of class IN, of this type, at this owner name. */
static bool rr_matches(const ldns_rr *rr, const ldns_rdf *owner, uint16_t type)
{
	return ldns_rr_get_type(rr) == type && ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN &&
	       ldns_dname_compare(ldns_rr_owner(rr), owner) == 0;
}

/* Whether p is the answer to our query (ID, QR bit, the one question)
 * and complete (no TC bit); if not, a says why. */
static bool answers_our_query(const ldns_pkt *p, uint16_t id, const ldns_rdf *want, uint16_t type,
                              struct dns_answer *a, char *err, size_t err_len)
{
	if (ldns_pkt_id(p) != id || !ldns_pkt_qr(p)) {
		set_err(a, DNS_MISMATCH, err, err_len, "%s", ldns_pkt_qr(p) ? "wrong ID" : "not a response");
		return false;
	}
	ldns_rr_list *q = ldns_pkt_question(p);
	ldns_rr *q0 = ldns_rr_list_rr_count(q) == 1 ? ldns_rr_list_rr(q, 0) : NULL;
	if (!want || !q0 || !rr_matches(q0, want, type)) {
		set_err(a, DNS_MISMATCH, err, err_len, "%s", "the question in the answer is not ours");
		return false;
	}
	if (ldns_pkt_tc(p)) {
		set_err(a, DNS_TRUNCATED, err, err_len, "%s", "truncated (TC)");
		return false;
	}
	return true;
}

/* True for NOERROR: the records decide. NXDOMAIN (with its negative
 * TTL) and the failures end here, said in a. */
static bool rcode_noerror(const ldns_pkt *p, struct dns_answer *a, char *err, size_t err_len)
{
	a->rcode = (uint8_t)ldns_pkt_get_rcode(p);
	if (a->rcode == LDNS_RCODE_NOERROR)
		return true;
	if (a->rcode == LDNS_RCODE_NXDOMAIN) {
		a->status = DNS_NXDOMAIN;
		a->ttl = negative_ttl(p);
		return false;
	}
	char rc[16];
	snprintf(rc, sizeof(rc), "rcode %u", a->rcode);
	const char *nm = a->rcode == LDNS_RCODE_SERVFAIL ? "SERVFAIL"
	               : a->rcode == LDNS_RCODE_REFUSED ? "REFUSED"
	               : a->rcode == LDNS_RCODE_FORMERR ? "FORMERR" : rc;
	set_err(a, DNS_TEMPFAIL, err, err_len, "server answered %s", nm);
	return false;
}

static size_t count_matching(const ldns_rr_list *an, const ldns_rdf *owner, uint16_t type)
{
	size_t found = 0;
	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++)
		if (rr_matches(ldns_rr_list_rr(an, i), owner, type))
			found++;
	return found;
}

/* The found records of type at owner into a: DNS_OK with the smallest TTL
 * of them and of the CNAME chain that led there, or malformed when none
 * can be read. */
static void take_records(const ldns_rr_list *an, const ldns_rdf *owner, uint16_t type, size_t found,
                         uint32_t chain_ttl, struct dns_answer *a, char *err, size_t err_len)
{
	a->rr = calloc(found, sizeof(*a->rr));
	a->ttl = chain_ttl;
	for (size_t i = 0; a->rr && i < ldns_rr_list_rr_count(an); i++) {
		ldns_rr *rr = ldns_rr_list_rr(an, i);
		if (!rr_matches(rr, owner, type))
			continue;
		if (take_record(rr, type, &a->rr[a->n])) {
			a->ttl = min_u32(a->ttl, a->rr[a->n].ttl);
			a->n++;
		} else {
			free(a->rr[a->n].text);
		}
	}
	if (a->n == 0) {
		set_err(a, DNS_MALFORMED, err, err_len, "%s", "records with unreadable data");
		return;
	}
	a->status = DNS_OK;
}

/* The target of owner's CNAME in the answer section (caller frees), or
 * NULL; its TTL lowers *chain_ttl. */
static ldns_rdf *cname_target(const ldns_rr_list *an, const ldns_rdf *owner, uint32_t *chain_ttl)
{
	ldns_rdf *next = NULL;
	for (size_t i = 0; i < ldns_rr_list_rr_count(an) && !next; i++) {
		ldns_rr *rr = ldns_rr_list_rr(an, i);
		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_rd_count(rr) == 1 &&
		    ldns_dname_compare(ldns_rr_owner(rr), owner) == 0) {
			next = ldns_rdf_clone(ldns_rr_rdf(rr, 0));
			*chain_ttl = min_u32(*chain_ttl, ldns_rr_ttl(rr));
		}
	}
	return next;
}

/* Records for the name asked, or for the end of a CNAME chain (at most
 * CNAME_HOPS_MAX long); else no data, for the negative TTL. */
static void take_answer(const ldns_pkt *p, const ldns_rdf *want, uint16_t type, struct dns_answer *a,
                        char *err, size_t err_len)
{
	ldns_rr_list *an = ldns_pkt_answer(p);
	ldns_rdf *cur = ldns_rdf_clone(want);
	uint32_t chain_ttl = UINT32_MAX;
	for (int hop = 0; hop <= CNAME_HOPS_MAX && cur; hop++) {
		size_t found = count_matching(an, cur, type);
		if (found) {
			take_records(an, cur, type, found, chain_ttl, a, err, err_len);
			ldns_rdf_deep_free(cur);
			return;
		}
		ldns_rdf *next = cname_target(an, cur, &chain_ttl);
		ldns_rdf_deep_free(cur);
		cur = next;
	}
	if (cur) /* a chain longer than CNAME_HOPS_MAX (or a loop): its last target */
		ldns_rdf_deep_free(cur);
	a->status = DNS_NODATA;
	a->ttl = min_u32(negative_ttl(p), chain_ttl);
}

void dns_answer_parse(const uint8_t *wire, size_t len, uint16_t id, const char *name, uint16_t type,
                      struct dns_answer *a, char *err, size_t err_len)
{
	memset(a, 0, sizeof(*a));
	if (err && err_len)
		err[0] = 0;
	if (len < 12) {
		set_err(a, DNS_MALFORMED, err, err_len, "%s", "shorter than a DNS header");
		return;
	}
	ldns_pkt *p = NULL;
	ldns_status st = ldns_wire2pkt(&p, wire, len);
	if (st != LDNS_STATUS_OK) {
		set_err(a, DNS_MALFORMED, err, err_len, "cannot parse: %s", ldns_get_errorstr_by_id(st));
		return;
	}
	ldns_rdf *want = dns_name_askable(name) ? dname_of(name) : NULL;
	if (answers_our_query(p, id, want, type, a, err, err_len) && rcode_noerror(p, a, err, err_len))
		take_answer(p, want, type, a, err, err_len);
	ldns_rdf_deep_free(want);
	ldns_pkt_free(p);
}

void dns_answer_free(struct dns_answer *a)
{
	for (unsigned i = 0; i < a->n; i++)
		free(a->rr[i].text);
	free(a->rr);
	a->rr = NULL;
	a->n = 0;
}

/* "192.0.2.1" -> "1.2.0.192.in-addr.arpa", IPv6 nibbles under ip6.arpa. */
bool dns_ptr_name(const char *ip, char *out, size_t len)
{
	uint8_t a[16];
	size_t n = 0;
	if (inet_pton(AF_INET, ip, a) == 1) {
		snprintf(out, len, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
		return true;
	}
	if (inet_pton(AF_INET6, ip, a) != 1 || len < 74)
		return false;
	for (int i = 15; i >= 0; i--)
		n += (size_t)snprintf(out + n, len - n, "%x.%x.", a[i] & 15, a[i] >> 4);
	snprintf(out + n, len - n, "ip6.arpa");
	return true;
}

void dns_answer_copy(struct dns_answer *to, const struct dns_answer *a)
{
	*to = *a;
	to->rr = a->n ? xcalloc(a->n, sizeof(*a->rr)) : NULL;
	for (unsigned i = 0; i < a->n; i++) {
		to->rr[i] = a->rr[i];
		to->rr[i].text = a->rr[i].text ? xstrdup(a->rr[i].text) : NULL;
	}
}

bool dns_ip_parse(const char *text, uint8_t addr[16], bool *v6)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	uint8_t a6[16];
	if (inet_pton(AF_INET, text, addr) == 1) {
		*v6 = false;
		return true;
	}
	if (inet_pton(AF_INET6, text, a6) != 1)
		return false;
	*v6 = memcmp(a6, mapped, 12) != 0;
	memcpy(addr, *v6 ? a6 : a6 + 12, *v6 ? 16 : 4);
	return true;
}
