/* bench/spool_ops.c - `sluice spoolbench`: what the spool's file operations
 * cost, per file, in CPU (user + system, of the whole process: io_uring's
 * worker threads included) and in wall time. In a scratch spool it writes
 * N files the way producers do (tmp/, then a rename into new/; not timed,
 * then syncfs), fresh for every phase, and times one operation over all
 * of them:
 *   scan            readdir of new/ (N entries)
 *   read            fstatat + openat + fstat + read + close (as the engine
 *                   reads a file; the page cache is warm, as it is for a
 *                   file that was just written)
 *   rename          new/ -> active/ (renameat2 NOREPLACE: the old claim)
 *   unlink-1        unlinkat from new/, 1 thread
 *   unlink-same     unlinkat, T threads in the same directory (contention)
 *   unlink-own      unlinkat, T threads each in a directory of its own
 *   uring           IORING_OP_UNLINKAT, submitted B at a time, 1 thread;
 *                   the kernel runs them on io-wq workers (as many as it
 *                   likes)
 *   uring-1worker   the same with the ring's io-wq capped at 1 worker
 * and last `dirsync`: fdatasync of new/ after one rename into it (the
 * price of making one spool move durable), K times. */
#define _GNU_SOURCE
#include "bench.h"
#include "../engine/lib/ring.h"
#include "../engine/lib/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define SB_MAX_THREADS 64
#define SB_DIRSYNC_MAX 200

struct sb_opts {
	const char *dir;
	long count, size, threads, batch;
	bool json, nosync;
};

struct sb {
	struct sb_opts o;
	char root[4096];
	int root_fd, tmp_fd, new_fd, active_fd;
	int own_fd[SB_MAX_THREADS];   /* new0/ .. new{T-1}/ */
	char **names;                 /* count names */
	char *content;                /* size bytes */
	char *rdbuf;
};

struct sb_result {
	const char *name, *what;
	long files;
	double wall_s, user_s, sys_s, thread_cpu_s;
	long errors;
};

struct meter {
	double wall, user, sys;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void meter_start(struct meter *m)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	m->user = tv_s(ru.ru_utime);
	m->sys = tv_s(ru.ru_stime);
	m->wall = mono_s();
}

static void meter_stop(const struct meter *m, struct sb_result *r)
{
	r->wall_s = mono_s() - m->wall;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	r->user_s = tv_s(ru.ru_utime) - m->user;
	r->sys_s = tv_s(ru.ru_stime) - m->sys;
}

static int subdir(struct sb *b, const char *name)
{
	if (mkdirat(b->root_fd, name, 0755) != 0 && errno != EEXIST)
		fatal("spoolbench: mkdir %s/%s: %s", b->root, name, strerror(errno));
	int fd = openat(b->root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fatal("spoolbench: open %s/%s: %s", b->root, name, strerror(errno));
	return fd;
}

/* tmp/NAME of file i, written and closed. */
static void write_tmp(struct sb *b, long i)
{
	const char *n = b->names[i];
	int fd = openat(b->tmp_fd, n, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, b->content, (size_t)b->o.size) != 0)
		fatal("spoolbench: writing %s/tmp/%s: %s", b->root, n, strerror(errno));
	close(fd);
}

/* Files [from, to) written as producers write them: tmp/NAME, then renamed
 * into the directory dfd. Not timed. */
static void populate(struct sb *b, int dfd, long from, long to)
{
	for (long i = from; i < to; i++) {
		write_tmp(b, i);
		if (renameat(b->tmp_fd, b->names[i], dfd, b->names[i]) != 0)
			fatal("spoolbench: rename into place: %s", strerror(errno));
	}
}

/* A fresh set of all N files in new/ (or split over the own directories),
 * on the disk: written, then the file system synced (unless --no-sync: then
 * the files may have no blocks on the disk yet, delayed allocation, and
 * their removal frees none, as for a file removed seconds after a producer
 * wrote it without fsync). */
