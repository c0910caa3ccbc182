/* tests/unit/test_suppress.c - the suppression store (engine/suppress.c):
 * add, check and remove; global and per-domain scopes; normalisation;
 * addresses that could inject refused; entries kept across a reopen;
 * corrupt, truncated and missing stores refused at open; CSV import and
 * export; lookups on several threads while a writer adds. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../../engine/suppress.h"

#define MAP ((size_t)256 << 20) /* small maps keep the tests light */

static char dir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-suppress-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* dir/sub, the store's directory for one test. */
static const char *path(const char *sub)
{
	static char p[128];
	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	return p;
}

static struct suppress *open_rw(const char *sub)
{
	char err[512];
	struct suppress *s = suppress_open(path(sub), false, MAP, err, sizeof(err));
	if (!s)
		fail_msg("open %s: %s", sub, err);
	return s;
}

static void add(struct suppress *s, const char *scope, const char *addr, const char *reason)
{
	char err[512];
	int e = suppress_add(s, scope, addr, reason, "test", err, sizeof(err));
	if (e)
		fail_msg("add %s: %s", addr, err);
}

static enum suppress_result check(struct suppress *s, const char *domain, const char *rcpt, struct suppress_entry *e)
{
	struct suppress_reader *r = suppress_reader_new(s);
	enum suppress_result res = suppress_check(r, domain, rcpt, e);
	suppress_reader_free(r);
	return res;
}

