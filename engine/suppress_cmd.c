/* engine/suppress_cmd.c - `sluice suppress`: the operator's view of the
 * suppression store (suppress.c): add, remove, check, import from CSV,
 * export to CSV, count. Writing subcommands create the store when it is
 * missing; reading ones never do (a missing store is an error, never
 * "not suppressed"). */
#define _GNU_SOURCE
#include "suppress.h"
#include "lib/util.h"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BAD_LINES_SHOWN 20
#define EXIT_STORE 1       /* the store failed (check: EXIT_CHECK_STORE) */
#define EXIT_CHECK_STORE 3 /* check could not read the store: neither yes nor no */

struct flags {
	const char *store, *domain;
	char *reason;
	bool domain_given;
};

static void usage(FILE *f)
{
	fputs("usage: sluice suppress [--store DIR] COMMAND [options]   (COMMAND --help for each)\n"
	      "  add ADDR... [--domain D] [--reason R]   suppress addresses (globally, or for mail from D)\n"
	      "  remove ADDR... [--domain D]             lift a suppression\n"
	      "  check ADDR [--domain D]                 is it suppressed? (exit 0 yes, 1 no, 3 store unreadable)\n"
	      "  import FILE.csv [--domain D] [--reason R]  add the addresses of a CSV file (- for stdin)\n"
	      "  export [--domain D]                     every entry as CSV on stdout\n"
	      "  count [--domain D]                      how many entries (all, or of one scope)\n"
	      "The store (an LMDB directory; default " SUPPRESS_DEFAULT_DIR ") holds the\n"
	      "addresses sluice does not send to: globally, or for one sending domain (--domain).\n"
	      "Addresses are compared in lower case, local part included. Exit status 2 on\n"
	      "usage errors, 1 when the store cannot be used.\n",
	      f);
}

static void usage_of(const char *cmd, FILE *f)
{
	if (!strcmp(cmd, "add"))
		fputs("usage: sluice suppress [--store DIR] add ADDR... [--domain D] [--reason R]\n"
		      "Suppresses each ADDR: globally, or only for mail whose sender's domain is D.\n"
		      "R is the reason class (default manual; e.g. bad-mailbox, complaint,\n"
		      "unsubscribe: lower-case letters, digits and '-'). An address already there\n"
		      "gets the new reason and time. The store is created when missing.\n",
		      f);
	else if (!strcmp(cmd, "remove"))
		fputs("usage: sluice suppress [--store DIR] remove ADDR... [--domain D]\n"
		      "Removes the global entry of each ADDR (with --domain: the entry for D only).\n"
		      "Exit status 1 when an address had no such entry.\n",
		      f);
	else if (!strcmp(cmd, "check"))
		fputs("usage: sluice suppress [--store DIR] check ADDR [--domain D]\n"
		      "Prints the entries that suppress ADDR for mail from D (the global one and D's;\n"
		      "without --domain, the global one). Exit status 0 when suppressed, 1 when not,\n"
		      "3 when the store cannot be read (missing, corrupt): neither answer.\n",
		      f);
	else if (!strcmp(cmd, "import"))
		fputs("usage: sluice suppress [--store DIR] import FILE.csv [--domain D] [--reason R]\n"
		      "Adds one entry per line: address[,domain[,reason[,added[,source]]]] (what\n"
		      "export writes; fields may be double-quoted). An empty or missing domain is\n"
		      "D (default: global), an empty reason R (default manual); added is RFC 3339\n"
		      "UTC or unix seconds (default now). A first line starting with \"address\" is a\n"
		      "header. Lines that cannot be used are reported with their numbers and\n"
		      "skipped. Committed every 100000 entries. FILE - reads stdin.\n",
		      f);
	else if (!strcmp(cmd, "export"))
		fputs("usage: sluice suppress [--store DIR] export [--domain D]\n"
		      "Writes every entry (with --domain: D's only; --domain '' the global ones) as\n"
		      "CSV to stdout: address,domain,reason,added,source, added in RFC 3339 UTC,\n"
		      "domain empty for a global entry. import reads it back.\n",
		      f);
	else if (!strcmp(cmd, "count"))
		fputs("usage: sluice suppress [--store DIR] count [--domain D]\n"
		      "Prints how many entries the store holds (with --domain: D's only; --domain ''\n"
		      "the global ones).\n",
		      f);
}

