/* bench/spoolgen.c - `sluice spoolgen`: writes test spool files the safe
 * way (engine/lib/spool_writer: tmp/ then rename into new/, without the
 * fsync: test data, rebuilt at will). It makes a
 * realistic test spool: distinct recipients over K domains, varied
 * headers, lines starting with '.', a lone '.', long lines, 8-bit text,
 * LF and CRLF files. */
#define _GNU_SOURCE
#include "bench.h"
#include "../engine/lib/envelope.h"
#include "../engine/lib/rng.h"
#include "../engine/lib/spool_writer.h"
#include "../engine/lib/util.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const words[] = {
	"newsletter", "offer", "your", "account", "update", "spring", "sale", "Grüße", "café",
	"über", "delivery", "invoice", "welcome", "subscription", "the", "and", "of", "news",
	"naïve", "résumé", "week", "price", "order", "shipped", "thanks",
};

static void add_text_line(struct buf *b, uint64_t *rng, size_t width, const char *eol)
{
	size_t start = b->len;
	while (b->len - start < width) {
		buf_adds(b, words[rng_next(rng) % ARRAY_LEN(words)]);
		buf_adds(b, " ");
	}
	b->len--; /* no trailing space */
	buf_adds(b, eol);
}

static void make_message(struct buf *b, uint64_t i, unsigned nrcpt, unsigned domains, size_t size,
                         uint64_t seed, bool crlf)
{
	const char *eol = crlf ? "\r\n" : "\n";
	uint64_t rng = seed * 0x9e3779b97f4a7c15ull + i + 1;
	unsigned d0 = (unsigned)((i * nrcpt) % domains);
	buf_printf(b, "X-Sender: <bounces+%llu@sender.example>%s", (unsigned long long)i, eol);
	for (unsigned r = 0; r < nrcpt; r++) {
		uint64_t k = i * nrcpt + r;
		buf_printf(b, "X-Receiver: <user%llu@d%llu.example>%s", (unsigned long long)k,
		           (unsigned long long)(k % domains), eol);
	}
	buf_printf(b, "X-Job: spoolgen-%llu%s", (unsigned long long)seed, eol);
	size_t body_start = b->len;
	buf_printf(b, "From: \"Sender Example\" <news@sender.example>%s", eol);
	buf_printf(b, "To: <user%llu@d%u.example>%s", (unsigned long long)(i * nrcpt), d0, eol);
	buf_printf(b, "Subject: Issue %llu: %s news for you%s", (unsigned long long)i,
	           words[i % ARRAY_LEN(words)], eol);
	buf_printf(b, "Date: Thu, 26 Nov 2026 05:00:00 +0000%s", eol);
	buf_printf(b, "Message-ID: <spoolgen-%llu-%llu@sender.example>%s", (unsigned long long)seed,
	           (unsigned long long)i, eol);
	buf_printf(b, "MIME-Version: 1.0%sContent-Type: text/plain; charset=utf-8%s", eol, eol);
	buf_printf(b, "Content-Transfer-Encoding: 8bit%s", eol);
	buf_printf(b, "List-Unsubscribe: <https://sender.example/u/%llu>%s", (unsigned long long)i, eol);
	buf_printf(b, "List-Unsubscribe-Post: List-Unsubscribe=One-Click%s", eol);
	if (i % 3 == 0)
		buf_printf(b, "Reply-To: help@sender.example%s", eol);
	buf_printf(b, "Feedback-ID: %llu:spoolgen:sluice%s", (unsigned long long)(i % 7), eol);
	buf_adds(b, eol);
	buf_printf(b, "Hello user%llu,%s", (unsigned long long)(i * nrcpt), eol);
	buf_printf(b, ".this line starts with a dot%s", eol);
	buf_printf(b, "..and this one with two%s", eol);
	add_text_line(b, &rng, 990, eol); /* close to the 998 limit */
	unsigned line = 0;
	while (b->len - body_start < size) {
		if (line % 17 == 5)
			buf_printf(b, ".%s", eol); /* a lone dot: must be stuffed */
		else if (line % 11 == 3)
			buf_printf(b, ". leading dot and space%s", eol);
		else
			add_text_line(b, &rng, 40 + rng_next(&rng) % 36, eol);
		line++;
	}
	buf_printf(b, "-- %sunsubscribe: https://sender.example/u/%llu%s", eol, (unsigned long long)i, eol);
}

/* A job file (README "Job files") of count rows: a template of about size
 * bytes with substitutions in headers and body (a default, an 8-bit
 * display name now and then, values with commas and quotes), then the CSV. */
