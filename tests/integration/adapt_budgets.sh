# Adaptation, budgets: IP warm-up (a daily cap per source IP and MX
# group, following a plan) and campaign waves (at most N messages of a job
# per MX group per wave). Each holds exactly, across a restart and a
# SIGHUP; what cannot go waits in the spool.
# 1. Warm-up: 127.0.0.10 (plan [30]) and .11 (plan [50]) start today
#    (UTC); 200 messages to provider A and 100 to B: each pair sends
#    exactly its cap (30 + 50 to A, 30 + 50 to B), a "warmup-full" line
#    per pair (cap, until the next UTC midnight), the rest deferred
#    until then; a restart sends nothing more; a daemon with new mail and
#    a SIGHUP sends nothing more, until a SIGHUP raises .10's plan to [45]:
#    then exactly 15 more from .10 to each provider.
# 2. Preference: .10 capped at 10, .11 at 500: 100 messages all go, 10
#    from .10 and 90 from .11 (a full IP's mail goes from another of the
#    pool).
# 3. Waves: job "camp", 40 per wave every 5 s, from a pool weighted 3:1
#    (shares 30 and 10); 150 of the job and 30 without a job to A: the 30
#    go at once; in every 5 s window at most 40 of the job (30 from .10,
#    10 from .11); across a restart and a SIGHUP in the middle of a wave
#    too; all delivered once; the waiting ones out of memory.
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3
pa=$(free_port); start_mockmx "127.0.0.2:$pa"; A=$MX_PID
pb=$(free_port); start_mockmx "127.0.0.3:$pb"; B=$MX_PID
today=$(date -u +%Y-%m-%d)
conf() { # conf FILE PLAN10 PLAN11 [EXTRA]
	cat >"$1" <<EOF
pools = ( { name = "a"; ips = ( { ip = "127.0.0.10"; weight = 3; }, { ip = "127.0.0.11"; weight = 1; } ); } );
routes = ( { domain = "pa.test"; host = "127.0.0.2"; port = $pa; group = "prova"; },
           { domain = "pb.test"; host = "127.0.0.3"; port = $pb; group = "provb"; } );
shaping = { providers = ""; rules = ( { group = "*"; max-rate = "100/s"; max-connections = 2; } ); };
delivery = { retry-interval = 0.5; retry-max = 1; wait-in-spool = 1; };
warmup = { timezone = "UTC"; ips = ( { ip = "127.0.0.10"; start = "$today"; plan = [ $2 ]; },
                                     { ip = "127.0.0.11"; start = "$today"; plan = [ $3 ]; } ); };
tls = { policy = "none"; };
${4:-}
EOF
}
sent() { # sent SOURCE GROUP: delivered lines
	log_count ".result==\"delivered\" and .source==\"$1\" and .group==\"$2\""
}
counts() { echo "A: $(sent 127.0.0.10 prova)+$(sent 127.0.0.11 prova), B: $(sent 127.0.0.10 provb)+$(sent 127.0.0.11 provb)"; }

# ---- 1. warm-up caps ----
conf "$T/w.conf" 30 50
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:200:a pb.test:100:a >/dev/null
run_sluice -c "$T/w.conf" --spool "$T/sp" --shards 2 --max-time 5
[ "$RC" -eq 1 ] || fail "run 1: exit $RC, want 1 (mail left for tomorrow)"
[ "$(counts)" = "A: 30+50, B: 30+50" ] || fail "run 1: $(counts), want A: 30+50, B: 30+50"
midnight=$(date -u -d "tomorrow 00:00" +%Y-%m-%dT%H:%M:%S.000Z)
jq -e -s --arg m "$midnight" '[.[] | select(.event=="warmup-full")] | length == 4 and
	all(.until == $m and .job == null and ((.source=="127.0.0.10" and .cap==30) or (.source=="127.0.0.11" and .cap==50)))' \
	"$T/acct.jsonl" >/dev/null || fail "warmup-full lines: $(jq -c 'select(.event)' "$T/acct.jsonl")"
[ "$(log_count '.result=="deferred" and (.response|test("warm-up day toward prov[ab] is full for every IP of its pool, until"))')" -eq 140 ] ||
	fail "the 140 left were not deferred for the warm-up"
grep -q "^count	-	127.0.0.10	prova	[0-9]*	30	" "$T/sp/state/.adaptation" || fail "state: $(cat "$T/sp/state/.adaptation")"
ok "warm-up: each pair sent exactly its cap (A: 30+50, B: 30+50), 4 warmup-full lines until midnight UTC, 140 wait"
run_sluice -c "$T/w.conf" --spool "$T/sp" --shards 2 --max-time 3
[ "$(counts)" = "A: 30+50, B: 30+50" ] || fail "after a restart: $(counts)"
ok "a restart sends nothing more today"
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:10:a >/dev/null
start_daemon -c "$T/w.conf" --spool "$T/sp" --shards 2
sleep 1.5
kill -HUP "$DAEMON"
sleep 1.5
[ "$(counts)" = "A: 30+50, B: 30+50" ] || fail "daemon with new mail and a SIGHUP: $(counts)"
conf "$T/w.conf" 45 50
kill -HUP "$DAEMON"
for _ in $(seq 300); do [ "$(counts)" = "A: 45+50, B: 45+50" ] && break; sleep 0.1; done
sleep 1
kill -TERM "$DAEMON"
wait "$DAEMON" || true
[ "$(counts)" = "A: 45+50, B: 45+50" ] || fail "after raising .10's plan to 45: $(counts)"
ok "new mail and a SIGHUP: nothing more; a SIGHUP raising .10's cap to 45: exactly 15 more to each"

