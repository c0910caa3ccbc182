# Hostile producers: a name reused while the first message waits in
# active/ (deferred, or left by a crash) or is in flight is just another message;
# a retry state applies only to the file it was saved for; bad/ never
# overwrites; names with control characters are refused (and printed
# escaped); symlinks, FIFOs, directories and sockets in new/ go to bad/
# without being followed, opened or waited on.
source "$(dirname "$0")/../lib.sh"
set -e
SP=$T/sp
mkdir -p "$SP/tmp" "$SP/new"

# put NAME RCPT...: a producer writes a message as new/NAME (via tmp/, and
# replacing whatever new/NAME is, as rename(2) does).
put() {
	local name=$1; shift
	{ echo "X-Sender: <s@sender.example>"
	  for r; do echo "X-Receiver: <$r>"; done
	  printf 'Subject: spool_hostile\nMessage-ID: <%s@sender.example>\n\nbody\n' "$RANDOM$RANDOM"
	} >"$SP/tmp/.w"
	mv -f "$SP/tmp/.w" "$SP/new/$name"
}
# waitfor CONDITION WHAT: polls (bounded) until the shell condition holds.
waitfor() {
	for _ in $(seq $((200 * SCALE))); do eval "$1" && return 0; sleep 0.05; done
	cat "$T/d.err" >&2 2>/dev/null || true
	fail "$2"
}
# delivered_once RCPT...: each has exactly one final line, "delivered".
delivered_once() {
	for r; do
		[ "$(log_count ".rcpt==\"$r\" and .result==\"delivered\"")" -eq 1 ] ||
			fail "$r: want one delivered line, have $(log_count ".rcpt==\"$r\" and .result==\"delivered\"")"
		[ "$(log_count ".rcpt==\"$r\" and (.result==\"bounced\" or .result==\"expired\")")" -eq 0 ] ||
			fail "$r: bounced or expired"
	done
}
# sanitizer_clean: the daemon's stderr holds no ASan/UBSan report.
sanitizer_clean() {
	! grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$T/d.err" ||
		{ cat "$T/d.err" >&2; fail "sanitizer report from the daemon"; }
}
# entries DIR: entries of any type in DIR, less hidden ones (temporaries).
entries() { find "$1" -mindepth 1 -maxdepth 1 ! -name '.*' -printf x | wc -c; }
idof() { jq -r "select(.rcpt==\"$1\") | .id" "$T/acct.jsonl" | sort -u; }
fileof() { jq -r "select(.rcpt==\"$1\") | .file" "$T/acct.jsonl" | sort -u; }
drained() {
	[ "$RC" -eq 0 ] || { cat "$T/run.out" "$T/run.err"; fail "$1: drain exit $RC"; }
	grep -q "not final         0" "$T/run.out" || fail "$1: summary: $(grep 'not final' "$T/run.out")"
}

# 1. Reused while the first is deferred (waiting for its retry), then the
# daemon is killed and both names are reused again while the messages sit
# in active/: the restart moves them back to new/ under other names.
port=$(free_port)
start_mockmx "$port" --defer-rcpt late
put X a-ok@d.example a-late@d.example
start_daemon --spool "$SP" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 2
waitfor '[ -f "$SP/state/X" ]' "the first X was not deferred"
put X b-ok@d.example b-late@d.example
waitfor '[ "$(entries "$SP/state")" -eq 2 ]' "the second X was not deferred"
kill -9 "$DAEMON"
wait "$DAEMON" 2>/dev/null || true
sanitizer_clean
stop_mockmx
bid=$(idof b-ok@d.example)
[ "$(idof a-ok@d.example)" = X ] && [ "$(fileof a-ok@d.example)" = X ] || fail "first X: id $(idof a-ok@d.example)"
[[ $bid =~ ^X~[0-9]+$ ]] || fail "second X: want id X~N, got '$bid'"
[ "$(fileof b-ok@d.example)" = X ] || fail "second X: want file X, got $(fileof b-ok@d.example)"
grep -q a-late "$SP/active/X" && grep -q b-late "$SP/active/$bid" || fail "active/ does not hold both messages"
ok "X reused while X waits for its retry: claimed as $bid, own retry state"
put X c1@d.example c2@d.example
put "$bid" e1@d.example e2@d.example
port=$(free_port)
start_mockmx "$port" --store "$T/store"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 2 --max-time 60
stop_mockmx
drained "after kill -9"
grep -q "recovered 2 message" "$T/run.err" || fail "want 2 recovered: $(cat "$T/run.err")"
delivered_once a-ok@d.example a-late@d.example b-ok@d.example b-late@d.example c1@d.example c2@d.example \
	e1@d.example e2@d.example
