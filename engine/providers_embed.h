/* engine/providers_embed.h - the shipped providers file
 * (share/sluice/providers.conf), built into the binary: the configuration
 * reads it when neither shaping.providers nor an installed copy exists. */
#ifndef SLUICE_PROVIDERS_EMBED_H
#define SLUICE_PROVIDERS_EMBED_H
extern const char sluice_providers_conf[]; /* the file's text, NUL-terminated */
#endif
