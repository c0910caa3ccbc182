# Job files survive kill -9: a job of 20,000 rows (20,000 / SCALE) goes to
# mockmx --slow 20 --store (20 x SCALE: each reply batch held 20 ms, so a
# drain takes about 20 s at any SCALE); `sluice run --drain` is killed with SIGKILL 20 times at
# random moments (0.10-0.99 s after its start) and started again, then a
# last drain finishes the job. Each run k has its own accounting log
# (acct.k.jsonl) and its own mockmx store (store.k, a fresh mockmx), so the
# test knows what was logged and what was received in each run.
# Asserts (README "Job files", Progress): a row whose final line was
# written is not sent again, i.e. no row with a (complete) delivered line
# in run k's log reaches the server in a run after k, but for the one
# window a kill has: the rows of the last batch written to a killed run's
# log before its progress write (they must be exactly the last final lines
# of that log); every row has exactly one complete final line over all the
# logs, those rows aside, "delivered"; every
# row reached the server at least once, byte for byte as the independent
# renderer (tests/job_render.py) says, the Message-ID token the same in
# every run (duplicates of rows in flight at a kill are allowed and
# counted); the logs parse except at most one torn last line per kill;
# the job file is gone from SPOOL/new, SPOOL/active and SPOOL/state are
# empty; the kills did hit the job in the middle (final lines in at least
# three runs).
source "$(dirname "$0")/../lib.sh"
set -e
N=$((20000 / SCALE)); KILLS=20
python3 "$HERE/job_cases.py" kill9 "$T/sp" kill9.job "$N" >/dev/null
for k in $(seq 0 $KILLS); do
	port=$(free_port)
	start_mockmx "$port" --slow $((20 * SCALE)) --store "$T/store.$k"
	if [ "$k" -lt "$KILLS" ]; then
		# No timeout wrapper: the kill must reach sluice itself (--max-time bounds it).
		"$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 \
			--log "$T/acct.$k.jsonl" --max-time 60 >/dev/null 2>>"$T/run.err" &
		pid=$!
		sleep "0.$(( (RANDOM % 9) + 1 ))$(( RANDOM % 10 ))"
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	else
		set +e
		timeout 120 "$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 \
			--log "$T/acct.$k.jsonl" --max-time 100 >/dev/null 2>>"$T/run.err"
		RC=$?
		set -e
		[ "$RC" -eq 0 ] || { tail "$T/run.err"; fail "final run: exit $RC"; }
	fi
	stop_mockmx
	touch "$T/acct.$k.jsonl"
done
! grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/run.err" || { grep -m5 "Sanitizer\|runtime error" "$T/run.err"; fail "sanitizer report"; }

python3 - "$T" "$KILLS" "$N" "$HERE/job_render.py" <<'PY' || fail "see above"
import json, os, subprocess, sys
T, kills, n, render = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
final = {}          # row -> [runs with a complete final line]
order = {}          # run -> its job rows' complete final lines, in log order
torn = 0
for k in range(kills + 1):
    data = open(f'{T}/acct.{k}.jsonl', 'rb').read()
    lines = data.split(b'\n')
    if lines[-1]:
        torn += 1   # a last line without its newline: cut by the kill
    for l in lines[:-1]:
        try:
            o = json.loads(l)
        except ValueError:
            torn += 1
            continue
        if o.get('file') != 'kill9.job':
            continue
        if o['result'] in ('delivered', 'bounced', 'expired'):
            final.setdefault(o['row'], []).append((k, o['result']))
            order.setdefault(k, []).append(o['row'])
received = {}       # row -> [runs in which the server got it]
for k in range(kills + 1):
    out = subprocess.run([sys.executable, render, '--rows', f'{T}/store.{k}'], check=True,
                         capture_output=True, text=True).stdout.split()
    for r in out:
        received.setdefault(int(r), []).append(k)
errors = []
if torn > kills:
    errors.append(f'{torn} torn or unparseable log lines for {kills} kills')
resent = []
for r, v in final.items():
    k = min(run for run, _ in v)
    later = [j for j in received.get(r, []) if j > k]
    if later:
        resent.append((r, k, later))
# The one window a kill -9 has (README, Job files, Progress): after the
# write of the log's last batch and before the progress write that follows
# it (or inside that write, when the kill cuts it). The rows of that batch
# are sent again and get a second final line; they are the last final lines
# of the killed run's log, all of them. Any other row sent again after its
# line means progress was not kept.
window = set()
for k in range(kills):
    rk = {r for r, run, _ in resent if run == k}
    tail = set(order.get(k, [])[-len(rk):]) if rk else set()
    if rk and rk == tail:
        window |= rk
resent = [x for x in resent if x[0] not in window]
more = {r: v for r, v in final.items() if len(v) > 1 and r not in window}
if more:
    errors.append(f'{len(more)} rows with more than one final line, e.g. '
                  f'{sorted(more.items())[:3]} (row: [(run, result)])')
notdel = {r: v for r, v in final.items() if any(res != 'delivered' for _, res in v)}
if notdel:
    errors.append(f'{len(notdel)} rows not delivered, e.g. {sorted(notdel.items())[:3]}')
nofinal = sorted(set(range(1, n + 1)) - set(final))
if nofinal:
    errors.append(f'{len(nofinal)} rows without a final line, e.g. {nofinal[:10]}')
lost = sorted(set(range(1, n + 1)) - set(received))
if lost:
    errors.append(f'{len(lost)} rows never reached the server, e.g. {lost[:10]}')
if resent:
    errors.append(f'{len(resent)} rows sent again after their final line was written, e.g. '
                  f'{sorted(resent)[:5]} (row, run of the final line, later runs that sent it)')
early = {}
for v in final.values():
    early[v[0][0]] = early.get(v[0][0], 0) + 1
dups = sum(len(v) - 1 for v in received.values())
print(f'  {n} rows, {len(received)} received, {dups} duplicates (in flight at a kill), '
      f'{len(window)} of them in the last log batch before a kill, '
      f'{torn} torn log lines; final lines per run: '
      + ' '.join(f'{k}:{early.get(k, 0)}' for k in range(kills + 1)))
if sum(1 for k in range(kills + 1) if early.get(k)) < 3:
    errors.append('the kills did not hit the job in the middle (final lines in fewer than 3 '
                  'runs): retune the timing')
for e in errors:
    print('  ' + e)
sys.exit(1 if errors else 0)
PY
ok "$KILLS kill -9s: each row has one final line but those of a killed run's last log batch, none sent after it but those, none lost"
stores=(); for k in $(seq 0 $KILLS); do stores+=("$T/store.$k"); done
python3 "$HERE/job_render.py" --compare --allow-dups "$T/kill9.job" "${stores[@]}" >"$T/cmp" \
	|| { cat "$T/cmp"; fail "received messages differ from the renderer's"; }
ok "byte-exact over all runs, one token: $(cat "$T/cmp")"
[ ! -e "$T/sp/new/kill9.job" ] || fail "the job file is still in SPOOL/new"
[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "spool not empty"
[ "$(spool_files "$T/sp/state")" -eq 0 ] || fail "SPOOL/state not empty: $(ls "$T/sp/state")"
ok "job file gone, SPOOL/state empty"