/* The subcommand's options, anywhere among its arguments. */
static void parse_flags(const char *cmd, int argc, char **argv, struct flags *fl, bool with_reason)
{
	static const struct option opts[] = {
		{ "domain", required_argument, 0, 'd' }, { "reason", required_argument, 0, 'r' },
		{ "store", required_argument, 0, 's' },  { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int c;
	optind = 0; /* glibc: start afresh (the first scan stopped at the command) */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			fl->domain = optarg;
			fl->domain_given = true;
			break;
		case 'r':
			if (!with_reason) {
				fprintf(stderr, "sluice: suppress %s: --reason is for add and import\n", cmd);
				exit(2);
			}
			fl->reason = optarg;
			break;
		case 's': fl->store = optarg; break;
		case 'h': usage_of(cmd, stdout); exit(0);
		default: usage_of(cmd, stderr); exit(2);
		}
	}
	char scope[SUPPRESS_SCOPE_MAX], err[300];
	if (fl->domain && suppress_normalise_scope(fl->domain, scope, err, sizeof(err)))
		fatal("suppress %s: --%s", cmd, err);
	for (char *r = fl->reason; r && *r; r++)
		*r = *r >= 'A' && *r <= 'Z' ? (char)(*r + 32) : *r;
	if (fl->reason && !suppress_reason_valid(fl->reason))
		fatal("suppress %s: --reason '%s': lower-case letters, digits and '-' (at most %d)", cmd, fl->reason,
		      SUPPRESS_REASON_MAX - 1);
}

static struct suppress *open_store(const struct flags *fl, bool read_only, int fail_status)
{
	char err[600];
	struct suppress *s = suppress_open(fl->store, read_only, 0, err, sizeof(err));
	if (!s) {
		fprintf(stderr, "sluice: suppress: %s\n", err);
		exit(fail_status);
	}
	return s;
}

static void need_args(const char *cmd, int n, int min, int max)
{
	if (n < min || n > max) {
		fprintf(stderr, "sluice: suppress %s: %s\n", cmd, n < min ? "missing argument" : "too many arguments");
		usage_of(cmd, stderr);
		exit(2);
	}
}

static const char *scope_text(const char *scope, char *buf, size_t len)
{
	if (!scope[0])
		return "globally";
	snprintf(buf, len, "for mail from %s", scope);
	return buf;
}

static void time_text(int64_t t, char *out, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (!gmtime_r(&tt, &tm) || !strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, len, "%lld", (long long)t);
}

static int cmd_add(struct flags *fl, int n, char **args)
{
	need_args("add", n, 1, 1000000);
	struct suppress *s = open_store(fl, false, EXIT_STORE);
	int status = 0;
	char err[600], b[300];
	for (int i = 0; i < n; i++) {
		int e = suppress_add(s, fl->domain, args[i], fl->reason, "cli", err, sizeof(err));
		if (e) {
			fprintf(stderr, "sluice: suppress add: %s\n", err);
			status = e == EINVAL ? 2 : EXIT_STORE;
			if (e != EINVAL)
				break;
			continue;
		}
		char a[SUPPRESS_ADDR_MAX], d[SUPPRESS_SCOPE_MAX];
		suppress_normalise_address(args[i], a, NULL, 0);
		suppress_normalise_scope(fl->domain, d, NULL, 0);
		printf("suppressed %s %s (%s)\n", a, scope_text(d, b, sizeof(b)), fl->reason ? fl->reason : "manual");
	}
	suppress_close(s);
	return status;
}

static int cmd_remove(struct flags *fl, int n, char **args)
{
	need_args("remove", n, 1, 1000000);
	struct suppress *s = open_store(fl, false, EXIT_STORE);
	int status = 0;
	char err[600], b[300];
	for (int i = 0; i < n; i++) {
		int e = suppress_remove(s, fl->domain, args[i], err, sizeof(err));
		if (e == EINVAL) {
			fprintf(stderr, "sluice: suppress remove: %s\n", err);
			status = 2;
		} else if (e == ENOENT) {
			fprintf(stderr, "sluice: suppress remove: %s\n", err);
			if (!status)
				status = 1;
		} else if (e) {
			fprintf(stderr, "sluice: suppress remove: %s\n", err);
			status = EXIT_STORE;
			break;
		} else {
			char a[SUPPRESS_ADDR_MAX], d[SUPPRESS_SCOPE_MAX];
			suppress_normalise_address(args[i], a, NULL, 0);
			suppress_normalise_scope(fl->domain, d, NULL, 0);
			printf("removed %s (suppressed %s until now)\n", a, scope_text(d, b, sizeof(b)));
		}
	}
	suppress_close(s);
	return status;
}

static void print_entry(const struct suppress_entry *e)
{
	char when[40], b[300];
	time_text(e->added, when, sizeof(when));
	printf("%s: suppressed %s: reason %s, added %s, source %s\n", e->address, scope_text(e->scope, b, sizeof(b)),
	       e->reason, when, e->source[0] ? e->source : "-");
}

static int cmd_check(struct flags *fl, int n, char **args)
{
	need_args("check", n, 1, 1);
	char a[SUPPRESS_ADDR_MAX], d[SUPPRESS_SCOPE_MAX], err[300];
	if (suppress_normalise_address(args[0], a, err, sizeof(err)))
		fatal("suppress check: %s", err);
	suppress_normalise_scope(fl->domain, d, NULL, 0);
	struct suppress *s = open_store(fl, true, EXIT_CHECK_STORE);
	struct suppress_reader *r = suppress_reader_new(s);
	struct suppress_entry e;
	int found = 0, status = 1;
	suppress_reader_begin(r);
	for (int pass = 0; pass < (d[0] ? 2 : 1); pass++) {
		enum suppress_result res = suppress_get(r, pass ? d : "", a, &e);
		if (res == SUPPRESS_ERROR) {
			fprintf(stderr, "sluice: suppress check: %s\n", suppress_reader_error(r));
			status = EXIT_CHECK_STORE;
			break;
		}
		if (res == SUPPRESS_YES) {
			print_entry(&e);
			found++;
		}
	}
	suppress_reader_end(r);
	if (status != EXIT_CHECK_STORE) {
		status = found ? 0 : 1;
		if (!found) {
			char b[300];
			if (d[0])
				printf("%s: not suppressed (neither globally nor %s)\n", a, scope_text(d, b, sizeof(b)));
			else
				printf("%s: not suppressed globally\n", a);
		}
	}
	suppress_reader_free(r);
	suppress_close(s);
	return status;
}

