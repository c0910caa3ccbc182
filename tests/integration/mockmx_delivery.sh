# Delivers a generated spool to mockmx twice: once with BDAT (mockmx offers
# CHUNKING without PIPELINING: sluice uses BDAT only in lock-step) and once
# with DATA (pipelined, dot-stuffing on the wire). Checks: exit 0,
# spool empty, exactly one final line per recipient, the server's counts
# equal the spool's, stored messages byte-identical to the spool input.
source "$(dirname "$0")/../lib.sh"
set -e
N=$((3000 / SCALE))
for mode in bdat data; do
	rm -rf "$T/sp" "$T/orig" "$T/store" "$T/acct.jsonl"
	"$SLUICE" spoolgen --spool "$T/sp" --count "$N" --domains 50 --recipients 2 --seed 7 >/dev/null
	cp -r "$T/sp/new" "$T/orig"
	want=$(count_rcpts "$T/sp")
	port=$(free_port)
	mxopt=(); [ $mode = bdat ] && mxopt=(--no-pipelining)
	start_mockmx "$port" --store "$T/store" "${mxopt[@]}"
	extra=(); [ $mode = data ] && extra=(--no-chunking --spool-workers 1)  # one worker serving both shards
	run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 120 "${extra[@]}"
	stop_mockmx
	[ "$RC" -eq 0 ] || { cat "$T/run.out" "$T/run.err"; fail "$mode: exit $RC"; }
	[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "$mode: spool not empty"
	check_log_final "$want"
	[ "$(log_count '.result=="delivered"')" -eq "$want" ] || fail "$mode: not all delivered"
	[ "$(mx_stat "$port" recipients)" -eq "$want" ] || fail "$mode: mockmx saw $(mx_stat "$port" recipients) recipients, want $want"
	[ "$(mx_stat "$port" messages)" -eq "$N" ] || fail "$mode: mockmx saw $(mx_stat "$port" messages) messages, want $N"
	want_bdat=0; [ $mode = bdat ] && want_bdat=$N
	[ "$(mx_stat "$port" bdat)" -eq "$want_bdat" ] || fail "$mode: $(mx_stat "$port" bdat) messages by BDAT, want $want_bdat"
	python3 "$HERE/check_bodies.py" "$T/orig" "$T/store" mockmx || fail "$mode: bodies differ"
	grep -q "delivered         $want" "$T/run.out" || fail "$mode: summary does not say $want delivered"
	ok "$mode: $N messages, $want recipients, bodies identical"
done
