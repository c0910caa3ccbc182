/* engine/lib/tls.c - TLS on memory buffers with wolfSSL (see tls.h). The
 * only file that includes wolfSSL: its OpenSSL-compatible headers clash
 * with OpenSSL's, which dkim/ uses. */
#define _GNU_SOURCE
#include "tls.h"
#include "dlist.h"
#include "strmap.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#define IN_CHUNK 4096      /* ciphertext received per recv: wolfSSL assembles records itself */
#define HOSTS_MAX 4096     /* hosts remembered per context */
#define KEEP_OUT (64u << 10) /* output storage kept between sends */

struct host_entry {
	struct strmap_node node;
	struct dlist lru;          /* most recently used first */
	char *host;
	WOLFSSL_SESSION *session;
	int64_t plain_until;
};

struct tls_ctx {
	WOLFSSL_CTX *ctx;
	bool server;
	struct strmap hosts;
	struct dlist lru;
	unsigned nhosts;
};

struct tls {
	struct tls_ctx *ctx;
	WOLFSSL *ssl;
	struct buf in;             /* ciphertext received, [in_off, in.len) not yet given to wolfSSL */
	size_t in_off;
	struct buf out;            /* ciphertext produced, not yet taken */
	uint64_t out_total;
	char *host;                /* the session cache's key, or NULL */
	bool verify;
	bool cert_failed;
	bool peer_closed;
	char cert_why[160];
	char err[256];
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void tls_global_init(void)
{
	wolfSSL_Init();
}

/* ---- wolfSSL's I/O callbacks: memory only ---- */

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls *t = arg;
	size_t have = t->in.len - t->in_off;
	if (have == 0)
		return t->peer_closed ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = have < (size_t)sz ? have : (size_t)sz;
	memcpy(buf, t->in.p + t->in_off, n);
	t->in_off += n;
	return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls *t = arg;
	buf_add(&t->out, buf, (size_t)sz);
	t->out_total += (uint64_t)sz;
	return sz;
}

/* ---- contexts ---- */

static struct tls_ctx *ctx_new(bool server, char *err, size_t errlen)
{
	pthread_once(&init_once, tls_global_init);
	WOLFSSL_CTX *c = wolfSSL_CTX_new(server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());
	if (!c) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	if (wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot set TLS 1.2 as the lowest version");
		wolfSSL_CTX_free(c);
		return NULL;
	}
	struct tls_ctx *x = xcalloc(1, sizeof(*x));
	x->ctx = c;
	x->server = server;
	dlist_init(&x->lru);
	return x;
}

struct tls_ctx *tls_client_ctx_new(const char *ca_file, bool load_cas, char *err, size_t errlen)
{
	struct tls_ctx *x = ctx_new(false, err, errlen);
	if (!x)
		return NULL;
	int rc = WOLFSSL_SUCCESS;
	if (ca_file)
		rc = wolfSSL_CTX_load_verify_locations(x->ctx, ca_file, NULL);
	else if (load_cas)
		rc = wolfSSL_CTX_load_system_CA_certs(x->ctx);
	if (rc != WOLFSSL_SUCCESS) {
		char e[120];
		wolfSSL_ERR_error_string_n((unsigned long)(rc < 0 ? -rc : rc), e, sizeof(e));
		snprintf(err, errlen, "cannot load CA certificates from %s", ca_file ? ca_file : "the system store");
		tls_ctx_free(x);
		return NULL;
	}
	wolfSSL_CTX_set_verify(x->ctx, WOLFSSL_VERIFY_NONE, NULL);
	return x;
}

struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                   size_t errlen)
{
	struct tls_ctx *x = ctx_new(true, err, errlen);
	if (!x)
		return NULL;
	if (wolfSSL_CTX_use_certificate_chain_file(x->ctx, cert_file) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot load the certificate chain %s (PEM)", cert_file);
		tls_ctx_free(x);
		return NULL;
	}
	if (wolfSSL_CTX_use_PrivateKey_file(x->ctx, key_file, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot load the private key %s (PEM)", key_file);
		tls_ctx_free(x);
		return NULL;
	}
	return x;
}

void tls_server_ctx_no_resumption(struct tls_ctx *x)
{
	wolfSSL_CTX_set_session_cache_mode(x->ctx, WOLFSSL_SESS_CACHE_OFF);
	wolfSSL_CTX_NoTicketTLSv12(x->ctx);
	wolfSSL_CTX_no_ticket_TLSv13(x->ctx);
}

void tls_thread_done(void)
{
#ifdef FP_ECC
	wc_ecc_fp_free();
#endif
}

static void host_drop(struct tls_ctx *x, struct host_entry *h)
{
	strmap_remove(&x->hosts, &h->node);
	dlist_unlink(&h->lru);
	if (h->session)
		wolfSSL_SESSION_free(h->session);
	free(h->host);
	free(h);
	x->nhosts--;
}

void tls_ctx_free(struct tls_ctx *x)
{
	if (!x)
		return;
	while (!dlist_empty(&x->lru))
		host_drop(x, container_of(x->lru.next, struct host_entry, lru));
	strmap_free(&x->hosts);
	wolfSSL_CTX_free(x->ctx);
	free(x);
}

static struct host_entry *host_find(struct tls_ctx *x, const char *host)
{
	struct strmap_node *n = strmap_find(&x->hosts, host);
	if (!n)
		return NULL;
	struct host_entry *h = container_of(n, struct host_entry, node);
	dlist_move_front(&x->lru, &h->lru);
	return h;
}

static struct host_entry *host_get(struct tls_ctx *x, const char *host)
{
	struct host_entry *h = host_find(x, host);
	if (h)
		return h;
	if (x->nhosts >= HOSTS_MAX) /* the least recently used goes */
		host_drop(x, container_of(x->lru.prev, struct host_entry, lru));
	h = xcalloc(1, sizeof(*h));
	h->host = xstrdup(host);
	strmap_insert(&x->hosts, &h->node, h->host);
	dlist_push_front(&x->lru, &h->lru);
	x->nhosts++;
	return h;
}

unsigned tls_ctx_hosts(const struct tls_ctx *x)
{
	return x->nhosts;
}

void tls_host_set_plain(struct tls_ctx *x, const char *host, int64_t until)
{
	host_get(x, host)->plain_until = until;
}

int64_t tls_host_plain_until(struct tls_ctx *x, const char *host, int64_t now)
{
	struct strmap_node *n = strmap_find(&x->hosts, host);
	if (!n)
		return 0;
	struct host_entry *h = container_of(n, struct host_entry, node);
	return h->plain_until > now ? h->plain_until : 0;
}

void tls_forget_session(struct tls_ctx *x, const char *host)
{
	struct strmap_node *n = strmap_find(&x->hosts, host);
	if (!n)
		return;
	struct host_entry *h = container_of(n, struct host_entry, node);
	if (h->session)
		wolfSSL_SESSION_free(h->session);
	h->session = NULL;
}

/* ---- connections ---- */

/* Certificate checks (verify only): the first failure's reason is kept;
 * returning preverify lets wolfSSL fail the handshake on it. */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	struct tls *t = store ? store->userCtx : NULL;
	if (!preverify && t && !t->cert_failed) {
		t->cert_failed = true;
		const char *why = store->error == DOMAIN_NAME_MISMATCH
			? "the name does not match"
			: wolfSSL_X509_verify_cert_error_string(store->error);
		snprintf(t->cert_why, sizeof(t->cert_why), "%s (error %d, depth %d)",
		         why ? why : "not valid", store->error, store->error_depth);
	}
	return preverify;
}

static struct tls *conn_new(struct tls_ctx *x)
{
	WOLFSSL *ssl = wolfSSL_new(x->ctx);
	if (!ssl)
		return NULL;
	struct tls *t = xcalloc(1, sizeof(*t));
	t->ctx = x;
	t->ssl = ssl;
	wolfSSL_SSLSetIORecv(ssl, io_recv);
	wolfSSL_SSLSetIOSend(ssl, io_send);
	wolfSSL_SetIOReadCtx(ssl, t);
	wolfSSL_SetIOWriteCtx(ssl, t);
	return t;
}

struct tls *tls_client_new(struct tls_ctx *x, const char *sni, const char *verify_name,
                           const char *host)
{
	struct tls *t = conn_new(x);
	if (!t)
		return NULL;
	if (sni && *sni)
		wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni));
	wolfSSL_UseSessionTicket(t->ssl);
	if (verify_name) {
		t->verify = true;
		wolfSSL_SetCertCbCtx(t->ssl, t);
		wolfSSL_set_verify(t->ssl, WOLFSSL_VERIFY_PEER, verify_cb);
		if (*verify_name)
			wolfSSL_check_domain_name(t->ssl, verify_name);
	}
	if (host) {
		t->host = xstrdup(host);
		struct host_entry *h = host_find(x, host);
		if (h && h->session)
			wolfSSL_set_session(t->ssl, h->session);
	}
	return t;
}

struct tls *tls_server_new(struct tls_ctx *x)
{
	return conn_new(x);
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	wolfSSL_free(t->ssl);
	buf_free(&t->in);
	buf_free(&t->out);
	free(t->host);
	free(t);
}

void *tls_in_space(struct tls *t, size_t *cap)
{
	if (t->in_off == t->in.len) {
		t->in.len = t->in_off = 0;
	} else if (t->in_off > 0) {
		memmove(t->in.p, t->in.p + t->in_off, t->in.len - t->in_off);
		t->in.len -= t->in_off;
		t->in_off = 0;
	}
	buf_reserve(&t->in, IN_CHUNK);
	*cap = t->in.cap - t->in.len;
	return t->in.p + t->in.len;
}

