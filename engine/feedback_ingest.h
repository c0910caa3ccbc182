/* engine/feedback_ingest.h - acting on the reports of a maildir (see
 * feedback_ingest.c). */
#ifndef SLUICE_FEEDBACK_INGEST_H
#define SLUICE_FEEDBACK_INGEST_H
#include "feedback_judge.h"
#include "suppress.h"
#include "lib/util.h"

struct feedback_ingest {
	const char *maildir;        /* DIR: DIR/new is read, DIR/cur receives */
	const char *log_path;       /* the accounting log (NULL: none) */
	struct suppress *store;     /* the suppression list (NULL: none) */
	struct feedback_judge judge;
	/* each complaint acted on (the daemon counts it against its job) */
	void (*note)(void *arg, const char *job, const char *id, const char *rcpt, const char *source, enum result r);
	void *note_arg;
	int stop_fd;                /* readable: stop between files (-1: none) */
};

struct feedback_ingest_counts {
	size_t files, unknown, forged;   /* read; with nothing usable; with a bad tracking header */
	size_t bounced, complained;      /* records written */
	size_t suppressed, ignored;      /* entries added; records not acted on */
};

/* A report's bytes from fd: at most FEEDBACK_INPUT_MAX (*cut: there
 * were more). 0 or an errno. */
int feedback_read(int fd, struct buf *b, bool *cut);
/* One file of DIR/new (newfd): its records appended to lines, its hard
 * recipients suppressed. 0, or an errno (EINVAL: not a regular file). */
int feedback_ingest_file(const struct feedback_ingest *in, int newfd, const char *name, struct buf *lines,
                         struct feedback_ingest_counts *c);
/* Every file in DIR/new, oldest name first. 0, or an errno with why set
 * (the files done so far are in cur/). */
int feedback_ingest_maildir(const struct feedback_ingest *in, struct feedback_ingest_counts *c, char *why,
                            size_t why_len);
/* `sluice feedback ingest` (argv[0] is "ingest"). */
int feedback_ingest_main(int argc, char **argv);
#endif
