/* engine/feedback_ingest.c - acting on the reports in a maildir: each new
 * file (DIR/new) is read, parsed (feedback_parse), judged
 * (feedback_judge); its recipients' records (bounced, complained) are
 * appended to the accounting log and made durable, the hard ones are added
 * to the suppression list (durable when added), and only then the file
 * moves to DIR/cur (NAME:2,S; a file with nothing usable NAME:2,F, kept
 * and counted, never deleted). A crash before the move reads the file
 * again: its records are written twice, never lost. Used by `sluice
 * feedback ingest --maildir DIR` and by the daemon's feedback.maildir
 * thread (which also hands each complaint to the engine, for the job's
 * complaint rate). */
#define _GNU_SOURCE
#include "feedback_ingest.h"
#include "acct_log.h"
#include "config.h"
#include <getopt.h>
#include "lib/json.h"
#include "lib/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAMES_MAX 100000 /* files taken per pass of new/ */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The file's bytes (at most FEEDBACK_INPUT_MAX): 0 or an errno. */
int feedback_read(int fd, struct buf *b, bool *cut)
{
	int err = 0;
	b->len = 0;
	buf_reserve(b, 65536);
	while (b->len <= FEEDBACK_INPUT_MAX) {
		if (b->cap - b->len < 65536)
			buf_reserve(b, b->cap);
		ssize_t r = read(fd, b->p + b->len, b->cap - b->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = r < 0 ? errno : 0;
			break;
		}
		b->len += (size_t)r;
	}
	*cut = !err && b->len > FEEDBACK_INPUT_MAX;
	if (*cut)
		b->len = FEEDBACK_INPUT_MAX;
	return err;
}

static int read_report(int dirfd, const char *name, struct buf *out)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return EINVAL;
	}
	bool cut;
	int err = feedback_read(fd, out, &cut);
	close(fd);
	return err;
}

/* One record's line, shaped as a recipient's line of the log. */
static void add_line(struct buf *b, const struct feedback_report *r, const struct feedback_origin *o,
                     const struct feedback_rcpt *fr, const struct feedback_verdict *v, const char *rcpt,
                     const char *file)
{
	acct_line_open(b, now_real_ms());
	buf_adds(b, ",\"id\":");
	json_add_cstr(b, o->id[0] ? o->id : NULL);
	buf_adds(b, ",\"file\":");
	json_add_cstr(b, file);
	buf_adds(b, ",\"job\":");
	json_add_cstr(b, o->job[0] ? o->job : NULL); /* only what the tracking header proves */
	buf_adds(b, ",\"rcpt\":");
	json_add_cstr(b, rcpt);
	buf_printf(b, ",\"result\":\"%s\",\"class\":\"%s\"", result_name(v->result), bounce_class_name(v->cls));
	acct_add_reply(b, fr->code, fr->status, fr->diagnostic, fr->diagnostic ? strlen(fr->diagnostic) : 0);
	buf_adds(b, ",\"source\":");
	json_add_cstr(b, o->source[0] ? o->source : NULL);
	buf_printf(b, ",\"feedback\":\"%s\",\"feedback_type\":", feedback_type_name(r->type));
	json_add_cstr(b, r->feedback_type);
	buf_printf(b, ",\"track\":\"%s\"}\n", feedback_track_name(o->track));
}

/* The scope of a suppression: bounces are the address's own (global); a
 * complaint is against the sender (its domain, when known). */
static const char *scope_of(const struct feedback_report *r, const struct feedback_verdict *v, char *buf, size_t len)
{
	if ((v->result != RESULT_COMPLAINED && v->result != RESULT_UNSUBSCRIBED) || !r->original_mail_from)
		return "";
	const char *at = strrchr(r->original_mail_from, '@');
	if (!at)
		return "";
	snprintf(buf, len, "%s", at + 1);
	buf[strcspn(buf, ">; \t")] = 0;
	return buf;
}

/* Appends b to the log and makes it durable: 0 or an errno. */
static int log_append(const char *path, const struct buf *b)
{
	if (!b->len || !path)
		return 0;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return errno;
	int err = write_all(fd, b->p, b->len);
	if (!err && fdatasync(fd) != 0)
		err = errno;
	close(fd);
	return err;
}

