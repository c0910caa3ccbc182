# STARTTLS policies (--tls, --tls-ca, the tls section of the config, its
# per-domain rules, a route's tls-name) against aiosmtpd with STARTTLS
# required before MAIL (tests/tls_servers.py starttls, self-signed
# certificates) and aiosmtpd without STARTTLS. A policy that cannot be met
# defers (response: "certificate: ...", "not offered"), keeps the spool
# files, and sends the server no MAIL at all.
#
# Each case runs in its own subshell so that every case reports
# (CASES="1 5" runs only those; KEEP=1 keeps $T).
source "$(dirname "$0")/../lib.sh"
source "$HERE/tls_lib.sh"
set -e
FAILED=()
make_cert mx ec mx.test.example
make_cert other ec other.example
CA_MX=$T/certs/mx.pem
# The first failed connection suspends the destination and defers its
# mail, the reason in the response ("delivery suspended ...; last: TLS
# ..."): few connections, and every deferral says why. One attempt per
# recipient (retry 100 s).
FAIL1='delivery = { destination-failures = 1; };'
printf '%s\n' "$FAIL1" >"$T/fail1.conf"

case_() {   # NAME FUNCTION
	[ -z "${CASES:-}" ] || [[ " $CASES " == *" ${1%% *} "* ]] || return 0
	echo "-- $1"
	if ( trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT; set -e; "$2" ); then
		:
	else
		FAILED+=("$1")
	fi
}

# fresh TAG N DOMAIN: spool $T/sp-TAG of N messages (2 recipients each) at
# DOMAIN, its recipients in $T/TAG.before.
fresh() {
	rm -rf "$T/sp-$1"
	mkspool "$T/sp-$1" "$2" "$3" 2
	spool_pairs "$T/sp-$1" >"$T/$1.before"
}

# deferred_all TAG REGEX: nothing delivered or bounced, every recipient
# deferred, every deferral's response matching REGEX (jq, case-insensitive)
# and naming TLS, the spool kept, exit 1.
deferred_all() {
	local tag=$1 re=$2 n bad
	n=$(wc -l <"$T/$tag.before")
	[ "$(tlc "$tag" '.result!="deferred"')" -eq 0 ] ||
		fail "$tag: want only deferrals, got $(jq -r 'select(.result!="deferred") | .result+" "+(.tls // "plain")+" "+.response' "$T/$tag.acct" | cut -c1-100 | sort | uniq -c | head -2 | tr -s ' \n' ' ')"
	[ "$(jq -r 'select(.result=="deferred") | .id+" "+.rcpt' "$T/$tag.acct" | sort -u | wc -l)" -eq "$n" ] ||
		fail "$tag: want all $n recipients deferred, got $(jq -r 'select(.result=="deferred") | .id+" "+.rcpt' "$T/$tag.acct" | sort -u | wc -l)"
	bad=$(jq -r --arg re "$re" 'select(.result=="deferred" and ((.response | test($re; "i")) and (.response | test("tls"; "i")) | not)) | .response' "$T/$tag.acct" | cut -c1-120 | sort | uniq -c | head -2 | tr -s ' \n' ' ')
	[ -z "$bad" ] || fail "$tag: deferrals that do not say /$re/ (and TLS): $bad"
	[ "$RC" -eq 1 ] || fail "$tag: want exit 1 (not all final), got $RC"
	accounted "$tag" "$T/sp-$tag" "$T/$tag.before"
	[ "$(spool_files "$T/sp-$tag/new")" -eq "$(cut -d' ' -f1 "$T/$tag.before" | sort -u | wc -l)" ] || fail "$tag: spool files not kept"
}
# no_mail TAG: the server (record $T/TAG.rec) got connections but no MAIL,
# in clear or not, and stored nothing.
no_mail() {
	local tag=$1
	[ "$(jq -s 'map(select(.ev=="connect")) | length' "$T/$tag.rec")" -ge 1 ] || fail "$tag: sluice never connected to the server"
	[ "$(jq -s 'map(select(.ev=="cmd" and (.line|test("^MAIL"; "i")))) | length' "$T/$tag.rec")" -eq 0 ] ||
		fail "$tag: the server got MAIL FROM ($(jq -r 'select(.ev=="cmd" and (.line|test("^MAIL"; "i"))) | if .tls then "over TLS" else "in clear" end' "$T/$tag.rec" | sort | uniq -c | tr -s ' \n' ' '))"
	[ "$(ls "$T/$tag.md/new" | wc -l)" -eq 0 ] || fail "$tag: the server stored messages"
}
# delivered_tls TAG N: all N recipients delivered over TLS and stored.
delivered_tls() {
	local tag=$1 n
	n=$(wc -l <"$T/$tag.before")
	[ "$RC" -eq 0 ] || fail "$tag: exit $RC; deferrals: $(responses "$tag")"
	accounted "$tag" "$T/sp-$tag" "$T/$tag.before"
	[ "$(tlc "$tag" '.result=="delivered" and ((.tls // "") | test("^TLSv1\\.[23]:"))')" -eq "$n" ] ||
		fail "$tag: want $n delivered over TLS, got $(tlc "$tag" '.result=="delivered" and .tls != null') ($(tlc "$tag" '.result=="delivered"') delivered)"
	[ "$(stored_rcpts "$T/$tag.md")" = "$(cut -d' ' -f2 "$T/$tag.before" | sort)" ] || fail "$tag: the server stored other recipients than the spool's"
}
starttls_seen() {   # TAG: sluice sent STARTTLS (it tried)
	[ "$(jq -s 'map(select(.ev=="cmd" and (.line|test("^STARTTLS"; "i")))) | length' "$T/$1.rec")" -ge 1 ] || fail "$1: sluice never sent STARTTLS"
}

