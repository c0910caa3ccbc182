/* dkim/track.h - the tracking header sluice adds to what it sends, so
 * that a bounce or a complaint that comes back later can be tied to the
 * message (and its recipient, when it has one only), its source IP and
 * its job: X-Sluice-Track, carrying those and an HMAC-SHA256 under the
 * configured secret (feedback.secret-file).
 * A report is acted on only when the MAC is valid: anyone can write the
 * header, nobody without the secret can forge it.
 *   value = "1." b64url(id) "." b64url(rcpt) "." b64url(source) "."
 *           b64url(job) "." hex(mac)
 * with mac the first 12 bytes of HMAC-SHA256(secret, "1\0" id "\0" rcpt
 * "\0" source "\0" job); an empty field is an empty b64url string (rcpt
 * is empty for a message of several recipients: a report names them). */
#ifndef SLUICE_TRACK_H
#define SLUICE_TRACK_H
#include <stdbool.h>
#include <stddef.h>

#define TRACK_HEADER "X-Sluice-Track"
#define TRACK_FIELD_MAX 256

/* The header's value (malloc'd C string). */
char *track_make(const char *secret, size_t secret_len, const char *id, const char *rcpt, const char *source,
                 const char *job);

enum track_verdict {
	TRACK_VALID,     /* the fields are sluice's, under this secret */
	TRACK_FORGED,    /* well formed, but the MAC does not match */
	TRACK_MALFORMED, /* not a value track_make writes */
};
/* Checks value (len bytes, surrounding white space and folding ignored)
 * and, when well formed, decodes the fields (each at most
 * TRACK_FIELD_MAX - 1 bytes, NUL-terminated). */
enum track_verdict track_check(const char *secret, size_t secret_len, const char *value, size_t len,
                               char id[TRACK_FIELD_MAX], char rcpt[TRACK_FIELD_MAX], char source[TRACK_FIELD_MAX],
                               char job[TRACK_FIELD_MAX]);
#endif
