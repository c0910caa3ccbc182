/* engine/feedback_parse.h - reading one report that came back about mail
 * sluice sent: a delivery status notification (RFC 3464 multipart/report,
 * or the plain-text bounce of a mailer that writes none), a complaint
 * (RFC 5965 ARF: feedback loops) or an auto-reply (RFC 3834), into the
 * recipients it reports. Pure: bytes in, a report out (no I/O, no
 * globals); linear in the input, bounded in memory, safe for any bytes.
 * What to do about each recipient (its class, suppression, the tracking
 * header's check) is the caller's: engine/feedback_cmd.c. */
#ifndef SLUICE_FEEDBACK_PARSE_H
#define SLUICE_FEEDBACK_PARSE_H
#include <stdbool.h>
#include <stddef.h>

#define FEEDBACK_INPUT_MAX ((size_t)10 << 20) /* bytes of a message read; the rest is ignored */
#define FEEDBACK_RCPT_MAX 10000               /* recipients of one report; more are dropped */
#define FEEDBACK_DIAG_MAX 1024                /* bytes of one recipient's diagnostic kept */

enum feedback_type {
	FEEDBACK_UNKNOWN,   /* nothing usable */
	FEEDBACK_DSN,       /* a bounce or delay notice (RFC 3464 or plain text) */
	FEEDBACK_ARF,       /* a feedback report (RFC 5965): a complaint */
	FEEDBACK_AUTOREPLY, /* an out-of-office or other auto-reply (RFC 3834) */
};

struct feedback_rcpt {
	char *rcpt;        /* the address, its domain lower-cased; NULL: none given, or redacted */
	char action[12];   /* failed, delayed, delivered, relayed, expanded; "" when none */
	char status[16];   /* the enhanced status code ("5.1.1"); "" when none */
	unsigned code;     /* the SMTP reply code of the diagnostic; 0 when none */
	char *diagnostic;  /* the remote server's text, at most FEEDBACK_DIAG_MAX bytes; NULL: none */
	char *remote_mta;  /* DSN Remote-MTA; NULL: none */
};

struct feedback_report {
	enum feedback_type type;
	/* ARF (RFC 5965 3.1): Feedback-Type lower-cased, and what else it says */
	char *feedback_type, *user_agent, *source_ip, *reported_domain, *arrival_date, *original_mail_from;
	char *reporting_mta; /* DSN per-message Reporting-MTA */
	/* Headers of the returned original (message/rfc822, text/rfc822-headers,
	 * or quoted in the text), unfolded; NULL: not found. The tracking
	 * header is only what the report claims: check it (track_check). */
	char *track, *message_id, *job;
	struct feedback_rcpt *rcpt;
	size_t nrcpt;
	bool truncated;      /* input past FEEDBACK_INPUT_MAX, or recipients past FEEDBACK_RCPT_MAX */
};

/* Reads the message data[0, len) into out (zeroed first; free it with
 * feedback_report_free). Any bytes: line ends LF, CRLF or CR. An ARF or
 * an auto-reply has at least one recipient (rcpt NULL when unknown); a
 * DSN at least one; FEEDBACK_UNKNOWN none. */
void feedback_parse(const char *data, size_t len, struct feedback_report *out);
void feedback_report_free(struct feedback_report *r);
/* "dsn", "arf", "autoreply", "unknown". */
const char *feedback_type_name(enum feedback_type t);
#endif
