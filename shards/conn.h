/* shards/conn.h - one SMTP connection's state: the commands awaiting
 * replies, the transactions it carries, its output and input. Included by
 * smtp_client.c alone (and its fuzz harness): the rest of the shard holds
 * a struct conn only as an opaque pointer (tests/check_layers.py checks). */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H
#include "shard_internal.h"

enum conn_state {
	CS_FREE = 0, CS_CONNECTING, CS_GREETING, CS_READY, CS_QUITTING, CS_CLOSING,
};

enum cmd { CMD_BANNER = 1, CMD_EHLO, CMD_HELO, CMD_RSET, CMD_MAIL, CMD_RCPT, CMD_DATA,
           CMD_DOT, CMD_BDAT, CMD_QUIT, CMD_STARTTLS, CMD_HANDSHAKE };

/* STARTTLS: plaintext until the 220, then the handshake, then every byte
 * through TLS. */
enum conn_tls { CT_PLAIN = 0, CT_HANDSHAKE, CT_ON };

/* A TLS record not yet all with the kernel: the plaintext it ends at and
 * where its ciphertext ends (a server can answer a command only once the
 * whole record holding it arrived). */
struct rec_mark {
	uint64_t plain_end, cipher_end;
};

struct pending {
	uint8_t cmd;
	uint8_t txn;               /* index into conn->txn */
	bool content;              /* BDAT: the message's content follows its line */
	uint8_t pad;
	uint32_t idx;              /* recipient position in the leg (RCPT) */
	uint32_t off, len;         /* bytes in conn->hold (not yet sent) */
	uint64_t end;              /* where its bytes end in the output stream */
	uint64_t epoch;            /* ring_submits() when its last bytes went to the ring */
};

/* A refusal of MAIL or RCPT, logged once the stream is known in step. */
#define HELD_MAIL UINT32_MAX
struct held_reply {
	uint32_t idx;              /* recipient position in the leg, or HELD_MAIL */
	uint8_t verdict;           /* a reply rule's (VERDICT_*) */
	uint16_t code;
	char enhanced[12];
	char *text;
	size_t len;
};

struct txn {
	struct leg *leg;
	bool active;
	bool mail_failed;
	bool data_started;         /* 354 seen or BDAT sent */
	bool bdat;                 /* content goes as BDAT LAST */
	uint32_t naccepted;
	int64_t start_ms;
	struct held_reply *held;   /* refusals not logged yet (storage kept across txns) */
	uint32_t nheld, held_cap;
};

struct conn {
	uint32_t slot, gen;
	int fd;
	enum conn_state state;
	uint32_t dest;
	unsigned addr;             /* index into the destination's addresses */
	char mx[DNS_NAME_MAX + 1];
	unsigned ops;              /* operations in flight on the ring */
	struct timer timer;
	/* server capabilities from EHLO */
	bool esmtp, pipelining, chunking, eightbit, smtputf8;
	uint64_t size_max;
	/* output: commands copied, content referenced (smtp_output.h); hold
	 * keeps commands not yet sent when the server does not pipeline. */
	struct smtp_output out;
	struct buf hold;
	/* input */
	char *rbuf;
	size_t rlen, rcap;
	bool receiving;
	/* replies expected, in order (a ring of pq_cap entries, a power of
	 * two, grown on demand: a transaction needs max-recipients + 3);
	 * entries [0, pq_flushed) went to the ring (their bytes maybe in a later
	 * sendmsg: pending.epoch), [0, pq_sent) to the output */
	struct pending *pq;
	unsigned pq_cap, pq_head, pq_len, pq_sent, pq_flushed;
	struct txn txn[2];
	uint32_t msgs;             /* transactions started on this connection */
	bool productive;           /* a transaction ended with a reply on it (not 421) */
	bool saw_421;              /* the server said it is closing: counts as a failure */
	bool paced;                /* a reply rule slowed or suspended its pair: not a failure */
	bool quiet_pending;        /* in s->quiet: check for unsolicited bytes before submit */
	uint64_t quiet_epoch;      /* ring_submits() when it was put there */
	bool need_rset;
	/* TLS (shards/smtp_client.c, "STARTTLS"): the plaintext output is
	 * encrypted into records and the ciphertext sent from cwire */
	bool starttls;             /* offered in the EHLO reply */
	enum conn_tls tls_phase;
	struct tls *tls;
	struct msghdr *pt_rest;    /* plaintext of out's wire generation not yet encrypted */
	struct buf cwire;          /* ciphertext in flight (one send at a time) */
	size_t cwire_off;          /* bytes of it the kernel took */
	bool csending;
	uint64_t c_sent;           /* ciphertext bytes the kernel took */
	uint64_t p_sent, p_inflight_end; /* plaintext in whole records with the kernel / on the ring */
	struct rec_mark *marks;    /* records not yet all sent, oldest first */
	unsigned marks_head, nmarks, marks_cap;
	char tls_desc[64];         /* "TLSv1.3:TLS_AES_256_GCM_SHA384", or "" */
	char peer[48], source[48];
	char helo[256];            /* the EHLO name of its source IP */
	struct smtp_reply reply;   /* scratch for parsing */
};
#endif
