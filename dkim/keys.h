/* dkim/keys.h - DKIM private keys: loading and checking key files, making
 * new ones, and a per-thread cache of parsed keys. The only module that
 * calls OpenSSL. */
#ifndef SLUICE_DKIM_KEYS_H
#define SLUICE_DKIM_KEYS_H
#include <stdbool.h>
#include <stddef.h>

enum dkim_alg { DKIM_ALG_RSA = 0, DKIM_ALG_ED25519 };

struct dkim_key {
	char *domain, *selector, *path;
	enum dkim_alg alg;
	unsigned bits;
	char *pem;                    /* the file as read: what libopendkim is given */
	size_t pem_len;
};

/* Reads and checks path as a private key: false with err set when it is
 * missing, not a PEM private key, neither RSA nor Ed25519, or RSA under
 * 1024 bits (RFC 8301). RSA under 2048 bits loads with warn set. */
bool dkim_key_load(struct dkim_key *k, const char *path, char *err, size_t err_len,
                   char *warn, size_t warn_len);
void dkim_key_free(struct dkim_key *k);
/* A selector sluice accepts: letters, digits, '-', '_' and '.' (a DNS label
 * sequence, nothing a TXT lookup or a header could misread). */
bool dkim_selector_valid(const char *s);

/* Makes a key: *pem (PKCS#8) and *pub (base64 for the DNS record's p=:
 * SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519), malloc'd. */
bool dkim_key_generate(enum dkim_alg alg, unsigned bits, char **pem, char **pub,
                       char *err, size_t err_len);

/* The public key of k as a DNS record's p= (malloc'd), or NULL. */
char *dkim_key_public(const struct dkim_key *k);
/* Reads a DKIM record's p= (base64, spaces ignored) as an alg public key
 * (RSA: SubjectPublicKeyInfo or a bare RSAPublicKey; Ed25519: 32 bytes):
 * its size in *bits, and in *same whether it is the public half of k
 * (when k is given). False with err when p= is no such key. */
bool dkim_record_key(enum dkim_alg alg, const char *p, const struct dkim_key *k, unsigned *bits,
                     bool *same, char *err, size_t err_len);

/* libopendkim parses the PEM key again for every message it signs (about
 * 0.5-0.9 ms with OpenSSL 3's decoders, and through process-wide locks).
 * A cache holds each key parsed once; while a thread has one in use, the
 * parse libopendkim asks for is answered from it (see keys.c). The
 * environment variable SLUICE_DKIM_REPARSE=1 turns this off, to measure. */
struct dkim_key_cache;
/* ed25519_kept: the signer never releases an Ed25519 key it was given
 * (libopendkim 2.11.0 does not), so the cache hands those out without
 * taking a reference. */
struct dkim_key_cache *dkim_key_cache_new(const struct dkim_key *keys, unsigned n, bool ed25519_kept);
void dkim_key_cache_use(struct dkim_key_cache *c);   /* for the calling thread; NULL: none */
void dkim_key_cache_free(struct dkim_key_cache *c);
/* HMAC-SHA256 of data under key (tracking headers, engine/track.c): the
 * 32 bytes into out. */
void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, unsigned char out[32]);
#endif
