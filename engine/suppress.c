/* engine/suppress.c - the suppression store (see suppress.h) over LMDB:
 * one environment in a directory, one named database ("suppress.v1"),
 * key SCOPE '\0' ADDRESS, value a small packed record. The only file of
 * sluice that includes lmdb.h. */
#define _GNU_SOURCE
#include "suppress.h"
#include "lib/envelope.h"
#include "lib/util.h"
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DB_NAME "suppress.v1"
#define MAX_READERS 1022      /* reader slots (threads with a reader, over all processes) */
#define LOCK_FILE_BYTES (128 << 10) /* more than LMDB asks for MAX_READERS slots (64 bytes each) */
#define VALUE_VERSION 1
#define VALUE_HEAD 10         /* version, added (8 bytes, little-endian), reason length */
#define KEY_MAX (SUPPRESS_SCOPE_MAX + SUPPRESS_ADDR_MAX)

struct suppress {
	MDB_env *env;
	MDB_dbi dbi;
	bool read_only;
	dev_t dev;
	ino_t ino;
	char dir[4096];
	struct suppress *next_open; /* the process's open stores (see register_open) */
};

struct suppress_reader {
	struct suppress *s;
	MDB_txn *txn;   /* NULL until first used; reset between snapshots */
	bool held;      /* between begin and end */
	bool live;      /* txn is a current snapshot */
	char err[300];
};

