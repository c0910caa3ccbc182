/* engine/inject.c - `sluice inject`: one message from stdin into a spool,
 * or a job file (README "Job files") from a template and a CSV recipient
 * list, the safe way (engine/lib/spool_writer: tmp/, fsync, then new/),
 * its addresses checked as sluice checks a spool file's. */
#include "inject.h"
#include "lib/envelope.h"
#include "lib/job_file.h"
#include "lib/spool_writer.h"
#include "lib/util.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Appends the whole of fd's content to b; 0 or an errno. */
static int read_into(struct buf *b, int fd)
{
	char chunk[65536];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_add(b, chunk, (size_t)n);
	return n < 0 ? errno : 0;
}

static void read_file_into(struct buf *b, const char *path, const char *what)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = fd < 0 ? errno : read_into(b, fd);
	if (fd >= 0)
		close(fd);
	if (err)
		fatal("inject: %s %s: %s", what, path, strerror(err));
}

/* The job file's text: head, template, recipients (README "Job files"). */
static void make_job(struct buf *out, const char *from, const char *job, const char *pool,
                     const char *template_path, const char *recipients_path)
{
	struct buf tpl = { 0 };
	read_file_into(&tpl, template_path, "--template");
	if (tpl.len > JOB_TEMPLATE_MAX)
		fatal("inject: --template %s: larger than %u bytes", template_path, JOB_TEMPLATE_MAX);
	buf_printf(out, "%s\nX-Sender: <%s>\nX-Job: %s\n", JOB_MAGIC, from, job);
	if (pool)
		buf_printf(out, "X-Pool: %s\n", pool);
	buf_printf(out, "X-Template-Bytes: %zu\n", tpl.len);
	buf_add(out, tpl.p, tpl.len);
	read_file_into(out, recipients_path, "--recipients");
	buf_free(&tpl);
}

int inject_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "spool", required_argument, 0, 's' }, { "from", required_argument, 0, 'f' },
		{ "to", required_argument, 0, 't' }, { "job", required_argument, 0, 'j' },
		{ "template", required_argument, 0, 'T' }, { "recipients", required_argument, 0, 'R' },
		{ "pool", required_argument, 0, 'p' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	const char *spool = NULL, *from = NULL, *job = NULL, *pool = NULL;
	const char *template_path = NULL, *recipients_path = NULL;
	struct buf env = { 0 };
	unsigned nto = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *bad;
		switch (c) {
		case 's': spool = optarg; break;
		case 'f':
			if ((bad = address_check(optarg, strlen(optarg), true)))
				fatal("inject: --from %s: %s", optarg, bad);
			from = optarg;
			break;
		case 't':
			if ((bad = address_check(optarg, strlen(optarg), false)))
				fatal("inject: --to %s: %s", optarg, bad);
			buf_printf(&env, "X-Receiver: <%s>\n", optarg);
			nto++;
			break;
		case 'j':
		case 'p':
			for (const char *p = optarg; *p; p++)
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					fatal("inject: --%s must not contain control characters", c == 'j' ? "job" : "pool");
			*(c == 'j' ? &job : &pool) = optarg;
			break;
		case 'T': template_path = optarg; break;
		case 'R': recipients_path = optarg; break;
		case 'h':
			puts("usage: sluice inject --spool DIR --from ADDR --to ADDR [--to ...] [--job ID] [--pool P] < message\n"
			     "       sluice inject --spool DIR --from ADDR --job ID [--pool P] --template FILE\n"
			     "                     --recipients FILE.csv    (a job file: one message per CSV row)");
			return 0;
		default: return 2;
		}
	}
	bool is_job = template_path || recipients_path;
	if (is_job && (!template_path || !recipients_path || !job || !spool || !from || nto))
		fatal("inject: a job file takes --spool, --from, --job, --template and --recipients (no --to)");
	if (!spool || !from || (!nto && !is_job))
		fatal("inject: --spool, --from and at least one --to are required");
	struct buf msg = { 0 };
	if (is_job) {
		make_job(&msg, from, job, pool, template_path, recipients_path);
	} else {
		buf_printf(&msg, "X-Sender: <%s>\n", from);
		buf_add(&msg, env.p, env.len);
		if (job)
			buf_printf(&msg, "X-Job: %s\n", job);
		if (pool)
			buf_printf(&msg, "X-Pool: %s\n", pool);
		int err = read_into(&msg, 0);
		if (err)
			fatal("inject: reading the message: %s", strerror(err));
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char name[96];
	snprintf(name, sizeof(name), "i%lld.%09ld.%d%s", (long long)ts.tv_sec, ts.tv_nsec, (int)getpid(),
	         is_job ? JOB_SUFFIX : "");
	char err[4200];
	if (!spool_writer_prepare(spool, err, sizeof(err)) ||
	    !spool_writer_put(spool, name, msg.p, msg.len, true, err, sizeof(err)))
		fatal("inject: %s", err);
	printf("%s\n", name);
	buf_free(&msg);
	buf_free(&env);
	return 0;
}
