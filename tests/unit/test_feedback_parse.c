/* tests/unit/test_feedback_parse.c - the report reader (engine/feedback_parse.c)
 * on inline messages: line ends, MIME decoding, nested and broken
 * multiparts, the DSN and ARF fields, plain-text bounces, auto-replies,
 * the returned original's headers, and its limits (recipients, input
 * size, nesting, time on hostile input). The fixtures of real mailers are
 * checked by tests/integration/feedback_parse.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../engine/feedback_parse.h"
#include "../../engine/lib/util.h"

/* s with each "\n" made eol. */
static char *with_eol(const char *s, const char *eol, size_t *len)
{
	struct buf b = { 0 };
	for (const char *p = s; *p; p++) {
		if (*p == '\n')
			buf_adds(&b, eol);
		else
			buf_add(&b, p, 1);
	}
	*len = b.len;
	buf_add(&b, "", 1);
	return b.p;
}

static void parse(const char *s, struct feedback_report *r)
{
	feedback_parse(s, strlen(s), r);
}

static const char *str(const char *s)
{
	return s ? s : "(null)";
}

static void check_rcpt(const struct feedback_rcpt *x, const char *rcpt, const char *action, const char *status,
                       unsigned code)
{
	assert_string_equal(str(x->rcpt), rcpt);
	assert_string_equal(x->action, action);
	assert_string_equal(x->status, status);
	assert_int_equal(x->code, code);
}

static const char DSN[] =
	"From: MAILER-DAEMON@mx.example.net\n"
	"Subject: Undelivered Mail Returned to Sender\n"
	"MIME-Version: 1.0\n"
	"Content-Type: multipart/report; report-type=delivery-status;\n"
	"\tboundary=\"B1\"\n"
	"\n"
	"--B1\n"
	"Content-Type: text/plain\n"
	"\n"
	"notice\n"
	"--B1\n"
	"Content-Type: message/delivery-status\n"
	"\n"
	"Reporting-MTA: dns; mx.example.net\n"
	"\n"
	"Final-Recipient: rfc822; A@Example.NET\n"
	"Action: failed\n"
	"Status: 5.1.1\n"
	"Diagnostic-Code: smtp; 550-5.1.1 no such\n"
	"   user here\n"
	"\n"
	"Final-Recipient: rfc822; b@example.net\n"
	"Action: Delayed\n"
	"Status: 4.4.1 (no answer)\n"
	"--B1\n"
	"Content-Type: message/rfc822\n"
	"\n"
	"Message-ID: <m1@example.com>\n"
	"X-Job: j1\n"
	"X-Sluice-Track: 1.aWQ.c3Jj.am9i\n"
	" .0123456789abcdef01234567\n"
	"\n"
	"body\n"
	"--B1--\n";

static void check_dsn(const struct feedback_report *r)
{
	assert_int_equal(r->type, FEEDBACK_DSN);
	assert_int_equal(r->nrcpt, 2);
	check_rcpt(&r->rcpt[0], "A@example.net", "failed", "5.1.1", 550);
	assert_string_equal(str(r->rcpt[0].diagnostic), "550-5.1.1 no such user here");
	check_rcpt(&r->rcpt[1], "b@example.net", "delayed", "4.4.1", 0);
	assert_string_equal(str(r->reporting_mta), "mx.example.net");
	assert_string_equal(str(r->message_id), "<m1@example.com>");
	assert_string_equal(str(r->job), "j1");
	assert_string_equal(str(r->track), "1.aWQ.c3Jj.am9i .0123456789abcdef01234567");
	assert_false(r->truncated);
}

/* LF, CRLF and bare CR read the same. */
static void line_ends(void **state)
{
	static const char *const eols[] = { "\n", "\r\n", "\r" };
	for (size_t i = 0; i < 3; i++) {
		size_t len;
		char *m = with_eol(DSN, eols[i], &len);
		struct feedback_report r;
		feedback_parse(m, len, &r);
		check_dsn(&r);
		feedback_report_free(&r);
		free(m);
	}
}

