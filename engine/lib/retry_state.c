/* engine/lib/retry_state.c - formats and parses retry states (see
 * retry_state.h). */
#include "retry_state.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *retry_state_format(const struct message *m, int64_t due_wall_ms, uint8_t waits)
{
	struct buf b = { 0 };
	buf_printf(&b, "file %llu %llu %lld\nattempt %u\nfirst %lld\ndue %lld\n%s%sfinal",
	           (unsigned long long)m->print.ino, (unsigned long long)m->print.size,
	           (long long)m->print.mtime_ns, m->attempt, (long long)m->first_wall_ms,
	           (long long)due_wall_ms, waits & WAIT_BUDGET ? "budget\n" : "", waits & WAIT_HELD ? "held\n" : "");
	for (uint32_t i = 0; i < m->nrcpt; i++)
		if (m->rcpt_state[i] != RCPT_PENDING)
			buf_printf(&b, " %u", i);
	buf_add(&b, "\n", 2); /* with its NUL: the caller gets a C string */
	return b.p;
}

void retry_state_parse(char *text, struct retry_state *st)
{
	char *save = NULL; /* strtok_r: several spool workers parse at once */
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long ino, size;
		long long mtime;
		if (sscanf(line, "file %llu %llu %lld", &ino, &size, &mtime) == 3) {
			st->has_print = true;
			st->print = (struct file_print){ ino, size, mtime };
		} else if (strncmp(line, "final", 5) == 0) {
			st->final = line + 5;
		} else if (strcmp(line, "budget") == 0) {
			st->waits |= WAIT_BUDGET;
		} else if (strcmp(line, "held") == 0) {
			st->waits |= WAIT_HELD;
		} else { /* each sets its field only if the line is its own */
			sscanf(line, "attempt %lld", &st->attempt);
			sscanf(line, "first %lld", &st->first);
			sscanf(line, "due %lld", &st->due);
		}
	}
}

/* Marks the recipients listed in final (indexes) as final. */
void retry_state_apply_final(struct message *m, const char *p)
{
	for (char *end;; p = end) {
		unsigned long i = strtoul(p, &end, 10);
		if (end == p)
			break;
		if (i < m->nrcpt && m->rcpt_state[i] == RCPT_PENDING) {
			m->rcpt_state[i] = RCPT_DELIVERED; /* final: its line is in the log */
			m->npending--;
		}
	}
}