# 1. verify, the self-signed certificate not in any trusted store; the
# route's domain is the certificate's name, so only trust fails.
t_untrusted() {
	fresh untrusted 10 mx.test.example
	start_tls_server untrusted starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
	trun untrusted -c "$T/fail1.conf" --spool "$T/sp-untrusted" --route "mx.test.example=127.0.0.1:$TPORT" \
		--tls verify --shards 1 --retry-interval 100 --max-time 3
	stop_tls_server "$TPID"
	deferred_all untrusted 'certificate'
	starttls_seen untrusted
	no_mail untrusted
	ok "verify, untrusted self-signed certificate: 20 deferred ($(jq -r '.response' "$T/untrusted.acct" | head -1 | cut -c1-80)), spool kept, no MAIL"
}

# 2. verify with --tls-ca (that certificate): the route's domain matches.
t_ca() {
	fresh ca 10 mx.test.example
	start_tls_server ca starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
	trun ca --spool "$T/sp-ca" --route "mx.test.example=127.0.0.1:$TPORT" --tls verify --tls-ca "$CA_MX" \
		--shards 1 --retry-interval 0.5 --max-time 15
	stop_tls_server "$TPID"
	delivered_tls ca
	ok "verify with --tls-ca, route domain = certificate name: 20 delivered over TLS, stored"
}

# 3. verify and ca from the config; a route to test.example whose
# tls-name is the certificate's name: delivered. The same route without
# tls-name verifies "test.example", which the certificate does not name.
t_tlsname() {
	fresh tlsname 10 test.example
	start_tls_server tlsname starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
	cat >"$T/tlsname.conf" <<-EOF
	$FAIL1
	tls = { policy = "verify"; ca = "$CA_MX"; };
	routes = ( { domain = "test.example"; host = "127.0.0.1"; port = $TPORT; tls-name = "mx.test.example"; } );
	EOF
	trun tlsname -c "$T/tlsname.conf" --spool "$T/sp-tlsname" --shards 1 --retry-interval 0.5 --max-time 15
	delivered_tls tlsname
	ok "config tls.policy verify + tls.ca, route tls-name = certificate name: delivered"
	fresh noname 10 test.example
	sed '/tls-name/s/ tls-name = "mx.test.example";//' "$T/tlsname.conf" >"$T/noname.conf"
	grep -q tls-name "$T/noname.conf" && fail "noname: sed did not remove tls-name"
	local before_msgs
	before_msgs=$(ls "$T/tlsname.md/new" | wc -l)
	grep -v '^$' "$T/tlsname.rec" >"$T/noname.rec.before" || true
	trun noname -c "$T/noname.conf" --spool "$T/sp-noname" --shards 1 --retry-interval 100 --max-time 3
	stop_tls_server "$TPID"
	deferred_all noname 'certificate'
	[ "$(ls "$T/tlsname.md/new" | wc -l)" -eq "$before_msgs" ] || fail "noname: the server stored messages"
	[ "$(comm -13 <(sort "$T/noname.rec.before") <(sort "$T/tlsname.rec") | jq -s 'map(select(.ev=="cmd" and (.line|test("^MAIL"; "i")))) | length')" -eq 0 ] ||
		fail "noname: the server got MAIL FROM"
	ok "the same route without tls-name (name test.example, certificate for mx.test.example): deferred 'certificate'"
}

