/* engine/suppress.h - the suppression store: the addresses sluice must not
 * send to (hard bounces, complaints, unsubscribes, entries an operator
 * added), globally or for one sending domain. Persistent, millions of
 * entries, checked for every recipient of every message from many
 * threads without locks: an LMDB environment (memory-mapped, lock-free
 * readers) in one directory, wrapped here alone (engine/suppress.c is the
 * only file that includes lmdb.h).
 *
 * Entries. The key is SCOPE '\0' ADDRESS: SCOPE is "" (global) or a
 * sending domain in lower case; ADDRESS is normalised: the whole address
 * is lower-cased (ASCII), local part included. RFC 5321 lets a local part
 * be case-sensitive, but the providers that matter treat it as
 * case-insensitive, and a suppression that misses "John@x" because
 * "john@x" bounced is worse than one that also covers a mailbox that
 * differs only in case. An address with CR, LF, NUL, control characters,
 * white space, '<' or '>', or without '@' (or longer than 254 bytes) is
 * refused with a clear error. The value: the reason class ("bad-mailbox",
 * "complaint", "unsubscribe", "manual", ...: lower-case letters, digits
 * and '-'), the time it was added (unix seconds) and a source text
 * ("feedback:FILE", "import:FILE", "cli", ...; at most 200 bytes, control
 * characters replaced by '?'). Adding an address again replaces its entry.
 *
 * Processes and threads. One suppress_open per directory per process
 * (LMDB's rule: a second open in the same process breaks its locks; a
 * second open is refused here). Any number of processes may have it open:
 * LMDB serialises writers across processes (the daemon adding entries
 * from feedback while `sluice suppress add` runs both work), and readers
 * never wait. All processes should use the same map size (the default):
 * data written beyond a smaller map of another process makes that
 * process's reads fail (SUPPRESS_ERROR) until it reopens.
 *
 * Lookups: each thread makes its own suppress_reader and checks
 * recipients through it (a reader serves one thread at a time; it holds
 * one of the 1022 reader slots, shared by all processes, until freed). A reader sees one snapshot between
 * suppress_reader_begin and suppress_reader_end (a batch of lookups: the
 * recipients of one message); without begin each check takes a fresh
 * snapshot of its own. Keep snapshots short: a snapshot held open keeps
 * the pages it sees from being reused, and the file grows.
 *
 * Return conventions as in engine/lib/util.h: int is 0 or a positive
 * errno value (EINVAL: a refused argument; ENOENT: no such entry;
 * ENOSPC: the map is full; EIO: the store failed otherwise, read-only
 * included), with a one-line reason in (err, err_len). */
#ifndef SLUICE_SUPPRESS_H
#define SLUICE_SUPPRESS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SUPPRESS_DEFAULT_DIR "/var/spool/sluice/suppress"
/* The default map size: the most the data file may grow to (address
 * space only; the file holds what is used). An entry takes some 80 bytes
 * in a store filled by import, up to twice that in one grown by single
 * adds, and a large import needs room for a second copy of the pages it
 * rewrites: 16 GiB is room for 50 million entries. */
#define SUPPRESS_DEFAULT_MAP ((size_t)16 << 30)
#define SUPPRESS_ADDR_MAX 256   /* an address and its NUL (254 bytes at most) */
#define SUPPRESS_SCOPE_MAX 256  /* a domain name and its NUL (253 at most) */
#define SUPPRESS_REASON_MAX 32  /* a reason class and its NUL */
#define SUPPRESS_SOURCE_MAX 201 /* a source text and its NUL */

struct suppress;
struct suppress_reader;

struct suppress_entry {
	char scope[SUPPRESS_SCOPE_MAX];   /* "" global, else the sending domain */
	char address[SUPPRESS_ADDR_MAX];  /* normalised */
	char reason[SUPPRESS_REASON_MAX];
	char source[SUPPRESS_SOURCE_MAX];
	int64_t added;                    /* unix seconds */
};

/* Opens the store in dir. map_size: 0 for SUPPRESS_DEFAULT_MAP. Writable
 * (read_only false): dir and the store are created when missing (dir
 * 0770 and its files 0660, keeping a setgid parent's group; when root
 * creates them, they belong to the parent directory's owner). Read-only:
 * a missing directory or store is an error, never an empty list. A file
 * that is not a sluice suppression store (garbage, empty, another LMDB
 * database) is an error naming the file. NULL with err set on failure. */
struct suppress *suppress_open(const char *dir, bool read_only, size_t map_size, char *err, size_t err_len);
/* Every reader of s must be freed before. */
void suppress_close(struct suppress *s);
const char *suppress_dir(const struct suppress *s);

/* ---- lookups (any thread, each through its own reader) ---- */

