/* engine/providers_embed.c - the shipped rules files of share/sluice
 * (providers.conf, responses.conf) as strings in the binary (see
 * providers_embed.h). The assembler reads the file
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

__asm__(".pushsection .rodata\n"
        ".global sluice_responses_conf\n"
        ".type sluice_responses_conf, @object\n"
        ".balign 16\n"
        "sluice_responses_conf:\n"
        ".incbin \"share/sluice/responses.conf\"\n"
        ".byte 0\n"
        ".size sluice_responses_conf, . - sluice_responses_conf\n"
        ".popsection\n");

__asm__(".pushsection .rodata\n"
        ".global sluice_bounce_classes_conf\n"
        ".type sluice_bounce_classes_conf, @object\n"
        ".balign 16\n"
        "sluice_bounce_classes_conf:\n"
        ".incbin \"share/sluice/bounce-classes.conf\"\n"
        ".byte 0\n"
        ".size sluice_bounce_classes_conf, . - sluice_bounce_classes_conf\n"
        ".popsection\n");