/* base64 and quoted-printable parts are decoded, their own line ends too. */
static void transfer_encodings(void **state)
{
	struct feedback_report r;
	/* "Final-Recipient: rfc822; c@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n" */
	parse("Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
	      "--x\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: BASE64\n\n"
	      "RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGNAZXhhbXBsZS5vcmcNCkFjdGlvbjogZmFpbGVk\n"
	      "DQpTdGF0dXM6IDUuMi4yDQo=\n--x--\n", &r);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "c@example.org", "failed", "5.2.2", 0);
	feedback_report_free(&r);
	/* a plain-text bounce in quoted-printable, its address cut by a soft break */
	parse("From: MAILER-DAEMON@mx.example.org\nSubject: failure notice\n"
	      "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
	      "Hi. This is the qmail-send program at mx.example.org.\n\n"
	      "<d@exa=\nmple.org>:\nRemote host said: 550 5.1.1 no such user =3D gone\n\n", &r);
	assert_int_equal(r.type, FEEDBACK_DSN);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "d@example.org", "failed", "5.1.1", 550);
	assert_string_equal(str(r.rcpt[0].diagnostic), "Remote host said: 550 5.1.1 no such user = gone");
	feedback_report_free(&r);
}

/* multiparts inside multiparts; a boundary without quotes; the last one missing. */
static void nested_multipart(void **state)
{
	struct feedback_report r;
	parse("Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
	      "preamble\n--outer\nContent-Type: multipart/alternative; boundary=mid\n\n"
	      "--mid\nContent-Type: text/plain\n\nhello\n"
	      "--mid\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"in ner\"\n\n"
	      "--in ner\nContent-Type: message/delivery-status\n\n"
	      "Final-Recipient: rfc822;e@example.com\nAction: failed\nDiagnostic-Code: smtp; 552 5.2.2 full\n"
	      "--in ner--\n--mid--\n--outer\nContent-Type: text/rfc822-headers\n\n"
	      "Message-ID: <n@example.com>\nX-Sluice-Track: 1.eA..\n", &r);
	assert_int_equal(r.type, FEEDBACK_DSN);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "e@example.com", "failed", "5.2.2", 552);
	assert_string_equal(str(r.message_id), "<n@example.com>");
	assert_string_equal(str(r.track), "1.eA..");
	feedback_report_free(&r);
}

/* A report whose structure is lost: a boundary never used, the fields in a text. */
static void broken_mime(void **state)
{
	struct feedback_report r;
	parse("From: postmaster@example.net\nContent-Type: multipart/report; boundary=\"declared\"\n\n"
	      "--other\nContent-Type: message/delivery-status\n\n"
	      "Reporting-MTA: dns; example.net\n\n"
	      "Original-Recipient: rfc822;f@example.net\nFinal-Recipient: rfc822;f2@example.net\n"
	      "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.1.1 unknown\n\n"
	      "Final-Recipient: rfc822;g@example.net\nAction: failed\nStatus: 5.1.2\n"
	      "--other\nContent-Type: message/rfc822\n\nTo: f@example.net\n"
	      "X-Sluice-Track: 1.YQ.Yg.Yw.00\n\nhi\n", &r);
	assert_int_equal(r.type, FEEDBACK_DSN);
	assert_int_equal(r.nrcpt, 2);
	/* Original-Recipient preferred; X.0.0 made precise by the diagnostic */
	check_rcpt(&r.rcpt[0], "f@example.net", "failed", "5.1.1", 550);
	check_rcpt(&r.rcpt[1], "g@example.net", "failed", "5.1.2", 0);
	assert_string_equal(str(r.track), "1.YQ.Yg.Yw.00");
	feedback_report_free(&r);
	/* no field names at all: nothing usable */
	parse("Content-Type: multipart/report; boundary=q\n\n--q\n--q\n--q--\n", &r);
	assert_int_equal(r.type, FEEDBACK_UNKNOWN);
	assert_int_equal(r.nrcpt, 0);
	feedback_report_free(&r);
	/* recipients without an empty line between them */
	parse("Content-Type: message/delivery-status\n\n"
	      "Final-Recipient: rfc822;h@example.net\nAction: failed\nStatus: 5.1.1\n"
	      "Final-Recipient: rfc822;i@example.net\nAction: delivered\nStatus: 2.0.0\n", &r);
	assert_int_equal(r.nrcpt, 2);
	check_rcpt(&r.rcpt[0], "h@example.net", "failed", "5.1.1", 0);
	check_rcpt(&r.rcpt[1], "i@example.net", "delivered", "2.0.0", 0);
	feedback_report_free(&r);
}