/* A reader for the calling thread. */
struct suppress_reader *suppress_reader_new(struct suppress *s);
void suppress_reader_free(struct suppress_reader *r);
/* One snapshot for the checks until suppress_reader_end. Not nested. */
void suppress_reader_begin(struct suppress_reader *r);
void suppress_reader_end(struct suppress_reader *r);

enum suppress_result {
	SUPPRESS_NO = 0,     /* not suppressed (also: an address that cannot be stored) */
	SUPPRESS_YES = 1,    /* suppressed; *out (when given) says by which entry */
	SUPPRESS_ERROR = -1, /* the store could not be read (see suppress_reader_error) */
};
/* Is rcpt suppressed globally or for sender_domain (NULL or "": global
 * only)? Both are compared after normalisation. The global entry wins
 * when both exist. */
enum suppress_result suppress_check(struct suppress_reader *r, const char *sender_domain, const char *rcpt,
                                    struct suppress_entry *out);
/* The entry of exactly this scope ("" or NULL: global), or SUPPRESS_NO. */
enum suppress_result suppress_get(struct suppress_reader *r, const char *scope, const char *addr,
                                  struct suppress_entry *out);
/* Why the last SUPPRESS_ERROR happened ("" if none). */
const char *suppress_reader_error(const struct suppress_reader *r);

/* ---- normalisation (no store needed) ---- */

/* addr normalised into out (SUPPRESS_ADDR_MAX bytes): 0 or EINVAL. */
int suppress_normalise_address(const char *addr, char *out, char *err, size_t err_len);
/* A sending domain: lower case, a final dot dropped; NULL or "" is ""
 * (global). Letters, digits, '-', '_' and '.' only: 0 or EINVAL. */
int suppress_normalise_scope(const char *scope, char *out, char *err, size_t err_len);

/* A reason class: 1 to 31 lower-case letters, digits and '-'. */
bool suppress_reason_valid(const char *reason);

/* ---- writes (durable when they return 0: committed and synced) ---- */

/* reason: NULL for "manual" (upper case taken as lower); source: NULL for "". */
int suppress_add(struct suppress *s, const char *scope, const char *addr, const char *reason, const char *source,
                 char *err, size_t err_len);
/* ENOENT when there is no such entry. */
int suppress_remove(struct suppress *s, const char *scope, const char *addr, char *err, size_t err_len);

/* CSV import: one entry a line, fields address[,domain[,reason[,added[,source]]]]
 * (what suppress_export writes; fields may be double-quoted, "" inside
 * quotes is one "). An empty or missing domain takes def_scope (NULL:
 * global), an empty or missing reason def_reason (NULL: "manual"), a
 * missing added time now, a missing source def_source. A first line that
 * starts with "address" is a header, skipped; empty lines are skipped. A
 * line that cannot be used is counted and passed to bad (when not NULL)
 * with its number and why, and the import goes on. Entries are written
 * SUPPRESS_IMPORT_BATCH at a time, sorted, one transaction each (a commit
 * rewrites every page it touched: batches much smaller than the store
 * make an import of millions slow and the file large); other writers wait
 * for a batch (seconds), readers never do; a batch takes some 200 MB of
 * memory. Of two lines for the same address and scope, the later wins.
 * False (err set) when the store or the file fails; the batches
 * committed before stay. */
#define SUPPRESS_IMPORT_BATCH 1000000
struct suppress_import_stats {
	size_t lines;   /* lines read */
	size_t added;   /* entries written and committed (new or replaced) */
	size_t bad;     /* lines refused */
	size_t skipped; /* header and empty lines */
};
bool suppress_import(struct suppress *s, FILE *csv, const char *def_scope, const char *def_reason,
                     const char *def_source, struct suppress_import_stats *st,
                     void (*bad)(void *arg, size_t line, const char *why), void *arg, char *err, size_t err_len);

/* CSV export of every entry (or of one scope's when scope is not NULL; ""
 * is the global scope), with the header line
 * "address,domain,reason,added,source"; added in RFC 3339 UTC. *n counts
 * the entries written. False (err set) when the store or out fails. */
bool suppress_export(struct suppress *s, FILE *out, const char *scope, size_t *n, char *err, size_t err_len);

/* ---- figures (for `sluice status` and `sluice suppress count`) ---- */

struct suppress_stats {
	size_t entries;    /* all scopes */
	size_t map_size;   /* bytes the file may grow to */
	size_t used;       /* bytes of the file in use (pages up to the last used) */
	unsigned readers;  /* reader slots used so far (all processes; a high-water mark) */
	unsigned max_readers;
};
bool suppress_stats(struct suppress *s, struct suppress_stats *st, char *err, size_t err_len);
/* Entries of one scope ("" global); walks that scope. False on failure. */
bool suppress_count_scope(struct suppress *s, const char *scope, size_t *n, char *err, size_t err_len);

/* `sluice suppress` (suppress_cmd.c). */
int suppress_main(int argc, char **argv);
#endif
