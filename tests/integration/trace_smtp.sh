# --trace smtp prints each connection's dialogue on stderr (commands,
# replies, state changes, failures, with times); nothing without it; any
# other trace name is refused.
source "$(dirname "$0")/../lib.sh"
set -e
port=$(free_port)
start_mockmx "$port"
"$SLUICE" spoolgen --spool "$T/sp" --count 3 >/dev/null
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --trace smtp
[ "$RC" -eq 0 ] || fail "traced run: exit $RC"
err="$T/run.err"
line='^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} shard0/[0-9]+ 127\.0\.0\.1:'"$port"
grep -Eq "$line \* free -> connecting$" "$err" || { head "$err"; fail "no state line"; }
grep -Eq "$line < 220 " "$err" || fail "no greeting line"
grep -Eq "$line > EHLO " "$err" || fail "no EHLO line"
[ "$(grep -Ec "$line > MAIL FROM:<" "$err")" -eq 3 ] || fail "want 3 MAIL lines"
[ "$(grep -Ec "$line < 250 2\.0\.0 " "$err")" -eq 3 ] || fail "want 3 end-of-data replies"
grep -Eq "$line \* ready -> quitting$" "$err" || fail "no QUIT state"
ok "--trace smtp: states, commands and replies of each connection with times"
"$SLUICE" spoolgen --spool "$T/sp" --count 3 --seed 2 >/dev/null
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1
[ "$RC" -eq 0 ] && ! grep -Eq "$line" "$T/run.err" || fail "trace lines without --trace"
ok "no trace without the flag"
stop_mockmx
port=$(free_port)   # nothing listens: the failure is traced
"$SLUICE" spoolgen --spool "$T/sp" --count 1 --seed 3 >/dev/null
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --trace smtp --max-time 1
grep -Eq "^[0-9:.]+ shard0/[0-9]+ 127\.0\.0\.1:$port ! 451 connect to .* failed: Connection refused" "$T/run.err" ||
	{ head "$T/run.err"; fail "refused connection not traced"; }
ok "a failed connection is traced with its reason"
set +e
"$SLUICE" run --spool "$T/sp" --trace dns --drain >/dev/null 2>"$T/bad.err"; rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "only trace is 'smtp'" "$T/bad.err" || fail "--trace dns not refused (rc $rc)"
ok "--trace with another name is refused"
