/* engine/config.c - defaults, config file (libconfig, the only module that
 * uses it) and `sluice run` flags, in that order of precedence. */
#define _GNU_SOURCE
#include "config.h"
#include "metrics.h"
#include "providers_embed.h"
#include "bounce_class.h"
#include "header_templates.h"
#include "lib/tls.h"
#include "lib/util.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <regex.h>
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
/* The libconfig tree being read, if any; not on the stack, which a
 * reload's longjmp leaves. */
static config_t file_tree, *loading;

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

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->spool = xstrdup("/var/spool/sluice");
	cfg->helo = NULL;
	cfg->doctor_at_start = xstrdup("warn");
	cfg->doctor_daily_volume = 5001;
	cfg->unsubscribe_post = true;
	cfg->require_track = -1;
	cfg->complaint_threshold = 0.003; /* Gmail's and Yahoo's line for bulk senders */
	cfg->complaint_min = 1000;
	cfg->max_connections = 20;
	cfg->max_per_connection = 1000;
	cfg->default_pool = -1;
	cfg->max_rcpt_per_txn = 100;
	cfg->retry_interval_ms = 300000;
	cfg->retry_max_ms = 4 * 3600 * 1000;
	cfg->wait_in_spool_ms = 60000;
	cfg->bounce_after_s = 4 * 86400;
	cfg->dest_failures = 3;
	cfg->dest_backoff_ms = 10000;
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
	cfg->tls_policy = TLS_POLICY_OPPORTUNISTIC;
	cfg->tls_plain_fallback = true;
	cfg->tls_plain_fallback_ms = 3600 * 1000;
	/* Slow-downs halve the rate and climb back by a tenth of it a minute
	 * (a halving is made up in five minutes of clean replies). */
	cfg->adapt.slow_factor = 0.5;
	cfg->adapt.floor = 1.0 / 60;
	cfg->adapt.increase = 0.1;
	cfg->adapt.increase_every_ms = 60000;
	cfg->adapt.holdoff_ms = 2000;
	cfg->adapt.suspend_ms = 3600 * 1000;
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
		free(cfg->routes[i].tls_name);
		free(cfg->routes[i].group);
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

/* Returns why spec is refused, or NULL. */
static const char *dns_server_add(struct config *cfg, const char *spec)
{
	if (cfg->ndns_servers == ARRAY_LEN(cfg->dns_servers))
		return "too many DNS servers (at most 8)";
	if (!dns_server_parse(spec, &cfg->dns_servers[cfg->ndns_servers]))
		return "expected a numeric DNS server IP[:PORT] (e.g. 127.0.0.1:53, [::1]:53)";
	cfg->ndns_servers++;
	return NULL;
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

static void tls_rules_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->ntls_rules; i++) {
		free(cfg->tls_rules[i].domain);
		free(cfg->tls_rules[i].group);
	}
	free(cfg->tls_rules);
	cfg->tls_rules = NULL;
	cfg->ntls_rules = 0;
}

static void sources_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nsources; i++) {
		free(cfg->sources[i].text);
		free(cfg->sources[i].helo);
	}
	free(cfg->sources);
	cfg->sources = NULL;
	cfg->nsources = 0;
	for (unsigned i = 0; i < cfg->npools; i++) {
		free(cfg->pools[i].name);
		free(cfg->pools[i].members);
	}
	free(cfg->pools);
	cfg->pools = NULL;
	cfg->npools = 0;
	cfg->default_pool = -1;
	for (unsigned i = 0; i < cfg->npool_rules; i++) {
		free(cfg->pool_rules[i].job);
		free(cfg->pool_rules[i].sender_domain);
	}
	free(cfg->pool_rules);
	cfg->pool_rules = NULL;
	cfg->npool_rules = 0;
}

static void shape_rules_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nshape_rules; i++) {
		free(cfg->shape_rules[i].group);
		free(cfg->shape_rules[i].source);
		free(cfg->shape_rules[i].pool);
	}
	free(cfg->shape_rules);
	cfg->shape_rules = NULL;
	cfg->nshape_rules = 0;
}

static void waves_warmup_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nwaves; i++)
		free(cfg->waves[i].job);
	free(cfg->waves);
	cfg->waves = NULL;
	cfg->nwaves = 0;
	for (unsigned i = 0; i < cfg->nwarm_ips; i++) {
		free(cfg->warm_ips[i].ip);
		free(cfg->warm_ips[i].plan);
	}
	free(cfg->warm_ips);
	cfg->warm_ips = NULL;
	cfg->nwarm_ips = 0;
	free(cfg->warm_plan);
	cfg->warm_plan = NULL;
	cfg->nwarm_plan = 0;
	free(cfg->warm_tz);
	cfg->warm_tz = NULL;
}

static void reply_rules_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nreply_rules; i++) {
		struct reply_rule *r = &cfg->reply_rules[i];
		free(r->name);
		free(r->group);
		free(r->enhanced);
		free(r->text);
	}
	free(cfg->reply_rules);
	cfg->reply_rules = NULL;
	cfg->nreply_rules = 0;
}

static void bounce_rules_clear(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nbounce_rules; i++) {
		free(cfg->bounce_rules[i].name);
		free(cfg->bounce_rules[i].enhanced);
		free(cfg->bounce_rules[i].text);
	}
	free(cfg->bounce_rules);
	cfg->bounce_rules = NULL;
	cfg->nbounce_rules = 0;
}

void config_free(struct config *cfg)
{
	sources_clear(cfg);
	bounce_rules_clear(cfg);
	free(cfg->classes_path);
	free(cfg->feedback_secret_file);
	free(cfg->track_secret);
	free(cfg->feedback_id_tpl);
	free(cfg->feedback_maildir);
	free(cfg->suppression_list);
	free(cfg->unsubscribe_tpl);
	shape_rules_clear(cfg);
	free(cfg->providers_path);
	reply_rules_clear(cfg);
	free(cfg->responses_path);
	waves_warmup_clear(cfg);
	tls_rules_clear(cfg);
	free(cfg->tls_ca);
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
	free(cfg->doctor_at_start);
	free(cfg->metrics);
	free(cfg->control_socket);
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
	str_lower(k.domain);
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

/* ---- host names (EHLO) ---- */

static bool ldh(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* RFC 5321 4.1.2 Domain: labels of letters, digits and '-' (not first or
 * last), 1..63 octets, separated by single dots. */
static bool host_name_ok(const char *v)
{
	const char *label = v;
	for (const char *p = v;; p++) {
		if (*p && *p != '.') {
			if (!ldh(*p))
				return false;
			continue;
		}
		size_t len = (size_t)(p - label);
		if (len == 0 || len > 63 || *label == '-' || p[-1] == '-')
			return false;
		if (!*p)
			return true;
		label = p + 1;
	}
}

/* RFC 5321 4.1.3: [192.0.2.1] or [IPv6:2001:db8::1]. */
static bool address_literal_ok(const char *v, size_t n)
{
	char a[256];
	unsigned char bin[16];
	if (n < 3 || n > sizeof(a) || v[0] != '[' || v[n - 1] != ']')
		return false;
	memcpy(a, v + 1, n - 2);
	a[n - 2] = 0;
	if (strncasecmp(a, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, a + 5, bin) == 1;
	return inet_pton(AF_INET, a, bin) == 1;
}

/* A unix socket's path fits in sun_path (108 bytes with its NUL). */
static const char *control_invalid(const char *v)
{
	if (!*v)
		return "must be a path, or \"off\"";
	return strlen(v) < CONTROL_PATH_MAX ? NULL : "must be shorter than 108 bytes (a unix socket's path limit)";
}

static const char *metrics_invalid(const char *v)
{
	struct sockaddr_storage sa;
	socklen_t len;
	return metrics_addr_parse(v, &sa, &len) ? NULL : "IP:PORT (numeric; [V6]:PORT)";
}

static const char *at_start_invalid(const char *v)
{
	return strcmp(v, "warn") && strcmp(v, "refuse") && strcmp(v, "off") ? "warn, refuse or off" : NULL;
}

static const char *helo_invalid(const char *v)
{
	size_t n = strlen(v);
	if (n <= 255 && (v[0] == '[' ? address_literal_ok(v, n) : host_name_ok(v)))
		return NULL;
	return "must be a host name (letters, digits, '-' and '.', labels of at most 63) "
	       "or an address literal ([192.0.2.1], [IPv6:2001:db8::1]), 255 octets at most";
}

/* ---- lists and arrays of the file ---- */

static int ipv6_set = -1;         /* dns.ipv6 from the file; -1: decide */
static const char *loading_path;  /* the file being read */

/* A configuration error at a setting: "FILE:LINE: ..." */
__attribute__((format(printf, 2, 3)))
static _Noreturn void fail_at(const config_setting_t *s, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	const char *file = config_setting_source_file(s);
	config_fail("%s:%u: %s", file ? file : loading_path, (unsigned)config_setting_source_line(s), what);
}

static void route_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	const char *domain, *host;
	int port;
	if (config_setting_lookup_string(r, "domain", &domain) != CONFIG_TRUE ||
	    config_setting_lookup_string(r, "host", &host) != CONFIG_TRUE ||
	    config_setting_lookup_int(r, "port", &port) != CONFIG_TRUE)
		fail_at(r, "%s needs domain, host and port", shown);
	const char *err = route_add(cfg, domain, host, port);
	if (err)
		fail_at(r, "%s: %s", shown, err);
	const char *tls_name;
	if (config_setting_lookup_string(r, "tls-name", &tls_name) == CONFIG_TRUE) {
		if (!*tls_name || strpbrk(tls_name, " \t\r\n"))
			fail_at(r, "%s.tls-name must be a host name", shown);
		cfg->routes[cfg->nroutes - 1].tls_name = xstrdup(tls_name);
	}
	const char *group;
	if (config_setting_lookup_string(r, "group", &group) == CONFIG_TRUE) {
		if (!*group || strcmp(group, "*") == 0)
			fail_at(r, "%s.group must be a group name", shown);
		cfg->routes[cfg->nroutes - 1].group = xstrdup(group);
	}
}

static enum tls_policy policy_of(const config_setting_t *s, const char *v, const char *shown)
{
	enum tls_policy p;
	if (!tls_policy_parse(v, &p))
		fail_at(s, "%s: '%.40s' must be none, opportunistic, required or verify", shown, v);
	return p;
}

static void tls_policy_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	cfg->tls_policy = policy_of(s, config_setting_get_string(s), shown);
}

static void tls_rule_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	const char *domain = NULL, *group = NULL, *policy;
	config_setting_lookup_string(r, "domain", &domain);
	config_setting_lookup_string(r, "group", &group);
	if (config_setting_lookup_string(r, "policy", &policy) != CONFIG_TRUE || !domain == !group ||
	    (domain && !*domain) || (group && !*group))
		fail_at(r, "%s needs policy and one of domain or group", shown);
	struct tls_rule t = { domain ? xstrdup(domain) : NULL, group ? xstrdup(group) : NULL,
	                      policy_of(r, policy, shown) };
	cfg->tls_rules = xrealloc(cfg->tls_rules, (cfg->ntls_rules + 1) * sizeof(*cfg->tls_rules));
	cfg->tls_rules[cfg->ntls_rules++] = t;
}