static void arf(void **state)
{
	struct feedback_report r;
	parse("Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\n\n"
	      "--f\nContent-Type: text/plain\n\nabuse report\n"
	      "--f\nContent-Type: message/feedback-report\n\n"
	      "Feedback-Type: Not-Spam\nUser-Agent: X/1\nVersion: 1\nSource-IP: 192.0.2.1\n"
	      "Original-Mail-From: <b@news.example.com>\nReported-Domain: news.example.com\n"
	      "--f\nContent-Type: text/rfc822-headers\n\nTo: \"J\" <j@Example.COM>, k@example.com\n"
	      "--f--\n", &r);
	assert_int_equal(r.type, FEEDBACK_ARF);
	assert_string_equal(str(r.feedback_type), "not-spam");
	assert_string_equal(str(r.user_agent), "X/1");
	assert_string_equal(str(r.source_ip), "192.0.2.1");
	assert_string_equal(str(r.reported_domain), "news.example.com");
	assert_int_equal(r.nrcpt, 2);
	check_rcpt(&r.rcpt[0], "j@example.com", "", "", 0);
	check_rcpt(&r.rcpt[1], "k@example.com", "", "", 0);
	feedback_report_free(&r);
	/* a redacted recipient is unknown, never the placeholder */
	static const char *const redactions[] = { "xxxxxxx@example.com", "[redacted]", "redacted@example.com",
	                                          "Redacted <REDACTED@example.com>", "****@example.com" };
	for (size_t i = 0; i < ARRAY_LEN(redactions); i++) {
		char m[512];
		snprintf(m, sizeof(m),
		         "Content-Type: multipart/report; report-type=feedback-report; boundary=f\n\n"
		         "--f\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
		         "--f\nContent-Type: message/rfc822\n\nTo: %s\n\nbody\n--f--\n", redactions[i]);
		parse(m, &r);
		assert_int_equal(r.type, FEEDBACK_ARF);
		assert_int_equal(r.nrcpt, 1);
		assert_null(r.rcpt[0].rcpt);
		feedback_report_free(&r);
	}
	/* Original-Rcpt-To wins over the original's To: */
	parse("Content-Type: multipart/report; report-type=feedback-report; boundary=f\n\n"
	      "--f\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nOriginal-Rcpt-To: <l@example.net>\n"
	      "--f\nContent-Type: message/rfc822\n\nTo: m@example.net\n\n--f--\n", &r);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(str(r.rcpt[0].rcpt), "l@example.net");
	feedback_report_free(&r);
}

static void autoreply(void **state)
{
	struct feedback_report r;
	/* an encoded subject: "Automatic reply: Hello" */
	parse("From: Pat <Pat@Example.ORG>\nSubject: =?utf-8?B?QXV0b21hdGlj?= =?utf-8?Q?_reply:_Hello?=\n\nAway.\n", &r);
	assert_int_equal(r.type, FEEDBACK_AUTOREPLY);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "Pat@example.org", "", "", 0);
	feedback_report_free(&r);
	parse("From: q@example.org\nAuto-Submitted: auto-replied (vacation)\nSubject: Re: offer\n\n"
	      "I will not be delivered to my desk until Monday: your message to q@example.org waits.\n", &r);
	assert_int_equal(r.type, FEEDBACK_AUTOREPLY);
	feedback_report_free(&r);
	/* a bounce marked auto-submitted (Postfix, Exim) is a bounce */
	parse("From: MAILER-DAEMON@example.org\nAuto-Submitted: auto-replied\nSubject: Mail delivery failed\n\n"
	      "<r@example.org>: host mx.example.org said: 550 5.1.1 unknown user\n", &r);
	assert_int_equal(r.type, FEEDBACK_DSN);
	check_rcpt(&r.rcpt[0], "r@example.org", "failed", "5.1.1", 550);
	feedback_report_free(&r);
	/* a plain message is nothing */
	parse("From: s@example.org\nSubject: hello\n\nsee you at t@example.org\n", &r);
	assert_int_equal(r.type, FEEDBACK_UNKNOWN);
	feedback_report_free(&r);
}

/* Plain-text bounces: several recipients, one said twice, the report's
 * quoted reply, a delay warning, the quoted original. */
