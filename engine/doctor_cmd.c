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
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_DAILY_VOLUME 5001 /* doctor is for bulk senders */
#define MAX_LIST 64

struct flags {
	const char *domain, *helo, *mail_from, *config, *message, *check_spf;
	const char *selectors[MAX_LIST], *keyfiles[MAX_LIST];
	unsigned nselectors;
	const char *ips[MAX_LIST];
	unsigned nips;
	struct dns_server servers[8];
	unsigned nservers;
	unsigned daily_volume;
	int timeout_ms;
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
		case 'd': fl->domain = optarg; break;
		case 's':
			if (fl->nselectors == MAX_LIST || !dkim_selector_valid(optarg))
				fatal("doctor: --selector %s: letters, digits, '-', '_' and '.' (at most %d)", optarg, MAX_LIST);
			fl->selectors[fl->nselectors++] = optarg;
			break;
		case 'k':
			if (!fl->nselectors || fl->keyfiles[fl->nselectors - 1])
				fatal("doctor: --dkim-key %s: give it after its --selector", optarg);
			fl->keyfiles[fl->nselectors - 1] = optarg;
			break;
		case 'i':
			if (fl->nips == MAX_LIST)
				fatal("doctor: at most %d --source-ip", MAX_LIST);
			fl->ips[fl->nips++] = optarg;
			break;
		case 'H': fl->helo = optarg; break;
		case 'f': fl->mail_from = optarg; break;
		case 'v':
			if (!parse_uint(optarg, 0, 1000000000, &v))
				fatal("doctor: --daily-volume: a whole number of messages a day");
			fl->daily_volume = (unsigned)v;
			break;
		case 'n':
			if (fl->nservers == ARRAY_LEN(fl->servers) || !dns_server_parse(optarg, &fl->servers[fl->nservers++]))
				fatal("doctor: --dns-server %s: expected a numeric IP[:PORT] (at most 8)", optarg);
			break;
		case 'T': fl->timeout_ms = (int)(atof(optarg) * 1000); break;
		case 'j': fl->json = true; break;
		case 'c': fl->config = optarg; break;
		case 'm': fl->message = optarg; break;
		case 'S': fl->check_spf = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		fatal("doctor: unexpected argument '%s' (see sluice doctor --help)", argv[optind]);
	if (fl->timeout_ms <= 0)
		fatal("doctor: --timeout must be positive");
	for (unsigned i = 0; i < fl->nips; i++) {
		char rev[80];
		if (!dns_ptr_name(fl->ips[i], rev, sizeof(rev)))
			fatal("doctor: --source-ip %s: not a numeric IP address", fl->ips[i]);
	}
	if (fl->domain && !dns_name_valid(fl->domain))
		fatal("doctor: --domain %s: not a domain name", fl->domain);
	if (!fl->check_spf && !fl->message && !fl->domain && !fl->config)
		fatal("doctor: give --domain D or -c CONFIG (or --message FILE, --check-spf IP); see --help");
	if (fl->check_spf && !fl->mail_from)
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
	struct doctor_dkim dkim[MAX_LIST];
	struct doctor_ip ips[MAX_LIST];
};

static bool listed(char **names, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcasecmp(names[i], name))
			return true;
	return false;
}

/* The sending domains of a configuration: those it signs for, then those
 * its pool rules name. */
static unsigned config_domains(const struct config *cfg, char **out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < cfg->ndkim_keys && n < max; i++)
		if (!listed(out, n, cfg->dkim_keys[i].domain))
			out[n++] = cfg->dkim_keys[i].domain;
	for (unsigned i = 0; i < cfg->npool_rules && n < max; i++)
		if (cfg->pool_rules[i].sender_domain && !listed(out, n, cfg->pool_rules[i].sender_domain))
			out[n++] = cfg->pool_rules[i].sender_domain;
	return n;
}

/* What mail from domain uses in cfg: its keys (else the fallback's
 * signing domain), the source IPs of its pool with their EHLO names. */