static void dkim_from_file(struct config *cfg, const config_setting_t *k, const char *shown)
{
	const char *domain, *selector, *key;
	if (config_setting_lookup_string(k, "domain", &domain) != CONFIG_TRUE ||
	    config_setting_lookup_string(k, "selector", &selector) != CONFIG_TRUE ||
	    config_setting_lookup_string(k, "key", &key) != CONFIG_TRUE)
		fail_at(k, "%s needs domain, selector and key", shown);
	dkim_add(cfg, domain, selector, key);
}

static void mx_group_from_file(struct config *cfg, const config_setting_t *g, const char *shown)
{
	const char *name;
	const config_setting_t *mx = config_setting_get_member(g, "mx");
	if (config_setting_lookup_string(g, "group", &name) != CONFIG_TRUE || !mx)
		fail_at(g, "%s needs group = \"NAME\" and mx = [\"*.pattern\", ...]", shown);
	for (int j = 0; j < config_setting_length(mx); j++) {
		const char *pat = config_setting_get_string_elem(mx, j);
		if (!*pat)
			fail_at(mx, "%s.mx[%d] must be a host pattern", shown, j);
		cfg->mx_groups = xrealloc(cfg->mx_groups, (cfg->nmx_groups + 1) * sizeof(*cfg->mx_groups));
		cfg->mx_groups[cfg->nmx_groups++] = (struct mx_group_rule){ xstrdup(pat), xstrdup(name) };
	}
}

static void dns_server_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	const char *err = dns_server_add(cfg, config_setting_get_string(s));
	if (err)
		fail_at(s, "%s: %s", shown, err);
}

static void ipv6_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	ipv6_set = config_setting_get_bool(s) ? 1 : 0;
}

/* ---- source IPs, pools and shaping ---- */

static bool flag_pool;            /* --source-ip made the pool "default" (index 0) */
static bool file_default_seen;    /* the file's pool "default", replaced by it */
static bool providers_given;      /* shaping.providers was set */
static bool responses_given;      /* adaptation.responses was set */
static bool classes_given;        /* feedback.classes was set */

/* A numeric address into sa (port 0) and its canonical text; false if
 * text is not a numeric IPv4 or IPv6 address. */
static bool source_parse(const char *text, struct sockaddr_storage *sa, socklen_t *len, char *canon, size_t clen)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
	memset(sa, 0, sizeof(*sa));
	if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		*len = sizeof(*a4);
		return inet_ntop(AF_INET, &a4->sin_addr, canon, (socklen_t)clen) != NULL;
	}
	if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		*len = sizeof(*a6);
		return inet_ntop(AF_INET6, &a6->sin6_addr, canon, (socklen_t)clen) != NULL;
	}
	return false;
}

/* Can connections be bound to sa? (A bind to port 0 is what the
 * shards will do; nothing is sent.) Writes why not. */
static bool source_local(const struct sockaddr_storage *sa, socklen_t len, const char *canon, char *why, size_t wlen)
{
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int err = fd < 0 ? errno : bind(fd, (const struct sockaddr *)sa, len) == 0 ? 0 : errno;
	if (fd >= 0)
		close(fd);
	if (err == EADDRNOTAVAIL)
		snprintf(why, wlen, "source IP %s is not an address of this machine", canon);
	else if (err)
		snprintf(why, wlen, "source IP %s cannot be used: %s", canon, strerror(err));
	return err == 0;
}

/* The index of the source IP text in cfg->sources, added when new
 * (checked: numeric, an address of this machine); -1 with why set if
 * refused. One EHLO name per IP: helo (NULL: the global helo) must agree
 * with an earlier explicit one. */
static int source_add(struct config *cfg, const char *text, const char *helo, char *why, size_t wlen)
{
	struct source_ip src;
	char canon[INET6_ADDRSTRLEN];
	memset(&src, 0, sizeof(src));
	if (!source_parse(text, &src.addr, &src.addr_len, canon, sizeof(canon))) {
		snprintf(why, wlen, "source IP '%.60s' must be a numeric IPv4 or IPv6 address", text);
		return -1;
	}
	int i = config_source_index(cfg, canon);
	if (i >= 0) {
		struct source_ip *old = &cfg->sources[i];
		if (helo && old->helo && strcasecmp(helo, old->helo) != 0) {
			snprintf(why, wlen, "source IP %s has EHLO name '%.80s' here and '%.80s' before (one name per IP)",
			         canon, helo, old->helo);
			return -1;
		}
		if (helo && !old->helo)
			old->helo = xstrdup(helo);
		return i;
	}
	if (!source_local(&src.addr, src.addr_len, canon, why, wlen))
		return -1;
	src.text = xstrdup(canon);
	src.helo = helo ? xstrdup(helo) : NULL;
	cfg->sources = xrealloc(cfg->sources, (cfg->nsources + 1) * sizeof(*cfg->sources));
	cfg->sources[cfg->nsources] = src;
	return (int)cfg->nsources++;
}

static int pool_find(const struct config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->npools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* A new pool, without members yet (room for n). */
static struct pool *pool_new(struct config *cfg, const char *name, unsigned n)
{
	cfg->pools = xrealloc(cfg->pools, (cfg->npools + 1) * sizeof(*cfg->pools));
	struct pool *p = &cfg->pools[cfg->npools++];
	p->name = xstrdup(name);
	p->members = xcalloc(n ? n : 1, sizeof(*p->members));
	p->nmembers = 0;
	return p;
}

static bool pool_has(const struct pool *p, int source)
{
	for (unsigned i = 0; i < p->nmembers; i++)
		if ((int)p->members[i].source == source)
			return true;
	return false;
}

/* --source-ip: the IPs of the pool "default", which is the default pool
 * and replaces the file's of that name. Read before the file, so that
 * these IPs come first in cfg->sources. */
static void source_from_flag(struct config *cfg, const char *arg)
{
	char why[300];
	int s = source_add(cfg, arg, NULL, why, sizeof(why));
	if (s < 0)
		config_fail("--source-ip: %s", why);
	if (!flag_pool) {
		ASSERT(cfg->npools == 0);
		pool_new(cfg, "default", 0);
		flag_pool = true;
	}
	struct pool *p = &cfg->pools[0];
	if (pool_has(p, s))
		return;
	p->members = xrealloc(p->members, (p->nmembers + 1) * sizeof(*p->members));
	p->members[p->nmembers++] = (struct pool_member){ (unsigned)s, 1 };
}

/* A pool name, as X-Pool and the rules give it. */
static bool pool_name_ok(const char *v)
{
	if (!*v || strlen(v) > 64)
		return false;
	for (; *v; v++)
		if (!ldh(*v) && *v != '_' && *v != '.')
			return false;
	return true;
}

static void pool_from_file(struct config *cfg, const config_setting_t *p, const char *shown)
{
	const char *name;
	const config_setting_t *ips = config_setting_get_member(p, "ips");
	if (config_setting_lookup_string(p, "name", &name) != CONFIG_TRUE)
		fail_at(p, "%s needs name = \"NAME\" and ips = ( { ip = \"ADDR\"; }, ... )", shown);
	if (!pool_name_ok(name))
		fail_at(p, "%s.name '%.64s': a pool name is letters, digits, '-', '_' and '.' (64 at most)", shown, name);
	if (flag_pool && strcmp(name, "default") == 0) { /* --source-ip replaces it */
		if (file_default_seen)
			fail_at(p, "%s: pool name 'default' is used twice", shown);
		file_default_seen = true;
		return;
	}
	if (pool_find(cfg, name) >= 0)
		fail_at(p, "%s: pool name '%s' is used twice", shown, name);
	int n = ips ? config_setting_length(ips) : 0;
	if (n == 0)
		fail_at(p, "%s: pool '%s' has no IPs (ips = ( { ip = \"ADDR\"; }, ... ))", shown, name);
	struct pool *pl = pool_new(cfg, name, (unsigned)n);
	for (int j = 0; j < n; j++) {
		const config_setting_t *e = config_setting_get_elem(ips, (unsigned)j);
		const char *ip, *helo = NULL;
		int weight = 1;
		if (config_setting_lookup_string(e, "ip", &ip) != CONFIG_TRUE)
			fail_at(e, "%s.ips[%d] needs ip = \"ADDR\"", shown, j);
		config_setting_lookup_string(e, "helo", &helo);
		config_setting_lookup_int(e, "weight", &weight); /* 1.. (the schema) */
		char why[300];
		int s = source_add(cfg, ip, helo, why, sizeof(why));
		if (s < 0)
			fail_at(config_setting_get_member(e, "ip"), "%s.ips[%d].ip: %s", shown, j, why);
		if (pool_has(pl, s))
			fail_at(e, "%s.ips[%d]: %s is listed twice in pool '%s'", shown, j, cfg->sources[s].text, name);
		pl->members[pl->nmembers++] = (struct pool_member){ (unsigned)s, (unsigned)weight };
	}
}

static void pool_rule_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	const char *job = NULL, *domain = NULL, *pool;
	config_setting_lookup_string(r, "job", &job);
	config_setting_lookup_string(r, "sender-domain", &domain);
	if (config_setting_lookup_string(r, "pool", &pool) != CONFIG_TRUE || !job == !domain ||
	    (job && !*job) || (domain && !*domain))
		fail_at(r, "%s needs pool and one of job or sender-domain", shown);
	/* the pool (by name, in the file) is found once every pool is known */
	struct pool_rule pr = { job ? xstrdup(job) : NULL, domain ? xstrdup(domain) : NULL, UINT32_MAX };
	cfg->pool_rules = xrealloc(cfg->pool_rules, (cfg->npool_rules + 1) * sizeof(*cfg->pool_rules));
	cfg->pool_rules[cfg->npool_rules++] = pr;
}