! grep -rqE 'X-Receiver: <(a|b)-ok@' "$T/store" || fail "a recipient already delivered was sent again"
[ "$(mx_stat "$port" recipients)" -eq 6 ] || fail "want 6 recipients sent, got $(mx_stat "$port" recipients)"
[ "$(fileof a-late@d.example | grep -v '^X$')" ] || fail "the recovered X was not renamed beside the new X"
[ "$(entries "$SP/new")$(entries "$SP/active")$(entries "$SP/state")$(entries "$SP/bad")" = 0000 ] ||
	fail "spool not empty: $(ls -AR "$SP")"
ok "restart with both names reused: 4 messages, every recipient delivered once, nothing resent"

# 2. Reused while the first is in flight (every reply held 0.5 s): claims
# are in memory, so the producer's rename replaces new/Y; the first Y is
# delivered from memory, its removal spares the new file (another inode),
# which is claimed next under the same identity once the first is done.
rm -rf "$SP" "$T/acct.jsonl" "$T/store"
mkdir -p "$SP/tmp" "$SP/new"
port=$(free_port)
start_mockmx "$port" --slow 500 --store "$T/store"
put Y f1@d.example f2@d.example
start_daemon --spool "$SP" --route "*=127.0.0.1:$port" --shards 2
sleep 0.4   # claimed, and its dialogue under way (each reply takes 0.5 s)
[ ! -s "$T/acct.jsonl" ] || fail "Y finished too early to test"
put Y g1@d.example g2@d.example
waitfor '[ "$(log_count ".result==\"delivered\"")" -ge 4 ]' "both Y not delivered"
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit status $? after SIGTERM"
sanitizer_clean
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --shards 2 --max-time 30
stop_mockmx
drained "in flight"
delivered_once f1@d.example f2@d.example g1@d.example g2@d.example
[ "$(idof f1@d.example)" = Y ] && [ "$(idof g1@d.example)" = Y ] && [ "$(fileof g1@d.example)" = Y ] ||
	fail "ids: $(idof f1@d.example) and $(idof g1@d.example)"
[ "$(mx_stat "$port" messages)" -eq 2 ] || fail "want 2 messages sent, got $(mx_stat "$port" messages)"
ok "Y reused while Y is in flight: the new Y claimed after the first, both delivered once"

# 3. A producer replaces a released file: the old retry state is not its.
rm -rf "$SP" "$T/acct.jsonl"
mkdir -p "$SP/tmp" "$SP/new"
port=$(free_port)
start_mockmx "$port" --defer-rcpt late
put Z h-ok@d.example h-late@d.example
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --retry-interval 60 --max-time 2
stop_mockmx
[ "$RC" -eq 1 ] && [ -f "$SP/state/Z" ] && [ -f "$SP/new/Z" ] || fail "Z: want it deferred and released (exit $RC)"
put Z k1@d.example k2@d.example
port=$(free_port)
start_mockmx "$port"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --retry-interval 60 --max-time 30
stop_mockmx
drained "replaced Z"
delivered_once k1@d.example k2@d.example
grep -q "retry state ignored" "$T/run.err" || fail "no warning about the foreign retry state"
[ "$(entries "$SP/state")" -eq 0 ] || fail "the foreign retry state was left behind"
ok "Z replaced after its release: the old retry state was ignored, k1 and k2 delivered"

