/* engine/config.c - defaults, config file (libconfig, the only module that
 * uses it) and `sluice run` flags, in that order of precedence. */
#define _GNU_SOURCE
#include "config.h"
#include "util.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <libconfig.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A configuration error: fatal at start; during a reload (SIGHUP) it
 * returns to config_reload(), which keeps the running configuration. */
static jmp_buf *reload_jmp;
static char reload_error[512];
static config_t *loading;        /* the libconfig tree being read, if any */

__attribute__((format(printf, 1, 2)))
static _Noreturn void config_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reload_error, sizeof(reload_error), fmt, ap);
	va_end(ap);
	if (reload_jmp)
		longjmp(*reload_jmp, 1);
	fatal("%s", reload_error);
}

unsigned config_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->spool = xstrdup("/var/spool/sluice");
	cfg->helo = NULL;
	cfg->max_connections = 20;
	cfg->max_per_connection = 1000;
	cfg->max_rcpt_per_txn = 100;
	cfg->retry_interval_ms = 300000;
	cfg->retry_max_ms = 4 * 3600 * 1000;
	cfg->bounce_after_s = 4 * 86400;
	cfg->dest_failures = 3;
	cfg->dest_backoff_ms = 60000;
	cfg->dest_backoff_max_ms = 1800000;
	cfg->use_chunking = true;
	cfg->use_pipelining = true;
	cfg->inflight_per_shard = 4096;
	cfg->inflight_bytes_per_shard = 64u << 20;
	cfg->stop_timeout_s = 10;
	cfg->log_fsync = true;
	cfg->max_message_bytes = 64u << 20;
	cfg->dns_timeout_ms = 2000;
	cfg->dns_attempts = 2;
	cfg->dns_cache_size = 20000;
	cfg->smtp_port = 25;
	cfg->timeouts = (struct smtp_timeouts){
		.connect = 30000, .banner = 300000, .ehlo = 300000, .mail = 300000,
		.rcpt = 300000, .data = 120000, .data_block = 180000, .dot = 600000,
		.quit = 10000, .idle = 5000,
	};
}

static void routes_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nroutes; i++) {
		free(cfg->routes[i].domain);
		free(cfg->routes[i].host);
		free(cfg->routes[i].label);
	}
	cfg->nroutes = 0;
}

static void mx_groups_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nmx_groups; i++) {
		free(cfg->mx_groups[i].pattern);
		free(cfg->mx_groups[i].group);
	}
	free(cfg->mx_groups);
	cfg->mx_groups = NULL;
	cfg->nmx_groups = 0;
}

static void dns_server_add(struct config *cfg, const char *spec)
{
	if (cfg->ndns_servers == ARRAY_LEN(cfg->dns_servers))
		config_fail("dns servers: at most %zu", ARRAY_LEN(cfg->dns_servers));
	if (!dns_server_parse(spec, &cfg->dns_servers[cfg->ndns_servers]))
		config_fail("DNS server '%s': expected a numeric IP[:PORT] (e.g. 127.0.0.1:53, [::1]:53)", spec);
	cfg->ndns_servers++;
}

/* IPv6 is worth asking for when the machine has a route for it (a UDP
 * connect only looks the route up; nothing is sent). */
static bool ipv6_routable(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons(25) };
	inet_pton(AF_INET6, "2001:db8::1", &sa.sin6_addr);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void dkim_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->ndkim_keys; i++)
		dkim_key_free(&cfg->dkim_keys[i]);
	cfg->ndkim_keys = 0;
}

void config_free(struct config *cfg)
{
	routes_clear(cfg);
	free(cfg->routes);
	dkim_clear(cfg);
	free(cfg->dkim_keys);
	free(cfg->dkim_fallback);
	free(cfg->dsn_spool);
	mx_groups_clear(cfg);
	free(cfg->spool);
	free(cfg->log_path);
	free(cfg->helo);
	free(cfg->config_path);
	memset(cfg, 0, sizeof(*cfg));
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = v ? xstrdup(v) : NULL;
}

