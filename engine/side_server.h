/* engine/side_server.h - a listening socket served one connection at a
 * time from a thread of its own, whose answers come from the engine's
 * loop: /metrics (metrics_server.c) and the control socket (control.c).
 * The thread reads a request, hands it to the engine (side_ask) and waits
 * (bounded) for the engine's answer; the engine's loop looks once a turn
 * (side_server_wanted) and answers (side_server_answer). Every wait on a
 * client has a deadline, and stopping cuts them all short. The thread
 * takes no signal: the main thread's handlers see them all. */
#ifndef SLUICE_SIDE_SERVER_H
#define SLUICE_SIDE_SERVER_H
#include "lib/util.h"
#include <stdbool.h>
#include <stdint.h>

struct side_server;
/* serve: one accepted connection (the thread closes it after). */
typedef void (*side_serve_fn)(struct side_server *s, int fd, void *arg);

/* Takes listen_fd (bound and listening). NULL with err set on failure. */
struct side_server *side_server_new(int listen_fd, side_serve_fn serve, void *arg, char *err, size_t err_len);
bool side_server_run(struct side_server *s, int wake_fd);
/* Stops the thread (waits end: side_ask returns false) and closes. */
void side_server_stop(struct side_server *s);

/* Thread side. Waits for fd (events) until deadline (monotonic ms) or a
 * stop: true when fd is ready. */
bool side_wait_fd(const struct side_server *s, int fd, short events, int64_t deadline);
/* Writes it all, or gives up at a deadline (10 s) or a stop. */
void side_send_all(const struct side_server *s, int fd, const char *p, size_t len);
/* Reads until end or end2 (byte sequences, e.g. "\n"; end2 may be NULL)
 * is in buf, up to max bytes, within ms; false on a timeout, EOF first,
 * or a stop. */
bool side_read_until(const struct side_server *s, int fd, char *buf, size_t max, size_t *len, const char *end,
                     const char *end2, int64_t ms);
/* After answering: shuts writing and reads what the client still sends
 * for a moment, so that closing does not reset the answer away. */
void side_linger(const struct side_server *s, int fd);
/* Hands request to the engine and waits for its answer (5 s): false when
 * none came (stopping, or the engine is stuck). */
bool side_ask(struct side_server *s, const char *request, struct buf *answer);

/* Engine side: a request waiting: copied into request (a C string), and
 * its number for the answer; 0 when none waits. */
uint64_t side_server_wanted(struct side_server *s, struct buf *request);
void side_server_answer(struct side_server *s, uint64_t gen, const struct buf *answer);
#endif