static void seterr(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t len, const char *fmt, ...)
{
	if (!err || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* An LMDB (or errno) failure as this module's int: ENOSPC for a full map,
 * else EIO. */
static int store_errno(int rc)
{
	return rc == MDB_MAP_FULL ? ENOSPC : EIO;
}

/* ---- normalisation ---- */

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

int suppress_normalise_address(const char *addr, char *out, char *err, size_t err_len)
{
	if (!addr)
		addr = "";
	size_t len = strnlen(addr, SUPPRESS_ADDR_MAX);
	const char *bad = len >= SUPPRESS_ADDR_MAX ? "address longer than 254 characters" : address_check(addr, len, false);
	if (bad) {
		char shown[120];
		seterr(err, err_len, "'%s': %s", escape_text(addr, shown, sizeof(shown)), bad);
		return EINVAL;
	}
	for (size_t i = 0; i <= len; i++)
		out[i] = ascii_lower(addr[i]);
	return 0;
}

int suppress_normalise_scope(const char *scope, char *out, char *err, size_t err_len)
{
	if (!scope)
		scope = "";
	size_t len = strnlen(scope, SUPPRESS_SCOPE_MAX);
	if (len && scope[len - 1] == '.' && len < SUPPRESS_SCOPE_MAX)
		len--;
	bool ok = len < SUPPRESS_SCOPE_MAX - 2 && (len == 0 || (scope[0] != '.' && scope[len - 1] != '.'));
	for (size_t i = 0; ok && i < len; i++) {
		char c = scope[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		     (c == '.' && scope[i + 1] != '.');
	}
	if (!ok) {
		char shown[120];
		seterr(err, err_len, "domain '%s': not a domain name (letters, digits, '-', '_' and '.')",
		       escape_text(scope, shown, sizeof(shown)));
		return EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		out[i] = ascii_lower(scope[i]);
	out[len] = 0;
	return 0;
}

bool suppress_reason_valid(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n >= SUPPRESS_REASON_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
			return false;
	return true;
}

/* The source text as stored: control characters become '?', cut at 200
 * bytes (not inside a UTF-8 sequence). Returns its length. */
static size_t source_clean(const char *src, char *out)
{
	size_t n = src ? strnlen(src, SUPPRESS_SOURCE_MAX) : 0;
	if (n == SUPPRESS_SOURCE_MAX) {
		n = SUPPRESS_SOURCE_MAX - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[n] = 0;
	return n;
}

/* key = scope '\0' address; returns its length. */
static size_t make_key(char *key, const char *scope, const char *addr)
{
	size_t sl = strlen(scope), al = strlen(addr);
	memcpy(key, scope, sl + 1);
	memcpy(key + sl + 1, addr, al);
	return sl + 1 + al;
}

static size_t make_value(char *v, const char *reason, int64_t added, const char *source)
{
	uint64_t t = (uint64_t)added;
	size_t rl = strlen(reason);
	v[0] = VALUE_VERSION;
	for (int i = 0; i < 8; i++)
		v[1 + i] = (char)(t >> (8 * i));
	v[9] = (char)rl;
	memcpy(v + VALUE_HEAD, reason, rl);
	size_t sl = source_clean(source, v + VALUE_HEAD + rl);
	return VALUE_HEAD + rl + sl;
}

/* Fills e from a stored key and value. An entry whose value cannot be
 * read is still an entry: its reason says so. */
static void decode_entry(const MDB_val *k, const MDB_val *v, struct suppress_entry *e)
{
	const char *kp = k->mv_data;
	size_t sl = strnlen(kp, k->mv_size);
	size_t n = sl < SUPPRESS_SCOPE_MAX ? sl : SUPPRESS_SCOPE_MAX - 1;
	memcpy(e->scope, kp, n);
	e->scope[n] = 0;
	size_t al = sl < k->mv_size ? k->mv_size - sl - 1 : 0;
	n = al < SUPPRESS_ADDR_MAX ? al : SUPPRESS_ADDR_MAX - 1;
	memcpy(e->address, kp + sl + 1, n);
	e->address[n] = 0;
	const unsigned char *p = v->mv_data;
	size_t rl = v->mv_size >= VALUE_HEAD ? p[9] : 0;
	if (v->mv_size < VALUE_HEAD || p[0] != VALUE_VERSION || rl >= SUPPRESS_REASON_MAX ||
	    VALUE_HEAD + rl > v->mv_size || v->mv_size - VALUE_HEAD - rl >= SUPPRESS_SOURCE_MAX) {
		snprintf(e->reason, sizeof(e->reason), "unreadable");
		snprintf(e->source, sizeof(e->source), "(a value sluice cannot read)");
		e->added = 0;
		return;
	}
	uint64_t t = 0;
	for (int i = 0; i < 8; i++)
		t |= (uint64_t)p[1 + i] << (8 * i);
	e->added = (int64_t)t;
	memcpy(e->reason, p + VALUE_HEAD, rl);
	e->reason[rl] = 0;
	size_t srcl = v->mv_size - VALUE_HEAD - rl;
	memcpy(e->source, p + VALUE_HEAD + rl, srcl);
	e->source[srcl] = 0;
}

/* ---- open and close ---- */

/* LMDB forbids opening one environment twice in a process (closing the
 * second drops the first's locks): the stores open here, by directory. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct suppress *open_stores;

static bool register_open(struct suppress *s)
{
	pthread_mutex_lock(&open_lock);
	for (struct suppress *o = open_stores; o; o = o->next_open)
		if (o->dev == s->dev && o->ino == s->ino) {
			pthread_mutex_unlock(&open_lock);
			return false;
		}
	s->next_open = open_stores;
	open_stores = s;
	pthread_mutex_unlock(&open_lock);
	return true;
}

static void unregister_open(struct suppress *s)
{
	pthread_mutex_lock(&open_lock);
	for (struct suppress **o = &open_stores; *o; o = &(*o)->next_open)
		if (*o == s) {
			*o = s->next_open;
			break;
		}
	pthread_mutex_unlock(&open_lock);
}

/* What root creates belongs to the directory above's owner and group
 * (the spool's user, who runs the daemon). */
static void own_like_parent(const char *path, const char *parent)
{
	struct stat st;
	if (geteuid() == 0 && stat(parent, &st) == 0 && chown(path, st.st_uid, st.st_gid) != 0)
		warnx_("suppress: %s: chown: %s", path, strerror(errno));
}

static char *parent_of(const char *path)
{
	char *p = xstrdup(path);
	char *slash = strrchr(p, '/');
	if (!slash)
		snprintf(p, strlen(p) + 1, ".");
	else if (slash == p)
		p[1] = 0;
	else
		*slash = 0;
	return p;
}

/* mkdir -p, each directory made 0770 (setgid kept where inherited). */
static bool make_dirs(const char *dir, char *err, size_t err_len)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return true;
		seterr(err, err_len, "%s: not a directory", dir);
		return false;
	}
	if (errno != ENOENT) {
		seterr(err, err_len, "%s: %s", dir, strerror(errno));
		return false;
	}
	char *parent = parent_of(dir);
	bool ok = strcmp(parent, dir) != 0 && make_dirs(parent, err, err_len);
	if (ok) {
		if (mkdir(dir, 0770) != 0 && errno != EEXIST) {
			seterr(err, err_len, "%s: cannot create: %s", dir, strerror(errno));
			ok = false;
		} else if (stat(dir, &st) == 0) {
			if (chmod(dir, 0770 | (st.st_mode & S_ISGID)) != 0)
				warnx_("suppress: %s: chmod: %s", dir, strerror(errno));
			own_like_parent(dir, parent);
		}
	}
	free(parent);
	return ok;
}

static const char *corrupt_hint = "restore it from a backup (sluice suppress export makes one) or move the directory "
                                  "away to start an empty store";

/* Before any page is read: the data file is not cut short of the pages
 * its meta page says are in use (reading those would be SIGBUS). */
static bool size_ok(struct suppress *s, const char *data, char *err, size_t err_len)
{
	MDB_envinfo info;
	MDB_stat est;
	struct stat st;
	int rc = mdb_env_info(s->env, &info);
	if (!rc)
		rc = mdb_env_stat(s->env, &est);
	if (rc) {
		seterr(err, err_len, "%s: %s", data, mdb_strerror(rc));
		return false;
	}
	if (stat(data, &st) != 0) {
		seterr(err, err_len, "%s: %s", data, strerror(errno));
		return false;
	}
	if ((uint64_t)st.st_size < ((uint64_t)info.me_last_pgno + 1) * est.ms_psize) {
		seterr(err, err_len, "%s: truncated: %lld bytes, its pages in use need %llu; %s", data,
		       (long long)st.st_size, ((unsigned long long)info.me_last_pgno + 1) * est.ms_psize, corrupt_hint);
		return false;
	}
	return true;
}

/* After the database is open: its first and last entries can be reached
 * (the pages on both edges of the tree are sound). */
static bool reachable(struct suppress *s, const char *data, char *err, size_t err_len)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		seterr(err, err_len, "%s: %s", data, mdb_strerror(rc));
		return false;
	}
	rc = mdb_cursor_open(txn, s->dbi, &c);
	if (!rc) {
		rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
		if (!rc)
			rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
		mdb_cursor_close(c);
	}
	mdb_txn_abort(txn);
	if (rc && rc != MDB_NOTFOUND) {
		seterr(err, err_len, "%s: corrupt (%s); %s", data, mdb_strerror(rc), corrupt_hint);
		return false;
	}
	return true;
}

/* Opens (writable: creates) the named database; false with err set. */
static bool open_db(struct suppress *s, const char *data, char *err, size_t err_len)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		seterr(err, err_len, "%s: %s", data, mdb_strerror(rc));
		return false;
	}
	MDB_stat main_stat;
	MDB_dbi main_dbi;
	rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
	if (!rc)
		rc = mdb_stat(txn, main_dbi, &main_stat);
	if (!rc)
		rc = mdb_dbi_open(txn, DB_NAME, 0, &s->dbi);
	if (!rc) {
		unsigned flags;
		rc = mdb_dbi_flags(txn, s->dbi, &flags);
		if (!rc && flags != 0) {
			mdb_txn_abort(txn);
			seterr(err, err_len, "%s: not a sluice suppression store (database %s has flags %#x)", data, DB_NAME, flags);
			return false;
		}
		if (!rc) { /* committed, the handle stays open for the environment */
			if ((rc = mdb_txn_commit(txn)) == 0)
				return true;
			seterr(err, err_len, "%s: %s", data, mdb_strerror(rc));
			return false;
		}
	}
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND && main_stat.ms_entries == 0 && !s->read_only) {
		rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (!rc) {
			if (!(rc = mdb_dbi_open(txn, DB_NAME, MDB_CREATE, &s->dbi)))
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		if (!rc)
			return true;
		seterr(err, err_len, "%s: cannot create the database: %s", data, mdb_strerror(rc));
	} else if (rc == MDB_NOTFOUND && main_stat.ms_entries == 0) {
		seterr(err, err_len, "%s: an empty LMDB file, never initialised as a suppression store (open it writable once)",
		       data);
	} else if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
		seterr(err, err_len, "%s: an LMDB file, but not a sluice suppression store (no database %s)", data, DB_NAME);
	} else {
		seterr(err, err_len, "%s: corrupt (%s); %s", data, mdb_strerror(rc), corrupt_hint);
	}
	return false;
}

