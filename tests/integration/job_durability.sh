# Job files keep every promise the single-file spool makes (README "Job
# files", Progress, and "Running it": daemon, SIGTERM, disk full, SIGHUP,
# retries). Jobs come from tests/job_cases.py kill9 (plain rows over the
# domains k0..k9.example); mockmx --store captures are read back with
# tests/job_render.py --rows. Sections:
#  1. Daemon: a job renamed into new/ of an idle daemon is delivered at
#     once (its first delivered line's ts within 1 s of the rename), all of
#     it, each row once; the job file and SPOOL/state/NAME are gone after.
#     SIGTERM in the middle of a second job (mockmx --slow): exit 0 within
#     --stop-timeout; the job file stays in new/, its progress file in
#     state/ with exactly the rows that have a final line marked; every row
#     the server got was logged (open transactions finish), a --drain
#     restart sends exactly the other rows: each row one delivered line over
#     the two logs, none received twice.
#  2. Reload: two logrotate-style renames + SIGHUP (with a changed
#     configuration) in the middle of a job: the job goes on (not started
#     again), lines land in all three files, each row delivered once.
#  3. Retries: rows deferred (mockmx --greylist and --fail rcpt:451) are
#     retried with --retry-interval 0.2 and delivered in the run; the job
#     file leaves only once every row has its final line. With a domain
#     always deferred (--defer-rcpt) and --max-time stopping the run: exit
#     1, job file and progress kept (marks = the final rows), the next run
#     sends only the rows not final (attempt counted from 1 again).
#  4. Disk full (the log on a small tmpfs, full): rows in flight are sent,
#     none is marked done, no more are taken, the job file stays; when
#     space returns every row gets exactly one final line, rows sent twice
#     are counted and at most what was sent while the log was full.
#     Needs root (a tmpfs): without it this section is skipped.
source "$(dirname "$0")/../lib.sh"
set -e
RENDER=$HERE/job_render.py

# rows_logged RESULTS FILE...: rows of kill9.job with a line whose result
# is one of RESULTS (regex), one per line, sorted (duplicates kept).
rows_logged() {
	local re=$1; shift
	cat "$@" | jq -r --arg re "^($re)\$" 'select(.file=="kill9.job" and (.result|test($re))) | .row' | sort -n
}
finals() { rows_logged 'delivered|bounced|expired' "$@"; }
# rows_stored DIR...: rows the server received (sorted, duplicates kept).
rows_stored() { python3 "$RENDER" --rows "$@" | sort -n; }
# rows_marked FILE: rows whose bit is set in a progress file.
rows_marked() {
	python3 - "$1" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()
assert d.startswith(b'sluice-job 1 '), 'not a progress file'
for i, b in enumerate(d[128:]):
    for k in range(8):
        if b >> k & 1:
            print(i * 8 + k + 1)
PY
}
count() { grep -c . || true; }
# wait_gone SECONDS: until the job file and its progress file are gone.
wait_gone() {
	for _ in $(seq $(($1 * 20))); do
		[ ! -e "$T/sp/new/kill9.job" ] && [ ! -e "$T/sp/state/kill9.job" ] && return 0
		sleep 0.05
	done
	return 1
}
asan_check() { ! grep -q "ERROR: AddressSanitizer\|runtime error:" "$@" || { grep -m5 "Sanitizer\|runtime error" "$@"; fail "sanitizer report"; }; }
newjob() { # newjob N: kill9.job of N rows, built aside, renamed into new/ by the caller
	mkdir -p "$T/gen"
	python3 "$HERE/job_cases.py" kill9 "$T/gen/sp" kill9.job "$1" >/dev/null
	mkdir -p "$T/sp/tmp" "$T/sp/new"
	mv "$T/gen/sp/new/kill9.job" "$T/sp/tmp/kill9.job"
	mv "$T/gen/kill9.job" "$T/kill9.job"   # the renderer's copy
	rm -rf "$T/gen"
}
fresh() { # a new spool, logs and stores for the next section
	rm -rf "$T/sp" "$T"/store* "$T"/acct*.jsonl* "$T/d.err" "$T/d.out" "$T/run.err" "$T/run.out"
	mkdir -p "$T/sp"
}

