# Job files at their edges: a job with no row (only the column names, or
# only empty lines after them) and a job whose rows were all done in an
# earlier run (its progress says so) each leave the spool at once, with
# nothing sent, and a drain ends; a progress file written for another file
# of the same name is ignored (every row goes).
source "$(dirname "$0")/../lib.sh"
set -e
SP=$T/sp
mkdir -p "$SP/tmp" "$SP/new"
# job NAME CSV: a job file with a two-field template, written via tmp/.
job() {
	local tpl=$'Subject: hi {{name|there}}\n\nbody for {{email}}\n'
	{ printf 'X-Sluice-Job: 1\nX-Sender: <s@sender.example>\nX-Job: edges\nX-Template-Bytes: %d\n' \
		"$(printf '%s' "$tpl" | wc -c)"
	  printf '%s' "$tpl"; printf '%b' "$2"; } >"$SP/tmp/.w"
	mv "$SP/tmp/.w" "$SP/new/$1"
}
port=$(free_port)
start_mockmx "$port" --store "$T/store"

job empty.job 'email,name\n'
job blank.job 'email,name\n\n\r\n\n'
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$RC" -eq 0 ] || { cat "$T/run.out" "$T/run.err"; fail "empty jobs: drain exit $RC"; }
grep -q "job files         2 started, 2 done" "$T/run.out" || fail "empty jobs: $(grep 'job files' "$T/run.out")"
[ "$(spool_files "$SP/new")$(spool_files "$SP/state")" = 00 ] || fail "empty jobs left: $(ls -A "$SP/new" "$SP/state")"
[ ! -s "$T/acct.jsonl" ] || fail "empty jobs logged something"
ok "a job of no row and one of empty lines leave the spool at once, a drain ends"

# Three rows, all delivered; then the same file put back with its progress
# (a crash after the last line, before the removal): nothing is sent again.
job three.job 'email,name\na@d.example,A\nb@d.example,B\nc@d.example,\n'
cp "$SP/new/three.job" "$T/three.keep"
stat -c '%i' "$SP/new/three.job" >"$T/ino"
mkdir -p "$T/hold"
# Keep the file's inode alive through a hard link so that putting it back
# restores the very file (same inode, size, mtime) the progress is for.
ln "$SP/new/three.job" "$T/hold/three.job"
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$RC" -eq 0 ] || fail "three rows: drain exit $RC"
[ "$(log_count '.result=="delivered" and .file=="three.job"')" -eq 3 ] || fail "three rows: want 3 delivered"
[ ! -e "$SP/new/three.job" ] || fail "three.job was not removed"
ok "three rows delivered, the job file removed"

# The progress of a finished run, written again by hand: rows 1-3 done.
python3 - "$SP/state/three.job" "$T/hold/three.job" <<'PY'
import os, sys
st = os.stat(sys.argv[2])
head = ('sluice-job 1 %d %d %d %d' % (st.st_ino, st.st_size, st.st_mtime_ns, 0)).ljust(127) + '\n'
open(sys.argv[1], 'wb').write(head.encode() + bytes([0b111]))
PY
ln "$T/hold/three.job" "$SP/new/three.job"
sent=$(find "$T/store" -type f | wc -l)
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$RC" -eq 0 ] || fail "done before: drain exit $RC"
grep -q "3 done before" "$T/run.out" || fail "done before: $(grep 'job files' "$T/run.out")"
[ "$(find "$T/store" -type f | wc -l)" -eq "$sent" ] || fail "a row done before was sent again"
[ "$(spool_files "$SP/new")$(spool_files "$SP/state")" = 00 ] || fail "done before: spool not empty"
ok "a job whose rows were all done before: nothing sent, it leaves the spool"

# The same name with other content: the old progress is not its own.
python3 - "$SP/state/other.job" <<'PY'
import sys
head = 'sluice-job 1 1 2 3 0'.ljust(127) + '\n'
open(sys.argv[1], 'wb').write(head.encode() + bytes([0xff]))
PY
job other.job 'email,name\nx@d.example,X\ny@d.example,Y\n'
run_sluice --spool "$SP" --route "*=127.0.0.1:$port" --max-time 20
[ "$RC" -eq 0 ] || fail "foreign progress: drain exit $RC"
[ "$(log_count '.result=="delivered" and .file=="other.job"')" -eq 2 ] ||
	fail "foreign progress: want both rows delivered, have $(log_count '.result=="delivered" and .file=="other.job"')"
ok "a progress file of another file by that name is ignored: both rows delivered"
stop_mockmx
