# Hostile SMTP servers (tests/hostile_server.py): a 250 to DATA, an
# unsolicited extra reply after the end of data, a 600-character HELO name,
# 520 recipients in one transaction, a server that greets 421 or refuses
# EHLO/HELO (no reconnect storm), a 1,000-line EHLO reply, a NUL inside a
# reply. Never a false "delivered", never a crash, the log always JSON.
#
# Each case runs in its own subshell so that every case reports, then the
# script fails if any did (CASES="1 2b" runs only those; KEEP=1 keeps $T). Loopback only; every process bounded in time.
source "$(dirname "$0")/../lib.sh"
set -e
SRV=$HERE/hostile_server.py
FAILED=()

# start_hostile NAME [server flags...]: record in $T/NAME.rec, port in HPORT.
start_hostile() {
	local name=$1; shift
	rm -f "$T/$name.rec" "$T/$name.srv"
	timeout 80 python3 "$SRV" --record "$T/$name.rec" --max-time 75 "$@" >"$T/$name.srv" 2>"$T/$name.srverr" &
	PIDS+=($!)
	HPID=$!
	for _ in $(seq 100); do
		grep -q '^listening' "$T/$name.srv" 2>/dev/null && break
		sleep 0.05
	done
	HPORT=$(sed -n 's/^listening 127\.0\.0\.1://p' "$T/$name.srv")
	[ -n "$HPORT" ] || { cat "$T/$name.srverr" >&2; fail "hostile server $name did not start"; }
	touch "$T/$name.rec"
}
# stop_hostile PID: SIGTERM; the server writes connections still open.
stop_hostile() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

# hrun TAG [run args...]: sluice run --drain logging to $T/TAG.acct (output
# in $T/TAG.out, .err), exit status in RC; then the checks every case makes.
hrun() {
	local tag=$1; shift
	set +e
	timeout 60 "$SLUICE" run --drain --log "$T/$tag.acct" "$@" >"$T/$tag.out" 2>"$T/$tag.err"
	RC=$?
	set -e
	sane "$tag"
}
sane() {
	local tag=$1
	if grep -q "assertion failed" "$T/$tag.err"; then
		fail "$tag: sluice crashed (exit $RC): $(grep -m1 'assertion failed' "$T/$tag.err")"
	fi
	if grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/$tag.err"; then
		cat "$T/$tag.err" >&2
		fail "$tag: sanitizer report"
	fi
	[ "$RC" -lt 124 ] || { tail -5 "$T/$tag.err" >&2; fail "$tag: sluice killed or timed out (exit $RC)"; }
	[ ! -e "$T/$tag.acct" ] || jq . "$T/$tag.acct" >/dev/null || fail "$tag: accounting log is not valid JSON"
}
# lc TAG JQ_CONDITION: log lines of $T/TAG.acct for which it holds.
lc() { jq -c "select($2)" "$T/$1.acct" | wc -l; }
# ids_msgids SPOOLDIR: "spool-id Message-ID" per file of SPOOLDIR/new.
ids_msgids() {
	local f
	for f in "$1"/new/*; do
		printf '%s %s\n' "${f##*/}" "$(grep -m1 -i '^Message-ID:' "$f" | sed 's/^[^:]*: *//; s/\r$//')"
	done
}
# delivered_pairs TAG MAPFILE: "Message-ID rcpt" of every delivered line.
delivered_pairs() {
	jq -r 'select(.result=="delivered") | .id+" "+.rcpt' "$T/$1.acct" |
		awk 'NR==FNR { m[$1]=$2; next } { print (($1 in m) ? m[$1] : "unknown:" $1), $2 }' "$2" - | sort -u
}
# acked_pairs RECFILE...: "Message-ID rcpt" of every message the servers
# acknowledged with a well-formed header section.
acked_pairs() {
	cat "$@" | jq -r '.messages[] | select(.well_formed) | .message_id as $m | .rcpts[] | $m+" "+ltrimstr("<")' |
		sed 's/>$//' | sort -u
}
# deferred_rcpts TAG REGEX: how many recipients have a deferral whose
# response matches REGEX.
deferred_rcpts() { jq -r "select(.result==\"deferred\" and (.response|test(\"$2\"))) | .id+\" \"+.rcpt" "$T/$1.acct" | sort -u | wc -l; }

