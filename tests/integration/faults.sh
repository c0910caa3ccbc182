# Faults injected by mockmx: temporary RCPT failures and greylisting are
# retried until delivered; permanent failures bounce with the server's
# text; dropped connections inside DATA lose nothing.
source "$(dirname "$0")/../lib.sh"
set -e
N=$((1000 / SCALE))

scenario() {  # name, sluice extra args, then mockmx args
	local name=$1 extra=$2; shift 2
	rm -rf "$T/sp" "$T/acct.jsonl"
	"$SLUICE" spoolgen --spool "$T/sp" --count "$N" --domains 20 --seed 3 >/dev/null
	want=$(count_rcpts "$T/sp")
	port=$(free_port)
	start_mockmx "$port" "$@"
	# shellcheck disable=SC2086
	run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 0.2 --max-time 60 $extra
	stop_mockmx
	[ "$RC" -eq 0 ] || { cat "$T/run.out" "$T/run.err"; fail "$name: exit $RC"; }
	[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "$name: spool not empty"
	check_log_final "$want"
}

scenario rcpt451 "" --fail rcpt:451:0.05
d=$(log_count '.result=="deferred"')
[ "$d" -gt 0 ] || fail "rcpt451: no deferral was logged"
[ "$(log_count '.result=="delivered"')" -eq "$want" ] || fail "rcpt451: not all delivered"
[ "$(mx_stat "$port" recipients)" -eq "$want" ] || fail "rcpt451: server count differs"
[ "$(log_count '.result=="deferred" and .code==451 and .enhanced=="4.3.0" and (.response|test("injected 451 on RCPT"))')" -gt 0 ] || fail "rcpt451: deferred line lacks the server's reply"
[ "$(log_count '.result=="delivered" and .attempt>=2')" -gt 0 ] || fail "rcpt451: no delivery on a later attempt"
ok "5% 451 on RCPT: $d deferrals, all $want delivered"

scenario rcpt550 "" --fail rcpt:550:0.1
b=$(log_count '.result=="bounced"')
dl=$(log_count '.result=="delivered"')
[ "$b" -gt 0 ] || fail "rcpt550: nothing bounced"
[ $((b + dl)) -eq "$want" ] || fail "rcpt550: $b bounced + $dl delivered != $want"
[ "$(mx_stat "$port" recipients)" -eq "$dl" ] || fail "rcpt550: server count $(mx_stat "$port" recipients) != delivered $dl"
[ "$(log_count '.result=="bounced" and .code==550 and .enhanced=="5.1.1" and (.response|test("mockmx: injected 550 on RCPT")) and .attempt==1')" -eq "$b" ] || fail "rcpt550: bounced lines lack code/text"
[ "$(log_count '.result=="deferred"')" -eq 0 ] || fail "rcpt550: a 5xx was deferred"
ok "10% 550 on RCPT: $b bounced with the server's text, $dl delivered"

scenario dot554 "" --fail dot:554:0.05
b=$(log_count '.result=="bounced"')
[ "$b" -gt 0 ] || fail "dot554: nothing bounced"
[ "$(mx_stat "$port" recipients)" -eq $((want - b)) ] || fail "dot554: server count differs"
ok "5% 554 after the data: $b bounced"

scenario disconnect "--no-chunking" --disconnect-data 0.05
[ "$(log_count '.result=="delivered"')" -eq "$want" ] || fail "disconnect: not all delivered"
[ "$(log_count '.result=="deferred" and (.response|test("connection lost"))')" -gt 0 ] || fail "disconnect: no 'connection lost' deferral"
[ "$(mx_stat "$port" disconnects)" -gt 0 ] || fail "disconnect: mockmx dropped nothing"
ok "connections dropped in DATA ($(mx_stat "$port" disconnects)x): all $want delivered"

scenario disconnect_bdat "" --disconnect-data 0.05 --no-pipelining   # BDAT: lock-step only
[ "$(log_count '.result=="delivered"')" -eq "$want" ] || fail "disconnect_bdat: not all delivered"
[ "$(mx_stat "$port" bdat)" -gt 0 ] || fail "disconnect_bdat: nothing came by BDAT"
ok "connections dropped in BDAT: all $want delivered"

scenario greylist "" --greylist
[ "$(log_count '.result=="deferred" and .code==451 and .enhanced=="4.7.1"')" -eq "$want" ] || fail "greylist: want one 451 per recipient"
[ "$(log_count '.result=="delivered" and .attempt==2')" -eq "$want" ] || fail "greylist: want every delivery on attempt 2"
ok "greylisting: every recipient deferred once, delivered on attempt 2"

scenario lockstep "--max-per-connection 7" --no-pipelining --no-chunking
[ "$(log_count '.result=="delivered"')" -eq "$want" ] || fail "lockstep: not all delivered"
c=$(mx_stat "$port" connections)
[ "$c" -ge $((N / 7)) ] || fail "lockstep: $c connections for $N messages at 7 per connection"
ok "server without PIPELINING/CHUNKING, 7 messages per connection ($c connections)"
