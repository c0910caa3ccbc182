/* engine/doctor.c - see doctor.h: the DNS checks of a sending domain.
 * Each check asks what it needs through dns_sync (bounded by the
 * resolver's timeouts) and notes what it found, how grave it is and the
 * fix. */
#define _GNU_SOURCE
#include "doctor.h"
#include "../dns/dmarc.h"
#include "../dns/spf.h"
#include "../dns/sync.h"
#include "lib/tags.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BULK_DAILY 5000           /* Gmail's and Yahoo's bulk-sender threshold */
#define SPF_PROBE_IP "255.255.255.255" /* addresses no record lists on purpose */
#define SPF_PROBE_IP6 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"

static bool answered(const struct dns_answer *a)
{
	return a->status == DNS_OK || a->status == DNS_NODATA || a->status == DNS_NXDOMAIN;
}

/* The domain of an address, or the text itself when it has no '@'. */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

/* ---- SPF ---- */

/* What an SPF record for these IPs could say. */
static void spf_suggestion(const struct doctor_domain *d, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "publish one TXT record at %s: \"v=spf1", d->domain);
	for (unsigned i = 0; i < d->nips && n < len; i++)
		n += (size_t)snprintf(out + n, len - n, " %s:%s", strchr(d->ips[i].ip, ':') ? "ip6" : "ip4", d->ips[i].ip);
	if (n < len)
		snprintf(out + n, len - n, "%s -all\"", d->nips ? "" : " mx");
}

static void check_spf_record(struct dns_sync *dns, const struct doctor_domain *d, const char *spf_domain,
                             struct doctor_report *r)
{
	struct check *c = report_check(r, "spf", spf_domain);
	struct dns_answer txt;
	char err[200], fix[1024];
	dns_sync_ask(dns, spf_domain, DNS_T_TXT, &txt, err, sizeof(err));
	spf_suggestion(d, fix, sizeof(fix));
	const char *rec;
	unsigned n = spf_records(&txt, &rec);
	if (!answered(&txt)) {
		check_note(c, CHECK_FAIL, "check that the domain's name servers answer", "cannot ask TXT %s: %s",
		           spf_domain, err);
	} else if (n == 0) {
		check_note(c, CHECK_FAIL, fix, "no SPF record (no TXT record starting \"v=spf1\")");
	} else if (n > 1) {
		check_note(c, CHECK_FAIL, "merge them into one record: receivers answer permerror to two",
		           "%u SPF records (exactly one allowed, RFC 7208 3.2)", n);
	} else {
		check_note(c, CHECK_PASS, NULL, "record: %s", rec);
		char q = spf_all_qualifier(rec);
		bool redirect = strcasestr(rec, "redirect=") != NULL;
		if (q == '+')
			check_note(c, CHECK_FAIL, "end the record with -all (or ~all)",
			           "\"+all\" (or a bare \"all\") lets every IP on the Internet pass");
		else if (q == '?')
			check_note(c, CHECK_FAIL, "end the record with -all (or ~all)",
			           "\"?all\" makes every other IP neutral: the record protects nothing");
		else if (!q && !redirect)
			check_note(c, CHECK_WARN, "end the record with -all (or ~all)",
			           "no \"all\" and no redirect=: unlisted IPs get neutral");
		/* probes in no sane record: they visit every term, and a pass
		 * means the record lets any address pass */
		struct spf_eval e, e6;
		struct spf_query q1 = { SPF_PROBE_IP, spf_domain, NULL, dns_sync_ask_cb, dns };
		struct spf_query q6 = { SPF_PROBE_IP6, spf_domain, NULL, dns_sync_ask_cb, dns };
		spf_check_host(&q1, &e);
		spf_check_host(&q6, &e6);
		if (e6.lookups > e.lookups || e6.result == SPF_PASS || e6.result == SPF_PERMERROR)
			e = e6;
		if (e.result == SPF_PASS)
			check_note(c, CHECK_FAIL, "list only your own IPs (ip4:, ip6:, include: of your providers)",
			           "the record lets any IP on the Internet pass (%s)", e.detail);
		else if (e.result == SPF_PERMERROR)
			check_note(c, CHECK_FAIL, "fix the record (flatten includes to stay within 10 DNS lookups)",
			           "evaluating it is a permerror: %s", e.detail);
		else if (e.result == SPF_TEMPERROR)
			check_note(c, CHECK_FAIL, "check the name servers of the domains it names",
			           "evaluating it is a temperror: %s", e.detail);
		else if (e.lookups >= 9)
			check_note(c, CHECK_WARN, "flatten includes: one more makes every check a permerror",
			           "%u of 10 DNS lookups used", e.lookups);
		else
			check_note(c, CHECK_PASS, NULL, "%u of 10 DNS lookups, %u void", e.lookups, e.voids);
		if (e.used_ptr)
			check_note(c, CHECK_WARN, "replace ptr with ip4/ip6 or a",
			           "uses the ptr mechanism (RFC 7208 5.5: do not use; some receivers ignore it)");
	}
	dns_answer_free(&txt);
}