static const char *route_add(struct config *cfg, const char *domain, const char *host, long port)
{
	struct route r;
	memset(&r, 0, sizeof(r));
	if (!*domain)
		return "empty domain";
	if (port < 1 || port > 65535)
		return "port must be 1..65535";
	struct sockaddr_in *a4 = (struct sockaddr_in *)&r.addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r.addr;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		r.addr_len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		r.addr_len = sizeof(*a6);
	} else {
		return "host must be a numeric IPv4 or IPv6 address";
	}
	r.domain = xstrdup(domain);
	r.host = xstrdup(host);
	r.port = (uint16_t)port;
	struct buf l = { 0 };
	buf_printf(&l, strchr(host, ':') ? "[%s]:%ld" : "%s:%ld", host, port);
	r.label = l.p;
	cfg->routes = xrealloc(cfg->routes, (cfg->nroutes + 1) * sizeof(*cfg->routes));
	cfg->routes[cfg->nroutes++] = r;
	return NULL;
}

/* Loads a key for domain/selector; errors stop start-up (or a reload). */
static void dkim_add(struct config *cfg, const char *domain, const char *selector, const char *path)
{
	if (!*domain || !*selector || !*path)
		config_fail("dkim: domain, selector and key file are all needed");
	if (!dkim_selector_valid(selector))
		config_fail("dkim: selector '%s': letters, digits, '-', '_' and '.' only", selector);
	struct dkim_key k;
	memset(&k, 0, sizeof(k));
	char err[600], warn[600];
	if (!dkim_key_load(&k, path, err, sizeof(err), warn, sizeof(warn)))
		config_fail("dkim %s:%s: %s", domain, selector, err);
	if (warn[0])
		warnx_("dkim %s:%s: %s", domain, selector, warn);
	k.domain = xstrdup(domain);
	k.selector = xstrdup(selector);
	for (char *p = k.domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	cfg->dkim_keys = xrealloc(cfg->dkim_keys, (cfg->ndkim_keys + 1) * sizeof(*cfg->dkim_keys));
	cfg->dkim_keys[cfg->ndkim_keys++] = k;
}

static void dkim_add_spec(struct config *cfg, const char *spec)
{
	const char *c1 = strchr(spec, ':');
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c2)
		config_fail("--dkim %s: expected DOMAIN:SELECTOR:KEYFILE", spec);
	char *domain = xstrndup(spec, (size_t)(c1 - spec));
	char *selector = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1));
	dkim_add(cfg, domain, selector, c2 + 1);
	free(domain);
	free(selector);
}

const char *config_add_route(struct config *cfg, const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (!eq)
		return "expected DOMAIN=HOST:PORT";
	char *domain = xstrndup(spec, (size_t)(eq - spec));
	const char *hp = eq + 1;
	const char *colon = strrchr(hp, ':');
	const char *err = "expected DOMAIN=HOST:PORT";
	if (colon) {
		char *host;
		if (hp[0] == '[') {
			const char *rb = strchr(hp, ']');
			host = rb ? xstrndup(hp + 1, (size_t)(rb - hp - 1)) : xstrdup("");
		} else {
			host = xstrndup(hp, (size_t)(colon - hp));
		}
		long port;
		err = parse_uint(colon + 1, 1, 65535, &port) ? route_add(cfg, domain, host, port)
		                                             : "port must be 1..65535";
		free(host);
	}
	free(domain);
	return err;
}

int config_route_for(const struct config *cfg, const char *domain)
{
	int star = -1;
	for (unsigned i = 0; i < cfg->nroutes; i++) {
		if (strcmp(cfg->routes[i].domain, "*") == 0) {
			if (star < 0)
				star = (int)i;
		} else if (strcasecmp(cfg->routes[i].domain, domain) == 0) {
			return (int)i;
		}
	}
	return star;
}

/* ---- config file ---- */

static void file_uint(config_t *cf, const char *path, unsigned *dst, long min, long max)
{
	long long v;
	if (config_lookup_int64(cf, path, &v) != CONFIG_TRUE)
		return;
	if (v < min || v > max)
		config_fail("%s: %s must be %ld..%ld", config_error_file(cf) ? config_error_file(cf) : "config",
		      path, min, max);
	*dst = (unsigned)v;
}

