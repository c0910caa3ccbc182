/* tests/unit/test_job_file.c - job files (engine/lib/job_file.c, README
 * "Job files"): the head and its refusals, the CSV's columns and records,
 * substitution and defaults, the row refusals (field count, required
 * field, header/body injection, email), RFC 2047 encoding (45-byte pieces
 * cut at UTF-8 boundaries, display names), Message-ID and Date, exact
 * bytes throughout, and that envelope_parse takes what job_render writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "../../engine/lib/job_file.h"
#include "../../engine/lib/envelope.h"
#include "../../engine/lib/message.h"
#include "../../engine/lib/util.h"

#define TOKEN "0123456789abcdef"
#define DATE "Tue, 01 Dec 2026 17:00:00 +0000"
#define HEAD "X-Sluice-Job: 1\nX-Sender: <bounces@news.example.com>\nX-Job: j1\n"
#define ENV "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <%s>\r\nX-Job: j1\r\n" \
            "Message-ID: <%u.0123456789abcdef@news.example.com>\r\n"

/* A job from a template and the CSV's text: head parsed, first record
 * framed and prepared; *csv_rest points after the column names. */
struct job {
	struct job_head h;
	const char *csv;   /* the rows after the column names */
	size_t csv_len;
	char *file;
};

static bool job_open(struct job *j, const char *tpl, size_t tpl_len, const char *csv,
                     size_t csv_len, char *why)
{
	struct buf f = { 0 };
	buf_printf(&f, HEAD "X-Template-Bytes: %zu\n", tpl_len);
	buf_add(&f, tpl, tpl_len);
	size_t csv_off = f.len;
	buf_add(&f, csv, csv_len);
	j->file = f.p;
	size_t off, len;
	if (!job_head_parse(&j->h, f.p, f.len, &off, &len, why, 256))
		return false;
	assert_int_equal(off + len, csv_off);
	unsigned lines;
	bool too_long;
	size_t r = job_csv_record(f.p + csv_off, csv_len, true, &lines, &too_long);
	assert_false(too_long);
	bool ok = job_head_prepare(&j->h, f.p + off, len, f.p + csv_off, r, why, 256);
	j->csv = f.p + csv_off + r;
	j->csv_len = csv_len - r;
	return ok;
}

static void job_close(struct job *j)
{
	job_head_free(&j->h);
	free(j->file);
}

static void job_ok(struct job *j, const char *tpl, const char *csv)
{
	char why[256] = "";
	if (!job_open(j, tpl, strlen(tpl), csv, strlen(csv), why))
		fail_msg("job refused: %s", why);
}

static void job_refused(const char *tpl, const char *csv, const char *why_part)
{
	struct job j;
	char why[256] = "";
	bool ok = job_open(&j, tpl, strlen(tpl), csv, strlen(csv), why);
	if (ok)
		fail_msg("job accepted, wanted '%s'", why_part);
	if (!strstr(why, why_part))
		fail_msg("reason '%s' lacks '%s'", why, why_part);
	job_close(&j);
}

/* Renders the record (of rec_len bytes) as row `row`. */
static char *render_n(struct job *j, const char *rec, size_t rec_len, unsigned row, const char *date,
                      bool *ok, char *why, char *rcpt)
{
	struct buf out = { 0 };
	char rc[300];
	*ok = job_render(&j->h, rec, rec_len, row, TOKEN, date, &out, rcpt ? rcpt : rc, 300, why, 256);
	buf_add(&out, "", 1);
	return out.p;
}

static void expect_render(struct job *j, const char *rec, unsigned row, const char *want)
{
	char why[256] = "";
	bool ok;
	char *got = render_n(j, rec, strlen(rec), row, DATE, &ok, why, NULL);
	if (!ok)
		fail_msg("row refused: %s", why);
	assert_string_equal(got, want);
	free(got);
}

static void expect_refused_n(struct job *j, const char *rec, size_t rec_len, const char *want_why)
{
	char why[256] = "";
	bool ok;
	char *got = render_n(j, rec, rec_len, 7, DATE, &ok, why, NULL);
	assert_false(ok);
	assert_string_equal(why, want_why);
	free(got);
}

static void expect_refused(struct job *j, const char *rec, const char *want_why)
{
	expect_refused_n(j, rec, strlen(rec), want_why);
}

/* ---- the README's example, all of it ---- */

