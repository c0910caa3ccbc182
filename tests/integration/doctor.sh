# `sluice doctor` (issue 17, /work/spec/doctor-contract.md) against NSD, a
# real authoritative server on 127.0.0.1 serving co.uk (a public suffix:
# organisational domains come from the public suffix list), the reverse
# zones of 192.0.2.0/24 and 2001:db8::/32. Static records in
# tests/fixtures/doctor/; the DKIM records are made here from keys made
# here (openssl). Each case asserts the exact check (name + subject), its
# status and the exit status (1 when any check fails, else 0):
#   coherent domain: every check passes;
#   DKIM: missing, another key's record, 1024-bit, t=y, Ed25519, revoked;
#   DMARC: missing everywhere, inherited from the org domain, unaligned,
#          p=none (bulk or not), no rua;
#   PTR: missing, not forward-confirmed, another org domain than EHLO,
#        same org domain, IPv6, generic name, no --helo;
#   MX: null MX, implicit (A only), neither, NXDOMAIN;
#   the readable output (no --json) names every check.
# Every mismatch is listed (command, expectation, sluice's JSON) before the
# test fails.
source "$(dirname "$0")/../lib.sh"
set -e
FIX=$(cd "$HERE/fixtures/doctor" && pwd)
cd "$T"

# ---- keys (openssl) and their DKIM records ----
key() { timeout 30 openssl genpkey -algorithm "$@" 2>/dev/null || fail "openssl genpkey $*"; }
key RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
key RSA -pkeyopt rsa_keygen_bits:2048 -out other.key
key RSA -pkeyopt rsa_keygen_bits:1024 -out weak.key
key ED25519 -out ed.key
key ED25519 -out ed-other.key
# p= of an RSA key: its SubjectPublicKeyInfo; of an Ed25519 key: the raw 32
# bytes (RFC 8463), the tail of the 44-byte SubjectPublicKeyInfo.
rsa_p() { openssl pkey -in "$1" -pubout -outform DER | base64 -w0; }
ed_p() { openssl pkey -in "$1" -pubout -outform DER | tail -c 32 | base64 -w0; }
[ "$(ed_p ed.key | base64 -d | wc -c)" -eq 32 ] || fail "ed25519 public key is not 32 bytes"
# txt NAME TEXT: a zone TXT line, TEXT in strings of at most 255 bytes.
txt() {
	local s=$2 out=""
	while [ -n "$s" ]; do out+=" \"${s:0:255}\""; s=${s:255}; done
	echo "$1. TXT$out"
}
RSA_P=$(rsa_p rsa.key)
{ cat "$FIX/co.uk.zone"
  echo "; ---- DKIM records made by doctor.sh"
  txt s1._domainkey.good.co.uk "v=DKIM1; k=rsa; p=$RSA_P"
  txt s1._domainkey.dkmismatch.co.uk "v=DKIM1; k=rsa; p=$(rsa_p other.key)"
  txt s1._domainkey.dkweak.co.uk "v=DKIM1; k=rsa; p=$(rsa_p weak.key)"
  txt s1._domainkey.dktesting.co.uk "v=DKIM1; k=rsa; t=y; p=$RSA_P"
  txt s1._domainkey.dked.co.uk "v=DKIM1; k=ed25519; p=$(ed_p ed.key)"
  txt s1._domainkey.mail.eu.dmorg.co.uk "v=DKIM1; k=rsa; p=$RSA_P"
  txt s1._domainkey.dmnone.co.uk "v=DKIM1; k=rsa; p=$RSA_P"
  txt s1._domainkey.dmnorua.co.uk "v=DKIM1; k=rsa; p=$RSA_P"
  txt s1._domainkey.dkhash.co.uk "v=DKIM1; k=rsa; h=sha1; p=$RSA_P"
} >co.uk.zone
cp "$FIX/2.0.192.in-addr.arpa.zone" "$FIX/8.b.d.0.1.0.0.2.ip6.arpa.zone" .
start_nsd co.uk co.uk.zone 2.0.192.in-addr.arpa 2.0.192.in-addr.arpa.zone \
	8.b.d.0.1.0.0.2.ip6.arpa 8.b.d.0.1.0.0.2.ip6.arpa.zone
DNS=127.0.0.1:$NSD_PORT
# The zones loaded (a zone with an error is dropped by NSD, not fatal).
for z in co.uk 2.0.192.in-addr.arpa 8.b.d.0.1.0.0.2.ip6.arpa; do
	timeout 10 drill -p "$NSD_PORT" @127.0.0.1 "$z" SOA | grep -q "rcode: NOERROR" ||
		{ cat nsd/log >&2; fail "NSD does not serve $z"; }