static void file_ms(config_t *cf, const char *path, int *dst)
{
	double v;
	long long i;
	if (config_lookup_float(cf, path, &v) == CONFIG_TRUE)
		;
	else if (config_lookup_int64(cf, path, &i) == CONFIG_TRUE)
		v = (double)i;
	else
		return;
	if (v <= 0 || v > 86400)
		config_fail("config: %s must be 0..86400 seconds", path);
	*dst = (int)(v * 1000);
}

static int ipv6_set = -1;         /* dns.ipv6 from the file; -1: decide */

static void config_load_file(struct config *cfg, const char *path)
{
	config_t cf;
	config_init(&cf);
	loading = &cf;
	if (config_read_file(&cf, path) != CONFIG_TRUE)
		config_fail("%s:%d: %s", path, config_error_line(&cf), config_error_text(&cf));
	const char *s;
	if (config_lookup_string(&cf, "spool", &s) == CONFIG_TRUE)
		set_str(&cfg->spool, s);
	if (config_lookup_string(&cf, "log", &s) == CONFIG_TRUE)
		set_str(&cfg->log_path, s);
	if (config_lookup_string(&cf, "helo", &s) == CONFIG_TRUE)
		set_str(&cfg->helo, s);
	file_uint(&cf, "shards", &cfg->shards, 0, 1024);
	file_uint(&cf, "spool-workers", &cfg->spool_workers, 0, 64);
	file_uint(&cf, "delivery.max-connections", &cfg->max_connections, 1, 100000);
	file_uint(&cf, "delivery.max-per-connection", &cfg->max_per_connection, 1, 10000000);
	file_uint(&cf, "delivery.max-recipients-per-transaction", &cfg->max_rcpt_per_txn, 1, 1000);
	file_ms(&cf, "delivery.retry-interval", &cfg->retry_interval_ms);
	file_ms(&cf, "delivery.retry-max", &cfg->retry_max_ms);
	file_uint(&cf, "delivery.bounce-after", &cfg->bounce_after_s, 1, 365 * 86400);
	file_uint(&cf, "delivery.inflight-per-shard", &cfg->inflight_per_shard, 16, 1000000);
	unsigned mib = 0;
	file_uint(&cf, "delivery.inflight-mib-per-shard", &mib, 1, 1 << 20);
	if (mib)
		cfg->inflight_bytes_per_shard = (uint64_t)mib << 20;
	double d;
	if (config_lookup_float(&cf, "stop-timeout", &d) == CONFIG_TRUE)
		cfg->stop_timeout_s = d;
	int b;
	if (config_lookup_bool(&cf, "log-fsync", &b) == CONFIG_TRUE)
		cfg->log_fsync = b;
	if (config_lookup_bool(&cf, "delivery.chunking", &b) == CONFIG_TRUE)
		cfg->use_chunking = b;
	if (config_lookup_bool(&cf, "delivery.pipelining", &b) == CONFIG_TRUE)
		cfg->use_pipelining = b;
	struct smtp_timeouts *t = &cfg->timeouts;
	file_ms(&cf, "timeouts.connect", &t->connect);
	file_ms(&cf, "timeouts.banner", &t->banner);
	file_ms(&cf, "timeouts.ehlo", &t->ehlo);
	file_ms(&cf, "timeouts.mail", &t->mail);
	file_ms(&cf, "timeouts.rcpt", &t->rcpt);
	file_ms(&cf, "timeouts.data", &t->data);
	file_ms(&cf, "timeouts.data-block", &t->data_block);
	file_ms(&cf, "timeouts.dot", &t->dot);
	file_ms(&cf, "timeouts.quit", &t->quit);
	file_ms(&cf, "timeouts.idle", &t->idle);
	if (config_lookup_string(&cf, "dsn-spool", &s) == CONFIG_TRUE)
		set_str(&cfg->dsn_spool, s);
	if (config_lookup_string(&cf, "dkim-fallback-domain", &s) == CONFIG_TRUE)
		set_str(&cfg->dkim_fallback, s);
	config_setting_t *keys = config_lookup(&cf, "dkim");
	for (int i = 0; keys && i < config_setting_length(keys); i++) {
		config_setting_t *k = config_setting_get_elem(keys, (unsigned)i);
		const char *domain, *selector, *key;
		if (config_setting_lookup_string(k, "domain", &domain) != CONFIG_TRUE ||
		    config_setting_lookup_string(k, "selector", &selector) != CONFIG_TRUE ||
		    config_setting_lookup_string(k, "key", &key) != CONFIG_TRUE)
			config_fail("%s: dkim[%d] needs domain, selector and key", path, i);
		dkim_add(cfg, domain, selector, key);
	}
	config_setting_t *servers = config_lookup(&cf, "dns.servers");
	for (int i = 0; servers && i < config_setting_length(servers); i++) {
		const char *v = config_setting_get_string_elem(servers, i);
		if (!v)
			config_fail("%s: dns.servers[%d] must be a string \"IP:PORT\"", path, i);
		dns_server_add(cfg, v);
	}
	file_ms(&cf, "dns.timeout", &cfg->dns_timeout_ms);
	file_uint(&cf, "dns.attempts", &cfg->dns_attempts, 1, 10);
	file_uint(&cf, "dns.cache-size", &cfg->dns_cache_size, 16, 10000000);
	if (config_lookup_bool(&cf, "dns.ipv6", &b) == CONFIG_TRUE)
		ipv6_set = b ? 1 : 0;
	unsigned smtp_port = 0;
	file_uint(&cf, "smtp-port", &smtp_port, 1, 65535);
	if (smtp_port)
		cfg->smtp_port = (uint16_t)smtp_port;
	config_setting_t *groups = config_lookup(&cf, "mx-groups");
	for (int i = 0; groups && i < config_setting_length(groups); i++) {
		config_setting_t *g = config_setting_get_elem(groups, (unsigned)i);
		const char *name;
		config_setting_t *mx = config_setting_lookup(g, "mx");
		if (config_setting_lookup_string(g, "group", &name) != CONFIG_TRUE || !mx ||
		    !config_setting_is_array(mx))
			config_fail("%s: mx-groups[%d] needs group = \"NAME\" and mx = [\"*.pattern\", ...]", path, i);
		for (int j = 0; j < config_setting_length(mx); j++) {
			const char *pat = config_setting_get_string_elem(mx, j);
			if (!pat || !*pat)
				config_fail("%s: mx-groups[%d].mx[%d] must be a host pattern", path, i, j);
			cfg->mx_groups = xrealloc(cfg->mx_groups, (cfg->nmx_groups + 1) * sizeof(*cfg->mx_groups));
			cfg->mx_groups[cfg->nmx_groups++] = (struct mx_group_rule){ xstrdup(pat), xstrdup(name) };
		}
	}
	config_setting_t *routes = config_lookup(&cf, "routes");
	for (int i = 0; routes && i < config_setting_length(routes); i++) {
		config_setting_t *r = config_setting_get_elem(routes, (unsigned)i);
		const char *domain, *host;
		int port;
		if (config_setting_lookup_string(r, "domain", &domain) != CONFIG_TRUE ||
		    config_setting_lookup_string(r, "host", &host) != CONFIG_TRUE ||
		    config_setting_lookup_int(r, "port", &port) != CONFIG_TRUE)
			config_fail("%s: routes[%d] needs domain, host and port", path, i);
		const char *err = route_add(cfg, domain, host, port);
		if (err)
			config_fail("%s: routes[%d]: %s", path, i, err);
	}
	loading = NULL;
	config_destroy(&cf);
}