static void check_spf_ip(struct dns_sync *dns, const struct doctor_domain *d, const struct doctor_ip *ip,
                         struct doctor_report *r)
{
	struct check *c = report_check(r, "spf", ip->ip);
	char sender[DNS_NAME_MAX + 80], fix[1024];
	const char *mf = d->mail_from ? d->mail_from : d->domain;
	snprintf(sender, sizeof(sender), "%s", mf);
	struct spf_eval e;
	struct spf_query q = { ip->ip, sender, ip->helo, dns_sync_ask_cb, dns };
	spf_check_host(&q, &e);
	snprintf(fix, sizeof(fix), "add %s:%s to the SPF record of %s", strchr(ip->ip, ':') ? "ip6" : "ip4", ip->ip,
	         e.domain);
	enum check_status st = CHECK_FAIL;
	if (e.result == SPF_PASS)
		st = CHECK_PASS;
	else if (e.result == SPF_SOFTFAIL || e.result == SPF_NEUTRAL)
		st = CHECK_WARN;
	check_note(c, st, e.result == SPF_PERMERROR || e.result == SPF_TEMPERROR ? "fix the record" : fix,
	           "%s for %s from %s: %s (%u DNS lookups, %u void)", spf_result_name(e.result), sender, ip->ip,
	           e.detail, e.lookups, e.voids);
}

/* ---- DKIM ---- */

