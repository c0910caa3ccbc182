/* engine/providers_embed.h - the shipped rules files (share/sluice/
 * providers.conf and responses.conf), built into the binary: the
 * configuration reads one when it names none and no installed copy exists. */
#ifndef SLUICE_PROVIDERS_EMBED_H
#define SLUICE_PROVIDERS_EMBED_H
extern const char sluice_providers_conf[]; /* the file's text, NUL-terminated */
extern const char sluice_responses_conf[]; /* share/sluice/responses.conf, the same way */
extern const char sluice_bounce_classes_conf[]; /* share/sluice/bounce-classes.conf */
#endif
