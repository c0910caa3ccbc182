/* bench/bench.h - test and benchmark tools built into the sluice binary. */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H
int mockmx_main(int argc, char **argv);
int spoolgen_main(int argc, char **argv);
int bench_main(int argc, char **argv);
int spoolbench_main(int argc, char **argv);
#endif
