/* tests/fuzz/fuzz_job_file.c - libFuzzer target for job files
 * (engine/lib/job_file.c): any bytes as a job file, read the way the
 * engine reads one: job_head_parse on the first bytes, the template, then
 * the CSV framed record by record (empty lines skipped, the first record
 * the column names for job_head_prepare), each row rendered (up to 300).
 * Nothing may crash, leak or read out of bounds. And:
 *  - framing: a record is 1..len bytes, JOB_RECORD_MAX when too long;
 *    *lines is the number of LF bytes in it;
 *  - a refused head, job or row says why;
 *  - a rendered row is the same bytes whether out was empty or not;
 *  - envelope_parse takes it: the head's sender, the row's email as the
 *    one recipient (what rcpt said), the head's job and pool;
 *  - its message starts "Message-ID: <ROW.TOKEN@DOMAIN>" CRLF, then the
 *    Date line when one was given and the template has none; its header
 *    part (up to the first empty line) has only CRLF line ends (no value
 *    brought a line break into it) and no other Message-ID field. */
#define _GNU_SOURCE /* memmem */
#include "../../engine/lib/job_file.h"
#include "../../engine/lib/envelope.h"
#include "../../engine/lib/message.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_job_file: check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

#define TOKEN "00112233aabbccdd"
#define DATE "Tue, 01 Dec 2026 17:00:00 +0000"

static void check_message(const struct job_head *h, const char *p, size_t len, uint64_t row,
                          bool dated)
{
	char first[400];
	snprintf(first, sizeof(first), "Message-ID: <%llu." TOKEN "@%s>\r\n", (unsigned long long)row,
	         h->sender[0] ? address_domain(h->sender) : "sluice.invalid");
	size_t n = strlen(first);
	CHECK(len >= n && memcmp(p, first, n) == 0);
	if (dated)
		CHECK(len - n >= 8 + strlen(DATE) && memcmp(p + n, "Date: " DATE "\r\n", 8 + strlen(DATE)) == 0);
	/* the header part: CRLF lines only, one Message-ID */
	size_t i = 0;
	for (;;) {
		const char *nl = memchr(p + i, '\n', len - i);
		CHECK(nl);
		size_t e = (size_t)(nl - p);
		CHECK(e > i && p[e - 1] == '\r');
		CHECK(!memchr(p + i, '\r', e - 1 - i));
		if (i > 0)
			CHECK(e - i - 1 < 11 || strncasecmp(p + i, "Message-ID:", 11) != 0);
		if (e == i + 1)
			break; /* the empty line */
		i = e + 1;
	}
}

static void render_row(const struct job_head *h, const char *rec, size_t rec_len, uint64_t row)
{
	bool dated = row & 1;
	struct buf out = { 0 }, out2 = { 0 };
	char rcpt[300], rcpt2[300], why[256] = "", why2[256] = "";
	bool ok = job_render(h, rec, rec_len, row, TOKEN, dated ? DATE : NULL, &out, rcpt, sizeof(rcpt),
	                     why, sizeof(why));
	buf_adds(&out2, "prefix");
	bool ok2 = job_render(h, rec, rec_len, row, TOKEN, dated ? DATE : NULL, &out2, rcpt2,
	                      sizeof(rcpt2), why2, sizeof(why2));
	CHECK(ok == ok2);
	CHECK(strcmp(rcpt, rcpt2) == 0);
	if (!ok) {
		CHECK(why[0] && strcmp(why, why2) == 0);
		buf_free(&out);
		buf_free(&out2);
		return;
	}
	CHECK(out2.len == out.len + 6 && memcmp(out2.p + 6, out.p, out.len) == 0);
	buf_free(&out2);
	struct message *m = calloc(1, sizeof(*m));
	CHECK(m);
	m->raw = malloc(out.len + 1);
	CHECK(m->raw);
	memcpy(m->raw, out.p, out.len);
	m->raw[out.len] = 0;
	m->raw_len = out.len;
	CHECK(envelope_parse(m, why, sizeof(why)));
	CHECK(strcmp(m->sender, h->sender) == 0);
	CHECK(m->nrcpt == 1 && strcmp(m->rcpt[0], rcpt) == 0);
	CHECK(m->job && strcmp(m->job, h->job) == 0);
	CHECK(h->pool ? m->pool && strcmp(m->pool, h->pool) == 0 : !m->pool);
	const char *msg = memmem(out.p, out.len, "\r\nMessage-ID: ", 14);
	CHECK(msg);
	msg += 2;
	check_message(h, msg, out.len - (size_t)(msg - out.p), row, dated && !h->has_date);
	message_free(m);
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data;
	struct job_head h;
	char why[256] = "";
	size_t off, tlen;
	if (!job_head_parse(&h, d, size, &off, &tlen, why, sizeof(why))) {
		CHECK(why[0]);
		CHECK(!h.sender && !h.job && !h.pool);
		return 0;
	}
	CHECK(h.sender && h.job && off <= size && off <= JOB_HEAD_MAX && tlen <= JOB_TEMPLATE_MAX);
	if (tlen > size - off) {
		job_head_free(&h);
		return 0;
	}
	size_t p = off + tlen;
	bool header = true;
	uint64_t row = 0;
	while (p < size && row < 300) {
		unsigned lines;
		bool too_long;
		size_t r = job_csv_record(d + p, size - p, true, &lines, &too_long);
		CHECK(r > 0 && r <= size - p);
		unsigned lf = 0;
		for (size_t i = 0; i < r; i++)
			lf += d[p + i] == '\n';
		CHECK(lf == lines);
		CHECK(r <= JOB_RECORD_MAX && (!too_long || r == JOB_RECORD_MAX));
		if (too_long || job_csv_blank(d + p, r)) {
			p += r;
			continue;
		}
		if (header) {
			why[0] = 0;
			if (!job_head_prepare(&h, d + off, tlen, d + p, r, why, sizeof(why))) {
				CHECK(why[0]);
				break;
			}
			CHECK(h.email_column >= 0 && h.ncolumns >= 1 && h.ncolumns <= JOB_COLUMNS_MAX);
			header = false;
		} else {
			render_row(&h, d + p, r, ++row);
		}
		p += r;
	}
	job_head_free(&h);
	return 0;
}
