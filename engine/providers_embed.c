/* engine/providers_embed.c - share/sluice/providers.conf as a string in
 * the binary (see providers_embed.h). The assembler reads the file
 * (relative to the repository root, where make runs); the Makefile makes
 * this object depend on it. */
#include "providers_embed.h"

__asm__(".pushsection .rodata\n"
        ".global sluice_providers_conf\n"
        ".type sluice_providers_conf, @object\n"
        ".balign 16\n"
        "sluice_providers_conf:\n"
        ".incbin \"share/sluice/providers.conf\"\n"
        ".byte 0\n"
        ".size sluice_providers_conf, . - sluice_providers_conf\n"
        ".popsection\n");
