# A spool that resists: a file sluice cannot remove after its delivery
# (immutable) is delivered once and stays claimed, never again and again;
# a job file that cannot be removed keeps its progress (a restart sends
# nothing again); a long-named job resumes after a stop with its progress
# (its identity is the same in every run); and many lanes on one spool
# worker do not overflow its queue. Needs root (chattr +i).
source "$(dirname "$0")/../lib.sh"
set -e
[ "$(id -u)" = 0 ] || { echo "  skipped: chattr +i needs root"; exit 0; }
SP=$T/sp
mkdir -p "$SP/tmp" "$SP/new"
port=$(free_port)
start_mockmx "$port" --store "$T/store"

# 1. An immutable message file, in a daemon that passes over new/ again and again.
"$SLUICE" inject --spool "$SP" --from s@sender.example --to stuck@d.example >/dev/null <<<$'Subject: x\n\nbody'
f=$(ls "$SP/new")
chattr +i "$SP/new/$f" || { echo "  skipped: chattr +i refused here"; exit 0; }
trap 'rc=$?; chattr -i "$SP/new/"* 2>/dev/null || true; (exit $rc); cleanup' EXIT
start_daemon --spool "$SP" --route "*=127.0.0.1:$port"
for i in $(seq 20); do
	"$SLUICE" inject --spool "$SP" --from s@sender.example --to "more$i@d.example" >/dev/null <<<$'Subject: y\n\nbody'
	sleep 0.1
done
sleep 1
kill -TERM "$DAEMON"; wait "$DAEMON" || fail "daemon exit $?"
[ "$(log_count '.rcpt=="stuck@d.example" and .result=="delivered"')" -eq 1 ] ||
	fail "the immutable file was delivered $(log_count '.rcpt=="stuck@d.example" and .result=="delivered"') times"
[ "$(log_count '.result=="delivered"')" -eq 21 ] || fail "want 21 delivered, have $(log_count '.result=="delivered"')"
grep -q "cannot remove .*stays claimed" "$T/d.err" || fail "no clear message about the file that stays"
[ -e "$SP/new/$f" ] && [ "$(spool_files "$SP/new")" -eq 1 ] || fail "new/: $(ls "$SP/new")"
ok "an immutable file: delivered once, kept claimed, said; the 20 others delivered and removed"
chattr -i "$SP/new/$f"; rm -f "$SP/new/$f" "$T/acct.jsonl"

# 2. An immutable job file: its rows once, its progress kept; a restart sends nothing.
python3 "$HERE/job_cases.py" kill9 "$SP" stuck.job 50 >/dev/null
chattr +i "$SP/new/stuck.job"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$(log_count '.file=="stuck.job" and .result=="delivered"')" -eq 50 ] || fail "stuck.job: want 50 delivered"
[ -s "$SP/state/stuck.job" ] || fail "stuck.job: its progress was removed with the file still there"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$(log_count '.file=="stuck.job" and .result=="delivered"')" -eq 50 ] || fail "stuck.job: rows sent again after a restart"
grep -q "50 done before" "$T/run.out" || fail "stuck.job: $(grep 'job files' "$T/run.out")"
chattr -i "$SP/new/stuck.job"
ok "an immutable job file: 50 rows once, its progress kept, a restart sends none again"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$(spool_files "$SP/new")$(spool_files "$SP/state")" = 00 ] || fail "spool not empty: $(ls -A "$SP/new" "$SP/state")"
rm -f "$T/acct.jsonl"

# 3. A job with a 240-byte name, stopped half-way with a long-named message
# before it; the restart resumes it (its progress found under the same identity).
long=$(printf 'J%.0s' $(seq 236)).job
python3 "$HERE/job_cases.py" kill9 "$SP" "$long" 3000 >/dev/null
"$SLUICE" inject --spool "$SP" --from s@sender.example --to l@d.example >/dev/null <<<$'Subject: l\n\nbody'
mv "$SP/new/$(ls "$SP/new" | grep -v '^JJ')" "$SP/new/$(printf '0%.0s' $(seq 240))"
stop_mockmx
start_mockmx "$port" --store "$T/store" --slow 100
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 2
first=$(log_count '.result=="delivered" and .row != null')
[ "$first" -gt 0 ] && [ "$first" -lt 3000 ] || fail "long job: $first rows in the first run (want some, not all)"
stop_mockmx
start_mockmx "$port" --store "$T/store"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 30
[ "$RC" -eq 0 ] || fail "long job: drain exit $RC"
dups=$(jq -r 'select(.result=="delivered" and .row != null) | .row' "$T/acct.jsonl" | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || fail "long job: $dups rows delivered twice"
[ "$(jq -r 'select(.result=="delivered" and .row != null) | .row' "$T/acct.jsonl" | sort -u | wc -l)" -eq 3000 ] ||
	fail "long job: not every row delivered"
ok "a 240-byte job name: $first rows, a stop, then the other $((3000 - first)), none twice"

# 4. 100 lanes, one spool worker.
"$SLUICE" spoolgen --spool "$SP" --count 20000 --size 500 >/dev/null
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --shards 100 --spool-workers 1 --max-time 120
[ "$RC" -eq 0 ] || { cat "$T/run.err" | tail -3; fail "100 shards, 1 spool worker: exit $RC"; }
ok "100 shards on one spool worker: 20,000 messages drained"
stop_mockmx
