/* dkim/dkim_cmd.c - `sluice dkim keygen`: writes a new private key and
 * prints the DNS TXT record that publishes its public half. */
#define _GNU_SOURCE
#include "dkim_cmd.h"
#include "keys.h"
#include "../engine/lib/util.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fputs("usage: sluice dkim keygen --domain D --selector S [--type rsa|ed25519]\n"
	      "                          [--bits N] [--out FILE]\n"
	      "Writes a new DKIM private key (PEM, PKCS#8, mode 0600; default FILE is\n"
	      "S.D.key, never overwritten) and prints the TXT record to publish at\n"
	      "S._domainkey.D, split into strings of at most 255 bytes. RSA keys have\n"
	      "2048 bits unless --bits says otherwise (1024..8192). Use the key with\n"
	      "sluice run --dkim D:S:FILE; Ed25519 (RFC 8463) alongside an RSA key, as\n"
	      "not every verifier knows it.\n", f);
}

/* Prints the record's text as a zone-file TXT record of <=255-byte strings. */
static void print_record(const char *name, const char *txt)
{
	size_t len = strlen(txt);
	printf("%s IN TXT (", name);
	for (size_t off = 0; off < len; off += 255)
		printf(" \"%.*s\"%s", (int)(len - off < 255 ? len - off : 255), txt + off,
		       off + 255 < len ? "\n       " : "");
	printf(" )\n");
}

static int keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "domain", required_argument, 0, 'd' }, { "selector", required_argument, 0, 's' },
		{ "type", required_argument, 0, 't' },   { "bits", required_argument, 0, 'b' },
		{ "out", required_argument, 0, 'o' },    { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *domain = NULL, *selector = NULL, *type = "rsa", *out = NULL;
	long bits = 2048;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': domain = optarg; break;
		case 's': selector = optarg; break;
		case 't': type = optarg; break;
		case 'b':
			if (!parse_uint(optarg, 1024, 8192, &bits))
				fatal("--bits: '%s' is not in 1024..8192", optarg);
			break;
		case 'o': out = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!domain || !selector || optind < argc) {
		usage(stderr);
		return 2;
	}
	if (!dkim_selector_valid(selector))
		fatal("--selector: letters, digits, '-', '_' and '.' only");
	enum dkim_alg alg;
	if (strcmp(type, "rsa") == 0)
		alg = DKIM_ALG_RSA;
	else if (strcmp(type, "ed25519") == 0)
		alg = DKIM_ALG_ED25519;
	else
		fatal("--type must be rsa or ed25519");
	char path[4096];
	if (!out) {
		snprintf(path, sizeof(path), "%s.%s.key", selector, domain);
		out = path;
	}
	char *pem, *pub, err[512];
	if (!dkim_key_generate(alg, (unsigned)bits, &pem, &pub, err, sizeof(err)))
		fatal("%s", err);
	int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		fatal("cannot create %s: %s", out, strerror(errno));
	size_t len = strlen(pem);
	if (write(fd, pem, len) != (ssize_t)len || fsync(fd) != 0 || close(fd) != 0)
		fatal("cannot write %s: %s", out, strerror(errno));
	struct buf txt = { 0 }, name = { 0 };
	buf_printf(&txt, "v=DKIM1; k=%s; p=%s", alg == DKIM_ALG_RSA ? "rsa" : "ed25519", pub);
	buf_printf(&name, "%s._domainkey.%s.", selector, domain);
	if (alg == DKIM_ALG_RSA)
		printf("; private key written to %s (rsa, %ld bits)\n", out, bits);
	else
		printf("; private key written to %s (ed25519)\n", out);
	printf("; publish this record, then: sluice run --dkim %s:%s:%s\n", domain, selector, out);
	print_record(name.p, txt.p);
	buf_free(&txt);
	buf_free(&name);
	free(pem);
	free(pub);
	return 0;
}

int dkim_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return keygen(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