static void check_dkim(struct dns_sync *dns, const struct doctor_domain *d, const struct doctor_dkim *k,
                       struct doctor_report *r)
{
	char name[DNS_NAME_MAX + 80], err[200];
	snprintf(name, sizeof(name), "%s._domainkey.%s", k->selector, d->domain);
	struct check *c = report_check(r, "dkim", name);
	char *pub = k->key ? dkim_key_public(k->key) : NULL;
	struct buf fixb = { 0 };
	if (pub)
		buf_printf(&fixb, "publish TXT %s: \"v=DKIM1; k=%s; p=%s\"", name,
		           k->key->alg == DKIM_ALG_RSA ? "rsa" : "ed25519", pub);
	else
		buf_adds(&fixb, "publish the key's record (sluice dkim keygen prints it)");
	buf_add(&fixb, "", 1);
	const char *fix = fixb.p;
	struct dns_answer txt;
	dns_sync_ask(dns, name, DNS_T_TXT, &txt, err, sizeof(err));
	if (!answered(&txt)) {
		check_note(c, CHECK_FAIL, "check the domain's name servers", "cannot ask TXT %s: %s", name, err);
		goto out;
	}
	/* the key records: TXT records that parse as tag lists with p= */
	const char *rec = NULL;
	unsigned nrec = 0;
	for (unsigned i = 0; i < txt.n; i++) {
		struct tag_list l;
		char why[200];
		if (txt.rr[i].type == DNS_T_TXT && tags_parse(txt.rr[i].text, &l, why, sizeof(why)) && tags_get(&l, "p")) {
			if (!nrec++)
				rec = txt.rr[i].text;
		}
		tags_free(&l);
	}
	if (txt.status != DNS_OK || !txt.n) {
		check_note(c, CHECK_FAIL, fix, "no TXT record at %s: receivers cannot verify the signature", name);
		goto out;
	}
	if (!nrec) {
		check_note(c, CHECK_FAIL, fix, "the TXT record at %s is not a DKIM key record: %s", name,
		           txt.rr[0].text ? txt.rr[0].text : "");
		goto out;
	}
	if (nrec > 1) {
		check_note(c, CHECK_FAIL, "keep one record per selector", "%u key records at %s (verifiers pick one)",
		           nrec, name);
		goto out;
	}
	struct tag_list l;
	char why[200];
	tags_parse(rec, &l, why, sizeof(why));
	const char *v = tags_get(&l, "v"), *kt = tags_get(&l, "k"), *p = tags_get(&l, "p"), *t = tags_get(&l, "t");
	const char *svc = tags_get(&l, "s");
	enum dkim_alg alg = DKIM_ALG_RSA;
	if (v && (strcmp(v, "DKIM1") || strcasecmp(l.t[0].name, "v"))) {
		check_note(c, CHECK_FAIL, fix, "v=%s: a key record's v= must be DKIM1 and come first", v);
	} else if (kt && strcasecmp(kt, "rsa") && strcasecmp(kt, "ed25519")) {
		check_note(c, CHECK_FAIL, fix, "k=%s: neither rsa nor ed25519", kt);
	} else if (!*p) {
		check_note(c, CHECK_FAIL, fix, "the key is revoked (empty p=): every signature with it fails");
	} else {
		alg = kt && !strcasecmp(kt, "ed25519") ? DKIM_ALG_ED25519 : DKIM_ALG_RSA;
		unsigned bits;
		bool same;
		if (!dkim_record_key(alg, p, k->key, &bits, &same, err, sizeof(err))) {
			check_note(c, CHECK_FAIL, fix, "%s", err);
		} else {
			if (alg == DKIM_ALG_ED25519)
				check_note(c, CHECK_PASS, NULL, "Ed25519 key (RFC 8463; sign with an RSA key too: not every receiver verifies Ed25519)");
			else if (bits < 1024)
				check_note(c, CHECK_FAIL, "publish a 2048-bit key", "RSA %u bits: verifiers ignore keys under 1024 bits (RFC 8301)", bits);
			else if (bits < 2048)
				check_note(c, CHECK_WARN, "rotate to a 2048-bit key", "RSA %u bits (2048 recommended)", bits);
			else
				check_note(c, CHECK_PASS, NULL, "RSA %u bits", bits);
			if (k->key && k->key->alg != alg)
				check_note(c, CHECK_FAIL, fix, "the record is an %s key but %s is an %s key",
				           alg == DKIM_ALG_RSA ? "RSA" : "Ed25519", k->key->path,
				           k->key->alg == DKIM_ALG_RSA ? "RSA" : "Ed25519");
			else if (k->key && !same)
				check_note(c, CHECK_FAIL, fix, "the record's key is not the public half of %s: every signature fails",
				           k->key->path);
			else if (k->key)
				check_note(c, CHECK_PASS, NULL, "matches %s", k->key->path);
		}
		if (t) {
			bool testing = false;
			char flags[64];
			snprintf(flags, sizeof(flags), "%s", t);
			for (char *save = NULL, *f = strtok_r(flags, ":", &save); f; f = strtok_r(NULL, ":", &save)) {
				while (*f == ' ')
					f++;
				if (!strncmp(f, "y", 1) && (!f[1] || f[1] == ' '))
					testing = true;
			}
			if (testing)
				check_note(c, CHECK_WARN, "remove t=y once signatures verify",
				           "t=y (testing): receivers may treat signatures as unsigned");
		}
		const char *hashes = tags_get(&l, "h");
		if (hashes && !strcasestr(hashes, "sha256"))
			check_note(c, CHECK_FAIL, "remove h= or list sha256", "h=%s: sluice signs with sha256, which the key refuses",
			           hashes);
		if (svc && !strstr(svc, "email") && !strchr(svc, '*'))
			check_note(c, CHECK_FAIL, "remove s= or set s=email", "s=%s: the key is not for email", svc);
	}
	tags_free(&l);
out:
	dns_answer_free(&txt);
	free(pub);
	buf_free(&fixb);
}

/* ---- DMARC ---- */

/* The DMARC records at _dmarc.name: how many, the first in *rec (a copy). */
static unsigned dmarc_records(struct dns_sync *dns, const char *name, char **rec, bool *error, char *err, size_t len)
{
	char q[DNS_NAME_MAX + 16];
	struct dns_answer txt;
	snprintf(q, sizeof(q), "_dmarc.%s", name);
	dns_sync_ask(dns, q, DNS_T_TXT, &txt, err, len);
	*error = !answered(&txt);
	*rec = NULL;
	unsigned n = 0;
	for (unsigned i = 0; txt.status == DNS_OK && i < txt.n; i++)
		if (txt.rr[i].type == DNS_T_TXT && dmarc_is_record(txt.rr[i].text) && !n++)
			*rec = xstrdup(txt.rr[i].text);
	dns_answer_free(&txt);
	return n;
}

