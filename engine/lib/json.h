/* engine/lib/json.h - JSON string escaping that yields valid JSON and valid
 * UTF-8 for any input bytes (server replies are arbitrary bytes). */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H
#include "util.h"

/* Appends s (len bytes) as a quoted JSON string; NULL becomes null.
 * Invalid UTF-8 bytes become U+FFFD, control characters \uXXXX. */
void json_add_string(struct buf *b, const char *s, size_t len);
void json_add_cstr(struct buf *b, const char *s);
#endif