/* ---- flags ---- */

enum {
	OPT_SPOOL = 1000, OPT_ROUTE, OPT_LOG, OPT_SHARDS, OPT_MAXCONN, OPT_MAXPERCONN,
	OPT_DRAIN, OPT_MAXTIME, OPT_RETRY, OPT_HELO, OPT_TIMEOUT, OPT_NOCHUNK, OPT_NOPIPE,
	OPT_BOUNCE_AFTER, OPT_HELP, OPT_SPOOLW, OPT_STOPTIMEOUT, OPT_DKIM_FALLBACK, OPT_DSN,
	OPT_DNS, OPT_SMTPPORT, OPT_DNSTIMEOUT, OPT_DKIM,
	/* capabilities of later issues: refused until they exist */
	OPT_SOURCEIP, OPT_TLS, OPT_TLSCA, OPT_MAXRATE,
};

static const struct option run_opts[] = {
	{ "config", required_argument, 0, 'c' },
	{ "spool", required_argument, 0, OPT_SPOOL },
	{ "route", required_argument, 0, OPT_ROUTE },
	{ "log", required_argument, 0, OPT_LOG },
	{ "shards", required_argument, 0, OPT_SHARDS },
	{ "spool-workers", required_argument, 0, OPT_SPOOLW },
	{ "stop-timeout", required_argument, 0, OPT_STOPTIMEOUT },
	{ "max-connections", required_argument, 0, OPT_MAXCONN },
	{ "max-per-connection", required_argument, 0, OPT_MAXPERCONN },
	{ "drain", no_argument, 0, OPT_DRAIN },
	{ "max-time", required_argument, 0, OPT_MAXTIME },
	{ "retry-interval", required_argument, 0, OPT_RETRY },
	{ "bounce-after", required_argument, 0, OPT_BOUNCE_AFTER },
	{ "helo", required_argument, 0, OPT_HELO },
	{ "timeout", required_argument, 0, OPT_TIMEOUT },
	{ "no-chunking", no_argument, 0, OPT_NOCHUNK },
	{ "no-pipelining", no_argument, 0, OPT_NOPIPE },
	{ "help", no_argument, 0, OPT_HELP },
	{ "dns-server", required_argument, 0, OPT_DNS },
	{ "smtp-port", required_argument, 0, OPT_SMTPPORT },
	{ "dns-timeout", required_argument, 0, OPT_DNSTIMEOUT },
	{ "dkim", required_argument, 0, OPT_DKIM },
	{ "dkim-fallback-domain", required_argument, 0, OPT_DKIM_FALLBACK },
	{ "dsn-spool", required_argument, 0, OPT_DSN },
	{ "source-ip", required_argument, 0, OPT_SOURCEIP },
	{ "tls", required_argument, 0, OPT_TLS },
	{ "tls-ca", required_argument, 0, OPT_TLSCA },
	{ "max-rate", required_argument, 0, OPT_MAXRATE },
	{ 0, 0, 0, 0 },
};

