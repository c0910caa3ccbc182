/* dns/resolve_cmd.c - `sluice resolve`: asks the resolver the shards use,
 * on a ring of its own, for names from the command line or a file, and
 * prints each answer (or each domain's MX plan) as a JSON line. For
 * checking a setup, for tests, and for the cold-cache benchmark. */
#define _GNU_SOURCE
#include "mx.h"
#include "resolver.h"
#include "../engine/lib/json.h"
#include "../engine/lib/util.h"
#include "../engine/lib/ring.h"
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OP_BASE 16

struct job { struct ctx *cx; char *name; bool done; };

struct ctx {
	uint16_t type;            /* 0: MX plan */
	bool quiet;
	unsigned done;
	struct buf out;
	struct job *jobs;         /* the names, in the order asked */
	size_t njobs, cap;
};

/* What the flags set, and the resolver's servers. */
struct settings {
	struct dns_server servers[8];
	unsigned nservers, concurrency, attempts;
	int timeout_ms;
	struct mx_config mc;
	const char *file;
};

static bool all_answered(const struct ctx *cx)
{
	return cx->done == cx->njobs;
}

static void usage(FILE *f)
{
	fputs("usage: sluice resolve [--dns-server IP[:PORT]]... [--type plan|mx|a|aaaa|txt|ptr]\n"
	      "                      [--smtp-port N] [--ipv6] [--timeout SECONDS]\n"
	      "                      [--concurrency N] [--file NAMES] [--quiet] [NAME...]\n"
	      "Asks sluice's own resolver and prints one JSON line per name. --type plan\n"
	      "(default) prints where mail for the domain goes: MX hosts in the order tried,\n"
	      "addresses, site and MX group, or why it bounces or defers. ptr takes an IP.\n"
	      "A summary (names/s, UDP and TCP queries, timeouts) goes to standard error.\n", f);
}

static void print_answer(struct ctx *cx, const char *name, const struct dns_answer *a, const char *err)
{
	struct buf *b = &cx->out;
	buf_adds(b, "{\"name\":");
	json_add_cstr(b, name);
	buf_printf(b, ",\"status\":\"%s\",\"ttl\":%u,\"records\":[", dns_status_name(a->status), a->ttl);
	for (unsigned i = 0; i < a->n; i++) {
		char ip[INET6_ADDRSTRLEN];
		if (i)
			buf_adds(b, ",");
		if (a->rr[i].type == DNS_T_A || a->rr[i].type == DNS_T_AAAA) {
			inet_ntop(a->rr[i].type == DNS_T_A ? AF_INET : AF_INET6, a->rr[i].addr, ip, sizeof(ip));
			json_add_cstr(b, ip);
		} else if (a->rr[i].type == DNS_T_MX) {
			char t[DNS_NAME_MAX + 16];
			snprintf(t, sizeof(t), "%u %s", a->rr[i].pref, a->rr[i].text);
			json_add_cstr(b, t);
		} else {
			json_add_cstr(b, a->rr[i].text);
		}
	}
	buf_adds(b, "],\"error\":");
	json_add_cstr(b, err);
	buf_adds(b, "}\n");
}

static void print_plan(struct ctx *cx, const char *name, const struct mx_plan *p)
{
	static const char *kinds[] = { "deliver", "bounce", "defer" };
	struct buf *b = &cx->out;
	buf_adds(b, "{\"domain\":");
	json_add_cstr(b, name);
	if (!p) {
		buf_adds(b, ",\"kind\":null}\n");
		return;
	}
	buf_printf(b, ",\"kind\":\"%s\"", kinds[p->kind]);
	if (p->kind != MX_DELIVER) {
		buf_printf(b, ",\"code\":%u,\"enhanced\":\"%s\",\"why\":", p->code, p->enhanced);
		json_add_cstr(b, p->why);
		buf_adds(b, "}\n");
		return;
	}
	buf_adds(b, ",\"site\":");
	json_add_cstr(b, p->site);
	buf_adds(b, ",\"group\":");
	json_add_cstr(b, p->group);
	buf_adds(b, ",\"hosts\":[");
	for (unsigned i = 0; i < p->nhosts; i++) {
		if (i)
			buf_adds(b, ",");
		json_add_cstr(b, p->hosts[i]);
	}
	buf_adds(b, "],\"addrs\":[");
	for (unsigned i = 0; i < p->naddr; i++) {
		char t[DNS_NAME_MAX + 64], sa[64];
		sockaddr_text(&p->addr[i].sa, true, sa, sizeof(sa));
		snprintf(t, sizeof(t), "%s %s", p->addr[i].host, sa);
		if (i)
			buf_adds(b, ",");
		json_add_cstr(b, t);
	}
	buf_adds(b, "]}\n");
}

