/* engine/lib/message.h - one spool message in flight, and the outcome records
 * that shards send back to the engine (one per recipient per attempt).
 *
 * Ownership: the engine reads and parses the file, then hands the message
 * to one shard. The shard alone mutates rcpt_state / attempt while it owns
 * it; the strings are immutable after parsing so the engine may read them
 * at any time. When the shard sends OUTCOME_MESSAGE_DONE it never touches
 * the message again and the engine frees it; messages still held when the
 * shard stops are freed by shard_free() (their files stay in the spool). */
#ifndef SLUICE_MESSAGE_H
#define SLUICE_MESSAGE_H
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

struct job_run;

enum rcpt_state { RCPT_PENDING = 0, RCPT_DELIVERED, RCPT_BOUNCED, RCPT_EXPIRED,
                  RCPT_SUPPRESSED }; /* the suppression list holds it: never sent */

enum result {
	RESULT_DELIVERED = 0,
	RESULT_DEFERRED,
	RESULT_BOUNCED,
	RESULT_EXPIRED,
	RESULT_SUPPRESSED,
	RESULT_COMPLAINED,       /* from feedback: a spam complaint */
	RESULT_UNSUBSCRIBED,     /* from feedback: an unsubscribe */
};
const char *result_name(enum result r);

/* A recipient that failed for good, kept for the DSN (engine-private). */
struct dsn_failure {
	struct dsn_failure *next;
	uint32_t rcpt;           /* index into msg->rcpt */
	bool expired;
	uint16_t code;
	char enhanced[12];
	char *text;              /* server text or our reason */
	char *mx;                /* host it came from, or NULL */
	int64_t ts_ms;
};

/* What identifies a spool file's content: a retry state applies only to
 * the file it was written for (rename keeps all three). */
struct file_print {
	uint64_t ino, size;
	int64_t mtime_ns;
};

#define JOB_NAME_MAX 63   /* bytes of an X-Job (holds, waves and counts keep this many) */

struct message {
	char *raw;               /* the file as read; envelope strings point into it */
	size_t raw_len;
	char *body;              /* CRLF-normalised RFC 5322 message, ends in CRLF:
	                          * inside raw when the file was CRLF already
	                          * (body_owned false), else its own copy. Never
	                          * changes while a shard owns the message: the
	                          * SMTP client sends it from here, without a copy */
	size_t body_len;
	bool body_owned;
	bool body_8bit;          /* any byte >= 0x80: ask for BODY=8BITMIME */
	uint32_t *dots;          /* offsets of the body's lines that start with '.' */
	uint32_t ndots;          /* (DATA doubles those dots); NULL/0: none */
	size_t claim_bytes;      /* memory it took when claimed (file + body), for the budget */
	bool dkim_done;          /* shard-private: signed (or no key applies) in this process */
	char *dkim_log;          /* {"d":..,"s":[..]} once signed, for the log; else NULL */
	char *dkim_sig;          /* DKIM-Signature field(s) sent before body, or NULL */
	size_t dkim_sig_len;
	char *track_hdr;         /* shard-private: "X-Sluice-Track: ...\r\n" of this attempt, or NULL */
	size_t track_hdr_len;
	char *id;                /* its identity (log "id", retry state, name in active/) */
	char *file;              /* the producer's name for it in new/ (log "file") */
	struct job_run *job_run; /* engine-private: the job file it is a row of, or NULL */
	uint64_t row;            /* its row in that job file (from 1), 0 if none */
	void *claim;             /* engine-private: its claim record */
	struct file_print print; /* of its file when claimed */
	const char *sender;      /* without <>; "" for the null sender */
	const char *job;         /* X-Job or NULL */
	const char *pool;        /* X-Pool or NULL */
	uint32_t nrcpt;
	const char **rcpt;       /* without <> */
	uint8_t *rcpt_state;     /* enum rcpt_state, per recipient */
	uint32_t npending;       /* recipients not yet final */
	uint32_t attempt;        /* delivery attempts started so far */
	int64_t arrival_ms;      /* monotonic, when the engine claimed it */
	int64_t first_wall_ms;   /* wall clock of the first attempt (kept across restarts) */
	int64_t due_wall_ms;     /* from a saved state: not to be tried before this */
	bool has_state;          /* a retry state file exists for it */
	int64_t next_attempt_ms; /* monotonic; shard-private retry time */
	int64_t not_before_ms;   /* monotonic; shard-private: this attempt's deferrals were
	                          * adaptation's (a wave, a daily cap, a suspension): the
	                          * next one not before (0: the retry schedule decides) */
	uint32_t deferred_now;   /* shard-private: recipients deferred in this attempt... */
	uint32_t waited_now;     /* ...of them for adaptation (a suspension, a wave, a day) */
	bool held_wait;          /* shard-private: in the retry queue for a hold (WAIT_HELD) */
	uint32_t nsuppressed;    /* recipients the spool worker found suppressed, to be logged
	                          * by the shard that takes the message (their state RCPT_SUPPRESSED) */
	char **suppress_why;     /* by recipient: the entry that suppresses it (NULL: none) */
	char *suppress_error;    /* the list could not be read: why (the recipients are deferred) */
	uint8_t waits;           /* shard-private: WAIT_* of this attempt's adaptation waits
	                          * (and from its saved state, when read) */
	uint32_t legs_open;      /* shard-private: transactions not finished (each
	                          * leg counts until its content sends are over) */
	int32_t source;          /* shard-private: source IP index of this attempt (-1: unbound) */
	struct message *next;    /* shard-private list link (retry queue) */
	struct dsn_failure *dsn; /* engine-private: final failures, for a DSN */
	struct message *held_prev, *held_next; /* shard-private: messages it holds */
};

