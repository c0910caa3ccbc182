/* engine/lib/envelope.h - parse a spool file: envelope lines (X-Sender,
 * X-Receiver, X-Job, X-Pool) then the RFC 5322 message, normalised to CRLF.
 * Pure functions: no I/O, so they are unit-tested on their own. */
#ifndef SLUICE_ENVELOPE_H
#define SLUICE_ENVELOPE_H
#include "message.h"

#define ENVELOPE_MAX_RCPT 100000
#define ENVELOPE_MAX_BODY 0x7fffffffu /* normalised, at most twice that: fits 32 bits */
#define ADDRESS_MAX 256  /* RFC 5321 4.5.3.1.3: path incl. <> */

/* Parses m->raw/raw_len into m's envelope fields and body. On failure
 * returns false and writes a one-line reason into why. raw is modified
 * (strings are terminated in place). */
bool envelope_parse(struct message *m, char *why, size_t why_len);

/* Checks an address taken from the envelope: no CR, LF, NUL or other
 * control characters, no spaces or angle brackets, length bounded, one '@'
 * with a non-empty domain. Returns NULL if fine, else the reason. */
const char *address_check(const char *a, size_t len, bool allow_empty);

/* Copies src to a new buffer with every line ending (LF, CRLF, bare CR)
 * turned into CRLF and a final CRLF added if missing. */
char *crlf_normalise(const char *src, size_t len, size_t *out_len);

/* Returns the domain part of an address (after the last '@'), or "". */
const char *address_domain(const char *addr);
#endif