static void fresh_set(struct sb *b, bool split)
{
	if (!split) {
		populate(b, b->new_fd, 0, b->o.count);
	} else {
		long t = b->o.threads;
		for (long k = 0; k < t; k++)
			populate(b, b->own_fd[k], b->o.count * k / t, b->o.count * (k + 1) / t);
	}
	if (!b->o.nosync && syncfs(b->root_fd) != 0)
		fatal("spoolbench: syncfs: %s", strerror(errno));
}

/* Removes whatever is left in dfd (untimed cleanup). */
static void empty_dir(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		fatal("spoolbench: opendir: %s", strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}

static void phase_scan(struct sb *b, struct sb_result *r)
{
	fresh_set(b, false);
	struct meter m;
	meter_start(&m);
	double t0 = thread_cpu_s();
	int fd = openat(b->new_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d)
		fatal("spoolbench: opendir new: %s", strerror(errno));
	long seen = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		seen += e->d_name[0] != '.';
	closedir(d);
	r->thread_cpu_s = thread_cpu_s() - t0;
	meter_stop(&m, r);
	r->errors = b->o.count - seen;
	empty_dir(b->new_fd);
}

static void phase_read(struct sb *b, struct sb_result *r)
{
	fresh_set(b, false);
	struct meter m;
	meter_start(&m);
	double t0 = thread_cpu_s();
	for (long i = 0; i < b->o.count; i++) {
		struct stat st;
		const char *n = b->names[i];
		if (fstatat(b->new_fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			r->errors++;
			continue;
		}
		int fd = openat(b->new_fd, n, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
		if (fd < 0 || fstat(fd, &st) != 0 || read(fd, b->rdbuf, (size_t)st.st_size) != st.st_size)
			r->errors++;
		if (fd >= 0)
			close(fd);
	}
	r->thread_cpu_s = thread_cpu_s() - t0;
	meter_stop(&m, r);
	empty_dir(b->new_fd);
}

static void phase_rename(struct sb *b, struct sb_result *r)
{
	fresh_set(b, false);
	struct meter m;
	meter_start(&m);
	double t0 = thread_cpu_s();
	for (long i = 0; i < b->o.count; i++)
		if (renameat2(b->new_fd, b->names[i], b->active_fd, b->names[i], RENAME_NOREPLACE) != 0)
			r->errors++;
	r->thread_cpu_s = thread_cpu_s() - t0;
	meter_stop(&m, r);
	empty_dir(b->active_fd);
}

struct unlinker {
	struct sb *b;
	pthread_barrier_t *go;
	int dfd;
	long from, to, step;
	double cpu_s;
	long errors;
};

static void *unlinker_run(void *arg)
{
	struct unlinker *u = arg;
	pthread_barrier_wait(u->go);
	double t0 = thread_cpu_s();
	for (long i = u->from; i < u->to; i += u->step)
		if (unlinkat(u->dfd, u->b->names[i], 0) != 0)
			u->errors++;
	u->cpu_s = thread_cpu_s() - t0;
	return NULL;
}

/* T threads unlink all N files: interleaved in new/ (own == false), or
 * each the files of its own directory. */
static void phase_unlink(struct sb *b, struct sb_result *r, long threads, bool own)
{
	fresh_set(b, own);
	struct unlinker u[SB_MAX_THREADS];
	pthread_t th[SB_MAX_THREADS];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
	long n = b->o.count;
	for (long k = 0; k < threads; k++) {
		u[k] = (struct unlinker){ .b = b, .go = &go, .dfd = b->new_fd, .from = k, .to = n, .step = threads };
		if (own)
			u[k] = (struct unlinker){ .b = b, .go = &go, .dfd = b->own_fd[k], .from = n * k / threads,
			                          .to = n * (k + 1) / threads, .step = 1 };
		if (pthread_create(&th[k], NULL, unlinker_run, &u[k]) != 0)
			fatal("spoolbench: pthread_create");
	}
	struct meter m;
	meter_start(&m);
	pthread_barrier_wait(&go);
	for (long k = 0; k < threads; k++) {
		pthread_join(th[k], NULL);
		r->thread_cpu_s += u[k].cpu_s;
		r->errors += u[k].errors;
	}
	meter_stop(&m, r);
	pthread_barrier_destroy(&go);
}

/* IORING_OP_UNLINKAT for all N files of new/, B queued then submitted at
 * once and all B awaited before the next B. max_workers: the io-wq cap
 * (0: the kernel's default). */
static void phase_uring(struct sb *b, struct sb_result *r, unsigned max_workers)
{
	fresh_set(b, false);
	unsigned batch = (unsigned)b->o.batch;
	struct ring_cqe *cq = xcalloc(batch, sizeof(*cq));
	struct meter m;
	meter_start(&m);
	double t0 = thread_cpu_s();
	struct ring *ring = ring_new(batch);
	if (max_workers && ring_iowq_max_workers(ring, max_workers, max_workers) != 0)
		warnx_("spoolbench: cannot cap io-wq workers");
	for (long i = 0; i < b->o.count;) {
		unsigned k = 0;
		for (; k < batch && i < b->o.count; k++, i++)
			ring_unlinkat(ring, b->new_fd, b->names[i], 0, (uint64_t)i);
		for (unsigned done = 0; done < k;) {
			ring_submit_wait(ring, 1000);
			unsigned got = ring_reap(ring, cq, batch);
			for (unsigned j = 0; j < got; j++)
				r->errors += cq[j].res < 0;
			done += got;
		}
	}
	ring_free(ring);
	r->thread_cpu_s = thread_cpu_s() - t0;
	meter_stop(&m, r);
	free(cq);
}

/* fdatasync of new/ right after one rename into it, K times: what a
 * durable spool move costs (a journal commit on ext4). */
static void phase_dirsync(struct sb *b, struct sb_result *r)
{
	long k = b->o.count < SB_DIRSYNC_MAX ? b->o.count : SB_DIRSYNC_MAX;
	r->files = k;
	struct meter m = { 0 };
	for (long i = 0; i < k; i++) {
		write_tmp(b, i);
		if (renameat(b->tmp_fd, b->names[i], b->new_fd, b->names[i]) != 0)
			fatal("spoolbench: rename: %s", strerror(errno));
		struct meter one;
		struct sb_result x = { 0 };
		meter_start(&one);
		double t0 = thread_cpu_s();
		if (fdatasync(b->new_fd) != 0)
			r->errors++;
		r->thread_cpu_s += thread_cpu_s() - t0;
		meter_stop(&one, &x);
		m.wall += x.wall_s;
		m.user += x.user_s;
		m.sys += x.sys_s;
	}
	r->wall_s = m.wall;
	r->user_s = m.user;
	r->sys_s = m.sys;
	empty_dir(b->new_fd);
}

static const char *fs_name(int fd)
{
	struct statfs f;
	if (fstatfs(fd, &f) != 0)
		return "?";
	switch ((unsigned long)f.f_type) {
	case EXT4_SUPER_MAGIC: return "ext4";
	case TMPFS_MAGIC: return "tmpfs";
	case XFS_SUPER_MAGIC: return "xfs";
	case BTRFS_SUPER_MAGIC: return "btrfs";
	case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
	default: return "other";
	}
}

static void sb_setup(struct sb *b)
{
	snprintf(b->root, sizeof(b->root), "%s/sluice-spoolbench.XXXXXX", b->o.dir);
	if (!mkdtemp(b->root))
		fatal("spoolbench: cannot make a directory under %s: %s", b->o.dir, strerror(errno));
	b->root_fd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->root_fd < 0)
		fatal("spoolbench: open %s: %s", b->root, strerror(errno));
	b->tmp_fd = subdir(b, "tmp");
	b->new_fd = subdir(b, "new");
	b->active_fd = subdir(b, "active");
	for (long k = 0; k < b->o.threads; k++) {
		char n[32];
		snprintf(n, sizeof(n), "new%ld", k);
		b->own_fd[k] = subdir(b, n);
	}
	/* Names as producers make them: time.pid.host.sequence. */
	b->names = xcalloc((size_t)b->o.count, sizeof(*b->names));
	long t = (long)time(NULL);
	for (long i = 0; i < b->o.count; i++) {
		char n[96];
		snprintf(n, sizeof(n), "%ld.%d.producer.%08ld", t, (int)getpid(), i);
		b->names[i] = xstrdup(n);
	}
	b->content = xmalloc((size_t)b->o.size);
	for (long i = 0; i < b->o.size; i++)
		b->content[i] = (i % 72 == 71) ? '\n' : (char)('a' + i % 26);
	b->rdbuf = xmalloc((size_t)b->o.size + 1);
}

static void sb_teardown(struct sb *b)
{
	static const char *const subs[] = { "tmp", "new", "active" };
	empty_dir(b->tmp_fd);
	empty_dir(b->new_fd);
	empty_dir(b->active_fd);
	close(b->tmp_fd);
	close(b->new_fd);
	close(b->active_fd);
	for (long k = 0; k < b->o.threads; k++) {
		char n[32];
		snprintf(n, sizeof(n), "new%ld", k);
		empty_dir(b->own_fd[k]);
		close(b->own_fd[k]);
		unlinkat(b->root_fd, n, AT_REMOVEDIR);
	}
	for (size_t i = 0; i < ARRAY_LEN(subs); i++)
		unlinkat(b->root_fd, subs[i], AT_REMOVEDIR);
	close(b->root_fd);
	if (rmdir(b->root) != 0)
		warnx_("spoolbench: cannot remove %s: %s", b->root, strerror(errno));
	for (long i = 0; i < b->o.count; i++)
		free(b->names[i]);
	free(b->names);
	free(b->content);
	free(b->rdbuf);
}

static double per(double s, long n)
{
	return n > 0 ? s * 1e6 / (double)n : 0;
}

static void print_text(const struct sb *b, const struct sb_result *r, size_t nr)
{
	printf("spoolbench: %ld files of %ld B in %s (%s), %ld removal threads, io_uring batch %ld, %s\n",
	       b->o.count, b->o.size, b->root, fs_name(b->root_fd), b->o.threads, b->o.batch,
	       b->o.nosync ? "not synced" : "synced before each phase");
	printf("%-14s %8s %10s %10s %10s %10s %10s %7s  %s\n", "phase", "files", "wall µs", "cpu µs",
	       "user µs", "sys µs", "thread µs", "errors", "(per file)");
	for (size_t i = 0; i < nr; i++)
		printf("%-14s %8ld %10.2f %10.2f %10.2f %10.2f %10.2f %7ld  %s\n", r[i].name, r[i].files,
		       per(r[i].wall_s, r[i].files), per(r[i].user_s + r[i].sys_s, r[i].files),
		       per(r[i].user_s, r[i].files), per(r[i].sys_s, r[i].files),
		       per(r[i].thread_cpu_s, r[i].files), r[i].errors, r[i].what);
}

static void print_json(const struct sb *b, const struct sb_result *r, size_t nr)
{
	printf("{\"dir\":\"%s\",\"fs\":\"%s\",\"count\":%ld,\"size\":%ld,\"threads\":%ld,\"batch\":%ld,"
	       "\"synced\":%s,\"phases\":[", b->o.dir, fs_name(b->root_fd), b->o.count, b->o.size, b->o.threads,
	       b->o.batch, b->o.nosync ? "false" : "true");
	for (size_t i = 0; i < nr; i++)
		printf("%s{\"name\":\"%s\",\"what\":\"%s\",\"files\":%ld,\"wall_s\":%.6f,\"user_s\":%.6f,"
		       "\"sys_s\":%.6f,\"thread_cpu_s\":%.6f,\"wall_us_per_file\":%.3f,\"cpu_us_per_file\":%.3f,"
		       "\"user_us_per_file\":%.3f,\"sys_us_per_file\":%.3f,\"thread_cpu_us_per_file\":%.3f,"
		       "\"errors\":%ld}", i ? "," : "", r[i].name, r[i].what, r[i].files, r[i].wall_s,
		       r[i].user_s, r[i].sys_s, r[i].thread_cpu_s, per(r[i].wall_s, r[i].files),
		       per(r[i].user_s + r[i].sys_s, r[i].files), per(r[i].user_s, r[i].files),
		       per(r[i].sys_s, r[i].files), per(r[i].thread_cpu_s, r[i].files), r[i].errors);
	printf("]}\n");
}

static void spoolbench_usage(FILE *f)
{
	fputs("usage: sluice spoolbench [--dir D] [--count N] [--size BYTES] [--threads T]\n"
	      "                         [--batch B] [--no-sync] [--json]\n"
	      "Times the spool's file operations per file (CPU user+sys of the process, and\n"
	      "wall): readdir, open+read+close, rename new/->active/, unlink with 1 thread,\n"
	      "with T threads in one directory and in one directory each, through io_uring\n"
	      "(B at a time), and fdatasync of the directory after a rename. Works in a\n"
	      "scratch spool made under D (default /var/tmp) and removed at the end.\n"
	      "Each phase gets fresh files, synced to the disk first unless --no-sync.\n"
	      "Defaults: N 20000, BYTES 3000, T 2, B 64.\n", f);
}

static void parse_opts(int argc, char **argv, struct sb_opts *o)
{
	static const struct option opts[] = {
		{ "dir", required_argument, 0, 'd' }, { "count", required_argument, 0, 'n' },
		{ "size", required_argument, 0, 'z' }, { "threads", required_argument, 0, 't' },
		{ "batch", required_argument, 0, 'b' }, { "json", no_argument, 0, 'j' },
		{ "no-sync", no_argument, 0, 'S' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	*o = (struct sb_opts){ .dir = "/var/tmp", .count = 20000, .size = 3000, .threads = 2, .batch = 64 };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 'n': if (!parse_uint(optarg, 1, 5000000, &o->count)) fatal("spoolbench: --count 1..5e6"); break;
		case 'z': if (!parse_uint(optarg, 1, 10000000, &o->size)) fatal("spoolbench: --size 1..1e7"); break;
		case 't': if (!parse_uint(optarg, 1, SB_MAX_THREADS, &o->threads)) fatal("spoolbench: --threads 1..64"); break;
		case 'b': if (!parse_uint(optarg, 1, 4096, &o->batch)) fatal("spoolbench: --batch 1..4096"); break;
		case 'j': o->json = true; break;
		case 'S': o->nosync = true; break;
		case 'h': spoolbench_usage(stdout); exit(0);
		default: spoolbench_usage(stderr); exit(2);
		}
	}
	if (optind < argc) {
		spoolbench_usage(stderr);
		exit(2);
	}
}

int spoolbench_main(int argc, char **argv)
{
	struct sb b = { 0 };
	parse_opts(argc, argv, &b.o);
	sb_setup(&b);
	long n = b.o.count, t = b.o.threads;
	static char same[64], own[64];
	snprintf(same, sizeof(same), "unlinkat, %ld threads, one directory", t);
	snprintf(own, sizeof(own), "unlinkat, %ld threads, a directory each", t);
	struct sb_result r[] = {
		{ .name = "scan", .what = "readdir of new/", .files = n },
		{ .name = "read", .what = "fstatat+openat+fstat+read+close", .files = n },
		{ .name = "rename", .what = "renameat2 new/ -> active/ (the old claim)", .files = n },
		{ .name = "unlink-1", .what = "unlinkat, 1 thread", .files = n },
		{ .name = "unlink-same", .what = same, .files = n },
		{ .name = "unlink-own", .what = own, .files = n },
		{ .name = "uring", .what = "io_uring UNLINKAT in batches, io-wq default", .files = n },
		{ .name = "uring-1worker", .what = "io_uring UNLINKAT in batches, 1 io-wq worker", .files = n },
		{ .name = "dirsync", .what = "fdatasync(new/) after one rename into it", .files = 0 },
	};
	phase_scan(&b, &r[0]);
	phase_read(&b, &r[1]);
	phase_rename(&b, &r[2]);
	phase_unlink(&b, &r[3], 1, false);
	phase_unlink(&b, &r[4], t, false);
	phase_unlink(&b, &r[5], t, true);
	phase_uring(&b, &r[6], 0);
	phase_uring(&b, &r[7], 1);
	phase_dirsync(&b, &r[8]);
	if (b.o.json)
		print_json(&b, r, ARRAY_LEN(r));
	else
		print_text(&b, r, ARRAY_LEN(r));
	sb_teardown(&b);
	long errors = 0;
	for (size_t i = 0; i < ARRAY_LEN(r); i++)
		errors += r[i].errors;
	return errors ? 1 : 0;
}