static void run_usage(FILE *f)
{
	fputs("usage: sluice run [-c sluice.conf] [options]\n"
	      "Deliver the messages in SPOOL/new/ over SMTP.\n\n"
	      "  -c, --config FILE          configuration file (flags override it)\n"
	      "  --spool DIR                spool directory (new/, tmp/, active/, bad/)\n"
	      "  --route DOMAIN=HOST:PORT   send DOMAIN's mail to HOST:PORT, bypassing DNS;\n"
	      "                             DOMAIN '*' matches every domain (repeatable);\n"
	      "                             other domains go to their MX hosts (DNS)\n"
	      "  --dns-server IP[:PORT]     DNS server to ask (repeatable; default: the\n"
	      "                             nameservers of /etc/resolv.conf)\n"
	      "  --dns-timeout SECONDS      wait per DNS try (2); each server is tried twice\n"
	      "  --smtp-port N              port of MX hosts found in DNS (25)\n"
	      "  --log FILE                 accounting log (JSON lines, appended)\n"
	      "  --shards N                 delivery threads (default: online CPUs)\n"
	      "  --spool-workers N          threads that claim and remove spool files\n"
	      "                             (default: min(shards, 4))\n"
	      "  --max-connections N        connections per destination, all shards (20)\n"
	      "  --max-per-connection N     messages per connection before QUIT (1000)\n"
	      "  --drain                    deliver what is in the spool, then exit\n"
	      "  --max-time SECONDS         stop after this long (drain: exit 1 if not all final)\n"
	      "  --stop-timeout SECONDS     on SIGTERM/SIGINT, let open transactions end for\n"
	      "                             up to this long (10); the rest stays in the spool\n"
	      "  --retry-interval SECONDS   wait before the first retry (300), doubled per\n"
	      "                             attempt up to retry-max (4 h), +-10% jitter\n"
	      "  --bounce-after SECONDS     expire recipients deferred this long (345600)\n"
	      "  --helo NAME                name sent in EHLO (default: host name)\n"
	      "  --timeout SECONDS          every SMTP reply timeout (default RFC 5321's)\n"
	      "  --no-chunking              never use BDAT, even when offered\n"
	      "  --no-pipelining            never pipeline, even when offered\n"
	      "  --dkim DOMAIN:SELECTOR:KEYFILE  sign mail from DOMAIN (and its subdomains)\n"
	      "                             with this key (PEM, RSA >= 1024 bits or Ed25519);\n"
	      "                             repeatable: two keys for a domain, two signatures\n"
	      "  --dkim-fallback-domain D   sign mail from domains without keys with D's keys\n"
	      "  --dsn-spool DIR            for each message with bounced or expired recipients,\n"
	      "                             write an RFC 3464 report to its sender into DIR/new\n"
	      "                             (a spool: sluice itself can deliver it)\n"
	      "Signals: SIGTERM/SIGINT stop (open transactions end first, see --stop-timeout);\n"
	      "  SIGHUP reads the configuration again and reopens the accounting log.\n"
	      "Not built yet (refused): --source-ip,\n"
	      "  --tls (other than none), --tls-ca, --max-rate.\n", f);
}

