/* engine/inject.h - `sluice inject` (see inject.c). */
#ifndef SLUICE_INJECT_H
#define SLUICE_INJECT_H
int inject_main(int argc, char **argv);
#endif
