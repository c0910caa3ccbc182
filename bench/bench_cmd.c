/* bench/bench_cmd.c - `sluice bench`: runs the benchmark driver, a Python
 * script (bench.py) that starts mock MXes and the peers, generates spools
 * and runs this binary's `run --drain` per scenario. Found beside the
 * binary in a checkout (bench/bench.py) or under the install prefix. */
#define _GNU_SOURCE
#include "bench.h"
#include "../engine/lib/util.h"
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SLUICE_DATADIR
#define SLUICE_DATADIR "/usr/local/share/sluice"
#endif

int bench_main(int argc, char **argv)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		fatal("bench: cannot find my own binary: %s", strerror(errno));
	self[n] = 0;
	char dir[PATH_MAX], script[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s", self);
	const char *bindir = dirname(dir);
	const char *env = getenv("SLUICE_BENCH_SCRIPT");
	/* The checkout (./sluice, or build/sluice-asan one level down), then
	 * the install prefix. */
	const char *const where[] = { "%s/bench/bench.py", "%s/../bench/bench.py", NULL };
	script[0] = 0;
	if (env)
		snprintf(script, sizeof(script), "%s", env);
	for (int i = 0; !env && where[i] && (!script[0] || access(script, R_OK) != 0); i++)
		snprintf(script, sizeof(script), where[i], bindir);
	if (access(script, R_OK) != 0)
		snprintf(script, sizeof(script), "%s/bench.py", SLUICE_DATADIR);
	if (access(script, R_OK) != 0)
		fatal("bench: bench.py not found beside %s nor in %s", self, SLUICE_DATADIR);
	char **args = xcalloc((size_t)argc + 5, sizeof(*args));
	int k = 0;
	args[k++] = "python3";
	args[k++] = script;
	args[k++] = "--sluice";
	args[k++] = self;
	for (int i = 1; i < argc; i++)
		args[k++] = argv[i];
	args[k] = NULL;
	execvp("python3", args);
	fatal("bench: cannot run python3: %s", strerror(errno));
}
