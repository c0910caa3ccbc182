/* engine/feedback_watch.h - the daemon's feedback.maildir thread (see
 * feedback_watch.c). */
#ifndef SLUICE_FEEDBACK_WATCH_H
#define SLUICE_FEEDBACK_WATCH_H
#include "feedback_ingest.h"

/* A complaint acted on, for the engine's count of its job. */
struct feedback_note {
	char job[TRACK_FIELD_MAX];  /* "" when the report was not tied to a job */
	char key[2 * TRACK_FIELD_MAX]; /* message id and recipient: one complaint each */
	char source[48];            /* the source IP the message left from, "" when unknown */
	enum result result;
};

struct feedback_watch;
/* Starts the thread over in's maildir (in is copied); wake_fd is written
 * when complaints wait. */
struct feedback_watch *feedback_watch_start(const struct feedback_ingest *in, int wake_fd);
/* Engine side: up to max complaints noted since. */
size_t feedback_watch_take(struct feedback_watch *w, struct feedback_note *out, size_t max);
void feedback_watch_counts(struct feedback_watch *w, struct feedback_ingest_counts *c);
void feedback_watch_stop(struct feedback_watch *w);
#endif
