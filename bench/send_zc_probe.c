/* bench/send_zc_probe.c - does zero-copy send (IORING_OP_SENDMSG_ZC) make
 * sending 100 KB messages over loopback TCP cheaper or faster than the
 * plain IORING_OP_SENDMSG sluice uses? A separate program, not part of
 * ./sluice:
 *
 *     make send-zc-probe && build/send-zc-probe
 *     build/send-zc-probe --runs 3 --conns 4 --mb 4096 --secs 20 --iovs 3 --depth 1
 *
 * One sender thread with its own ring (engine/lib/ring.c, as in sluice)
 * sends a 100 KB message, as --iovs iovecs (3: a 512-byte DKIM-Signature
 * header, the message, the 5-byte "\r\n.\r\n"), again and again over
 * --conns TCP connections to 127.0.0.1; a receiver thread (poll + recv into
 * one 256 KB buffer) discards the bytes. Each connection has --depth
 * message buffers; a message goes out as one sendmsg (resumed after a short
 * send), one message at a time per connection. Modes:
 *   copy  ring_sendmsg: a buffer is free again when its bytes were sent.
 *   zc    ring_sendmsg_zc: a buffer is free again only after the
 *         notification CQE of every request that sent from it.
 * A run ends after --mb megabytes (MB = 10^6 bytes) or --secs seconds,
 * whichever comes first; the modes alternate run by run (copy, zc, copy,
 * ...) so that the noise of a shared machine hits both alike.
 *
 * Reported per run: MB/s (bytes received / time from start until the
 * receiver saw every connection's EOF); CPU time (user+sys, getrusage
 * RUSAGE_THREAD) of the sender and the receiver threads, of the whole
 * process (RUSAGE_SELF: includes io_uring's iou-wrk workers, if any), and
 * of the ksoftirqd threads (the loopback "wire" is a softirq, charged to
 * whichever thread runs it: mostly the sender, under load ksoftirqd), each
 * in microseconds per MB; for zc the notifications and how many said the
 * kernel copied after all. Then the median and min-max of each mode.
 * Everything is bounded by alarm(). */
#define _GNU_SOURCE
#include "../engine/lib/ring.h"
#include "../engine/lib/util.h"
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MSG_BYTES (100 * 1024)
#define HDR_BYTES 512
#define END_BYTES 5
#define MAX_CONNS 64
#define MAX_DEPTH 8
#define MAX_RUNS 32
#define OP_SEND 1

enum mode { MODE_COPY, MODE_ZC };
static const char *mode_name[] = { "copy", "zc" };

struct opts {
	int runs, conns, iovs, depth, secs;
	uint64_t bytes;
	int modes;  /* bit 0: copy, bit 1: zc */
};

struct msgbuf {
	struct iovec iov[3];  /* the message, whole */
	int niov;
	int notifs;           /* zc notifications still to come */
	int sending;          /* the message in flight is this one */
};

struct conn {
	int fd;
	struct msgbuf buf[MAX_DEPTH];
	int cur;              /* buffer being sent, -1: none */
	struct iovec iov[3];  /* what is left of it */
	struct msghdr msg;
	size_t left;
	bool in_flight;
};

struct run_result {
	enum mode mode;
	double secs, mbytes;
	double snd_cpu, rcv_cpu, proc_cpu, softirq_cpu;  /* seconds */
	uint64_t notifs, copied, sends;
};

struct run {
	const struct opts *o;
	enum mode mode;
	struct conn conns[MAX_CONNS];
	int rfd[MAX_CONNS];
	pthread_barrier_t start;
	double t0, t_end;
	uint64_t received, queued;
	double snd_cpu, rcv_cpu;
	uint64_t notifs, copied, sends;
};

static void on_alarm(int sig)
{
	static const char m[] = "send-zc-probe: time limit reached\n";
	(void)sig;
	ssize_t w = write(2, m, sizeof(m) - 1);
	(void)w;
	_exit(2);
}