# ---- 1. Daemon mode --------------------------------------------------------
echo "-- 1. daemon"
fresh
N=$((1000 / SCALE))
port=$(free_port)
start_mockmx "$port" --store "$T/store"
start_daemon --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --stop-timeout 5
sleep 1   # idle by now
newjob "$N"
t0=$(date +%s.%N)
mv "$T/sp/tmp/kill9.job" "$T/sp/new/kill9.job"
wait_gone 20 || { tail "$T/d.err"; fail "job of $N rows not done in 20 s (new/: $(ls "$T/sp/new"), state/: $(ls "$T/sp/state"))"; }
lag=$(jq -r 'select(.file=="kill9.job" and .result=="delivered") | .ts' "$T/acct.jsonl" | sort | head -1 |
	python3 -c 'import sys, datetime
ts = sys.stdin.read().strip()
t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
print("%.3f" % (t - float(sys.argv[1])))' "$t0")
python3 -c "import sys; sys.exit(0 if $lag < 1.0 else 1)" || fail "first delivered line $lag s after the rename (want < 1 s)"
[ "$(finals "$T/acct.jsonl")" = "$(seq "$N")" ] || fail "want rows 1..$N one final line each; got $(finals "$T/acct.jsonl" | count) lines, $(finals "$T/acct.jsonl" | uniq -d | count) rows twice"
[ "$(rows_logged 'delivered' "$T/acct.jsonl" | count)" -eq "$N" ] || fail "not every row delivered"
[ "$(rows_stored "$T/store")" = "$(seq "$N")" ] || fail "the server did not get rows 1..$N once each"
python3 "$RENDER" --compare "$T/kill9.job" "$T/store" >"$T/cmp" || { cat "$T/cmp"; fail "received messages differ from the renderer's"; }
ok "idle daemon: job of $N rows, first delivered line ${lag} s after the rename; all delivered once, byte-exact; job file and state/kill9.job gone"

# SIGTERM in the middle of a second job; the server holds each reply batch.
stop_mockmx
N=$((3000 / SCALE))
port=$(free_port)
start_mockmx "$port" --store "$T/store.1" --slow $((100 * SCALE))
# The daemon keeps its connections to the first mockmx's port: a new daemon
# for the new route (the first one must exit 0 on SIGTERM too).
kill -TERM "$DAEMON"; wait "$DAEMON" || fail "idle daemon: exit $? after SIGTERM"
mv "$T/acct.jsonl" "$T/acct.0.jsonl"
start_daemon --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --stop-timeout 5 --log "$T/acct.1.jsonl"
sleep 0.5
newjob "$N"
mv "$T/sp/tmp/kill9.job" "$T/sp/new/kill9.job"
for _ in $(seq 200); do [ "$(finals "$T/acct.1.jsonl" 2>/dev/null | count)" -ge $((N / 20)) ] && break; sleep 0.05; done
kill -TERM "$DAEMON"
start=$(date +%s.%N)
wait "$DAEMON" || fail "daemon exit status $? after SIGTERM in the middle of a job"
took=$(python3 -c "import time; print('%.2f' % (time.time() - $start))")
python3 -c "import sys; sys.exit(0 if $took <= 6 else 1)" || fail "SIGTERM took $took s (--stop-timeout 5)"
stop_mockmx
asan_check "$T/d.err"
done1=$(finals "$T/acct.1.jsonl" | count)
[ "$done1" -gt 0 ] && [ "$done1" -lt "$N" ] || fail "SIGTERM did not hit the job in the middle: $done1 of $N final"
[ -f "$T/sp/new/kill9.job" ] || fail "job file not in new/ after SIGTERM (new/: $(ls "$T/sp/new"))"
[ -f "$T/sp/state/kill9.job" ] || fail "no state/kill9.job after SIGTERM"
[ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "active/ not empty after SIGTERM"
[ "$(rows_marked "$T/sp/state/kill9.job")" = "$(finals "$T/acct.1.jsonl")" ] ||
	fail "progress marks ($(rows_marked "$T/sp/state/kill9.job" | count)) are not exactly the rows with a final line ($done1)"
[ "$(rows_stored "$T/store.1")" = "$(rows_logged delivered "$T/acct.1.jsonl")" ] ||
	fail "the server got $(rows_stored "$T/store.1" | count) rows, $(rows_logged delivered "$T/acct.1.jsonl" | count) logged delivered: open transactions not finished and logged (diff: $(diff <(rows_stored "$T/store.1") <(rows_logged delivered "$T/acct.1.jsonl") | head -5 | tr '\n' ' '))"
ok "SIGTERM after $done1 of $N rows: exit 0 in $took s; job file in new/, progress marks = logged rows = rows received"
port=$(free_port)
start_mockmx "$port" --store "$T/store.2"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 60 --log "$T/acct.2.jsonl"
stop_mockmx
[ "$RC" -eq 0 ] || { tail "$T/run.err"; fail "restart: exit $RC"; }
grep -q "rows: 0 refused, $done1 done before)" "$T/run.out" || fail "restart did not skip the $done1 rows done: $(grep 'job files' "$T/run.out")"
[ "$(finals "$T/acct.1.jsonl" "$T/acct.2.jsonl")" = "$(seq "$N")" ] ||
	fail "over both logs, want rows 1..$N one final line each; rows twice: $(finals "$T/acct.1.jsonl" "$T/acct.2.jsonl" | uniq -d | head -5 | tr '\n' ' ')"
[ "$(rows_logged 'delivered' "$T/acct.1.jsonl" "$T/acct.2.jsonl" | count)" -eq "$N" ] || fail "not every row delivered"
again=$(comm -12 <(rows_stored "$T/store.1" | sort) <(rows_stored "$T/store.2" | sort) | sort -n)
[ -z "$again" ] || fail "$(echo "$again" | count) rows delivered before the SIGTERM were sent again by the restart, e.g. $(echo "$again" | head -5 | tr '\n' ' ')"
[ "$(rows_stored "$T/store.1" "$T/store.2")" = "$(seq "$N")" ] || fail "the server did not get rows 1..$N exactly once over both runs"
wait_gone 1 || fail "job file or progress file left after the restart"
ok "restart: the other $((N - done1)) rows sent, none twice; job file and state gone"

# ---- 2. Reload --------------------------------------------------------------
echo "-- 2. reload"
fresh
N=$((4000 / SCALE))
port=$(free_port)
start_mockmx "$port" --store "$T/store" --slow $((20 * SCALE))
conf() {
	cat >"$T/sluice.conf" <<CONF
delivery: { max-connections = $1; };
routes = ( { domain = "*"; host = "127.0.0.1"; port = $port; } );
CONF
}
reloaded() { # reloaded N: SIGHUP, wait for the N-th "reload:" message
	kill -HUP "$DAEMON"
	for _ in $(seq 100); do [ "$(grep -c 'reload:' "$T/d.err")" -ge "$1" ] && return 0; sleep 0.05; done
	fail "no reload message"
}
conf 2
start_daemon -c "$T/sluice.conf" --spool "$T/sp" --shards 2
sleep 0.5
newjob "$N"
mv "$T/sp/tmp/kill9.job" "$T/sp/new/kill9.job"
for i in 1 2; do
	for _ in $(seq 200); do [ "$(cat "$T"/acct.jsonl* 2>/dev/null | finals | count)" -ge $((N * i / 4)) ] && break; sleep 0.02; done
	mv "$T/acct.jsonl" "$T/acct.jsonl.$i"
	conf $((2 + 2 * i))
	reloaded "$i"
	grep -q "reload: configuration read again" "$T/d.err" || fail "reload $i not reported: $(tail -2 "$T/d.err")"
done
[ -e "$T/sp/new/kill9.job" ] || fail "the job was over before the second reload: retune"
wait_gone 30 || { tail "$T/d.err"; fail "job not done 30 s after the reloads"; }
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
asan_check "$T/d.err"
for f in acct.jsonl.1 acct.jsonl.2 acct.jsonl; do
	[ -s "$T/$f" ] || fail "$f is empty: the log was not reopened or the job stalled"
	jq . "$T/$f" >/dev/null || fail "$f is not valid JSON"
done
split="$(finals "$T/acct.jsonl.1" | count) + $(finals "$T/acct.jsonl.2" | count) + $(finals "$T/acct.jsonl" | count)"
[ "$(finals "$T/acct.jsonl.1" "$T/acct.jsonl.2" "$T/acct.jsonl")" = "$(seq "$N")" ] ||
	fail "over the three logs ($split), want rows 1..$N one final line each; rows twice: $(finals "$T"/acct.jsonl* | uniq -d | head -5 | tr '\n' ' ')"
[ "$(rows_logged delivered "$T"/acct.jsonl* | count)" -eq "$N" ] || fail "not every row delivered"
[ "$(rows_stored "$T/store")" = "$(seq "$N")" ] || fail "the server did not get rows 1..$N exactly once ($(rows_stored "$T/store" | uniq -d | count) twice)"
grep -q "job files  *1 started, 1 done (rows: 0 refused, 0 done before)" "$T/d.out" || fail "the job was started again: $(grep 'job files' "$T/d.out")"
ok "two rotations + SIGHUP mid-job: lines $split, each row delivered once, the job not restarted"

# ---- 3. Retries -------------------------------------------------------------
echo "-- 3. retries"
fresh
N=$((600 / SCALE))
port=$(free_port)
start_mockmx "$port" --store "$T/store" --greylist --fail rcpt:451:0.05 --seed 7
newjob "$N"
mv "$T/sp/tmp/kill9.job" "$T/sp/new/kill9.job"
"$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 0.2 \
	--log "$T/acct.jsonl" --max-time 20 >"$T/run.out" 2>"$T/run.err" &
pid=$!
gone_at=
for _ in $(seq 1000); do
	if [ ! -e "$T/sp/new/kill9.job" ]; then
		gone_at=$(finals "$T/acct.jsonl" | count)
		break
	fi
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
set +e; wait "$pid"; RC=$?; set -e
stop_mockmx
asan_check "$T/run.err"
[ "$RC" -eq 0 ] || { tail "$T/run.err"; fail "greylisted job: exit $RC"; }
[ -n "$gone_at" ] || fail "never saw the job file leave"
[ "$gone_at" -eq "$N" ] || fail "the job file left new/ when only $gone_at of $N rows had a final line"
[ "$(finals "$T/acct.jsonl")" = "$(seq "$N")" ] || fail "want rows 1..$N one final line each"
[ "$(rows_logged delivered "$T/acct.jsonl" | count)" -eq "$N" ] || fail "not every row delivered"
# Each row: deferred k times (k >= 1: greylisted), then delivered at attempt k+1.
bad=$(jq -r 'select(.file=="kill9.job") | "\(.row) \(.result) \(.attempt)"' "$T/acct.jsonl" | awk '
	$2=="deferred" { d[$1]++ } $2=="delivered" { a[$1]=$3 }
	END { for (r in a) if (!(r in d) || a[r] != d[r] + 1) print r, d[r]+0, a[r] }' | head -3)
[ -z "$bad" ] || fail "rows whose delivered attempt is not 1 + their deferrals (row deferrals attempt): $bad"
multi=$(rows_logged deferred "$T/acct.jsonl" | uniq -d | count)
[ "$multi" -gt 0 ] || fail "no row deferred twice: --fail did not bite"
[ "$(rows_stored "$T/store")" = "$(seq "$N")" ] || fail "the server did not get rows 1..$N exactly once"
wait_gone 1 || fail "state/kill9.job left"
ok "$N rows deferred ($(rows_logged deferred "$T/acct.jsonl" | count) deferrals, $multi rows twice or more), retried and delivered once; job file left with the last final line"

# A domain always deferred, --max-time ends the run.
fresh
N=$((1000 / SCALE))
port=$(free_port)
start_mockmx "$port" --store "$T/store.1" --defer-rcpt "@k3.example"
newjob "$N"
mv "$T/sp/tmp/kill9.job" "$T/sp/new/kill9.job"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 0.3 --max-time 3 --log "$T/acct.1.jsonl"
stop_mockmx
[ "$RC" -eq 1 ] || { tail "$T/run.err"; fail "--max-time with rows deferred: exit $RC, want 1"; }
k3=$(seq "$N" | awk '$1 % 10 == 3')
rest=$(seq "$N" | awk '$1 % 10 != 3')
[ "$(finals "$T/acct.1.jsonl")" = "$rest" ] || fail "run 1: want a final line for each row not @k3 and none else"
[ "$(rows_logged deferred "$T/acct.1.jsonl" | uniq)" = "$k3" ] || fail "run 1: want every @k3 row deferred"
[ "$(rows_logged deferred "$T/acct.1.jsonl" | uniq -d | count)" -gt 0 ] || fail "run 1: no @k3 row retried within the run"
[ -f "$T/sp/new/kill9.job" ] || fail "job file not kept after --max-time"
[ -f "$T/sp/state/kill9.job" ] || fail "progress file not kept after --max-time"
[ "$(rows_marked "$T/sp/state/kill9.job")" = "$rest" ] || fail "progress marks are not exactly the final rows"
port=$(free_port)
start_mockmx "$port" --store "$T/store.2"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --retry-interval 0.3 --max-time 30 --log "$T/acct.2.jsonl"
stop_mockmx
[ "$RC" -eq 0 ] || { tail "$T/run.err"; fail "run 2: exit $RC"; }
[ "$(rows_stored "$T/store.2")" = "$k3" ] || fail "run 2 sent $(rows_stored "$T/store.2" | count) rows, want exactly the $(echo "$k3" | count) @k3 rows"
[ "$(rows_logged delivered "$T/acct.2.jsonl")" = "$k3" ] || fail "run 2: want one delivered line per @k3 row"
[ "$(jq -c 'select(.file=="kill9.job" and .attempt!=1)' "$T/acct.2.jsonl" | count)" -eq 0 ] || fail "run 2: attempt does not count from 1 again"
[ "$(finals "$T/acct.1.jsonl" "$T/acct.2.jsonl")" = "$(seq "$N")" ] || fail "over both runs, want rows 1..$N one final line each"
[ "$(rows_stored "$T/store.1" "$T/store.2")" = "$(seq "$N")" ] || fail "over both runs, the server did not get rows 1..$N exactly once"
wait_gone 1 || fail "job file or progress left after run 2"
ok "--max-time with $(echo "$k3" | count) rows deferred: exit 1, job and progress kept; next run sent only those, attempt 1"

# ---- 4. Disk full (last: without root it is skipped, and the test ends) -----
echo "-- 4. disk full"
fresh
small_tmpfs "$T/logfs" 4m
dd if=/dev/zero of="$T/logfs/filler" bs=64k 2>/dev/null || true   # fills it
N=6000   # not scaled: the rows in flight must stay well under N
port=$(free_port)
start_mockmx "$port" --store "$T/store"
start_daemon --spool "$T/sp" --route "*=127.0.0.1:$port" --log "$T/logfs/acct.jsonl" --shards 2
sleep 0.5
newjob "$N"
mv "$T/sp/tmp/kill9.job" "$T/sp/new/kill9.job"
for _ in $(seq 100); do grep -q "cannot write the accounting log" "$T/d.err" && break; sleep 0.05; done
grep -q "cannot write the accounting log: No space left on device" "$T/d.err" || fail "no clear message about the full disk"
# What was handed to the spool workers before the first failed write is
# still sent: wait until the count holds still for a second.
sent=-1
for _ in $(seq 10); do
	now=$(rows_stored "$T/store" | count)
	[ "$now" -eq "$sent" ] && break
	sent=$now
	sleep 1
done
[ "$now" -eq "$sent" ] || fail "rows went on being sent for 10 s while the log was full (now $now)"
[ "$sent" -gt 0 ] || fail "nothing was delivered"
# In flight: per shard a quarter of inflight-per-shard (1,024) handed to
# the shard, plus at most a feed batch (256) queued at its spool worker.
# (How many of those go before the first failed write is timing: outcomes
# of transactions carried by the other shard come back to their message's
# shard before the engine sees them.)
[ "$sent" -le $((2 * (1024 + 256))) ] || fail "$sent rows sent while the log was full: more than were in flight"
[ -f "$T/sp/new/kill9.job" ] || fail "the job file left new/ while the log was full"
[ -f "$T/sp/state/kill9.job" ] || fail "no progress file"
marked=$(rows_marked "$T/sp/state/kill9.job" | count)
[ "$marked" -eq 0 ] || fail "$marked rows marked done while their lines could not be written"
[ "$(rows_stored "$T/store" | uniq -d | count)" -eq 0 ] || fail "rows sent twice while the log was full"
ok "log full: $sent of $N rows sent, none marked done, no more taken, job file kept"
rm -f "$T/logfs/filler"
wait_gone 30 || { tail "$T/d.err"; fail "job not done 30 s after space returned"; }
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
asan_check "$T/d.err"
grep -q "resuming" "$T/d.err" || fail "no message on resuming"
cp "$T/logfs/acct.jsonl" "$T/acct.jsonl"
jq . "$T/acct.jsonl" >/dev/null || fail "accounting log is not valid JSON"
[ "$(finals "$T/acct.jsonl")" = "$(seq "$N")" ] ||
	fail "want rows 1..$N one final line each; got $(finals "$T/acct.jsonl" | count), rows twice: $(finals "$T/acct.jsonl" | uniq -d | head -5 | tr '\n' ' ')"
[ "$(rows_logged delivered "$T/acct.jsonl" | count)" -eq "$N" ] || fail "not every row delivered"
[ "$(rows_stored "$T/store" | uniq)" = "$(seq "$N")" ] || fail "rows never received: $(comm -13 <(rows_stored "$T/store" | sort -u) <(seq "$N" | sort) | head -5 | tr '\n' ' ')"
dups=$(rows_stored "$T/store" | uniq -d | count)
[ "$dups" -le "$sent" ] || fail "$dups rows sent twice, more than the $sent in flight while the log was full"
ok "space returned: rows 1..$N one final line each, none lost; $dups sent twice (<= $sent sent while full); job file and state gone"