done
timeout 10 drill -p "$NSD_PORT" @127.0.0.1 s1._domainkey.good.co.uk TXT | grep -q "${RSA_P:0:40}" ||
	fail "NSD does not serve the DKIM record"

# ---- running doctor and checking its answer ----
BAD=0
bad() { # CASE WHAT
	echo "MISMATCH [$1]: $2" >&2
	echo "   command: sluice doctor $(cat "$1.cmd")" >&2
	echo "   exit $(cat "$1.rc"), JSON: $(head -c 4000 "$1.json")" >&2
	[ -s "$1.err" ] && echo "   stderr: $(head -c 1000 "$1.err")" >&2
	BAD=$((BAD + 1))
}
# doctor CASE ARGS...: sluice doctor ARGS --dns-server DNS --json; output in
# CASE.json, stderr in CASE.err, exit status in CASE.rc. Then what holds
# for every answer: one line of JSON for the domain asked, known names and
# statuses ("info" only for the optional checks), exit 1 iff a check fails.
doctor() {
	local c=$1 rc=0 d=""; shift
	echo "$* --dns-server $DNS --json" >"$c.cmd"
	timeout 20 "$SLUICE" doctor "$@" --dns-server "$DNS" --json >"$c.json" 2>"$c.err" || rc=$?
	echo "$rc" >"$c.rc"
	if grep -q "not built yet" "$c.err"; then fail "sluice doctor is not built yet"; fi
	if grep -q "ERROR: AddressSanitizer\|runtime error:" "$c.err"; then bad "$c" "sanitizer report"; return; fi
	[ "$rc" -lt 124 ] || { bad "$c" "did not finish within 20 s (rc $rc)"; return; }
	[ "$(grep -c '' "$c.json")" -eq 1 ] || { bad "$c" "not one line of output"; return; }
	jq -e . "$c.json" >/dev/null 2>&1 || { bad "$c" "not JSON"; return; }
	while [ $# -gt 0 ]; do [ "$1" = --domain ] && d=$2; shift; done
	jq -e --arg d "$d" '.domain == $d and (.checks | type == "array" and length > 0)' "$c.json" >/dev/null ||
		bad "$c" "\"domain\" is not $d or no checks"
	jq -e 'all(.checks[]; (.name | IN("spf","dkim","dmarc","ptr","mx","mta-sts","tls-rpt","bimi"))
		and (.subject | type == "string") and (.detail | type == "string")
		and ((.status | IN("pass","warn","fail"))
		     or (.status == "info" and (.name | IN("mta-sts","tls-rpt","bimi")))))' "$c.json" >/dev/null ||
		bad "$c" "a check with an unknown name or status, or without subject/detail"
	local anyfail
	anyfail=$(jq '[.checks[] | select(.status == "fail")] | length' "$c.json")
	if [ "$anyfail" -gt 0 ] && [ "$rc" -ne 1 ]; then bad "$c" "a check fails but exit status $rc, not 1"; fi
	if [ "$anyfail" -eq 0 ] && [ "$rc" -ne 0 ]; then bad "$c" "no check fails but exit status $rc, not 0"; fi
}
# expect CASE NAME SUBJECT STATUS [DETAIL-SUBSTRING]: exactly one check NAME
# about SUBJECT, with STATUS (and a detail containing DETAIL-SUBSTRING).
expect() {
	local c=$1 n=$2 s=$3 want=$4 got
	jq -e . "$c.json" >/dev/null 2>&1 || return 0 # already reported
	got=$(jq -r --arg n "$n" --arg s "$s" '[.checks[] | select(.name == $n and .subject == $s) | .status] | join(",")' "$c.json")
	[ "$got" = "$want" ] || { bad "$c" "check $n \"$s\": want $want, got '${got:-no such check}'"; return; }
	if [ -n "${5:-}" ]; then
		jq -e --arg n "$n" --arg s "$s" --arg x "$5" '.checks[] | select(.name == $n and .subject == $s) | .detail | contains($x)' \
			"$c.json" >/dev/null || { bad "$c" "check $n \"$s\": detail does not say \"$5\""; return; }
	fi
	echo "  ok: $c: $n $s -> $want"
}
# expect_rc CASE RC
expect_rc() { [ "$(cat "$1.rc")" = "$2" ] || bad "$1" "want exit status $2"; }

