/* engine/run.h - `sluice run` (see run.c). */
#ifndef SLUICE_RUN_H
#define SLUICE_RUN_H
int run_main(int argc, char **argv);
#endif