static double thread_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double proc_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of every ksoftirqd/N, in seconds. */
static double softirq_cpu(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	double total = 0;
	long tck = sysconf(_SC_CLK_TCK);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300], line[1024];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(line, 1, sizeof(line) - 1, f);
		fclose(f);
		line[n] = 0;
		if (!strstr(line, "(ksoftirqd/"))
			continue;
		char *p = strrchr(line, ')');
		unsigned long ut = 0, st = 0;
		/* after ") ": state(3) ... utime is field 14, stime 15 */
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			total += (double)(ut + st) / (double)tck;
	}
	closedir(d);
	return total;
}

static void *xpage_alloc(size_t n)
{
	size_t rounded = (n + 4095) & ~(size_t)4095;
	void *p = aligned_alloc(4096, rounded);
	if (!p)
		fatal("out of memory");
	return p;
}

static void fill_text(char *p, size_t n, const char *what)
{
	static const char line[] = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
	size_t w = strlen(what);
	memcpy(p, what, w < n ? w : n);
	for (size_t i = w; i < n; i++)
		p[i] = line[(i - w) % (sizeof(line) - 1)];
}

static void msgbuf_init(struct msgbuf *b, int iovs)
{
	memset(b, 0, sizeof(*b));
	if (iovs == 1) {
		b->iov[0].iov_base = xpage_alloc(MSG_BYTES);
		b->iov[0].iov_len = MSG_BYTES;
		fill_text(b->iov[0].iov_base, MSG_BYTES, "DKIM-Signature: v=1;\r\n");
		b->niov = 1;
		return;
	}
	size_t sizes[3] = { HDR_BYTES, MSG_BYTES - HDR_BYTES, 0 };
	if (iovs == 3) {
		sizes[1] -= END_BYTES;
		sizes[2] = END_BYTES;
	}
	b->niov = iovs;
	for (int i = 0; i < iovs; i++) {
		b->iov[i].iov_base = xpage_alloc(sizes[i]);
		b->iov[i].iov_len = sizes[i];
		fill_text(b->iov[i].iov_base, sizes[i], i == 0 ? "DKIM-Signature: v=1;\r\n" : "Subject: x\r\n");
	}
	if (iovs == 3)
		memcpy(b->iov[2].iov_base, "\r\n.\r\n", END_BYTES);
}

static void msgbuf_free(struct msgbuf *b)
{
	for (int i = 0; i < b->niov; i++)
		free(b->iov[i].iov_base);
}