static void check_dmarc(struct dns_sync *dns, const struct doctor_domain *d, struct doctor_report *r)
{
	char dom[DNS_NAME_MAX + 1], err[200], where[DNS_NAME_MAX + 16], fix[1024];
	snprintf(dom, sizeof(dom), "%s", d->domain);
	str_lower(dom);
	const char *org = dmarc_org_domain(dom);
	char *rec = NULL;
	bool error;
	const char *found_at = dom;
	unsigned n = dmarc_records(dns, dom, &rec, &error, err, sizeof(err));
	if (!n && !error && strcmp(org, dom)) {
		found_at = org;
		n = dmarc_records(dns, org, &rec, &error, err, sizeof(err));
	}
	snprintf(where, sizeof(where), "_dmarc.%s", n ? found_at : dom);
	struct check *c = report_check(r, "dmarc", where);
	snprintf(fix, sizeof(fix), "publish TXT _dmarc.%s: \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\", then "
	         "move to p=quarantine or p=reject once the reports show your mail aligned", dom, dom);
	struct dmarc_record dr;
	char why[200];
	if (error) {
		check_note(c, CHECK_FAIL, "check the domain's name servers", "cannot ask TXT %s: %s", where, err);
	} else if (!n) {
		check_note(c, CHECK_FAIL, fix, "no DMARC record at _dmarc.%s%s%s: Gmail, Yahoo and Microsoft "
		           "refuse bulk mail without one", dom, strcmp(org, dom) ? " nor at _dmarc." : "",
		           strcmp(org, dom) ? org : "");
	} else if (n > 1) {
		check_note(c, CHECK_FAIL, "keep exactly one DMARC record", "%u DMARC records at %s: receivers apply none", n, where);
	} else if (!dmarc_parse(rec, &dr, why, sizeof(why))) {
		check_note(c, CHECK_FAIL, fix, "the record does not parse: %s (%s)", why, rec);
	} else {
		bool inherited = found_at != dom;
		const char *policy = inherited && dr.sp[0] ? dr.sp : dr.p;
		if (inherited)
			check_note(c, CHECK_PASS, NULL, "inherited from %s, the organisational domain (%s applies): %s", org,
			           dr.sp[0] ? "its sp=" : "its p=", rec);
		check_note(c, CHECK_PASS, NULL, "policy %s", policy);
		if (dr.problems[0])
			check_note(c, CHECK_WARN, "correct the record", "errors receivers get past: %s", dr.problems);
		if (!inherited)
			check_note(c, CHECK_PASS, NULL, "record: %s", rec);
		if (!strcmp(policy, "none") && d->daily_volume > BULK_DAILY)
			check_note(c, CHECK_WARN, "move to p=quarantine or p=reject once the reports show your mail aligned",
			           "p=none only monitors (allowed for bulk senders, but spoofed mail is not stopped)");
		if (dr.pct < 100)
			check_note(c, CHECK_WARN, NULL, "pct=%u: the policy applies to part of the mail", dr.pct);
		if (!dr.rua[0])
			check_note(c, CHECK_WARN, "add rua=mailto:... to receive aggregate reports",
			           "no rua=: you get no aggregate reports of who sends as %s", dom);
		const char *spf_dom = domain_of(d->mail_from ? d->mail_from : d->domain);
		bool spf_ok = dmarc_aligned(spf_dom, dom, dr.aspf);
		bool dkim_ok = d->dkim_domain && dmarc_aligned(d->dkim_domain, dom, dr.adkim);
		char fixa[1024];
		snprintf(fixa, sizeof(fixa), "sign with a key of %s (d=%s) and use a bounce address under %s", dom, dom, org);
		if (dkim_ok)
			check_note(c, CHECK_PASS, NULL, "DKIM d=%s aligned (adkim=%c)%s", d->dkim_domain, dr.adkim,
			           spf_ok ? ", SPF too" : "");
		else if (spf_ok)
			check_note(c, CHECK_WARN, fixa, "only SPF (%s) aligned (aspf=%c): forwarding breaks it; %s",
			           spf_dom, dr.aspf, d->dkim_domain ? "the DKIM domain is not aligned" : "no DKIM key given");
		else
			check_note(c, CHECK_FAIL, fixa, "neither the envelope sender's domain %s (aspf=%c) nor %s aligns with %s: "
			           "DMARC fails for all mail", spf_dom, dr.aspf,
			           d->dkim_domain ? d->dkim_domain : "a DKIM domain (none given)", dom);
	}
	free(rec);
}

