/* engine/main.c - the `sluice` binary: dispatches to subcommands. */
#include "control_cmd.h"
#include "doctor.h"
#include "inject.h"
#include "run.h"
#include "suppress.h"
#include "../bench/bench.h"
#include "../dkim/dkim_cmd.h"

int resolve_main(int argc, char **argv); /* dns/resolve_cmd.c */
int feedback_main(int argc, char **argv); /* engine/feedback_cmd.c */
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: sluice COMMAND [options]   (sluice COMMAND --help for each)\n\n"
	      "  run        deliver the spool (daemon, or --drain for batch mode)\n"
	      "  mockmx     fake MX server(s) on loopback for tests and benchmarks\n"
	      "  spoolgen   write a realistic test spool\n"
	      "  spoolbench time the spool's file operations (read, rename, unlink)\n"
	      "  inject     write one message into the spool safely\n"
	      "  bench      benchmark against mock MXes and real peers (bench.py)\n"
	      "  dkim       dkim keygen: make a signing key and its DNS record\n"
	      "  resolve    ask sluice's DNS resolver (MX plans, A/AAAA/MX/TXT/PTR)\n"
	      "  doctor     check a sending domain's DNS, keys and IPs (SPF, DKIM, DMARC, PTR)\n"
	      "  status     what a running sluice is doing (its control socket; --json)\n"
	      "  top        the same, live: rates, the busiest (group, source) pairs\n"
	      "  ctl        suspend, resume, pause, bounce, reload, why (a running sluice)\n"
	      "  suppress   the suppression list: add, remove, check, import, export, count\n"
	      "  feedback   parse (bounces, complaints, auto-replies: what they say), ingest (act on them)\n", f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "run"))
		return run_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "mockmx"))
		return mockmx_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "spoolgen"))
		return spoolgen_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "spoolbench"))
		return spoolbench_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "inject"))
		return inject_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "bench"))
		return bench_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "resolve"))
		return resolve_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "dkim"))
		return dkim_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "doctor"))
		return doctor_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "suppress"))
		return suppress_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return status_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "top"))
		return top_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "ctl"))
		return ctl_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "feedback"))
		return feedback_main(argc - 1, argv + 1);
	fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
