/* engine/feedback_cmd.c - `sluice feedback`: `parse` reads report files
 * (bounces, complaints, auto-replies: feedback_parse.c) and prints, for
 * each reported recipient, its class and whether it must be suppressed
 * (feedback_judge.c), and the message sluice sent when the report's
 * tracking header is valid under the secret (JSON lines or a table);
 * `ingest` acts on a maildir of them (feedback_ingest.c). */
#define _GNU_SOURCE
#include "config.h"
#include "feedback_ingest.h"
#include "feedback_judge.h"
#include "lib/json.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static void usage(FILE *f)
{
	fputs("usage: sluice feedback parse [--json] [-c sluice.conf] [--rules FILE] [--secret-file FILE] FILE...\n"
	      "       sluice feedback ingest --maildir DIR ...   (sluice feedback ingest --help)\n"
	      "parse reads bounces (RFC 3464 DSNs and the plain-text notices of Postfix, Exim,\n"
	      "Sendmail, qmail, Exchange, Gmail, Yahoo...), complaints (RFC 5965 ARF feedback\n"
	      "loops) and auto-replies (RFC 3834), one message per FILE ('-': standard input;\n"
	      "the first 10 MiB of each), and prints each recipient they report: its action,\n"
	      "enhanced status, reply code, bounce class and whether it must be suppressed\n"
	      "(hard). It acts on nothing. A report is tied to the message sluice sent (id,\n"
	      "job, source IP) only when its X-Sluice-Track header is valid under the secret.\n"
	      "  --json              one JSON object per line instead of a table\n"
	      "  -c FILE             the configuration: feedback.classes, feedback.class-rules,\n"
	      "                      feedback.secret-file\n"
	      "  --rules FILE        bounce classes file (default: -c's, else the shipped ones)\n"
	      "  --secret-file FILE  the tracking header's secret (default: -c's feedback.secret-file)\n"
	      "Exit status: 0 when every file was read, 1 when one could not be, 2 on usage.\n",
	      f);
}

struct opts {
	bool json;
	struct feedback_judge judge;
};

/* The file (at most FEEDBACK_INPUT_MAX bytes: more is cut, said on
 * stderr): 0 or an errno. */
static int read_report(const char *path, struct buf *b)
{
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (fd != STDIN_FILENO)
			close(fd);
		return EISDIR;
	}
	bool cut;
	int err = feedback_read(fd, b, &cut);
	if (fd != STDIN_FILENO)
		close(fd);
	if (cut)
		fprintf(stderr, "sluice feedback: %s: longer than %zu bytes, only those read\n", path,
		        (size_t)FEEDBACK_INPUT_MAX);
	return err;
}

static void add_opt(struct buf *b, const char *key, const char *v)
{
	buf_printf(b, ",\"%s\":", key);
	json_add_cstr(b, v && *v ? v : NULL);
}

static void json_line(struct buf *b, const char *file, const struct feedback_report *r, const struct feedback_rcpt *x,
                      const struct feedback_verdict *v, const struct feedback_origin *o)
{
	bool valid = o->track == FB_TRACK_VALID;
	buf_adds(b, "{\"file\":");
	json_add_cstr(b, file);
	add_opt(b, "type", feedback_type_name(r->type));
	add_opt(b, "rcpt", x ? x->rcpt : NULL);
	add_opt(b, "action", x ? x->action : NULL);
	add_opt(b, "status", x ? x->status : NULL);
	buf_printf(b, ",\"code\":%u", x ? x->code : 0);
	add_opt(b, "class", x ? bounce_class_name(v->cls) : NULL);
	buf_printf(b, ",\"hard\":%s", x && v->hard ? "true" : "false");
	add_opt(b, "feedback_type", r->type == FEEDBACK_ARF ? r->feedback_type : NULL);
	add_opt(b, "id", valid ? o->id : NULL);
	add_opt(b, "job", valid ? o->job : NULL);
	add_opt(b, "source", valid ? o->source : NULL);
	add_opt(b, "track_rcpt", valid ? o->rcpt : NULL); /* the message's only recipient, when it had one */
	add_opt(b, "track", feedback_track_name(o->track));
	add_opt(b, "message_id", r->message_id);
	add_opt(b, "diagnostic", x ? x->diagnostic : NULL);
	buf_adds(b, "}\n");
}

/* A table cell: printable, cut to width (0: the whole; negative: the
 * text's end, after a '~'). */
static void cell(struct buf *b, const char *s, int width)
{
	char esc[ESCAPED_MAX];
	escape_text(s && *s ? s : "-", esc, sizeof(esc));
	if (width < 0) {
		buf_printf(b, "~%-*s ", -width - 1, esc);
		return;
	}
	if (width == 0) {
		buf_adds(b, esc);
		return;
	}
	int l = (int)strlen(esc);
	if (l > width) {
		buf_add(b, esc, (size_t)width - 1);
		buf_adds(b, "~ ");
	} else {
		buf_printf(b, "%-*s ", width, esc);
	}
}

