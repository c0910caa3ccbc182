/* engine/job_run.c - a job file being delivered: head, stream of rows,
 * progress bits (see job_run.h). Blocking file I/O on the engine thread:
 * one open per job, then sequential reads of a few hundred KiB at a time. */
#define _GNU_SOURCE
#include "job_run.h"
#include "lib/util.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STREAM_CAP (4 * JOB_RECORD_MAX)
#define PROGRESS_HEAD 128     /* bytes of text before the bits */

/* FNV-1a over the job's name and fingerprint: the Message-ID token. */
static void make_token(struct job_run *j)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const uint64_t parts[3] = { j->print.ino, j->print.size, (uint64_t)j->print.mtime_ns };
	for (const unsigned char *p = (const unsigned char *)j->name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	for (size_t i = 0; i < sizeof(parts); i++)
		h = (h ^ ((const unsigned char *)parts)[i]) * 0x100000001b3ull;
	snprintf(j->token, sizeof(j->token), "%016" PRIx64, h);
}

static void grow_bits(struct job_run *j, uint64_t rows)
{
	size_t need = (size_t)((rows + 7) / 8);
	if (need <= j->bits_cap)
		return;
	size_t cap = j->bits_cap ? j->bits_cap : 4096;
	while (cap < need)
		cap *= 2;
	j->bits = xrealloc(j->bits, cap);
	memset(j->bits + j->bits_cap, 0, cap - j->bits_cap);
	j->bits_cap = cap;
}

/* Loads SPOOL/state/ID if it was written for this very file (else starts
 * it afresh): the rows done in earlier runs, and the first start. */
