/* tests/fuzz/fuzz_dns_packet.c - libFuzzer target for the packet path
 * (`make fuzz`, not in CI): any bytes as the answer to "example.com" of
 * the type the first byte picks, and as the answer to a question read
 * back from the bytes' own question section when there is one. Parsing
 * must never crash, leak or read out of bounds; records it returns must
 * be well formed. */
#include "../../dns/packet.h"
#include <stdlib.h>
#include <string.h>

static const uint16_t types[] = { DNS_T_MX, DNS_T_A, DNS_T_AAAA, DNS_T_TXT, DNS_T_PTR };

static void check(const uint8_t *d, size_t n, const char *name, uint16_t type)
{
	struct dns_answer a;
	char err[160];
	dns_answer_parse(d, n, dns_wire_id(d, n), name, type, &a, err, sizeof(err));
	if (a.status == DNS_OK && a.n == 0)
		abort();
	for (unsigned i = 0; i < a.n; i++)
		if (a.rr[i].type != type || ((type == DNS_T_MX || type == DNS_T_PTR || type == DNS_T_TXT) && !a.rr[i].text))
			abort();
	dns_answer_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint16_t type = types[data[0] % (sizeof(types) / sizeof(types[0]))];
	check(data + 1, size - 1, "example.com", type);
	/* the packet's own question (uncompressed labels), to reach the answer section */
	const uint8_t *p = data + 1 + 12, *end = data + size;
	char name[DNS_NAME_MAX + 2];
	size_t n = 0;
	while (p < end && *p && *p < 64 && p + 1 + *p <= end && n + *p + 1 < sizeof(name)) {
		if (n)
			name[n++] = '.';
		memcpy(name + n, p + 1, *p);
		n += *p;
		p += 1 + *p;
	}
	name[n] = 0;
	if (p + 5 <= end && *p == 0 && dns_name_valid(name))
		check(data + 1, size - 1, name, (uint16_t)(p[1] << 8 | p[2]));
	return 0;
}
