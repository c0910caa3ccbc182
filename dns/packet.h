/* dns/packet.h - DNS messages in and out: builds a query and turns an
 * answer into plain records, checking that it answers the question asked
 * (ID, QR bit, question name, type and class). The only module that uses
 * ldns; the resolver never sees an ldns type. */
#ifndef SLUICE_DNS_PACKET_H
#define SLUICE_DNS_PACKET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12, DNS_T_MX = 15,
       DNS_T_TXT = 16, DNS_T_AAAA = 28 };

#define DNS_NAME_MAX 253
#define DNS_UDP_PAYLOAD 1232      /* EDNS0 size we advertise (DNS flag day 2020) */
#define DNS_QUERY_MAX 300         /* bytes of a query for one name */

enum dns_status {
	DNS_OK = 0,       /* records of the asked type */
	DNS_NODATA,       /* the name exists, no records of that type */
	DNS_NXDOMAIN,     /* the name does not exist */
	DNS_TEMPFAIL,     /* SERVFAIL, REFUSED, timeout, no server: try again later */
	DNS_TRUNCATED,    /* TC bit: ask again over TCP */
	DNS_MALFORMED,    /* not a DNS message we can read */
	DNS_MISMATCH,     /* a valid message, but not the answer to our question */
	DNS_BADNAME,      /* the name cannot be asked (syntax, length, non-ASCII) */
};
const char *dns_status_name(enum dns_status st);

struct dns_rr {
	uint16_t type;
	uint16_t pref;            /* MX preference */
	uint32_t ttl;
	uint8_t addr[16];         /* A (4 bytes) / AAAA (16 bytes) */
	char *text;               /* MX exchange / PTR target (lower case, no final
	                           * dot, "" for the root), TXT strings joined */
};

struct dns_answer {
	enum dns_status status;
	uint8_t rcode;
	uint32_t ttl;             /* min TTL of the records; for NODATA/NXDOMAIN the
	                           * negative TTL (RFC 2308: min of SOA TTL and
	                           * SOA MINIMUM; 0 without SOA) */
	unsigned n;
	struct dns_rr *rr;
};

/* True when name may be asked: letters, digits, '-', '_', dots between
 * non-empty labels of at most 63 bytes, at most 253 bytes in all. */
bool dns_name_valid(const char *name);
/* True when name can be asked at all: labels of 1 to 63 printable ASCII
 * bytes (space included), at most 253 in all: what an SPF macro may
 * expand to ("%_" is a space). Host and mail domains must also be
 * dns_name_valid. */
bool dns_name_askable(const char *name);
/* Writes a query (RD set, EDNS0) for name/type with the given ID into out;
 * returns its length, or 0 when the name cannot be asked. */
size_t dns_query_build(uint8_t *out, size_t cap, uint16_t id, const char *name, uint16_t type);
/* Reads an answer to the query (id, name, type). Always fills a (status,
 * and records when DNS_OK); err gets a readable reason for anything else
 * than OK/NODATA/NXDOMAIN. CNAME chains inside the answer are followed. */
void dns_answer_parse(const uint8_t *wire, size_t len, uint16_t id, const char *name, uint16_t type,
                      struct dns_answer *a, char *err, size_t err_len);
void dns_answer_free(struct dns_answer *a);
/* A deep copy of a (free it with dns_answer_free). */
void dns_answer_copy(struct dns_answer *to, const struct dns_answer *a);
/* A numeric address: 4 bytes (v6 false) or 16 into addr; an IPv4-mapped
 * IPv6 address is its IPv4 address (what a receiver sees). */
bool dns_ip_parse(const char *text, uint8_t addr[16], bool *v6);
/* The name a PTR query asks for an IP text: "192.0.2.1" ->
 * "1.2.0.192.in-addr.arpa", IPv6 as nibbles under ip6.arpa; false when
 * ip is not a numeric address (or len is under 74). */
bool dns_ptr_name(const char *ip, char *out, size_t len);
/* The ID of a wire message (0 if it is shorter than a header). */
uint16_t dns_wire_id(const uint8_t *wire, size_t len);
#endif