static void add_check_remove(void **state)
{
	struct suppress *s = open_rw("a");
	struct suppress_entry e;
	assert_int_equal(check(s, NULL, "bob@example.com", &e), SUPPRESS_NO);
	time_t before = time(NULL);
	add(s, NULL, "bob@example.com", "bad-mailbox");
	assert_int_equal(check(s, NULL, "bob@example.com", &e), SUPPRESS_YES);
	assert_string_equal(e.address, "bob@example.com");
	assert_string_equal(e.scope, "");
	assert_string_equal(e.reason, "bad-mailbox");
	assert_string_equal(e.source, "test");
	assert_true(e.added >= before && e.added <= time(NULL) + 1);
	assert_int_equal(check(s, NULL, "bobby@example.com", NULL), SUPPRESS_NO);
	assert_int_equal(check(s, NULL, "bob@example.co", NULL), SUPPRESS_NO);
	/* Adding again replaces the entry. */
	add(s, NULL, "bob@example.com", "complaint");
	assert_int_equal(check(s, NULL, "bob@example.com", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "complaint");
	/* The default reason. */
	add(s, NULL, "carol@example.com", NULL);
	assert_int_equal(check(s, NULL, "carol@example.com", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "manual");
	char err[512];
	assert_int_equal(suppress_remove(s, NULL, "bob@example.com", err, sizeof(err)), 0);
	assert_int_equal(check(s, NULL, "bob@example.com", NULL), SUPPRESS_NO);
	assert_int_equal(suppress_remove(s, NULL, "bob@example.com", err, sizeof(err)), ENOENT);
	assert_non_null(strstr(err, "not suppressed"));
	struct suppress_stats st;
	assert_true(suppress_stats(s, &st, err, sizeof(err)));
	assert_int_equal(st.entries, 1);
	assert_true(st.map_size >= MAP);
	suppress_close(s);
}

static void scopes(void **state)
{
	struct suppress *s = open_rw("b");
	add(s, "", "g@x.example", "manual");
	add(s, "news.example", "d@x.example", "unsubscribe");
	struct suppress_entry e;
	/* A global entry suppresses mail from every sender domain. */
	assert_int_equal(check(s, NULL, "g@x.example", &e), SUPPRESS_YES);
	assert_int_equal(check(s, "news.example", "g@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.scope, "");
	assert_int_equal(check(s, "other.example", "g@x.example", NULL), SUPPRESS_YES);
	/* A domain's entry only mail from that domain. */
	assert_int_equal(check(s, "news.example", "d@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.scope, "news.example");
	assert_string_equal(e.reason, "unsubscribe");
	assert_int_equal(check(s, "NEWS.Example.", "D@X.example", NULL), SUPPRESS_YES);
	assert_int_equal(check(s, NULL, "d@x.example", NULL), SUPPRESS_NO);
	assert_int_equal(check(s, "", "d@x.example", NULL), SUPPRESS_NO);
	assert_int_equal(check(s, "other.example", "d@x.example", NULL), SUPPRESS_NO);
	assert_int_equal(check(s, "sub.news.example", "d@x.example", NULL), SUPPRESS_NO);
	/* Both: the global one is reported; get asks one scope exactly. */
	add(s, "news.example", "g@x.example", "complaint");
	assert_int_equal(check(s, "news.example", "g@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.scope, "");
	struct suppress_reader *r = suppress_reader_new(s);
	assert_int_equal(suppress_get(r, "news.example", "g@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "complaint");
	assert_int_equal(suppress_get(r, "news.example", "nobody@x.example", &e), SUPPRESS_NO);
	assert_int_equal(suppress_get(r, NULL, "d@x.example", &e), SUPPRESS_NO);
	suppress_reader_free(r);
	/* Removing one scope's entry leaves the other. */
	char err[512];
	assert_int_equal(suppress_remove(s, NULL, "g@x.example", err, sizeof(err)), 0);
	assert_int_equal(check(s, NULL, "g@x.example", NULL), SUPPRESS_NO);
	assert_int_equal(check(s, "news.example", "g@x.example", NULL), SUPPRESS_YES);
	size_t n;
	assert_true(suppress_count_scope(s, "news.example", &n, err, sizeof(err)));
	assert_int_equal(n, 2);
	assert_true(suppress_count_scope(s, "", &n, err, sizeof(err)));
	assert_int_equal(n, 0);
	assert_true(suppress_count_scope(s, "news.exampl", &n, err, sizeof(err)));
	assert_int_equal(n, 0);
	suppress_close(s);
}

static void normalisation(void **state)
{
	char out[SUPPRESS_ADDR_MAX], err[512];
	assert_int_equal(suppress_normalise_address("John.Doe+Tag@Example.COM", out, err, sizeof(err)), 0);
	assert_string_equal(out, "john.doe+tag@example.com");
	/* Bytes from 0x80 up (SMTPUTF8) are kept as they are. */
	assert_int_equal(suppress_normalise_address("J\xc3\x89@Example.com", out, err, sizeof(err)), 0);
	assert_string_equal(out, "j\xc3\x89@example.com");
	assert_int_equal(suppress_normalise_scope("Mail.Example.ORG.", out, err, sizeof(err)), 0);
	assert_string_equal(out, "mail.example.org");
	assert_int_equal(suppress_normalise_scope(NULL, out, err, sizeof(err)), 0);
	assert_string_equal(out, "");
	struct suppress *s = open_rw("c");
	add(s, "Example.NET", "MiXeD@Example.Com", "manual");
	struct suppress_entry e;
	assert_int_equal(check(s, "example.net", "mixed@example.com", &e), SUPPRESS_YES);
	assert_string_equal(e.address, "mixed@example.com");
	assert_string_equal(e.scope, "example.net");
	assert_int_equal(check(s, "EXAMPLE.net.", "MIXED@EXAMPLE.COM", NULL), SUPPRESS_YES);
	suppress_close(s);
}

static void refused(void **state)
{
	char out[SUPPRESS_ADDR_MAX], err[512];
	static const char *bad[] = { "a\r@x.example", "a\n@x.example", "a@x.example\r\nRCPT TO:<v@y>",
	                             "a b@x.example", "a\t@x.example", "ax.example", "", "@x.example",
	                             "a@", "<a@x.example>", "a\x01@x.example" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(suppress_normalise_address(bad[i], out, err, sizeof(err)), EINVAL);
		assert_true(err[0]);
	}
	char lng[400];
	memset(lng, 'a', sizeof(lng) - 1);
	lng[sizeof(lng) - 1] = 0;
	lng[100] = '@';
	assert_int_equal(suppress_normalise_address(lng, out, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "254"));
	static const char *bad_scopes[] = { "a b.example", "x.example\r\n", "a..b", ".a", "a/b", "a@b" };
	for (size_t i = 0; i < sizeof(bad_scopes) / sizeof(bad_scopes[0]); i++)
		assert_int_equal(suppress_normalise_scope(bad_scopes[i], out, err, sizeof(err)), EINVAL);
	struct suppress *s = open_rw("d");
	assert_int_equal(suppress_add(s, NULL, "a\r\n@x.example", NULL, NULL, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "CR or LF"));
	assert_int_equal(suppress_add(s, NULL, "nobody", NULL, NULL, err, sizeof(err)), EINVAL);
	assert_non_null(strstr(err, "'@'"));
	assert_int_equal(suppress_add(s, "bad domain", "a@x.example", NULL, NULL, err, sizeof(err)), EINVAL);
	assert_int_equal(suppress_add(s, NULL, "a@x.example", "Bad Reason", NULL, err, sizeof(err)), EINVAL);
	assert_int_equal(suppress_add(s, NULL, "a@x.example", "a-reason-that-is-far-too-long-to-keep", NULL, err,
	                              sizeof(err)), EINVAL);
	struct suppress_stats st;
	assert_true(suppress_stats(s, &st, err, sizeof(err)));
	assert_int_equal(st.entries, 0);
	/* A lookup of such an address is "no", never a match by accident. */
	assert_int_equal(check(s, NULL, "a\r\n@x.example", NULL), SUPPRESS_NO);
	/* A source text's control characters are replaced, a long one cut. */
	char src[300];
	memset(src, 's', sizeof(src) - 1);
	src[sizeof(src) - 1] = 0;
	src[3] = '\n';
	assert_int_equal(suppress_add(s, NULL, "a@x.example", NULL, src, err, sizeof(err)), 0);
	struct suppress_entry e;
	assert_int_equal(check(s, NULL, "a@x.example", &e), SUPPRESS_YES);
	assert_int_equal(strlen(e.source), SUPPRESS_SOURCE_MAX - 1);
	assert_int_equal(e.source[3], '?');
	suppress_close(s);
}

static void reopen_keeps(void **state)
{
	struct suppress *s = open_rw("e");
	add(s, NULL, "kept@x.example", "complaint");
	add(s, "d.example", "kept2@x.example", "unsubscribe");
	char err[512];
	/* LMDB must not be opened twice in one process: refused. */
	assert_null(suppress_open(path("e"), true, MAP, err, sizeof(err)));
	assert_non_null(strstr(err, "already open"));
	suppress_close(s);
	s = suppress_open(path("e"), true, MAP, err, sizeof(err));
	assert_non_null(s);
	struct suppress_entry e;
	assert_int_equal(check(s, NULL, "kept@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "complaint");
	assert_int_equal(check(s, "d.example", "kept2@x.example", &e), SUPPRESS_YES);
	/* Read-only: writes fail, clearly. */
	assert_int_not_equal(suppress_add(s, NULL, "new@x.example", NULL, NULL, err, sizeof(err)), 0);
	suppress_close(s);
	/* Files 0660, the directory 0770. */
	struct stat st;
	char f[160];
	snprintf(f, sizeof(f), "%s/data.mdb", path("e"));
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_int_equal(stat(path("e"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0770);
}

static void write_file(const char *file, const void *p, size_t n)
{
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

/* Opening sub (read-only and writable) fails with an error naming want. */
static void open_fails(const char *sub, const char *want, const char *want2)
{
	char err[512];
	for (int ro = 0; ro < 2; ro++) {
		err[0] = 0;
		struct suppress *s = suppress_open(path(sub), ro, MAP, err, sizeof(err));
		if (s)
			fail_msg("%s opened (%s)", sub, ro ? "read-only" : "writable");
		if (!strstr(err, want) || (want2 && !strstr(err, want2)))
			fail_msg("%s: error '%s' does not say '%s'", sub, err, want);
	}
}

static void corrupt_store(void **state)
{
	char f[160], err[512];
	/* Garbage in data.mdb. */
	mkdir(path("g"), 0770);
	snprintf(f, sizeof(f), "%s/data.mdb", path("g"));
	static char junk[65536];
	srand(7);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)rand();
	write_file(f, junk, sizeof(junk));
	open_fails("g", "g/data.mdb", "not an LMDB file");
	/* Text that is no database at all. */
	write_file(f, "address,domain\na@b.example,\n", 28);
	open_fails("g", "g/data.mdb", "corrupt");
	/* An empty data.mdb: not a new store. */
	write_file(f, "", 0);
	open_fails("g", "g/data.mdb", "empty");
	/* A store cut short. */
	struct suppress *s = open_rw("t");
	FILE *csv = tmpfile();
	for (int i = 0; i < 20000; i++)
		fprintf(csv, "user%d@trunc.example\n", i);
	rewind(csv);
	struct suppress_import_stats ist;
	assert_true(suppress_import(s, csv, NULL, NULL, "t", &ist, NULL, NULL, err, sizeof(err)));
	fclose(csv);
	assert_int_equal(ist.added, 20000);
	suppress_close(s);
	snprintf(f, sizeof(f), "%s/data.mdb", path("t"));
	assert_int_equal(truncate(f, 3 * 4096), 0);
	open_fails("t", "t/data.mdb", "truncated");
	/* Missing: read-only never makes one, nor reads "nothing suppressed". */
	assert_null(suppress_open(path("none"), true, MAP, err, sizeof(err)));
	assert_non_null(strstr(err, "none"));
	mkdir(path("nodata"), 0770);
	assert_null(suppress_open(path("nodata"), true, MAP, err, sizeof(err)));
	assert_non_null(strstr(err, "nodata/data.mdb"));
	/* A file where the directory should be. */
	write_file(path("file"), "x", 1);
	assert_null(suppress_open(path("file"), false, MAP, err, sizeof(err)));
	assert_non_null(strstr(err, "not a directory"));
	/* Writable: missing directories are made. */
	s = open_rw("deep/er/store");
	suppress_close(s);
}

static const char *bad_why[8];
static size_t bad_line_no[8], nbad;

static void on_bad(void *arg, size_t line, const char *why)
{
	if (nbad < 8) {
		bad_line_no[nbad] = line;
		bad_why[nbad] = strdup(why);
	}
	nbad++;
}

static void import_export(void **state)
{
	static const char csv[] =
		"address,domain,reason\n"
		"one@x.example\n"
		"Two@X.example,news.example,Complaint\n"
		"\n"
		"bad address@x.example\n"                      /* 5 */
		"three@x.example,,unsubscribe\n"
		"noat\n"                                        /* 7 */
		"\"\"\"quoted,comma\"\"@x.example\",,bad-mailbox\n"
		"four@x.example,bad domain!,manual\n"           /* 9 */
		"five@x.example,,no such\n"                     /* 10 */
		"six@x.example,,manual,2024-05-01T12:00:00Z,feedback:f1\r\n"
		"seven@x.example,,manual,yesterday\n"           /* 12 */
		"a,b,c,d,e,f\n"                                 /* 13 */
		"\"open@x.example\n";                           /* 14 */
	FILE *in = fmemopen((void *)csv, sizeof(csv) - 1, "r");
	struct suppress *s = open_rw("i");
	struct suppress_import_stats st;
	char err[512];
	nbad = 0;
	assert_true(suppress_import(s, in, "def.example", "manual", "import:t.csv", &st, on_bad, NULL, err, sizeof(err)));
	fclose(in);
	assert_int_equal(st.lines, 14);
	assert_int_equal(st.added, 5);
	assert_int_equal(st.skipped, 2);
	assert_int_equal(st.bad, 7);
	size_t want_lines[] = { 5, 7, 9, 10, 12, 13, 14 };
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(bad_line_no[i], want_lines[i]);
	assert_non_null(strstr(bad_why[0], "white space"));
	assert_non_null(strstr(bad_why[4], "RFC 3339"));
	for (size_t i = 0; i < 7 && i < 8; i++)
		free((void *)bad_why[i]);
	struct suppress_entry e;
	assert_int_equal(check(s, "def.example", "one@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.scope, "def.example");
	assert_string_equal(e.source, "import:t.csv");
	assert_int_equal(check(s, NULL, "one@x.example", &e), SUPPRESS_NO);
	assert_int_equal(check(s, "news.example", "two@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "complaint");
	assert_int_equal(check(s, "def.example", "three@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "unsubscribe");
	assert_int_equal(check(s, "def.example", "\"quoted,comma\"@x.example", &e), SUPPRESS_YES);
	assert_int_equal(check(s, "def.example", "six@x.example", &e), SUPPRESS_YES);
	assert_int_equal(e.added, 1714564800);
	assert_string_equal(e.source, "feedback:f1");
	/* Export, then import that into a new store: the same entries. */
	char *buf = NULL;
	size_t len = 0, n = 0;
	FILE *out = open_memstream(&buf, &len);
	assert_true(suppress_export(s, out, NULL, &n, err, sizeof(err)));
	fclose(out);
	assert_int_equal(n, 5);
	assert_non_null(strstr(buf, "address,domain,reason,added,source\n"));
	assert_non_null(strstr(buf, "\"\"\"quoted,comma\"\"@x.example\",def.example,bad-mailbox,"));
	assert_non_null(strstr(buf, "six@x.example,def.example,manual,2024-05-01T12:00:00Z,feedback:f1\n"));
	struct suppress *s2 = open_rw("i2");
	in = fmemopen(buf, len, "r");
	assert_true(suppress_import(s2, in, NULL, NULL, "x", &st, NULL, NULL, err, sizeof(err)));
	fclose(in);
	assert_int_equal(st.added, 5);
	assert_int_equal(st.bad, 0);
	char *buf2 = NULL;
	size_t len2 = 0;
	out = open_memstream(&buf2, &len2);
	assert_true(suppress_export(s2, out, NULL, &n, err, sizeof(err)));
	fclose(out);
	assert_string_equal(buf, buf2);
	/* One scope's export. */
	free(buf2);
	buf2 = NULL;
	out = open_memstream(&buf2, &len2);
	assert_true(suppress_export(s2, out, "news.example", &n, err, sizeof(err)));
	fclose(out);
	assert_int_equal(n, 1);
	free(buf);
	free(buf2);
	suppress_close(s2);
	suppress_close(s);
}

/* Of two lines for one entry, the later wins; the import's count says
 * what was written. */
static void import_duplicates(void **state)
{
	static const char csv[] = "b@x.example,,complaint\n"
	                          "a@x.example,,bad-mailbox\n"
	                          "A@X.EXAMPLE,,unsubscribe\n"
	                          "b@x.example,d.example,manual\n";
	FILE *in = fmemopen((void *)csv, sizeof(csv) - 1, "r");
	struct suppress *s = open_rw("dup");
	add(s, NULL, "b@x.example", "manual");
	struct suppress_import_stats st;
	char err[512];
	assert_true(suppress_import(s, in, NULL, NULL, "t", &st, NULL, NULL, err, sizeof(err)));
	fclose(in);
	assert_int_equal(st.added, 3);
	struct suppress_entry e;
	assert_int_equal(check(s, NULL, "a@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "unsubscribe");
	assert_int_equal(check(s, NULL, "b@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "complaint");
	struct suppress_reader *r = suppress_reader_new(s);
	assert_int_equal(suppress_get(r, "d.example", "b@x.example", &e), SUPPRESS_YES);
	assert_string_equal(e.reason, "manual");
	suppress_reader_free(r);
	struct suppress_stats sst;
	assert_true(suppress_stats(s, &sst, err, sizeof(err)));
	assert_int_equal(sst.entries, 3);
	suppress_close(s);
}

/* ---- readers on threads while a writer adds ---- */

#define PRELOAD 100000
#define LOOKUPS 100000
#define THREADS 4
#define WRITES 200

struct reader_arg {
	struct suppress *s;
	unsigned seed;
	size_t yes, no, errors, wrong;
};

static void *reader_thread(void *p)
{
	struct reader_arg *a = p;
	struct suppress_reader *r = suppress_reader_new(a->s);
	char addr[64];
	for (int i = 0; i < LOOKUPS; i += 10) {
		suppress_reader_begin(r); /* a batch: the recipients of one message */
		for (int j = 0; j < 10; j++) {
			unsigned k = (unsigned)rand_r(&a->seed) % (2 * PRELOAD);
			snprintf(addr, sizeof(addr), "User%u@Load.example", k);
			enum suppress_result res = suppress_check(r, (k & 1) ? "sender.example" : NULL, addr, NULL);
			if (res == SUPPRESS_ERROR)
				a->errors++;
			else if ((res == SUPPRESS_YES) != (k < PRELOAD))
				a->wrong++;
			else if (res == SUPPRESS_YES)
				a->yes++;
			else
				a->no++;
		}
		suppress_reader_end(r);
	}
	suppress_reader_free(r);
	return NULL;
}

static void threads(void **state)
{
	struct suppress *s = open_rw("th");
	FILE *csv = tmpfile();
	for (int i = 0; i < PRELOAD; i++)
		fprintf(csv, "user%d@load.example\n", i);
	rewind(csv);
	struct suppress_import_stats ist;
	char err[512];
	assert_true(suppress_import(s, csv, NULL, NULL, "t", &ist, NULL, NULL, err, sizeof(err)));
	fclose(csv);
	assert_int_equal(ist.added, PRELOAD);
	pthread_t t[THREADS];
	struct reader_arg a[THREADS];
	for (int i = 0; i < THREADS; i++) {
		a[i] = (struct reader_arg){ .s = s, .seed = (unsigned)i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &a[i]), 0);
	}
	/* The writer adds addresses the readers never ask about. */
	for (int i = 0; i < WRITES; i++) {
		char addr[64];
		snprintf(addr, sizeof(addr), "w%d@write.example", i);
		add(s, i & 1 ? "sender.example" : NULL, addr, "complaint");
	}
	size_t yes = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].errors, 0);
		assert_int_equal(a[i].wrong, 0);
		assert_int_equal(a[i].yes + a[i].no, LOOKUPS);
		yes += a[i].yes;
	}
	assert_true(yes > THREADS * LOOKUPS / 4);
	/* A fresh snapshot sees every write. */
	struct suppress_reader *r = suppress_reader_new(s);
	suppress_reader_begin(r);
	for (int i = 0; i < WRITES; i++) {
		char addr[64];
		snprintf(addr, sizeof(addr), "w%d@write.example", i);
		assert_int_equal(suppress_check(r, "sender.example", addr, NULL), SUPPRESS_YES);
		assert_int_equal(suppress_check(r, NULL, addr, NULL), i & 1 ? SUPPRESS_NO : SUPPRESS_YES);
	}
	suppress_reader_end(r);
	suppress_reader_free(r);
	struct suppress_stats st;
	assert_true(suppress_stats(s, &st, err, sizeof(err)));
	assert_int_equal(st.entries, PRELOAD + WRITES);
	suppress_close(s);
}

/* A snapshot taken before a write does not see it; the next one does. */
static void snapshots(void **state)
{
	struct suppress *s = open_rw("sn");
	struct suppress_reader *r = suppress_reader_new(s);
	suppress_reader_begin(r);
	assert_int_equal(suppress_check(r, NULL, "late@x.example", NULL), SUPPRESS_NO);
	add(s, NULL, "late@x.example", NULL);
	assert_int_equal(suppress_check(r, NULL, "late@x.example", NULL), SUPPRESS_NO);
	suppress_reader_end(r);
	assert_int_equal(suppress_check(r, NULL, "late@x.example", NULL), SUPPRESS_YES);
	suppress_reader_begin(r);
	assert_int_equal(suppress_check(r, NULL, "late@x.example", NULL), SUPPRESS_YES);
	suppress_reader_end(r);
	assert_string_equal(suppress_reader_error(r), "");
	suppress_reader_free(r);
	suppress_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(add_check_remove), cmocka_unit_test(scopes),       cmocka_unit_test(normalisation),
		cmocka_unit_test(refused),          cmocka_unit_test(reopen_keeps), cmocka_unit_test(corrupt_store),
		cmocka_unit_test(import_export),    cmocka_unit_test(import_duplicates), cmocka_unit_test(snapshots),
		cmocka_unit_test(threads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