static void plan_from_config(const struct config *cfg, const char *domain, unsigned daily, struct domain_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->d.domain = domain;
	p->d.dkim = p->dkim;
	p->d.ips = p->ips;
	p->d.daily_volume = daily;
	for (unsigned i = 0; i < cfg->ndkim_keys && p->d.ndkim < MAX_LIST; i++)
		if (!strcasecmp(cfg->dkim_keys[i].domain, domain))
			p->dkim[p->d.ndkim++] = (struct doctor_dkim){ cfg->dkim_keys[i].selector, &cfg->dkim_keys[i] };
	p->d.dkim_domain = p->d.ndkim ? domain : cfg->dkim_fallback;
	char sender[DNS_NAME_MAX + 16];
	snprintf(sender, sizeof(sender), "postmaster@%s", domain);
	int pool = config_pool_for(cfg, NULL, NULL, sender);
	if (pool >= 0) {
		const struct pool *pl = &cfg->pools[pool];
		for (unsigned i = 0; i < pl->nmembers && p->d.nips < MAX_LIST; i++) {
			const struct source_ip *s = &cfg->sources[pl->members[i].source];
			p->ips[p->d.nips++] = (struct doctor_ip){ s->text, s->helo ? s->helo : cfg->helo };
		}
	} else {
		for (unsigned i = 0; i < cfg->nsources && p->d.nips < MAX_LIST; i++)
			p->ips[p->d.nips++] = (struct doctor_ip){ cfg->sources[i].text,
			                                          cfg->sources[i].helo ? cfg->sources[i].helo : cfg->helo };
	}
}

/* Checks every domain of cfg and prints each report. Returns the number
 * of domains with a failure. */
static unsigned check_config(const struct config *cfg, struct dns_sync *dns, unsigned daily, bool json)
{
	char *domains[MAX_LIST];
	unsigned n = config_domains(cfg, domains, MAX_LIST), failed = 0;
	for (unsigned i = 0; i < n; i++) {
		struct domain_plan *p = xcalloc(1, sizeof(*p));
		plan_from_config(cfg, domains[i], daily, p);
		struct doctor_report r;
		report_init(&r, "domain", domains[i]);
		doctor_check_domain(dns, &p->d, &r);
		emit(&r, json);
		failed += report_failed(&r);
		report_free(&r);
		free(p);
	}
	return failed;
}

/* ---- --check-spf ---- */

static void spf_ask(void *arg, const char *name, uint16_t type, struct dns_answer *out, char *err, size_t len)
{
	dns_sync_ask(arg, name, type, out, err, len);
}