# ---- 2. a full IP's mail goes from another of the pool ----
rm -rf "$T/sp" "$T/acct.jsonl"
conf "$T/p.conf" 10 500
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:100:a >/dev/null
run_sluice -c "$T/p.conf" --spool "$T/sp" --shards 2 --max-time 30
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "preference: exit $RC"; }
check_log_final 100
[ "$(sent 127.0.0.10 prova)/$(sent 127.0.0.11 prova)" = "10/90" ] ||
	fail "preference: $(sent 127.0.0.10 prova) from .10, $(sent 127.0.0.11 prova) from .11, want 10/90"
ok "a full IP's mail went from the other IP of the pool: 10 + 90, all delivered"

# ---- 3. waves ----
rm -rf "$T/sp" "$T/acct.jsonl"
conf "$T/v.conf" 100000 100000 'waves = ( { job = "camp"; size = 40; every = "5s"; } );'
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:150:a:camp pa.test:30:a >/dev/null
# start just after a wave begins (waves start at multiples of 5 s since the epoch)
$PY -c 'import time; t = time.time() % 5; time.sleep((5 - t + 0.2) % 5)'
run_sluice -c "$T/v.conf" --spool "$T/sp" --shards 2 --max-time 1.5
[ "$(log_count '.result=="delivered" and .job=="camp"')" -eq 40 ] ||
	fail "first wave: $(log_count '.result=="delivered" and .job=="camp"') of the job, want 40"
[ "$(log_count '.result=="delivered" and .job==null')" -eq 30 ] || fail "the 30 without a job did not go at once"
start_daemon -c "$T/v.conf" --spool "$T/sp" --shards 2
sleep 5
kill -HUP "$DAEMON"
for _ in $(seq 500); do [ "$(log_count '.result=="delivered"')" -ge 180 ] && break; sleep 0.1; done
sleep 0.5
kill -TERM "$DAEMON"
wait "$DAEMON" || true
MX_PID=$A stop_mockmx
MX_PID=$B stop_mockmx
check_log_final 180
[ "$(log_count '.result=="delivered"')" -eq 180 ] || fail "waves: $(log_count '.result=="delivered"') of 180 delivered"
$PY - "$T/acct.jsonl" <<'EOF' || fail "a wave held more than its size (or a share more than its part)"
import collections, datetime, json, sys
t = lambda s: datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
waves = collections.Counter()
shares = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("result") == "delivered" and r.get("job") == "camp":
        w = int(t(r["ts"]) // 5)
        waves[w] += 1
        shares[(w, r["source"])] += 1
print("   per wave: %s" % [waves[w] for w in sorted(waves)])
assert len(waves) >= 4 and all(n <= 40 for n in waves.values()), waves
assert all(n <= (30 if s == "127.0.0.10" else 10) for (w, s), n in shares.items()), shares
EOF
[ "$(log_count '.result=="deferred" and (.response|test("wave toward prova is full for every IP of its pool"))')" -gt 0 ] ||
	fail "nothing waited for a wave"
[ "$(log_count '.event=="wave-full" and .job=="camp"')" -gt 0 ] || fail "no wave-full line"
ok "waves: at most 40 of the job per 5 s wave (30 + 10 by weight), across a restart and a SIGHUP; the rest at once"

# ---- 4. a wave without source IPs (one unbound pair) ----
# Its full wave cannot go from another IP: the rest waits (no loop).
rm -rf "$T/sp" "$T/acct.jsonl"
pa=$(free_port); start_mockmx "127.0.0.2:$pa"; A=$MX_PID
cat >"$T/u.conf" <<EOF2
routes = ( { domain = "pa.test"; host = "127.0.0.2"; port = $pa; group = "prova"; } );
shaping = { providers = ""; };
delivery = { retry-interval = 0.5; retry-max = 1; wait-in-spool = 1; };
waves = ( { job = "camp"; size = 10; every = "1h"; } );
tls = { policy = "none"; };
EOF2
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:50:-:camp >/dev/null
t0=$($PY -c 'import time; print(time.time())')
run_sluice -c "$T/u.conf" --spool "$T/sp" --shards 2 --max-time 3
took=$($PY -c "import time; print(round(time.time() - $t0, 2))")
MX_PID=$A stop_mockmx
[ "$(log_count '.result=="delivered"')" -eq 10 ] || fail "unbound wave: $(log_count '.result=="delivered"') delivered, want 10"
$PY -c "import sys; sys.exit($took >= 8)" || fail "unbound wave: the run took $took s (--max-time 3)"
[ "$(log_count '.result=="deferred" and (.response|test("wave toward prova is full"))')" -eq 40 ] ||
	fail "unbound wave: the 40 left were not deferred for the wave"
ok "a wave without source IPs: 10 sent, 40 wait, the run ends on time ($took s)"