static void refuse(const char *flag, const char *what)
{
	config_fail("%s is not available yet: %s. Nothing was sent.", flag, what);
}

static double parse_seconds(const char *flag, const char *v, double max)
{
	char *end;
	double d = strtod(v, &end);
	if (*end || !(d >= 0) || d > max)
		config_fail("%s: '%s' is not a number of seconds (0..%.0f)", flag, v, max);
	return d;
}

static unsigned parse_flag_uint(const char *flag, const char *v, long min, long max)
{
	long n;
	if (!parse_uint(v, min, max, &n))
		config_fail("%s: '%s' is not a whole number in %ld..%ld", flag, v, min, max);
	return (unsigned)n;
}

static void apply_flag(struct config *cfg, int opt, const char *arg)
{
	const char *err;
	switch (opt) {
	case 'c': break; /* read before the other flags */
	case OPT_SPOOL: set_str(&cfg->spool, arg); break;
	case OPT_ROUTE:
		if ((err = config_add_route(cfg, arg)))
			config_fail("--route %s: %s", arg, err);
		break;
	case OPT_LOG: set_str(&cfg->log_path, arg); break;
	case OPT_SHARDS: cfg->shards = parse_flag_uint("--shards", arg, 1, 1024); break;
	case OPT_SPOOLW: cfg->spool_workers = parse_flag_uint("--spool-workers", arg, 1, 64); break;
	case OPT_STOPTIMEOUT: cfg->stop_timeout_s = parse_seconds("--stop-timeout", arg, 3600); break;
	case OPT_MAXCONN: cfg->max_connections = parse_flag_uint("--max-connections", arg, 1, 100000); break;
	case OPT_MAXPERCONN: cfg->max_per_connection = parse_flag_uint("--max-per-connection", arg, 1, 10000000); break;
	case OPT_DRAIN: cfg->drain = true; break;
	case OPT_MAXTIME: cfg->max_time_s = parse_seconds("--max-time", arg, 1e7); break;
	case OPT_RETRY: cfg->retry_interval_ms = (int)(parse_seconds("--retry-interval", arg, 86400) * 1000); break;
	case OPT_BOUNCE_AFTER: cfg->bounce_after_s = (unsigned)parse_seconds("--bounce-after", arg, 365 * 86400.0); break;
	case OPT_HELO: set_str(&cfg->helo, arg); break;
	case OPT_TIMEOUT: {
		int ms = (int)(parse_seconds("--timeout", arg, 86400) * 1000);
		if (ms <= 0)
			config_fail("--timeout must be positive");
		struct smtp_timeouts *t = &cfg->timeouts;
		t->connect = t->banner = t->ehlo = t->mail = t->rcpt = ms;
		t->data = t->data_block = t->dot = t->quit = ms;
		break;
	}
	case OPT_NOCHUNK: cfg->use_chunking = false; break;
	case OPT_NOPIPE: cfg->use_pipelining = false; break;
	case OPT_DNS: dns_server_add(cfg, arg); break;
	case OPT_SMTPPORT: cfg->smtp_port = (uint16_t)parse_flag_uint("--smtp-port", arg, 1, 65535); break;
	case OPT_DNSTIMEOUT: {
		int ms = (int)(parse_seconds("--dns-timeout", arg, 60) * 1000);
		if (ms <= 0)
			config_fail("--dns-timeout must be positive");
		cfg->dns_timeout_ms = ms;
		break;
	}
	case OPT_DKIM: dkim_add_spec(cfg, arg); break;
	case OPT_DKIM_FALLBACK: set_str(&cfg->dkim_fallback, arg); break;
	case OPT_DSN: set_str(&cfg->dsn_spool, arg); break;
	case OPT_SOURCEIP: refuse("--source-ip", "source IP pools are not built"); break;
	case OPT_TLS:
		if (strcmp(arg, "none") != 0)
			refuse("--tls", "STARTTLS is not built; only --tls none works");
		break;
	case OPT_TLSCA: refuse("--tls-ca", "STARTTLS is not built"); break;
	case OPT_MAXRATE: refuse("--max-rate", "rate shaping is not built"); break;
	case OPT_HELP: run_usage(stdout); exit(0);
	default: run_usage(stderr); exit(2);
	}
}