# 4. A name too long to take a suffix (252 bytes): its identity is cut
# (its retry state and any .why must fit), the log keeps the name as "file".
rm -rf "$SP" "$T/acct.jsonl"
mkdir -p "$SP/tmp" "$SP/new"
long=$(printf 'L%.0s' $(seq 252))
port=$(free_port)
start_mockmx "$port" --defer-rcpt late
put "$long" l-ok@d.example l-late@d.example
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --retry-interval 1 --max-time 2
stop_mockmx
[ "$RC" -eq 1 ] && [ "$(entries "$SP/state")" -eq 1 ] && [ "$(entries "$SP/new")" -eq 1 ] ||
	fail "long name: want it deferred, its state saved and released (exit $RC): $(cat "$T/run.err")"
lid=$(idof l-ok@d.example)
[[ $lid =~ ^L{200}~[0-9]+$ ]] && [ "$(fileof l-ok@d.example)" = "$long" ] || fail "long name: id $lid"
[ -f "$SP/state/$lid" ] && [ -f "$SP/new/$lid" ] || fail "long name: released as $(ls "$SP/new"), state $(ls "$SP/state")"
port=$(free_port)
start_mockmx "$port"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --retry-interval 1 --max-time 30
stop_mockmx
drained "long name"
delivered_once l-ok@d.example l-late@d.example
ok "a 252-byte name: id $(echo "$lid" | cut -c1-5)...~${lid##*~}, its retry state kept, both recipients delivered once"

# 5. bad/ never overwrites: a second W, a V whose name has a stale .why,
# and a U whose names U~1 .. U~100 earlier runs already gave out.
rm -rf "$SP" "$T/acct.jsonl"
mkdir -p "$SP/tmp" "$SP/new" "$SP/bad"
echo garbage1 >"$SP/new/W"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 30
echo garbage2 >"$SP/new/W"
echo operator-note >"$SP/bad/V.why"
echo garbage3 >"$SP/new/V"
for i in $(seq 100); do : >"$SP/bad/U~$i"; done
echo garbage4 >"$SP/new/U"
: >"$SP/bad/U"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 30
drained "bad"
grep -q "bad spool files   3" "$T/run.out" || fail "bad: summary does not count 3"
[ "$(grep -lx garbage4 "$SP"/bad/U~* | wc -l)" -eq 1 ] || fail "U not in bad/"
[ "$(cat "$SP/bad/W")" = garbage1 ] && [ -s "$SP/bad/W.why" ] || fail "the first bad/W was overwritten"
[ "$(cat "$SP/bad/V.why")" = operator-note ] || fail "bad/V.why was overwritten"
w2=$(grep -lx garbage2 "$SP"/bad/W~* | head -1)
v2=$(grep -lx garbage3 "$SP"/bad/V~* | head -1)
[ -n "$w2" ] && [ -s "$w2.why" ] && [ -n "$v2" ] && [ -s "$v2.why" ] || fail "bad/: $(ls -A "$SP/bad")"
ok "bad/: the second W became $(basename "$w2"), V became $(basename "$v2"), each with its .why"

# 6. Names with control characters are refused and printed escaped; a DSN
# never carries the producer's name in its file name, Message-ID or boundary.
rm -rf "$SP" "$T/acct.jsonl" "$T/dsn"
mkdir -p "$SP/tmp" "$SP/new"
put $'ctl\nname' m1@d.example
put $'ctl\001x' m2@d.example
put $'del\177' m3@d.example
put 'we"ird <name>' bounce@d.example
port=$(free_port)
start_mockmx "$port" --fail rcpt:550:1
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 30 --dsn-spool "$T/dsn"
stop_mockmx
drained "control characters"
grep -q "bad spool files   3" "$T/run.out" || fail "summary does not count 3 bad files"
for n in $'ctl\nname' $'ctl\001x' $'del\177'; do
	[ -f "$SP/bad/$n" ] && grep -q "control character" "$SP/bad/$n.why" || fail "$(printf %q "$n") not refused"
