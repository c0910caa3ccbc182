# The accounting log on a full file system: sluice keeps delivering what it
# holds, claims nothing new, removes no file whose lines are not written,
# says why, and resumes by itself when space returns. Needs root (tmpfs).
source "$(dirname "$0")/../lib.sh"
set -e
small_tmpfs "$T/logfs" 64k
dd if=/dev/zero of="$T/logfs/filler" bs=4k count=100 2>/dev/null || true   # fills it
port=$(free_port)
start_mockmx "$port" --store "$T/store"
mkdir -p "$T/sp"
start_daemon --spool "$T/sp" --route "*=127.0.0.1:$port" --log "$T/logfs/acct.jsonl" --shards 2
sleep 0.3
"$SLUICE" spoolgen --spool "$T/sp" --count 30 --seed 1 >/dev/null
for _ in $(seq 100); do grep -q "cannot write the accounting log" "$T/d.err" && break; sleep 0.05; done
sleep 1   # what was claimed before the first failed write is delivered by now
grep -q "cannot write the accounting log: No space left on device" "$T/d.err" || fail "no clear message about the full disk"
sent=$(spool_files "$T/store")
[ "$sent" -gt 0 ] || fail "nothing was delivered"
# Claims are in memory: every file stays in new/ until its lines are written.
[ "$(spool_files "$T/sp/new")" -eq 30 ] || fail "a file left the spool before its lines were written"
"$SLUICE" spoolgen --spool "$T/sp" --count 5 --seed 2 >/dev/null
sleep 1
[ "$(spool_files "$T/sp/new")" -eq 35 ] || fail "a file left the spool while the log was full"
[ "$(spool_files "$T/store")" -eq "$sent" ] || fail "deliveries went on with new claims while the log was full"
ok "disk full: $sent delivered and kept in the spool unlogged, the rest not claimed"
rm -f "$T/logfs/filler"
for _ in $(seq 100); do [ "$(spool_files "$T/sp/active")" -eq 0 ] && [ "$(spool_files "$T/sp/new")" -eq 0 ] && break; sleep 0.05; done
for _ in $(seq 100); do [ "$(spool_files "$T/store")" -ge 35 ] && break; sleep 0.05; done
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
grep -q "resuming" "$T/d.err" || fail "no message on resuming"
cp "$T/logfs/acct.jsonl" "$T/acct.jsonl"
check_log_final 35
[ "$(spool_files "$T/sp/active")" -eq 0 ] && [ "$(spool_files "$T/sp/new")" -eq 0 ] || fail "spool not empty after space returned"
ok "space returned: lines written, files removed, the rest claimed and delivered; one final line each of 35"