static const char *rate_invalid(const char *v)
{
	static char why[120];
	double r;
	if (config_rate_parse(v, &r))
		return NULL;
	snprintf(why, sizeof(why), "'%.30s' is not a rate: N/s, N/m or N/h with N > 0 (e.g. \"100/s\", \"60/m\")", v);
	return why;
}

/* A shaping rule (config: shaping.rules[i]; shipped: providers[i] of the
 * providers file): the limits it sets, for its group ("*" or none: every
 * group) and its source IP or pool; its MX patterns join the MX groups. */
static void shape_rule_add(struct config *cfg, const config_setting_t *r, const char *shown, bool shipped)
{
	const char *group = NULL, *source = NULL, *pool = NULL, *rate;
	int n;
	config_setting_lookup_string(r, "group", &group);
	config_setting_lookup_string(r, "source", &source);
	config_setting_lookup_string(r, "pool", &pool);
	if (group && !*group)
		fail_at(r, "%s.group must be a group name or \"*\" (every group)", shown);
	if (group && strcmp(group, "*") == 0)
		group = NULL;
	if (shipped && !group)
		fail_at(r, "%s needs group = \"NAME\"", shown);
	if (source && pool)
		fail_at(r, "%s: source and pool exclude each other (a rule is for one source IP or one pool)", shown);
	char canon[INET6_ADDRSTRLEN];
	if (source) {
		struct sockaddr_storage sa;
		socklen_t len;
		if (!source_parse(source, &sa, &len, canon, sizeof(canon)))
			fail_at(r, "%s.source '%.60s' must be a numeric IPv4 or IPv6 address", shown, source);
		source = canon; /* it is one of the source IPs: checked once all are known */
	}
	const config_setting_t *mx = config_setting_get_member(r, "mx");
	if (mx && !group)
		fail_at(mx, "%s.mx needs a group name (not \"*\") to put its MX hosts in", shown);
	struct shape_rule sr;
	memset(&sr, 0, sizeof(sr));
	sr.shipped = shipped;
	if (config_setting_lookup_int(r, "max-connections", &n) == CONFIG_TRUE) {
		sr.set |= SHAPE_MAXCONN;
		sr.lim.max_connections = (unsigned)n;
	}
	if (config_setting_lookup_int(r, "max-per-connection", &n) == CONFIG_TRUE) {
		sr.set |= SHAPE_PERCONN;
		sr.lim.max_per_connection = (unsigned)n;
	}
	if (config_setting_lookup_int(r, "burst", &n) == CONFIG_TRUE) {
		sr.set |= SHAPE_BURST;
		sr.lim.burst = (unsigned)n;
	}
	if (config_setting_lookup_string(r, "max-rate", &rate) == CONFIG_TRUE &&
	    config_rate_parse(rate, &sr.lim.max_rate)) /* checked against the schema */
		sr.set |= SHAPE_RATE;
	if (config_setting_lookup_string(r, "max-new-connections", &rate) == CONFIG_TRUE &&
	    config_rate_parse(rate, &sr.lim.max_new_conn_rate))
		sr.set |= SHAPE_NEWCONN;
	sr.group = group ? xstrdup(group) : NULL;
	sr.source = source ? xstrdup(source) : NULL;
	sr.pool = pool ? xstrdup(pool) : NULL;
	cfg->shape_rules = xrealloc(cfg->shape_rules, (cfg->nshape_rules + 1) * sizeof(*cfg->shape_rules));
	cfg->shape_rules[cfg->nshape_rules++] = sr;
	for (int j = 0; mx && j < config_setting_length(mx); j++) {
		const char *pat = config_setting_get_string_elem(mx, (unsigned)j);
		if (!*pat)
			fail_at(mx, "%s.mx[%d] must be a host pattern", shown, j);
		cfg->mx_groups = xrealloc(cfg->mx_groups, (cfg->nmx_groups + 1) * sizeof(*cfg->mx_groups));
		cfg->mx_groups[cfg->nmx_groups++] = (struct mx_group_rule){ xstrdup(pat), xstrdup(group) };
	}
}

static void shape_rule_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	shape_rule_add(cfg, r, shown, false);
}

static void provider_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	shape_rule_add(cfg, r, shown, true);
}

static void providers_path_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	set_str(&cfg->providers_path, config_setting_get_string(s));
	providers_given = true;
}

/* A reply rule (config: adaptation.rules[i]; shipped: responses[i] of
 * the responses file): checked here, with the file and line of what is
 * wrong, so that a shard can only be given rules that work. */
/* A reply code as a rule gives it: "550", "5xx" or "4xx". */
static void rule_code(const config_setting_t *r, const char *shown, const char *code, long min, uint16_t *exact,
                      uint8_t *cls)
{
	char *end;
	long v = strtol(code, &end, 10);
	if (strlen(code) == 3 && (code[0] == '4' || code[0] == '5') && strcmp(code + 1, "xx") == 0)
		*cls = (uint8_t)(code[0] - '0');
	else if (end != code && !*end && v >= min && v <= 599)
		*exact = (uint16_t)v;
	else
		fail_at(r, "%s.code '%.20s' must be a reply code from %ld to 599, \"4xx\" or \"5xx\"", shown, code, min);
}

static void rule_text_check(const config_setting_t *r, const char *shown, const char *text)
{
	regex_t re;
	int err = regcomp(&re, text, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (err) {
		char why[160];
		regerror(err, &re, why, sizeof(why));
		fail_at(r, "%s.text is not a regular expression (POSIX extended): %s", shown, why);
	}
	regfree(&re);
}

static void reply_rule_add(struct config *cfg, const config_setting_t *r, const char *shown, bool shipped)
{
	const char *name = NULL, *group = NULL, *code = NULL, *enh = NULL, *text = NULL, *action = NULL,
	           *scope = NULL;
	config_setting_lookup_string(r, "name", &name);
	config_setting_lookup_string(r, "group", &group);
	config_setting_lookup_string(r, "code", &code);
	config_setting_lookup_string(r, "enhanced", &enh);
	config_setting_lookup_string(r, "text", &text);
	config_setting_lookup_string(r, "action", &action);
	config_setting_lookup_string(r, "scope", &scope);
	struct reply_rule rr;
	memset(&rr, 0, sizeof(rr));
	rr.shipped = shipped;
	if (!name || !*name)
		fail_at(r, "%s needs name = \"...\" (it is logged with each action)", shown);
	for (unsigned i = 0; i < cfg->nreply_rules; i++)
		if (cfg->reply_rules[i].shipped == shipped && strcmp(cfg->reply_rules[i].name, name) == 0)
			fail_at(r, "%s: a second rule named '%.60s'", shown, name);
	if (!action)
		fail_at(r, "%s needs action = \"slow\", \"suspend\", \"bounce\" or \"defer\"", shown);
	static const char *const actions[] = { [REPLY_SLOW] = "slow", [REPLY_SUSPEND] = "suspend",
	                                       [REPLY_BOUNCE] = "bounce", [REPLY_DEFER] = "defer" };
	for (unsigned i = REPLY_SLOW; i < ARRAY_LEN(actions); i++)
		if (strcmp(action, actions[i]) == 0)
			rr.action = (enum reply_action)i;
	if (!rr.action)
		fail_at(r, "%s.action '%.40s' is not one of slow, suspend, bounce, defer", shown, action);
	if (code)
		rule_code(r, shown, code, 400, &rr.code, &rr.code_class); /* a refusal's */
	if (!code && !enh && !text)
		fail_at(r, "%s matches every refusal: give it a code, an enhanced code or a text", shown);
	if (text)
		rule_text_check(r, shown, text);
	const char *dur = NULL;
	if (config_setting_lookup_string(r, "duration", &dur) == CONFIG_TRUE &&
	    !config_duration_parse(dur, &rr.duration_ms))
		fail_at(r, "%s.duration '%.20s' must be \"N\" seconds, or \"Ns\", \"Nm\", \"Nh\", \"Nd\" (at most a year)",
		        shown, dur);
	rr.scope = SCOPE_PAIR;
	if (scope && strcmp(scope, "pair") != 0) {
		if (strcmp(scope, "group") == 0)
			rr.scope = SCOPE_GROUP;
		else if (strcmp(scope, "source") == 0)
			rr.scope = SCOPE_SOURCE;
		else
			fail_at(r, "%s.scope '%.40s' is not one of pair, group, source", shown, scope);
	}
	if ((scope || dur) && rr.action != REPLY_SUSPEND)
		fail_at(r, "%s: scope and duration are for action = \"suspend\"", shown);
	double f;
	if (config_setting_lookup_float(r, "factor", &f) == CONFIG_TRUE) {
		if (rr.action != REPLY_SLOW)
			fail_at(r, "%s: factor is for action = \"slow\"", shown);
		rr.factor = f;
	}
	rr.name = xstrdup(name);
	rr.group = group ? xstrdup(group) : NULL;
	rr.enhanced = enh ? xstrdup(enh) : NULL;
	rr.text = text ? xstrdup(text) : NULL;
	cfg->reply_rules = xrealloc(cfg->reply_rules, (cfg->nreply_rules + 1) * sizeof(*cfg->reply_rules));
	cfg->reply_rules[cfg->nreply_rules++] = rr;
}

static void reply_rule_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	reply_rule_add(cfg, r, shown, false);
}

static void shipped_reply_rule(struct config *cfg, const config_setting_t *r, const char *shown)
{
	reply_rule_add(cfg, r, shown, true);
}

static void responses_path_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	(void)shown;
	set_str(&cfg->responses_path, config_setting_get_string(s));
	responses_given = true;
}