static const char readme_file[] =
	"X-Sluice-Job: 1\n"
	"X-Sender: <bounces@news.example.com>\n"
	"X-Job: spring-sale-2026\n"
	"X-Pool: warm-ips\n"
	"X-Template-Bytes: 160\n"
	"From: News <news@news.example.com>\n"
	"To: {{name|Customer}} <{{email}}>\n"
	"Subject: {{name|Hello}}, your spring offer\n"
	"\n"
	"Dear {{name|customer}}, your code is {{code}}.\n"
	"email,name,code\n"
	"alice@example.org,Alice,A-100\n"
	"bob@example.net,,B-200\n"
	"\"carol@example.com\",\"Carol \"\"CC\"\" Jones\",C-300\n";

static void readme_example(void **state)
{
	const char *f = readme_file;
	size_t len = strlen(f), off, tlen;
	struct job_head h;
	char why[256] = "";
	assert_true(job_head_parse(&h, f, len, &off, &tlen, why, sizeof(why)));
	assert_string_equal(h.sender, "bounces@news.example.com");
	assert_string_equal(h.job, "spring-sale-2026");
	assert_string_equal(h.pool, "warm-ips");
	assert_int_equal(tlen, 160);
	assert_memory_equal(f + off, "From: News", 10);
	size_t p = off + tlen;
	unsigned lines;
	bool too_long;
	size_t r = job_csv_record(f + p, len - p, false, &lines, &too_long);
	assert_int_equal(r, 16);
	assert_int_equal(lines, 1);
	assert_true(job_head_prepare(&h, f + off, tlen, f + p, r, why, sizeof(why)));
	assert_int_equal(h.ncolumns, 3);
	assert_string_equal(h.columns[0], "email");
	assert_int_equal(h.email_column, 0);
	assert_false(h.has_date);
	/* the template is kept in CRLF form */
	assert_memory_equal(h.tpl, "From: News <news@news.example.com>\r\nTo: ", 40);
	p += r;
	static const char *const want[] = {
		"X-Sender: <bounces@news.example.com>\r\nX-Receiver: <alice@example.org>\r\n"
		"X-Job: spring-sale-2026\r\nX-Pool: warm-ips\r\n"
		"Message-ID: <1.0123456789abcdef@news.example.com>\r\n"
		"Date: Tue, 01 Dec 2026 17:00:00 +0000\r\n"
		"From: News <news@news.example.com>\r\nTo: Alice <alice@example.org>\r\n"
		"Subject: Alice, your spring offer\r\n\r\nDear Alice, your code is A-100.\r\n",
		"X-Sender: <bounces@news.example.com>\r\nX-Receiver: <bob@example.net>\r\n"
		"X-Job: spring-sale-2026\r\nX-Pool: warm-ips\r\n"
		"Message-ID: <2.0123456789abcdef@news.example.com>\r\n"
		"Date: Tue, 01 Dec 2026 17:00:00 +0000\r\n"
		"From: News <news@news.example.com>\r\nTo: Customer <bob@example.net>\r\n"
		"Subject: Hello, your spring offer\r\n\r\nDear customer, your code is B-200.\r\n",
		"X-Sender: <bounces@news.example.com>\r\nX-Receiver: <carol@example.com>\r\n"
		"X-Job: spring-sale-2026\r\nX-Pool: warm-ips\r\n"
		"Message-ID: <3.0123456789abcdef@news.example.com>\r\n"
		"Date: Tue, 01 Dec 2026 17:00:00 +0000\r\n"
		"From: News <news@news.example.com>\r\nTo: Carol \"CC\" Jones <carol@example.com>\r\n"
		"Subject: Carol \"CC\" Jones, your spring offer\r\n\r\n"
		"Dear Carol \"CC\" Jones, your code is C-300.\r\n",
	};
	static const char *const rcpts[] = { "alice@example.org", "bob@example.net", "carol@example.com" };
	for (unsigned row = 1; row <= 3; row++) {
		r = job_csv_record(f + p, len - p, true, &lines, &too_long);
		assert_int_equal(lines, 1);
		assert_false(job_csv_blank(f + p, r));
		struct buf out = { 0 };
		char rcpt[64];
		assert_true(job_render(&h, f + p, r, row, TOKEN, DATE, &out, rcpt, sizeof(rcpt), why,
		                       sizeof(why)));
		assert_string_equal(rcpt, rcpts[row - 1]);
		buf_add(&out, "", 1);
		assert_string_equal(out.p, want[row - 1]);
		/* envelope_parse takes it: sender, recipient, job, pool, body */
		struct message *m = xcalloc(1, sizeof(*m));
		m->raw = out.p;
		m->raw_len = out.len - 1;
		assert_true(envelope_parse(m, why, sizeof(why)));
		assert_string_equal(m->sender, "bounces@news.example.com");
		assert_int_equal(m->nrcpt, 1);
		assert_string_equal(m->rcpt[0], rcpts[row - 1]);
		assert_string_equal(m->job, "spring-sale-2026");
		assert_string_equal(m->pool, "warm-ips");
		assert_false(m->body_owned); /* clean CRLF already: no copy */
		const char *msg = strstr(want[row - 1], "Message-ID:");
		assert_int_equal(m->body_len, strlen(msg));
		assert_memory_equal(m->body, msg, m->body_len);
		message_free(m);
		p += r;
	}
	assert_int_equal(p, len);
	assert_int_equal(job_csv_record(f + p, 0, true, &lines, &too_long), 0);
	job_head_free(&h);
}

