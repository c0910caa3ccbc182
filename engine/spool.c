/* engine/spool.c - spool directory operations (see spool.h): claiming from
 * new/, rejecting to bad/, releasing back to new/, retry states. These are
 * blocking file-system calls: they run on the engine and feeder threads,
 * never on a shard loop. Every move is a rename that never replaces a file
 * (move_noreplace): a name that is taken becomes NAME~N, so a producer
 * cannot make two messages share one file, retry state or bad/ entry. */
#define _GNU_SOURCE
#include "spool.h"
#include "lib/retry_state.h"
#include "lib/envelope.h"
#include "dsn.h"
#include "lib/util.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1 /* <linux/fs.h> */
#endif
/* Names sluice gives stay short enough for ".why" or a temporary's affixes:
 * a longer name becomes BASE~N, BASE its first NAME_BASE bytes. */
#define NAME_KEEP 230       /* longest name kept as it is */
#define NAME_BASE 200
#define MOVE_TRIES 64       /* names tried per move; a later pass tries more */
#define COUNTED_TRIES 8     /* of which N from the counter, then at random */

static int open_subdir(const char *dir, const char *sub)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		fatal("cannot create %s: %s", path, strerror(errno));
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fatal("cannot open %s: %s", path, strerror(errno));
	return fd;
}