case_() {   # NAME FUNCTION: runs it in a subshell, notes a failure
	# CASES="1 5" runs only those (by the number before the name).
	[ -z "${CASES:-}" ] || [[ " $CASES " == *" ${1%% *} "* ]] || return 0
	echo "-- $1"
	if ( trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT; set -e; "$2" ); then
		:
	else
		FAILED+=("$1")
	fi
}

# 1. A 250 reply to DATA is not a delivery: the server never saw a body.
t_data250() {
	rm -rf "$T/sp1"
	"$SLUICE" spoolgen --spool "$T/sp1" --count 10 --recipients 2 --domains 2 >/dev/null
	start_hostile data250 --data-250
	hrun data250 --spool "$T/sp1" --route "*=127.0.0.1:$HPORT" --shards 1 --retry-interval 0.5 --max-time 3
	stop_hostile "$HPID"
	local d
	d=$(lc data250 '.result=="delivered"')
	[ "$d" -eq 0 ] || fail "data-250: $d recipients logged delivered after '250 ok' to DATA, though the server never read a body (e.g. $(jq -c 'select(.result=="delivered") | {id,rcpt,code,response}' "$T/data250.acct" | head -1))"
	[ "$(lc data250 '.result!="deferred"')" -eq 0 ] || fail "data-250: something other than deferred was logged"
	[ "$(deferred_rcpts data250 .)" -eq 20 ] || fail "data-250: want all 20 recipients deferred, got $(deferred_rcpts data250 .)"
	[ "$RC" -eq 1 ] || fail "data-250: want exit 1, got $RC"
	[ "$(spool_files "$T/sp1/new")" -eq 10 ] || fail "data-250: want the 10 messages back in new/, got $(spool_files "$T/sp1/new")"
	[ "$(spool_files "$T/sp1/active" 2>/dev/null || echo 0)" -eq 0 ] || fail "data-250: active/ not empty"
	ok "250 to DATA: all 20 recipients deferred, 10 messages kept, exit 1"
}

