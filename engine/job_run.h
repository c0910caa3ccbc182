/* engine/job_run.h - a job file being delivered (README "Job files"). The
 * engine opens it once (head, template, column names, progress), then
 * frames its CSV records as a stream and hands each row not done yet to a
 * spool worker, which renders it (engine/lib/job_file.h). Progress is one
 * bit per row, in memory and in SPOOL/state/ID: set, and written, right
 * after the row's final line is written to the accounting log (so a
 * kill -9 never resends a row whose line was written), synced after the
 * log. Engine thread only; the spool workers read head, name, token and
 * first_ms, which never change after job_run_open. */
#ifndef SLUICE_JOB_RUN_H
#define SLUICE_JOB_RUN_H
#include "claims.h"
#include "spool.h"
#include "lib/job_file.h"

struct job_run {
	struct job_run *next;          /* the engine's open jobs */
	struct claim *claim;           /* new/NAME and its identity */
	const char *name;              /* claim->name */
	struct job_head head;
	char token[JOB_TOKEN_LEN + 1]; /* of its Message-IDs */
	int64_t first_ms;              /* wall clock of the job's first start */
	struct file_print print;
	int fd;                        /* the job file, read as a stream */
	char *buf;                     /* its bytes [pos, len) not framed yet */
	size_t pos, len, cap;
	unsigned line;                 /* the file's line number at buf[pos] */
	bool resync;                   /* after a record too long: skip to the next line end */
	bool eof;                      /* every record framed (or a read failed) */
	bool failed;                   /* a read failed: the rest waits for a restart */
	bool io_error;                 /* job_run_open failed for I/O, not the format */
	uint64_t rows;                 /* rows framed so far */
	uint64_t handed, done;         /* rows handed out in this run, and done */
	uint64_t skipped;              /* rows done in an earlier run */
	uint8_t *bits;                 /* done rows: bit row - 1 */
	size_t bits_cap;
	int state_fd;                  /* SPOOL/state/ID */
	size_t dirty_lo, dirty_hi;     /* bytes of bits not written yet */
	bool unsynced;                 /* written since the last sync */
	int64_t synced_ms;             /* monotonic, of the last sync */
};

/* One row to render. */
struct job_row {
	char *rec;                     /* the CSV record (malloc'd) */
	size_t len;
	uint64_t row;
	unsigned line;                 /* the file's line where it starts */
	bool too_long;                 /* longer than JOB_RECORD_MAX: refused */
};

/* Opens new/NAME (claimed as k) as a job: NULL with why when it cannot be
 * used: *io_error says whether for an I/O error (it stays in new/, tried
 * again later) or for its content (the caller moves it to bad/); blocking
 * reads, engine thread. */
struct job_run *job_run_open(struct spool *sp, struct claim *k, bool *io_error, char *why, size_t why_len);
/* The next row not done yet; false when there is none (then j->eof, or a
 * read failed: said, and the job ends at what it read). */
bool job_run_next(struct job_run *j, struct job_row *out);
/* Row done: its line is written. job_run_write writes the bits set since. */
void job_run_mark(struct job_run *j, uint64_t row);
void job_run_write(struct job_run *j);
/* Every row framed (or a read failed: j->failed), and every row handed
 * out is done. */
bool job_run_complete(const struct job_run *j);
/* Complete: removes new/NAME (if still this file) and its progress. False
 * if the file could not be removed (said; its progress stays). */
bool job_run_remove(struct spool *sp, struct job_run *j);
/* Frees (the claim is the caller's). */
void job_run_free(struct job_run *j);
#endif