# ---- a coherent domain: every check passes ----
GOOD=(--domain good.co.uk --selector s1 --dkim-key rsa.key)
doctor good "${GOOD[@]}" --source-ip 192.0.2.10 --helo mail.good.co.uk
expect good spf good.co.uk pass
expect good spf 192.0.2.10 pass
expect good dkim s1._domainkey.good.co.uk pass
expect good dmarc _dmarc.good.co.uk pass
expect good ptr 192.0.2.10 pass
expect good mx good.co.uk pass
expect_rc good 0
want='["dkim s1._domainkey.good.co.uk","dmarc _dmarc.good.co.uk","mx good.co.uk","ptr 192.0.2.10","spf 192.0.2.10","spf good.co.uk"]'
jq -e --argjson w "$want" '[.checks[] | select(.name | IN("spf","dkim","dmarc","ptr","mx")) | .name + " " + .subject] | sort == $w' \
	good.json >/dev/null || bad good "the checks are not exactly: $want"
# mta-sts, tls-rpt, bimi are not published: "info" (absent) at most.
jq -e 'all(.checks[]; .status == "pass" or .status == "info")' good.json >/dev/null ||
	bad good "a check other than pass (or info for an absent optional record)"

# ---- DKIM ----
doctor dkim_missing --domain dkmiss.co.uk --selector s1 --dkim-key rsa.key
expect dkim_missing dkim s1._domainkey.dkmiss.co.uk fail
expect_rc dkim_missing 1
doctor dkim_mismatch --domain dkmismatch.co.uk --selector s1 --dkim-key rsa.key
expect dkim_mismatch dkim s1._domainkey.dkmismatch.co.uk fail
expect_rc dkim_mismatch 1
# the same record without a key file to compare with is a good record
doctor dkim_mismatch_nokey --domain dkmismatch.co.uk --selector s1
expect dkim_mismatch_nokey dkim s1._domainkey.dkmismatch.co.uk pass
expect_rc dkim_mismatch_nokey 0
doctor dkim_1024 --domain dkweak.co.uk --selector s1 --dkim-key weak.key
expect dkim_1024 dkim s1._domainkey.dkweak.co.uk warn
expect_rc dkim_1024 0
doctor dkim_testing --domain dktesting.co.uk --selector s1 --dkim-key rsa.key
expect dkim_testing dkim s1._domainkey.dktesting.co.uk warn
expect_rc dkim_testing 0
doctor dkim_ed25519 --domain dked.co.uk --selector s1 --dkim-key ed.key
expect dkim_ed25519 dkim s1._domainkey.dked.co.uk pass
expect_rc dkim_ed25519 0
doctor dkim_ed25519_other --domain dked.co.uk --selector s1 --dkim-key ed-other.key
expect dkim_ed25519_other dkim s1._domainkey.dked.co.uk fail
expect_rc dkim_ed25519_other 1
doctor dkim_revoked --domain dkrevoked.co.uk --selector s1
expect dkim_revoked dkim s1._domainkey.dkrevoked.co.uk fail
expect_rc dkim_revoked 1

# ---- DMARC ----
# nothing at _dmarc.mail.dmmiss.co.uk nor _dmarc.dmmiss.co.uk (there is one
# at _dmarc.co.uk, the public suffix: not an organisational domain)
doctor dmarc_missing --domain mail.dmmiss.co.uk
expect dmarc_missing dmarc _dmarc.mail.dmmiss.co.uk fail
expect_rc dmarc_missing 1
# only at the organisational domain dmorg.co.uk, two labels up
doctor dmarc_org --domain mail.eu.dmorg.co.uk --selector s1 --dkim-key rsa.key
expect dmarc_org dmarc _dmarc.dmorg.co.uk pass "inherited from dmorg.co.uk"
expect_rc dmarc_org 0
jq -e '[.checks[] | select(.name == "dmarc")] | length == 1' dmarc_org.json >/dev/null || bad dmarc_org "not one dmarc check"
# no --selector: judged on SPF alone; the mail-from's domain is unrelated
doctor dmarc_unaligned --domain dmalign.co.uk --mail-from bounce@unrelated.co.uk
expect dmarc_unaligned dmarc _dmarc.dmalign.co.uk fail
expect_rc dmarc_unaligned 1
# ... and a subdomain of D: aligned (aspf relaxed by default), SPF only: warn
doctor dmarc_spf_only --domain dmalign.co.uk --mail-from bounce@bounces.dmalign.co.uk
expect dmarc_spf_only dmarc _dmarc.dmalign.co.uk warn
expect_rc dmarc_spf_only 0
doctor dmarc_none --domain dmnone.co.uk --selector s1 --dkim-key rsa.key
expect dmarc_none dmarc _dmarc.dmnone.co.uk warn
expect_rc dmarc_none 0
doctor dmarc_none_small --domain dmnone.co.uk --selector s1 --dkim-key rsa.key --daily-volume 100
expect dmarc_none_small dmarc _dmarc.dmnone.co.uk pass
expect_rc dmarc_none_small 0
doctor dmarc_norua --domain dmnorua.co.uk --selector s1 --dkim-key rsa.key
expect dmarc_norua dmarc _dmarc.dmnorua.co.uk warn
expect_rc dmarc_norua 0

