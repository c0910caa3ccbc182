/* engine/config.h - builds the run configuration (shards/config_types.h):
 * built-in defaults, then the config file (libconfig), then command-line
 * flags; again on SIGHUP. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H
#include "../shards/config_types.h"

/* Parses `sluice run` arguments (and the -c file they name) into cfg.
 * Exits with a clear message on any error; flags of capabilities that do
 * not exist yet are refused, never ignored. */
void config_from_run_args(struct config *cfg, int argc, char **argv);
void config_defaults(struct config *cfg);
/* The same, again (SIGHUP): false with err set instead of exiting. */
bool config_reload(struct config *cfg, int argc, char **argv, char *err, size_t err_len);
/* Adds a route from "DOMAIN=HOST:PORT"; returns an error text or NULL. */
const char *config_add_route(struct config *cfg, const char *spec);
void config_free(struct config *cfg);
/* The bytes of a secret file (feedback.secret-file, --secret-file; a
 * final newline is not part of it), malloc'd: NULL with err set when it
 * cannot be read or is not 16 to 4096 bytes long. */
char *config_read_secret(const char *path, size_t *len, char *err, size_t err_len);
/* Reads a bounce classes file alone (NULL: the installed or built-in
 * one) into out's bounce_rules: false with err set when it cannot be
 * used. */
bool config_read_classes(const char *path, struct config *out, char *err, size_t err_len);
#endif
