/* dkim/dkim_cmd.h - the `sluice dkim` subcommands. */
#ifndef SLUICE_DKIM_CMD_H
#define SLUICE_DKIM_CMD_H
int dkim_main(int argc, char **argv);
#endif