/* ---- reverse DNS ---- */

/* ip-1-2-3-4.example, dynamic-..., dsl, pool: names receivers score as
 * residential or unnamed. */
static bool generic_name(const char *name, const char *ip)
{
	static const char *words[] = { "dynamic", "dyn", "dsl", "adsl", "dhcp", "pool", "cable", "dial", "dialup",
	                               "ppp", "broadband", "client", "customer", "unassigned", "ip" };
	char buf[DNS_NAME_MAX + 1];
	snprintf(buf, sizeof(buf), "%s", name);
	str_lower(buf);
	uint8_t a[4];
	if (inet_pton(AF_INET, ip, a) == 1) {
		char f[32], b[32];
		snprintf(f, sizeof(f), "%u-%u-%u-%u", a[0], a[1], a[2], a[3]);
		snprintf(b, sizeof(b), "%u-%u-%u-%u", a[3], a[2], a[1], a[0]);
		char dashed[DNS_NAME_MAX + 1];
		snprintf(dashed, sizeof(dashed), "%s", buf);
		for (char *p = dashed; *p; p++)
			if (*p == '.' || *p == '_')
				*p = '-';
		if (strstr(dashed, f) || strstr(dashed, b))
			return true;
	}
	for (char *save = NULL, *w = strtok_r(buf, ".-_", &save); w; w = strtok_r(NULL, ".-_", &save))
		for (size_t i = 0; i < ARRAY_LEN(words); i++)
			if (!strcmp(w, words[i]))
				return true;
	return false;
}

static void check_ptr(struct dns_sync *dns, const struct doctor_ip *ip, struct doctor_report *r)
{
	struct check *c = report_check(r, "ptr", ip->ip);
	char rev[80], err[200], fix[1024];
	snprintf(fix, sizeof(fix), "ask whoever routes %s (your host or ISP) to set its PTR to %s, and publish %s %s",
	         ip->ip, ip->helo ? ip->helo : "your EHLO name", strchr(ip->ip, ':') ? "AAAA" : "A", ip->ip);
	if (!dns_ptr_name(ip->ip, rev, sizeof(rev))) {
		check_note(c, CHECK_FAIL, NULL, "\"%s\" is not an IP address", ip->ip);
		return;
	}
	struct dns_answer ptr;
	dns_sync_ask(dns, rev, DNS_T_PTR, &ptr, err, sizeof(err));
	const char *names[10];
	unsigned nnames = 0;
	for (unsigned i = 0; ptr.status == DNS_OK && i < ptr.n && nnames < ARRAY_LEN(names); i++)
		if (ptr.rr[i].type == DNS_T_PTR && ptr.rr[i].text && *ptr.rr[i].text)
			names[nnames++] = ptr.rr[i].text;
	if (!answered(&ptr)) {
		check_note(c, CHECK_FAIL, "check the reverse zone's name servers", "cannot ask PTR %s: %s", rev, err);
		goto out;
	}
	if (!nnames) {
		check_note(c, CHECK_FAIL, fix, "no PTR record at %s: Gmail and Yahoo refuse mail from IPs without one", rev);
		goto out;
	}
	if (nnames > 1)
		check_note(c, CHECK_WARN, "keep one PTR record", "%u PTR records (receivers take one of them)", nnames);
	/* forward-confirmed: a PTR name whose addresses hold the IP (the EHLO
	 * name first, when it is one of them) */
	bool v6 = strchr(ip->ip, ':') != NULL;
	uint8_t want[16];
	inet_pton(v6 ? AF_INET6 : AF_INET, ip->ip, want);
	const char *name = NULL, *errname = NULL;
	char ferr[200] = "";
	for (unsigned pass = 0; pass < 2 && !name; pass++)
		for (unsigned i = 0; i < nnames && !name; i++) {
			bool is_helo = ip->helo && !strcasecmp(names[i], ip->helo);
			if (pass == 0 ? !is_helo : is_helo)
				continue;
			struct dns_answer fwd;
			dns_sync_ask(dns, names[i], v6 ? DNS_T_AAAA : DNS_T_A, &fwd, err, sizeof(err));
			if (!answered(&fwd) && !errname) {
				errname = names[i];
				snprintf(ferr, sizeof(ferr), "%s", err);
			}
			for (unsigned k = 0; fwd.status == DNS_OK && k < fwd.n; k++)
				if (fwd.rr[k].type == (v6 ? DNS_T_AAAA : DNS_T_A) && !memcmp(fwd.rr[k].addr, want, v6 ? 16 : 4))
					name = names[i];
			dns_answer_free(&fwd);
		}
	if (name)
		check_note(c, CHECK_PASS, NULL, "PTR %s resolves back to %s", name, ip->ip);
	else if (errname)
		check_note(c, CHECK_FAIL, "check the name servers of the PTR name's domain", "PTR %s, but asking %s %s: %s",
		           errname, v6 ? "AAAA" : "A", errname, ferr);
	else
		check_note(c, CHECK_FAIL, fix, "PTR %s, but %s does not resolve back to %s (forward-confirmed reverse DNS fails)",
		           names[0], names[0], ip->ip);
	if (!name)
		name = names[0];
	if (!ip->helo) {
		check_note(c, CHECK_WARN, "give the IP's EHLO name (--helo, or helo in the configuration)",
		           "no EHLO name to compare with %s", name);
	} else if (!strcasecmp(ip->helo, name)) {
		check_note(c, CHECK_PASS, NULL, "equals the EHLO name");
	} else {
		char a[DNS_NAME_MAX + 1], b[DNS_NAME_MAX + 1];
		snprintf(a, sizeof(a), "%s", ip->helo);
		snprintf(b, sizeof(b), "%s", name);
		str_lower(a);
		str_lower(b);
		char usefix[2 * DNS_NAME_MAX + 64];
		snprintf(usefix, sizeof(usefix), "make the EHLO name %s (or the PTR %s)", name, ip->helo);
		if (!strcmp(dmarc_org_domain(a), dmarc_org_domain(b)))
			check_note(c, CHECK_WARN, usefix, "EHLO name %s is not %s, but shares its organisational domain %s",
			           ip->helo, name, dmarc_org_domain(b));
		else
			check_note(c, CHECK_FAIL, usefix, "EHLO name %s does not match the PTR %s", ip->helo, name);
	}
	if (generic_name(name, ip->ip))
		check_note(c, CHECK_WARN, "name the IP after its mail role (e.g. mta1.example.com)",
		           "%s looks generic (dynamic or numbered): receivers score such names as residential", name);
out:
	dns_answer_free(&ptr);
}

