# The spool itself on a full file system: deferred messages' retry states
# cannot be saved, so sluice claims nothing new, keeps every file, says why,
# and resumes by itself when space returns. Needs root (tmpfs).
source "$(dirname "$0")/../lib.sh"
set -e
small_tmpfs "$T/spfs" 512k
"$SLUICE" spoolgen --spool "$T/spfs/sp" --count 40 --seed 3 >/dev/null
dd if=/dev/zero of="$T/spfs/filler" bs=4k count=200 2>/dev/null || true   # fills it
port=$(free_port)
start_mockmx "$port" --fail rcpt:451:1    # defers everything: a retry state per message
# One shard holding at most 16 messages: 24 wait in new/.
printf 'delivery: { inflight-per-shard = 16; retry-max = 1; };\n' >"$T/sluice.conf"
start_daemon -c "$T/sluice.conf" --spool "$T/spfs/sp" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 0.3
for _ in $(seq 100); do grep -q "cannot save the retry state" "$T/d.err" && break; sleep 0.05; done
grep -q "cannot save the retry state of .*: No space left on device; no new messages are claimed" "$T/d.err" ||
	{ cat "$T/d.err"; fail "no clear message about the full spool"; }
sleep 1
# Claims are in memory: the 16 held stay in new/ (their move to active/
# follows the retry state that cannot be written), and only they were tried.
claimed=$(jq -r 'select(.result=="deferred") | .id' "$T/acct.jsonl" | sort -u | wc -l)
[ "$claimed" -eq 16 ] || fail "want 16 claimed, have $claimed"
[ "$(spool_files "$T/spfs/sp/new")" -eq 40 ] || fail "want all 40 files kept in new/"
ok "spool full: 16 held, 24 not claimed, reason given"
stop_mockmx
start_mockmx "$port" --store "$T/store"   # now it accepts
rm -f "$T/spfs/filler"
for _ in $(seq 200); do [ "$(spool_files "$T/store")" -ge 40 ] && break; sleep 0.05; done
for _ in $(seq 100); do [ "$(spool_files "$T/spfs/sp/active")" -eq 0 ] && break; sleep 0.05; done
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
grep -q "resuming" "$T/d.err" || fail "no message on resuming"
[ "$(spool_files "$T/store")" -eq 40 ] || fail "want 40 delivered, got $(spool_files "$T/store")"
check_log_final 40
[ "$(spool_files "$T/spfs/sp/new")" -eq 0 ] && [ "$(spool_files "$T/spfs/sp/active")" -eq 0 ] &&
	[ "$(find "$T/spfs/sp/state" -type f | wc -l)" -eq 0 ] || fail "spool not empty after space returned"
ok "space returned: states saved, the rest claimed, all 40 delivered once, spool empty"

# A retry state that cannot be saved holds no removal back: the files of the
# messages delivered meanwhile leave the spool (freeing room), and the
# waiting state is saved once there is room.
stop_mockmx 2>/dev/null || true
umount -l "$T/spfs"; rm -rf "$T/spfs" "$T/store" "$T/acct.jsonl"
small_tmpfs "$T/spfs" 512k
"$SLUICE" inject --spool "$T/spfs/sp" --from s@sender.example --to wait-late@d.example >/dev/null <<<$'Subject: w\n\nbody'
"$SLUICE" spoolgen --spool "$T/spfs/sp" --count 30 --seed 4 >/dev/null
dd if=/dev/zero of="$T/spfs/filler" bs=4k count=200 2>/dev/null || true   # fills it
start_mockmx "$port" --defer-rcpt late --store "$T/store"
start_daemon --spool "$T/spfs/sp" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 60
for _ in $(seq 100); do [ "$(spool_files "$T/spfs/sp/new")$(spool_files "$T/spfs/sp/active")" = 10 ] && break; sleep 0.05; done
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
[ "$(log_count '.result=="delivered"')" -eq 30 ] || fail "want 30 delivered, got $(log_count '.result=="delivered"')"
[ "$(spool_files "$T/spfs/sp/new")" -eq 1 ] && [ "$(spool_files "$T/spfs/sp/active")" -eq 0 ] ||
	fail "want only the deferred message left in the spool: $(ls "$T/spfs/sp/new" "$T/spfs/sp/active")"
ok "a retry state without room holds no removal back: 30 delivered and removed, the deferred one kept"