struct bad_report {
	const char *file;
	size_t shown;
};

static void bad_line(void *arg, size_t line, const char *why)
{
	struct bad_report *br = arg;
	if (br->shown++ < BAD_LINES_SHOWN)
		fprintf(stderr, "sluice: suppress import: %s:%zu: %s\n", br->file, line, why);
}

static int cmd_import(struct flags *fl, int n, char **args)
{
	need_args("import", n, 1, 1);
	const char *file = args[0];
	bool std_in = !strcmp(file, "-");
	FILE *in = std_in ? stdin : fopen(file, "r");
	if (!in) {
		fprintf(stderr, "sluice: suppress import: %s: %s\n", file, strerror(errno));
		return 1;
	}
	char source[SUPPRESS_SOURCE_MAX], err[600];
	const char *base = strrchr(file, '/');
	snprintf(source, sizeof(source), "import:%s", std_in ? "stdin" : base ? base + 1 : file);
	struct suppress *s = open_store(fl, false, EXIT_STORE);
	struct bad_report br = { std_in ? "stdin" : file, 0 };
	struct suppress_import_stats st;
	double t0 = now_mono_s();
	bool ok = suppress_import(s, in, fl->domain, fl->reason, source, &st, bad_line, &br, err, sizeof(err));
	double secs = now_mono_s() - t0;
	if (!std_in)
		fclose(in);
	if (br.shown > BAD_LINES_SHOWN)
		fprintf(stderr, "sluice: suppress import: %s: ... and %zu more bad lines\n", br.file,
		        br.shown - BAD_LINES_SHOWN);
	if (!ok)
		fprintf(stderr, "sluice: suppress import: %s\n", err);
	printf("imported %zu entries from %s in %.2f s (%zu lines: %zu bad, %zu header or empty)\n", st.added, br.file,
	       secs, st.lines, st.bad, st.skipped);
	suppress_close(s);
	return ok ? 0 : EXIT_STORE;
}

static int cmd_export(struct flags *fl, int n, char **args)
{
	need_args("export", n, 0, 0);
	struct suppress *s = open_store(fl, true, EXIT_STORE);
	char err[600] = "";
	size_t count;
	bool ok = suppress_export(s, stdout, fl->domain_given ? (fl->domain ? fl->domain : "") : NULL, &count, err,
	                          sizeof(err));
	if (!ok)
		fprintf(stderr, "sluice: suppress export: %s\n", err);
	suppress_close(s);
	return ok ? 0 : EXIT_STORE;
}

static int cmd_count(struct flags *fl, int n, char **args)
{
	need_args("count", n, 0, 0);
	struct suppress *s = open_store(fl, true, EXIT_STORE);
	char err[600];
	size_t count = 0;
	bool ok;
	if (fl->domain_given) {
		ok = suppress_count_scope(s, fl->domain, &count, err, sizeof(err));
	} else {
		struct suppress_stats st;
		ok = suppress_stats(s, &st, err, sizeof(err));
		count = st.entries;
	}
	if (ok)
		printf("%zu\n", count);
	else
		fprintf(stderr, "sluice: suppress count: %s\n", err);
	suppress_close(s);
	return ok ? 0 : EXIT_STORE;
}

int suppress_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, 0, 's' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct flags fl = { .store = SUPPRESS_DEFAULT_DIR };
	int c;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 's': fl.store = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	static const struct {
		const char *name;
		int (*fn)(struct flags *, int, char **);
		bool with_reason;
	} cmds[] = {
		{ "add", cmd_add, true },         { "remove", cmd_remove, false }, { "check", cmd_check, false },
		{ "import", cmd_import, true },   { "export", cmd_export, false }, { "count", cmd_count, false },
	};
	const char *name = argv[optind];
	for (size_t i = 0; i < ARRAY_LEN(cmds); i++) {
		if (strcmp(name, cmds[i].name))
			continue;
		int sub_argc = argc - optind;
		char **sub_argv = argv + optind;
		parse_flags(name, sub_argc, sub_argv, &fl, cmds[i].with_reason);
		if (!fl.store[0])
			fatal("suppress: --store: an empty directory name");
		return cmds[i].fn(&fl, sub_argc - optind, sub_argv + optind);
	}
	fprintf(stderr, "sluice: suppress: unknown command '%s'\n", name);
	usage(stderr);
	return 2;
}