# 4. A trusted certificate (--tls-ca) for another name.
t_othername() {
	fresh othername 10 mx.test.example
	start_tls_server othername starttls --cert "$T/certs/other.pem" --key "$T/certs/other.key"
	trun othername -c "$T/fail1.conf" --spool "$T/sp-othername" --route "mx.test.example=127.0.0.1:$TPORT" \
		--tls verify --tls-ca "$T/certs/other.pem" --shards 1 --retry-interval 100 --max-time 3
	stop_tls_server "$TPID"
	deferred_all othername 'certificate'
	starttls_seen othername
	no_mail othername
	ok "verify, trusted certificate for other.example on the route to mx.test.example: deferred 'certificate'"
}

# 5. required (and verify) against a server that does not offer STARTTLS.
t_notoffered() {
	local pol
	for pol in required verify; do
		fresh "no-$pol" 10 mx.test.example
		start_tls_server "no-$pol" plain
		local ca=()
		[ "$pol" = verify ] && ca=(--tls-ca "$CA_MX")
		trun "no-$pol" -c "$T/fail1.conf" --spool "$T/sp-no-$pol" --route "mx.test.example=127.0.0.1:$TPORT" \
			--tls "$pol" "${ca[@]}" --shards 1 --retry-interval 100 --max-time 3
		stop_tls_server "$TPID"
		deferred_all "no-$pol" 'not offered'
		no_mail "no-$pol"
		[ "$(jq -s 'map(select(.ev=="cmd" and (.line|test("^STARTTLS"; "i")))) | length' "$T/no-$pol.rec")" -eq 0 ] ||
			fail "no-$pol: STARTTLS sent though not offered"
		[ "$(jq -s 'map(select(.ev=="cmd" and (.line|test("^EHLO"; "i")))) | length' "$T/no-$pol.rec")" -ge 1 ] ||
			fail "no-$pol: no EHLO: sluice never learnt that STARTTLS was not offered"
		ok "--tls $pol, STARTTLS not offered: 20 deferred 'not offered', spool kept, no MAIL"
	done
}

# 6. --tls none against a server that requires STARTTLS: no STARTTLS,
# MAIL in clear, refused with 530 (deferred or bounced, never delivered).
t_none() {
	fresh none 10 mx.test.example
	start_tls_server none starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
	trun none -c "$T/fail1.conf" --spool "$T/sp-none" --route "*=127.0.0.1:$TPORT" --tls none \
		--shards 1 --retry-interval 100 --max-time 3
	stop_tls_server "$TPID"
	accounted none "$T/sp-none" "$T/none.before"
	[ "$(tlc none '.result=="delivered"')" -eq 0 ] || fail "none: delivered lines"
	[ "$(tlc none '.tls != null')" -eq 0 ] || fail "none: lines with tls set"
	local n
	n=$(wc -l <"$T/none.before")
	[ "$(jq -r 'select((.result=="deferred" or .result=="bounced") and (.code==530 or (.response|test("530|STARTTLS")))) | .id+" "+.rcpt' "$T/none.acct" | sort -u | wc -l)" -eq "$n" ] ||
		fail "none: want all $n recipients refused with the server's 530, got: $(jq -r '.result+" "+(.code|tostring)+" "+.response' "$T/none.acct" | cut -c1-90 | sort | uniq -c | head -2 | tr -s ' \n' ' ')"
	[ "$(jq -s 'map(select(.ev=="cmd" and (.line|test("^STARTTLS"; "i")))) | length' "$T/none.rec")" -eq 0 ] || fail "none: STARTTLS sent under --tls none"
	[ "$(jq -s 'map(select(.ev=="cmd" and (.tls|not) and (.line|test("^MAIL"; "i")))) | length' "$T/none.rec")" -ge 1 ] || fail "none: no MAIL in clear reached the server"
	[ "$(ls "$T/none.md/new" | wc -l)" -eq 0 ] || fail "none: the server stored messages"
	ok "--tls none against STARTTLS-required: no STARTTLS, MAIL in clear refused 530 ($(jq -r '.result' "$T/none.acct" | sort | uniq -c | tr -s ' \n' ' '))"
}