static void make_job(struct buf *b, uint64_t count, unsigned domains, size_t size, uint64_t seed)
{
	struct buf t = { 0 };
	uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 1;
	buf_adds(&t, "From: \"Sender Example\" <news@sender.example>\n");
	buf_adds(&t, "To: {{name|Customer}} <{{email}}>\n");
	buf_adds(&t, "Subject: {{name|Hello}}, your {{city|spring}} news\n");
	buf_adds(&t, "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n");
	buf_adds(&t, "Content-Transfer-Encoding: 8bit\n");
	buf_adds(&t, "List-Unsubscribe: <https://sender.example/u/{{code}}>\n");
	buf_adds(&t, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n\n");
	buf_adds(&t, "Hello {{name|there}},\n.this line starts with a dot\nyour code is {{code}}\n");
	for (unsigned line = 0; t.len < size; line++) {
		if (line % 17 == 5)
			buf_adds(&t, ".\n");
		else
			add_text_line(&t, &rng, 40 + rng_next(&rng) % 36, "\n");
	}
	buf_adds(&t, "-- \nunsubscribe: https://sender.example/u/{{code}}\n");
	buf_printf(b, "X-Sluice-Job: 1\nX-Sender: <bounces@sender.example>\nX-Job: spoolgen-%llu\n"
	           "X-Template-Bytes: %zu\n", (unsigned long long)seed, t.len);
	buf_add(b, t.p, t.len);
	buf_free(&t);
	static const char *const names[] = { "Alice", "Bob", "", "Zoë Müller", "Carol \"CC\" Jones",
	                                     "Smith, John", "José", "" };
	static const char *const cities[] = { "Paris", "", "Zürich", "Oslo" };
	buf_adds(b, "email,name,code,city\n");
	for (uint64_t i = 0; i < count; i++) {
		const char *n = names[i % ARRAY_LEN(names)];
		bool quote = strpbrk(n, ",\"") != NULL;
		buf_printf(b, "user%llu@d%llu.example,", (unsigned long long)i, (unsigned long long)(i % domains));
		if (quote) {
			buf_adds(b, "\"");
			for (const char *p = n; *p; p++)
				buf_adds(b, *p == '"' ? "\"\"" : (char[]){ *p, 0 });
			buf_adds(b, "\"");
		} else {
			buf_adds(b, n);
		}
		buf_printf(b, ",C%llu-%llu,%s\n", (unsigned long long)seed, (unsigned long long)i,
		           cities[i % ARRAY_LEN(cities)]);
	}
}

static void spoolgen_usage(FILE *f)
{
	fputs("usage: sluice spoolgen --spool DIR --count N [--size BYTES] [--domains K]\n"
	      "                       [--recipients R] [--seed S] [--crlf|--lf]\n"
	      "Writes N messages of about BYTES (default 3000) to SPOOL/new/ via tmp/, with\n"
	      "distinct recipients over K domains (d0.example ...), R recipients each.\n"
	      "Line endings: mixed LF and CRLF unless --crlf or --lf.\n"
	      "       sluice spoolgen --spool DIR --job N [--size BYTES] [--domains K] [--seed S]\n"
	      "Writes one job file (gS.job) of N rows: a template of about BYTES and a\n"
	      "CSV recipient list over K domains.\n", f);
}

int spoolgen_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "spool", required_argument, 0, 's' }, { "count", required_argument, 0, 'n' },
		{ "size", required_argument, 0, 'z' }, { "domains", required_argument, 0, 'd' },
		{ "recipients", required_argument, 0, 'r' }, { "seed", required_argument, 0, 'e' },
		{ "crlf", no_argument, 0, 'C' }, { "lf", no_argument, 0, 'L' },
		{ "job", required_argument, 0, 'j' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	const char *spool = NULL;
	long job = -1, count = -1, size = 3000, domains = 50, rcpts = 1, seed = 1;
	int endings = 0; /* 0 mixed, 1 crlf, 2 lf */
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': spool = optarg; break;
		case 'n': if (!parse_uint(optarg, 0, 100000000, &count)) fatal("spoolgen: --count 0..1e8"); break;
		case 'z': if (!parse_uint(optarg, 100, 100000000, &size)) fatal("spoolgen: --size 100..1e8"); break;
		case 'd': if (!parse_uint(optarg, 1, 10000000, &domains)) fatal("spoolgen: --domains 1..1e7"); break;
		case 'r': if (!parse_uint(optarg, 1, 10000, &rcpts)) fatal("spoolgen: --recipients 1..10000"); break;
		case 'e': if (!parse_uint(optarg, 0, 1000000000, &seed)) fatal("spoolgen: --seed N"); break;
		case 'C': endings = 1; break;
		case 'L': endings = 2; break;
		case 'j': if (!parse_uint(optarg, 0, 100000000, &job)) fatal("spoolgen: --job 0..1e8"); break;
		case 'h': spoolgen_usage(stdout); return 0;
		default: spoolgen_usage(stderr); return 2;
		}
	}
	if (spool && job >= 0 && count < 0) {
		char err[4200], name[64];
		struct buf b = { 0 };
		make_job(&b, (uint64_t)job, (unsigned)domains, (size_t)size, (uint64_t)seed);
		snprintf(name, sizeof(name), "g%ld.job", seed);
		if (!spool_writer_prepare(spool, err, sizeof(err)) ||
		    !spool_writer_put(spool, name, b.p, b.len, false, err, sizeof(err)))
			fatal("spoolgen: %s", err);
		buf_free(&b);
		printf("spoolgen: wrote a job file of %ld row(s) to %s/new/%s\n", job, spool, name);
		return 0;
	}
	if (!spool || count < 0) {
		spoolgen_usage(stderr);
		return 2;
	}
	char err[4200];
	if (!spool_writer_prepare(spool, err, sizeof(err)))
		fatal("spoolgen: %s", err);
	struct buf b = { 0 };
	char name[64];
	for (long i = 0; i < count; i++) {
		b.len = 0;
		bool crlf = endings == 1 || (endings == 0 && i % 3 == 1);
		make_message(&b, (uint64_t)i, (unsigned)rcpts, (unsigned)domains, (size_t)size, (uint64_t)seed, crlf);
		snprintf(name, sizeof(name), "g%ld-%08ld", seed, i);
		if (!spool_writer_put(spool, name, b.p, b.len, false, err, sizeof(err)))
			fatal("spoolgen: %s", err);
	}
	buf_free(&b);
	printf("spoolgen: wrote %ld message(s) to %s/new\n", count, spool);
	return 0;
}
