# Byte-exact message content. Nine messages (tests/body_cases.py: already
# CRLF, LF only, mixed CRLF / bare LF / bare CR, lines starting with "."
# including ".", ".." and a first line that is a dot line, no final
# newline, headers only, 8-bit bytes, and 10 MB of mixed line endings and
# dot lines) go through `sluice inject` and `sluice run --drain` to a
# capturing server over five paths:
#   mockmx    PIPELINING+CHUNKING offered -> DATA, pipelined
#   mockmx    --no-pipelining --no-chunking -> DATA, lock-step
#   mockmx    --no-pipelining (CHUNKING)   -> BDAT LAST, lock-step
#   smtp-sink (PIPELINING, no CHUNKING)    -> DATA, pipelined
#   smtp-sink -p (no PIPELINING)           -> DATA, lock-step
# What each server received (mockmx --store: exact bytes after it undid
# dot-stuffing, or the raw BDAT chunk; smtp-sink -d: its dump, with its own
# X-*/Received: lines and final empty line removed and LF turned back into
# CRLF) must equal, per `cmp`, the CRLF normalisation documented in
# engine/lib/envelope.c (CRLF stays, bare LF and bare CR become CRLF, a
# final CRLF is added). The accounting log must say every recipient was
# delivered, exactly once; --trace smtp shows what the server offered
# and that DATA or BDAT was used as expected.
# CORRUPT_WANT=CASE flips one byte of that case's expected content: the
# test must then fail (a check that the comparison can fail).
source "$(dirname "$0")/../lib.sh"
set -e
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || fail "smtp-sink missing (apt-get install postfix)"

CASES=$(timeout 60 python3 "$HERE/body_cases.py" gen "$T/cases")
NCASES=$(echo $CASES | wc -w)
if [ -n "${CORRUPT_WANT:-}" ]; then
	f="$T/cases/want/$CORRUPT_WANT.eml"
	[ -f "$f" ] || fail "CORRUPT_WANT: no case $CORRUPT_WANT"
	printf 'Z' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") / 2 )) conv=notrunc status=none
	echo "  (CORRUPT_WANT: one byte of $CORRUPT_WANT's expected content changed; this run must fail)"
fi
for c in $CASES; do
	timeout 30 "$SLUICE" inject --spool "$T/spool0" --from sender@body.example \
		--to "$c@body.example" <"$T/cases/in/$c.msg" >/dev/null
done

# deliver NAME PORT: a fresh copy of the spool to 127.0.0.1:PORT over one
# connection; checks exit status, spool and accounting log.
deliver() {
	local name=$1 port=$2
	rm -rf "$T/sp" "$T/acct.jsonl"
	cp -a "$T/spool0" "$T/sp"
	run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --max-connections 1 \
		--max-time 120 --trace smtp
	[ "$RC" -eq 0 ] || { tail -30 "$T/run.err"; cat "$T/run.out"; fail "$name: exit $RC"; }
	[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] \
		|| fail "$name: spool not empty"
	check_log_final "$NCASES"
	local got want
	got=$(jq -r 'select(.result=="delivered") | .rcpt' "$T/acct.jsonl" | sort | tr '\n' ' ')
	want=$(for c in $CASES; do echo "$c@body.example"; done | sort | tr '\n' ' ')
	[ "$got" = "$want" ] || fail "$name: delivered [$got], want [$want]"
}

# check_path NAME pipelined|lockstep data|bdat: from the SMTP trace, what
# the server offered (its EHLO reply as sluice read it) and which verb
# carried each message. (The trace writes a command when it is queued, not
# when it goes on the wire, so it cannot show lock-step by itself; the
# offer decides it: sluice pipelines only when PIPELINING is offered.)
check_path() {
	local name=$1 pipe=$2 verb=$3 tr="$T/run.err" ehlo
	ehlo=$(grep -E ' < 250[- ]' "$tr" | grep -m1 -i 'ENHANCEDSTATUSCODES\|8BITMIME') || fail "$name: no EHLO reply in the trace"
	if [ "$pipe" = pipelined ]; then
		echo "$ehlo" | grep -q 'PIPELINING' || fail "$name: PIPELINING not offered: $ehlo"
	else
		! echo "$ehlo" | grep -q 'PIPELINING' || fail "$name: PIPELINING offered: $ehlo"
	fi
	[ "$(grep -c ' > EHLO ' "$tr")" -eq 1 ] || fail "$name: want one connection"
	local ndata nbdat
	ndata=$(grep -c ' > DATA$' "$tr" || true)
	nbdat=$(grep -c ' > BDAT [0-9]* LAST' "$tr" || true)
	if [ "$verb" = data ]; then
		[ "$ndata" -eq "$NCASES" ] && [ "$nbdat" -eq 0 ] || fail "$name: $ndata DATA, $nbdat BDAT; want $NCASES DATA"
	else
		[ "$nbdat" -eq "$NCASES" ] && [ "$ndata" -eq 0 ] || fail "$name: $ndata DATA, $nbdat BDAT; want $NCASES BDAT"
	fi
}

