# What the server's extensions and limits mean for delivery: "too many
# recipients" (452 4.5.3) sends the rest in the next transaction of the
# same attempt; a message over the server's SIZE is bounced without being
# sent; an address that needs SMTPUTF8 is bounced when the server does not
# offer it, and goes when it does.
source "$(dirname "$0")/../lib.sh"
set -e

# 452: 40 messages x 10 recipients, the server takes 3 per transaction.
"$SLUICE" spoolgen --spool "$T/sp" --count 40 --recipients 10 --domains 1 >/dev/null
port=$(free_port)
start_mockmx "$port" --max-rcpt 3
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 60
stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "452: exit $RC"; }
check_log_final 400
[ "$(log_count '.result=="delivered" and .attempt==1')" -eq 400 ] || fail "452: not all delivered on attempt 1"
[ "$(log_count '.result=="deferred"')" -eq 0 ] || fail "452: deferrals logged"
[ "$(mx_stat "$port" messages)" -eq 160 ] || fail "452: want 4 transactions per message (160), got $(mx_stat "$port" messages)"
ok "452 too many recipients: 400 recipients in 160 transactions, all on attempt 1"

# SIZE: messages of ~5000 bytes to a server that takes 4000.
rm -rf "$T/sp" "$T/acct.jsonl"
"$SLUICE" spoolgen --spool "$T/sp" --count 10 --size 5000 >/dev/null
port=$(free_port)
start_mockmx "$port" --size-limit 4000
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --max-time 60
stop_mockmx
[ "$RC" -eq 0 ] || fail "size: exit $RC"
[ "$(log_count '.result=="bounced" and .code==552 and .enhanced=="5.3.4" and (.response|test("SIZE limit of 4000"))')" -eq 10 ] || fail "size: want 10 bounces 552 5.3.4"
[ "$(mx_stat "$port" messages)" -eq 0 ] && [ "$(mx_stat "$port" rejected)" -eq 0 ] || fail "size: a message was sent"
ok "over the server's SIZE: bounced 552 5.3.4 without sending"

# SMTPUTF8: one UTF-8 recipient beside an ASCII one.
utf8_run() {
	rm -rf "$T/sp" "$T/acct.jsonl"
	printf 'Subject: hi\n\nbody\n' | "$SLUICE" inject --spool "$T/sp" --from s@sender.example \
		--to 'jörg@dü.example' --to plain@d.example >/dev/null
	port=$(free_port)
	start_mockmx "$port" "$@" --store "$T/store-$port"
	run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 1 --max-time 60
	stop_mockmx
	[ "$RC" -eq 0 ] || fail "smtputf8: exit $RC"
}
utf8_run --no-smtputf8
[ "$(log_count '.result=="bounced" and .code==553 and .enhanced=="5.6.7" and .rcpt=="jörg@dü.example"')" -eq 1 ] || fail "smtputf8: UTF-8 recipient not bounced 553 5.6.7"
[ "$(log_count '.result=="delivered" and .rcpt=="plain@d.example"')" -eq 1 ] || fail "smtputf8: the ASCII recipient was not delivered"
utf8_run
[ "$(log_count '.result=="delivered"')" -eq 2 ] || fail "smtputf8: not both delivered when offered"
grep -rq 'X-Receiver: <jörg@dü.example>' "$T/store-$port" || fail "smtputf8: the UTF-8 address did not reach the server intact"
ok "SMTPUTF8: bounced 553 5.6.7 when not offered, delivered when offered"
