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
#include "lib/json.h"
#include "lib/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
	size_t want = (size_t)st.st_size < FEEDBACK_INPUT_MAX ? (size_t)st.st_size : FEEDBACK_INPUT_MAX;
	out->len = 0;
	buf_reserve(out, want + 1);
	size_t got = 0;
	int err = want ? read_full(fd, out->p, want, 0, &got) : 0;
	close(fd);
	out->len = got;
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
	json_add_cstr(b, o->job[0] ? o->job : r->job);
	buf_adds(b, ",\"rcpt\":");
	json_add_cstr(b, rcpt);
	buf_printf(b, ",\"result\":\"%s\",\"class\":\"%s\"", result_name(v->result), bounce_class_name(v->cls));
	if (fr->code)
		buf_printf(b, ",\"code\":%u", fr->code);
	else
		buf_adds(b, ",\"code\":null");
	buf_adds(b, ",\"enhanced\":");
	json_add_cstr(b, fr->status[0] ? fr->status : NULL);
	buf_adds(b, ",\"response\":");
	json_add_cstr(b, fr->diagnostic);
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
	if (v->result != RESULT_COMPLAINED || !r->original_mail_from)
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
		c->complained += v.result == RESULT_COMPLAINED;
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
				break;
			} else {
				c->suppressed++;
			}
		}
		if (in->note && v.result == RESULT_COMPLAINED)
			in->note(in->note_arg, o.job[0] ? o.job : r.job, o.source, v.result);
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
		int ferr = feedback_ingest_file(in, newfd, names[i], &lines, c);
		if (ferr == ENOENT)
			continue; /* taken by another ingest */
		if (ferr && ferr != EINVAL) {
			err = ferr;
			snprintf(why, why_len, "%s/new/%s: %s", in->maildir, names[i], strerror(ferr));
			break;
		}
		if ((err = log_append(in->log_path, &lines))) {
			snprintf(why, why_len, "the accounting log %s: %s", in->log_path, strerror(err));
			break;
		}
		/* both durable: the file is done (flagged when nothing in it was usable) */
		char done[4096];
		snprintf(done, sizeof(done), "%s:2,%s", names[i], ferr || c->unknown > unknown ? "F" : "S");
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