static void bounce_rule_add(struct config *cfg, const config_setting_t *r, const char *shown, bool shipped)
{
	const char *name = NULL, *code = NULL, *enh = NULL, *text = NULL, *cls = NULL;
	config_setting_lookup_string(r, "name", &name);
	config_setting_lookup_string(r, "code", &code);
	config_setting_lookup_string(r, "enhanced", &enh);
	config_setting_lookup_string(r, "text", &text);
	config_setting_lookup_string(r, "class", &cls);
	struct bounce_rule br;
	memset(&br, 0, sizeof(br));
	br.shipped = shipped;
	if (!name || !*name)
		fail_at(r, "%s needs name = \"...\"", shown);
	if (!cls || bounce_class_of(cls) == BC_COUNT || bounce_class_of(cls) == BC_NONE)
		fail_at(r, "%s.class '%.40s' is not a bounce class (bad-mailbox, bad-domain, inactive-mailbox, "
		        "mailbox-full, message-too-large, spam-block, spam-content, policy, auth-failure, routing, "
		        "expired, transient, complaint, unsubscribe, other)", shown, cls ? cls : "");
	br.bclass = (uint8_t)bounce_class_of(cls);
	if (code)
		rule_code(r, shown, code, 200, &br.code, &br.code_class);
	if (!code && !enh && !text)
		fail_at(r, "%s matches every reply: give it a code, an enhanced code or a text", shown);
	if (text)
		rule_text_check(r, shown, text);
	br.name = xstrdup(name);
	br.enhanced = enh ? xstrdup(enh) : NULL;
	br.text = text ? xstrdup(text) : NULL;
	cfg->bounce_rules = xrealloc(cfg->bounce_rules, (cfg->nbounce_rules + 1) * sizeof(*cfg->bounce_rules));
	cfg->bounce_rules[cfg->nbounce_rules++] = br;
}

static void bounce_rule_from_file(struct config *cfg, const config_setting_t *r, const char *shown)
{
	bounce_rule_add(cfg, r, shown, false);
}

static void shipped_bounce_rule(struct config *cfg, const config_setting_t *r, const char *shown)
{
	bounce_rule_add(cfg, r, shown, true);
}

static void require_track_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	(void)shown;
	cfg->require_track = config_setting_get_bool(s) ? 1 : 0;
}

static void classes_path_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	(void)shown;
	set_str(&cfg->classes_path, config_setting_get_string(s));
	classes_given = true;
}

/* waves[i]: a job's wave schedule. */
static void wave_from_file(struct config *cfg, const config_setting_t *w, const char *shown)
{
	const char *job = NULL, *every = NULL;
	int size = 0;
	config_setting_lookup_string(w, "job", &job);
	config_setting_lookup_string(w, "every", &every);
	config_setting_lookup_int(w, "size", &size);
	if (!job || !*job || !every || size < 1)
		fail_at(w, "%s needs job = \"...\", size = N (messages per MX group per wave) and every = \"1h\"",
		        shown);
	if (config_wave_for(cfg, job))
		fail_at(w, "%s: a second wave schedule for job '%.60s'", shown, job);
	if (strlen(job) > 63) /* the counts keep job names of up to 63 bytes */
		fail_at(w, "%s.job must be at most 63 bytes long", shown);
	int64_t ms;
	if (!config_duration_parse(every, &ms) || ms < 1000)
		fail_at(w, "%s.every '%.20s' must be a duration of at least a second (\"90s\", \"30m\", \"1h\", \"1d\")",
		        shown, every);
	cfg->waves = xrealloc(cfg->waves, (cfg->nwaves + 1) * sizeof(*cfg->waves));
	cfg->waves[cfg->nwaves++] = (struct wave_rule){ xstrdup(job), (unsigned)size, ms };
}

/* A plan: [ 50, 100, ... ] (checked by walk_elements). */
static unsigned *plan_of(const config_setting_t *a, unsigned *n)
{
	*n = (unsigned)config_setting_length(a);
	unsigned *p = xmalloc((*n ? *n : 1) * sizeof(*p));
	for (unsigned i = 0; i < *n; i++)
		p[i] = (unsigned)config_setting_get_int_elem(a, (int)i);
	return p;
}

static void warm_plan_from_file(struct config *cfg, const config_setting_t *a, const char *shown)
{
	(void)shown;
	free(cfg->warm_plan);
	cfg->warm_plan = plan_of(a, &cfg->nwarm_plan);
}

static void warm_tz_from_file(struct config *cfg, const config_setting_t *s, const char *shown)
{
	const char *tz = config_setting_get_string(s);
	char path[300];
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
	if (!*tz || strstr(tz, "..") || tz[0] == '/' || (strcmp(tz, "UTC") != 0 && access(path, R_OK) != 0))
		fail_at(s, "%s '%.60s' is not a time zone of this machine (e.g. \"UTC\", \"America/New_York\")",
		        shown, tz);
	set_str(&cfg->warm_tz, tz);
}

/* warmup.ips[i]: a warming source IP, its first day and maybe its plan. */
static void warm_ip_from_file(struct config *cfg, const config_setting_t *w, const char *shown)
{
	const char *ip = NULL, *start = NULL;
	config_setting_lookup_string(w, "ip", &ip);
	config_setting_lookup_string(w, "start", &start);
	int y;
	unsigned mo, d;
	char canon[INET6_ADDRSTRLEN], end;
	struct sockaddr_storage sa;
	socklen_t len;
	if (!ip || !start)
		fail_at(w, "%s needs ip = \"ADDR\" and start = \"YYYY-MM-DD\" (its first day)", shown);
	if (!source_parse(ip, &sa, &len, canon, sizeof(canon)))
		fail_at(w, "%s.ip '%.60s' must be a numeric IPv4 or IPv6 address", shown, ip);
	if (sscanf(start, "%4d-%2u-%2u%c", &y, &mo, &d, &end) != 3 || y < 2000 || y > 2200 || mo < 1 || mo > 12 ||
	    d < 1 || d > 31)
		fail_at(w, "%s.start '%.20s' must be a date, YYYY-MM-DD", shown, start);
	for (unsigned i = 0; i < cfg->nwarm_ips; i++)
		if (strcmp(cfg->warm_ips[i].ip, canon) == 0)
			fail_at(w, "%s: %s is warmed up twice", shown, canon);
	struct warm_ip wi = { .ip = xstrdup(canon), .start_day = civil_days(y, mo, d) };
	const config_setting_t *plan = config_setting_get_member(w, "plan");
	if (plan)
		wi.plan = plan_of(plan, &wi.nplan);
	cfg->warm_ips = xrealloc(cfg->warm_ips, (cfg->nwarm_ips + 1) * sizeof(*cfg->warm_ips));
	cfg->warm_ips[cfg->nwarm_ips++] = wi;
}

/* Once every source IP is known: each warming IP is one of them. */
static void warm_ips_resolve(struct config *cfg)
{
	for (unsigned i = 0; i < cfg->nwarm_ips; i++) {
		int src = config_source_index(cfg, cfg->warm_ips[i].ip);
		if (src < 0)
			config_fail("%s: warmup.ips[%u].ip %s is not one of the source IPs (--source-ip, pools)",
			            cfg->config_path ? cfg->config_path : "config", i, cfg->warm_ips[i].ip);
		cfg->warm_ips[i].source = (unsigned)src;
	}
	if (!cfg->warm_plan) { /* the shipped plan (see sluice.conf: SendGrid's published schedule) */
		static const unsigned shipped[] = { 50, 100, 500, 1000, 5000, 10000, 20000, 40000, 70000, 100000,
		                                    150000, 250000, 400000, 600000, 1000000, 2000000, 4000000 };
		cfg->nwarm_plan = ARRAY_LEN(shipped);
		cfg->warm_plan = xmalloc(sizeof(shipped));
		memcpy(cfg->warm_plan, shipped, sizeof(shipped));
	}
}

/* "a, b, c": the pool names, for an error. */
static const char *pool_names(const struct config *cfg, char *out, size_t len)
{
	size_t n = 0;
	out[0] = 0;
	for (unsigned i = 0; i < cfg->npools && n < len; i++)
		n += (size_t)snprintf(out + n, len - n, "%s%s", i ? ", " : "", cfg->pools[i].name);
	if (!cfg->npools)
		snprintf(out, len, "none");
	return out;
}

static int pool_named(const struct config *cfg, const config_setting_t *s, const char *shown, const char *name)
{
	char names[200];
	int p = pool_find(cfg, name);
	if (p < 0)
		fail_at(s, "%s: no pool named '%.64s' (pools: %s)", shown, name, pool_names(cfg, names, sizeof(names)));
	return p;
}

/* Once the file is read (its tree still there, for lines): the names it
 * gives pools and source IPs, which may come before the pools, point at
 * some; then the default pool. */
static void pools_resolve(struct config *cfg, const config_t *tree)
{
	const config_setting_t *s, *e;
	const char *name;
	char shown[64];
	if (tree && (s = config_lookup(tree, "default-pool"))) {
		int p = pool_named(cfg, s, "default-pool", config_setting_get_string(s));
		if (!flag_pool) /* else --source-ip's pool is the default */
			cfg->default_pool = p;
	}
	if (tree && (s = config_lookup(tree, "pool-rules"))) {
		ASSERT((unsigned)config_setting_length(s) == cfg->npool_rules);
		for (unsigned i = 0; i < cfg->npool_rules; i++) {
			e = config_setting_get_elem(s, i);
			config_setting_lookup_string(e, "pool", &name);
			snprintf(shown, sizeof(shown), "pool-rules[%u].pool", i);
			cfg->pool_rules[i].pool = (unsigned)pool_named(cfg, e, shown, name);
		}
	}
	if (tree && (s = config_lookup(tree, "shaping.rules")))
		for (int i = 0; i < config_setting_length(s); i++) {
			e = config_setting_get_elem(s, (unsigned)i);
			snprintf(shown, sizeof(shown), "shaping.rules[%d]", i);
			if (config_setting_lookup_string(e, "pool", &name) == CONFIG_TRUE)
				pool_named(cfg, e, shown, name);
			if (config_setting_lookup_string(e, "source", &name) == CONFIG_TRUE) {
				struct sockaddr_storage sa;
				socklen_t len;
				char canon[INET6_ADDRSTRLEN];
				source_parse(name, &sa, &len, canon, sizeof(canon));
				if (config_source_index(cfg, canon) < 0)
					fail_at(e, "%s.source %s is not one of the source IPs (pools, --source-ip)", shown, canon);
			}
		}
	if (cfg->default_pool < 0 && cfg->npools)
		cfg->default_pool = 0; /* --source-ip's, else the file's first */
}

/* ---- the schema: every setting of the file, and the flags that share
 * its bounds. The file is checked against it (unknown settings, types,
 * bounds, with file and line) and a flag's value against the same row. */