static int check_spf_only(const struct flags *fl, struct dns_sync *dns)
{
	struct spf_query q = { fl->check_spf, fl->mail_from, fl->helo, spf_ask, dns };
	struct spf_eval e;
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

int doctor_main(int argc, char **argv)
{
	struct flags fl = { .daily_volume = DEFAULT_DAILY_VOLUME, .timeout_ms = 3000 };
	parse_flags(argc, argv, &fl);
	struct config *cfg = fl.config ? load_config(fl.config) : NULL;
	const struct dns_server *servers = fl.servers;
	unsigned nservers = fl.nservers;
	if (!nservers && cfg) {
		servers = cfg->dns_servers;
		nservers = cfg->ndns_servers;
	}
	if (!nservers && !dns_read_resolv_conf("/etc/resolv.conf", fl.servers, ARRAY_LEN(fl.servers), &fl.nservers,
	                                       &fl.timeout_ms, &(unsigned){ 0 }))
		fatal("doctor: no --dns-server and no nameserver in /etc/resolv.conf");
	if (!nservers)
		nservers = fl.nservers;
	struct dns_sync *dns = dns_sync_new(servers, nservers, fl.timeout_ms, 2);
	int status = 0;
	/* the DKIM keys of flags, loaded */
	struct dkim_key keys[MAX_LIST];
	struct doctor_dkim dk[MAX_LIST];
	memset(keys, 0, sizeof(keys));
	for (unsigned i = 0; i < fl.nselectors; i++) {
		char err[300], warn[300] = "";
		dk[i] = (struct doctor_dkim){ fl.selectors[i], NULL };
		if (!fl.keyfiles[i])
			continue;
		if (!dkim_key_load(&keys[i], fl.keyfiles[i], err, sizeof(err), warn, sizeof(warn)))
			fatal("doctor: --dkim-key %s: %s", fl.keyfiles[i], err);
		dk[i].key = &keys[i];
	}
	if (fl.check_spf) {
		status = check_spf_only(&fl, dns);
	} else if (fl.message) {
		const char *domains[MAX_LIST];
		unsigned nd = 0;
		if (cfg)
			for (unsigned i = 0; i < cfg->ndkim_keys && nd < MAX_LIST; i++)
				domains[nd++] = cfg->dkim_keys[i].domain;
		if (fl.domain && fl.nselectors)
			domains[nd++] = fl.domain;
		struct doctor_report r;
		report_init(&r, "message", fl.message);
		doctor_check_message(fl.message, domains, nd, &r);
		emit(&r, fl.json);
		status = report_failed(&r);
		report_free(&r);
	} else if (fl.domain) {
		struct doctor_ip ips[MAX_LIST];
		for (unsigned i = 0; i < fl.nips; i++)
			ips[i] = (struct doctor_ip){ fl.ips[i], fl.helo };
		struct doctor_domain d = { fl.domain, dk, fl.nselectors, ips, fl.nips, fl.mail_from,
		                           fl.nselectors ? fl.domain : NULL, fl.daily_volume };
		struct doctor_report r;
		report_init(&r, "domain", fl.domain);
		doctor_check_domain(dns, &d, &r);
		emit(&r, fl.json);
		status = report_failed(&r);
		report_free(&r);
	} else {
		char *domains[MAX_LIST];
		if (!config_domains(cfg, domains, MAX_LIST))
			fatal("doctor: %s names no sending domain (no dkim keys, no pool-rules sender-domain)", fl.config);
		status = check_config(cfg, dns, fl.daily_volume, fl.json) > 0;
	}
	for (unsigned i = 0; i < fl.nselectors; i++)
		if (dk[i].key)
			dkim_key_free(&keys[i]);
	dns_sync_free(dns);
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
	struct dkim_key *keys;    /* [ndomains * MAX_LIST] */
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
	char *domains[MAX_LIST];
	a->ndomains = config_domains(cfg, domains, MAX_LIST);
	a->plans = xcalloc(a->ndomains, sizeof(*a->plans));
	a->keys = xcalloc((size_t)a->ndomains * MAX_LIST, sizeof(*a->keys));
	for (unsigned i = 0; i < a->ndomains; i++) {
		struct domain_plan *p = &a->plans[i];
		plan_from_config(cfg, domains[i], cfg->doctor_daily_volume, p);
		p->d.domain = xstrdup(p->d.domain);
		p->d.dkim_domain = dup_or_null(p->d.dkim_domain);
		for (unsigned j = 0; j < p->d.ndkim; j++) {
			struct dkim_key *k = &a->keys[i * MAX_LIST + j];
			const struct dkim_key *from = p->dkim[j].key;
			*k = (struct dkim_key){ xstrdup(from->domain), xstrdup(from->selector), xstrdup(from->path),
			                        from->alg, from->bits, xstrndup(from->pem, from->pem_len), from->pem_len };
			p->dkim[j] = (struct doctor_dkim){ k->selector, k };
		}
		for (unsigned j = 0; j < p->d.nips; j++)
			p->ips[j] = (struct doctor_ip){ xstrdup(p->ips[j].ip), dup_or_null(p->ips[j].helo) };
	}
	return a;
}

static void at_start_free(struct at_start *a)
{
	for (unsigned i = 0; i < a->ndomains; i++) {
		struct domain_plan *p = &a->plans[i];
		free((char *)p->d.domain);
		free((char *)p->d.dkim_domain);
		for (unsigned j = 0; j < p->d.ndkim; j++)
			dkim_key_free(&a->keys[i * MAX_LIST + j]);
		for (unsigned j = 0; j < p->d.nips; j++) {
			free((char *)p->ips[j].ip);
			free((char *)p->ips[j].helo);
		}
	}
	free(a->plans);
	free(a->keys);
	free(a);
}

/* Runs the checks; each failure is a warning line on stderr. Returns the
 * number of domains with a failure. */
static unsigned at_start_run(struct at_start *a)
{
	struct dns_sync *dns = dns_sync_new(a->servers, a->nservers, a->timeout_ms, a->attempts);
	unsigned failed = 0;
	for (unsigned i = 0; i < a->ndomains; i++) {
		struct doctor_report r;
		report_init(&r, "domain", a->plans[i].d.domain);
		doctor_check_domain(dns, &a->plans[i].d, &r);
		for (unsigned j = 0; j < r.n; j++)
			if (r.c[j].status == CHECK_FAIL)
				fprintf(stderr, "sluice: warning: doctor: %s %s %s: %s%s%s\n", r.about, r.c[j].name,
				        r.c[j].subject, r.c[j].detail.len ? r.c[j].detail.p : "",
				        r.c[j].fix.len ? "; fix: " : "", r.c[j].fix.len ? r.c[j].fix.p : "");
		failed += report_failed(&r);
		report_free(&r);
	}
	dns_sync_free(dns);
	return failed;
}

static void *at_start_thread(void *arg)
{
	at_start_run(arg);
	at_start_free(arg);
	return NULL;
}

bool doctor_at_start(const struct config *cfg)
{
	char *domains[1];
	if (!strcmp(cfg->doctor_at_start, "off") || !config_domains(cfg, domains, 1))
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
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, at_start_thread, a) != 0) {
		warnx_("doctor: cannot start the checks at start");
		at_start_free(a);
	}
	pthread_attr_destroy(&attr);
	return true;
}
