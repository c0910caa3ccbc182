/* engine/feedback_judge.c - see feedback_judge.h: the meaning of each
 * reported recipient, and whether sluice may act on the report. */
#include "feedback_judge.h"
#include <string.h>
#include <strings.h>

const char *feedback_track_name(enum feedback_track t)
{
	static const char *const names[] = { "none", "valid", "forged", "malformed", "unchecked" };
	return (unsigned)t < 5 ? names[t] : "none";
}

void feedback_origin_of(const struct feedback_judge *j, const struct feedback_report *r, struct feedback_origin *o)
{
	memset(o, 0, sizeof(*o));
	if (!r->track) {
		o->track = FB_TRACK_NONE;
		return;
	}
	if (!j->secret) {
		o->track = FB_TRACK_UNCHECKED; /* no key to check it with */
		return;
	}
	char id[TRACK_FIELD_MAX], rcpt[TRACK_FIELD_MAX], source[TRACK_FIELD_MAX], job[TRACK_FIELD_MAX];
	switch (track_check(j->secret, j->secret_len, r->track, strlen(r->track), id, rcpt, source, job)) {
	case TRACK_VALID:
		o->track = FB_TRACK_VALID;
		memcpy(o->id, id, sizeof(id));
		memcpy(o->rcpt, rcpt, sizeof(rcpt));
		memcpy(o->source, source, sizeof(source));
		memcpy(o->job, job, sizeof(job));
		break;
	case TRACK_FORGED:
		o->track = FB_TRACK_FORGED;
		break;
	case TRACK_MALFORMED:
		o->track = FB_TRACK_MALFORMED;
		break;
	}
}

void feedback_judge_rcpt(const struct feedback_judge *j, const struct feedback_report *r,
                         const struct feedback_origin *o, size_t i, struct feedback_verdict *v)
{
	const struct feedback_rcpt *fr = &r->rcpt[i];
	memset(v, 0, sizeof(*v));
	v->result = RESULT_DEFERRED; /* nothing to record */
	const char *diag = fr->diagnostic ? fr->diagnostic : "";
	switch (r->type) {
	case FEEDBACK_ARF: {
		/* RFC 5965's abuse, fraud, virus, other (and none given): a
		 * complaint, never send to them again; opt-out: an unsubscribe;
		 * RFC 6591's auth-failure is about the sender's authentication,
		 * not the recipient; not-spam takes nothing back */
		const char *t = r->feedback_type ? r->feedback_type : "abuse";
		if (!strcmp(t, "not-spam")) {
			v->cls = BC_OTHER;
		} else if (!strcmp(t, "auth-failure")) {
			v->cls = BC_AUTH_FAILURE;
		} else if (!strcmp(t, "opt-out") || !strcmp(t, "unsubscribe")) {
			v->cls = BC_UNSUBSCRIBE;
			v->hard = true;
			v->result = RESULT_UNSUBSCRIBED;
		} else {
			v->cls = BC_COMPLAINT;
			v->hard = true;
			v->result = RESULT_COMPLAINED;
		}
		break;
	}
	case FEEDBACK_DSN: {
		bool failed = strcmp(fr->action, "failed") == 0;
		/* a failure that gives neither a code nor a status is still permanent */
		unsigned code = fr->code ? fr->code : failed && !fr->status[0] ? 550 : 0;
		v->cls = bounce_classify(j->rules, code, fr->status, diag, strlen(diag));
		if (v->cls == BC_NONE)
			v->cls = BC_OTHER;
		v->hard = failed && bounce_class_hard(v->cls);
		v->result = failed ? RESULT_BOUNCED : RESULT_DEFERRED;
		break;
	}
	case FEEDBACK_AUTOREPLY: /* never a bounce */
	case FEEDBACK_UNKNOWN:
		v->cls = BC_OTHER;
		break;
	}
	if (v->result == RESULT_DEFERRED) {
		v->why_not = "nothing to act on (a delay, an auto-reply or a success)";
		return;
	}
	if (!fr->rcpt && !(o->track == FB_TRACK_VALID && o->rcpt[0])) {
		v->why_not = "the recipient is not named (redacted), nor in a valid tracking header";
		return;
	}
	switch (o->track) {
	case FB_TRACK_VALID:
		/* The header proves a message of ours is quoted, not who the
		 * report names: anyone who got one could name others. Its own
		 * recipient, when it has one, must be the one reported; without
		 * one (a message of several), only the report's first. */
		if (o->rcpt[0] && fr->rcpt && strcasecmp(o->rcpt, fr->rcpt) != 0)
			v->why_not = "the recipient is not the one of the message its tracking header names";
		else if (!o->rcpt[0] && i > 0)
			v->why_not = "the message had several recipients: one report acts on one of them";
		else
			v->act = true;
		break;
	case FB_TRACK_FORGED:
		v->why_not = "its tracking header is forged (the HMAC does not match)";
		break;
	case FB_TRACK_MALFORMED:
		v->why_not = "its tracking header is malformed";
		break;
	case FB_TRACK_NONE:
	case FB_TRACK_UNCHECKED:
		v->act = !j->require_track;
		if (!v->act)
			v->why_not = "no valid tracking header (feedback.require-track)";
		break;
	}
}