int feedback_ingest_file(const struct feedback_ingest *in, int newfd, const char *name, struct buf *lines,
                         struct feedback_ingest_counts *c)
{
	struct buf data = { 0 };
	int err = read_report(newfd, name, &data);
	if (err) {
		buf_free(&data);
		return err;
	}
	struct feedback_report r;
	feedback_parse(data.p, data.len, &r);
	buf_free(&data);
	struct feedback_origin o;
	feedback_origin_of(&in->judge, &r, &o);
	c->files++;
	if (r.type == FEEDBACK_UNKNOWN)
		c->unknown++;
	if (o.track == FB_TRACK_FORGED || o.track == FB_TRACK_MALFORMED)
		c->forged++;
	for (size_t i = 0; i < r.nrcpt; i++) {
		struct feedback_verdict v;
		feedback_judge_rcpt(&in->judge, &r, &o, i, &v);
		if (!v.act) {
			c->ignored += v.result != RESULT_DEFERRED;
			continue;
		}
		const char *rcpt = r.rcpt[i].rcpt ? r.rcpt[i].rcpt : o.rcpt;
		add_line(lines, &r, &o, &r.rcpt[i], &v, rcpt, name);
		c->bounced += v.result == RESULT_BOUNCED;
		c->complained += v.result == RESULT_COMPLAINED || v.result == RESULT_UNSUBSCRIBED;
		if (v.hard && in->store) {
			char scope[256], why[300], source[300];
			snprintf(source, sizeof(source), "feedback:%s", name);
			err = suppress_add(in->store, scope_of(&r, &v, scope, sizeof(scope)), rcpt, bounce_class_name(v.cls),
			                   source, why, sizeof(why));
			if (err == EINVAL) { /* an address the list cannot hold: said, not fatal */
				warnx_("feedback %s: %s", name, why);
				err = 0;
			} else if (err) {
				warnx_("feedback %s: the suppression list: %s", name, why);
				err = EIO;
				break;
			} else {
				c->suppressed++;
			}
		}
		if (in->note && v.result == RESULT_COMPLAINED)
			in->note(in->note_arg, o.job, o.id, rcpt, o.source, v.result);
	}
	feedback_report_free(&r);
	return err;
}