enum {
	OPT_SPOOL = 1000, OPT_ROUTE, OPT_LOG, OPT_SHARDS, OPT_MAXCONN, OPT_MAXPERCONN,
	OPT_DRAIN, OPT_MAXTIME, OPT_RETRY, OPT_HELO, OPT_TIMEOUT, OPT_NOCHUNK, OPT_NOPIPE,
	OPT_BOUNCE_AFTER, OPT_HELP, OPT_SPOOLW, OPT_STOPTIMEOUT, OPT_DKIM_FALLBACK, OPT_DSN,
	OPT_DNS, OPT_SMTPPORT, OPT_DNSTIMEOUT, OPT_DKIM, OPT_TRACE,
	OPT_SOURCEIP, OPT_MAXRATE, OPT_TLS, OPT_TLSCA, OPT_METRICS, OPT_CONTROL,
};

enum kind {
	K_GROUP,    /* name: { ... } */
	K_LIST,     /* name = ( { ... }, ... ): each element checked, then apply()ed */
	K_STRINGS,  /* name = [ "...", ... ]: each element apply()ed */
	K_STR,      /* char * */
	K_BOOL,     /* bool */
	K_UINT,     /* unsigned */
	K_PORT,     /* uint16_t */
	K_MIB,      /* uint64_t bytes, given in MiB */
	K_MS,       /* int milliseconds, given in seconds */
	K_SECS,     /* double seconds */
	K_REAL,     /* double */
	K_NUMBERS,  /* name = [ 1, 2, ... ]: whole numbers, read by the apply() of its group */
	K_RATE,     /* double per second, given as "N/s", "N/m" or "N/h" */
};

struct knob {
	const char *path;   /* in the file ("delivery.max-connections"); NULL: flag only */
	int opt;            /* the flag sharing it (OPT_*), 0: none */
	enum kind kind;
	size_t off;         /* its field in struct config, or NOF */
	double min, max;    /* numbers */
	/* lists, arrays and settings that are more than a field */
	void (*apply)(struct config *cfg, const config_setting_t *s, const char *shown);
	const char *(*check)(const char *v);  /* strings: why v is refused, or NULL */
};

#define NOF SIZE_MAX
/* The offset of a field that must have type T (a mismatch does not compile). */
#define FIELD(T, f) (offsetof(struct config, f) + 0 * sizeof(char[_Generic(((struct config *)0)->f, T: 1)]))
#define STR(p, o, f)             { p, o, K_STR, FIELD(char *, f), 0, 0, NULL, NULL }
#define BOOL(p, f)               { p, 0, K_BOOL, FIELD(bool, f), 0, 0, NULL, NULL }
#define UINT(p, o, f, lo, hi)    { p, o, K_UINT, FIELD(unsigned, f), lo, hi, NULL, NULL }
#define MS(p, o, f, ...)         { p, o, K_MS, FIELD(int, f), __VA_ARGS__, NULL, NULL }
#define SECS(p, o, f, lo, hi)    { p, o, K_SECS, FIELD(double, f), lo, hi, NULL, NULL }
#define RATE(p, o, f)            { p, o, K_RATE, FIELD(double, f), 0, 0, NULL, rate_invalid }
#define REAL(p, f, lo, hi)       { p, 0, K_REAL, FIELD(double, f), lo, hi, NULL, NULL }
#define GROUP(p)                 { p, 0, K_GROUP, NOF, 0, 0, NULL, NULL }
#define LIST(p, fn)              { p, 0, K_LIST, NOF, 0, 0, fn, NULL }
#define STRINGS(p, fn)           { p, 0, K_STRINGS, NOF, 0, 0, fn, NULL }
/* read by the apply() of its list element */
#define MEMBER(p, k, lo, hi)     { p, 0, k, NOF, lo, hi, NULL, NULL }
#define RATE_MEMBER(p)           { p, 0, K_RATE, NOF, 0, 0, NULL, rate_invalid }
/* The limits a shaping rule may set (shaping.rules, the providers file). */
#define SHAPE_MEMBERS(p) \
	MEMBER(p ".group", K_STR, 0, 0), \
	MEMBER(p ".mx", K_STRINGS, 0, 0), \
	MEMBER(p ".max-connections", K_UINT, 1, 100000), \
	MEMBER(p ".max-per-connection", K_UINT, 1, 10000000), \
	RATE_MEMBER(p ".max-rate"), \
	MEMBER(p ".burst", K_UINT, 1, 1000000), \
	RATE_MEMBER(p ".max-new-connections")
/* The fields of a reply rule (adaptation.rules, the responses file). */
#define REPLY_MEMBERS(p) \
	MEMBER(p ".name", K_STR, 0, 0), \
	MEMBER(p ".group", K_STR, 0, 0), \
	MEMBER(p ".code", K_STR, 0, 0), \
	MEMBER(p ".enhanced", K_STR, 0, 0), \
	MEMBER(p ".text", K_STR, 0, 0), \
	MEMBER(p ".action", K_STR, 0, 0), \
	MEMBER(p ".scope", K_STR, 0, 0), \
	MEMBER(p ".duration", K_STR, 0, 0), \
	MEMBER(p ".factor", K_REAL, 0.01, 0.99)
#define TIMEOUT 0.001, 86400     /* every SMTP timeout, seconds */
#define PROVIDERS_ROOT "@providers"
#define RESPONSES_ROOT "@responses"
#define CLASSES_ROOT "@classes"
#define CLASS_MEMBERS(p) \
	MEMBER(p ".name", K_STR, 0, 0), \
	MEMBER(p ".code", K_STR, 0, 0), \
	MEMBER(p ".enhanced", K_STR, 0, 0), \
	MEMBER(p ".text", K_STR, 0, 0), \
	MEMBER(p ".class", K_STR, 0, 0)

