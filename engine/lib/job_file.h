/* engine/lib/job_file.h - job files: one spool file holding an envelope, a
 * message template and a CSV recipient list, rendered into one message per
 * row (the format is README's "Job files"). Pure functions, no I/O: the
 * engine reads the file as a stream and frames its CSV records, the spool
 * workers render rows (job_render) into spool-file text that
 * envelope_parse then reads like any other file. */
#ifndef SLUICE_JOB_FILE_H
#define SLUICE_JOB_FILE_H
#include "util.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOB_MAGIC "X-Sluice-Job: 1"
#define JOB_SUFFIX ".job"
#define JOB_HEAD_MAX 4096u            /* head lines, before the template */
#define JOB_TEMPLATE_MAX (16u << 20)  /* template bytes */
#define JOB_RECORD_MAX 65536u         /* one CSV record, line ends included */
#define JOB_COLUMNS_MAX 256u
#define JOB_TOKEN_LEN 16              /* hex digits of the job's Message-ID token */

/* A template, cut into literal text and substitutions. */
struct job_piece {
	const char *text;     /* literal bytes (into job_head.tpl), or NULL */
	size_t len;
	int column;           /* substitution: column index, or -1: not a column (default always) */
	const char *def;      /* its default (into tpl), or NULL: none (required) */
	size_t def_len;
	bool in_header;       /* in the header part (values refused with CR/LF/NUL) */
};

struct job_head {
	char *sender;         /* without <>; "" for the null sender */
	char *job;            /* X-Job */
	char *pool;           /* X-Pool, or NULL */
	char *tpl;            /* the template with its line ends made CRLF (LF,
	                       * CRLF and bare CR alike), Message-ID fields removed */
	size_t tpl_len;
	bool has_date;        /* the template has a Date field */
	struct job_piece *pieces;
	size_t npieces;
	char **columns;       /* column names, from the CSV's first record */
	unsigned ncolumns;
	int email_column;
};

/* Parses the head lines (h is zeroed first; on failure nothing stays
 * allocated in it): buf holds the file's first len bytes (at least
 * min(file size, JOB_HEAD_MAX)). On success fills h->sender/job/pool and
 * says where the template is (*tpl_off: byte offset in the file, *tpl_len:
 * X-Template-Bytes). False with why if the head is refused. */
bool job_head_parse(struct job_head *h, const char *buf, size_t len, size_t *tpl_off,
                    size_t *tpl_len, char *why, size_t why_len);

/* Takes the template's bytes (copied) and the CSV's first record (column
 * names: rec/len as job_csv_record framed it, line end included; a UTF-8
 * byte-order mark at its start is skipped here; the caller skips empty
 * lines before it). Checks the columns (names, unique, `email` present, at
 * most JOB_COLUMNS_MAX) and that every {{name}} without a default names a
 * column. False with why: the job is refused. After job_head_parse
 * succeeded, job_head_free frees h whether this succeeded or not. */
bool job_head_prepare(struct job_head *h, const char *tpl, size_t tpl_len, const char *rec,
                      size_t rec_len, char *why, size_t why_len);

/* Frames CSV records: the length of the first complete record in buf
 * (its line end included; empty lines count as records of their own),
 * and *lines the line breaks it spans (so the caller can number lines).
 * 0: no complete record yet; at_eof says buf ends the file, so a last
 * record without a line end is complete. A record that reaches
 * JOB_RECORD_MAX bytes without ending returns JOB_RECORD_MAX with
 * *too_long set (the caller refuses that row and goes on after it: it
 * skips to the next line break, a best effort that loses at most that
 * row). A UTF-8 byte-order mark before the column names is framed as
 * data (job_head_prepare skips it). A record at EOF of at most
 * JOB_RECORD_MAX bytes without a line end is complete, not too long. */
size_t job_csv_record(const char *buf, size_t len, bool at_eof, unsigned *lines, bool *too_long);

/* True if the record is an empty line (skipped, not a row). */
bool job_csv_blank(const char *rec, size_t len);

/* Renders row number row (from 1) from its record into out (appended):
 * spool-file text — X-Sender, X-Receiver, X-Job, X-Pool lines, then the
 * message as README "Job files" says (Message-ID <row.token@domain>, Date
 * when date is not NULL and the template has none, RFC 2047 where needed).
 * token: JOB_TOKEN_LEN hex digits; date: an RFC 5322 date, e.g. "Tue, 01
 * Dec 2026 17:00:00 +0000". rcpt receives the row's email value as it is
 * (truncated to rcpt_len, for the log), or "" if the record has no such
 * field. False with why (without the "line L: " prefix, which the caller
 * adds) if the row is refused; out may then hold partial text. */
bool job_render(const struct job_head *h, const char *rec, size_t rec_len, uint64_t row,
                const char *token, const char *date, struct buf *out, char *rcpt, size_t rcpt_len,
                char *why, size_t why_len);

void job_head_free(struct job_head *h);
#endif
