/* tests/fuzz/fuzz_spf.c - libFuzzer target for the doctor's record readers
 * against hostile DNS data: SPF check_host() (dns/spf.c) over a fake DNS
 * whose every answer comes from the input, then the same bytes as a DMARC
 * record (dns/dmarc.c) and a tag list (engine/lib/tags.c).
 *
 * The input is lines. Line 0 is the sender's domain's TXT record; any
 * other name asked picks a line by a hash of the name, whose first byte
 * says the answer: 'T' TXT (the rest, split on '|' into records), 'A' an
 * address (the next 4 or 16 bytes), 'M' MX names (split on ','), 'P' PTR
 * names, 'N' NXDOMAIN, 'D' NODATA, anything else a server failure.
 * Evaluation must never crash, leak or read out of bounds, and must stay
 * within the limits receivers enforce: at most 11 DNS-querying terms (the
 * 11th is the permerror), at most 3 void lookups, and a bounded number of
 * questions in all. */
#include "../../dns/dmarc.h"
#include "../../dns/spf.h"
#include "../../engine/lib/tags.h"
#include "../../engine/lib/util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_spf: check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)
#define LINES_MAX 64

struct input {
	const char *line[LINES_MAX];
	size_t len[LINES_MAX];
	unsigned n;
	unsigned asked;
};

static void add_rr(struct dns_answer *a, uint16_t type, const char *text, size_t len, const uint8_t *addr)
{
	a->rr = xrealloc(a->rr, (a->n + 1) * sizeof(*a->rr));
	struct dns_rr *rr = &a->rr[a->n++];
	memset(rr, 0, sizeof(*rr));
	rr->type = type;
	if (addr)
		memcpy(rr->addr, addr, type == DNS_T_AAAA ? 16 : 4);
	if (text)
		rr->text = xstrndup(text, len);
}

/* The parts of s (len bytes) between separators, as records. */
static void split_into(struct dns_answer *a, uint16_t type, const char *s, size_t len, char sep)
{
	size_t start = 0;
	for (size_t i = 0; i <= len; i++)
		if (i == len || s[i] == sep) {
			add_rr(a, type, s + start, i - start, NULL);
			start = i + 1;
		}
}

static void fake_ask(void *arg, const char *name, uint16_t type, struct dns_answer *out, char *err, size_t err_len)
{
	struct input *in = arg;
	in->asked++;
	memset(out, 0, sizeof(*out));
	snprintf(err, err_len, "fuzzed failure");
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	unsigned i = in->asked == 1 ? 0 : (in->n > 1 ? 1 + h % (in->n - 1) : 0);
	const char *l = in->line[i];
	size_t len = in->len[i];
	if (in->asked == 1) { /* the sender's domain: line 0 is its TXT */
		out->status = DNS_OK;
		split_into(out, DNS_T_TXT, l, len, '|');
		return;
	}
	char kind = len ? l[0] : 'N';
	l++;
	len = len ? len - 1 : 0;
	out->status = DNS_OK;
	switch (kind) {
	case 'T': split_into(out, DNS_T_TXT, l, len, '|'); break;
	case 'M': split_into(out, DNS_T_MX, l, len, ','); break;
	case 'P': split_into(out, DNS_T_PTR, l, len, ','); break;
	case 'A': {
		uint8_t addr[16] = { 0 };
		memcpy(addr, l, len < 16 ? len : 16);
		add_rr(out, type == DNS_T_AAAA ? DNS_T_AAAA : DNS_T_A, NULL, 0, addr);
		break;
	}
	case 'N': out->status = DNS_NXDOMAIN; break;
	case 'D': out->status = DNS_NODATA; break;
	default: out->status = DNS_TEMPFAIL; break;
	}
	/* records of the type asked only, as the resolver gives them; a
	 * mismatch is NODATA */
	for (unsigned k = 0; k < out->n; k++)
		if (out->rr[k].type != type) {
			dns_answer_free(out);
			out->status = DNS_NODATA;
			break;
		}
	if (out->status == DNS_OK && out->n == 0)
		out->status = DNS_NODATA;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { .n = 0 };
	char *copy = xmalloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = 0;
	size_t start = 0;
	for (size_t i = 0; i <= size && in.n < LINES_MAX; i++)
		if (i == size || copy[i] == '\n') {
			in.line[in.n] = copy + start;
			in.len[in.n++] = i - start;
			start = i + 1;
		}
	static const char *ips[] = { "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" };
	struct spf_query q = { ips[size % 3], "user@d.test", "helo.test", fake_ask, &in };
	struct spf_eval e;
	spf_check_host(&q, &e);
	CHECK(e.result <= SPF_PERMERROR);
	CHECK(e.lookups <= 11);
	CHECK(e.voids <= 3);
	CHECK(in.asked <= 1 + 11 * (1 + 10 + 10) + 11 * 11 + 11); /* terms, ptr terms, %{p} once */
	CHECK(memchr(e.detail, 0, sizeof(e.detail)) != NULL);
	spf_all_qualifier(copy);

	struct dmarc_record r;
	char why[200];
	if (dmarc_parse(copy, &r, why, sizeof(why))) {
		CHECK(r.pct <= 100);
		CHECK(r.adkim == 'r' || r.adkim == 's');
		CHECK(r.aspf == 'r' || r.aspf == 's');
		CHECK(!strcmp(r.p, "none") || !strcmp(r.p, "quarantine") || !strcmp(r.p, "reject"));
	}
	struct tag_list l;
	if (tags_parse(copy, &l, why, sizeof(why)))
		for (unsigned i = 0; i < l.n; i++)
			CHECK(tags_get(&l, l.t[i].name) == l.t[i].value);
	tags_free(&l);
	free(copy);
	return 0;
}