static const struct knob knobs[] = {
	STR("spool", OPT_SPOOL, spool),
	STR("log", OPT_LOG, log_path),
	BOOL("log-fsync", log_fsync),
	STR("dsn-spool", OPT_DSN, dsn_spool),
	{ "helo", OPT_HELO, K_STR, FIELD(char *, helo), 0, 0, NULL, helo_invalid },
	UINT("shards", OPT_SHARDS, shards, 0, 1024),
	UINT("spool-workers", OPT_SPOOLW, spool_workers, 0, 64),
	SECS("stop-timeout", OPT_STOPTIMEOUT, stop_timeout_s, 0, 3600),
	SECS(NULL, OPT_MAXTIME, max_time_s, 0, 1e7),
	{ "smtp-port", OPT_SMTPPORT, K_PORT, FIELD(uint16_t, smtp_port), 1, 65535, NULL, NULL },
	LIST("routes", route_from_file),
	MEMBER("routes.domain", K_STR, 0, 0),
	MEMBER("routes.host", K_STR, 0, 0),
	MEMBER("routes.port", K_UINT, 1, 65535),
	MEMBER("routes.tls-name", K_STR, 0, 0),
	MEMBER("routes.group", K_STR, 0, 0),
	STR("dkim-fallback-domain", OPT_DKIM_FALLBACK, dkim_fallback),
	LIST("dkim", dkim_from_file),
	MEMBER("dkim.domain", K_STR, 0, 0),
	MEMBER("dkim.selector", K_STR, 0, 0),
	MEMBER("dkim.key", K_STR, 0, 0),
	LIST("mx-groups", mx_group_from_file),
	MEMBER("mx-groups.group", K_STR, 0, 0),
	MEMBER("mx-groups.mx", K_STRINGS, 0, 0),
	GROUP("dns"),
	STRINGS("dns.servers", dns_server_from_file),
	MS("dns.timeout", OPT_DNSTIMEOUT, dns_timeout_ms, 0.001, 60),
	UINT("dns.attempts", 0, dns_attempts, 1, 10),
	UINT("dns.cache-size", 0, dns_cache_size, 16, 10000000),
	{ "dns.ipv6", 0, K_BOOL, NOF, 0, 0, ipv6_from_file, NULL },
	GROUP("delivery"),
	UINT("delivery.max-connections", OPT_MAXCONN, max_connections, 1, 100000),
	UINT("delivery.max-per-connection", OPT_MAXPERCONN, max_per_connection, 1, 10000000),
	RATE("delivery.max-rate", OPT_MAXRATE, max_rate),
	UINT("delivery.rate-burst", 0, rate_burst, 1, 1000000),
	RATE("delivery.max-new-connections", 0, max_new_conn_rate),
	UINT("delivery.max-recipients-per-transaction", 0, max_rcpt_per_txn, 1, 1000),
	MS("delivery.retry-interval", OPT_RETRY, retry_interval_ms, 0.001, 86400),
	MS("delivery.retry-max", 0, retry_max_ms, 0.001, 86400),
	MS("delivery.wait-in-spool", 0, wait_in_spool_ms, 0, 86400),
	UINT("delivery.bounce-after", OPT_BOUNCE_AFTER, bounce_after_s, 1, 365 * 86400),
	BOOL("delivery.chunking", use_chunking),
	BOOL("delivery.pipelining", use_pipelining),
	UINT("delivery.inflight-per-shard", 0, inflight_per_shard, 16, 1000000),
	{ "delivery.inflight-mib-per-shard", 0, K_MIB, FIELD(uint64_t, inflight_bytes_per_shard),
	  1, 1 << 20, NULL, NULL },
	UINT("delivery.destination-failures", 0, dest_failures, 1, 100),
	MS("delivery.destination-backoff", 0, dest_backoff_ms, 0.001, 86400),
	MS("delivery.destination-backoff-max", 0, dest_backoff_max_ms, 0.001, 86400),
	BOOL("delivery.bounce-on-5xx-greeting", bounce_5xx_greeting),
	{ "metrics", OPT_METRICS, K_STR, FIELD(char *, metrics), 0, 0, NULL, metrics_invalid },
	{ "control-socket", OPT_CONTROL, K_STR, FIELD(char *, control_socket), 0, 0, NULL, control_invalid },
	GROUP("doctor"),
	{ "doctor.at-start", 0, K_STR, FIELD(char *, doctor_at_start), 0, 0, NULL, at_start_invalid },
	UINT("doctor.daily-volume", 0, doctor_daily_volume, 0, 1000000000),
	GROUP("tls"),
	{ "tls.policy", OPT_TLS, K_STR, NOF, 0, 0, tls_policy_from_file, NULL },
	STR("tls.ca", OPT_TLSCA, tls_ca),
	BOOL("tls.plain-fallback", tls_plain_fallback),
	MS("tls.plain-fallback-time", 0, tls_plain_fallback_ms, 1, 7 * 86400),
	LIST("tls.rules", tls_rule_from_file),
	MEMBER("tls.rules.domain", K_STR, 0, 0),
	MEMBER("tls.rules.group", K_STR, 0, 0),
	MEMBER("tls.rules.policy", K_STR, 0, 0),
	LIST("pools", pool_from_file),
	MEMBER("pools.name", K_STR, 0, 0),
	MEMBER("pools.ips", K_LIST, 0, 0),
	MEMBER("pools.ips.ip", K_STR, 0, 0),
	{ "pools.ips.helo", 0, K_STR, NOF, 0, 0, NULL, helo_invalid },
	MEMBER("pools.ips.weight", K_UINT, 1, 1000000),
	{ "default-pool", 0, K_STR, NOF, 0, 0, NULL, NULL },  /* pools_resolve() */
	LIST("pool-rules", pool_rule_from_file),
	MEMBER("pool-rules.job", K_STR, 0, 0),
	MEMBER("pool-rules.sender-domain", K_STR, 0, 0),
	MEMBER("pool-rules.pool", K_STR, 0, 0),
	GROUP("shaping"),
	{ "shaping.providers", 0, K_STR, NOF, 0, 0, providers_path_from_file, NULL },
	LIST("shaping.rules", shape_rule_from_file),
	SHAPE_MEMBERS("shaping.rules"),
	MEMBER("shaping.rules.source", K_STR, 0, 0),
	MEMBER("shaping.rules.pool", K_STR, 0, 0),
	/* The providers file (providers_load()): '@' is in no setting name,
	 * so the configuration cannot reach these rows. */
	LIST(PROVIDERS_ROOT ".providers", provider_from_file),
	SHAPE_MEMBERS(PROVIDERS_ROOT ".providers"),
	LIST("waves", wave_from_file),
	MEMBER("waves.job", K_STR, 0, 0),
	MEMBER("waves.size", K_UINT, 1, 100000000),
	MEMBER("waves.every", K_STR, 0, 0),
	GROUP("warmup"),
	{ "warmup.timezone", 0, K_STR, NOF, 0, 0, warm_tz_from_file, NULL },
	{ "warmup.plan", 0, K_NUMBERS, NOF, 0, 0, warm_plan_from_file, NULL },
	LIST("warmup.ips", warm_ip_from_file),
	MEMBER("warmup.ips.ip", K_STR, 0, 0),
	MEMBER("warmup.ips.start", K_STR, 0, 0),
	MEMBER("warmup.ips.plan", K_NUMBERS, 0, 0),
	GROUP("adaptation"),
	{ "adaptation.responses", 0, K_STR, NOF, 0, 0, responses_path_from_file, NULL },
	REAL("adaptation.slow-factor", adapt.slow_factor, 0.01, 0.99),
	RATE("adaptation.floor", 0, adapt.floor),
	REAL("adaptation.increase", adapt.increase, 0.001, 1),
	MS("adaptation.increase-every", 0, adapt.increase_every_ms, 0.1, 86400),
	MS("adaptation.holdoff", 0, adapt.holdoff_ms, 0, 3600),
	MS("adaptation.suspend-time", 0, adapt.suspend_ms, 1, 24 * 86400.0), /* int ms: under 24.8 days */
	LIST("adaptation.rules", reply_rule_from_file),
	REPLY_MEMBERS("adaptation.rules"),
	LIST(RESPONSES_ROOT ".responses", shipped_reply_rule),
	REPLY_MEMBERS(RESPONSES_ROOT ".responses"),
	GROUP("feedback"),
	{ "feedback.classes", 0, K_STR, NOF, 0, 0, classes_path_from_file, NULL },
	LIST("feedback.class-rules", bounce_rule_from_file),
	CLASS_MEMBERS("feedback.class-rules"),
	LIST(CLASSES_ROOT ".classes", shipped_bounce_rule),
	CLASS_MEMBERS(CLASSES_ROOT ".classes"),
	STR("feedback.secret-file", 0, feedback_secret_file),
	{ "feedback.feedback-id", 0, K_STR, FIELD(char *, feedback_id_tpl), 0, 0, NULL, header_template_invalid },
	{ "feedback.list-unsubscribe", 0, K_STR, FIELD(char *, unsubscribe_tpl), 0, 0, NULL, header_template_invalid },
	BOOL("feedback.list-unsubscribe-post", unsubscribe_post),
	STR("feedback.maildir", 0, feedback_maildir),
	{ "feedback.require-track", 0, K_BOOL, NOF, 0, 0, require_track_from_file, NULL },
	REAL("feedback.complaint-threshold", complaint_threshold, 0, 1),
	UINT("feedback.complaint-min", 0, complaint_min, 0, 1000000000),
	STR("suppression-list", 0, suppression_list),
	GROUP("timeouts"),
	MS("timeouts.connect", 0, timeouts.connect, TIMEOUT),
	MS("timeouts.banner", 0, timeouts.banner, TIMEOUT),
	MS("timeouts.ehlo", 0, timeouts.ehlo, TIMEOUT),
	MS("timeouts.mail", 0, timeouts.mail, TIMEOUT),
	MS("timeouts.rcpt", 0, timeouts.rcpt, TIMEOUT),
	MS("timeouts.data", 0, timeouts.data, TIMEOUT),
	MS("timeouts.data-block", 0, timeouts.data_block, TIMEOUT),
	MS("timeouts.dot", 0, timeouts.dot, TIMEOUT),
	MS("timeouts.quit", 0, timeouts.quit, TIMEOUT),
	MS("timeouts.idle", 0, timeouts.idle, TIMEOUT),
	{ NULL, OPT_TIMEOUT, K_MS, NOF, TIMEOUT, NULL, NULL },  /* all but idle at once */
};

static const struct knob *knob_at(const char *path)
{
	for (size_t i = 0; i < ARRAY_LEN(knobs); i++)
		if (knobs[i].path && strcmp(knobs[i].path, path) == 0)
			return &knobs[i];
	return NULL;
}

static const struct knob *knob_of_flag(int opt)
{
	for (size_t i = 0; i < ARRAY_LEN(knobs); i++)
		if (knobs[i].opt == opt)
			return &knobs[i];
	return NULL;
}

static bool integral(enum kind k) { return k == K_UINT || k == K_PORT || k == K_MIB; }
static bool seconds(enum kind k) { return k == K_MS || k == K_SECS; }
static bool real(enum kind k) { return seconds(k) || k == K_REAL; }
/* A list or an array: its elements are walked one by one. */
static bool has_elements(enum kind k) { return k == K_LIST || k == K_STRINGS || k == K_NUMBERS; }

/* "1..65535" or "0.001..86400 seconds" */
static const char *bounds_text(const struct knob *k, char *out, size_t len)
{
	snprintf(out, len, "%.10g..%.10g%s", k->min, k->max, seconds(k->kind) ? " seconds" : "");
	return out;
}

static void knob_store(struct config *cfg, const struct knob *k, double v)
{
	char *f = (char *)cfg + k->off;
	switch (k->kind) {
	case K_UINT: *(unsigned *)f = (unsigned)v; break;
	case K_PORT: *(uint16_t *)f = (uint16_t)v; break;
	case K_MIB: *(uint64_t *)f = (uint64_t)v << 20; break;
	case K_MS: *(int *)f = (int)(v * 1000 + 0.5); break;
	case K_SECS: case K_REAL: *(double *)f = v; break;
	default: ASSERT(!"a number");
	}
}

/* ---- config file ---- */

/* Edits (insert, delete, change, swap two neighbours) from a to b, for
 * "did you mean"; large for long names. */
static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned d[64][64];
	if (la >= 64 || lb >= 64)
		return 1000;
	for (size_t i = 0; i <= la; i++)
		for (size_t j = 0; j <= lb; j++) {
			if (!i || !j) {
				d[i][j] = (unsigned)(i + j);
				continue;
			}
			unsigned v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

/* The parent of a path in the schema ("" at the top) and its last name. */
static const char *parent_of(const char *path, char *out, size_t len)
{
	const char *dot = strrchr(path, '.');
	size_t n = dot ? (size_t)(dot - path) : 0;
	snprintf(out, len, "%.*s", (int)n, path);
	return dot ? dot + 1 : path;
}

/* Settings directly in a group (or at the top), not inside a list. */
static bool in_group(const char *parent)
{
	const struct knob *p = knob_at(parent);
	return !*parent || (p && p->kind == K_GROUP);
}

/* "; did you mean 'delivery.max-connections'?" for a name unknown under
 * parent: a close name beside it, or the same name in another group. */
static void suggest(const char *parent, const char *shown_parent, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);
	unsigned best = n < 5 ? 2 : n < 12 ? 3 : 4; /* cost must stay below this */
	out[0] = 0;
	for (size_t i = 0; i < ARRAY_LEN(knobs); i++) {
		char kp[64];
		if (!knobs[i].path)
			continue;
		const char *base = parent_of(knobs[i].path, kp, sizeof(kp));
		bool beside = strcmp(kp, parent) == 0;
		if (!beside && !(in_group(parent) && in_group(kp)))
			continue;
		unsigned cost = edit_distance(name, base) + !beside;
		if (cost >= best)
			continue;
		best = cost;
		if (beside)
			snprintf(out, len, "; did you mean '%s%s%s'?", shown_parent, *shown_parent ? "." : "", base);
		else
			snprintf(out, len, "; did you mean '%s'?", knobs[i].path);
	}
}

static double setting_number(const config_setting_t *s)
{
	if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		return config_setting_get_float(s);
	return (double)config_setting_get_int64(s);
}

static bool type_fits(enum kind k, int t)
{
	bool whole = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
	switch (k) {
	case K_GROUP: return t == CONFIG_TYPE_GROUP;
	case K_LIST: return t == CONFIG_TYPE_LIST;
	case K_STRINGS: case K_NUMBERS: return t == CONFIG_TYPE_ARRAY;
	case K_STR: return t == CONFIG_TYPE_STRING;
	case K_BOOL: return t == CONFIG_TYPE_BOOL;
	case K_RATE: return t == CONFIG_TYPE_STRING;
	case K_MS: case K_SECS: case K_REAL: return whole || t == CONFIG_TYPE_FLOAT;
	default: return whole;
	}
}

