# Hostile SMTP servers (tests/hostile_server.py): a 250 to DATA, an
# unsolicited extra reply after the end of data, a 600-character HELO name,
# 520 recipients in one transaction, a server that greets 421 or refuses
# EHLO/HELO (no reconnect storm), a 1,000-line EHLO reply, a NUL inside a
# reply; a server that caps connections (421 or 554 at the greeting), one
# that acknowledges the data early (250 after the 354, before reading it),
# one that answers every final dot with 421, one that writes a RCPT refusal
# twice. Never a false "delivered", never a crash, the log always JSON.
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
# (One awk over all the files: thousands of messages in well under a second.)
ids_msgids() {
	awk 'FNR == 1 { if (NR > 1) print n, v; n = FILENAME; sub(/.*\//, "", n); v = ""; got = 0 }
	     !got && tolower($0) ~ /^message-id:/ { v = $0; sub(/^[^:]*: */, "", v); sub(/\r$/, "", v); got = 1 }
	     END { if (NR > 0) print n, v }' "$1"/new/*
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

# A configuration without destination back-off: the run goes on retrying
# whatever the server does (cases 9 and 11 judge deliveries, not back-off).
nobackoff_conf() {
	printf 'delivery = { destination-failures = 100; destination-backoff = 0.001; destination-backoff-max = 0.001; };\n' >"$T/nobackoff.conf"
}

# 8. A server that allows 5 connections from us and refuses more at the
# greeting (421, then 554), against 2 shards that may open 8: a cap, not a
# failure. Every message delivered, none bounced, exit 0, and the refused
# connections bounded (no reconnect loop against the cap).
cap_run() {   # TAG REFUSE_TEXT
	local tag=$1 text=$2 probs=() n refused d
	rm -rf "$T/sp-$tag"
	"$SLUICE" spoolgen --spool "$T/sp-$tag" --count 2000 --domains 5 >/dev/null
	ids_msgids "$T/sp-$tag" >"$T/$tag.map"
	start_hostile "$tag" --max-conns 5 --refuse "$text"
	hrun "$tag" --spool "$T/sp-$tag" --route "*=127.0.0.1:$HPORT" --shards 2 --max-connections 8 --retry-interval 0.5 --max-time 15
	stop_hostile "$HPID"
	n=$(wc -l <"$T/$tag.rec")
	refused=$(jq -s 'map(select(.refused)) | length' "$T/$tag.rec")
	d=$(lc "$tag" '.result=="delivered"')
	[ "$RC" -eq 0 ] || probs+=("exit $RC, want 0")
	[ "$d" -eq 2000 ] || probs+=("$d of 2000 recipients delivered")
	[ "$(lc "$tag" '.result=="bounced"')" -eq 0 ] || probs+=("$(lc "$tag" '.result=="bounced"') bounced ($(jq -r 'select(.result=="bounced") | .response' "$T/$tag.acct" | sort | uniq -c | head -1 | tr -s ' '))")
	[ "$refused" -le 60 ] || probs+=("$refused connections refused at the greeting (of $n), want at most 60: sluice keeps knocking on the cap")
	[ "$(spool_files "$T/sp-$tag/new")" -eq 0 ] || probs+=("$(spool_files "$T/sp-$tag/new") messages left in new/")
	local bad
	bad=$(comm -23 <(delivered_pairs "$tag" "$T/$tag.map") <(acked_pairs "$T/$tag.rec") | head -3)
	[ -z "$bad" ] || probs+=("delivered without an acknowledged body: ${bad//$'\n'/, }")
	[ ${#probs[@]} -eq 0 ] || fail "cap ($tag, '$text'): $(printf '%s; ' "${probs[@]}") (deferrals: $(jq -r 'select(.result=="deferred") | .response' "$T/$tag.acct" | cut -c1-80 | sort | uniq -c | sort -rn | head -2 | tr -s ' \n' ' '))"
	cp "$T/$tag.acct" "$T/acct.jsonl"
	check_log_final 2000
	ok "cap of 5 connections ('$text'): 2000 delivered, $refused connection(s) refused of $n, $(lc "$tag" '.result=="deferred"') deferral(s)"
}
t_cap() {
	local r=0
	( cap_run cap421 "421 4.7.0 too many connections from your IP" ) || r=1
	( cap_run cap554 "554 5.7.1 too many connections" ) || r=1
	return $r
}

# 9. A server that sends "250 early ack id=K" after the 354 but before it
# read any of the data (then reads the data and answers 554). A recipient
# is delivered only on a reply to data that reached the server: no
# delivered line may carry an early ack that the server sent before any
# byte of that message's data was in its hands.
#  - 9a "same write": the 250 travels with the 354 (--early-250 0). The
#    client has both in one read, before it could send anything: a delivery
#    on it is a plain bug. None allowed.
#  - 9b "0-6 ms": the 250 comes a random 0-6 ms after the 354, racing the
#    data. The client checks the socket is quiet just before it submits
#    the data; a 250 that lands between that check and the moment the
#    kernel sends the data cannot be told from an answer (the residual that
#    THE INVARIANT in shards/smtp_client.c and the README admit; it widens
#    with the connections a shard submits in one batch). Measured on 2
#    CPUs, 2 shards: about 1 such delivery in 10-15 runs (6b62839), 1-8
#    per run before the fixes; so at most 1 is allowed, and noted. 9a is
#    the part that cannot pass by luck.
early_run() {   # TAG MS ALLOWED COUNT MAX_TIME [sluice flags...]
	local tag=$1 ms=$2 allowed=$3 count=$4 maxt=$5; shift 5
	rm -rf "$T/sp-$tag"
	nobackoff_conf
	"$SLUICE" spoolgen --spool "$T/sp-$tag" --count "$count" --domains 5 >/dev/null
	start_hostile "$tag" --early-250 "$ms"
	hrun "$tag" -c "$T/nobackoff.conf" --spool "$T/sp-$tag" --route "*=127.0.0.1:$HPORT" --no-chunking --retry-interval 0.2 --max-time "$maxt" "$@"
	stop_hostile "$HPID"
	local nodata withdata bad nbad d
	jq -r '.early[]? | select(.data_before_ack|not) | "250 early ack id=\(.id)"' "$T/$tag.rec" | sort -u >"$T/$tag.nodata"
	nodata=$(wc -l <"$T/$tag.nodata")
	withdata=$(jq -s 'map(.early[]? | select(.data_before_ack)) | length' "$T/$tag.rec")
	[ "$nodata" -gt 0 ] || fail "early 250 ($tag): the server never sent an early ack before the data ($withdata after): nothing was tested"
	d=$(lc "$tag" '.result=="delivered"')
	# The log's response is the server's text after the code.
	bad=$(jq -r 'select(.result=="delivered") | .response' "$T/$tag.acct" | sed 's/^/250 /' | sort | comm -12 - "$T/$tag.nodata")
	nbad=$(echo "$bad" | grep -c . || true)
	local ids="" gaps="" k
	if [ "$nbad" -gt 0 ]; then
		ids=$(echo "$bad" | sed 's/.*id=//' | head -20 | tr '\n' ' ')
		for k in $ids; do
			gaps+="$(jq -r --argjson k "$k" '.early[]? | select(.id==$k) | .data_after_ms' "$T/$tag.rec") "
		done
	fi
	[ "$nbad" -le "$allowed" ] || fail "early 250 ($tag): $nbad of $d delivered line(s) rest on an early ack the server sent before any of that message's data had reached it (allowed: $allowed): ack ids ${ids}(the data came ${gaps}ms after the ack)"
	ok "early 250 ($tag): $nodata early acks before the data, $withdata after; $d delivered, $nbad on an ack before its data${ids:+ (NOTE: ack id $ids- the residual race; the data came ${gaps}ms after it)}"
}
t_early250() {
	local r=0
	( early_run early0 0 0 100 2 --shards 2 ) || r=1
	( early_run early6 6 1 300 5 --shards 2 ) || r=1
	return $r
}

# 10. A server that answers every final dot with "421 4.7.28 unusual rate,
# closing" and closes: a failure of the destination (back-off), not a loop
# of connections. At most 25 connections in 10 s, nothing delivered, every
# recipient deferred.
t_dot421() {
	rm -rf "$T/sp10"
	"$SLUICE" spoolgen --spool "$T/sp10" --count 100 --domains 5 >/dev/null
	start_hostile dot421 --dot-421
	hrun dot421 --spool "$T/sp10" --route "*=127.0.0.1:$HPORT" --shards 1 --retry-interval 100 --max-time 10
	stop_hostile "$HPID"
	local n d probs=()
	n=$(wc -l <"$T/dot421.rec")
	d=$(jq -r 'select(.result=="deferred") | .id+" "+.rcpt' "$T/dot421.acct" | sort -u | wc -l)
	[ "$n" -le 25 ] || probs+=("$n connections in 10 s (want at most 25), $(jq -s 'map(.dot_421 // 0) | add' "$T/dot421.rec") dots answered 421: the 421 does not back the destination off")
	[ "$(lc dot421 '.result=="delivered"')" -eq 0 ] || probs+=("$(lc dot421 '.result=="delivered"') delivered")
	[ "$(lc dot421 '.result=="bounced" or .result=="expired"')" -eq 0 ] || probs+=("bounced or expired lines")
	[ "$d" -eq 100 ] || probs+=("$d of 100 recipients deferred")
	[ "$RC" -eq 1 ] || probs+=("exit $RC, want 1")
	[ "$(spool_files "$T/sp10/new")" -eq 100 ] || probs+=("$(spool_files "$T/sp10/new") of 100 messages back in new/")
	[ ${#probs[@]} -eq 0 ] || fail "421 to the dot: $(printf '%s; ' "${probs[@]}")"
	ok "421 to every dot: $n connections, $(jq -s 'map(.dot_421 // 0) | add' "$T/dot421.rec") dot(s) answered 421, all 100 recipients deferred"
}

# 11. A server that offers PIPELINING and CHUNKING and writes its refusal
# of the first recipient of a transaction twice: every later reply shifts
# by one (the accepted RCPT gets the second 550, DATA or BDAT LAST gets the
# last RCPT's 250). 6 messages start with a refused recipient (refuse-K,
# then a-K, b-K), 4 have none (c-K, d-K). No recipient the server accepted
# is bounced, no delivery rests on a RCPT reply, only messages the server
# acknowledged are delivered, and the 4 without a refusal are.
t_double() {
	local i f
	rm -rf "$T/sp11"
	mkdir -p "$T/sp11/tmp" "$T/sp11/new"
	nobackoff_conf
	for i in $(seq 10); do
		f=$T/sp11/tmp/dbl-$i
		{
			printf 'X-Sender: <sender@sender.example>\n'
			if [ $((i % 5)) -eq 2 ] || [ $((i % 5)) -eq 4 ]; then
				printf 'X-Receiver: <c-%d@dbl.example>\nX-Receiver: <d-%d@dbl.example>\n' "$i" "$i"
			else
				printf 'X-Receiver: <refuse-%d@dbl.example>\nX-Receiver: <a-%d@dbl.example>\nX-Receiver: <b-%d@dbl.example>\n' "$i" "$i" "$i"
			fi
			printf 'From: <sender@sender.example>\nTo: <list@dbl.example>\nSubject: double %d\n' "$i"
			printf 'Date: Thu, 26 Nov 2026 05:00:00 +0000\nMessage-ID: <dbl-%d@sender.example>\nX-Test: dbl-%d\n\nbody %d\n' "$i" "$i" "$i"
		} >"$f"
		mv "$f" "$T/sp11/new/"
	done
	ids_msgids "$T/sp11" >"$T/dbl.map"
	start_hostile dbl --chunking --double-refusal --refuse-rcpt '^<refuse-'
	hrun dbl -c "$T/nobackoff.conf" --spool "$T/sp11" --route "*=127.0.0.1:$HPORT" --shards 1 --max-connections 1 --retry-interval 0.2 --max-time 3
	stop_hostile "$HPID"
	local probs=() bad d ndata nbdat
	jq -r '.rcpts_accepted[]?' "$T/dbl.rec" | tr -d '<>' | sort -u >"$T/dbl.accepted"
	[ -s "$T/dbl.accepted" ] || fail "double refusal: the server accepted no recipient"
	[ "$(jq -r '.rcpts_refused[]?' "$T/dbl.rec" | wc -l)" -gt 0 ] || fail "double refusal: the server refused no recipient"
	bad=$(jq -r 'select(.result=="bounced") | .rcpt' "$T/dbl.acct" | sort -u | comm -12 - "$T/dbl.accepted")
	[ -z "$bad" ] || probs+=("bounced, though the server accepted their RCPT: $(echo "$bad" | head -3 | tr '\n' ' ')($(jq -r 'select(.result=="bounced") | .response' "$T/dbl.acct" | sort | uniq -c | head -2 | tr -s ' \n' ' '))")
	bad=$(jq -r 'select(.result=="delivered" and (.response|test("queued")|not)) | .response' "$T/dbl.acct" | sort | uniq -c | head -3)
	[ -z "$bad" ] || probs+=("delivered on a reply that is not the end-of-data reply (a RCPT reply is '2.1.5 ok' or '5.1.1 no such user'): ${bad//$'\n'/, }")
	bad=$(comm -23 <(delivered_pairs dbl "$T/dbl.map") <(acked_pairs "$T/dbl.rec") | head -3)
	[ -z "$bad" ] || probs+=("delivered, but the server never acknowledged that message for that recipient: ${bad//$'\n'/, }")
	# The 4 messages without a refused recipient meet no shift: delivered.
	d=$(lc dbl '.result=="delivered" and (.rcpt|test("^[cd]-"))')
	[ "$d" -eq 8 ] || probs+=("$d of the 8 recipients of the messages without a refusal delivered")
	[ ${#probs[@]} -eq 0 ] || fail "double refusal: $(printf '%s; ' "${probs[@]}")"
	d=$(lc dbl '.result=="delivered"')
	ndata=$(jq -s '[.[].commands[] | select(test("^DATA"; "i"))] | length' "$T/dbl.rec")
	nbdat=$(jq -s '[.[].commands[] | select(test("^BDAT"; "i"))] | length' "$T/dbl.rec")
	ok "double refusal, CHUNKING offered: $d delivered (all acknowledged), $(lc dbl '.result=="bounced"') bounced; content by DATA $ndata times, by BDAT $nbdat"
}

case_ "1 250 to DATA" t_data250
case_ "2 extra reply, one connection" t_extra
case_ "2b extra reply, 4 connections, 2 shards" t_extra_multi
case_ "3 600-character HELO" t_long_helo
case_ "4 520 recipients in one transaction" t_many_rcpts
case_ "5 421 greeting / EHLO refused: no storm" t_storm
case_ "6 1000-line EHLO" t_ehlo_lines
case_ "7 NUL in a reply" t_nul
case_ "8 connection cap of 5 (421, 554 at the greeting)" t_cap
case_ "9 early 250 after 354 (same write; 0-6 ms later)" t_early250
case_ "10 421 to every dot" t_dot421
case_ "11 a RCPT refusal written twice, CHUNKING offered" t_double
[ ${#FAILED[@]} -eq 0 ] || fail "${#FAILED[@]} hostile case(s) failed: ${FAILED[*]}"
