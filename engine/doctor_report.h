/* engine/doctor_report.h - what `sluice doctor` found: checks, each with a
 * status, the detail and the fix, printed as a table (coloured on a
 * terminal) or as the JSON line DESIGN gives. */
#ifndef SLUICE_DOCTOR_REPORT_H
#define SLUICE_DOCTOR_REPORT_H
#include "lib/util.h"
#include <stdbool.h>
#include <stdio.h>

/* In order of gravity: a check's status is the worst of its notes. info:
 * an optional record is absent (MTA-STS, TLS-RPT, BIMI). */
enum check_status { CHECK_PASS, CHECK_INFO, CHECK_WARN, CHECK_FAIL };

struct check {
	char name[24];            /* spf, dkim, dmarc, ptr, mx, mta-sts, ... */
	char *subject;            /* what it is about: a domain, a record's name, an IP */
	enum check_status status;
	struct buf detail, fix;   /* notes joined by "; " */
};

struct doctor_report {
	const char *key;          /* "domain" or "message" */
	char *about;
	struct check *c;
	unsigned n, cap;
};

void report_init(struct doctor_report *r, const char *key, const char *about);
void report_free(struct doctor_report *r);
struct check *report_check(struct doctor_report *r, const char *name, const char *subject);
/* Adds a note (and raises the status to st when worse); fix may be NULL. */
void check_note(struct check *c, enum check_status st, const char *fix, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
bool report_failed(const struct doctor_report *r);
const char *check_status_name(enum check_status st);
void report_json(const struct doctor_report *r, struct buf *out);
void report_table(const struct doctor_report *r, FILE *f, bool colour);
/* One line per failed check: "PREFIX about name subject: detail; fix: ...". */
void report_warnings(const struct doctor_report *r, FILE *f, const char *prefix);
#endif
