# Adaptation, slow-downs (AIMD): a provider (mockmx --police-rate 40)
# answers "421 4.7.0 [TSS04]" to every message above 40 a second from one
# source IP, a rate sluice is not told: it is configured for 200/s, with a
# rule of its own (tried before the shipped file's suspend) that slows the
# pair down on TSS04. Asserted:
#   - every recipient delivered exactly once, nothing left, exit 0; the
#     refused ones deferred (the connection closes after a 421: what was
#     pipelined behind it is deferred as lost), never bounced;
#   - "slow" events in the log (rule, code, response, rate < rate_before),
#     and steps back up ("speedup");
#   - within 10 s of the first slow-down the pair's rate is below the
#     hidden 40/s (converged);
#   - from then on, the delivered rate is at least 70% of the hidden rate;
#   - the run summary counts the slow-downs;
#   - clean replies and other refusals are left alone: a second provider
#     that greylists (451 4.7.1) each address once is never slowed down.
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3
HIDDEN=40
pa=$(free_port); start_mockmx "127.0.0.2:$pa" --police-rate $HIDDEN; A=$MX_PID
pb=$(free_port); start_mockmx "127.0.0.3:$pb" --greylist; B=$MX_PID
cat >"$T/slow.conf" <<EOF
pools = ( { name = "a"; ips = ( { ip = "127.0.0.10"; } ); } );
routes = ( { domain = "p1.test"; host = "127.0.0.2"; port = $pa; group = "yahoo"; },
           { domain = "p2.test"; host = "127.0.0.3"; port = $pb; group = "grey"; } );
shaping = { providers = ""; rules = ( { group = "*"; max-rate = "200/s"; max-connections = 4; } ); };
delivery = { retry-interval = 0.5; retry-max = 1; };
adaptation = { slow-factor = 0.7; increase = 0.05; increase-every = 1; holdoff = 1;
  rules = ( { name = "tss04-slow"; code = "421"; text = "\\\\[TSS04\\\\]"; action = "slow"; } ); };
tls = { policy = "none"; };
EOF
total=$($PY "$HERE/shaping_spool.py" "$T/sp" p1.test:1600:a p2.test:100:a)
run_sluice -c "$T/slow.conf" --spool "$T/sp" --shards 2 --max-time 150
MX_PID=$A stop_mockmx
MX_PID=$B stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.err" "$T/run.out"; fail "exit $RC"; }
check_log_final "$total"
[ "$(log_count '.result=="delivered"')" -eq "$total" ] || fail "not all $total delivered"
[ "$(spool_files "$T/sp/new")" -eq 0 ] || fail "spool not empty"
[ "$(log_count '.result=="bounced"')" -eq 0 ] || fail "a 421 was bounced"
[ "$(log_count '.result=="deferred"')" -gt 0 ] || fail "nothing deferred: the provider never refused"
ok "$total recipients delivered once, the 421s deferred"
jq -e -s '[.[] | select(.event=="slow")] | length > 0 and all(.source=="127.0.0.10" and .group=="yahoo" and
	.rule=="tss04-slow" and .code==421 and (.response|test("TSS04")) and .rate < .rate_before)' \
	"$T/acct.jsonl" >/dev/null || fail "slow events missing or wrong"
[ "$(log_count '.event=="speedup"')" -gt 0 ] || fail "no step back up"
[ "$(log_count '.event and .group=="grey"')" -eq 0 ] || fail "the greylisting provider was slowed down"
grep -q "adaptation .*[1-9][0-9]* slow-downs" "$T/run.out" || fail "summary: $(cat "$T/run.out")"
ok "slow and speedup events (rule, code, response, rates), none for greylisting, counted in the summary"
$PY - "$T/acct.jsonl" $HIDDEN <<'EOF' || fail "did not converge, or kept less than 70% of the hidden rate"
import datetime, json, sys
def ts(s):
    return datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
hidden = float(sys.argv[2])
ev, dl = [], []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") in ("slow", "speedup", "restore") and r.get("group") == "yahoo":
        ev.append((ts(r["ts"]), r["event"], r["rate"]))
    elif r.get("result") == "delivered" and r.get("group") == "yahoo":
        dl.append(ts(r["ts"]))
ev.sort(); dl.sort()
first = next(t for t, e, _ in ev if e == "slow")
conv = next((t for t, e, rate in ev if e == "slow" and rate < hidden), None)
assert conv is not None and conv - first <= 10, "rate not below %g/s within 10 s of the first slow-down" % hidden
after = [t for t in dl if t >= conv]
got = (len(after) - 1) / (after[-1] - after[0])
print("   converged %.1f s after the first slow-down; then %d delivered at %.1f/s = %.0f%% of the hidden %g/s"
      % (conv - first, len(after), got, 100 * got / hidden, hidden))
rates = [rate for t, e, rate in ev if t >= conv]
print("   the pair's rate after: %.1f..%.1f/s over %d steps" % (min(rates), max(rates), len(rates)))
assert len(after) > 200 and got >= 0.7 * hidden
EOF
ok "converged below the hidden rate within 10 s, then kept at least 70% of it"

# A 421 at the greeting matching a shipped slow rule ("Too many concurrent
# connections"), with no connection working: a failed connection (back-off),
# not a storm of reconnections.
rm -rf "$T/sp" "$T/acct.jsonl"
pc=$(free_port)
start_mockmx "127.0.0.2:$pc" --blocklist 127.0.0.10 --blocklist-at banner \
	--blocklist-text '421 4.7.0 Too many concurrent connections from %s'
"$SLUICE" spoolgen --spool "$T/sp" --count 20 >/dev/null
run_sluice --spool "$T/sp" --route "*=127.0.0.2:$pc" --source-ip 127.0.0.10 --shards 1 --max-time 4 --tls none
stop_mockmx
conns=$(jq -r '.connections' "$T/mx-127.0.0.2-$pc.json")
[ "$conns" -lt 30 ] || fail "greeting 421: $conns connections in 4 s"
[ "$(spool_files "$T/sp/new")" -eq 20 ] || fail "greeting 421: the 20 messages are not all kept"
ok "a shipped slow rule at the greeting with no connection working: $conns connections in 4 s, all kept"