/* ---- MX ---- */

static void check_mx(struct dns_sync *dns, const struct doctor_domain *d, struct doctor_report *r)
{
	struct check *c = report_check(r, "mx", d->domain);
	struct dns_answer mx;
	char err[200];
	dns_sync_ask(dns, d->domain, DNS_T_MX, &mx, err, sizeof(err));
	if (!answered(&mx)) {
		check_note(c, CHECK_FAIL, "check the domain's name servers", "cannot ask MX %s: %s", d->domain, err);
	} else if (mx.status == DNS_NXDOMAIN) {
		check_note(c, CHECK_FAIL, "register the domain and publish an MX", "%s does not exist (NXDOMAIN)", d->domain);
	} else if (mx.status == DNS_OK && mx.n == 1 && mx.rr[0].type == DNS_T_MX && !*mx.rr[0].text) {
		check_note(c, CHECK_FAIL, "publish an MX that accepts bounces and replies",
		           "null MX (RFC 7505): %s receives no mail, so bounces and replies are lost and "
		           "receivers may refuse it as a sender", d->domain);
	} else if (mx.status == DNS_OK && mx.n) {
		struct buf hosts = { 0 };
		unsigned with_addr = 0, asked = 0;
		bool null_mx = false;
		for (unsigned i = 0; i < mx.n; i++) {
			if (mx.rr[i].type != DNS_T_MX)
				continue;
			if (!*mx.rr[i].text) {
				null_mx = true;
				continue;
			}
			if (i < 5)
				buf_printf(&hosts, "%s%u %s", hosts.len ? ", " : "", mx.rr[i].pref, mx.rr[i].text);
			for (unsigned t = 0; t < 2 && asked < 10 && !with_addr; t++) {
				struct dns_answer a;
				dns_sync_ask(dns, mx.rr[i].text, t ? DNS_T_AAAA : DNS_T_A, &a, err, sizeof(err));
				asked++;
				with_addr += a.status == DNS_OK && a.n > 0;
				dns_answer_free(&a);
			}
		}
		buf_add(&hosts, "", 1);
		if (!with_addr)
			check_note(c, CHECK_FAIL, "give the MX hosts addresses (A/AAAA)",
			           "MX %s, but none of them has an address: bounces and replies cannot arrive", hosts.p);
		else
			check_note(c, CHECK_PASS, NULL, "MX %s", hosts.p);
		if (null_mx)
			check_note(c, CHECK_WARN, "remove the null MX (\".\") or the others",
			           "a null MX among other MX records (RFC 7505 allows it only alone)");
		buf_free(&hosts);
	} else {
		struct dns_answer a, aaaa;
		dns_sync_ask(dns, d->domain, DNS_T_A, &a, err, sizeof(err));
		dns_sync_ask(dns, d->domain, DNS_T_AAAA, &aaaa, err, sizeof(err));
		if ((a.status == DNS_OK && a.n) || (aaaa.status == DNS_OK && aaaa.n))
			check_note(c, CHECK_PASS, NULL, "no MX; mail goes to the domain's own address (implicit MX, RFC 5321 5.1)");
		else
			check_note(c, CHECK_FAIL, "publish an MX that accepts bounces and replies",
			           "no MX and no address: %s cannot receive bounces or replies", d->domain);
		dns_answer_free(&a);
		dns_answer_free(&aaaa);
	}
	dns_answer_free(&mx);
}