/* ---- the head ---- */

static void head_bad(const char *f, const char *why_part)
{
	struct job_head h;
	char why[256] = "";
	size_t off, len;
	if (job_head_parse(&h, f, strlen(f), &off, &len, why, sizeof(why)))
		fail_msg("head accepted, wanted '%s'", why_part);
	if (!strstr(why, why_part))
		fail_msg("reason '%s' lacks '%s'", why, why_part);
	assert_null(h.sender);
	assert_null(h.job);
}

static void head_good(void **state)
{
	struct job_head h;
	char why[256];
	size_t off, len;
	const char *f = "X-Sluice-Job: 1\r\nx-job:  a b \r\nX-SENDER: <>\r\nX-Template-Bytes: 0\r\nemail\n";
	assert_true(job_head_parse(&h, f, strlen(f), &off, &len, why, sizeof(why)));
	assert_string_equal(h.sender, "");
	assert_string_equal(h.job, "a b");
	assert_null(h.pool);
	assert_int_equal(len, 0);
	assert_int_equal(off, strlen(f) - 6);
	job_head_free(&h);
	f = "X-Sluice-Job: 1\nX-Sender: a@b.example\nX-Job: j\nX-Pool: p1\nX-Template-Bytes: 16777216\n";
	assert_true(job_head_parse(&h, f, strlen(f), &off, &len, why, sizeof(why)));
	assert_string_equal(h.sender, "a@b.example");
	assert_string_equal(h.pool, "p1");
	assert_int_equal(len, JOB_TEMPLATE_MAX);
	assert_int_equal(off, strlen(f));
	job_head_free(&h);
}

static void head_refusals(void **state)
{
	head_bad("", "not a job file");
	head_bad("X-Sluice-Job: 2\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 1\n", "not a job file");
	head_bad("x-sluice-job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 1\n", "not a job file");
	head_bad("X-Sluice-Job: 1", "not a job file");
	head_bad("X-Sender: <>\nX-Sluice-Job: 1\n", "not a job file");
	head_bad("X-Sluice-Job: 1\nX-Job: j\nX-Template-Bytes: 1\n", "no X-Sender line");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Template-Bytes: 1\n", "no X-Job line");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Sender: <a@b.c>\nX-Job: j\nX-Template-Bytes: 1\n",
	         "more than one X-Sender line");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Job: k\nX-Template-Bytes: 1\n",
	         "more than one X-Job line");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Pool: a\nX-Pool: b\nX-Template-Bytes: 1\n",
	         "more than one X-Pool line");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: \nX-Template-Bytes: 1\n", "X-Job is empty");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: a\tb\nX-Template-Bytes: 1\n",
	         "X-Job contains a control character");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Pool: \nX-Template-Bytes: 1\n",
	         "X-Pool is empty");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Pool: a\rb\nX-Template-Bytes: 1\n",
	         "X-Pool contains a control character");
	head_bad("X-Sluice-Job: 1\nX-Sender: <a b@c>\nX-Job: j\nX-Template-Bytes: 1\n",
	         "X-Sender: address contains white space");
	head_bad("X-Sluice-Job: 1\nX-Sender: <nodomain>\nX-Job: j\nX-Template-Bytes: 1\n",
	         "X-Sender: address has no '@'");
	head_bad("X-Sluice-Job: 1\nX-Sender: <<a@b>>\nX-Job: j\nX-Template-Bytes: 1\n",
	         "X-Sender: address contains '<' or '>'");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 12a\n",
	         "X-Template-Bytes is not a decimal number");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: \n",
	         "X-Template-Bytes is not a decimal number");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: -1\n",
	         "X-Template-Bytes is not a decimal number");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 16777217\n",
	         "X-Template-Bytes larger than 16777216");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 99999999999999999999999\n",
	         "X-Template-Bytes larger than 16777216");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nSubject: hi\nX-Template-Bytes: 1\n",
	         "unknown head line 'Subject: hi'");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Receiver: <a@b>\nX-Job: j\nX-Template-Bytes: 1\n",
	         "unknown head line 'X-Receiver: <a@b>'");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\n\nX-Job: j\nX-Template-Bytes: 1\n",
	         "empty line in the head");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\n", "ends before an X-Template-Bytes line");
	head_bad("X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 1", "ends before an X-Template-Bytes line");
	char longjob[200];
	snprintf(longjob, sizeof(longjob), "X-Sluice-Job: 1\nX-Sender: <>\nX-Job: %064d\nX-Template-Bytes: 1\n", 0);
	head_bad(longjob, "X-Job is longer than 63 bytes");
	/* a head over JOB_HEAD_MAX bytes */
	char big[JOB_HEAD_MAX + 200];
	strcpy(big, "X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Pool: "); /* (a job name is at most 63 bytes) */
	size_t n = strlen(big);
	memset(big + n, 'j', JOB_HEAD_MAX);
	strcpy(big + n + JOB_HEAD_MAX, "\nX-Template-Bytes: 1\n");
	head_bad(big, "no X-Template-Bytes line in the head's first 4096 bytes");
	/* just fits: the head's last byte is byte 4096 */
	struct job_head h;
	char why[256];
	size_t off, len;
	size_t tail = strlen("\nX-Template-Bytes: 1\n");
	memset(big + n, 'j', JOB_HEAD_MAX - n - tail);
	strcpy(big + JOB_HEAD_MAX - tail, "\nX-Template-Bytes: 1\n");
	assert_int_equal(strlen(big), JOB_HEAD_MAX);
	assert_true(job_head_parse(&h, big, strlen(big), &off, &len, why, sizeof(why)));
	assert_int_equal(off, JOB_HEAD_MAX);
	job_head_free(&h);
}