static const char *const kind_text[] = {
	[K_GROUP] = "a group: { ... }", [K_LIST] = "a list: ( { ... }, ... )",
	[K_STRINGS] = "an array of strings: [ \"...\", ... ]", [K_STR] = "a string",
	[K_BOOL] = "true or false", [K_UINT] = "a whole number", [K_PORT] = "a whole number",
	[K_MIB] = "a whole number", [K_MS] = "a number of seconds", [K_SECS] = "a number of seconds",
	[K_REAL] = "a number",
	[K_NUMBERS] = "an array of whole numbers: [ 50, 100, ... ]",
	[K_RATE] = "a rate: \"N/s\", \"N/m\" or \"N/h\"",
};

/* The type and value of a setting against its row; file and line if wrong. */
static void check_setting(const struct knob *k, const config_setting_t *s, const char *shown)
{
	char b[64];
	if (!type_fits(k->kind, config_setting_type(s)))
		fail_at(s, "%s must be %s", shown, kind_text[k->kind]);
	if (integral(k->kind) || real(k->kind)) {
		double v = setting_number(s);
		if (!(v >= k->min && v <= k->max))
			fail_at(s, "%s must be %s", shown, bounds_text(k, b, sizeof(b)));
	}
	const char *why = k->check ? k->check(config_setting_get_string(s)) : NULL;
	if (why)
		fail_at(s, "%s %s", shown, why);
}

static void apply_setting(struct config *cfg, const struct knob *k, const config_setting_t *s, const char *shown)
{
	if (k->apply)
		k->apply(cfg, s, shown);
	else if (k->off == NOF)
		;
	else if (k->kind == K_STR)
		set_str((char **)((char *)cfg + k->off), config_setting_get_string(s));
	else if (k->kind == K_RATE)
		config_rate_parse(config_setting_get_string(s), (double *)((char *)cfg + k->off)); /* checked */
	else if (k->kind == K_BOOL)
		*(bool *)((char *)cfg + k->off) = config_setting_get_bool(s);
	else
		knob_store(cfg, k, setting_number(s));
}

/* A path as the user sees it ("routes[2].port"); "..." ends one too long. */
__attribute__((format(printf, 3, 4)))
static void shown_path(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	if (n >= (int)len)
		memcpy(out + len - 4, "...", 4);
}

static void walk_group(struct config *cfg, const config_setting_t *g, const char *parent, const char *shown_parent);

static void walk_elements(struct config *cfg, const struct knob *k, const config_setting_t *s, const char *shown)
{
	ASSERT(has_elements(k->kind));
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char name[200];
		shown_path(name, sizeof(name), "%s[%d]", shown, i);
		if (k->kind == K_LIST && config_setting_type(e) != CONFIG_TYPE_GROUP)
			fail_at(e, "%s must be a group: { ... }", name);
		if (k->kind == K_STRINGS && config_setting_type(e) != CONFIG_TYPE_STRING)
			fail_at(e, "%s must be a string", name);
		if (k->kind == K_NUMBERS && (config_setting_type(e) != CONFIG_TYPE_INT ||
		                             config_setting_get_int(e) < 1 || config_setting_get_int(e) > 100000000))
			fail_at(e, "%s must be a whole number from 1 to 100000000", name);
		if (k->kind == K_LIST)
			walk_group(cfg, e, k->path, name);
		if (k->apply && k->kind != K_NUMBERS)
			k->apply(cfg, e, name);
	}
}

/* One setting, at its row of the schema: checked, then applied. */
static void walk_setting(struct config *cfg, const struct knob *k, const config_setting_t *s, const char *shown)
{
	check_setting(k, s, shown);
	if (k->kind == K_GROUP)
		walk_group(cfg, s, k->path, shown);
	else if (has_elements(k->kind)) {
		walk_elements(cfg, k, s, shown);
		if (k->kind == K_NUMBERS && k->apply) /* the whole array, its elements checked */
			k->apply(cfg, s, shown);
	} else {
		apply_setting(cfg, k, s, shown);
	}
}

/* Every setting of g (the top, a group or an element of a list) against
 * the schema, where g is at parent ("" at the top; "routes" in a route)
 * and is shown to the user as shown_parent ("routes[2]"). */
static void walk_group(struct config *cfg, const config_setting_t *g, const char *parent, const char *shown_parent)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		char path[128], shown[200], hint[120];
		shown_path(path, sizeof(path), "%s%s%s", parent, *parent ? "." : "", name);
		shown_path(shown, sizeof(shown), "%s%s%s", shown_parent, *shown_parent ? "." : "", name);
		const struct knob *k = knob_at(path);
		if (!k) {
			suggest(parent, shown_parent, name, hint, sizeof(hint));
			fail_at(s, "unknown setting '%s'%s", shown, hint);
		}
		walk_setting(cfg, k, s, shown);
	}
}

static void config_load_file(struct config *cfg, const char *path)
{
	ASSERT(!loading); /* one file at a time; a failed reload let go of its tree */
	config_init(&file_tree);
	loading = &file_tree;
	loading_path = path;
	if (config_read_file(loading, path) != CONFIG_TRUE)
		config_fail("%s:%d: %s", config_error_file(loading) ? config_error_file(loading) : path,
		            config_error_line(loading), config_error_text(loading));
	walk_group(cfg, config_root_setting(loading), "", "");
	pools_resolve(cfg, loading);
	loading = NULL;
	config_destroy(&file_tree);
}

/* A shipped rules file: the one the configuration names ("": none),
 * else the installed one (SLUICE_DATADIR/name), else the copy built into
 * the binary. Its settings are walked under root (which no setting of the
 * configuration can reach). */
static void shipped_load(struct config *cfg, bool given, char **path_field, const char *setting,
                         const char *name, const char *built_in, const char *root)
{
	char installed[300], shown[80];
	snprintf(installed, sizeof(installed), "%s/%s", SLUICE_DATADIR, name);
	snprintf(shown, sizeof(shown), "%s (built in)", name);
	if (given && !**path_field) {
		set_str(path_field, NULL);
		return;
	}
	if (!given && access(installed, F_OK) == 0)
		set_str(path_field, installed);
	const char *path = *path_field;
	if (path && access(path, R_OK) != 0)
		config_fail("%s%s%s %s: %s", given ? cfg->config_path : "", given ? ": " : "", setting, path,
		            strerror(errno));
	ASSERT(!loading);
	config_init(&file_tree);
	loading = &file_tree;
	loading_path = path ? path : shown;
	if ((path ? config_read_file(loading, path) : config_read_string(loading, built_in)) != CONFIG_TRUE)
		config_fail("%s:%d: %s", config_error_file(loading) ? config_error_file(loading) : loading_path,
		            config_error_line(loading), config_error_text(loading));
	walk_group(cfg, config_root_setting(loading), root, "");
	loading = NULL;
	config_destroy(&file_tree);
}

/* The providers file (shaping.providers). Its rules come first in
 * cfg->shape_rules (the config's are more specific), its MX patterns
 * after the config's (the config's win). */
static void providers_load(struct config *cfg)
{
	unsigned first = cfg->nshape_rules;
	shipped_load(cfg, providers_given, &cfg->providers_path, "shaping.providers", "providers.conf",
	             sluice_providers_conf, PROVIDERS_ROOT);
	unsigned n = cfg->nshape_rules - first;
	if (n && first) { /* shipped rules to the front */
		struct shape_rule *r = xmalloc(cfg->nshape_rules * sizeof(*r));
		memcpy(r, cfg->shape_rules + first, n * sizeof(*r));
		memcpy(r + n, cfg->shape_rules, first * sizeof(*r));
		free(cfg->shape_rules);
		cfg->shape_rules = r;
	}
}

/* The responses file (adaptation.responses): its rules after the
 * configuration's, which are tried first. */
static void responses_load(struct config *cfg)
{
	shipped_load(cfg, responses_given, &cfg->responses_path, "adaptation.responses", "responses.conf",
	             sluice_responses_conf, RESPONSES_ROOT);
}

#define SECRET_MIN 16
#define SECRET_MAX 4096

char *config_read_secret(const char *path, size_t *len, char *err, size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = xmalloc(SECRET_MAX + 1);
	size_t got = 0;
	int e = fd < 0 ? errno : read_full(fd, buf, SECRET_MAX + 1, 0, &got);
	if (fd >= 0)
		close(fd);
	while (!e && got && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
		got--;
	if (e)
		snprintf(err, err_len, "%s", strerror(e));
	else if (got < SECRET_MIN || got > SECRET_MAX)
		snprintf(err, err_len, "the secret must be %d to %d bytes (e.g. head -c 32 /dev/urandom | base64 > %s)",
		         SECRET_MIN, SECRET_MAX, path);
	if (e || got < SECRET_MIN || got > SECRET_MAX) {
		free(buf);
		return NULL;
	}
	*len = got;
	return buf;
}

/* feedback.secret-file: the tracking header's key. */
static void track_secret_load(struct config *cfg)
{
	char err[600];
	cfg->track_secret = config_read_secret(cfg->feedback_secret_file, &cfg->track_secret_len, err, sizeof(err));
	if (!cfg->track_secret)
		config_fail("feedback.secret-file %s: %s", cfg->feedback_secret_file, err);
}

/* The bounce classes file (feedback.classes): its rules after the
 * configuration's, which are tried first. */
static void classes_load(struct config *cfg)
{
	shipped_load(cfg, classes_given, &cfg->classes_path, "feedback.classes", "bounce-classes.conf",
	             sluice_bounce_classes_conf, CLASSES_ROOT);
}

bool config_read_classes(const char *path, struct config *out, char *err, size_t err_len)
{
	jmp_buf jb;
	memset(out, 0, sizeof(*out));
	if (setjmp(jb)) {
		reload_jmp = NULL;
		if (loading) {
			config_destroy(loading);
			loading = NULL;
		}
		config_free(out);
		snprintf(err, err_len, "%s", reload_error);
		return false;
	}
	reload_jmp = &jb;
	classes_given = path != NULL;
	set_str(&out->classes_path, path);
	classes_load(out);
	reload_jmp = NULL;
	return true;
}

/* ---- flags ---- */

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
	{ "metrics", required_argument, 0, OPT_METRICS },
	{ "control", required_argument, 0, OPT_CONTROL },
	{ "tls-ca", required_argument, 0, OPT_TLSCA },
	{ "max-rate", required_argument, 0, OPT_MAXRATE },
	{ "trace", required_argument, 0, OPT_TRACE },
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
	      "  --source-ip ADDR           send from this local address (repeatable): together\n"
	      "                             they are the pool \"default\" (weight 1 each, EHLO\n"
	      "                             name --helo), which replaces the file's pool of that\n"
	      "                             name and takes the mail no X-Pool or rule places\n"
	      "  --max-connections N        connections per (source IP, MX group), all shards (20)\n"
	      "  --max-per-connection N     messages per connection before QUIT (1000)\n"
	      "  --max-rate N/s|N/m|N/h     messages per second, minute or hour per (source IP,\n"
	      "                             MX group) (default: no limit); the providers file\n"
	      "                             and shaping.rules refine these three per group\n"
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
	      "  --trace smtp               print each connection's dialogue (commands, replies,\n"
	      "                             states, with times) on stderr; for debugging a provider\n"
	      "  --dkim DOMAIN:SELECTOR:KEYFILE  sign mail from DOMAIN (and its subdomains)\n"
	      "                             with this key (PEM, RSA >= 1024 bits or Ed25519);\n"
	      "                             repeatable: two keys for a domain, two signatures\n"
	      "  --dkim-fallback-domain D   sign mail from domains without keys with D's keys\n"
	      "  --dsn-spool DIR            for each message with bounced or expired recipients,\n"
	      "                             write an RFC 3464 report to its sender into DIR/new\n"
	      "                             (a spool: sluice itself can deliver it)\n"
	      "  --tls POLICY               STARTTLS where no tls.rules entry says otherwise:\n"
	      "                             none, opportunistic (default: when offered, the\n"
	      "                             certificate unchecked), required (defer without),\n"
	      "                             verify (required, and a chain valid for the MX name)\n"
	      "  --tls-ca FILE              CA certificates (PEM) for verify, instead of the\n"
	      "                             system's\n"
	      "  --metrics IP:PORT          serve Prometheus /metrics there (off by default;\n"
	      "                             loopback unless you write another address)\n"
	      "  --control PATH             the unix control socket of sluice status, top and\n"
	      "                             ctl (default SPOOL/control; \"off\": none)\n"
	      "Signals: SIGTERM/SIGINT stop (open transactions end first, see --stop-timeout);\n"
	      "  SIGHUP reads the configuration again and reopens the accounting log.\n", f);
}