/* Drops n sent bytes from the front of c's iovecs. */
static void conn_advance(struct conn *c, size_t n)
{
	ASSERT(n <= c->left);
	c->left -= n;
	struct iovec *v = c->msg.msg_iov;
	size_t cnt = c->msg.msg_iovlen;
	while (n && cnt) {
		if (n >= v->iov_len) {
			n -= v->iov_len;
			v++;
			cnt--;
		} else {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
	c->msg.msg_iov = v;
	c->msg.msg_iovlen = cnt;
}

static void submit_send(struct run *R, struct ring *ring, int ci)
{
	struct conn *c = &R->conns[ci];
	uint64_t ud = ring_ud(OP_SEND, (uint32_t)(ci * MAX_DEPTH + c->cur), 0);
	if (R->mode == MODE_ZC)
		ring_sendmsg_zc(ring, c->fd, &c->msg, ud);
	else
		ring_sendmsg(ring, c->fd, &c->msg, ud);
	c->in_flight = true;
	R->sends++;
}

/* Starts the next message on c if a buffer is free and bytes remain. */
static void conn_next(struct run *R, struct ring *ring, int ci, bool stop)
{
	struct conn *c = &R->conns[ci];
	if (c->cur >= 0 || stop)
		return;
	for (int b = 0; b < R->o->depth; b++) {
		struct msgbuf *m = &c->buf[b];
		if (m->notifs || m->sending)
			continue;
		c->cur = b;
		m->sending = 1;
		memcpy(c->iov, m->iov, sizeof(c->iov));
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = c->iov;
		c->msg.msg_iovlen = (size_t)m->niov;
		c->left = MSG_BYTES;
		R->queued += MSG_BYTES;
		submit_send(R, ring, ci);
		return;
	}
}

static void *sender_main(void *arg)
{
	struct run *R = arg;
	const struct opts *o = R->o;
	struct ring *ring = ring_new(64);  /* SINGLE_ISSUER: made by its user */
	pthread_barrier_wait(&R->start);
	double c0 = thread_cpu();
	double deadline = R->t0 + o->secs;
	bool stop = false;
	for (int i = 0; i < o->conns; i++)
		conn_next(R, ring, i, false);
	for (;;) {
		if (!stop && (R->queued >= o->bytes || now_mono_s() >= deadline))
			stop = true;
		bool busy = false;
		for (int i = 0; i < o->conns && !busy; i++) {
			struct conn *c = &R->conns[i];
			if (c->in_flight)
				busy = true;
			for (int b = 0; b < o->depth && !busy; b++)
				if (c->buf[b].notifs)
					busy = true;
		}
		if (stop && !busy)
			break;
		ring_submit_wait(ring, 1000);
		struct ring_cqe cq[64];
		unsigned n;
		while ((n = ring_reap(ring, cq, ARRAY_LEN(cq))) > 0) {
			for (unsigned k = 0; k < n; k++) {
				ASSERT(ring_ud_op(cq[k].user_data) == OP_SEND);
				uint32_t slot = ring_ud_slot(cq[k].user_data);
				int ci = (int)(slot / MAX_DEPTH), b = (int)(slot % MAX_DEPTH);
				struct conn *c = &R->conns[ci];
				if (ring_notif(&cq[k])) {
					ASSERT(c->buf[b].notifs > 0);
					c->buf[b].notifs--;
					R->notifs++;
					if ((uint32_t)cq[k].res & RING_NOTIF_COPIED)
						R->copied++;
					conn_next(R, ring, ci, stop);
					continue;
				}
				ASSERT(c->in_flight && c->cur == b);
				c->in_flight = false;
				if (ring_more(&cq[k]))
					c->buf[b].notifs++;
				if (cq[k].res < 0)
					fatal("%s send: %s", mode_name[R->mode], strerror(-cq[k].res));
				conn_advance(c, (size_t)cq[k].res);
				if (c->left) {
					submit_send(R, ring, ci);
					continue;
				}
				c->buf[b].sending = 0;
				c->cur = -1;
				conn_next(R, ring, ci, stop);
			}
		}
	}
	for (int i = 0; i < o->conns; i++)
		shutdown(R->conns[i].fd, SHUT_WR);
	R->snd_cpu = thread_cpu() - c0;
	ring_free(ring);
	return NULL;
}

static void *receiver_main(void *arg)
{
	struct run *R = arg;
	int n = R->o->conns;
	size_t cap = 256 * 1024;
	char *buf = xmalloc(cap);
	struct pollfd pf[MAX_CONNS];
	for (int i = 0; i < n; i++)
		pf[i] = (struct pollfd){ .fd = R->rfd[i], .events = POLLIN };
	pthread_barrier_wait(&R->start);
	double c0 = thread_cpu();
	int open = n;
	while (open) {
		if (poll(pf, (nfds_t)n, 1000) < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			for (;;) {
				ssize_t r = recv(pf[i].fd, buf, cap, MSG_DONTWAIT);
				if (r > 0) {
					R->received += (uint64_t)r;
					continue;
				}
				if (r == 0) {
					pf[i].fd = -1;
					open--;
				} else if (errno != EAGAIN && errno != EINTR) {
					fatal("recv: %s", strerror(errno));
				}
				break;
			}
		}
	}
	R->t_end = now_mono_s();
	R->rcv_cpu = thread_cpu() - c0;
	free(buf);
	return NULL;
}

static int listener(struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fatal("socket: %s", strerror(errno));
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(*sa);
	if (bind(fd, (struct sockaddr *)sa, len) < 0 || listen(fd, MAX_CONNS) < 0 ||
	    getsockname(fd, (struct sockaddr *)sa, &len) < 0)
		fatal("listen on 127.0.0.1: %s", strerror(errno));
	return fd;
}

static void run_once(const struct opts *o, enum mode mode, struct run_result *out)
{
	struct run *R = xcalloc(1, sizeof(*R));
	R->o = o;
	R->mode = mode;
	struct sockaddr_in sa;
	int lfd = listener(&sa);
	for (int i = 0; i < o->conns; i++) {
		struct conn *c = &R->conns[i];
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			fatal("connect 127.0.0.1: %s", strerror(errno));
		R->rfd[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (R->rfd[i] < 0)
			fatal("accept: %s", strerror(errno));
		c->cur = -1;
		for (int b = 0; b < o->depth; b++)
			msgbuf_init(&c->buf[b], o->iovs);
	}
	close(lfd);
	pthread_barrier_init(&R->start, NULL, 3);
	pthread_t st, rt;
	if (pthread_create(&rt, NULL, receiver_main, R) || pthread_create(&st, NULL, sender_main, R))
		fatal("pthread_create");
	double p0 = proc_cpu(), s0 = softirq_cpu();
	R->t0 = now_mono_s();
	pthread_barrier_wait(&R->start);
	pthread_join(st, NULL);
	pthread_join(rt, NULL);
	double p1 = proc_cpu(), s1 = softirq_cpu();
	if (R->received != R->queued)
		fatal("received %llu bytes, sent %llu", (unsigned long long)R->received,
		      (unsigned long long)R->queued);
	*out = (struct run_result){
		.mode = mode, .secs = R->t_end - R->t0, .mbytes = (double)R->received / 1e6,
		.snd_cpu = R->snd_cpu, .rcv_cpu = R->rcv_cpu, .proc_cpu = p1 - p0,
		.softirq_cpu = s1 - s0, .notifs = R->notifs, .copied = R->copied, .sends = R->sends,
	};
	for (int i = 0; i < o->conns; i++) {
		close(R->conns[i].fd);
		close(R->rfd[i]);
		for (int b = 0; b < o->depth; b++)
			msgbuf_free(&R->conns[i].buf[b]);
	}
	pthread_barrier_destroy(&R->start);
	free(R);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median, min and max of v[0..n). */
static void stats(double *v, int n, double *med, double *lo, double *hi)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	*lo = v[0];
	*hi = v[n - 1];
	*med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
	fprintf(stderr, "usage: send-zc-probe [--mode copy|zc|both] [--runs N] [--conns N] [--mb MB]\n"
	                "                     [--secs S] [--iovs 1|2|3] [--depth N]\n");
	exit(2);
}

/* Command-line options into o (usage() and exit on anything wrong). */
static void parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mode", 1, 0, 'm' }, { "runs", 1, 0, 'r' }, { "conns", 1, 0, 'c' },
		{ "mb", 1, 0, 'b' }, { "secs", 1, 0, 's' }, { "iovs", 1, 0, 'i' },
		{ "depth", 1, 0, 'd' }, { 0, 0, 0, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'm':
			o->modes = !strcmp(optarg, "copy") ? 1 : !strcmp(optarg, "zc") ? 2 :
			          !strcmp(optarg, "both") ? 3 : 0;
			break;
		case 'r': o->runs = atoi(optarg); break;
		case 'c': o->conns = atoi(optarg); break;
		case 'b': o->bytes = strtoull(optarg, NULL, 10) * 1000 * 1000; break;
		case 's': o->secs = atoi(optarg); break;
		case 'i': o->iovs = atoi(optarg); break;
		case 'd': o->depth = atoi(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || !o->modes || o->runs < 1 || o->runs > MAX_RUNS || o->conns < 1 ||
	    o->conns > MAX_CONNS || o->iovs < 1 || o->iovs > 3 || o->depth < 1 || o->depth > MAX_DEPTH ||
	    o->secs < 1 || o->bytes < MSG_BYTES)
		usage();
}

/* Median [min-max] of each figure over the runs, per mode. */
static void print_summary(const struct opts *o, struct run_result res[2][MAX_RUNS])
{
	printf("\nmedian [min-max] over %d run(s)\n", o->runs);
	printf("%-4s %22s %22s %22s %22s\n", "mode", "MB/s", "snd us/MB", "rcv us/MB", "process us/MB");
	for (int m = 0; m < 2; m++) {
		if (!(o->modes & (1 << m)))
			continue;
		printf("%-4s", mode_name[m]);
		for (int f = 0; f < 4; f++) {
			double v[MAX_RUNS], med, lo_, hi;
			for (int r = 0; r < o->runs; r++) {
				struct run_result *x = &res[m][r];
				double cpu = f == 1 ? x->snd_cpu : f == 2 ? x->rcv_cpu : x->proc_cpu;
				v[r] = f == 0 ? x->mbytes / x->secs : cpu / x->mbytes * 1e6;
			}
			stats(v, o->runs, &med, &lo_, &hi);
			char cell[64];
			snprintf(cell, sizeof(cell), "%.0f [%.0f-%.0f]", med, lo_, hi);
			printf(" %22s", cell);
		}
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	struct opts o = { .runs = 3, .conns = 4, .iovs = 3, .depth = 1, .secs = 20,
	                  .bytes = 4000ull * 1000 * 1000, .modes = 3 };
	parse_opts(&o, argc, argv);
	int nmodes = o.modes == 3 ? 2 : 1;
	signal(SIGALRM, on_alarm);
	alarm((unsigned)(o.runs * nmodes * (o.secs + 15) + 30));

	printf("send-zc-probe: %d B messages as %d iovec(s), %d connection(s) over 127.0.0.1, "
	       "%d buffer(s) each, up to %llu MB or %d s a run; CPU in us per MB (10^6 B)\n",
	       MSG_BYTES, o.iovs, o.conns, o.depth, (unsigned long long)(o.bytes / 1000000), o.secs);
	printf("%-4s %-4s %8s %7s %8s %8s %8s %8s %8s %9s %9s\n", "run", "mode", "MB", "s", "MB/s",
	       "snd", "rcv", "process", "softirqd", "sends", "zc-copied");
	struct run_result res[2][MAX_RUNS];
	for (int r = 0; r < o.runs; r++) {
		for (int k = 0; k < 2; k++) {
			/* alternate which mode goes first, run by run */
			enum mode m = (enum mode)((k + r) % 2);
			if (!(o.modes & (1 << m)))
				continue;
			struct run_result *x = &res[m][r];
			run_once(&o, m, x);
			char copied[32] = "-";
			if (m == MODE_ZC)
				snprintf(copied, sizeof(copied), "%llu/%llu", (unsigned long long)x->copied,
				         (unsigned long long)x->notifs);
			printf("%-4d %-4s %8.0f %7.2f %8.0f %8.0f %8.0f %8.0f %8.0f %9llu %9s\n", r + 1,
			       mode_name[m], x->mbytes, x->secs, x->mbytes / x->secs,
			       x->snd_cpu / x->mbytes * 1e6, x->rcv_cpu / x->mbytes * 1e6,
			       x->proc_cpu / x->mbytes * 1e6, x->softirq_cpu / x->mbytes * 1e6,
			       (unsigned long long)x->sends, copied);
			fflush(stdout);
		}
	}
	print_summary(&o, res);
	return 0;
}
