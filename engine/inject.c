/* engine/inject.c - `sluice inject`: one message from stdin into a spool,
 * the safe way (engine/lib/spool_writer: tmp/, fsync, then new/), its
 * addresses checked as sluice checks a spool file's. */
#include "inject.h"
#include "lib/envelope.h"
#include "lib/spool_writer.h"
#include "lib/util.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int inject_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "spool", required_argument, 0, 's' }, { "from", required_argument, 0, 'f' },
		{ "to", required_argument, 0, 't' }, { "job", required_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	const char *spool = NULL, *from = NULL, *job = NULL;
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
			if (strpbrk(optarg, "\r\n"))
				fatal("inject: --job must not contain CR or LF");
			job = optarg;
			break;
		case 'h':
			puts("usage: sluice inject --spool DIR --from ADDR --to ADDR [--to ...] [--job ID] < message");
			return 0;
		default: return 2;
		}
	}
	if (!spool || !from || !nto)
		fatal("inject: --spool, --from and at least one --to are required");
	struct buf msg = { 0 };
	buf_printf(&msg, "X-Sender: <%s>\n", from);
	buf_add(&msg, env.p, env.len);
	if (job)
		buf_printf(&msg, "X-Job: %s\n", job);
	char chunk[65536];
	ssize_t n;
	while ((n = read(0, chunk, sizeof(chunk))) > 0)
		buf_add(&msg, chunk, (size_t)n);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char name[96];
	snprintf(name, sizeof(name), "i%lld.%09ld.%d", (long long)ts.tv_sec, ts.tv_nsec, (int)getpid());
	char err[4200];
	if (!spool_writer_prepare(spool, err, sizeof(err)) ||
	    !spool_writer_put(spool, name, msg.p, msg.len, true, err, sizeof(err)))
		fatal("inject: %s", err);
	printf("%s\n", name);
	buf_free(&msg);
	buf_free(&env);
	return 0;
}