static void on_answer(void *arg, const struct dns_answer *a, const char *err)
{
	struct job *j = arg;
	ASSERT(!j->done); /* each name is answered once */
	if (!j->cx->quiet)
		print_answer(j->cx, j->name, a, err);
	j->done = true;
	j->cx->done++;
}

static void on_plan(void *arg, const struct mx_plan *p)
{
	struct job *j = arg;
	ASSERT(!j->done);
	if (!j->cx->quiet)
		print_plan(j->cx, j->name, p);
	j->done = true;
	j->cx->done++;
}

static void start(struct ctx *cx, struct dns_resolver *r, struct mx_resolver *m, struct job *j)
{
	const char *err;
	if (cx->type == 0) {
		const struct mx_plan *p = mx_lookup(m, j->name, on_plan, j);
		if (p)
			on_plan(j, p);
		return;
	}
	char ptr[128];
	const char *q = j->name;
	if (cx->type == DNS_T_PTR && dns_ptr_name(j->name, ptr, sizeof(ptr)))
		q = ptr;
	const struct dns_answer *a = dns_lookup(r, q, cx->type, on_answer, j, &err);
	if (a)
		on_answer(j, a, err);
}

/* --type's word as a query type (0: the MX plan). */
static uint16_t parse_type(const char *arg)
{
	static const struct { const char *n; uint16_t t; } types[] = {
		{ "plan", 0 }, { "mx", DNS_T_MX }, { "a", DNS_T_A }, { "aaaa", DNS_T_AAAA },
		{ "txt", DNS_T_TXT }, { "ptr", DNS_T_PTR } };
	size_t i = 0;
	while (i < ARRAY_LEN(types) && strcasecmp(types[i].n, arg))
		i++;
	if (i == ARRAY_LEN(types))
		fatal("resolve: --type %s: plan, mx, a, aaaa, txt or ptr", arg);
	return types[i].t;
}

/* Reads the flags into s and cx, the servers from /etc/resolv.conf when
 * none is given. False when the command ends here (--help, a flag it does
 * not know), with its exit status in *status. */
static bool parse_flags(int argc, char **argv, struct settings *s, struct ctx *cx, int *status)
{
	static const struct option opts[] = {
		{ "dns-server", required_argument, 0, 's' }, { "type", required_argument, 0, 't' },
		{ "smtp-port", required_argument, 0, 'p' },  { "ipv6", no_argument, 0, '6' },
		{ "timeout", required_argument, 0, 'T' },    { "concurrency", required_argument, 0, 'c' },
		{ "file", required_argument, 0, 'f' },       { "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },             { 0, 0, 0, 0 },
	};
	int opt;
	long v;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (s->nservers == ARRAY_LEN(s->servers) || !dns_server_parse(optarg, &s->servers[s->nservers++]))
				fatal("resolve: --dns-server %s: expected a numeric IP[:PORT] (at most 8)", optarg);
			break;
		case 't': cx->type = parse_type(optarg); break;
		case 'p':
			if (!parse_uint(optarg, 1, 65535, &v))
				fatal("resolve: --smtp-port: 1..65535");
			s->mc.port = (uint16_t)v;
			break;
		case '6': s->mc.ipv6 = true; break;
		case 'T': s->timeout_ms = (int)(atof(optarg) * 1000); break;
		case 'c':
			if (!parse_uint(optarg, 1, 100000, &v))
				fatal("resolve: --concurrency: 1..100000");
			s->concurrency = (unsigned)v;
			break;
		case 'f': s->file = optarg; break;
		case 'q': cx->quiet = true; break;
		case 'h': usage(stdout); *status = 0; return false;
		default: usage(stderr); *status = 2; return false;
		}
	}
	if (s->timeout_ms <= 0)
		fatal("resolve: --timeout must be positive");
	if (s->nservers == 0 && !dns_read_resolv_conf("/etc/resolv.conf", s->servers, ARRAY_LEN(s->servers),
	                                              &s->nservers, &s->timeout_ms, &s->attempts))
		fatal("resolve: no --dns-server and no nameserver in /etc/resolv.conf");
	return true;
}

