/* engine/spool.c - spool directory operations (see spool.h). These are
 * blocking file-system calls: they run on the engine and feeder threads,
 * never on a shard loop. */
#define _GNU_SOURCE
#include "spool.h"
#include "envelope.h"
#include "dsn.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

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
		if (renameat(sp->active_fd, e->d_name, sp->new_fd, e->d_name) == 0)
			n++;
		else
			warnx_("cannot move %s/active/%s back to new/: %s", sp->dir, e->d_name, strerror(errno));
	}
	closedir(d);
	return n;
}

const char *spool_next(struct spool *sp, bool *pass_empty)
{
	if (!sp->scan) {
		int fd = openat(sp->new_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		sp->scan = fd >= 0 ? fdopendir(fd) : NULL;
		if (!sp->scan)
			fatal("cannot read %s/new: %s", sp->dir, strerror(errno));
		sp->scan_found = 0;
	}
	struct dirent *e;
	while ((e = readdir(sp->scan))) {
		if (skip_name(e->d_name))
			continue;
		if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)
			continue;
		sp->scan_found++;
		return e->d_name;
	}
	*pass_empty = sp->scan_found == 0;
	closedir(sp->scan);
	sp->scan = NULL;
	return NULL;
}

static bool read_all(int fd, char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = read(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

struct message *spool_claim(struct spool *sp, const char *name, uint64_t max_bytes,
                            bool *gone, char *why, size_t why_len)
{
	*gone = false;
	why[0] = 0;
	if (renameat(sp->new_fd, name, sp->active_fd, name) != 0) {
		if (errno == ENOENT) {
			*gone = true;
			return NULL;
		}
		if (errno == ENOSPC || errno == EDQUOT) {
			*gone = true; /* stays in new/ for a later pass */
			snprintf(why, why_len, "%s", strerror(errno));
			return NULL;
		}
		fatal("cannot claim %s/new/%s: %s", sp->dir, name, strerror(errno));
	}
	int fd = openat(sp->active_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(why, why_len, "cannot open: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(why, why_len, "not a regular file");
		return NULL;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		close(fd);
		snprintf(why, why_len, "file of %lld bytes is larger than the limit of %llu",
		         (long long)st.st_size, (unsigned long long)max_bytes);
		return NULL;
	}
	struct message *m = xcalloc(1, sizeof(*m));
	m->raw_len = (size_t)st.st_size;
	m->raw = xmalloc(m->raw_len + 1);
	bool ok = read_all(fd, m->raw, m->raw_len);
	close(fd);
	if (!ok) {
		snprintf(why, why_len, "cannot read: %s", errno ? strerror(errno) : "short read");
		message_free(m);
		return NULL;
	}
	m->raw[m->raw_len] = 0;
	m->id = xstrdup(name);
	if (!envelope_parse(m, why, why_len)) {
		message_free(m);
		return NULL;
	}
	return m;
}

void spool_reject(struct spool *sp, const char *name, const char *why)
{
	if (renameat(sp->active_fd, name, sp->bad_fd, name) != 0)
		fatal("cannot move %s/active/%s to bad/: %s", sp->dir, name, strerror(errno));
	char wname[4096];
	snprintf(wname, sizeof(wname), "%s.why", name);
	int fd = openat(sp->bad_fd, wname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		char line[1200];
		int n = snprintf(line, sizeof(line), "%s\n", why);
		if (write(fd, line, (size_t)n) != n)
			warnx_("cannot write %s/bad/%s: %s (the reason is the next line)", sp->dir, wname,
			       strerror(errno));
		close(fd);
	}
	warnx_("%s: moved to %s/bad/: %s", name, sp->dir, why);
}

void spool_finish(struct spool *sp, struct message *m)
{
	char err[600];
	if (sp->dsn_dir && m->dsn && !dsn_write(sp->dsn_dir, sp->dsn_mta, m, err, sizeof(err)))
		warnx_("%s: no DSN for its bounces (they are in the accounting log): %s", m->id, err);
	if (unlinkat(sp->active_fd, m->id, 0) != 0 && errno != ENOENT)
		warnx_("cannot remove %s/active/%s: %s", sp->dir, m->id, strerror(errno));
	if (m->has_state)
		spool_state_remove(sp, m->id);
	message_free(m);
}

void spool_release(struct spool *sp, const char *name)
{
	if (renameat(sp->active_fd, name, sp->new_fd, name) != 0)
		warnx_("cannot move %s/active/%s back to new/: %s", sp->dir, name, strerror(errno));
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

char *spool_state_format(const struct message *m, int64_t due_wall_ms)
{
	struct buf b = { 0 };
	buf_printf(&b, "attempt %u\nfirst %lld\ndue %lld\nfinal", m->attempt,
	           (long long)m->first_wall_ms, (long long)due_wall_ms);
	for (uint32_t i = 0; i < m->nrcpt; i++)
		if (m->rcpt_state[i] != RCPT_PENDING)
			buf_printf(&b, " %u", i);
	buf_add(&b, "\n", 2); /* with its NUL: the caller gets a C string */
	return b.p;
}

int spool_state_write(struct spool *sp, const char *name, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	int fd = openat(sp->state_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(text);
	ssize_t n = fd >= 0 ? write(fd, text, len) : -1;
	int err = n == (ssize_t)len ? 0 : n >= 0 ? ENOSPC : errno;
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
	if (unlinkat(sp->state_fd, name, 0) != 0 && errno != ENOENT)
		warnx_("cannot remove %s/state/%s: %s", sp->dir, name, strerror(errno));
}

void spool_state_load(struct spool *sp, struct message *m)
{
	int fd = openat(sp->state_fd, m->id, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* never deferred: the usual case */
	char text[65536];
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0 || n == (ssize_t)sizeof(text) - 1) {
		warnx_("%s: unreadable retry state ignored: it goes to every recipient again", m->id);
		return;
	}
	text[n] = 0;
	m->has_state = true;
	char *save = NULL; /* strtok_r: several spool workers parse at once */
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		long long v;
		if (sscanf(line, "attempt %lld", &v) == 1 && v >= 0 && v < 1000000)
			m->attempt = (uint32_t)v;
		else if (sscanf(line, "first %lld", &v) == 1)
			m->first_wall_ms = v;
		else if (sscanf(line, "due %lld", &v) == 1)
			m->due_wall_ms = v;
		else if (strncmp(line, "final", 5) == 0) {
			char *p = line + 5, *end;
			for (;;) {
				unsigned long i = strtoul(p, &end, 10);
				if (end == p)
					break;
				p = end;
				if (i < m->nrcpt && m->rcpt_state[i] == RCPT_PENDING) {
					m->rcpt_state[i] = RCPT_DELIVERED; /* final: its line is in the log */
					m->npending--;
				}
			}
		}
	}
}