static void plain_text(void **state)
{
	struct feedback_report r;
	parse("From \"MAILER-DAEMON\" Tue Dec  1 10:00:00 2026\n"
	      "From: Mail Delivery System <mailer-daemon@example.com>\nSubject: Delivery Status Notification (Failure)\n\n"
	      "Delivery to the following recipients failed permanently:\n\n"
	      "     u@example.com\n     v@example.com\n\n"
	      "Technical details:\n\nThe response from the remote server was:\n550 5.1.1 does not exist\n\n"
	      "u@example.com\nRemote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'\n\n"
	      "----- Original message -----\n\nMessage-ID: <o@example.com>\nX-Job: spring\n\nbody\n"
	      "w@example.com\n", &r);
	assert_int_equal(r.type, FEEDBACK_DSN);
	assert_int_equal(r.nrcpt, 2);
	check_rcpt(&r.rcpt[0], "u@example.com", "failed", "5.1.10", 550);
	check_rcpt(&r.rcpt[1], "v@example.com", "failed", "5.1.1", 550);
	assert_string_equal(str(r.rcpt[1].diagnostic), "550 5.1.1 does not exist");
	assert_string_equal(str(r.message_id), "<o@example.com>");
	assert_string_equal(str(r.job), "spring");
	feedback_report_free(&r);
	parse("From: MAILER-DAEMON@example.com\nSubject: Delayed Mail (still being retried)\n\n"
	      "This is the mail system at host example.com.\n\n"
	      "####### THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #######\n\n"
	      "<x@example.com>: connect to mx.example.com[192.0.2.9]:25: Connection timed out\n", &r);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "x@example.com", "delayed", "", 0);
	feedback_report_free(&r);
	/* Exim's delay warning: a 4xx reply, the whole notice a delay */
	parse("From: Mail Delivery System <Mailer-Daemon@example.org>\n"
	      "Subject: Warning: message 1vQ8mX-000Abc-2Z delayed 24 hours\n\n"
	      "This message was created automatically by mail delivery software.\n"
	      "A message that you sent has not yet been delivered to one or more of its\n"
	      "recipients after more than 24 hours on the queue on mx.example.org.\n\n"
	      "The address to which the message has not yet been delivered is:\n\n"
	      "  y@example.net\n"
	      "    Delay reason: SMTP error from remote mail server after RCPT TO:<y@example.net>:\n"
	      "    451 4.7.1 Greylisted, try again later\n\n"
	      "No action is required on your part.\n", &r);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "y@example.net", "delayed", "4.7.1", 451);
	feedback_report_free(&r);
	/* Sendmail: its "Unsent message follows" (indented) ends the notice */
	parse("From: Mail Delivery Subsystem <MAILER-DAEMON@example.org>\nSubject: Returned mail\n\n"
	      "   ----- The following addresses had permanent fatal errors -----\n<a1@example.org>\n"
	      "    (reason: 550 5.1.1 User unknown)\n\n   ----- Unsent message follows -----\n"
	      "Message-ID: <sm@example.com>\nTo: <b1@example.org>\n\n<c1@example.org>: quoted\n", &r);
	assert_int_equal(r.nrcpt, 1);
	check_rcpt(&r.rcpt[0], "a1@example.org", "failed", "5.1.1", 550);
	assert_string_equal(str(r.message_id), "<sm@example.com>");
	feedback_report_free(&r);
	/* X-Failed-Recipients alone */
	parse("From: MAILER-DAEMON@example.com\nX-Failed-Recipients: y@example.com,\n z@example.com\n\nsorry\n", &r);
	assert_int_equal(r.nrcpt, 2);
	check_rcpt(&r.rcpt[1], "z@example.com", "failed", "", 0);
	feedback_report_free(&r);
}

