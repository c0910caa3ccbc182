# Servers that misbehave: never answer (timeout), answer garbage, refuse
# the connection: each is a deferral with a clear reason, never a crash;
# the messages stay in the spool for a later run; a 554 greeting too,
# unless delivery.bounce-on-5xx-greeting makes it a bounce.
source "$(dirname "$0")/../lib.sh"
set -e
N=20

expect_deferred() {  # name, jq regex for the response
	[ "$RC" -eq 1 ] || { cat "$T/run.out" "$T/run.err"; fail "$1: want exit 1 (not all final), got $RC"; }
	[ "$(spool_files "$T/sp/new")" -eq "$N" ] || fail "$1: messages not back in new/"
	[ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "$1: active/ not empty"
	jq . "$T/acct.jsonl" >/dev/null || fail "$1: log not JSON"
	[ "$(log_count '.result!="deferred"')" -eq 0 ] || fail "$1: something was not deferred"
	[ "$(log_count ".result==\"deferred\" and (.response|test(\"$2\"))")" -gt 0 ] || { head -3 "$T/acct.jsonl"; fail "$1: no deferral saying '$2'"; }
	grep -q "not final         $N" "$T/run.out" || fail "$1: summary does not count $N not final"
}

fresh() { rm -rf "$T/sp" "$T/acct.jsonl"; "$SLUICE" spoolgen --spool "$T/sp" --count $N --domains 3 >/dev/null; }

fresh
port=$(free_port)
start_mockmx "$port" --silent
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --timeout 1 --retry-interval 0.5 --max-time 4
stop_mockmx
expect_deferred silent "timeout after 1 s waiting for reply to banner"
ok "silent server: timeout, deferred, kept"
# The next run, against a server that answers, delivers what was kept.
port=$(free_port)
start_mockmx "$port"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 30
stop_mockmx
[ "$RC" -eq 0 ] && [ "$(mx_stat "$port" messages)" -eq "$N" ] || fail "kept messages not delivered by the next run"
[ "$(log_count '.result=="delivered" and .attempt>=2')" -eq "$N" ] || fail "next run: want $N deliveries, counting on from the saved attempts"
[ "$(find "$T/sp/state" -type f | wc -l)" -eq 0 ] || fail "retry states left behind for delivered messages"
ok "the next run delivered the $N kept messages (attempt count carried over)"

fresh
port=$(free_port)
timeout 60 python3 "$HERE/integration/garbage_server.py" "$port" &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 0.5 --max-time 3
expect_deferred garbage "bad reply to EHLO|bad reply to MAIL|bad reply to RCPT"
ok "garbage replies: deferred, kept"

fresh
port=$(free_port)   # nothing listens there
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 0.5 --max-time 2
expect_deferred refused "Connection refused"
ok "refused connection: deferred, kept"

fresh
port=$(free_port)
start_mockmx "$port" --fail connect:554:1
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 0.5 --max-time 2
stop_mockmx
expect_deferred banner554 "banner refused: 554"
[ "$(mx_stat "$port" connections)" -le 4 ] || fail "banner554: $(mx_stat "$port" connections) connections to a refusing server in 2 s"
ok "554 greeting: deferred (as Postfix's smtp_skip_5xx_greeting), kept, $(mx_stat "$port" connections) connections"

# With delivery.bounce-on-5xx-greeting, a 5xx greeting from the only
# address is a permanent refusal: bounced.
fresh
port=$(free_port)
start_mockmx "$port" --fail connect:554:1
printf 'delivery = { bounce-on-5xx-greeting = true; };\n' >"$T/b5.conf"
run_sluice -c "$T/b5.conf" --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 0.5 --max-time 2
stop_mockmx
[ "$RC" -eq 0 ] || fail "banner554 bounce: want exit 0 (all final), got $RC"
[ "$(log_count '.result=="bounced" and .code==554 and (.response|test("banner refused: 554"))')" -eq "$N" ] ||
	{ head -3 "$T/acct.jsonl"; fail "banner554 bounce: want $N bounced with the greeting's text"; }
[ "$(log_count '.result!="bounced"')" -eq 0 ] || fail "banner554 bounce: something was not bounced"
ok "554 greeting with bounce-on-5xx-greeting: $N bounced with the server's text"
