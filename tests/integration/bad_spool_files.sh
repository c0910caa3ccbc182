# Malformed spool files go to bad/ with a .why and the run goes on; an
# address with CR, LF or NUL (command injection) is never sent.
source "$(dirname "$0")/../lib.sh"
set -e
"$SLUICE" spoolgen --spool "$T/sp" --count 50 --domains 5 >/dev/null
new="$T/sp/new"
printf 'X-Receiver: <a@d.example>\nSubject: x\n\nbody\n' > "$new/no-sender"
printf 'X-Sender: <s@d.example>\nSubject: x\n\nbody\n' > "$new/no-receiver"
head -c 4000 /dev/urandom > "$new/binary"
printf 'X-Sender: <s@d.example>\nX-Receiver: <a@d.example\rRCPT TO:<victim@evil.example>>\n\nbody\n' > "$new/cr-inject"
printf 'X-Sender: <s@d.example>\nX-Receiver: <a\0@d.example>\n\nbody\n' > "$new/nul-addr"
printf 'X-Sender: <s@d.example\r\nRSET>\nX-Receiver: <a@d.example>\n\nbody\n' > "$new/crlf-sender"
: > "$new/empty"
port=$(free_port)
start_mockmx "$port" --store "$T/store"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 120
stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.out" "$T/run.err"; fail "exit $RC"; }
for f in no-sender no-receiver binary cr-inject nul-addr crlf-sender empty; do
	[ -f "$T/sp/bad/$f" ] || fail "$f not in bad/"
	[ -s "$T/sp/bad/$f.why" ] || fail "$f has no .why"
done
grep -q "no X-Sender" "$T/sp/bad/no-sender.why" || fail "no-sender: unclear reason"
grep -q "no X-Receiver" "$T/sp/bad/no-receiver.why" || fail "no-receiver: unclear reason"
grep -q "CR or LF" "$T/sp/bad/cr-inject.why" || fail "cr-inject: unclear reason: $(cat "$T/sp/bad/cr-inject.why")"
grep -q "NUL" "$T/sp/bad/nul-addr.why" || fail "nul-addr: unclear reason"
grep -q "bad spool files   7" "$T/run.out" || fail "summary does not count 7 bad files"
! grep -rq "victim@evil.example" "$T/store" || fail "injected recipient reached the server"
[ "$(mx_stat "$port" messages)" -eq 50 ] || fail "the 50 good messages were not all delivered"
check_log_final 50
ok "7 malformed files in bad/ with reasons, 50 good ones delivered, nothing injected"