# compare NAME KIND CAPDIR: strip the peer's additions, cmp every case.
compare() {
	local name=$1 kind=$2 cap=$3 bad=0
	rm -rf "$T/got"
	timeout 60 python3 "$HERE/body_cases.py" strip "$kind" "$cap" "$T/got" || fail "$name: captures unusable"
	for c in $CASES; do
		[ -f "$T/got/$c.eml" ] || { echo "  $name: $c not captured"; bad=1; continue; }
		cmp "$T/cases/want/$c.eml" "$T/got/$c.eml" || { echo "  $name: $c differs (expected, received)"; bad=1; }
	done
	[ "$bad" -eq 0 ] || fail "$name: content not byte-exact"
	ok "$name: $NCASES messages byte-exact, all delivered"
}

# mockmx: three paths.
for mode in pipelined-data lockstep-data lockstep-bdat; do
	port=$(free_port)
	rm -rf "$T/store"
	case $mode in
	pipelined-data) mx=() ;;
	lockstep-data) mx=(--no-pipelining --no-chunking) ;;
	lockstep-bdat) mx=(--no-pipelining) ;;
	esac
	start_mockmx "$port" --store "$T/store" "${mx[@]}"
	deliver "mockmx $mode" "$port"
	stop_mockmx
	! grep -q "ERROR: .*Sanitizer\|runtime error:" "$T/mx-$port.err" || { cat "$T/mx-$port.err"; fail "mockmx: sanitizer report"; }
	check_path "mockmx $mode" "${mode%-*}" "${mode#*-}"
	[ "$(mx_stat "$port" messages)" -eq "$NCASES" ] || fail "mockmx $mode: $(mx_stat "$port" messages) messages"
	want_bdat=0; [ "$mode" = lockstep-bdat ] && want_bdat=$NCASES
	[ "$(mx_stat "$port" bdat)" -eq "$want_bdat" ] || fail "mockmx $mode: $(mx_stat "$port" bdat) by BDAT, want $want_bdat"
	compare "mockmx $mode" mockmx "$T/store"
done

# smtp-sink: a real, independent server (no CHUNKING); -p: no PIPELINING.
for mode in pipelined-data lockstep-data; do
	port=$(free_port)
	rm -rf "$T/dump"
	mkdir -m 777 "$T/dump"
	opt=(); [ "$mode" = lockstep-data ] && opt=(-p)
	timeout 120 "$SINK" -u nobody "${opt[@]}" -d "$T/dump/%H%M%S." "127.0.0.1:$port" 16 &
	PIDS+=($!)
	sink=$!
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
	deliver "smtp-sink $mode" "$port"
	# smtp-sink finishes a dump after its 250: wait until there are
	# NCASES dumps, each ending in its final empty line, sizes settled.
	prev=
	for _ in $(seq 100); do
		now=$(ls -l "$T/dump" | md5sum)
		n=0
		for f in "$T"/dump/*; do [ -f "$f" ] && [ "$(tail -c 2 "$f" | od -An -c | tr -d ' ')" = '\n\n' ] && n=$((n + 1)); done
		[ "$n" -eq "$NCASES" ] && [ "$now" = "$prev" ] && break
		prev=$now
		sleep 0.1
	done
	kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true
	[ "$(ls "$T/dump" | wc -l)" -eq "$NCASES" ] || fail "smtp-sink $mode: $(ls "$T/dump" | wc -l) dumps, want $NCASES"
	check_path "smtp-sink $mode" "${mode%-*}" data
	compare "smtp-sink $mode" smtp-sink "$T/dump"
done