void tls_in_commit(struct tls *t, size_t n)
{
	ASSERT(t->in.len + n <= t->in.cap);
	t->in.len += n;
}

size_t tls_in_pending(const struct tls *t)
{
	return t->in.len - t->in_off;
}

/* The reason of a failed call: a certificate's, an alert's, wolfSSL's. */
static void note_error(struct tls *t, int ret)
{
	int e = wolfSSL_get_error(t->ssl, ret);
	WOLFSSL_ALERT_HISTORY ah;
	memset(&ah, 0, sizeof(ah));
	wolfSSL_get_alert_history(t->ssl, &ah);
	char es[120];
	wolfSSL_ERR_error_string_n((unsigned long)e, es, sizeof(es));
	if (t->cert_failed)
		snprintf(t->err, sizeof(t->err), "certificate: %s", t->cert_why);
	else if (t->verify && (e == DOMAIN_NAME_MISMATCH || e == ASN_NO_SIGNER_E || e == ASN_AFTER_DATE_E ||
	                       e == ASN_BEFORE_DATE_E || e == ASN_SIG_CONFIRM_E))
		t->cert_failed = true,
		snprintf(t->err, sizeof(t->err), "certificate: %s (error %d)", es, e);
	else if (ah.last_rx.code > 0 && ah.last_rx.level == 2)
		snprintf(t->err, sizeof(t->err), "alert received: %s",
		         wolfSSL_alert_desc_string_long(ah.last_rx.code));
	else if (e == SOCKET_PEER_CLOSED_E || e == WOLFSSL_ERROR_ZERO_RETURN || t->peer_closed)
		snprintf(t->err, sizeof(t->err), "the peer closed the connection");
	else
		snprintf(t->err, sizeof(t->err), "%s (error %d)", es, e);
}

int tls_handshake(struct tls *t)
{
	int ret = t->ctx->server ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);
	if (ret == WOLFSSL_SUCCESS)
		return TLS_OK;
	int e = wolfSSL_get_error(t->ssl, ret);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return TLS_AGAIN;
	note_error(t, ret);
	return TLS_FAIL;
}

long tls_read(struct tls *t, void *buf, size_t cap)
{
	ASSERT(cap > 0);
	int n = wolfSSL_read(t->ssl, buf, cap > (1u << 30) ? 1 << 30 : (int)cap);
	if (n > 0)
		return n;
	int e = wolfSSL_get_error(t->ssl, n);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return TLS_AGAIN;
	if (e == WOLFSSL_ERROR_ZERO_RETURN) {
		snprintf(t->err, sizeof(t->err), "the peer ended TLS (close_notify)");
		return TLS_CLOSED;
	}
	note_error(t, n);
	return TLS_FAIL;
}

int tls_write(struct tls *t, const void *p, size_t n)
{
	ASSERT(n > 0 && n <= TLS_RECORD_MAX);
	int w = wolfSSL_write(t->ssl, p, (int)n);
	if (w == (int)n)
		return TLS_OK;
	note_error(t, w);
	return TLS_FAIL;
}

void tls_close_notify(struct tls *t)
{
	wolfSSL_shutdown(t->ssl);
}

size_t tls_out_pending(const struct tls *t)
{
	return t->out.len;
}

void tls_out_take(struct tls *t, struct buf *wire)
{
	ASSERT(wire->len == 0);
	if (wire->cap > KEEP_OUT)
		buf_free(wire);
	struct buf b = *wire;
	*wire = t->out;
	t->out = b;
}

uint64_t tls_out_total(const struct tls *t)
{
	return t->out_total;
}

const char *tls_error(const struct tls *t)
{
	return t->err[0] ? t->err : "unknown TLS error";
}

bool tls_cert_failed(const struct tls *t)
{
	return t->cert_failed;
}

const char *tls_describe(struct tls *t, char *out, size_t n)
{
	int cs = wolfSSL_get_current_cipher_suite(t->ssl);
	const char *name = wolfSSL_get_cipher_name_iana_from_suite((unsigned char)(cs >> 8), (unsigned char)cs);
	snprintf(out, n, "%s:%s", wolfSSL_get_version(t->ssl), name ? name : wolfSSL_get_cipher_name(t->ssl));
	return out;
}

bool tls_resumed(struct tls *t)
{
	return wolfSSL_session_reused(t->ssl) == 1;
}

void tls_save_session(struct tls *t)
{
	if (!t->host)
		return;
	WOLFSSL_SESSION *s = wolfSSL_get1_session(t->ssl);
	if (!s)
		return;
	if (!wolfSSL_SESSION_is_resumable(s)) {
		wolfSSL_SESSION_free(s);
		return;
	}
	struct host_entry *h = host_get(t->ctx, t->host);
	if (h->session)
		wolfSSL_SESSION_free(h->session);
	h->session = s;
}