/* ---- columns ---- */

static void columns(void **state)
{
	const char *tpl = "Subject: x\n\nb\n";
	job_refused(tpl, "name,code\n", "no column named email");
	job_refused(tpl, "Email\n", "no column named email");
	job_refused(tpl, "email,name,name\n", "column name appears twice");
	job_refused(tpl, "email,first name\n", "column 2's name 'first name' is not letters");
	job_refused(tpl, "email,\n", "column 2's name '' is not letters");
	job_refused(tpl, "\n", "column 1's name '' is not letters");
	job_refused(tpl, "email,na\xc3\xafve\n", "column 2's name 'na\\xc3\\xafve' is not letters");
	job_refused("Subject: {{nope}}\n\n", "email\n", "uses {{nope}} (no default) but there is no column nope");
	job_refused("Subject: x\n\n{{Name}}", "email,name\n", "no column Name");
	/* a field's name is written out: a row's value never becomes a field */
	job_refused("Subject: x\n{{name}}\n\nb", "email,name\n", "template line 2: a header field's name holds {{");
	job_refused("X-{{name}}: v\n\nb", "email,name\n", "template line 1: a header field's name holds {{");
	struct job ok;
	job_ok(&ok, "Subject: x\n X-{{name}}: folded, a value\nX-A: {{name}}: fine\n\n{{name}}: body", "email,name\n");
	job_close(&ok);
	/* too many columns */
	struct buf c = { 0 };
	buf_adds(&c, "email");
	for (unsigned k = 1; k <= JOB_COLUMNS_MAX; k++)
		buf_printf(&c, ",c%u", k);
	buf_add(&c, "\n", 2);
	job_refused(tpl, c.p, "257 columns, more than 256");
	/* 256 is fine */
	c.len -= strlen(",c256\n") + 1;
	buf_add(&c, "\n", 2);
	struct job j;
	job_ok(&j, tpl, c.p);
	assert_int_equal(j.h.ncolumns, 256);
	job_close(&j);
	buf_free(&c);
	/* quoted names, a BOM, CRLF */
	job_ok(&j, "Subject: {{na-me_1}}\n\n", "\xef\xbb\xbf\"email\",na-me_1\r\n");
	assert_int_equal(j.h.ncolumns, 2);
	assert_string_equal(j.h.columns[0], "email");
	assert_string_equal(j.h.columns[1], "na-me_1");
	assert_int_equal(j.h.email_column, 0);
	job_close(&j);
	/* a name not a column, with a default: always the default */
	job_ok(&j, "Subject: {{nope|dflt}}\n\n", "email\n");
	expect_render(&j, "a@b.example\n", 1,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <a@b.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <1.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: dflt\r\n\r\n");
	job_close(&j);
}

/* ---- substitution ---- */

static void substitution(void **state)
{
	struct job j;
	job_ok(&j, "Subject: {{a}}|{{b|B}}|{{b|}}|{{{a}}}|{{ a}}|{{a |x}}|{{a|x}y}}|{a}|{{b|{{a}}}}\n"
	           "\n{{a}}{{a}}{{c|}}{{c|d|e}}{{a|{}}{{",
	       "a,email,b,c\n");
	expect_render(&j, "A,x@y.example,,\n", 5,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <5.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: A|B||{A}|{{ a}}|{{a |x}}|{{a|x}y}}|{a}|{{a}}\r\n\r\n"
	              "AAd|eA{{");
	/* values are inserted as they are, never read again for {{ */
	expect_render(&j, "{{b}},x@y.example,{{a}},c\n", 6,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <6.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: {{b}}|{{a}}|{{a}}|{{{b}}}|{{ a}}|{{a |x}}|{{a|x}y}}|{a}|{{a}}}}\r\n\r\n"
	              "{{b}}{{b}}cc{{b}}{{");
	job_close(&j);
}