# 7. Config rules: opportunistic by default; strict-req.example required,
# strict-verify.example verify (no CA: the self-signed certificate fails).
# Two servers: one without STARTTLS, one with STARTTLS required; each
# serves a strict and a loose domain at the same address, so a connection
# opened (and checked) under one domain's policy must not carry the mail
# of a domain whose policy is stricter.
t_rules() {
	rm -rf "$T/sp-rules"
	local d
	for d in strict-req loose-plain strict-verify loose-tls; do mkspool "$T/sp-rules" 5 "$d.example" 2; done
	spool_pairs "$T/sp-rules" >"$T/rules.before"
	start_tls_server rules-plain plain
	local pplain=$TPORT ppid=$TPID
	start_tls_server rules-tls starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
	local ptls=$TPORT tpid=$TPID
	# The default back-off here: destination-failures = 1 hid a leak of
	# strict-verify mail onto loose-tls connections (b6b4e70).
	cat >"$T/rules.conf" <<-EOF
	tls = { policy = "opportunistic";
	        rules = ( { domain = "strict-req.example"; policy = "required"; },
	                  { domain = "strict-verify.example"; policy = "verify"; } ); };
	routes = ( { domain = "strict-req.example"; host = "127.0.0.1"; port = $pplain; },
	           { domain = "loose-plain.example"; host = "127.0.0.1"; port = $pplain; },
	           { domain = "strict-verify.example"; host = "127.0.0.1"; port = $ptls; },
	           { domain = "loose-tls.example"; host = "127.0.0.1"; port = $ptls; } );
	EOF
	trun rules -c "$T/rules.conf" --spool "$T/sp-rules" --shards 1 --retry-interval 100 --max-time 4
	stop_tls_server "$ppid"
	stop_tls_server "$tpid"
	accounted rules "$T/sp-rules" "$T/rules.before"
	local probs=() got
	got=$(tlc rules '.result=="delivered" and .tls == null and (.rcpt|endswith("@loose-plain.example"))')
	[ "$got" -eq 10 ] || probs+=("loose-plain (opportunistic, no STARTTLS): $got of 10 delivered in clear")
	got=$(tlc rules '.result=="delivered" and ((.tls // "")|test("^TLSv1\\.[23]:")) and (.rcpt|endswith("@loose-tls.example"))')
	[ "$got" -eq 10 ] || probs+=("loose-tls (opportunistic, self-signed): $got of 10 delivered over TLS")
	got=$(jq -r 'select(.result=="deferred" and (.rcpt|endswith("@strict-req.example")) and (.response|test("not offered"))) | .rcpt' "$T/rules.acct" | sort -u | wc -l)
	[ "$got" -eq 10 ] || probs+=("strict-req (rule required, no STARTTLS): $got of 10 deferred 'not offered'")
	got=$(jq -r 'select(.result=="deferred" and (.rcpt|endswith("@strict-verify.example")) and (.response|test("certificate"))) | .rcpt' "$T/rules.acct" | sort -u | wc -l)
	[ "$got" -eq 10 ] || probs+=("strict-verify (rule verify, untrusted): $got of 10 deferred 'certificate'")
	got=$(tlc rules '.result=="delivered" and (.rcpt|test("@strict-"))')
	[ "$got" -eq 0 ] || probs+=("$got strict-* recipients delivered")
	[ "$(stored_rcpts "$T/rules-plain.md" | grep -vc '@loose-plain\.example$' || true)" -eq 0 ] || probs+=("the plain server stored mail for another domain than loose-plain")
	[ "$(stored_rcpts "$T/rules-tls.md" | grep -vc '@loose-tls\.example$' || true)" -eq 0 ] || probs+=("the STARTTLS server stored mail for another domain than loose-tls")
	[ "$(jq -r 'select(.ev=="cmd" and (.line|test("^RCPT"; "i"))) | .line' "$T/rules-plain.rec" "$T/rules-tls.rec" | grep -ci 'strict-' || true)" -eq 0 ] ||
		probs+=("a server got RCPT for a strict-* recipient")
	[ ${#probs[@]} -eq 0 ] || fail "rules: $(printf '%s; ' "${probs[@]}") (log: $(jq -r '.result+" "+(.rcpt|sub(".*@";""))+" "+(.response|.[0:60])' "$T/rules.acct" | sort | uniq -c | tr -s ' \n' ' '))"
	ok "tls.rules: required and verify domains deferred, the opportunistic ones delivered (in clear / over TLS) by the same servers"
}

# 8. required and verify with one message per connection: every connection
# after the first resumes, and a resumed connection is as good as a full
# one (its EHLO after TLS offers no STARTTLS: that is not "not offered").
t_resumed_required() {
	local pol
	for pol in required verify; do
		fresh "res-$pol" 6 mx.test.example
		start_tls_server "res-$pol" starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
		trun "res-$pol" --spool "$T/sp-res-$pol" --route "mx.test.example=127.0.0.1:$TPORT" --tls "$pol" \
			--tls-ca "$CA_MX" --max-per-connection 1 --max-connections 1 --shards 1 --retry-interval 100 --max-time 15
		stop_tls_server "$TPID"
		delivered_tls "res-$pol"
		tls_summary "res-$pol"
		[ "$TLS_CONNS" -eq 6 ] && [ "$TLS_RESUMED" -ge 3 ] ||
			fail "res-$pol: want 6 TLS connections, most resumed; got $TLS_CONNS ($TLS_FULL full, $TLS_RESUMED resumed)"
	done
	ok "required and verify, one message per connection: all delivered over TLS, resumed connections too"
}

# 9. A "*" route carries every domain at the route's policy: a domain whose
# rule asks more (required) than the connection gives (a server without
# STARTTLS) is deferred, never sent in clear; the others go.
t_star_rule() {
	rm -rf "$T/sp-star"
	mkspool "$T/sp-star" 5 strict.example 2
	mkspool "$T/sp-star" 5 loose.example 2
	spool_pairs "$T/sp-star" >"$T/star.before"
	start_tls_server star plain
	cat >"$T/star.conf" <<-EOF
	tls = { rules = ( { domain = "strict.example"; policy = "required"; } ); };
	routes = ( { domain = "*"; host = "127.0.0.1"; port = $TPORT; } );
	EOF
	trun star -c "$T/star.conf" --spool "$T/sp-star" --shards 1 --retry-interval 100 --max-time 4
	stop_tls_server "$TPID"
	accounted star "$T/sp-star" "$T/star.before"
	[ "$(tlc star '.result=="delivered" and (.rcpt|endswith("@loose.example"))')" -eq 10 ] || fail "star: loose.example not all delivered: $(outcomes star)"
	[ "$(tlc star '.result=="deferred" and (.rcpt|endswith("@strict.example")) and (.response|test("TLS required.*not encrypted"))')" -eq 10 ] ||
		fail "star: strict.example not all deferred 'not encrypted': $(outcomes star)"
	[ "$(jq -r 'select(.ev=="cmd" and (.line|test("^RCPT"; "i"))) | .line' "$T/star.rec" | grep -ci 'strict\.example' || true)" -eq 0 ] ||
		fail "star: the server got RCPT for strict.example in clear"
	ok "'*' route with a stricter domain rule: that domain deferred (never in clear), the rest delivered"
}

case_ "1 verify, untrusted certificate" t_untrusted
case_ "2 verify with --tls-ca" t_ca
case_ "3 config verify + ca, route tls-name" t_tlsname
case_ "4 trusted certificate for another name" t_othername
case_ "5 required/verify, STARTTLS not offered" t_notoffered
case_ "6 --tls none against STARTTLS required" t_none
case_ "7 config tls.rules per domain" t_rules
case_ "8 required/verify with resumed sessions" t_resumed_required
case_ "9 a * route and a stricter domain rule" t_star_rule
[ ${#FAILED[@]} -eq 0 ] || fail "${#FAILED[@]} TLS policy case(s) failed: ${FAILED[*]}"
