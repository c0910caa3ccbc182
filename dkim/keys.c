/* dkim/keys.c - DKIM private keys (see keys.h); the only module that calls
 * OpenSSL.
 *
 * The key cache works by interposition: this binary exports its own
 * PEM_read_bio_PrivateKey (dkim/exports.list), which the dynamic linker
 * binds libopendkim's call to. When the calling thread has a cache in use
 * and the memory BIO holds exactly one of its keys' PEM bytes, it returns
 * that key, already parsed (with a reference taken: libopendkim frees it
 * as if it were its own); otherwise it calls OpenSSL's. libopendkim stays
 * the signer; only the repeated parse goes. Each shard has its own cache,
 * so the RSA blinding and Montgomery state in a key is never shared
 * between threads. */
#define _GNU_SOURCE
#include "keys.h"
#include "../engine/lib/util.h"
#include <dlfcn.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef EVP_PKEY *(*pem_read_fn)(BIO *, EVP_PKEY **, pem_password_cb *, void *);

static pem_read_fn openssl_pem_read(void)
{
	static _Atomic(pem_read_fn) fn;
	pem_read_fn f = atomic_load(&fn);
	if (f)
		return f;
	f = (pem_read_fn)dlvsym(RTLD_NEXT, "PEM_read_bio_PrivateKey", "OPENSSL_3.0.0");
	if (!f)
		f = (pem_read_fn)dlsym(RTLD_NEXT, "PEM_read_bio_PrivateKey");
	if (!f)
		fatal("dkim: OpenSSL's PEM_read_bio_PrivateKey not found");
	atomic_store(&fn, f);
	return f;
}

struct cached_key {
	const char *pem;
	size_t len;
	EVP_PKEY *pkey;
	bool take_ref;              /* the caller frees what it gets */
};

struct dkim_key_cache {
	unsigned n;
	struct cached_key *keys;
};

static __thread struct dkim_key_cache *thread_cache;

EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u)
{
	struct dkim_key_cache *c = thread_cache;
	if (c && !x && bp && BIO_method_type(bp) == BIO_TYPE_MEM) {
		char *data;
		long len = BIO_get_mem_data(bp, &data);
		for (unsigned i = 0; len > 0 && i < c->n; i++)
			if ((size_t)len == c->keys[i].len && memcmp(data, c->keys[i].pem, (size_t)len) == 0 &&
			    (!c->keys[i].take_ref || EVP_PKEY_up_ref(c->keys[i].pkey)))
				return c->keys[i].pkey;
	}
	return openssl_pem_read()(bp, x, cb, u);
}

static EVP_PKEY *parse_pem(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	if (!b)
		return NULL;
	EVP_PKEY *k = openssl_pem_read()(b, NULL, NULL, NULL);
	BIO_free(b);
	return k;
}

static void openssl_error(char *err, size_t err_len, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, err_len, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

bool dkim_key_load(struct dkim_key *k, const char *path, char *err, size_t err_len,
                   char *warn, size_t warn_len)
{
	warn[0] = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, err_len, "cannot read key file %s: %s", path, strerror(errno));
		return false;
	}
	struct buf b = { 0 };
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (1u << 20))
		buf_add(&b, chunk, n);
	fclose(f);
	buf_add(&b, "", 1); /* NUL-terminated; not counted */
	b.len--;
	EVP_PKEY *pkey = strstr(b.p, "-----BEGIN") ? parse_pem(b.p, b.len) : NULL;
	if (!pkey) {
		char what[600];
		snprintf(what, sizeof(what), "%s: not a PEM private key", path);
		openssl_error(err, err_len, what);
		buf_free(&b);
		return false;
	}
	int id = EVP_PKEY_get_base_id(pkey);
	int bits = EVP_PKEY_get_bits(pkey);
	EVP_PKEY_free(pkey);
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		snprintf(err, err_len, "%s: the key is neither RSA nor Ed25519", path);
		buf_free(&b);
		return false;
	}
	if (id == EVP_PKEY_RSA && bits < 1024) {
		snprintf(err, err_len, "%s: RSA key of %d bits: at least 1024 are required (RFC 8301), "
		         "2048 recommended", path, bits);
		buf_free(&b);
		return false;
	}
	if (id == EVP_PKEY_RSA && bits < 2048)
		snprintf(warn, warn_len, "%s: RSA key of %d bits: 2048 are recommended", path, bits);
	k->alg = id == EVP_PKEY_RSA ? DKIM_ALG_RSA : DKIM_ALG_ED25519;
	k->bits = (unsigned)bits;
	k->pem = b.p;
	k->pem_len = b.len;
	k->path = xstrdup(path);
	return true;
}

void dkim_key_free(struct dkim_key *k)
{
	free(k->domain);
	free(k->selector);
	free(k->path);
	free(k->pem);
	memset(k, 0, sizeof(*k));
}

bool dkim_selector_valid(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static char *base64(const unsigned char *p, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)len);
	return out;
}

/* The public half as a DKIM record's p= wants it: SubjectPublicKeyInfo
 * for RSA, the raw 32 bytes for Ed25519 (RFC 8463), in base64. */
