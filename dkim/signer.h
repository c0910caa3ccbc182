/* dkim/signer.h - DKIM signing of outgoing messages with libopendkim (the
 * only module that calls it). One signer per shard: it runs on the shard
 * that sends the message, with its own library handle and key cache. */
#ifndef SLUICE_DKIM_SIGNER_H
#define SLUICE_DKIM_SIGNER_H
#include "keys.h"
#include "../engine/lib/message.h"

struct dkim_signer;

/* keys: every configured key (domain, selector); fallback: the domain whose
 * keys sign mail from domains without keys (or NULL). NULL if no keys. */
struct dkim_signer *dkim_signer_new(const struct dkim_key *keys, unsigned nkeys, const char *fallback);
void dkim_signer_free(struct dkim_signer *s);

enum dkim_sign_result { DKIM_UNSIGNED = 0, DKIM_SIGNED, DKIM_SIGN_FAILED };

/* Signs m (its CRLF-normalised content, before dot-stuffing) with every
 * key of its From: domain (or the nearest parent domain with keys, or the
 * fallback domain): the DKIM-Signature fields go to m->dkim_sig (sent in
 * front of m->body) and m->dkim_log records domain and selectors. DKIM_UNSIGNED: no key applies;
 * DKIM_SIGN_FAILED: why says why (the message must not go unsigned). */
enum dkim_sign_result dkim_sign_message(struct dkim_signer *s, struct message *m, char *why, size_t why_len);

/* The header fields signed (each present one; the oversigned ones once
 * more than present, so none can be added after signing). */
extern const char *const dkim_signed_headers[];
extern const char *const dkim_oversigned_headers[];
#endif
