# Daemon mode (`sluice run` without --drain): files dropped into an idle
# spool are picked up (inotify) and delivered; SIGTERM lets the open
# transactions end, starts no new one, and leaves the rest in the spool,
# so nothing is delivered twice by the next start.
source "$(dirname "$0")/../lib.sh"
set -e
port=$(free_port)
start_mockmx "$port" --store "$T/store"
mkdir -p "$T/sp"
start_daemon --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2
sleep 0.5
for i in $(seq 10); do
	printf 'Subject: drop %s\n\nhello\n' "$i" | "$SLUICE" inject --spool "$T/sp" --from s@sender.example --to "u$i@d.example" >/dev/null
	for _ in $(seq 100); do [ "$(spool_files "$T/store")" -ge "$i" ] && break; sleep 0.02; done
	[ "$(spool_files "$T/store")" -ge "$i" ] || fail "drop $i did not arrive within 2 s"
	sleep 0.1
done
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit status $? after SIGTERM"
stop_mockmx
[ "$(log_count '.result=="delivered"')" -eq 10 ] || fail "want 10 deliveries"
ok "idle daemon picked up 10 dropped files one by one; SIGTERM exit 0"

# SIGTERM with transactions open: the server holds every reply 1.5 s.
rm -rf "$T/sp" "$T/store" "$T/acct.jsonl"
"$SLUICE" spoolgen --spool "$T/sp" --count 40 >/dev/null
port=$(free_port)
start_mockmx "$port" --store "$T/store" --slow 1500
start_daemon --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-connections 4
sleep 3.8   # banner and EHLO took 3 s: the first transactions are open now
kill -TERM "$DAEMON"
start=$(date +%s)
wait "$DAEMON" || fail "daemon exit status $? after SIGTERM"
[ $(( $(date +%s) - start )) -le 11 ] || fail "SIGTERM took longer than --stop-timeout"
stop_mockmx
d=$(log_count '.result=="delivered"')
stored=$(spool_files "$T/store")
[ "$d" -gt 0 ] || fail "the open transactions were abandoned, not finished"
[ "$d" -eq "$stored" ] || fail "$stored messages reached the server but $d were logged (a resend would duplicate)"
[ "$(spool_files "$T/sp/new")" -eq $((40 - d)) ] || fail "want $((40 - d)) messages back in new/, have $(spool_files "$T/sp/new")"
[ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "active/ not empty"
ok "SIGTERM with $d transactions open: they finished and were logged; $((40 - d)) left in new/"
