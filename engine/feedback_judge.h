/* engine/feedback_judge.h - what a report read by feedback_parse means for
 * each recipient it names: its class, whether it suppresses, what the
 * accounting log records, and whether sluice may act on it at all (the
 * tracking header: a valid HMAC ties it to a message sluice sent; a
 * forged one is reported, never acted on). `sluice feedback parse` prints
 * these verdicts; `feedback ingest` (and the daemon's feedback.maildir)
 * acts on them. */
#ifndef SLUICE_FEEDBACK_JUDGE_H
#define SLUICE_FEEDBACK_JUDGE_H
#include "bounce_class.h"
#include "feedback_parse.h"
#include "lib/message.h"
#include "../dkim/track.h"

struct feedback_judge {
	const struct bounce_rules *rules;
	const char *secret;        /* the tracking header's key, or NULL */
	size_t secret_len;
	bool require_track;        /* act only on reports with a valid tracking header */
};

enum feedback_track { FB_TRACK_NONE, FB_TRACK_VALID, FB_TRACK_FORGED, FB_TRACK_MALFORMED, FB_TRACK_UNCHECKED };

/* The report's tie-back, once per report. */
struct feedback_origin {
	enum feedback_track track;
	char id[TRACK_FIELD_MAX], rcpt[TRACK_FIELD_MAX], source[TRACK_FIELD_MAX], job[TRACK_FIELD_MAX]; /* "" unless valid */
};

struct feedback_verdict {
	enum bounce_class cls;
	bool hard;                 /* the recipient must be suppressed */
	enum result result;        /* what the log records: RESULT_BOUNCED, RESULT_COMPLAINED; or
	                            * RESULT_DEFERRED for nothing (a delay, an auto-reply, a success) */
	bool act;                  /* sluice may act on it (log, suppress) */
	const char *why_not;       /* when not: why */
};

const char *feedback_track_name(enum feedback_track t);
void feedback_origin_of(const struct feedback_judge *j, const struct feedback_report *r, struct feedback_origin *o);
void feedback_judge_rcpt(const struct feedback_judge *j, const struct feedback_report *r,
                         const struct feedback_origin *o, size_t i, struct feedback_verdict *v);
#endif