static const char *flag_name(int opt)
{
	for (const struct option *o = run_opts; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

/* A flag's number, within the bounds of its row in the schema. */
static double flag_number(const struct knob *k, const char *v)
{
	char b[64], *end;
	long n;
	if (integral(k->kind)) {
		if (!parse_uint(v, (long)k->min, (long)k->max, &n))
			config_fail("--%s: '%.40s' must be a whole number, %s", flag_name(k->opt), v,
			            bounds_text(k, b, sizeof(b)));
		return (double)n;
	}
	double d = strtod(v, &end);
	if (end == v || *end || !(d >= k->min && d <= k->max))
		config_fail("--%s: '%.40s' must be %s", flag_name(k->opt), v,
		            bounds_text(k, b, sizeof(b)));
	return d;
}

/* A flag that sets what a row of the schema sets. */
static void knob_from_flag(struct config *cfg, const struct knob *k, const char *arg)
{
	const char *why = k->check ? k->check(arg) : NULL;
	if (why)
		config_fail("--%s %s", flag_name(k->opt), why);
	if (k->kind == K_STR)
		set_str((char **)((char *)cfg + k->off), arg);
	else if (k->kind == K_RATE)
		config_rate_parse(arg, (double *)((char *)cfg + k->off)); /* checked */
	else
		knob_store(cfg, k, flag_number(k, arg));
}

static void timeouts_all(struct config *cfg, const char *arg)
{
	int ms = (int)(flag_number(knob_of_flag(OPT_TIMEOUT), arg) * 1000 + 0.5);
	struct smtp_timeouts *t = &cfg->timeouts;
	t->connect = t->banner = t->ehlo = t->mail = t->rcpt = ms;
	t->data = t->data_block = t->dot = t->quit = ms;
}

static void apply_flag(struct config *cfg, int opt, const char *arg)
{
	const char *err;
	const struct knob *k = knob_of_flag(opt);
	if (k && k->off != NOF) {
		knob_from_flag(cfg, k, arg);
		return;
	}
	switch (opt) {
	case 'c': break; /* read before the other flags */
	case OPT_ROUTE:
		if ((err = config_add_route(cfg, arg)))
			config_fail("--route %s: %s", arg, err);
		break;
	case OPT_DRAIN: cfg->drain = true; break;
	case OPT_TIMEOUT: timeouts_all(cfg, arg); break;
	case OPT_NOCHUNK: cfg->use_chunking = false; break;
	case OPT_NOPIPE: cfg->use_pipelining = false; break;
	case OPT_DNS:
		if ((err = dns_server_add(cfg, arg)))
			config_fail("--dns-server %s: %s", arg, err);
		break;
	case OPT_DKIM: dkim_add_spec(cfg, arg); break;
	case OPT_TRACE:
		if (strcmp(arg, "smtp") != 0)
			config_fail("--trace %s: the only trace is 'smtp'", arg);
		cfg->trace_smtp = true;
		break;
	case OPT_SOURCEIP: break; /* read before the file (source_from_flag) */
	case OPT_TLS:
		if (!tls_policy_parse(arg, &cfg->tls_policy))
			config_fail("--tls %.40s: must be none, opportunistic, required or verify", arg);
		break;
	case OPT_HELP: run_usage(stdout); exit(0);
	default: run_usage(stderr); exit(2);
	}
}

/* The machine's host name, when it is one EHLO may carry. */
static char *default_helo(void)
{
	char h[256] = "localhost";
	gethostname(h, sizeof(h) - 1);
	h[255] = 0;
	if (helo_invalid(h)) {
		warnx_("the host name is not a valid EHLO name; sending 'localhost' (set helo)");
		return xstrdup("localhost");
	}
	return xstrdup(h);
}

/* What neither the file nor the flags said, and checks across settings. */
static void config_complete(struct config *cfg)
{
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
		cfg->shards = online_cpus();
	if (cfg->spool_workers == 0)
		cfg->spool_workers = cfg->shards < 4 ? cfg->shards : 4;
	if (cfg->spool_workers > cfg->shards)
		cfg->spool_workers = cfg->shards;
	if (!cfg->helo)
		cfg->helo = default_helo();
	if (cfg->dkim_fallback) {
		bool found = false;
		for (unsigned i = 0; i < cfg->ndkim_keys; i++)
			found = found || strcasecmp(cfg->dkim_keys[i].domain, cfg->dkim_fallback) == 0;
		if (!found)
			config_fail("dkim-fallback-domain %s: no --dkim key for that domain", cfg->dkim_fallback);
	}
	if (cfg->tls_ca && access(cfg->tls_ca, R_OK) != 0)
		config_fail("tls.ca %s: %s", cfg->tls_ca, strerror(errno));
	if (cfg->tls_ca || config_tls_verifies(cfg)) { /* the certificates load (each shard loads them again) */
		char err[300];
		struct tls_ctx *probe = tls_client_ctx_new(cfg->tls_ca, true, err, sizeof(err));
		if (!probe)
			config_fail("tls: %s", err);
		tls_ctx_free(probe);
	}
	if (cfg->control_socket && strcmp(cfg->control_socket, "off") == 0) {
		free(cfg->control_socket);
		cfg->control_socket = NULL;
	} else if (!cfg->control_socket) {
		size_t n = strlen(cfg->spool) + sizeof("/control");
		if (n <= CONTROL_PATH_MAX) {
			cfg->control_socket = xmalloc(n);
			snprintf(cfg->control_socket, n, "%s/control", cfg->spool);
		} else {
			warnx_("the spool's path is too long for a unix socket in it: no control socket "
			       "(set control-socket to a shorter path)");
		}
	}
	providers_load(cfg);
	responses_load(cfg);
	classes_load(cfg);
	if (cfg->feedback_secret_file)
		track_secret_load(cfg);
	if (cfg->require_track < 0)
		cfg->require_track = cfg->track_secret != NULL;
	else if (cfg->require_track && !cfg->track_secret)
		config_fail("feedback.require-track needs feedback.secret-file (the key of the tracking header)");
	if (cfg->suppression_list && strcmp(cfg->suppression_list, "off") == 0) {
		free(cfg->suppression_list);
		cfg->suppression_list = NULL;
	} else if (!cfg->suppression_list) {
		size_t n = strlen(cfg->spool) + sizeof("/suppress");
		cfg->suppression_list = xmalloc(n);
		snprintf(cfg->suppression_list, n, "%s/suppress", cfg->spool);
	}
	warm_ips_resolve(cfg);
	if (cfg->dest_backoff_max_ms < cfg->dest_backoff_ms)
		config_fail("%s: delivery.destination-backoff-max must be at least delivery.destination-backoff",
		            cfg->config_path ? cfg->config_path : "config");
}

/* True the first time the flag opt is want (*seen remembers). */
static bool first_of(int opt, int want, bool *seen)
{
	if (opt != want || *seen)
		return false;
	*seen = true;
	return true;
}

void config_from_run_args(struct config *cfg, int argc, char **argv)
{
	config_defaults(cfg);
	ipv6_set = -1;
	flag_pool = file_default_seen = providers_given = responses_given = classes_given = false;
	/* First pass: the config file, so that flags override it; and the
	 * source IPs of flags, which come first (and replace the file's pool
	 * "default"). */
	int opt;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "c:", run_opts, NULL)) != -1) {
		if (opt == 'c')
			set_str(&cfg->config_path, optarg);
		if (opt == OPT_SOURCEIP)
			source_from_flag(cfg, optarg);
	}
	if (cfg->config_path)
		config_load_file(cfg, cfg->config_path);
	else
		pools_resolve(cfg, NULL);
	/* Routes and keys from flags replace the file's, as any flag does. */
	bool flag_routes = false, flag_keys = false, flag_dns = false;
	optind = 1;
	opterr = 1;
	while ((opt = getopt_long(argc, argv, "c:", run_opts, NULL)) != -1) {
		if (first_of(opt, OPT_ROUTE, &flag_routes))
			routes_clear(cfg);
		if (first_of(opt, OPT_DNS, &flag_dns))
			cfg->ndns_servers = 0;
		if (first_of(opt, OPT_DKIM, &flag_keys))
			dkim_clear(cfg);
		apply_flag(cfg, opt, optarg);
	}
	if (optind < argc)
		config_fail("run: unexpected argument '%s' (see sluice run --help)", argv[optind]);
	config_complete(cfg);
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