/* ---- row refusals ---- */

static void refusals(void **state)
{
	struct job j;
	job_ok(&j, "Subject: {{s}}\nX-Code: {{code}}\n\n{{b}} {{code}}\n", "email,s,b,code\n");
	/* field count */
	expect_refused(&j, "a@b.example,s,b\n", "3 fields, the header has 4");
	expect_refused(&j, "a@b.example,s,b,c,d\n", "5 fields, the header has 4");
	expect_refused(&j, "a@b.example\n", "1 field, the header has 4");
	/* the recipient is given for the log even so */
	char why[256], rcpt[300];
	bool ok;
	char *got = render_n(&j, "a@b.example,s\n", 14, 1, DATE, &ok, why, rcpt);
	assert_false(ok);
	assert_string_equal(rcpt, "a@b.example");
	free(got);
	/* required fields, the first in template order */
	expect_refused(&j, "a@b.example,,b,c\n", "missing required field s");
	expect_refused(&j, "a@b.example,s,,\n", "missing required field code");
	expect_refused(&j, "a@b.example,\"\",\"\",\"\"\n", "missing required field s");
	/* header injection: CR, LF, NUL in a value used in a header */
	expect_refused(&j, "a@b.example,\"x\ny\",b,c\n", "field s holds a line break or NUL, used in a header");
	expect_refused(&j, "a@b.example,x\ry,b,c\n", "field s holds a line break or NUL, used in a header");
	expect_refused(&j, "a@b.example,s,b,\"c\r\nX-Evil: 1\"\n",
	               "field code holds a line break or NUL, used in a header");
	expect_refused_n(&j, "a@b.example,s\0t,b,c\n", 20, "field s holds a line break or NUL, used in a header");
	/* the missing field comes first in README's list */
	expect_refused(&j, "a@b.example,\"x\ny\",b,\n", "missing required field code");
	/* the body may hold line breaks, not NUL */
	expect_refused_n(&j, "a@b.example,s,b\0,c\n", 19, "field b holds a NUL, used in the body");
	expect_render(&j, "a@b.example,s,\"l1\nl2\rl3\r\n\",c\n", 2,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <a@b.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <2.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: s\r\nX-Code: c\r\n\r\nl1\nl2\rl3\r\n c\r\n");
	/* the email: as an X-Receiver is checked */
	expect_refused(&j, ",s,b,c\n", "email: empty address");
	expect_refused(&j, "<a@b.example>,s,b,c\n", "email: address contains '<' or '>'");
	expect_refused(&j, "\" a@b.example\",s,b,c\n", "email: address contains white space");
	expect_refused(&j, "\"a@b.example\nRCPT TO:<x@y>\",s,b,c\n", "email: address contains CR or LF");
	expect_refused(&j, "ab.example,s,b,c\n", "email: address has no '@'");
	expect_refused(&j, "a@,s,b,c\n", "email: address has an empty domain");
	job_close(&j);
	/* an empty value with a default is no injection; the email used in a header */
	job_ok(&j, "To: <{{email}}>\nSubject: {{s|-}}\n\n", "email,s\n");
	expect_render(&j, "a@b.example,\n", 3,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <a@b.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <3.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "To: <a@b.example>\r\nSubject: -\r\n\r\n");
	expect_refused(&j, "\"a@b.example\r\",s\n", "field email holds a line break or NUL, used in a header");
	job_close(&j);
}

/* ---- RFC 2047 ---- */

static char *one_row(const char *tpl, const char *cols, const char *rec)
{
	struct job j;
	job_ok(&j, tpl, cols);
	char why[256] = "";
	bool ok;
	char *got = render_n(&j, rec, strlen(rec), 1, NULL, &ok, why, NULL);
	if (!ok)
		fail_msg("row refused: %s", why);
	job_close(&j);
	return got;
}

static void expect_header(const char *tpl, const char *cols, const char *rec, const char *want_msg)
{
	char *got = one_row(tpl, cols, rec);
	const char *m = strstr(got, "\r\nMessage-ID: <1.");
	assert_non_null(m);
	m = strstr(m + 2, "\r\n") + 2; /* after the Message-ID line (no date given) */
	assert_string_equal(m, want_msg);
	free(got);
}

static void rfc2047(void **state)
{
	/* a 45-byte cut inside a 2-byte character: 44 bytes, then the rest */
	expect_header("Subject: {{s}}\n\nbody\n", "email,s\n",
	              "a@b.example,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"
	              "b\n",
	              "Subject: =?UTF-8?B?YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=?=\r\n"
	              " =?UTF-8?B?w6li?=\r\n\r\nbody\r\n");
	/* 30 x 2 bytes: 44 then 16 */
	expect_header("Subject: {{s}}\n\n", "email,s\n",
	              "a@b.example,\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
	              "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
	              "\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\n",
	              "Subject: =?UTF-8?B?w7zDvMO8w7zDvMO8w7zDvMO8w7zDvMO8w7zDvMO8w7zDvMO8w7zDvMO8w7w=?=\r\n"
	              " =?UTF-8?B?w7zDvMO8w7zDvMO8w7zDvA==?=\r\n\r\n");
	/* continuation bytes only: cut at 45 as it must */
	char rec[128];
	strcpy(rec, "a@b.example,");
	memset(rec + 12, 0xbf, 50);
	strcpy(rec + 62, "\n");
	expect_header("Subject: {{s}}\n\n", "email,s\n", rec,
	              "Subject: =?UTF-8?B?v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/?=\r\n"
	              " =?UTF-8?B?v7+/v78=?=\r\n\r\n");
	/* the template's own 8-bit text, spaces stripped, with the substitution */
	expect_header("Subject:   {{s|\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9}}, your spring offer  \nX-A: plain\n\nb",
	              "email,s\n", "a@b.example,\n",
	              "Subject: =?UTF-8?B?w5xuw69jw7Zkw6ksIHlvdXIgc3ByaW5nIG9mZmVy?=\r\nX-A: plain\r\n\r\nb");
	/* a folded field: unfolded, the whitespace after the break kept */
	expect_header("Subject: Gr\xc3\xbc\xc3\x9f" "e\n\taus Berlin\nX-B: 1\n\n", "email\n", "a@b.example\n",
	              "Subject: =?UTF-8?B?R3LDvMOfZQlhdXMgQmVybGlu?=\r\nX-B: 1\r\n\r\n");
	/* address fields: only the display name, quoted or not */
	expect_header("To: {{n}} <{{email}}>\n\n", "email,n\n", "j@x.example,J\xc3\xb6rg M\xc3\xbcller\n",
	              "To: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <j@x.example>\r\n\r\n");
	expect_header("to:  \"{{n}}\"\n  <{{email}}> \n\n", "email,n\n", "j@x.example,J\xc3\xb6rg M\xc3\xbcller\n",
	              "to: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <j@x.example>\r\n\r\n");
	expect_header("Reply-To: \"J\xc3\xb6rg <M\xc3\xbcller>\" <{{email}}>\n\n", "email\n", "j@x.example\n",
	              "Reply-To: =?UTF-8?B?SsO2cmcgPE3DvGxsZXI+?= <j@x.example>\r\n\r\n");
	/* ASCII display name, or no '<': left exactly as substituted */
	expect_header("From: News <news@exa\xc3\xb1o.example>\nCC: j\xc3\xb6rg@x.example\nSender: \"\" <s@\xc3\xa9.example>\n\n",
	              "email\n", "j@x.example\n",
	              "From: News <news@exa\xc3\xb1o.example>\r\nCC: j\xc3\xb6rg@x.example\r\n"
	              "Sender: \"\" <s@\xc3\xa9.example>\r\n\r\n");
	/* not an address field: all of the value */
	expect_header("X-To: J\xc3\xb6rg <j@x.example>\n\n", "email\n", "j@x.example\n",
	              "X-To: =?UTF-8?B?SsO2cmcgPGpAeC5leGFtcGxlPg==?=\r\n\r\n");
	/* no ':' in the first line: left as it is; 8-bit in the body: never encoded */
	expect_header("J\xc3\xb6rg\nSubject: ok\n\nJ\xc3\xb6rg\n", "email\n", "j@x.example\n",
	              "J\xc3\xb6rg\r\nSubject: ok\r\n\r\nJ\xc3\xb6rg\r\n");
}

/* ---- Message-ID, Date, the template's shape ---- */

static void message_id_and_date(void **state)
{
	/* Message-ID fields dropped (folded, any case), even with an unknown {{name}} */
	char *got = one_row("Message-ID:\n <old@x>\n\t<more>\nSubject: s\nmessage-id: <{{nope}}>\n"
	                    "Message-IDs: kept\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nb\n",
	                    "email\n", "a@b.example\n");
	assert_string_equal(got, "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <a@b.example>\r\nX-Job: j1\r\n"
	                         "Message-ID: <1.0123456789abcdef@news.example.com>\r\n"
	                         "Subject: s\r\nMessage-IDs: kept\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	                         "\r\nb\r\n");
	free(got);
	/* the template has a Date (any case): none added */
	struct job j;
	job_ok(&j, "DATE: {{d}}\nSubject: s\n\nb", "email,d\n");
	assert_true(j.h.has_date);
	expect_render(&j, "a@b.example,today\n", 78901234,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <a@b.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <78901234.0123456789abcdef@news.example.com>\r\n"
	              "DATE: today\r\nSubject: s\r\n\r\nb");
	job_close(&j);
	/* a date given, the template without: added after the Message-ID */
	job_ok(&j, "Dates: x\n\nb\n", "email\n");
	assert_false(j.h.has_date);
	expect_render(&j, "a@b.example\n", 1,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <a@b.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <1.0123456789abcdef@news.example.com>\r\n"
	              "Date: " DATE "\r\nDates: x\r\n\r\nb\r\n");
	job_close(&j);
	/* null sender: sluice.invalid; big row numbers */
	const char *f = "X-Sluice-Job: 1\nX-Sender: <>\nX-Job: j\nX-Template-Bytes: 4\nS: x"
	                "email\na@b.example";
	struct job_head h;
	char why[256];
	size_t off, len;
	assert_true(job_head_parse(&h, f, strlen(f), &off, &len, why, sizeof(why)));
	assert_true(job_head_prepare(&h, f + off, len, "email\n", 6, why, sizeof(why)));
	struct buf out = { 0 };
	char rcpt[8];
	assert_true(job_render(&h, "a@b.example", 11, UINT64_MAX, TOKEN, NULL, &out, rcpt, sizeof(rcpt),
	                       why, sizeof(why)));
	assert_string_equal(rcpt, "a@b.exa"); /* truncated */
	buf_add(&out, "", 1);
	/* a template without an empty line or a final line end: all header, empty body */
	assert_string_equal(out.p, "X-Sender: <>\r\nX-Receiver: <a@b.example>\r\nX-Job: j\r\n"
	                           "Message-ID: <18446744073709551615.0123456789abcdef@sluice.invalid>\r\n"
	                           "S: x\r\n\r\n");
	buf_free(&out);
	job_head_free(&h);
	/* CR and CRLF line ends in the template; an empty header part */
	got = one_row("Subject: {{a}}\rX: y\r\n\r\nl1\rl2\r\n{{a}}\n", "email,a\n", "a@b.example,v\n");
	assert_non_null(strstr(got, ">\r\nSubject: v\r\nX: y\r\n\r\nl1\r\nl2\r\nv\r\n"));
	free(got);
	got = one_row("\nbody {{email}}", "email\n", "a@b.example\n");
	assert_non_null(strstr(got, "@news.example.com>\r\n\r\nbody a@b.example"));
	free(got);
	got = one_row("", "email\n", "a@b.example\n");
	assert_non_null(strstr(got, "@news.example.com>\r\n\r\n"));
	free(got);
}

/* ---- CSV ---- */

static void csv_framing(void **state)
{
	unsigned lines;
	bool too_long;
	const char *s = "a,\"b\nc\",d\r\ne\n\r\n\n\"x\"\"y\nz\"\"\"";
	size_t len = strlen(s), r;
	r = job_csv_record(s, len, false, &lines, &too_long);
	assert_int_equal(r, 11);
	assert_int_equal(lines, 2);
	assert_false(too_long);
	r = job_csv_record(s + 11, len - 11, false, &lines, &too_long);
	assert_int_equal(r, 2);
	assert_int_equal(lines, 1);
	assert_false(job_csv_blank(s + 11, r));
	r = job_csv_record(s + 13, len - 13, false, &lines, &too_long);
	assert_int_equal(r, 2);
	assert_true(job_csv_blank(s + 13, r));
	r = job_csv_record(s + 15, len - 15, false, &lines, &too_long);
	assert_int_equal(r, 1);
	assert_true(job_csv_blank(s + 15, r));
	/* the last record: incomplete until EOF */
	assert_int_equal(job_csv_record(s + 16, len - 16, false, &lines, &too_long), 0);
	r = job_csv_record(s + 16, len - 16, true, &lines, &too_long);
	assert_int_equal(r, len - 16);
	assert_int_equal(lines, 1);
	/* a quote inside an unquoted field is a plain byte; after a closing quote, too */
	r = job_csv_record("a\"b,c\nd", 7, false, &lines, &too_long);
	assert_int_equal(r, 6);
	r = job_csv_record("\"a\"b\"c\nd\n", 9, false, &lines, &too_long);
	assert_int_equal(r, 7);
	/* too long: JOB_RECORD_MAX bytes without an end */
	size_t big = JOB_RECORD_MAX + 10;
	char *b = xmalloc(big);
	memset(b, 'x', big);
	b[big - 1] = '\n';
	b[3] = '\n';
	b[0] = '"'; /* the LF at 3 is quoted */
	r = job_csv_record(b, big, false, &lines, &too_long);
	assert_int_equal(r, JOB_RECORD_MAX);
	assert_true(too_long);
	assert_int_equal(lines, 1);
	r = job_csv_record(b, JOB_RECORD_MAX - 1, false, &lines, &too_long);
	assert_int_equal(r, 0);
	assert_false(too_long);
	/* exactly JOB_RECORD_MAX with its LF: fine; at EOF without: fine */
	b[0] = 'x';
	b[3] = 'x';
	b[JOB_RECORD_MAX - 1] = '\n';
	r = job_csv_record(b, big, false, &lines, &too_long);
	assert_int_equal(r, JOB_RECORD_MAX);
	assert_false(too_long);
	r = job_csv_record(b, JOB_RECORD_MAX - 1, true, &lines, &too_long);
	assert_int_equal(r, JOB_RECORD_MAX - 1);
	assert_false(too_long);
	assert_int_equal(lines, 0);
	free(b);
}

static void csv_fields(void **state)
{
	struct job j;
	job_ok(&j, "Subject: [{{a}}]\n\n[{{b}}]\n", "email,a,b\n");
	/* commas, doubled quotes, line breaks in quotes (body), CRLF record */
	expect_render(&j, "x@y.example,\"1,2 \"\"q\"\"\",\"l1\r\nl2\"\r\n", 1,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <1.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: [1,2 \"q\"]\r\n\r\n[l1\r\nl2]\r\n");
	/* plain quotes, text after a closing quote, a record without line end */
	expect_render(&j, "x@y.example,a\"b\",\"c\"d\"e\"", 2,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <2.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: [a\"b\"]\r\n\r\n[cd\"e\"]\r\n");
	/* a CR before the record's LF is its line end, a CR elsewhere is data */
	expect_render(&j, "x@y.example,\"\"\"\",a\rb\r\n", 3,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <3.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: [\"]\r\n\r\n[a\rb]\r\n");
	job_close(&j);
	job_ok(&j, "Subject: x\n\n[{{b}}]\n", "email,a,b\n");
	expect_render(&j, "x@y.example,a\rb,\"unclosed, \"\"x\n", 3,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <3.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: x\r\n\r\n[unclosed, \"x\n]\r\n");
	/* quoted email */
	expect_render(&j, "\"x@y.example\",,v\n", 4,
	              "X-Sender: <bounces@news.example.com>\r\nX-Receiver: <x@y.example>\r\nX-Job: j1\r\n"
	              "Message-ID: <4.0123456789abcdef@news.example.com>\r\nDate: " DATE "\r\n"
	              "Subject: x\r\n\r\n[v]\r\n");
	expect_refused(&j, "x@y.example,\"a,b\"\n", "2 fields, the header has 3");
	expect_refused(&j, "\n", "1 field, the header has 3");
	job_close(&j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(readme_example), cmocka_unit_test(head_good),
		cmocka_unit_test(head_refusals), cmocka_unit_test(columns),
		cmocka_unit_test(substitution), cmocka_unit_test(refusals),
		cmocka_unit_test(rfc2047), cmocka_unit_test(message_id_and_date),
		cmocka_unit_test(csv_framing), cmocka_unit_test(csv_fields),
	};
	return cmocka_run_group_tests_name("job_file", tests, NULL, NULL);
}