/* Why a deferred message waits longer than its retry schedule says (a
 * mask): what may wake it early. */
enum { WAIT_BUDGET = 1,   /* a wave or a warm-up day: a reload that changes them */
       WAIT_HELD = 2 };   /* a suspension or a paused job: the operator's resume */

/* OUTCOME_RETRY_STATE: the attempt ended with recipients still pending;
 * response holds the state to save (see spool_state_*), written before the
 * next attempt so that a restart neither retries early nor resends to the
 * recipients already final. */
enum outcome_kind { OUTCOME_RCPT = 0, OUTCOME_MESSAGE_DONE, OUTCOME_RETRY_STATE, OUTCOME_EVENT,
                    OUTCOME_MESSAGE_WAITS };

/* OUTCOME_MESSAGE_WAITS: after its retry state (due at msg->due_wall_ms),
 * the message waits for its next attempt in the spool, not in memory: the
 * shard lets go of it as for OUTCOME_MESSAGE_DONE; the engine frees it and
 * has it read again when it is due (see "Waiting in the spool" in
 * engine/run.c). */

/* OUTCOME_EVENT: an automatic action of adaptation (shards/adapt.c), a
 * line of its own in the log: result holds the enum adapt_event, msg is
 * NULL, mx holds the rule's name, response the reply that set it off. */
enum adapt_event { EVENT_SLOW = 0, EVENT_SPEEDUP, EVENT_RESTORE, EVENT_SUSPEND, EVENT_RESUME,
                   EVENT_FULL,      /* a wave's or a warm-up day's count reached its cap */
                   EVENT_COUNT };   /* (not logged) a count, for the spool's state */
const char *adapt_event_name(enum adapt_event e);

/* One line of the accounting log, produced on a shard, written by the engine. */
struct outcome {
	uint8_t kind;            /* enum outcome_kind */
	uint8_t result;          /* enum result */
	uint16_t code;           /* SMTP reply code, 0 if none */
	uint32_t rcpt;           /* index into msg->rcpt */
	uint32_t lane;           /* set by the engine: which shard sent it */
	uint32_t attempt;
	uint32_t ms;             /* latency of the transaction */
	uint32_t queue_ms;       /* from the claim of the file to this outcome */
	int64_t ts_ms;           /* wall clock */
	struct message *msg;
	char enhanced[12];       /* "5.1.1" or "" */
	/* response, mx and group share one allocation, laid out in this
	 * order: the first of them that is not NULL owns it (see
	 * outcome_free_text). */
	char *response;          /* server text (or our reason, or the retry state),
	                          * may be NULL; NUL-terminated, and may hold NULs
	                          * from the server */
	uint32_t response_len;   /* its length (RCPT outcomes) */
	char *mx;                /* MX host name (or the route's HOST:PORT), or NULL */
	char *group;             /* the MX group (provider) of the destination, or NULL */
	char peer[48];
	char source[48];
	char tls[64];            /* "TLSv1.3:TLS_AES_256_GCM_SHA384", "" for plaintext */
	/* OUTCOME_EVENT only */
	uint8_t scope;           /* enum adapt_scope of a suspension */
	uint8_t bclass;          /* RCPT: its bounce class (engine/bounce_class.h; set by the engine) */
	double rate, rate_before; /* messages per second after and before (slow-downs) */
	double base_rate;        /* what a slowed pair climbs back to */
	int64_t period;          /* EVENT_FULL, EVENT_COUNT: the wave or day counted... */
	uint32_t count, cap;     /* ...its count and cap (response holds the job, "" for warm-up) */
	int64_t until_ms;        /* wall clock end of a suspension */
};

void message_free(struct message *m);
/* Frees the strings an outcome carries (response, mx, group: one block). */
static inline void outcome_free_text(struct outcome *o)
{
	free(o->response ? o->response : o->mx ? o->mx : o->group);
	o->response = o->mx = o->group = NULL;
}
/* Bytes of content on the wire before dot-stuffing: signatures, the
 * tracking header, the body. */
static inline size_t message_content_len(const struct message *m)
{
	return m->dkim_sig_len + m->track_hdr_len + m->body_len;
}
#endif
