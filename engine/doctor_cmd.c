/* engine/doctor_cmd.c - `sluice doctor`: reads what to check from flags or
 * from a configuration (-c: every domain sluice signs for or picks a pool
 * by, with the keys, source IPs and EHLO names it would use), runs the
 * checks (doctor.c) on sluice's own resolver and prints them. Also the
 * same checks when `sluice run` starts (doctor_at_start). */
#define _GNU_SOURCE
#include "doctor.h"
#include "config.h"
#include "../dns/spf.h"
#include "../dns/sync.h"
#include "lib/json.h"
#include <arpa/inet.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_DAILY_VOLUME 5001 /* doctor is for bulk senders */
#define MAX_FLAGS 64              /* --selector, --source-ip */
#define DOMAIN_TIME_MS 30000      /* one domain's checks: later questions are not asked */
#define SPF_TIME_MS 20000         /* one --check-spf (RFC 7208 4.6.4; pyspf's limit) */
#define AT_START_WAIT_MS 5000     /* what a run that ends waits for the checks at start */

struct flags {
	char domain[DNS_NAME_MAX + 2], helo[DNS_NAME_MAX + 2], mail_from[DNS_NAME_MAX + 80];
	const char *config, *message;
	char check_spf[INET6_ADDRSTRLEN];
	const char *selectors[MAX_FLAGS], *keyfiles[MAX_FLAGS];
	unsigned nselectors;
	char ips[MAX_FLAGS][INET6_ADDRSTRLEN];
	unsigned nips;
	struct dns_server servers[8];
	unsigned nservers;
	unsigned daily_volume;
	int timeout_ms;           /* 0: not given */
	bool json;
};

static void usage(FILE *f)
{
	fputs("usage: sluice doctor --domain D [--selector S [--dkim-key FILE]]... [--source-ip ADDR]...\n"
	      "                     [--helo NAME] [--mail-from ADDR] [--daily-volume N]\n"
	      "                     [--dns-server IP[:PORT]]... [--timeout SECONDS] [--json]\n"
	      "       sluice doctor -c sluice.conf [--dns-server IP[:PORT]]... [--json]\n"
	      "       sluice doctor --message FILE [--domain D --selector S | -c sluice.conf] [--json]\n"
	      "       sluice doctor --check-spf IP --mail-from ADDR [--helo NAME] [--dns-server ...]\n"
	      "Checks that a sending domain's DNS, keys and IPs are coherent: SPF (one record,\n"
	      "its syntax, the 10-lookup limit, the result for each source IP), DKIM (each\n"
	      "selector's record against its private key), DMARC (policy, reports, alignment),\n"
	      "reverse DNS of each source IP (resolving back, matching its EHLO name), MX;\n"
	      "MTA-STS, TLS-RPT and BIMI as information. Each check: pass, warn or fail, the\n"
	      "detail and the fix. -c checks every domain of the configuration. --message\n"
	      "lints a spool file against the bulk-sender rules. --check-spf prints one SPF\n"
	      "evaluation (RFC 7208 check_host) as JSON. Exit status 1 when a check fails.\n", f);
}

/* A name as given, without a final dot ("example.com." is example.com). */
static void name_arg(char *out, size_t len, const char *v, const char *flag)
{
	if (strlen(v) >= len)
		fatal("doctor: %s %s: too long", flag, v);
	snprintf(out, len, "%s", v);
	size_t l = strlen(out);
	if (l > 1 && out[l - 1] == '.')
		out[l - 1] = 0;
}

/* A numeric address in canonical text; an IPv4-mapped IPv6 address is its
 * IPv4 address (that is what a receiver sees). */
static bool ip_arg(const char *v, char *out, size_t len)
{
	uint8_t a[16];
	bool v6;
	return dns_ip_parse(v, a, &v6) && inet_ntop(v6 ? AF_INET6 : AF_INET, a, out, (socklen_t)len) != NULL;
}