static void job_add(struct ctx *cx, const char *name)
{
	if (cx->njobs == cx->cap) {
		cx->cap = cx->cap ? cx->cap * 2 : 16;
		cx->jobs = xrealloc(cx->jobs, cx->cap * sizeof(*cx->jobs));
	}
	cx->jobs[cx->njobs++] = (struct job){ cx, xstrdup(name), false };
}

/* One name per line; what follows a space or tab is ignored, as are empty lines. */
static void jobs_from_file(struct ctx *cx, const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		fatal("resolve: %s: cannot open", file);
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, " \t\r\n")] = 0;
		if (line[0])
			job_add(cx, line);
	}
	fclose(f);
}

/* The JSON lines formatted so far go out now. */
static void flush_out(struct ctx *cx)
{
	if (!cx->out.len)
		return;
	fwrite(cx->out.p, 1, cx->out.len, stdout);
	fflush(stdout);
	cx->out.len = 0;
}

static void reap(struct ring *ring, struct dns_resolver *r)
{
	struct ring_cqe cqes[256];
	unsigned n;
	int64_t now = now_mono_ms();
	while ((n = ring_reap(ring, cqes, ARRAY_LEN(cqes))) > 0)
		for (unsigned i = 0; i < n; i++)
			dns_on_cqe(r, &cqes[i], now);
}

/* Asks for every name, at most concurrency at a time, until all are
 * answered or 600 s after t0 (bounded: every try has a timeout, so this
 * ends). */
static void resolve_all(struct ctx *cx, struct ring *ring, struct dns_resolver *r, struct mx_resolver *m,
                        unsigned concurrency, double t0)
{
	size_t next = 0;
	while (!all_answered(cx) && now_mono_s() - t0 < 600) {
		while (next < cx->njobs && next - cx->done < concurrency)
			start(cx, r, m, &cx->jobs[next++]);
		flush_out(cx);
		if (all_answered(cx))
			break;
		ring_submit_wait(ring, 20);
		reap(ring, r);
		dns_tick(r, now_mono_ms());
	}
}

static void print_summary(const struct ctx *cx, const struct dns_resolver *r, double dt)
{
	uint64_t udp, tcp, timeouts;
	dns_counters(r, &udp, &tcp, &timeouts);
	fprintf(stderr, "resolve: %u of %zu names in %.3f s (%.0f/s); queries: %llu UDP, %llu TCP; %llu timeouts\n",
	        cx->done, cx->njobs, dt, dt > 0 ? cx->done / dt : 0.0, (unsigned long long)udp,
	        (unsigned long long)tcp, (unsigned long long)timeouts);
}

int resolve_main(int argc, char **argv)
{
	struct settings s = { .concurrency = 500, .attempts = 2, .timeout_ms = 2000,
	                      .mc = { .port = 25, .cache_max = 1000000 } };
	struct ctx cx = { 0 };
	int status;
	if (!parse_flags(argc, argv, &s, &cx, &status))
		return status;
	for (int i = optind; i < argc; i++)
		job_add(&cx, argv[i]);
	if (s.file)
		jobs_from_file(&cx, s.file);
	struct ring *ring = ring_new(1024);
	struct dns_resolver_config dc = { s.servers, s.nservers, s.timeout_ms, s.attempts, 1000000 };
	struct dns_resolver *r = dns_resolver_new(ring, OP_BASE, &dc);
	struct mx_resolver *m = mx_resolver_new(r, &s.mc);
	double t0 = now_mono_s();
	resolve_all(&cx, ring, r, m, s.concurrency, t0);
	if (cx.out.len) /* exit flushes it */
		fwrite(cx.out.p, 1, cx.out.len, stdout);
	print_summary(&cx, r, now_mono_s() - t0);
	mx_resolver_free(m);
	dns_resolver_free(r);
	ring_free(ring);
	for (size_t i = 0; i < cx.njobs; i++)
		free(cx.jobs[i].name);
	free(cx.jobs);
	buf_free(&cx.out);
	return all_answered(&cx) ? 0 : 1;
}