void config_from_run_args(struct config *cfg, int argc, char **argv)
{
	config_defaults(cfg);
	ipv6_set = -1;
	/* First pass: the config file, so that flags override it. */
	int opt;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "c:", run_opts, NULL)) != -1)
		if (opt == 'c')
			set_str(&cfg->config_path, optarg);
	if (cfg->config_path)
		config_load_file(cfg, cfg->config_path);
	/* Routes and keys from flags replace the file's, as any flag does. */
	bool flag_routes = false, flag_keys = false, flag_dns = false;
	optind = 1;
	opterr = 1;
	while ((opt = getopt_long(argc, argv, "c:", run_opts, NULL)) != -1) {
		if (opt == OPT_ROUTE && !flag_routes) {
			flag_routes = true;
			routes_clear(cfg);
		}
		if (opt == OPT_DNS && !flag_dns) {
			flag_dns = true;
			cfg->ndns_servers = 0;
		}
		if (opt == OPT_DKIM && !flag_keys) {
			flag_keys = true;
			dkim_clear(cfg);
		}
		apply_flag(cfg, opt, optarg);
	}
	if (optind < argc)
		config_fail("run: unexpected argument '%s' (see sluice run --help)", argv[optind]);
	if (cfg->ndns_servers == 0) {
		unsigned n = 0;
		dns_read_resolv_conf("/etc/resolv.conf", cfg->dns_servers, ARRAY_LEN(cfg->dns_servers), &n,
		                     &cfg->dns_timeout_ms, &cfg->dns_attempts);
		cfg->ndns_servers = n;
		if (n == 0) /* as the C library does */
			dns_server_add(cfg, "127.0.0.1:53");
	}
	cfg->ipv6 = ipv6_set >= 0 ? ipv6_set == 1 : ipv6_routable();
	if (cfg->shards == 0)
		cfg->shards = config_online_cpus();
	if (cfg->spool_workers == 0)
		cfg->spool_workers = cfg->shards < 4 ? cfg->shards : 4;
	if (cfg->spool_workers > cfg->shards)
		cfg->spool_workers = cfg->shards;
	if (!cfg->helo) {
		char h[256] = "localhost";
		gethostname(h, sizeof(h) - 1);
		h[255] = 0;
		cfg->helo = xstrdup(h);
	}
	if (cfg->dkim_fallback) {
		bool found = false;
		for (unsigned i = 0; i < cfg->ndkim_keys; i++)
			found = found || strcasecmp(cfg->dkim_keys[i].domain, cfg->dkim_fallback) == 0;
		if (!found)
			config_fail("dkim-fallback-domain %s: no --dkim key for that domain", cfg->dkim_fallback);
	}
	for (const char *p = cfg->helo; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			config_fail("--helo: the name must not contain spaces or control characters");
}

bool config_reload(struct config *cfg, int argc, char **argv, char *err, size_t err_len)
{
	jmp_buf jb;
	memset(cfg, 0, sizeof(*cfg));
	if (setjmp(jb)) {
		reload_jmp = NULL;
		if (loading) {
			config_destroy(loading);
			loading = NULL;
		}
		config_free(cfg);
		snprintf(err, err_len, "%s", reload_error);
		return false;
	}
	reload_jmp = &jb;
	config_from_run_args(cfg, argc, argv);
	reload_jmp = NULL;
	return true;
}
