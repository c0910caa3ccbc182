/* engine/lib/tls.h - TLS on memory buffers: the one module that includes
 * wolfSSL. A connection's ciphertext never touches a socket here: the
 * caller receives into tls_in_space() and sends what tls_out_take() hands
 * over, on its own ring; wolfSSL's I/O callbacks only copy between these
 * buffers and say WANT_READ when the input is empty.
 *
 * A context (struct tls_ctx) belongs to one thread (a shard, a mockmx
 * thread): nothing is shared between threads but wolfSSL's one-time
 * global set-up. A client context also keeps, per host (bounded, least
 * recently used first out), the last session to resume and how long that
 * host gets plaintext after a failed handshake. */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H
#include "util.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tls_rc { TLS_OK = 0, TLS_AGAIN = 1, TLS_FAIL = -1, TLS_CLOSED = -2 };

/* Plaintext per record: one tls_write of at most this is one record. */
#define TLS_RECORD_MAX 16384

struct tls_ctx;
struct tls;

/* A client context: TLS 1.2 and 1.3 only. ca_file: PEM certificates to
 * verify against (NULL: the system store, loaded only if load_cas). */
struct tls_ctx *tls_client_ctx_new(const char *ca_file, bool load_cas, char *err, size_t errlen);
/* A server context with this certificate chain and key (PEM). */
struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                   size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);
/* A server context that resumes nothing: no session cache, no tickets
 * (TLS 1.2 or 1.3), so every handshake is a full one (benchmarks). */
void tls_server_ctx_no_resumption(struct tls_ctx *ctx);
/* Frees what wolfSSL keeps per thread (its ECC fixed-point cache, about
 * 800 KiB per key seen often): call as a thread that did TLS ends. */
void tls_thread_done(void);

/* A client connection. sni: the name sent (NULL: none); verify_name: the
 * name the certificate chain must be valid for (NULL: not verified);
 * host: the key of the session cache (NULL: no resumption). */
struct tls *tls_client_new(struct tls_ctx *ctx, const char *sni, const char *verify_name,
                           const char *host);
struct tls *tls_server_new(struct tls_ctx *ctx);
void tls_free(struct tls *t);

/* Input: received ciphertext goes at tls_in_space (room for *cap bytes,
 * at least 4 KiB; the pointer stays valid until the next call on t), and
 * tls_in_commit says how many came. */
void *tls_in_space(struct tls *t, size_t *cap);
void tls_in_commit(struct tls *t, size_t n);
size_t tls_in_pending(const struct tls *t);

/* Advances the handshake over the input in hand: TLS_OK once done,
 * TLS_AGAIN when it needs more input, TLS_FAIL (see tls_error). */
int tls_handshake(struct tls *t);
/* Decrypted bytes into buf: > 0, or TLS_AGAIN (0) when the input in hand
 * holds no more, TLS_CLOSED when the peer closed (close_notify), TLS_FAIL. */
long tls_read(struct tls *t, void *buf, size_t cap);
/* Encrypts n plaintext bytes (n <= TLS_RECORD_MAX: one record) into the
 * output. TLS_OK or TLS_FAIL. */
int tls_write(struct tls *t, const void *p, size_t n);
/* close_notify into the output (best effort). */
void tls_close_notify(struct tls *t);

/* Output: ciphertext produced and not yet taken; tls_out_take swaps it
 * into *wire (which must be empty; its storage is reused). tls_out_total
 * counts every byte produced since the start. */
size_t tls_out_pending(const struct tls *t);
void tls_out_take(struct tls *t, struct buf *wire);
uint64_t tls_out_total(const struct tls *t);

/* Why the last TLS_FAIL (or TLS_CLOSED), e.g. "alert received:
 * handshake_failure"; tls_cert_failed: the certificate was the reason. */
const char *tls_error(const struct tls *t);
bool tls_cert_failed(const struct tls *t);
/* "TLSv1.3:TLS_AES_256_GCM_SHA384" after the handshake. */
const char *tls_describe(struct tls *t, char *out, size_t n);
bool tls_resumed(struct tls *t);
/* Keeps the connection's session for its host (call after the peer's
 * first application data: TLS 1.3 tickets come after the handshake). */
void tls_save_session(struct tls *t);
/* Drops the host's session (a resumption that failed). */
void tls_forget_session(struct tls_ctx *ctx, const char *host);

/* Opportunistic TLS: a host whose handshake failed gets plaintext until
 * 'until' (ms, the caller's clock); 0 when not (or no longer). */
void tls_host_set_plain(struct tls_ctx *ctx, const char *host, int64_t until);
int64_t tls_host_plain_until(struct tls_ctx *ctx, const char *host, int64_t now);
/* Hosts remembered now (sessions or plaintext marks). */
unsigned tls_ctx_hosts(const struct tls_ctx *ctx);
#endif