static char *public_b64(EVP_PKEY *k, enum dkim_alg alg)
{
	char *out = NULL;
	if (alg == DKIM_ALG_RSA) {
		unsigned char *der = NULL;
		int len = i2d_PUBKEY(k, &der);
		if (len > 0)
			out = base64(der, (size_t)len);
		OPENSSL_free(der);
	} else {
		unsigned char raw[64];
		size_t len = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(k, raw, &len) == 1)
			out = base64(raw, len);
	}
	return out;
}

bool dkim_key_generate(enum dkim_alg alg, unsigned bits, char **pem, char **pub,
                       char *err, size_t err_len)
{
	*pem = *pub = NULL;
	EVP_PKEY *k = alg == DKIM_ALG_RSA ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
	                                  : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!k) {
		openssl_error(err, err_len, "key generation failed");
		return false;
	}
	BIO *b = BIO_new(BIO_s_mem());
	bool ok = b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	if (ok) {
		char *data;
		long len = BIO_get_mem_data(b, &data);
		*pem = xstrndup(data, (size_t)len);
	}
	BIO_free(b);
	if (ok)
		ok = (*pub = public_b64(k, alg)) != NULL;
	EVP_PKEY_free(k);
	if (!ok) {
		openssl_error(err, err_len, "cannot encode the key");
		if (*pem) {
			free(*pem);
			*pem = NULL;
		}
	}
	return ok;
}

struct dkim_key_cache *dkim_key_cache_new(const struct dkim_key *keys, unsigned n, bool ed25519_kept)
{
	const char *off = getenv("SLUICE_DKIM_REPARSE");
	if (off && strcmp(off, "1") == 0)
		return NULL;
	struct dkim_key_cache *c = xcalloc(1, sizeof(*c));
	c->keys = xcalloc(n ? n : 1, sizeof(*c->keys));
	for (unsigned i = 0; i < n; i++) {
		EVP_PKEY *k = parse_pem(keys[i].pem, keys[i].pem_len);
		if (!k)
			continue; /* checked at load: cannot happen; libopendkim will say */
		c->keys[c->n++] = (struct cached_key){ keys[i].pem, keys[i].pem_len, k,
		                                       !(ed25519_kept && keys[i].alg == DKIM_ALG_ED25519) };
	}
	return c;
}

void dkim_key_cache_use(struct dkim_key_cache *c)
{
	thread_cache = c;
}

void dkim_key_cache_free(struct dkim_key_cache *c)
{
	if (!c)
		return;
	if (thread_cache == c)
		thread_cache = NULL;
	for (unsigned i = 0; i < c->n; i++)
		EVP_PKEY_free(c->keys[i].pkey);
	free(c->keys);
	free(c);
}

char *dkim_key_public(const struct dkim_key *k)
{
	EVP_PKEY *pk = parse_pem(k->pem, k->pem_len);
	if (!pk)
		return NULL;
	char *out = public_b64(pk, k->alg);
	EVP_PKEY_free(pk);
	return out;
}

bool dkim_record_key(enum dkim_alg alg, const char *p, const struct dkim_key *k, unsigned *bits,
                     bool *same, char *err, size_t err_len)
{
	size_t len = strlen(p), n = 0;
	char *clean = xmalloc(len + 4);
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			clean[n++] = p[i];
	clean[n] = 0;
	unsigned char *der = xmalloc(n + 4);
	int dl = n % 4 == 0 && n ? EVP_DecodeBlock(der, (const unsigned char *)clean, (int)n) : -1;
	if (dl > 0) /* EVP_DecodeBlock counts the padding's zero bytes */
		for (size_t i = n; i > 0 && clean[i - 1] == '='; i--)
			dl--;
	free(clean);
	*bits = 0;
	*same = false;
	if (dl <= 0) {
		free(der);
		snprintf(err, err_len, "p= is not base64");
		return false;
	}
	EVP_PKEY *pk = NULL;
	if (alg == DKIM_ALG_RSA) {
		const unsigned char *q = der;
		pk = d2i_PUBKEY(NULL, &q, dl);
		if (!pk) { /* a bare RSAPublicKey (PKCS#1), which verifiers also accept */
			q = der;
			pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, dl);
		}
		if (pk && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(pk);
			pk = NULL;
		}
	} else if (dl == 32) {
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, 32);
	}
	free(der);
	ERR_clear_error();
	if (!pk) {
		snprintf(err, err_len, "p= is not %s public key", alg == DKIM_ALG_RSA ? "an RSA" : "an Ed25519 (32-byte)");
		return false;
	}
	*bits = (unsigned)EVP_PKEY_get_bits(pk);
	if (k && k->alg == alg) {
		EVP_PKEY *priv = parse_pem(k->pem, k->pem_len);
		*same = priv && EVP_PKEY_eq(pk, priv) == 1;
		EVP_PKEY_free(priv);
	}
	EVP_PKEY_free(pk);
	return true;
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;
	if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n))
		memset(out, 0, 32); /* never matches a real MAC by chance of the input */
}