/* ---- optional records ---- */

static void check_optional(struct dns_sync *dns, const char *check, const char *name, const char *version,
                           const char *needs, const char *why_useful, struct doctor_report *r)
{
	struct check *c = report_check(r, check, name);
	struct dns_answer txt;
	char err[200];
	dns_sync_ask(dns, name, DNS_T_TXT, &txt, err, sizeof(err));
	const char *rec = NULL;
	for (unsigned i = 0; txt.status == DNS_OK && i < txt.n; i++)
		if (txt.rr[i].type == DNS_T_TXT && !strncasecmp(txt.rr[i].text, version, strlen(version)))
			rec = txt.rr[i].text;
	struct tag_list l = { 0 };
	char why[200] = "";
	bool parsed = rec && tags_parse(rec, &l, why, sizeof(why));
	const char *value = parsed ? tags_get(&l, needs) : NULL;
	if (!answered(&txt))
		check_note(c, CHECK_WARN, NULL, "cannot ask TXT %s: %s", name, err);
	else if (!rec)
		check_note(c, CHECK_INFO, NULL, "no %s record (optional: %s)", check, why_useful);
	else if (!parsed)
		check_note(c, CHECK_WARN, NULL, "the record does not parse (%s): %s", why, rec);
	else if (!value || !*value)
		check_note(c, CHECK_WARN, NULL, "the record has no %s= value: %s", needs, rec);
	else
		check_note(c, CHECK_PASS, NULL, "%s", rec);
	tags_free(&l);
	dns_answer_free(&txt);
}

void doctor_check_domain(struct dns_sync *dns, const struct doctor_domain *d, struct doctor_report *out)
{
	char name[DNS_NAME_MAX + 32];
	const char *spf_domain = domain_of(d->mail_from ? d->mail_from : d->domain);
	check_spf_record(dns, d, spf_domain, out);
	for (unsigned i = 0; i < d->nips; i++)
		check_spf_ip(dns, d, &d->ips[i], out);
	for (unsigned i = 0; i < d->ndkim; i++)
		check_dkim(dns, d, &d->dkim[i], out);
	check_dmarc(dns, d, out);
	for (unsigned i = 0; i < d->nips; i++)
		check_ptr(dns, &d->ips[i], out);
	check_mx(dns, d, out);
	snprintf(name, sizeof(name), "_mta-sts.%s", d->domain);
	check_optional(dns, "mta-sts", name, "v=STSv1", "id", "receivers' mail to you must use TLS", out);
	snprintf(name, sizeof(name), "_smtp._tls.%s", d->domain);
	check_optional(dns, "tls-rpt", name, "v=TLSRPTv1", "rua", "reports of TLS failures on mail to you", out);
	snprintf(name, sizeof(name), "default._bimi.%s", d->domain);
	check_optional(dns, "bimi", name, "v=BIMI1", "l", "your logo next to your mail, with DMARC enforcement", out);
}