int feedback_ingest_maildir(const struct feedback_ingest *in, struct feedback_ingest_counts *c, char *why,
                            size_t why_len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/new", in->maildir);
	int newfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/cur", in->maildir);
	int curfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (newfd < 0 || curfd < 0) {
		int err = errno;
		snprintf(why, why_len, "%s: not a maildir (new/ and cur/): %s", in->maildir, strerror(err));
		if (newfd >= 0)
			close(newfd);
		if (curfd >= 0)
			close(curfd);
		return err;
	}
	DIR *d = fdopendir(dup(newfd));
	char **names = NULL;
	size_t n = 0, cap = 0;
	for (struct dirent *e; d && n < NAMES_MAX && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = xstrdup(e->d_name);
	}
	if (d)
		closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	int err = 0;
	struct buf lines = { 0 };
	for (size_t i = 0; i < n && !err; i++) {
		lines.len = 0;
		size_t unknown = c->unknown;
		if (in->stop_fd >= 0 && poll(&(struct pollfd){ .fd = in->stop_fd, .events = POLLIN }, 1, 0) > 0)
			break; /* stopping: the rest waits for the next start */
		int ferr = feedback_ingest_file(in, newfd, names[i], &lines, c);
		if (ferr == ENOENT)
			continue; /* taken by another ingest */
		if (ferr == EIO) { /* the suppression list failed: it stays, tried again */
			err = ferr;
			snprintf(why, why_len, "%s/new/%s: the suppression list could not be written", in->maildir, names[i]);
			break;
		}
		if (ferr) { /* cannot be read (a link, not ours, not a file): kept, flagged, counted */
			warnx_("feedback %s/new/%s: %s; moved to cur/, flagged", in->maildir, names[i], strerror(ferr));
			c->unknown++;
		}
		if ((err = log_append(in->log_path, &lines))) {
			snprintf(why, why_len, "the accounting log %s: %s", in->log_path, strerror(err));
			break;
		}
		/* both durable: the file is done (flagged when nothing in it was usable) */
		char done[4096];
		snprintf(done, sizeof(done), "%s:2,%s", names[i], c->unknown > unknown ? "F" : "S");
		if (renameat(newfd, names[i], curfd, done) != 0 && errno != ENOENT) {
			err = errno;
			snprintf(why, why_len, "%s/new/%s: cannot move it to cur/: %s", in->maildir, names[i], strerror(err));
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	buf_free(&lines);
	close(newfd);
	close(curfd);
	return err;
}

/* ---- `sluice feedback ingest` ---- */

static void ingest_usage(FILE *f)
{
	fputs("usage: sluice feedback ingest --maildir DIR [-c sluice.conf] [--log FILE] [--store DIR | --no-store]\n"
	      "                              [--secret-file FILE] [--require-track | --no-require-track]\n"
	      "Acts on the reports in the maildir DIR: each file of DIR/new is read as a bounce\n"
	      "(DSN), a complaint (ARF) or an auto-reply; its failed and complained recipients\n"
	      "get a line in the accounting log (\"bounced\" with their class, \"complained\"),\n"
	      "the ones that must never be mailed again go on the suppression list (hard\n"
	      "bounces: globally; complaints: for the sender's domain), and then the file moves\n"
	      "to DIR/cur (NAME:2,S; NAME:2,F when nothing in it was usable: kept, counted).\n"
	      "A report is acted on only with a valid tracking header when a secret is known\n"
	      "(feedback.require-track; a forged one is counted, never acted on).\n\n"
	      "  -c FILE            the configuration: log, suppression-list, feedback.*\n"
	      "  --log FILE         the accounting log (default: the configuration's)\n"
	      "  --store DIR        the suppression list (default: the configuration's,\n"
	      "                     else /var/spool/sluice/suppress); --no-store: none\n"
	      "  --secret-file F    the tracking header's key (default: feedback.secret-file)\n"
	      "Exit status: 0 when every file was dealt with, 1 on an error (the files done\n"
	      "stay done), 2 on a usage error.\n", f);
}

int feedback_ingest_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "maildir", required_argument, 0, 'm' }, { "log", required_argument, 0, 'l' },
		{ "store", required_argument, 0, 's' },   { "no-store", no_argument, 0, 'S' },
		{ "secret-file", required_argument, 0, 'k' }, { "require-track", no_argument, 0, 'r' },
		{ "no-require-track", no_argument, 0, 'R' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	const char *maildir = NULL, *log = NULL, *store_dir = NULL, *conf = NULL, *secret_file = NULL;
	bool no_store = false;
	int require = -1, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'm': maildir = optarg; break;
		case 'l': log = optarg; break;
		case 's': store_dir = optarg; break;
		case 'S': no_store = true; break;
		case 'k': secret_file = optarg; break;
		case 'r': require = 1; break;
		case 'R': require = 0; break;
		case 'h': ingest_usage(stdout); return 0;
		default: ingest_usage(stderr); return 2;
		}
	}
	if (!maildir || optind < argc) {
		fprintf(stderr, "sluice: feedback ingest: %s\n", maildir ? "unexpected argument" : "--maildir DIR is needed");
		ingest_usage(stderr);
		return 2;
	}
	struct config cfg;
	char *cargv[] = { "run", "-c", (char *)conf, NULL };
	if (conf)
		config_from_run_args(&cfg, 3, cargv);
	else
		config_from_run_args(&cfg, 1, cargv);
	char err[600];
	size_t secret_len = cfg.track_secret_len;
	char *own_secret = NULL;
	const char *secret = cfg.track_secret;
	if (secret_file && !(secret = own_secret = config_read_secret(secret_file, &secret_len, err, sizeof(err)))) {
		fprintf(stderr, "sluice: feedback ingest: --secret-file %s: %s\n", secret_file, err);
		config_free(&cfg);
		return 1;
	}
	struct suppress *store = NULL;
	const char *dir = no_store ? NULL : store_dir ? store_dir : cfg.suppression_list;
	if (dir && !(store = suppress_open(dir, false, 0, err, sizeof(err)))) {
		fprintf(stderr, "sluice: feedback ingest: %s\n", err);
		free(own_secret);
		config_free(&cfg);
		return 1;
	}
	struct bounce_rules *rules = bounce_rules_compile(cfg.bounce_rules, cfg.nbounce_rules);
	struct feedback_ingest in = {
		.maildir = maildir, .log_path = log ? log : cfg.log_path, .store = store, .stop_fd = -1,
		.judge = { .rules = rules, .secret = secret, .secret_len = secret_len,
		           .require_track = require >= 0 ? require == 1 : secret != NULL },
	};
	struct feedback_ingest_counts c = { 0 };
	int rc = feedback_ingest_maildir(&in, &c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "sluice: feedback ingest: %s\n", err);
	printf("sluice: feedback: %zu report%s read (%zu with nothing usable, %zu with a bad tracking header); "
	       "%zu bounced, %zu complained recorded; %zu suppressed; %zu not acted on\n",
	       c.files, c.files == 1 ? "" : "s", c.unknown, c.forged, c.bounced, c.complained, c.suppressed, c.ignored);
	bounce_rules_free(rules);
	suppress_close(store);
	free(own_secret);
	config_free(&cfg);
	return rc ? 1 : 0;
}