static void table_line(struct buf *b, const char *file, const struct feedback_report *r, const struct feedback_rcpt *x,
                       const struct feedback_verdict *v, const struct feedback_origin *o)
{
	bool valid = o->track == FB_TRACK_VALID;
	char code[12] = "-";
	if (x && x->code)
		snprintf(code, sizeof(code), "%u", x->code);
	size_t fl = strlen(file);
	cell(b, fl > 24 ? file + fl - 23 : file, fl > 24 ? -24 : 24); /* the end of a long path */
	cell(b, feedback_type_name(r->type), 9);
	cell(b, x ? x->rcpt : NULL, 32);
	cell(b, x ? x->action : NULL, 9);
	cell(b, x ? x->status : NULL, 7);
	cell(b, code, 4);
	cell(b, x ? bounce_class_name(v->cls) : NULL, 17);
	cell(b, x && v->hard ? "yes" : "no", 4);
	cell(b, feedback_track_name(o->track), 9);
	if (valid) {
		char esc[ESCAPED_MAX];
		buf_printf(b, "id %s", escape_text(o->id, esc, sizeof(esc)));
		buf_printf(b, " job %s", escape_text(o->job[0] ? o->job : "-", esc, sizeof(esc)));
		buf_printf(b, " source %s", escape_text(o->source[0] ? o->source : "-", esc, sizeof(esc)));
		if (o->rcpt[0])
			buf_printf(b, " rcpt %s", escape_text(o->rcpt, esc, sizeof(esc)));
	} else {
		cell(b, r->type == FEEDBACK_ARF ? r->feedback_type : x ? x->diagnostic : NULL, 0);
	}
	buf_adds(b, "\n");
}

static void emit(const struct opts *o, const char *file, const struct feedback_report *r, struct buf *out)
{
	struct feedback_origin origin;
	feedback_origin_of(&o->judge, r, &origin);
	struct feedback_verdict none = { .cls = BC_NONE };
	if (r->nrcpt == 0) {
		if (o->json)
			json_line(out, file, r, NULL, &none, &origin);
		else
			table_line(out, file, r, NULL, &none, &origin);
	}
	for (size_t i = 0; i < r->nrcpt; i++) {
		struct feedback_verdict v;
		feedback_judge_rcpt(&o->judge, r, &origin, i, &v);
		if (o->json)
			json_line(out, file, r, &r->rcpt[i], &v, &origin);
		else
			table_line(out, file, r, &r->rcpt[i], &v, &origin);
	}
}

/* The secret's bytes: exits 2 when it cannot be used. */
static char *read_secret(const char *path, size_t *len)
{
	char err[600];
	char *s = config_read_secret(path, len, err, sizeof(err));
	if (!s) {
		fprintf(stderr, "sluice feedback: --secret-file %s: %s\n", path, err);
		exit(2);
	}
	return s;
}

static int parse_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, 0, 'j' },
		{ "rules", required_argument, 0, 'r' },
		{ "secret-file", required_argument, 0, 's' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct opts o = { 0 };
	const char *rules_path = NULL, *secret_path = NULL, *conf = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'j': o.json = true; break;
		case 'r': rules_path = optarg; break;
		case 's': secret_path = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "sluice feedback parse: no FILE given\n");
		usage(stderr);
		return 2;
	}
	int first = optind; /* the configuration's reading moves optind */
	struct config cfg;
	bool have_cfg = conf != NULL;
	if (have_cfg) { /* exits 2 when it cannot be used */
		char *cargv[] = { "run", "-c", (char *)conf, NULL };
		config_from_run_args(&cfg, 3, cargv);
	}
	char err[512] = "";
	struct bounce_rules *rules = rules_path || !have_cfg ? bounce_rules_load(rules_path, err, sizeof(err))
	                                                     : bounce_rules_compile(cfg.bounce_rules, cfg.nbounce_rules);
	if (!rules) {
		fprintf(stderr, "sluice feedback: --rules %s: %s\n", rules_path ? rules_path : "(built in)", err);
		if (have_cfg)
			config_free(&cfg);
		return 2;
	}
	o.judge.rules = rules;
	char *secret = NULL;
	if (secret_path) {
		o.judge.secret = secret = read_secret(secret_path, &o.judge.secret_len);
	} else if (have_cfg && cfg.track_secret) {
		o.judge.secret = cfg.track_secret;
		o.judge.secret_len = cfg.track_secret_len;
	}
	int status = 0;
	struct buf in = { 0 }, out = { 0 };
	if (!o.json)
		buf_printf(&out, "%-24s %-9s %-32s %-9s %-7s %-4s %-17s %-4s %-9s %s\n", "FILE", "TYPE", "RCPT", "ACTION",
		           "STATUS", "CODE", "CLASS", "HARD", "TRACK", "DETAIL");
	for (int i = first; i < argc; i++) {
		int e = read_report(argv[i], &in);
		if (e) {
			char esc[ESCAPED_MAX];
			fprintf(stderr, "sluice feedback: %s: %s\n", escape_text(argv[i], esc, sizeof(esc)), strerror(e));
			status = 1;
			continue;
		}
		struct feedback_report r;
		feedback_parse(in.p, in.len, &r);
		emit(&o, argv[i], &r, &out);
		feedback_report_free(&r);
		int we = write_all(STDOUT_FILENO, out.p, out.len);
		out.len = 0;
		if (we) {
			fprintf(stderr, "sluice feedback: writing the output: %s\n", strerror(we));
			status = 1;
			break;
		}
	}
	if (out.len && write_all(STDOUT_FILENO, out.p, out.len))
		status = 1; /* the table's head when no file could be read */
	buf_free(&in);
	buf_free(&out);
	free(secret);
	bounce_rules_free(rules); /* before the configuration its rules point into */
	if (have_cfg)
		config_free(&cfg);
	return status;
}

int feedback_main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "parse"))
		return parse_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "ingest"))
		return feedback_ingest_main(argc - 1, argv + 1);
	if (argc >= 2)
		fprintf(stderr, "sluice feedback: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