struct suppress *suppress_open(const char *dir, bool read_only, size_t map_size, char *err, size_t err_len)
{
	if (!dir || !*dir) {
		seterr(err, err_len, "no store directory given");
		return NULL;
	}
	if (strlen(dir) > 4000) {
		seterr(err, err_len, "store directory name too long");
		return NULL;
	}
	struct stat st;
	if (read_only) {
		if (stat(dir, &st) != 0) {
			seterr(err, err_len, "%s: no suppression store there (%s)", dir, strerror(errno));
			return NULL;
		}
		if (!S_ISDIR(st.st_mode)) {
			seterr(err, err_len, "%s: not a directory", dir);
			return NULL;
		}
	} else if (!make_dirs(dir, err, err_len)) {
		return NULL;
	}
	struct suppress *s = xcalloc(1, sizeof(*s));
	s->read_only = read_only;
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	char data[4200], lock[4200];
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
	bool new_data = false, new_lock = access(lock, F_OK) != 0;
	if (stat(data, &st) != 0) {
		if (errno != ENOENT || read_only) {
			seterr(err, err_len, "%s: %s%s", data, errno == ENOENT ? "no suppression store there: " : "",
			       strerror(errno));
			free(s);
			return NULL;
		}
		new_data = true;
	} else if (!S_ISREG(st.st_mode)) {
		seterr(err, err_len, "%s: not a regular file", data);
		free(s);
		return NULL;
	} else if (st.st_size == 0) {
		/* LMDB would take an empty file for a new store: a store cut to
		 * nothing must not read as "nothing suppressed". */
		seterr(err, err_len, "%s: empty file, not a suppression store (truncated?); %s", data, corrupt_hint);
		free(s);
		return NULL;
	}
	if (stat(dir, &st) != 0) {
		seterr(err, err_len, "%s: %s", dir, strerror(errno));
		free(s);
		return NULL;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (!register_open(s)) {
		seterr(err, err_len, "%s: already open in this process", dir);
		free(s);
		return NULL;
	}
	/* The lock file is a shared map of a sparse file: LMDB writes its
	 * header through the map, and a reader slot first touched on a full
	 * file system would be a SIGBUS, not an error. Its blocks are taken
	 * first (LMDB uses a larger file as it is: more reader slots). */
	if (new_lock && !read_only) {
		int lfd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
		/* fallocate(2), not posix_fallocate: where the file system cannot,
		 * glibc's stand-in writes zeros, which must never touch a lock
		 * file another process may use */
		int ferr = lfd < 0 ? (errno == EEXIST ? 0 : errno)
		                   : fallocate(lfd, 0, 0, LOCK_FILE_BYTES) == 0 ? 0 : errno;
		if (lfd >= 0)
			close(lfd);
		if (ferr && ferr != EOPNOTSUPP && ferr != EINVAL) {
			if (lfd >= 0)
				unlink(lock);
			unregister_open(s);
			seterr(err, err_len, "%s: cannot make it: %s", lock, strerror(ferr));
			free(s);
			return NULL;
		}
	}
	int rc = mdb_env_create(&s->env);
	if (!rc)
		rc = mdb_env_set_mapsize(s->env, map_size ? map_size : SUPPRESS_DEFAULT_MAP);
	if (!rc)
		rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
	if (!rc)
		rc = mdb_env_set_maxdbs(s->env, 2);
	if (rc) {
		seterr(err, err_len, "%s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	rc = mdb_env_open(s->env, dir, MDB_NOTLS | (read_only ? MDB_RDONLY : 0), 0660);
	if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
		seterr(err, err_len, "%s: corrupt or not an LMDB file (%s); %s", data, mdb_strerror(rc), corrupt_hint);
		goto fail;
	}
	if (rc) {
		seterr(err, err_len, "%s: cannot open the store: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	if (new_data) {
		if (chmod(data, 0660) != 0)
			warnx_("suppress: %s: chmod: %s", data, strerror(errno));
		own_like_parent(data, dir);
	}
	if (new_lock) {
		if (chmod(lock, 0660) != 0)
			warnx_("suppress: %s: chmod: %s", lock, strerror(errno));
		own_like_parent(lock, dir);
	}
	int dead;
	mdb_reader_check(s->env, &dead); /* slots of crashed processes */
	if (!size_ok(s, data, err, err_len) || !open_db(s, data, err, err_len) || !reachable(s, data, err, err_len))
		goto fail;
	return s;
fail:
	if (s->env)
		mdb_env_close(s->env);
	unregister_open(s);
	free(s);
	return NULL;
}

void suppress_close(struct suppress *s)
{
	if (!s)
		return;
	mdb_env_close(s->env);
	unregister_open(s);
	free(s);
}

const char *suppress_dir(const struct suppress *s)
{
	return s->dir;
}

/* ---- lookups ---- */

struct suppress_reader *suppress_reader_new(struct suppress *s)
{
	struct suppress_reader *r = xcalloc(1, sizeof(*r));
	r->s = s;
	return r;
}

void suppress_reader_free(struct suppress_reader *r)
{
	if (!r)
		return;
	if (r->txn)
		mdb_txn_abort(r->txn);
	free(r);
}

/* A current snapshot in r->txn; false (r->err set) when none. */
static bool snapshot(struct suppress_reader *r)
{
	int rc = r->txn ? mdb_txn_renew(r->txn) : mdb_txn_begin(r->s->env, NULL, MDB_RDONLY, &r->txn);
	if (rc) { /* a failed begin leaves no transaction; a failed renew keeps it for the next try */
		seterr(r->err, sizeof(r->err), "%s: %s%s", r->s->dir, mdb_strerror(rc),
		       rc == MDB_MAP_RESIZED ? " (another process grew the store past this one's map: reopen it)" : "");
		return false;
	}
	r->live = true;
	return true;
}

static void release(struct suppress_reader *r)
{
	if (r->live)
		mdb_txn_reset(r->txn);
	r->live = false;
}

void suppress_reader_begin(struct suppress_reader *r)
{
	ASSERT(!r->held);
	r->held = true;
	snapshot(r);
}

void suppress_reader_end(struct suppress_reader *r)
{
	ASSERT(r->held);
	release(r);
	r->held = false;
}

const char *suppress_reader_error(const struct suppress_reader *r)
{
	return r->err;
}

/* One exact lookup of a normalised scope and address. */
static enum suppress_result lookup(struct suppress_reader *r, const char *scope, const char *addr,
                                   struct suppress_entry *out)
{
	char key[KEY_MAX];
	MDB_val k = { make_key(key, scope, addr), key }, v;
	int rc = mdb_get(r->txn, r->s->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return SUPPRESS_NO;
	if (rc) {
		seterr(r->err, sizeof(r->err), "%s: lookup: %s", r->s->dir, mdb_strerror(rc));
		return SUPPRESS_ERROR;
	}
	if (out)
		decode_entry(&k, &v, out);
	return SUPPRESS_YES;
}

static enum suppress_result check_scopes(struct suppress_reader *r, const char *scope, const char *addr,
                                         bool global_too, struct suppress_entry *out)
{
	char a[SUPPRESS_ADDR_MAX], d[SUPPRESS_SCOPE_MAX];
	if (suppress_normalise_address(addr, a, NULL, 0))
		return SUPPRESS_NO; /* nothing such can be stored */
	if (suppress_normalise_scope(scope, d, NULL, 0)) {
		if (!global_too)
			return SUPPRESS_NO;
		d[0] = 0; /* a sender domain no scope can name ("[192.0.2.1]", 8-bit): the global entries still hold */
	}
	bool own = !r->held;
	if (own ? !snapshot(r) : !r->live)
		return SUPPRESS_ERROR;
	enum suppress_result res = global_too || !d[0] ? lookup(r, "", a, out) : SUPPRESS_NO;
	if (res == SUPPRESS_NO && d[0])
		res = lookup(r, d, a, out);
	if (own)
		release(r);
	return res;
}

enum suppress_result suppress_check(struct suppress_reader *r, const char *sender_domain, const char *rcpt,
                                    struct suppress_entry *out)
{
	return check_scopes(r, sender_domain, rcpt, true, out);
}

enum suppress_result suppress_get(struct suppress_reader *r, const char *scope, const char *addr,
                                  struct suppress_entry *out)
{
	return check_scopes(r, scope, addr, false, out);
}

/* ---- writes ---- */

/* Normalises and encodes one entry into key and value. */
static int prepare(const char *scope, const char *addr, const char *reason, int64_t added, const char *source,
                   char *key, MDB_val *k, char *val, MDB_val *v, char *err, size_t err_len)
{
	char a[SUPPRESS_ADDR_MAX], d[SUPPRESS_SCOPE_MAX];
	int e = suppress_normalise_address(addr, a, err, err_len);
	if (!e)
		e = suppress_normalise_scope(scope, d, err, err_len);
	if (e)
		return e;
	if (!reason || !*reason)
		reason = "manual";
	char lower[SUPPRESS_REASON_MAX];
	size_t rl = strnlen(reason, SUPPRESS_REASON_MAX - 1);
	for (size_t i = 0; i < rl; i++)
		lower[i] = ascii_lower(reason[i]);
	lower[rl] = 0;
	if (reason[rl] || !suppress_reason_valid(lower)) {
		char shown[80];
		seterr(err, err_len, "reason '%s': lower-case letters, digits and '-' (at most %d)",
		       escape_text(reason, shown, sizeof(shown)), SUPPRESS_REASON_MAX - 1);
		return EINVAL;
	}
	k->mv_data = key;
	k->mv_size = make_key(key, d, a);
	if (val) {
		v->mv_data = val;
		v->mv_size = make_value(val, lower, added, source);
	}
	return 0;
}

#define VALUE_MAX (VALUE_HEAD + SUPPRESS_REASON_MAX + SUPPRESS_SOURCE_MAX)

int suppress_add(struct suppress *s, const char *scope, const char *addr, const char *reason, const char *source,
                 char *err, size_t err_len)
{
	char key[KEY_MAX], val[VALUE_MAX];
	MDB_val k, v;
	int e = prepare(scope, addr, reason, (int64_t)time(NULL), source, key, &k, val, &v, err, err_len);
	if (e)
		return e;
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (!rc) {
		rc = mdb_put(txn, s->dbi, &k, &v, 0);
		if (!rc)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc) {
		seterr(err, err_len, "%s: add: %s", s->dir, mdb_strerror(rc));
		return store_errno(rc);
	}
	return 0;
}

int suppress_remove(struct suppress *s, const char *scope, const char *addr, char *err, size_t err_len)
{
	char key[KEY_MAX], a[SUPPRESS_ADDR_MAX], d[SUPPRESS_SCOPE_MAX];
	int e = suppress_normalise_address(addr, a, err, err_len);
	if (!e)
		e = suppress_normalise_scope(scope, d, err, err_len);
	if (e)
		return e;
	MDB_val k = { make_key(key, d, a), key };
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (!rc) {
		rc = mdb_del(txn, s->dbi, &k, NULL);
		if (!rc)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc == MDB_NOTFOUND) {
		seterr(err, err_len, "%s: not suppressed %s%s", a, d[0] ? "for " : "globally", d);
		return ENOENT;
	}
	if (rc) {
		seterr(err, err_len, "%s: remove: %s", s->dir, mdb_strerror(rc));
		return store_errno(rc);
	}
	return 0;
}

/* ---- CSV ---- */

#define CSV_FIELDS 5

/* Splits line (modified in place) into at most CSV_FIELDS fields: an
 * unquoted field is trimmed of spaces and tabs, a quoted one is taken as
 * is ("" inside is one "). Returns the number of fields, or -1 with why. */
static int csv_split(char *line, char **f, const char **why)
{
	int n = 0;
	char *p = line;
	for (;;) {
		if (n == CSV_FIELDS) {
			*why = "more than 5 fields (address,domain,reason,added,source)";
			return -1;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '"') {
			char *w = ++p;
			f[n++] = w;
			for (;;) {
				if (!*p) {
					*why = "a quoted field is not closed";
					return -1;
				}
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
			*w = 0; /* w <= p - 1: the closing quote's place or before */
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p && *p != ',') {
				*why = "text after a quoted field";
				return -1;
			}
		} else {
			f[n++] = p;
			while (*p && *p != ',') {
				if (*p == '"') {
					*why = "a quote inside an unquoted field";
					return -1;
				}
				p++;
			}
			bool last = !*p;
			char *e = p;
			while (e > f[n - 1] && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*e = 0; /* may be the comma at p */
			if (last)
				return n;
			p++; /* the comma */
			continue;
		}
		if (!*p)
			return n;
		p++; /* the comma */
	}
}

/* RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" (what export writes; also a space
 * for the T, "+00:00" for Z), or plain unix seconds. */
static bool parse_time(const char *s, int64_t *out)
{
	long v;
	if (parse_uint(s, 0, 0x7fffffffffffL, &v)) {
		*out = v;
		return true;
	}
	struct tm tm = { 0 };
	const char *e = strptime(s, "%Y-%m-%d", &tm);
	if (!e || (*e != 'T' && *e != 't' && *e != ' '))
		return false;
	e = strptime(e + 1, "%H:%M:%S", &tm);
	if (!e || (strcmp(e, "Z") && strcmp(e, "z") && strcmp(e, "+00:00")))
		return false;
	time_t t = timegm(&tm);
	if (t < 0)
		return false;
	*out = t;
	return true;
}

static void csv_put(FILE *out, const char *s)
{
	bool quote = false;
	for (const char *p = s; *p; p++)
		if (*p == ',' || *p == '"' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			quote = true;
	if (!quote) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			fputc('"', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

/* An import's entries between two commits, sorted by key before they go
 * in: the tree is then walked once from left to right, each page touched
 * in turn (random order is several times slower in a large store). */
struct pending_entry {
	size_t off;      /* key, then value, in data */
	uint32_t seq;    /* line order: of two equal keys the later wins */
	uint16_t klen, vlen;
};
struct pending {
	struct buf data;
	struct pending_entry *e;
	size_t n, cap;
};

static void pending_add(struct pending *p, const MDB_val *k, const MDB_val *v)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 4096;
		p->e = xrealloc(p->e, p->cap * sizeof(*p->e));
	}
	p->e[p->n] = (struct pending_entry){ p->data.len, (uint32_t)p->n, (uint16_t)k->mv_size, (uint16_t)v->mv_size };
	p->n++;
	buf_add(&p->data, k->mv_data, k->mv_size);
	buf_add(&p->data, v->mv_data, v->mv_size);
}

/* LMDB's default key order (bytes, then length), then line order. */
static int pending_cmp(const void *a, const void *b, void *data)
{
	const struct pending_entry *x = a, *y = b;
	const char *pending_base = data;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(pending_base + x->off, pending_base + y->off, n);
	if (!c)
		c = (int)x->klen - (int)y->klen;
	if (!c)
		c = x->seq < y->seq ? -1 : x->seq > y->seq;
	return c;
}

/* Writes the pending entries in one transaction, sorted; *added counts
 * them once committed. */
static bool pending_commit(struct suppress *s, struct pending *p, size_t *added, char *err, size_t err_len)
{
	if (!p->n)
		return true;
	qsort_r(p->e, p->n, sizeof(*p->e), pending_cmp, p->data.p);
	MDB_txn *txn;
	size_t written = 0;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	for (size_t i = 0; !rc && i < p->n; i++) {
		const struct pending_entry *e = &p->e[i];
		if (i + 1 < p->n && e->klen == p->e[i + 1].klen &&
		    !memcmp(p->data.p + e->off, p->data.p + p->e[i + 1].off, e->klen))
			continue; /* a later line has the same address and scope */
		MDB_val k = { e->klen, p->data.p + e->off }, v = { e->vlen, p->data.p + e->off + e->klen };
		rc = mdb_put(txn, s->dbi, &k, &v, 0);
		written++;
	}
	if (!rc)
		rc = mdb_txn_commit(txn);
	else if (txn)
		mdb_txn_abort(txn);
	p->n = 0;
	p->data.len = 0;
	if (rc) {
		seterr(err, err_len, "%s: import: %s (%zu entries committed before)", s->dir, mdb_strerror(rc), *added);
		return false;
	}
	*added += written;
	return true;
}

bool suppress_import(struct suppress *s, FILE *csv, const char *def_scope, const char *def_reason,
                     const char *def_source, struct suppress_import_stats *st,
                     void (*bad)(void *arg, size_t line, const char *why), void *arg, char *err, size_t err_len)
{
	memset(st, 0, sizeof(*st));
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	struct pending pend = { 0 };
	int64_t now = (int64_t)time(NULL);
	bool ok = true;
	while ((got = getline(&line, &cap, csv)) >= 0) {
		st->lines++;
		while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
			line[--got] = 0;
		char *p = line;
		if (st->lines == 1 && !strncmp(p, "\xef\xbb\xbf", 3))
			p += 3; /* a UTF-8 byte order mark */
		if ((size_t)got != strlen(line)) {
			st->bad++;
			if (bad)
				bad(arg, st->lines, "the line contains a NUL byte");
			continue;
		}
		char *f[CSV_FIELDS];
		const char *why = NULL;
		int n = p[strspn(p, " \t")] ? csv_split(p, f, &why) : 0;
		if (n == 0) {
			st->skipped++;
			continue;
		}
		if (st->lines == 1 && n > 0 && !strcasecmp(f[0], "address")) {
			st->skipped++;
			continue;
		}
		char key[KEY_MAX], val[VALUE_MAX], reason_err[300];
		MDB_val k, v;
		int64_t added = now;
		if (n > 3 && *f[3] && !parse_time(f[3], &added))
			why = "added: not an RFC 3339 UTC time (2024-05-01T12:00:00Z) or unix seconds";
		if (n > 0 && !why &&
		    prepare(n > 1 && *f[1] ? f[1] : def_scope, f[0], n > 2 && *f[2] ? f[2] : def_reason, added,
		            n > 4 ? f[4] : def_source, key, &k, val, &v, reason_err, sizeof(reason_err)))
			why = reason_err;
		if (why) {
			st->bad++;
			if (bad)
				bad(arg, st->lines, why);
			continue;
		}
		pending_add(&pend, &k, &v);
		if (pend.n == SUPPRESS_IMPORT_BATCH && !(ok = pending_commit(s, &pend, &st->added, err, err_len)))
			break;
	}
	if (ok && ferror(csv)) {
		seterr(err, err_len, "import: reading line %zu: %s", st->lines + 1, strerror(errno));
		ok = false;
	}
	if (ok)
		ok = pending_commit(s, &pend, &st->added, err, err_len);
	buf_free(&pend.data);
	free(pend.e);
	free(line);
	return ok;
}

/* Walks the entries of scope (NULL: all) in key order, calling fn for each. */
static bool walk(struct suppress *s, const char *scope, bool (*fn)(void *arg, const MDB_val *k, const MDB_val *v),
                 void *arg, char *err, size_t err_len)
{
	char d[SUPPRESS_SCOPE_MAX];
	if (scope && suppress_normalise_scope(scope, d, err, err_len))
		return false;
	MDB_txn *txn;
	MDB_cursor *c;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		seterr(err, err_len, "%s: %s", s->dir, mdb_strerror(rc));
		return false;
	}
	rc = mdb_cursor_open(txn, s->dbi, &c);
	if (rc) {
		mdb_txn_abort(txn);
		seterr(err, err_len, "%s: %s", s->dir, mdb_strerror(rc));
		return false;
	}
	size_t plen = scope ? strlen(d) + 1 : 0;
	MDB_val k = { plen, d }, v;
	bool ok = true;
	rc = mdb_cursor_get(c, &k, &v, scope ? MDB_SET_RANGE : MDB_FIRST);
	while (!rc) {
		if (scope && (k.mv_size < plen || memcmp(k.mv_data, d, plen)))
			break;
		if (!fn(arg, &k, &v)) {
			ok = false;
			break;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (rc && rc != MDB_NOTFOUND) {
		seterr(err, err_len, "%s: reading the entries: %s", s->dir, mdb_strerror(rc));
		ok = false;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return ok;
}

struct export_state {
	FILE *out;
	size_t n;
};

static bool export_one(void *arg, const MDB_val *k, const MDB_val *v)
{
	struct export_state *x = arg;
	struct suppress_entry e;
	decode_entry(k, v, &e);
	char when[40] = "";
	struct tm tm;
	time_t t = (time_t)e.added;
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	csv_put(x->out, e.address);
	fputc(',', x->out);
	csv_put(x->out, e.scope);
	fputc(',', x->out);
	csv_put(x->out, e.reason);
	fprintf(x->out, ",%s,", when);
	csv_put(x->out, e.source);
	fputc('\n', x->out);
	x->n++;
	return !ferror(x->out);
}

bool suppress_export(struct suppress *s, FILE *out, const char *scope, size_t *n, char *err, size_t err_len)
{
	struct export_state x = { out, 0 };
	fputs("address,domain,reason,added,source\n", out);
	bool ok = walk(s, scope, export_one, &x, err, err_len);
	if (n)
		*n = x.n;
	if (ok && (fflush(out) != 0 || ferror(out))) {
		seterr(err, err_len, "export: writing: %s", strerror(errno));
		return false;
	}
	if (!ok && err && !err[0])
		seterr(err, err_len, "export: writing: %s", strerror(errno));
	return ok;
}

/* ---- figures ---- */

bool suppress_stats(struct suppress *s, struct suppress_stats *st, char *err, size_t err_len)
{
	memset(st, 0, sizeof(*st));
	MDB_envinfo info;
	MDB_stat es, ds;
	MDB_txn *txn;
	int rc = mdb_env_info(s->env, &info);
	if (!rc)
		rc = mdb_env_stat(s->env, &es);
	if (!rc && !(rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) {
		rc = mdb_stat(txn, s->dbi, &ds);
		mdb_txn_abort(txn);
	}
	if (rc) {
		seterr(err, err_len, "%s: %s", s->dir, mdb_strerror(rc));
		return false;
	}
	st->entries = ds.ms_entries;
	st->map_size = info.me_mapsize;
	st->used = (info.me_last_pgno + 1) * es.ms_psize;
	st->readers = info.me_numreaders;
	st->max_readers = info.me_maxreaders;
	return true;
}

static bool count_one(void *arg, const MDB_val *k, const MDB_val *v)
{
	(*(size_t *)arg)++;
	return true;
}

bool suppress_count_scope(struct suppress *s, const char *scope, size_t *n, char *err, size_t err_len)
{
	*n = 0;
	return walk(s, scope ? scope : "", count_one, n, err, err_len);
}
