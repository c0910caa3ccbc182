/* engine/control_cmd.h - the commands that talk to a running sluice over
 * its control socket (engine/control_cmd.c): status, top and ctl. Each
 * returns the exit status: 0 done, 1 the daemon said no or could not be
 * reached, 2 a usage error. */
#ifndef SLUICE_CONTROL_CMD_H
#define SLUICE_CONTROL_CMD_H

int status_main(int argc, char **argv);
int top_main(int argc, char **argv);
int ctl_main(int argc, char **argv);
#endif
