/* engine/control.h - the unix control socket of a running sluice (never
 * TCP): `sluice status`, `sluice top` and `sluice ctl` talk to it.
 *
 * The wire protocol, one request per connection:
 *   client: one line, words separated by single spaces, ending in "\n"
 *           (at most CONTROL_LINE_MAX bytes; a word holds no space or
 *           control byte and is at most CONTROL_WORD_MAX bytes);
 *   server: "ok\n" or "error: TEXT\n", then a body, then it closes.
 * Requests:
 *   status                       body: one JSON object and "\n" (see README,
 *                                "sluice status --json")
 *   suspend GROUP SOURCE SECONDS SOURCE "-": every source IP; SECONDS 0:
 *                                until resumed
 *   resume NAME SOURCE           lifts the suspensions of MX group NAME (of
 *                                its pair with SOURCE unless "-"), and the
 *                                pause of job NAME
 *   pause JOB                    its messages wait (deferred, not tried)
 *   bounce JOB                   its queued messages bounce
 *   reload                       as SIGHUP
 *   why ID                       body: text, why message ID waits
 * Bodies other than status's are text for a person.
 *
 * The server: a thread accepts and reads requests; the engine's loop
 * carries them out (control_server_wanted / control_server_answer), so
 * nothing here touches the engine's state. The socket is made mode 0660
 * (the daemon's user and group: add operators to the group), a stale one
 * from a crashed run is replaced, a live one is an error. */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H
#include "lib/util.h"
#include <stdbool.h>

#define CONTROL_LINE_MAX 4096
#define CONTROL_WORD_MAX 255

struct control_server;
/* A request as the engine gets it: the words of its line, and who sent
 * it (SO_PEERCRED). */
struct control_request {
	uint64_t gen;
	unsigned uid, pid;
	int argc;
	char *argv[8];            /* into line */
	char line[CONTROL_LINE_MAX + 1];
};
/* Binds path (before any thread starts); NULL with err set on failure. */
struct control_server *control_server_start(const char *path, char *err, size_t err_len);
bool control_server_run(struct control_server *s, int wake_fd);
/* Engine side, once a loop turn: true when a request waits (in r). */
bool control_server_wanted(struct control_server *s, struct control_request *r);
/* reply: "ok\n" or "error: ...\n" and the body. A why reply may end in
 * CONTROL_LOG_MARK, the log's path and "\n": the server's thread then
 * adds the log's last lines about the message (read there, not on the
 * engine's loop). */
#define CONTROL_LOG_MARK "\x1elog "
void control_server_answer(struct control_server *s, const struct control_request *r, const struct buf *reply);
/* Stops the thread, closes and removes the socket. */
void control_server_stop(struct control_server *s);

/* The client side: sends line (without its "\n") to the socket at path
 * and reads the whole reply into out (bounded in size and time). False
 * with err set when it could not talk to a server. */
bool control_request(const char *path, const char *line, struct buf *out, char *err, size_t err_len);
#endif