# ---- PTR (good.co.uk, all else coherent) ----
doctor ptr_missing "${GOOD[@]}" --source-ip 192.0.2.20 --helo mail.good.co.uk
expect ptr_missing ptr 192.0.2.20 fail
expect_rc ptr_missing 1
doctor ptr_not_back "${GOOD[@]}" --source-ip 192.0.2.21 --helo mail.broken.co.uk
expect ptr_not_back ptr 192.0.2.21 fail
expect_rc ptr_not_back 1
doctor ptr_other_org "${GOOD[@]}" --source-ip 192.0.2.22 --helo mail.good.co.uk
expect ptr_other_org ptr 192.0.2.22 fail
expect_rc ptr_other_org 1
doctor ptr_same_org "${GOOD[@]}" --source-ip 192.0.2.24 --helo mail.good.co.uk
expect ptr_same_org ptr 192.0.2.24 warn
expect_rc ptr_same_org 0
doctor ptr_v6 "${GOOD[@]}" --source-ip 2001:db8::25 --helo outbound.good.co.uk
expect ptr_v6 ptr 2001:db8::25 pass
expect ptr_v6 spf 2001:db8::25 pass
expect_rc ptr_v6 0
doctor ptr_generic "${GOOD[@]}" --source-ip 192.0.2.23 --helo ip-192-0-2-23.good.co.uk
expect ptr_generic ptr 192.0.2.23 warn
expect_rc ptr_generic 0
doctor ptr_no_helo "${GOOD[@]}" --source-ip 192.0.2.10
expect ptr_no_helo ptr 192.0.2.10 warn
expect_rc ptr_no_helo 0

# ---- MX ----
doctor mx_null --domain mxnull.co.uk
expect mx_null mx mxnull.co.uk fail
expect_rc mx_null 1
doctor mx_implicit --domain mximplicit.co.uk
expect mx_implicit mx mximplicit.co.uk pass implicit
expect_rc mx_implicit 0
doctor mx_none --domain mxnone.co.uk
expect mx_none mx mxnone.co.uk fail
expect_rc mx_none 1
doctor mx_nxdomain --domain nosuch.co.uk
expect mx_nxdomain mx nosuch.co.uk fail
expect_rc mx_nxdomain 1

# ---- records that look fine and are not ----
doctor spf_open --domain spfopen.co.uk
expect spf_open spf spfopen.co.uk fail "any IP"
doctor spf_open6 --domain spfredir.co.uk
expect spf_open6 spf spfredir.co.uk fail "any IP"
doctor dkim_sha1 --domain dkhash.co.uk --selector s1 --dkim-key rsa.key
expect dkim_sha1 dkim s1._domainkey.dkhash.co.uk fail "sha256"
doctor dmarc_soft --domain dmsoft.co.uk --selector s1
expect dmarc_soft dmarc _dmarc.dmsoft.co.uk warn "aspf=x"
doctor mx_noaddr --domain mxnoaddr.co.uk
expect mx_noaddr mx mxnoaddr.co.uk fail "address"

# ---- the readable output names every check ----
rc=0
timeout 20 "$SLUICE" doctor "${GOOD[@]}" --source-ip 192.0.2.10 --helo mail.good.co.uk \
	--dns-server "$DNS" >table.out 2>table.err || rc=$?
[ "$rc" -eq 0 ] || { BAD=$((BAD + 1)); echo "MISMATCH [table]: exit status $rc: $(cat table.err)" >&2; }
[ "$(wc -l <table.out)" -gt 1 ] || { BAD=$((BAD + 1)); echo "MISMATCH [table]: not a table: $(cat table.out)" >&2; }
if jq -e . good.json >/dev/null 2>&1; then
	for n in $(jq -r '[.checks[].name] | unique | .[]' good.json); do
		grep -qiF -- "$n" table.out || { BAD=$((BAD + 1)); echo "MISMATCH [table]: no '$n' in: $(cat table.out)" >&2; }
	done
	ok "readable output names: $(jq -r '[.checks[].name] | unique | join(" ")' good.json)"
fi

[ "$BAD" -eq 0 ] || fail "$BAD mismatches with the contract (above)"
ok "sluice doctor: every case as the contract says"