static void parse_flags(int argc, char **argv, struct flags *fl)
{
	static const struct option opts[] = {
		{ "domain", required_argument, 0, 'd' },     { "selector", required_argument, 0, 's' },
		{ "dkim-key", required_argument, 0, 'k' },   { "source-ip", required_argument, 0, 'i' },
		{ "helo", required_argument, 0, 'H' },       { "mail-from", required_argument, 0, 'f' },
		{ "daily-volume", required_argument, 0, 'v' }, { "dns-server", required_argument, 0, 'n' },
		{ "timeout", required_argument, 0, 'T' },    { "json", no_argument, 0, 'j' },
		{ "config", required_argument, 0, 'c' },     { "message", required_argument, 0, 'm' },
		{ "check-spf", required_argument, 0, 'S' },  { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	int opt;
	long v;
	while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': name_arg(fl->domain, sizeof(fl->domain), optarg, "--domain"); break;
		case 's':
			if (fl->nselectors == MAX_FLAGS || !dkim_selector_valid(optarg))
				fatal("doctor: --selector %s: letters, digits, '-', '_' and '.' (at most %d)", optarg, MAX_FLAGS);
			fl->selectors[fl->nselectors++] = optarg;
			break;
		case 'k':
			if (!fl->nselectors || fl->keyfiles[fl->nselectors - 1])
				fatal("doctor: --dkim-key %s: give it after its --selector", optarg);
			fl->keyfiles[fl->nselectors - 1] = optarg;
			break;
		case 'i':
			if (fl->nips == MAX_FLAGS)
				fatal("doctor: at most %d --source-ip", MAX_FLAGS);
			if (!ip_arg(optarg, fl->ips[fl->nips], sizeof(fl->ips[0])))
				fatal("doctor: --source-ip %s: not a numeric IP address", optarg);
			fl->nips++;
			break;
		case 'H': name_arg(fl->helo, sizeof(fl->helo), optarg, "--helo"); break;
		case 'f': name_arg(fl->mail_from, sizeof(fl->mail_from), optarg, "--mail-from"); break;
		case 'v':
			if (!parse_uint(optarg, 0, 1000000000, &v))
				fatal("doctor: --daily-volume: a whole number of messages a day");
			fl->daily_volume = (unsigned)v;
			break;
		case 'n':
			if (fl->nservers == ARRAY_LEN(fl->servers) || !dns_server_parse(optarg, &fl->servers[fl->nservers++]))
				fatal("doctor: --dns-server %s: expected a numeric IP[:PORT] (at most 8)", optarg);
			break;
		case 'T':
			fl->timeout_ms = (int)(atof(optarg) * 1000);
			if (fl->timeout_ms <= 0 || fl->timeout_ms > 60000)
				fatal("doctor: --timeout: more than 0 and at most 60 seconds");
			break;
		case 'j': fl->json = true; break;
		case 'c': fl->config = optarg; break;
		case 'm': fl->message = optarg; break;
		case 'S':
			if (!ip_arg(optarg, fl->check_spf, sizeof(fl->check_spf)))
				fatal("doctor: --check-spf %s: not a numeric IP address", optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		fatal("doctor: unexpected argument '%s' (see sluice doctor --help)", argv[optind]);
	if (fl->domain[0] && !dns_name_valid(fl->domain))
		fatal("doctor: --domain %s: not a domain name", fl->domain);
	if (!fl->check_spf[0] && !fl->message && !fl->domain[0] && !fl->config)
		fatal("doctor: give --domain D or -c CONFIG (or --message FILE, --check-spf IP); see --help");
	if (fl->check_spf[0] && !fl->mail_from[0])
		fatal("doctor: --check-spf needs --mail-from");
}

/* ---- output ---- */

static void emit(const struct doctor_report *r, bool json)
{
	if (json) {
		struct buf b = { 0 };
		report_json(r, &b);
		fwrite(b.p, 1, b.len, stdout);
		buf_free(&b);
	} else {
		report_table(r, stdout, isatty(STDOUT_FILENO) && !getenv("NO_COLOR"));
	}
	fflush(stdout);
}

/* ---- the domains of a configuration ---- */

struct domain_plan {
	struct doctor_domain d;
	struct doctor_dkim *dkim;
	struct doctor_ip *ips;
};

static bool listed(char **names, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcasecmp(names[i], name))
			return true;
	return false;
}

/* The sending domains of a configuration (malloc'd, pointing into cfg):
 * those it signs for, then those its pool rules name. */
static char **config_domains(const struct config *cfg, unsigned *n)
{
	char **out = xcalloc(cfg->ndkim_keys + cfg->npool_rules + 1, sizeof(*out));
	*n = 0;
	for (unsigned i = 0; i < cfg->ndkim_keys; i++)
		if (!listed(out, *n, cfg->dkim_keys[i].domain))
			out[(*n)++] = cfg->dkim_keys[i].domain;
	for (unsigned i = 0; i < cfg->npool_rules; i++)
		if (cfg->pool_rules[i].sender_domain && !listed(out, *n, cfg->pool_rules[i].sender_domain))
			out[(*n)++] = cfg->pool_rules[i].sender_domain;
	return out;
}

/* What mail from domain uses in cfg: its keys (else the fallback's
 * signing domain), the source IPs of its pool with their EHLO names. */
static void plan_from_config(const struct config *cfg, const char *domain, unsigned daily, struct domain_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->dkim = xcalloc(cfg->ndkim_keys + 1, sizeof(*p->dkim));
	p->ips = xcalloc(cfg->nsources + 1, sizeof(*p->ips));
	p->d.domain = domain;
	p->d.dkim = p->dkim;
	p->d.ips = p->ips;
	p->d.daily_volume = daily;
	for (unsigned i = 0; i < cfg->ndkim_keys; i++)
		if (!strcasecmp(cfg->dkim_keys[i].domain, domain))
			p->dkim[p->d.ndkim++] = (struct doctor_dkim){ cfg->dkim_keys[i].selector, &cfg->dkim_keys[i] };
	p->d.dkim_domain = p->d.ndkim ? domain : cfg->dkim_fallback;
	char sender[DNS_NAME_MAX + 16];
	snprintf(sender, sizeof(sender), "postmaster@%s", domain);
	int pool = config_pool_for(cfg, NULL, NULL, sender);
	for (unsigned i = 0; i < cfg->nsources; i++) {
		bool member = pool < 0;
		for (unsigned m = 0; pool >= 0 && m < cfg->pools[pool].nmembers; m++)
			member = member || cfg->pools[pool].members[m].source == i;
		if (member)
			p->ips[p->d.nips++] = (struct doctor_ip){ cfg->sources[i].text,
			                                          cfg->sources[i].helo ? cfg->sources[i].helo : cfg->helo };
	}
}

static void plan_free(struct domain_plan *p)
{
	free(p->dkim);
	free(p->ips);
}

/* Checks one domain, its questions bounded by DOMAIN_TIME_MS. */
static void check_one(struct dns_sync *dns, const struct doctor_domain *d, struct doctor_report *r)
{
	report_init(r, "domain", d->domain);
	dns_sync_deadline(dns, now_mono_ms() + DOMAIN_TIME_MS);
	doctor_check_domain(dns, d, r);
	dns_sync_deadline(dns, 0);
}

/* Checks every domain of cfg and prints each report. Returns the number
 * of domains with a failure. */
static unsigned check_config(const struct config *cfg, struct dns_sync *dns, unsigned daily, bool json)
{
	unsigned n, failed = 0;
	char **domains = config_domains(cfg, &n);
	for (unsigned i = 0; i < n; i++) {
		struct domain_plan p;
		plan_from_config(cfg, domains[i], daily, &p);
		struct doctor_report r;
		check_one(dns, &p.d, &r);
		emit(&r, json);
		failed += report_failed(&r);
		report_free(&r);
		plan_free(&p);
	}
	free(domains);
	return failed;
}

/* ---- --check-spf ---- */

static int check_spf_only(const struct flags *fl, struct dns_sync *dns)
{
	struct spf_query q = { fl->check_spf, fl->mail_from, fl->helo[0] ? fl->helo : NULL, dns_sync_ask_cb, dns };
	struct spf_eval e;
	dns_sync_deadline(dns, now_mono_ms() + SPF_TIME_MS);
	spf_check_host(&q, &e);
	struct buf b = { 0 };
	buf_adds(&b, "{\"ip\":");
	json_add_cstr(&b, fl->check_spf);
	buf_adds(&b, ",\"sender\":");
	json_add_cstr(&b, fl->mail_from);
	buf_adds(&b, ",\"domain\":");
	json_add_cstr(&b, e.domain);
	buf_printf(&b, ",\"result\":\"%s\",\"lookups\":%u,\"void_lookups\":%u,\"detail\":", spf_result_name(e.result),
	           e.lookups, e.voids);
	json_add_cstr(&b, e.detail);
	buf_adds(&b, "}\n");
	fwrite(b.p, 1, b.len, stdout);
	buf_free(&b);
	return 0;
}

/* ---- the command ---- */

static struct config *load_config(const char *path)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	char *argv[] = { "run", "-c", (char *)path, NULL };
	config_from_run_args(cfg, 3, argv);
	return cfg;
}

/* The resolver: --dns-server, else the configuration's, else
 * /etc/resolv.conf (whose timeout applies unless --timeout is given). */
static struct dns_sync *open_dns(struct flags *fl, const struct config *cfg)
{
	const struct dns_server *servers = fl->servers;
	unsigned nservers = fl->nservers, attempts = 2;
	int timeout_ms = 3000;
	if (!nservers && cfg) {
		servers = cfg->dns_servers;
		nservers = cfg->ndns_servers;
		timeout_ms = cfg->dns_timeout_ms;
		attempts = cfg->dns_attempts;
	}
	if (!nservers) {
		if (!dns_read_resolv_conf("/etc/resolv.conf", fl->servers, ARRAY_LEN(fl->servers), &fl->nservers,
		                          &timeout_ms, &attempts))
			fatal("doctor: no --dns-server and no nameserver in /etc/resolv.conf");
		nservers = fl->nservers;
	}
	if (fl->timeout_ms)
		timeout_ms = fl->timeout_ms;
	if (timeout_ms <= 0)
		timeout_ms = 3000;
	if (!attempts)
		attempts = 2;
	struct dns_sync *dns = dns_sync_new(servers, nservers, timeout_ms, attempts);
	if (!dns)
		fatal("doctor: the kernel refuses an io_uring ring (sluice's resolver runs on one)");
	return dns;
}

static int lint_message(const struct flags *fl, const struct config *cfg)
{
	unsigned nd = 0;
	const char **domains = xcalloc((cfg ? cfg->ndkim_keys : 0) + 1, sizeof(*domains));
	for (unsigned i = 0; cfg && i < cfg->ndkim_keys; i++)
		domains[nd++] = cfg->dkim_keys[i].domain;
	if (fl->domain[0] && fl->nselectors)
		domains[nd++] = fl->domain;
	struct doctor_report r;
	report_init(&r, "message", fl->message);
	doctor_check_message(fl->message, domains, nd, &r);
	emit(&r, fl->json);
	int status = report_failed(&r);
	report_free(&r);
	free(domains);
	return status;
}

static int check_flag_domain(struct flags *fl, struct dns_sync *dns)
{
	struct dkim_key keys[MAX_FLAGS];
	struct doctor_dkim dk[MAX_FLAGS];
	struct doctor_ip ips[MAX_FLAGS];
	memset(keys, 0, sizeof(keys));
	for (unsigned i = 0; i < fl->nselectors; i++) {
		char err[300], warn[300] = "";
		dk[i] = (struct doctor_dkim){ fl->selectors[i], NULL };
		if (!fl->keyfiles[i])
			continue;
		if (!dkim_key_load(&keys[i], fl->keyfiles[i], err, sizeof(err), warn, sizeof(warn)))
			fatal("doctor: --dkim-key %s: %s", fl->keyfiles[i], err);
		dk[i].key = &keys[i];
	}
	for (unsigned i = 0; i < fl->nips; i++)
		ips[i] = (struct doctor_ip){ fl->ips[i], fl->helo[0] ? fl->helo : NULL };
	struct doctor_domain d = { fl->domain, dk, fl->nselectors, ips, fl->nips, fl->mail_from[0] ? fl->mail_from : NULL,
	                           fl->nselectors ? fl->domain : NULL, fl->daily_volume };
	struct doctor_report r;
	check_one(dns, &d, &r);
	emit(&r, fl->json);
	int status = report_failed(&r);
	report_free(&r);
	for (unsigned i = 0; i < fl->nselectors; i++)
		if (dk[i].key)
			dkim_key_free(&keys[i]);
	return status;
}

int doctor_main(int argc, char **argv)
{
	struct flags fl = { .daily_volume = DEFAULT_DAILY_VOLUME };
	parse_flags(argc, argv, &fl);
	struct config *cfg = fl.config ? load_config(fl.config) : NULL;
	int status;
	if (fl.message && !fl.check_spf[0]) {
		status = lint_message(&fl, cfg); /* no DNS: no resolver */
	} else {
		struct dns_sync *dns = open_dns(&fl, cfg);
		if (fl.check_spf[0]) {
			status = check_spf_only(&fl, dns);
		} else if (fl.domain[0]) {
			status = check_flag_domain(&fl, dns);
		} else {
			unsigned n;
			free(config_domains(cfg, &n));
			if (!n)
				fatal("doctor: %s names no sending domain (no dkim keys, no pool-rules sender-domain)", fl.config);
			status = check_config(cfg, dns, fl.daily_volume, fl.json) > 0;
		}
		dns_sync_free(dns);
	}
	if (cfg) {
		config_free(cfg);
		free(cfg);
	}
	return status;
}

/* ---- at the start of `sluice run` ---- */

/* What the background checks need, copied: the run's configuration may
 * be replaced (SIGHUP) and freed while they run. */
struct at_start {
	struct dns_server servers[8];
	unsigned nservers, attempts, ndomains;
	int timeout_ms;
	struct domain_plan *plans;
	struct dkim_key *keys;    /* the copies the plans point at */
	unsigned nkeys;
	atomic_bool done;
};

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static struct at_start *at_start_copy(const struct config *cfg)
{
	struct at_start *a = xcalloc(1, sizeof(*a));
	memcpy(a->servers, cfg->dns_servers, sizeof(a->servers));
	a->nservers = cfg->ndns_servers;
	a->attempts = cfg->dns_attempts;
	a->timeout_ms = cfg->dns_timeout_ms;
	char **domains = config_domains(cfg, &a->ndomains);
	a->plans = xcalloc(a->ndomains, sizeof(*a->plans));
	a->keys = xcalloc(cfg->ndkim_keys + 1, sizeof(*a->keys));
	for (unsigned i = 0; i < a->ndomains; i++) {
		struct domain_plan *p = &a->plans[i];
		plan_from_config(cfg, domains[i], cfg->doctor_daily_volume, p);
		p->d.domain = xstrdup(p->d.domain);
		p->d.dkim_domain = dup_or_null(p->d.dkim_domain);
		for (unsigned j = 0; j < p->d.ndkim; j++) {
			struct dkim_key *k = &a->keys[a->nkeys++];
			const struct dkim_key *from = p->dkim[j].key;
			*k = (struct dkim_key){ xstrdup(from->domain), xstrdup(from->selector), xstrdup(from->path),
			                        from->alg, from->bits, xstrndup(from->pem, from->pem_len), from->pem_len };
			p->dkim[j] = (struct doctor_dkim){ k->selector, k };
		}
		for (unsigned j = 0; j < p->d.nips; j++)
			p->ips[j] = (struct doctor_ip){ xstrdup(p->ips[j].ip), dup_or_null(p->ips[j].helo) };
	}
	free(domains);
	return a;
}

static void at_start_free(struct at_start *a)
{
	for (unsigned i = 0; i < a->ndomains; i++) {
		struct domain_plan *p = &a->plans[i];
		free((char *)p->d.domain);
		free((char *)p->d.dkim_domain);
		for (unsigned j = 0; j < p->d.nips; j++) {
			free((char *)p->ips[j].ip);
			free((char *)p->ips[j].helo);
		}
		plan_free(p);
	}
	for (unsigned i = 0; i < a->nkeys; i++)
		dkim_key_free(&a->keys[i]);
	free(a->plans);
	free(a->keys);
	free(a);
}

/* Runs the checks; each failure is a warning line on stderr. Returns the
 * number of domains with a failure (1 when they could not run). */
static unsigned at_start_run(struct at_start *a)
{
	struct dns_sync *dns = dns_sync_new(a->servers, a->nservers, a->timeout_ms, a->attempts);
	if (!dns) {
		fprintf(stderr, "sluice: warning: doctor: the kernel refuses an io_uring ring: no checks at start\n");
		return 1;
	}
	unsigned failed = 0;
	for (unsigned i = 0; i < a->ndomains; i++) {
		struct doctor_report r;
		check_one(dns, &a->plans[i].d, &r);
		report_warnings(&r, stderr, "sluice: warning: doctor: ");
		failed += report_failed(&r);
		report_free(&r);
	}
	dns_sync_free(dns);
	return failed;
}

static void *at_start_thread(void *arg)
{
	struct at_start *a = arg;
	at_start_run(a);
	atomic_store(&a->done, true);
	return NULL;
}

static pthread_t at_start_tid;
static struct at_start *at_start_state; /* while the thread may run */

bool doctor_at_start(const struct config *cfg)
{
	unsigned n;
	free(config_domains(cfg, &n));
	if (!strcmp(cfg->doctor_at_start, "off") || !n)
		return true;
	for (unsigned i = 0; i < cfg->nroutes; i++)
		if (!strcmp(cfg->routes[i].domain, "*"))
			return true; /* a smarthost: this run asks no DNS */
	struct at_start *a = at_start_copy(cfg);
	if (!strcmp(cfg->doctor_at_start, "refuse")) {
		unsigned failed = at_start_run(a);
		at_start_free(a);
		return failed == 0;
	}
	/* warn: in the background; delivery does not wait for it */
	if (pthread_create(&at_start_tid, NULL, at_start_thread, a) != 0) {
		warnx_("doctor: cannot start the checks at start");
		at_start_free(a);
		return true;
	}
	at_start_state = a;
	return true;
}

void doctor_at_start_end(void)
{
	struct at_start *a = at_start_state;
	if (!a)
		return;
	for (int waited = 0; !atomic_load(&a->done) && waited < AT_START_WAIT_MS; waited += 20)
		usleep(20000);
	if (!atomic_load(&a->done)) {
		fprintf(stderr, "sluice: warning: doctor: the checks at start did not finish (slow DNS?); "
		                "run sluice doctor -c for them\n");
		return; /* the process ends with the thread */
	}
	pthread_join(at_start_tid, NULL);
	at_start_free(a);
	at_start_state = NULL;
}