/* At most FEEDBACK_RCPT_MAX recipients; the same address once. */
static void recipient_cap(void **state)
{
	struct buf b = { 0 };
	buf_adds(&b, "Content-Type: message/delivery-status\n\n");
	for (int i = 0; i < FEEDBACK_RCPT_MAX + 50; i++)
		buf_printf(&b, "Final-Recipient: rfc822; u%d@example.com\nAction: failed\nStatus: 5.1.1\n\n", i);
	buf_adds(&b, "Final-Recipient: rfc822; U0@EXAMPLE.com\nAction: failed\n");
	struct feedback_report r;
	feedback_parse(b.p, b.len, &r);
	assert_int_equal(r.nrcpt, FEEDBACK_RCPT_MAX);
	assert_true(r.truncated);
	assert_string_equal(r.rcpt[FEEDBACK_RCPT_MAX - 1].rcpt, "u9999@example.com");
	feedback_report_free(&r);
	b.len = 0;
	buf_adds(&b, "From: MAILER-DAEMON@example.com\n\n");
	for (int i = 0; i < 100; i++)
		buf_printf(&b, "<Same@Example.com>: 550 5.1.1 unknown (%d)\n\n", i);
	feedback_parse(b.p, b.len, &r);
	assert_int_equal(r.nrcpt, 1);
	feedback_report_free(&r);
	buf_free(&b);
}

static double secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Hostile inputs: over the size cap, deep nesting, shapes that would make
 * a careless reader quadratic; each bounded in time. */
static void limits(void **state)
{
	size_t n = FEEDBACK_INPUT_MAX + 100;
	char *big = xmalloc(n);
	memset(big, 'a', n);
	struct feedback_report r;
	feedback_parse(big, n, &r);
	assert_true(r.truncated);
	assert_int_equal(r.type, FEEDBACK_UNKNOWN);
	feedback_report_free(&r);
	free(big);

	struct buf b = { 0 };
	for (int i = 0; i < 5000; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
	buf_adds(&b, "Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;deep@example.com\nAction: failed\n");
	feedback_parse(b.p, b.len, &r); /* too deep: not read, and no crash */
	assert_int_equal(r.type, FEEDBACK_UNKNOWN);
	feedback_report_free(&r);

	static const char *const units[] = {
		"=?a?q?",                              /* encoded words never closed (in the subject) */
		"@",                                    /* addresses that never are */
		"a@",
		"<<a@b.c>",
		"to x",                                 /* "deliver ... to" */
		"</st",                                 /* a style never closed */
		"--b\n",                                /* boundaries */
		"\n ",                                  /* folding */
		"5.5.",                                 /* status codes that never are */
	};
	for (size_t u = 0; u < ARRAY_LEN(units); u++) {
		b.len = 0;
		buf_adds(&b, "From: mailer-daemon@example.com\nSubject: ");
		size_t l = strlen(units[u]);
		for (size_t i = 0; i < (1u << 20) / l; i++)
			buf_add(&b, units[u], l);
		buf_adds(&b, "\nContent-Type: multipart/report; boundary=b\n\n--b\nContent-Type: text/html\n\n<style>");
		for (size_t i = 0; i < (2u << 20) / l; i++)
			buf_add(&b, units[u], l);
		buf_adds(&b, "\n--b\nContent-Type: text/plain\n\ndelivered to ");
		for (size_t i = 0; i < (2u << 20) / l; i++)
			buf_add(&b, units[u], l);
		double t0 = secs();
		feedback_parse(b.p, b.len, &r);
		double t = secs() - t0;
		feedback_report_free(&r);
		if (t > 10)
			fail_msg("unit \"%s\": %.1f s for %zu bytes", units[u], t, b.len);
	}
	buf_free(&b);
}

/* Bytes that are no mail at all, and every cut of a report: never a crash. */
static void garbage(void **state)
{
	uint32_t x = 12345;
	char m[4096];
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(m); i++) {
			x = x * 1103515245u + 12345u;
			m[i] = (char)(x >> 16);
		}
		struct feedback_report r;
		feedback_parse(m, sizeof(m), &r);
		feedback_report_free(&r);
	}
	size_t len = strlen(DSN);
	for (size_t cut = 0; cut <= len; cut++) {
		struct feedback_report r;
		feedback_parse(DSN, cut, &r);
		for (size_t i = 0; i < r.nrcpt; i++)
			assert_true(r.rcpt[i].rcpt == NULL || strchr(r.rcpt[i].rcpt, '@'));
		feedback_report_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(line_ends),     cmocka_unit_test(transfer_encodings), cmocka_unit_test(nested_multipart),
		cmocka_unit_test(broken_mime),   cmocka_unit_test(arf),                cmocka_unit_test(autoreply),
		cmocka_unit_test(plain_text),    cmocka_unit_test(recipient_cap),      cmocka_unit_test(limits),
		cmocka_unit_test(garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
