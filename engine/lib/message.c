/* engine/lib/message.c - names of results, and freeing a message with
 * everything it owns (see message.h). */
#include "message.h"
#include "util.h"
#include <stdlib.h>

const char *result_name(enum result r)
{
	static const char *names[] = { "delivered", "deferred", "bounced", "expired", "suppressed", "complained", "unsubscribed" };
	return (unsigned)r < ARRAY_LEN(names) ? names[r] : "unknown";
}

const char *adapt_event_name(enum adapt_event e)
{
	static const char *names[] = { "slow", "speedup", "restore", "suspend", "resume", "full", "count" };
	return (unsigned)e < ARRAY_LEN(names) ? names[e] : "unknown";
}

void message_free(struct message *m)
{
	if (!m)
		return;
	free(m->raw);
	if (m->body_owned)
		free(m->body);
	free(m->dots);
	free(m->dkim_log);
	free(m->dkim_sig);
	free(m->track_hdr);
	for (uint32_t i = 0; m->suppress_why && i < m->nrcpt; i++)
		free(m->suppress_why[i]);
	free(m->suppress_why);
	free(m->suppress_error);
	while (m->dsn) {
		struct dsn_failure *f = m->dsn;
		m->dsn = f->next;
		free(f->text);
		free(f->mx);
		free(f);
	}
	free(m->id);
	free(m->file);
	free(m->rcpt);
	free(m->rcpt_state);
	free(m);
}
