/* engine/dsn.c - RFC 3464 delivery status notifications (see dsn.h). Runs
 * on the engine and spool-worker threads, after the lines of the failures
 * are logged and before the message's file leaves the spool. Its file
 * name, Message-ID and MIME boundary come from sluice's own token (time,
 * pid, counter, random), never from the spool file's name: a producer
 * chooses that name, and it shows only escaped, in X-Sluice-Queue-ID. */
#define _GNU_SOURCE
#include "dsn.h"
#include "lib/spool_writer.h"
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void dsn_note(struct message *m, const struct outcome *o)
{
	struct dsn_failure *f = xcalloc(1, sizeof(*f));
	f->rcpt = o->rcpt;
	f->expired = o->result == RESULT_EXPIRED;
	f->code = o->code;
	memcpy(f->enhanced, o->enhanced, sizeof(f->enhanced));
	f->text = o->response ? xstrdup(o->response) : NULL;
	f->mx = o->mx ? xstrdup(o->mx) : NULL;
	f->ts_ms = o->ts_ms;
	struct dsn_failure **pp = &m->dsn; /* keep recipient order */
	while (*pp)
		pp = &(*pp)->next;
	*pp = f;
}

static void rfc5322_date(struct buf *b, int64_t ms)
{
	buf_add_utc(b, RFC5322_DATE, ms);
}

/* Server text on one line: CR, LF and other controls become spaces. */
static void add_oneline(struct buf *b, const char *s)
{
	for (; s && *s; s++)
		buf_add(b, (unsigned char)*s < 0x20 || *s == 0x7f ? " " : s, 1);
}

static const char *status_of(const struct dsn_failure *f)
{
	if (f->enhanced[0])
		return f->enhanced;
	return f->expired ? "4.4.7" : "5.0.0";
}

/* A name for one DSN that no producer can choose or predict. */
static void dsn_token(char *out, size_t len, int64_t now_ms)
{
	static _Atomic unsigned seq;
	uint32_t r;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)now_mono_ms();
	snprintf(out, len, "%lld.%d.%u.%08x", (long long)now_ms, (int)getpid(), atomic_fetch_add(&seq, 1), r);
}

void dsn_format(struct buf *b, const char *mta, const struct message *m, int64_t now_ms, const char *token)
{
	char boundary[DSN_TOKEN_MAX + 8], qid[ESCAPED_MAX];
	snprintf(boundary, sizeof(boundary), "dsn-%s", token);
	buf_printf(b, "X-Sender: <>\r\nX-Receiver: <%s>\r\n", m->sender);
	if (m->job)
		buf_printf(b, "X-Job: %s\r\n", m->job);
	buf_printf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n", mta, m->sender);
	buf_adds(b, "Subject: Undelivered Mail Returned to Sender\r\nDate: ");
	rfc5322_date(b, now_ms);
	buf_printf(b, "\r\nMessage-ID: <%s.dsn@%s>\r\nAuto-Submitted: auto-replied\r\n"
	              "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
	              "\tboundary=\"%s\"\r\n\r\n", token, mta, boundary);
	buf_printf(b, "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n"
	              "Content-Type: text/plain; charset=utf-8\r\n\r\n"
	              "This is the mail system at %s.\r\n\r\n"
	              "Your message could not be delivered to one or more recipients.\r\n\r\n",
	           boundary, mta);
	for (const struct dsn_failure *f = m->dsn; f; f = f->next) {
		buf_printf(b, "<%s>: ", m->rcpt[f->rcpt]);
		if (f->expired)
			buf_adds(b, "could not be delivered in time: ");
		else if (f->mx)
			buf_printf(b, "host %s said: ", f->mx);
		if (f->code)
			buf_printf(b, "%u ", f->code);
		add_oneline(b, f->text);
		buf_adds(b, "\r\n");
	}
	buf_printf(b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n"
	              "Reporting-MTA: dns; %s\r\nX-Sluice-Queue-ID: %s\r\n", boundary, mta,
	           escape_text(m->id, qid, sizeof(qid)));
	if (m->first_wall_ms) {
		buf_adds(b, "Arrival-Date: ");
		rfc5322_date(b, m->first_wall_ms);
		buf_adds(b, "\r\n");
	}
	for (const struct dsn_failure *f = m->dsn; f; f = f->next) {
		buf_printf(b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n",
		           m->rcpt[f->rcpt], status_of(f));
		if (f->mx)
			buf_printf(b, "Remote-MTA: dns; %s\r\n", f->mx);
		if (f->code) {
			buf_printf(b, "Diagnostic-Code: smtp; %u ", f->code);
			add_oneline(b, f->text);
			buf_adds(b, "\r\n");
		} else if (f->text) {
			buf_adds(b, "X-Sluice-Reason: ");
			add_oneline(b, f->text);
			buf_adds(b, "\r\n");
		}
		buf_adds(b, "Last-Attempt-Date: ");
		rfc5322_date(b, f->ts_ms);
		buf_adds(b, "\r\n");
	}
	/* The original header block, up to (not including) the empty line. */
	const char *h = m->body, *end = m->body + m->body_len;
	const char *blank = NULL;
	if (m->body_len >= 2 && h[0] == '\r' && h[1] == '\n')
		blank = h;
	else
		blank = memmem(h, m->body_len, "\r\n\r\n", 4);
	size_t hlen = blank ? (size_t)(blank - h) + (blank == h ? 0 : 2) : (size_t)(end - h);
	buf_printf(b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
	buf_add(b, h, hlen);
	buf_printf(b, "\r\n--%s--\r\n", boundary);
}

bool dsn_write(const char *dir, const char *mta, const struct message *m, char *err, size_t err_len)
{
	if (!m->dsn || !m->sender[0])
		return true;
	int64_t now = now_real_ms();
	char token[DSN_TOKEN_MAX];
	dsn_token(token, sizeof(token), now);
	struct buf b = { 0 };
	dsn_format(&b, mta, m, now, token);
	char name[DSN_TOKEN_MAX + 8];
	snprintf(name, sizeof(name), "dsn-%s", token);
	bool ok = spool_writer_prepare(dir, err, err_len) &&
	          spool_writer_put(dir, name, b.p, b.len, true, err, err_len);
	buf_free(&b);
	return ok;
}
