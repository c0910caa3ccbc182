# Deferred mail across restarts: the retry state is saved, so a restart
# retries nothing before it is due, resends nothing to recipients already
# delivered, and counts attempts on.
source "$(dirname "$0")/../lib.sh"
set -e
for i in $(seq 10); do
	printf 'Subject: two recipients %s\nMessage-ID: <m%s@sender.example>\n\nbody\n' "$i" "$i" |
		"$SLUICE" inject --spool "$T/sp" --from s@sender.example --to "ok$i@d.example" --to "late$i@d.example" >/dev/null
done
# Run 1: the late* recipients are deferred (first retry due in ~10 s).
port=$(free_port)
start_mockmx "$port" --defer-rcpt late
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 10 --max-time 1
stop_mockmx
[ "$RC" -eq 1 ] || fail "run 1: want exit 1 (not all final), got $RC"
[ "$(log_count '.result=="delivered" and (.rcpt|startswith("ok"))')" -eq 10 ] || fail "run 1: ok* not delivered"
[ "$(log_count '.result=="deferred" and (.rcpt|startswith("late")) and .attempt==1')" -eq 10 ] || fail "run 1: late* not deferred"
[ "$(find "$T/sp/state" -type f | wc -l)" -eq 10 ] || fail "run 1: want 10 retry states"
[ "$(spool_files "$T/sp/new")" -eq 10 ] || fail "run 1: messages not back in new/"
ok "run 1: ok* delivered, late* deferred, 10 retry states saved"

# Run 2, at once, against a server that would accept everything: nothing is due.
port=$(free_port)
start_mockmx "$port" --store "$T/store"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 10 --max-time 1
[ "$RC" -eq 1 ] || fail "run 2: want exit 1, got $RC"
[ "$(spool_files "$T/store")" -eq 0 ] || fail "run 2: something was retried before it was due"
ok "run 2: nothing retried early"

# Run 3, once the retries are due (the saved due times say when).
due=$(awk '/^due /{print $2}' "$T"/sp/state/* | sort -n | tail -1)
wait_ms=$(( due - $(date +%s%3N) ))
[ "$wait_ms" -gt 0 ] && [ "$wait_ms" -lt 12000 ] || fail "saved due time is $wait_ms ms away, want 0..12 s"
sleep "$(( wait_ms / 1000 + 1 ))"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 10 --max-time 20
stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "run 3: exit $RC"; }
[ "$(mx_stat "$port" recipients)" -eq 10 ] || fail "run 3: want 10 recipients sent, got $(mx_stat "$port" recipients)"
! grep -rq 'X-Receiver: <ok' "$T/store" || fail "run 3: a delivered recipient was sent again"
[ "$(log_count '.result=="delivered" and (.rcpt|startswith("late")) and .attempt==2')" -eq 10 ] || fail "run 3: late* not delivered on attempt 2"
[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(find "$T/sp/state" -type f | wc -l)" -eq 0 ] || fail "run 3: spool or states left"
check_log_final 20
ok "run 3: only the pending recipients, on attempt 2; spool and states empty"