done
grep -qF 'ctl\nname' "$T/run.err" && grep -qF 'ctl\x01x' "$T/run.err" && grep -qF 'del\x7f' "$T/run.err" ||
	fail "names not escaped on stderr: $(cat -A "$T/run.err")"
! grep -q $'[\001\177]' "$T/run.err" || fail "raw control characters on stderr"
! grep -qx 'name: moved.*' "$T/run.err" || fail "a name broke a line on stderr"
[ "$(mx_stat "$port" messages)" -eq 0 ] && [ "$(log_count '.rcpt|startswith("m")')" -eq 0 ] ||
	fail "a refused file was sent"
[ "$(entries "$T/dsn/new")" -eq 1 ] || fail "want one DSN"
dsn=$(ls "$T/dsn/new")
[[ $dsn != *ird* ]] || fail "the DSN's file name carries the spool name: $dsn"
grep -ai 'message-id:\|boundary=' "$T/dsn/new/$dsn" | grep -q ird && fail "the DSN's Message-ID or boundary carries the spool name"
grep -q '^X-Sluice-Queue-ID: we"ird <name>' "$T/dsn/new/$dsn" || fail "X-Sluice-Queue-ID"
ok "3 names with control characters refused and printed escaped; DSN $dsn built from sluice's own token"

# 7. Not regular files: a symlink (to a valid message), a FIFO, a
# directory and a socket in new/ go to bad/; the good messages go out.
rm -rf "$SP" "$T/acct.jsonl"
"$SLUICE" spoolgen --spool "$SP" --count 20 --domains 3 >/dev/null
printf 'X-Sender: <s@sender.example>\nX-Receiver: <secret@d.example>\n\nbody\n' >"$T/outside"
ln -s "$T/outside" "$SP/new/link"
mkfifo "$SP/new/fifo"
mkdir "$SP/new/dir"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$SP/new/sock"
port=$(free_port)
start_mockmx "$port"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --shards 2 --max-time 60
drained "not regular"
grep -q "bad spool files   4" "$T/run.out" || fail "summary does not count 4 bad files"
[ -L "$SP/bad/link" ] && [ -p "$SP/bad/fifo" ] && [ -d "$SP/bad/dir" ] && [ -S "$SP/bad/sock" ] || fail "bad/: $(ls -lA "$SP/bad")"
for t in link:symlink fifo:FIFO dir:directory sock:socket; do
	grep -q "not a regular file: ${t#*:}" "$SP/bad/${t%:*}.why" || fail "${t%:*}: $(cat "$SP/bad/${t%:*}.why")"
done
[ "$(log_count '.rcpt=="secret@d.example"')" -eq 0 ] && [ -f "$T/outside" ] || fail "the symlink was followed"
check_log_final 20
ok "symlink, FIFO, directory and socket moved to bad/ with reasons; 20 messages delivered"

# A FIFO arrives while the daemon runs: no spool worker waits on it, the
# messages behind it go out, and SIGTERM stops it within --stop-timeout.
rm -rf "$SP" "$T/acct.jsonl"
mkdir -p "$SP/tmp" "$SP/new"
start_daemon --spool "$SP" --route "*=127.0.0.1:$port" --shards 2 --spool-workers 1 --stop-timeout 2
mkfifo "$SP/new/a-fifo"
"$SLUICE" spoolgen --spool "$SP" --count 10 >/dev/null
waitfor '[ "$(log_count ".result==\"delivered\"")" -eq 10 ]' "messages behind the FIFO not delivered"
[ -p "$SP/bad/a-fifo" ] || fail "the FIFO is not in bad/"
kill -TERM "$DAEMON"
start=$(date +%s)
wait "$DAEMON" || fail "daemon exit status $? after SIGTERM"
[ $(( $(date +%s) - start )) -le 4 ] || fail "SIGTERM took longer than --stop-timeout"
sanitizer_clean
stop_mockmx
ok "a FIFO in new/ under a running daemon: to bad/, 10 messages delivered, SIGTERM exit 0 in time"