static bool load_progress(struct spool *sp, struct job_run *j, char *why, size_t why_len)
{
	j->state_fd = openat(sp->state_fd, j->claim->id, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (j->state_fd < 0) {
		snprintf(why, why_len, "cannot open its progress file state/%s: %s", j->claim->id, strerror(errno));
		j->io_error = true;
		return false;
	}
	char head[PROGRESS_HEAD + 1];
	size_t got;
	unsigned long long ino, size;
	long long mtime, first;
	struct stat st;
	if (read_full(j->state_fd, head, PROGRESS_HEAD, 0, &got) == 0 && got == PROGRESS_HEAD &&
	    (head[PROGRESS_HEAD] = 0, sscanf(head, "sluice-job 1 %llu %llu %lld %lld", &ino, &size, &mtime, &first) == 4) &&
	    ino == j->print.ino && size == j->print.size && mtime == j->print.mtime_ns &&
	    fstat(j->state_fd, &st) == 0 && st.st_size > PROGRESS_HEAD) {
		j->first_ms = first;
		size_t n = (size_t)st.st_size - PROGRESS_HEAD;
		grow_bits(j, (uint64_t)n * 8);
		if (read_full(j->state_fd, (char *)j->bits, n, PROGRESS_HEAD, &got) != 0)
			memset(j->bits, 0, n); /* unreadable: every row again (at least once) */
		return true;
	}
	j->first_ms = now_real_ms();
	int len = snprintf(head, sizeof(head), "sluice-job 1 %llu %llu %lld %lld",
	                   (unsigned long long)j->print.ino, (unsigned long long)j->print.size,
	                   (long long)j->print.mtime_ns, (long long)j->first_ms);
	memset(head + len, ' ', (size_t)(PROGRESS_HEAD - 1 - len));
	head[PROGRESS_HEAD - 1] = '\n';
	int err = ftruncate(j->state_fd, 0) != 0 ? errno : 0;
	if (!err && pwrite(j->state_fd, head, PROGRESS_HEAD, 0) != PROGRESS_HEAD)
		err = errno ? errno : ENOSPC;
	if (err) {
		snprintf(why, why_len, "cannot write its progress file state/%s: %s", j->claim->id, strerror(err));
		j->io_error = true;
		return false;
	}
	return true;
}

/* Reads more of the file after what is not framed yet; false at the end. */
static bool fill(struct job_run *j)
{
	if (j->pos > 0) {
		memmove(j->buf, j->buf + j->pos, j->len - j->pos);
		j->len -= j->pos;
		j->pos = 0;
	}
	for (;;) {
		ssize_t n = read(j->fd, j->buf + j->len, j->cap - j->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			char esc[ESCAPED_MAX];
			warnx_("job %s: read: %s; its rows after line %u wait for a restart",
			       escape_text(j->name, esc, sizeof(esc)), strerror(errno), j->line);
			j->eof = j->failed = true;
			j->len = j->pos = 0;
			return false;
		}
		j->len += (size_t)n;
		return n > 0;
	}
}

/* After a record too long to frame: skips what is left of it, up to and
 * including the next line end (quotes cannot be trusted there: a best
 * effort that loses at most that one row). False at the end of the file. */
static bool resync(struct job_run *j)
{
	for (;;) {
		const char *lf = memchr(j->buf + j->pos, '\n', j->len - j->pos);
		if (lf) {
			j->pos = (size_t)(lf - j->buf) + 1;
			j->line++;
			j->resync = false;
			return true;
		}
		j->pos = j->len;
		if (!fill(j))
			return false;
	}
}

/* Frames the next record into *rec/len (pointers into buf, valid until
 * the next call); false at the end of the file. */
static bool next_record(struct job_run *j, const char **rec, size_t *len, unsigned *lines, bool *too_long)
{
	if (j->resync && !resync(j))
		return false;
	for (;;) {
		bool at_eof = false;
		size_t n = job_csv_record(j->buf + j->pos, j->len - j->pos, false, lines, too_long);
		if (!n) {
			if (fill(j))
				continue;
			at_eof = true;
			if (j->eof || j->len == j->pos)
				return false;
			n = job_csv_record(j->buf + j->pos, j->len - j->pos, at_eof, lines, too_long);
			if (!n)
				return false;
		}
		*rec = j->buf + j->pos;
		*len = n;
		j->pos += n;
		j->resync = *too_long && (*rec)[n - 1] != '\n';
		return true;
	}
}

/* Opened as any spool file is (spool_open_new): a name with control
 * characters or anything but a regular file is refused (to bad/). */
static bool open_file(struct spool *sp, struct job_run *j, char *why, size_t why_len)
{
	struct stat st;
	int err;
	j->fd = spool_open_new(sp, j->name, &st, &err, why, why_len);
	j->io_error = err != 0;
	if (j->fd < 0)
		return false;
	j->print = file_print_of(&st);
	return true;
}

/* Head, template and the column names. */
static bool read_head(struct job_run *j, char *why, size_t why_len)
{
	char head[JOB_HEAD_MAX];
	size_t got, tpl_off, tpl_len;
	int err = read_full(j->fd, head, sizeof(head), 0, &got);
	if (err) {
		snprintf(why, why_len, "cannot read: %s", strerror(err));
		j->io_error = true;
		return false;
	}
	if (!job_head_parse(&j->head, head, got, &tpl_off, &tpl_len, why, why_len))
		return false;
	char *tpl = xmalloc(tpl_len + 1);
	err = read_full(j->fd, tpl, tpl_len, (off_t)tpl_off, &got);
	if (err || got != tpl_len) {
		snprintf(why, why_len, "cannot read its template: %s", err ? strerror(err) : "the file ends inside it");
		j->io_error = err != 0;
		free(tpl);
		return false;
	}
	j->line = 1;
	for (size_t i = 0; i < tpl_off + tpl_len; i++) /* lines before the CSV */
		if ((i < tpl_off ? head[i] : tpl[i - tpl_off]) == '\n')
			j->line++;
	if (lseek(j->fd, (off_t)(tpl_off + tpl_len), SEEK_SET) < 0) {
		snprintf(why, why_len, "cannot seek: %s", strerror(errno));
		j->io_error = true;
		free(tpl);
		return false;
	}
	const char *rec;
	size_t len;
	unsigned lines = 0;
	bool too_long = false, ok;
	do { /* empty lines before the column names are skipped too */
		j->line += lines;
		lines = 0;
		ok = next_record(j, &rec, &len, &lines, &too_long);
	} while (ok && !too_long && job_csv_blank(rec, len));
	if (!ok || too_long)
		snprintf(why, why_len, "%s", ok ? "its first CSV record (the column names) is too long"
		                                : "no CSV record with the column names after the template");
	else
		ok = job_head_prepare(&j->head, tpl, tpl_len, rec, len, why, why_len);
	j->line += lines;
	free(tpl);
	return ok && !too_long;
}

struct job_run *job_run_open(struct spool *sp, struct claim *k, bool *io_error, char *why, size_t why_len)
{
	struct job_run *j = xcalloc(1, sizeof(*j));
	j->claim = k;
	j->name = k->name;
	j->fd = j->state_fd = -1;
	j->cap = STREAM_CAP;
	j->buf = xmalloc(j->cap);
	if (!open_file(sp, j, why, why_len) || !read_head(j, why, why_len) || !load_progress(sp, j, why, why_len)) {
		*io_error = j->io_error;
		job_run_free(j);
		return NULL;
	}
	make_token(j);
	return j;
}

static bool is_done(const struct job_run *j, uint64_t row)
{
	uint64_t b = row - 1;
	return b / 8 < j->bits_cap && (j->bits[b / 8] >> (b % 8)) & 1;
}

bool job_run_next(struct job_run *j, struct job_row *out)
{
	const char *rec;
	size_t len;
	for (;;) {
		unsigned lines = 0;
		bool too_long = false;
		if (j->eof || !next_record(j, &rec, &len, &lines, &too_long)) {
			j->eof = true;
			return false;
		}
		unsigned line = j->line;
		j->line += lines;
		if (!too_long && job_csv_blank(rec, len))
			continue;
		uint64_t row = ++j->rows;
		grow_bits(j, row);
		if (is_done(j, row)) {
			j->skipped++;
			continue;
		}
		*out = (struct job_row){ .rec = xmalloc(len + 1), .len = len, .row = row, .line = line,
		                         .too_long = too_long };
		memcpy(out->rec, rec, len);
		out->rec[len] = 0;
		j->handed++;
		return true;
	}
}

void job_run_mark(struct job_run *j, uint64_t row)
{
	ASSERT(row >= 1 && row <= j->rows);
	size_t byte = (size_t)((row - 1) / 8);
	j->bits[byte] |= (uint8_t)(1u << ((row - 1) % 8));
	if (j->dirty_hi == 0 || byte < j->dirty_lo)
		j->dirty_lo = byte;
	if (byte + 1 > j->dirty_hi)
		j->dirty_hi = byte + 1;
}

void job_run_write(struct job_run *j)
{
	if (j->dirty_hi == 0)
		return;
	size_t n = j->dirty_hi - j->dirty_lo;
	if (pwrite(j->state_fd, j->bits + j->dirty_lo, n, (off_t)(PROGRESS_HEAD + j->dirty_lo)) != (ssize_t)n) {
		char esc[ESCAPED_MAX];
		warnx_("job %s: cannot write its progress: %s (after a restart its rows since may be sent again)",
		       escape_text(j->name, esc, sizeof(esc)), strerror(errno ? errno : ENOSPC));
	}
	j->dirty_lo = j->dirty_hi = 0;
	j->unsynced = true;
}

bool job_run_complete(const struct job_run *j)
{
	return j->eof && j->done == j->handed;
}

bool job_run_remove(struct spool *sp, struct job_run *j)
{
	char esc[ESCAPED_MAX];
	if (spool_still_in_new(sp, j->name, &j->print) && unlinkat(sp->new_fd, j->name, 0) != 0 && errno != ENOENT) {
		warnx_("cannot remove %s/new/%s: %s; its progress stays, so that a restart sends nothing again",
		       sp->dir, escape_text(j->name, esc, sizeof(esc)), strerror(errno));
		return false;
	}
	spool_state_remove(sp, j->claim->id);
	return true;
}

void job_run_free(struct job_run *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->state_fd >= 0)
		close(j->state_fd);
	job_head_free(&j->head);
	free(j->buf);
	free(j->bits);
	free(j);
}
