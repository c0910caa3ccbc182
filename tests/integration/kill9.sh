# kill -9 at random moments never loses a message: a drain into Postfix's
# smtp-sink is killed 20 times and restarted; at the end every recipient
# reached the sink at least once, the spool is empty, and the accounting
# log parses except for at most one torn line per kill. Duplicates are
# counted and reported (at least once, never lost: what was in flight at
# a kill may go twice).
source "$(dirname "$0")/../lib.sh"
set -e
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
N=$((50000 / SCALE)); KILLS=20
"$SLUICE" spoolgen --spool "$T/sp" --count "$N" --domains 20 --seed 5 >/dev/null
cp -r "$T/sp/new" "$T/orig"
mkdir -m 777 "$T/dump"
port=$(free_port)
timeout 300 "$SINK" -u nobody -d "$T/dump/%H%M%S." "127.0.0.1:$port" 256 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
for k in $(seq $KILLS); do
	# No timeout wrapper: the kill must reach sluice itself (--max-time bounds it).
	"$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 \
		--log "$T/acct.jsonl" --max-time 100 >/dev/null 2>>"$T/run.err" &
	pid=$!
	sleep "0.$(( (RANDOM % 5) + 1 ))"
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
done
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 120
[ "$RC" -eq 0 ] || { tail "$T/run.err"; fail "final run: exit $RC"; }
[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "spool not empty"
for _ in $(seq 50); do [ "$(ls "$T/dump" | wc -l)" -ge "$N" ] && break; sleep 0.1; done
# Every message of the spool reached the sink at least once.
python3 - "$T/orig" "$T/dump" <<'PY' || fail "a message was lost"
import os, re, sys
mid = lambda p: re.search(rb'^Message-ID: (<[^>]+>)', open(p, 'rb').read(), re.M | re.I).group(1)
want = {mid(os.path.join(sys.argv[1], f)) for f in os.listdir(sys.argv[1])}
got = {}
for f in os.listdir(sys.argv[2]):
    m = mid(os.path.join(sys.argv[2], f))
    got[m] = got.get(m, 0) + 1
lost = want - set(got)
dups = sum(c - 1 for c in got.values())
print(f'  {len(want)} messages, {len(lost)} lost, {dups} duplicates (in flight at a kill)')
sys.exit(1 if lost else 0)
PY
bad=$(python3 -c '
import json, sys
bad = 0
for line in open(sys.argv[1], "rb"):
    try: json.loads(line)
    except ValueError: bad += 1
print(bad)' "$T/acct.jsonl")
[ "$bad" -le "$KILLS" ] || fail "$bad unparseable log lines for $KILLS kills"
ok "$KILLS kill -9s: nothing lost, $bad torn log line(s)"

# A second sluice on the same spool is refused: it would take back the
# files the first one is delivering.
"$SLUICE" spoolgen --spool "$T/sp" --count 50 >/dev/null
port=$(free_port)
start_mockmx "$port" --slow 200
"$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --log "$T/a1.jsonl" --max-time 30 >/dev/null 2>&1 &
first=$!
sleep 0.3
set +e
out=$("$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --log "$T/a2.jsonl" --max-time 5 2>&1); rc=$?
set -e
wait "$first"
stop_mockmx
[ "$rc" -ne 0 ] && echo "$out" | grep -q "in use by another sluice" || fail "second sluice on one spool: rc $rc: $out"
[ ! -s "$T/a2.jsonl" ] || fail "the second sluice delivered something"
ok "a second sluice on the same spool is refused"