# 2. An unsolicited "250 extra" after the end-of-data reply: a recipient is
# logged delivered only if the server acknowledged that message's body;
# a later drain against a correct server delivers the rest, once each.
extra_run() {   # TAG "server flags" sluice flags...
	local tag=$1 sflags=$2; shift 2
	rm -rf "$T/sp-$tag"
	"$SLUICE" spoolgen --spool "$T/sp-$tag" --count 20 --recipients 2 --domains 2 >/dev/null
	ids_msgids "$T/sp-$tag" >"$T/$tag.map"
	# shellcheck disable=SC2086
	start_hostile "$tag" --extra-reply $sflags
	local p1=$HPID
	hrun "$tag" --spool "$T/sp-$tag" --route "*=127.0.0.1:$HPORT" --retry-interval 0.5 --max-time 3 "$@"
	stop_hostile "$p1"
	local bad probs=()
	bad=$(comm -23 <(delivered_pairs "$tag" "$T/$tag.map") <(acked_pairs "$T/$tag.rec") | head -3)
	[ -z "$bad" ] || probs+=("logged delivered, but the server never acknowledged that message's body for that recipient: ${bad//$'\n'/, }")
	# The server's end-of-data replies all say "queued": a delivery settled
	# by any other reply took the reply to another command for its own.
	bad=$(jq -r 'select(.result=="delivered" and (.response|test("queued")|not)) | .response' "$T/$tag.acct" | sort | uniq -c | head -3)
	[ -z "$bad" ] || probs+=("$(lc "$tag" '.result=="delivered" and (.response|test("queued")|not)') recipients logged delivered on a reply that is not the end-of-data reply: ${bad//$'\n'/, }")
	[ ${#probs[@]} -eq 0 ] || fail "extra reply ($tag): $(printf '%s; ' "${probs[@]}")"
	local first
	first=$(lc "$tag" '.result=="delivered"')
	# The final drain, against a correct server (the same log).
	# shellcheck disable=SC2086
	start_hostile "$tag-fix" $sflags
	local p2=$HPID
	hrun "$tag" --spool "$T/sp-$tag" --route "*=127.0.0.1:$HPORT" --retry-interval 0.5 --max-time 20 "$@"
	stop_hostile "$p2"
	[ "$RC" -eq 0 ] || fail "extra reply ($tag): final drain exit $RC, want 0"
	cp "$T/$tag.acct" "$T/acct.jsonl"
	check_log_final 40
	bad=$(comm -23 <(delivered_pairs "$tag" "$T/$tag.map") <(acked_pairs "$T/$tag.rec" "$T/$tag-fix.rec") | head -3)
	[ -z "$bad" ] || fail "extra reply ($tag): delivered without an acknowledged body: ${bad//$'\n'/, }"
	[ "$(spool_files "$T/sp-$tag/new")" -eq 0 ] || fail "extra reply ($tag): messages left in new/"
	ok "extra reply ($tag $*): $first delivered against it, all acknowledged; the drain finished the 40"
}
t_extra() {   # each variant reports
	local r=0
	( extra_run x-bdat "--chunking" --shards 1 --max-connections 1 ) || r=1
	( extra_run x-data "--chunking" --shards 1 --max-connections 1 --no-chunking ) || r=1
	( extra_run x-lock "--chunking" --shards 1 --max-connections 1 --no-pipelining ) || r=1
	( extra_run x-lockdata "--chunking" --shards 1 --max-connections 1 --no-chunking --no-pipelining ) || r=1
	return $r
}
t_extra_multi() {
	local r=0
	( extra_run x4-bdat "--chunking" --shards 2 --max-connections 4 ) || r=1
	( extra_run x4-data "--chunking" --shards 2 --max-connections 4 --no-chunking ) || r=1
	return $r
}

# 3. A 600-character HELO name is refused at start: exit 2, a clear error,
# no connection, the spool untouched.
t_long_helo() {
	rm -rf "$T/sp3"
	"$SLUICE" spoolgen --spool "$T/sp3" --count 3 --domains 1 >/dev/null
	local before helo
	before=$(cd "$T/sp3" && find . -type f | sort | xargs md5sum)
	helo=$(printf 'h%.0s' $(seq 600))
	start_hostile helo
	hrun helo --spool "$T/sp3" --route "*=127.0.0.1:$HPORT" --shards 1 --max-time 5 --helo "$helo"
	stop_hostile "$HPID"
	[ "$RC" -eq 2 ] || fail "long helo: want exit 2 (refused at start), got $RC"
	grep -qi "helo" "$T/helo.err" || fail "long helo: the error does not name --helo: $(head -2 "$T/helo.err")"
	[ "$(wc -l <"$T/helo.rec")" -eq 0 ] || fail "long helo: $(wc -l <"$T/helo.rec") connection(s) made"
	[ "$(cd "$T/sp3" && find . -type f | sort | xargs md5sum)" = "$before" ] || fail "long helo: the spool changed"
	[ ! -s "$T/helo.acct" ] || fail "long helo: log lines written"
	ok "600-character HELO: refused at start (exit 2): $(head -1 "$T/helo.err")"
}

# 4. 520 recipients in one transaction (max-recipients-per-transaction 1000).
t_many_rcpts() {
	rm -rf "$T/sp4"
	mkdir -p "$T/sp4/tmp" "$T/sp4/new"
	printf 'delivery = { max-recipients-per-transaction = 1000; };\n' >"$T/many.conf"
	{
		printf 'X-Sender: <sender@sender.example>\n'
		for i in $(seq 520); do printf 'X-Receiver: <r%d@many.example>\n' "$i"; done
		printf 'From: <sender@sender.example>\nTo: <list@many.example>\nSubject: 520\n'
		printf 'Date: Thu, 26 Nov 2026 05:00:00 +0000\nMessage-ID: <many-520@sender.example>\nX-Test: many-520\n\nbody\n'
	} >"$T/sp4/tmp/many"
	mv "$T/sp4/tmp/many" "$T/sp4/new/many"
	local port
	port=$(free_port)
	start_mockmx "$port"
	hrun many -c "$T/many.conf" --spool "$T/sp4" --route "*=127.0.0.1:$port" --shards 1 --max-time 20
	stop_mockmx
	[ "$RC" -eq 0 ] || fail "520 recipients: exit $RC: $(head -2 "$T/many.err")"
	cp "$T/many.acct" "$T/acct.jsonl"
	check_log_final 520
	[ "$(lc many '.result=="delivered"')" -eq 520 ] || fail "520 recipients: want 520 delivered, got $(lc many '.result=="delivered"')"
	[ "$(mx_stat "$port" recipients)" -eq 520 ] && [ "$(mx_stat "$port" messages)" -eq 1 ] ||
		fail "520 recipients: want one transaction of 520, mockmx saw $(mx_stat "$port" messages) message(s), $(mx_stat "$port" recipients) recipients"
	ok "520 recipients in one transaction: all delivered"
}

# 5. A server that greets 421 after 50 ms, one that refuses EHLO and HELO:
# no reconnect storm (at most 20 connections in 15 s), every recipient
# deferred with the server's words, none delivered or bounced. Both at once.
storm_check() {   # TAG REGEX (reports every problem, then fails)
	local tag=$1 re=$2 n d probs=()
	sane "$tag"
	n=$(wc -l <"$T/$tag.rec")
	d=$(deferred_rcpts "$tag" "$re")
	[ "$n" -le 20 ] || probs+=("$n connections in 15 s (want at most 20): the destination is not backed off")
	[ "$(lc "$tag" '.result=="delivered" or .result=="bounced"')" -eq 0 ] || probs+=("delivered or bounced lines")
	[ "$d" -eq 5 ] || probs+=("want the 5 recipients deferred with '$re' in the response, got $d ($(wc -l <"$T/$tag.acct") log lines$(jq -r '.result+": "+.response' "$T/$tag.acct" | sort | uniq -c | head -2 | tr -s ' \n' ' ' | sed 's/^/: /'))")
	[ "$RC" -eq 1 ] || probs+=("want exit 1, got $RC")
	[ "$(spool_files "$T/sp-$tag/new")" -eq 5 ] || probs+=("messages not back in new/")
	[ ${#probs[@]} -eq 0 ] || fail "$tag: $(printf '%s; ' "${probs[@]}")"
	ok "$tag: $n connections in 15 s, 5 recipients deferred ('$re')"
}
t_storm() {
	local tag pids=() rcs=()
	rm -rf "$T/sp-busy421" "$T/sp-ehlofail"
	"$SLUICE" spoolgen --spool "$T/sp-busy421" --count 5 --domains 1 >/dev/null
	"$SLUICE" spoolgen --spool "$T/sp-ehlofail" --count 5 --domains 1 >/dev/null
	start_hostile busy421 --greet-421-after 50
	local s1=$HPID p1=$HPORT
	start_hostile ehlofail --ehlo-fail
	local s2=$HPID p2=$HPORT
	set +e
	timeout 40 "$SLUICE" run --drain --log "$T/busy421.acct" --spool "$T/sp-busy421" --route "*=127.0.0.1:$p1" \
		--shards 2 --retry-interval 0.5 --max-time 15 >"$T/busy421.out" 2>"$T/busy421.err" &
	pids+=($!)
	timeout 40 "$SLUICE" run --drain --log "$T/ehlofail.acct" --spool "$T/sp-ehlofail" --route "*=127.0.0.1:$p2" \
		--shards 2 --retry-interval 0.5 --max-time 15 >"$T/ehlofail.out" 2>"$T/ehlofail.err" &
	pids+=($!)
	wait "${pids[0]}"; rcs+=($?)
	wait "${pids[1]}"; rcs+=($?)
	set -e
	stop_hostile "$s1"
	stop_hostile "$s2"
	local r1=0 r2=0
	RC=${rcs[0]}; ( storm_check busy421 "too busy" ) || r1=1
	RC=${rcs[1]}; ( storm_check ehlofail '\\bno\\b' ) || r2=1
	[ $r1 -eq 0 ] && [ $r2 -eq 0 ]
}

# 6. A 1,000-line EHLO reply (PIPELINING among the last lines): delivered,
# pipelined.
t_ehlo_lines() {
	rm -rf "$T/sp6"
	"$SLUICE" spoolgen --spool "$T/sp6" --count 10 --recipients 2 --domains 2 >/dev/null
	start_hostile ehlo1000 --ehlo-lines 1000
	hrun ehlo1000 --spool "$T/sp6" --route "*=127.0.0.1:$HPORT" --shards 1 --retry-interval 0.5 --max-time 5
	stop_hostile "$HPID"
	[ "$RC" -eq 0 ] || fail "1000-line EHLO: exit $RC, $(lc ehlo1000 '.result=="delivered"') delivered, $(wc -l <"$T/ehlo1000.acct") log lines, $(wc -l <"$T/ehlo1000.rec") connections$(jq -r '.response' "$T/ehlo1000.acct" | sort | uniq -c | head -2 | tr -s ' \n' ' ' | sed 's/^/: /')"
	cp "$T/ehlo1000.acct" "$T/acct.jsonl"
	check_log_final 20
	[ "$(lc ehlo1000 '.result=="delivered"')" -eq 20 ] || fail "1000-line EHLO: not all delivered"
	[ "$(jq -s 'map(select(.pipelined)) | length' "$T/ehlo1000.rec")" -gt 0 ] ||
		fail "1000-line EHLO: delivered, but PIPELINING (offered on line 997 of the reply) was not used"
	ok "1000-line EHLO: 20 recipients delivered, pipelined"
}

# 7. A NUL inside a reply's text: the log stays JSON, the response keeps
# the whole text, the NUL escaped.
t_nul() {
	rm -rf "$T/sp7"
	"$SLUICE" spoolgen --spool "$T/sp7" --count 5 --domains 1 >/dev/null
	start_hostile nul --nul-reply
	hrun nul --spool "$T/sp7" --route "*=127.0.0.1:$HPORT" --shards 1 --retry-interval 0.5 --max-time 10
	stop_hostile "$HPID"
	local who line
	who=$(jq -r 'select(.nul_rcpt) | .nul_rcpt' "$T/nul.rec" | tr -d '<>')
	[ -n "$who" ] || fail "nul: the server answered no RCPT with the NUL reply"
	line=$(jq -c --arg r "$who" 'select(.rcpt==$r and .code==550)' "$T/nul.acct")
	[ -n "$line" ] || fail "nul: no 550 line for $who"
	echo "$line" | jq -e '.response | test("bad\u0000mailbox tail")' >/dev/null ||
		fail "nul: the response lost the text after the NUL: $(echo "$line" | jq -c .response)"
	grep -qF 'bad\u0000mailbox tail' "$T/nul.acct" || fail "nul: the NUL is not written as \\u0000"
	[ "$RC" -eq 0 ] || fail "nul: exit $RC"
	cp "$T/nul.acct" "$T/acct.jsonl"
	check_log_final 5
	ok "NUL in a reply: $(echo "$line" | jq -c .response)"
}

case_ "1 250 to DATA" t_data250
case_ "2 extra reply, one connection" t_extra
case_ "2b extra reply, 4 connections, 2 shards" t_extra_multi
case_ "3 600-character HELO" t_long_helo
case_ "4 520 recipients in one transaction" t_many_rcpts
case_ "5 421 greeting / EHLO refused: no storm" t_storm
case_ "6 1000-line EHLO" t_ehlo_lines
case_ "7 NUL in a reply" t_nul
[ ${#FAILED[@]} -eq 0 ] || fail "${#FAILED[@]} hostile case(s) failed: ${FAILED[*]}"
