/* engine/lib/util.h - the ground floor's main header: small helpers every
 * module uses (clocks, fatal errors, checked allocation, byte buffers,
 * writes that finish, escaping for display).
 *
 * engine/lib/ is the ground floor: it includes nothing of sluice above it;
 * dns/ and dkim/ use only it, shards/ uses dns/, dkim/ and it, engine/ sits
 * on top (tests/check_layers.py enforces this in `make check`).
 *
 * Return conventions, followed everywhere:
 *  - bool: true on success; on failure a reason is written into the
 *    caller's (err, err_len) buffer when the function takes one.
 *  - int: 0 on success, else a positive errno value (never -1 + errno),
 *    except counts, which say what they count.
 *  - const char *check(...): NULL when fine, else a static or caller-owned
 *    text saying what is wrong (address_check, config_add_route).
 *  - pointers: NULL means "none" (not found, end of a pass), never an
 *    error; allocation failure is fatal (x* allocators), never returned.
 *  - fatal(): start-up and command-line errors and broken invariants
 *    (ASSERT) only; nothing a remote server or a spool file can cause.
 *  - Ownership moves only where a comment says "takes" or "caller frees". */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* Broken invariant: a programmer error, never a remote failure. */
#define ASSERT(c) do { if (!(c)) util_assert_fail(#c, __FILE__, __LINE__); } while (0)

int64_t now_mono_ms(void);
int64_t now_real_ms(void);
double now_mono_s(void);

_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void util_assert_fail(const char *what, const char *file, int line);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Prefix match ignoring ASCII case; returns length of prefix or 0. */
size_t prefix_ci(const char *s, size_t len, const char *prefix);

/* Growable byte buffer. The zeroed struct is a valid empty buffer. */
struct buf { char *p; size_t len, cap; };
void buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);
/* Double buffering for sends: out (fully sent) takes next's bytes, next
 * becomes empty and keeps out's old storage. */
void buf_swap_out(struct buf *out, struct buf *next);

/* "192.0.2.1" / "2001:db8::1", with ":25" / "[..]:25" when with_port. */
struct sockaddr_storage;
void sockaddr_text(const struct sockaddr_storage *ss, bool with_port, char *out, size_t len);

/* Appends the UTC time ms (milliseconds since the epoch) in strftime's fmt. */
/* strftime format of an RFC 5322 date in UTC (Date:, DSNs). */
#define RFC5322_DATE "%a, %d %b %Y %H:%M:%S +0000"
void buf_add_utc(struct buf *b, const char *fmt, int64_t ms) __attribute__((format(strftime, 2, 0)));

/* Waits up to ms for an eventfd to be written, then clears it. */
void eventfd_wait(int fd, int ms);
/* Wakes whoever waits on an eventfd (a full counter is awake already). */
void eventfd_kick(int fd);
/* Reads len bytes at offset off (pread, EINTR retried) until the end of
 * the file: 0 or an errno; *got says how many were read. */
int read_full(int fd, void *p, size_t len, int64_t off, size_t *got);

/* s as printable ASCII, for stderr and mail headers: a backslash and the
 * bytes below 0x20 or from 0x7f up become \\, \n, \r, \t or \xHH; cut
 * short with "..." when out is too small (ESCAPED_MAX holds any file
 * name). Returns out. */
#define ESCAPED_MAX 1040
const char *escape_text(const char *s, char *out, size_t len);
/* The same escaping for n bytes (NULs included), appended to b. */
void buf_add_escaped(struct buf *b, const char *p, size_t n);
/* True if any byte of p[0, len) is 0x80 or more (8-bit text). */
bool bytes_8bit(const char *p, size_t len);

/* Writes all of p to fd (a file, a pipe or a blocking socket), retrying
 * short writes and EINTR: 0, or the errno (ENOSPC for a write of 0). */
int write_all(int fd, const void *p, size_t len);
/* Of the len bytes at p, the first *done were written: the rest goes now;
 * *done counts it. Stops at the first error (returned, as write_all). */
int write_rest(int fd, const void *p, size_t len, size_t *done);

/* Processors online (at least 1). */
unsigned online_cpus(void);

/* Lower-cases s in place (ASCII; DNS names and tags). */
void str_lower(char *s);

/* Parses "N" as a non-negative integer within [min,max]; false if not. */
bool parse_uint(const char *s, long min, long max, long *out);
#endif