void spool_open(struct spool *sp, const char *dir)
{
	memset(sp, 0, sizeof(*sp));
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		fatal("cannot create spool %s: %s", dir, strerror(errno));
	sp->dir = xstrdup(dir);
	close(open_subdir(dir, "tmp"));
	sp->new_fd = open_subdir(dir, "new");
	sp->active_fd = open_subdir(dir, "active");
	sp->bad_fd = open_subdir(dir, "bad");
	sp->state_fd = open_subdir(dir, "state");
	char newdir[4096];
	snprintf(newdir, sizeof(newdir), "%s/new", dir);
	sp->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (sp->watch_fd < 0 || inotify_add_watch(sp->watch_fd, newdir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
		fatal("cannot watch %s: %s", newdir, strerror(errno));
	char lock[4096];
	snprintf(lock, sizeof(lock), "%s/lock", dir);
	sp->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (sp->lock_fd < 0)
		fatal("cannot open %s: %s", lock, strerror(errno));
	if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		char pid[32] = "?";
		ssize_t n = pread(sp->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 1] = 0;
		pid[strcspn(pid, "\n")] = 0;
		fatal("spool %s is in use by another sluice (pid %s)", dir, pid);
	}
	char me[32];
	int n = snprintf(me, sizeof(me), "%d\n", (int)getpid());
	if (ftruncate(sp->lock_fd, 0) != 0 || pwrite(sp->lock_fd, me, (size_t)n, 0) != n)
		warnx_("cannot write %s", lock);
}

static bool skip_name(const char *n)
{
	return n[0] == '.'; /* ".", "..", and producers' hidden temporaries */
}

int spool_watch_fd(const struct spool *sp)
{
	return sp->watch_fd;
}

bool spool_watch_drain(struct spool *sp)
{
	char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	for (int i = 0; i < 64; i++) { /* bounded: a new pass of new/ sees the rest */
		ssize_t n = read(sp->watch_fd, ev, sizeof(ev));
		if (n <= 0)
			break;
		any = true;
	}
	return any;
}

/* Length of name without a trailing ~N of its own ("a~3" -> 1). */
static size_t without_suffix(const char *name, size_t n)
{
	size_t k = n;
	while (k > 0 && name[k - 1] >= '0' && name[k - 1] <= '9')
		k--;
	return k < n && k > 0 && name[k - 1] == '~' ? k - 1 : n;
}

bool spool_name_keeps(const char *name)
{
	return strlen(name) <= NAME_KEEP;
}

void spool_name_variant(const char *name, uint64_t k, char *out, size_t len)
{
	size_t n = without_suffix(name, strlen(name));
	if (n > NAME_BASE)
		for (n = NAME_BASE; n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80; n--)
			;
	snprintf(out, len, "%.*s~%llu", (int)n, name, (unsigned long long)k);
}

/* The i-th name to try for a file called name: name itself when short
 * enough, then a variant: N from the spool's counter, or after
 * COUNTED_TRIES from chance: names an earlier run gave out (its counter
 * started at 1 too) cannot hold a move up for long. */
static void candidate(struct spool *sp, const char *name, unsigned i, char *out, size_t len)
{
	if (i == 0 && spool_name_keeps(name)) {
		snprintf(out, len, "%s", name);
		return;
	}
	uint64_t k = atomic_fetch_add(&sp->seq, 1) + 1;
	uint32_t r;
	if (i >= COUNTED_TRIES && getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		k = r;
	spool_name_variant(name, k, out, len);
}

/* rename(2) that fails with EEXIST instead of replacing what is there. */
static int rename_noreplace(int from_fd, const char *from, int to_fd, const char *to)
{
	if (renameat2(from_fd, from, to_fd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EINVAL)
		fatal("the spool's file system cannot rename without replacing (RENAME_NOREPLACE): "
		      "put the spool on ext4, xfs, btrfs or tmpfs");
	return errno;
}

/* One move of a spool entry, and what travels with it. */
enum move_kind {
	MOVE_CLAIM,     /* new/ -> active/ */
	MOVE_BAD,       /* active/ -> bad/, with a new NAME.why beside it */
	MOVE_RELEASE,   /* active/ -> new/; state/ID follows it (first) */
};
struct move {
	enum move_kind kind;
	int from_fd, to_fd;
	const char *name;            /* in from_fd */
	char got[NAME_MAX + 1];      /* its name in to_fd */
	int why_fd;                  /* MOVE_BAD: bad/GOT.why, open for writing, or -1 */
	int why_err;                 /* and why not (a full disk must not stop a reject) */
	bool state_moved;            /* MOVE_RELEASE: state/NAME is state/GOT now */
};

/* Before the file takes the name mv->got: takes what goes with it there.
 * 0, EEXIST (try another name) or an errno. */
static int move_reserve(struct spool *sp, struct move *mv)
{
	char why[NAME_MAX + 8];
	mv->state_moved = false;
	switch (mv->kind) {
	case MOVE_BAD:
		snprintf(why, sizeof(why), "%s.why", mv->got);
		mv->why_fd = openat(sp->bad_fd, why, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
		mv->why_err = mv->why_fd >= 0 ? 0 : errno;
		return mv->why_err == EEXIST ? EEXIST : 0;
	case MOVE_RELEASE: {
		if (strcmp(mv->name, mv->got) == 0)
			return 0;
		int err = rename_noreplace(sp->state_fd, mv->name, sp->state_fd, mv->got);
		mv->state_moved = err == 0;
		return err == ENOENT ? 0 : err; /* ENOENT: it has no retry state */
	}
	default:
		return 0;
	}
}

/* The file could not take mv->got: gives back what move_reserve took. */
static void move_unreserve(struct spool *sp, struct move *mv)
{
	char why[NAME_MAX + 8];
	if (mv->kind == MOVE_BAD && mv->why_fd >= 0) {
		close(mv->why_fd);
		snprintf(why, sizeof(why), "%s.why", mv->got);
		unlinkat(sp->bad_fd, why, 0);
	} else if (mv->state_moved && rename_noreplace(sp->state_fd, mv->got, sp->state_fd, mv->name) != 0) {
		char e1[ESCAPED_MAX], e2[ESCAPED_MAX];
		warnx_("cannot move %s/state/%s back to %s: %s", sp->dir, escape_text(mv->got, e1, sizeof(e1)),
		       escape_text(mv->name, e2, sizeof(e2)), strerror(errno));
	}
}

/* Moves mv->name from from_fd to to_fd under the first free candidate
 * name, never replacing anything; mv->got says which. 0 or an errno
 * (EEXIST: MOVE_TRIES names were all taken). A crash in between leaves at
 * worst a retry state or .why without its file: a retry state is checked
 * against its file's fingerprint, so that costs a resend, never a loss. */
static int move_noreplace(struct spool *sp, struct move *mv)
{
	int err = EEXIST;
	for (unsigned i = 0; i < MOVE_TRIES && err == EEXIST; i++) {
		candidate(sp, mv->name, i, mv->got, sizeof(mv->got));
		err = move_reserve(sp, mv);
		if (err)
			continue;
		err = rename_noreplace(mv->from_fd, mv->name, mv->to_fd, mv->got);
		if (err)
			move_unreserve(sp, mv);
	}
	return err;
}

unsigned spool_recover(struct spool *sp)
{
	/* A fresh descriptor: a dup() would share the directory offset, which
	 * an earlier pass left at the end. */
	int fd = openat(sp->active_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		fatal("cannot read %s/active: %s", sp->dir, strerror(errno));
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (skip_name(e->d_name))
			continue;
		struct move mv = { .kind = MOVE_RELEASE, .from_fd = sp->active_fd, .to_fd = sp->new_fd,
		                   .name = e->d_name };
		int err = move_noreplace(sp, &mv);
		char esc[ESCAPED_MAX];
		if (!err)
			n++;
		else
			warnx_("cannot move %s/active/%s back to new/: %s", sp->dir,
			       escape_text(e->d_name, esc, sizeof(esc)), strerror(err));
	}
	closedir(d);
	return n;
}

const char *spool_next(struct spool *sp)
{
	if (!sp->scan) {
		int fd = openat(sp->new_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		sp->scan = fd >= 0 ? fdopendir(fd) : NULL;
		if (!sp->scan)
			fatal("cannot read %s/new: %s", sp->dir, strerror(errno));
	}
	struct dirent *e;
	while ((e = readdir(sp->scan))) {
		if (!skip_name(e->d_name))
			return e->d_name; /* what is not a file goes to bad/ when claimed */
	}
	closedir(sp->scan);
	sp->scan = NULL;
	return NULL;
}

static const char *type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "FIFO";
	case S_IFDIR: return "directory";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "character device";
	case S_IFBLK: return "block device";
	default: return "unknown type";
	}
}

/* True, with the reason in why, if a producer's file name is refused. */
static bool name_refused(const char *name, char *why, size_t why_len)
{
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(why, why_len, "file name contains a control character (byte 0x%02x)", *p);
			return true;
		}
	return false;
}

struct file_print file_print_of(const struct stat *st)
{
	return (struct file_print){ (uint64_t)st->st_ino, (uint64_t)st->st_size,
	                            (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec };
}

/* Opens new/NAME for reading if it is a regular file, without following a
 * symlink or waiting on a FIFO: its type is checked before it is opened,
 * and again after (it may have been swapped). -1 with why set if not;
 * *err: the errno when stat or open failed (ENOENT: it is gone), 0 when
 * it is refused for its name or type. */
/* Opens dir/NAME (a directory of the spool) for reading; see spool_open_new. */
static int open_regular(int dirfd, const char *name, struct stat *st, int *err, char *why, size_t why_len)
{
	int fd = -1;
	*err = 0;
	if (name_refused(name, why, why_len))
		return -1;
	if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) != 0) {
		*err = errno;
		snprintf(why, why_len, "cannot stat: %s", strerror(errno));
		return -1;
	}
	if (S_ISREG(st->st_mode)) {
		fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
		if (fd < 0 || fstat(fd, st) != 0) {
			*err = errno;
			snprintf(why, why_len, "cannot open: %s", strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
	}
	if (S_ISREG(st->st_mode))
		return fd;
	snprintf(why, why_len, "not a regular file: %s", type_name(st->st_mode));
	if (fd >= 0)
		close(fd);
	return -1;
}

int spool_open_new(struct spool *sp, const char *name, struct stat *st, int *err, char *why, size_t why_len)
{
	return open_regular(sp->new_fd, name, st, err, why, why_len);
}

/* Reads and parses dir/FNAME (new/NAME, or active/ID) as message ID of
 * file NAME; NULL with why set when it cannot be used (*gone: it is not
 * there any more). */
static struct message *read_claimed(int dirfd, const char *fname, const char *name, const char *id,
                                    uint64_t max_bytes, bool *gone, bool *io, char *why, size_t why_len)
{
	struct stat st;
	int err;
	int fd = open_regular(dirfd, fname, &st, &err, why, why_len);
	*gone = err == ENOENT;
	*io = err && err != ENOENT; /* the file may be fine: it could not be read now */
	if (fd < 0)
		return NULL;
	if ((uint64_t)st.st_size > max_bytes) {
		close(fd);
		snprintf(why, why_len, "file of %lld bytes is larger than the limit of %llu",
		         (long long)st.st_size, (unsigned long long)max_bytes);
		return NULL;
	}
	struct message *m = xcalloc(1, sizeof(*m));
	m->raw_len = (size_t)st.st_size;
	m->raw = xmalloc(m->raw_len + 1);
	size_t got;
	err = read_full(fd, m->raw, m->raw_len, 0, &got);
	close(fd);
	bool ok = !err && got == m->raw_len;
	m->raw[m->raw_len] = 0;
	m->id = xstrdup(id);
	m->file = xstrdup(name);
	m->print = file_print_of(&st);
	if (!ok)
		snprintf(why, why_len, "cannot read: %s", err ? strerror(err) : "short read");
	*io = !ok;
	if (!ok || !envelope_parse(m, why, why_len)) {
		message_free(m);
		return NULL;
	}
	return m;
}

void spool_reject(struct spool *sp, const char *name, const char *why)
{
	char e1[ESCAPED_MAX], e2[ESCAPED_MAX];
	struct move mv = { .kind = MOVE_BAD, .from_fd = sp->new_fd, .to_fd = sp->bad_fd, .name = name };
	int err = move_noreplace(sp, &mv);
	if (err == ENOENT)
		return; /* gone meanwhile: nothing left to keep */
	if (err)
		fatal("cannot move %s/new/%s to bad/: %s", sp->dir, escape_text(name, e1, sizeof(e1)), strerror(err));
	char line[1200];
	int n = snprintf(line, sizeof(line), "%s\n", why);
	if (mv.why_fd >= 0) {
		errno = 0;
		if (write(mv.why_fd, line, (size_t)n) != n)
			mv.why_err = errno ? errno : ENOSPC;
		close(mv.why_fd);
	}
	if (mv.why_err)
		warnx_("cannot write %s/bad/%s.why: %s (the reason is the next line)", sp->dir,
		       escape_text(mv.got, e1, sizeof(e1)), strerror(mv.why_err));
	warnx_("%s: moved to %s/bad/%s: %s", escape_text(name, e1, sizeof(e1)), sp->dir,
	       escape_text(mv.got, e2, sizeof(e2)), why);
}

enum claim_result spool_claim(struct spool *sp, const char *name, const char *id, uint64_t max_bytes,
                              struct message **out, char *why, size_t why_len)
{
	bool gone, io;
	why[0] = 0;
	*out = read_claimed(sp->new_fd, name, name, id, max_bytes, &gone, &io, why, why_len);
	if (*out)
		return CLAIM_OK;
	if (gone)
		return CLAIM_GONE;
	spool_reject(sp, name, why);
	return CLAIM_BAD;
}

enum claim_result spool_claim_parked(struct spool *sp, const char *name, const char *id, uint64_t max_bytes,
                                     struct message **out, char *why, size_t why_len)
{
	bool gone, io;
	why[0] = 0;
	*out = read_claimed(sp->active_fd, id, name, id, max_bytes, &gone, &io, why, why_len);
	if (!*out && gone) /* its move to active/ failed: it waited in new/ */
		return spool_claim(sp, name, id, max_bytes, out, why, why_len);
	if (*out)
		return CLAIM_OK;
	char esc[ESCAPED_MAX];
	warnx_("%s/active/%s: %s; it stays there%s", sp->dir, escape_text(id, esc, sizeof(esc)), why,
	       io ? " and is tried again later" : " (the next start moves it back to new/, where it is refused)");
	return io ? CLAIM_LATER : CLAIM_GONE;
}

bool spool_still_in_new(struct spool *sp, const char *name, const struct file_print *print)
{
	struct stat st;
	if (fstatat(sp->new_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return false;
	struct file_print now = file_print_of(&st);
	return now.ino == print->ino && now.size == print->size && now.mtime_ns == print->mtime_ns;
}

bool spool_park(struct spool *sp, const char *name, const char *id, const struct file_print *print)
{
	char e1[ESCAPED_MAX];
	if (!spool_still_in_new(sp, name, print))
		return true;
	int err = rename_noreplace(sp->new_fd, name, sp->active_fd, id);
	if (err && err != ENOENT)
		warnx_("cannot move %s/new/%s to active/ while it waits for a retry: %s (it waits in new/)",
		       sp->dir, escape_text(name, e1, sizeof(e1)), strerror(err));
	return err == 0 || err == ENOENT;
}

bool spool_remove(struct spool *sp, const char *name, const char *id, const struct file_print *print,
                  bool has_state)
{
	char esc[ESCAPED_MAX];
	/* In new/ (claimed there), or in active/ (parked while it waited). */
	bool in_new = spool_still_in_new(sp, name, print);
	int fd = in_new ? sp->new_fd : sp->active_fd;
	const char *n = in_new ? name : id;
	if (unlinkat(fd, n, 0) != 0 && errno != ENOENT) {
		warnx_("cannot remove %s/%s/%s: %s; it stays claimed until sluice stops, and a restart "
		       "delivers it again", sp->dir, in_new ? "new" : "active", escape_text(n, esc, sizeof(esc)),
		       strerror(errno));
		return !in_new;
	}
	if (has_state)
		spool_state_remove(sp, id);
	return true;
}

bool spool_finish(struct spool *sp, struct message *m)
{
	char err[600], esc[ESCAPED_MAX];
	if (sp->dsn_dir && m->dsn && !dsn_write(sp->dsn_dir, sp->dsn_mta, m, err, sizeof(err)))
		warnx_("%s: no DSN for its bounces (they are in the accounting log): %s",
		       escape_text(m->id, esc, sizeof(esc)), err);
	bool gone = true; /* a job's row: the job file goes when every row is done */
	if (!m->job_run)
		gone = spool_remove(sp, m->file, m->id, &m->print, m->has_state);
	message_free(m);
	return gone;
}

void spool_close(struct spool *sp)
{
	if (sp->scan)
		closedir(sp->scan);
	close(sp->new_fd);
	close(sp->active_fd);
	close(sp->bad_fd);
	close(sp->state_fd);
	close(sp->lock_fd); /* releases the lock */
	close(sp->watch_fd);
	free(sp->dir);
	memset(sp, 0, sizeof(*sp));
}

int spool_state_write(struct spool *sp, const char *name, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	int fd = openat(sp->state_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = fd >= 0 ? write_all(fd, text, strlen(text)) : errno;
	if (fd >= 0 && close(fd) != 0 && !err)
		err = errno;
	if (!err && renameat(sp->state_fd, tmp, sp->state_fd, name) != 0)
		err = errno;
	if (err)
		unlinkat(sp->state_fd, tmp, 0);
	return err;
}

void spool_state_remove(struct spool *sp, const char *name)
{
	char esc[ESCAPED_MAX];
	if (unlinkat(sp->state_fd, name, 0) != 0 && errno != ENOENT)
		warnx_("cannot remove %s/state/%s: %s", sp->dir, escape_text(name, esc, sizeof(esc)), strerror(errno));
}

void spool_state_load(struct spool *sp, struct message *m)
{
	char esc[ESCAPED_MAX];
	int fd = openat(sp->state_fd, m->id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return; /* never deferred: the usual case */
	m->has_state = true; /* whatever it says, it goes when m does (or is replaced) */
	char text[65536];
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0 || n == (ssize_t)sizeof(text) - 1) {
		warnx_("%s: unreadable retry state ignored: it goes to every recipient again",
		       escape_text(m->id, esc, sizeof(esc)));
		return;
	}
	text[n] = 0;
	struct retry_state st = { 0 };
	retry_state_parse(text, &st);
	if (!st.has_print || st.print.ino != m->print.ino || st.print.size != m->print.size ||
	    st.print.mtime_ns != m->print.mtime_ns) {
		warnx_("%s: retry state ignored: it was saved for another file of that name (it goes to "
		       "every recipient)", escape_text(m->id, esc, sizeof(esc)));
		return;
	}
	if (st.attempt >= 0 && st.attempt < 1000000)
		m->attempt = (uint32_t)st.attempt;
	m->first_wall_ms = st.first;
	m->due_wall_ms = st.due;
	m->waits = st.waits;
	if (st.final)
		retry_state_apply_final(m, st.final);
}
