# Adaptation, suspensions: a blocklist answer suspends what it names, the
# rest goes on, the suspension survives a restart.
# 1. Provider A (mockmx) lists source IP 127.0.0.10 ("554 5.7.1 ...
#    blocked using zen.spamhaus.org" to every RCPT); provider B lists
#    nobody. sluice sends from 127.0.0.10 and .11 (one pool) to both, 20/s
#    per pair. A rule suspends the pair for 6 s on "spamhaus". Run 1 stops
#    after 3 s (--max-time), run 2 starts at once:
#    - one "suspend" line (source, group, scope pair, until = ts + 6 s,
#      rule, code, response); the refused recipients deferred, never
#      bounced; the state file (SPOOL/state/.adaptation) holds it;
#    - run 2 keeps it: A sees no attempt from .10 until its time is over
#      (then one more refusal, suspended again, after a "resume" line);
#    - meanwhile .11 to A and both IPs to B send every second at their
#      rate (the suspension stops one pair, nothing else).
# 2. scope = "source": a listing by provider C suspends 127.0.0.10 toward
#    every group (C and D), on whichever shards own those pairs; .11 goes
#    on to both; after the duration .10 sends to D again.
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3

# timeline MXJSON IP: "accepted/refused" per second of that source at that mockmx
timeline() { jq -r --arg ip "$2" '.sources[$ip] | [.per_second, .refused_per_second] | transpose |
	map("\(.[0])/\(.[1])") | join(" ")' "$1"; }

pa=$(free_port); start_mockmx "127.0.0.2:$pa" --blocklist 127.0.0.10; A=$MX_PID
pb=$(free_port); start_mockmx "127.0.0.3:$pb" --police-rate 1000; B=$MX_PID
cat >"$T/sus.conf" <<EOF
pools = ( { name = "a"; ips = ( { ip = "127.0.0.10"; }, { ip = "127.0.0.11"; } ); } );
routes = ( { domain = "pa.test"; host = "127.0.0.2"; port = $pa; group = "prova"; },
           { domain = "pb.test"; host = "127.0.0.3"; port = $pb; group = "provb"; } );
shaping = { providers = ""; rules = ( { group = "*"; max-rate = "20/s"; max-connections = 2; } ); };
delivery = { retry-interval = 0.5; retry-max = 1; };
adaptation = { rules = ( { name = "spamhaus-test"; text = "spamhaus"; action = "suspend"; duration = "6s"; } ); };
tls = { policy = "none"; };
EOF
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:300:a pb.test:300:a >/dev/null
run_sluice -c "$T/sus.conf" --spool "$T/sp" --shards 2 --max-time 3
cp "$T/sp/state/.adaptation" "$T/state1" 2>/dev/null || fail "run 1 saved no state"
run_sluice -c "$T/sus.conf" --spool "$T/sp" --shards 2 --max-time 8
MX_PID=$A stop_mockmx
MX_PID=$B stop_mockmx
sus=$(jq -c 'select(.event=="suspend")' "$T/acct.jsonl" | head -1)
echo "$sus" | jq -e '.source=="127.0.0.10" and .group=="prova" and .scope=="pair" and .rule=="spamhaus-test"
	and .code==554 and .enhanced=="5.7.1" and (.response|test("zen.spamhaus.org"))' >/dev/null ||
	fail "suspend line: $sus"
$PY - "$sus" <<'EOF' || fail "until is not ts + 6 s: $sus"
import datetime, json, sys
r = json.loads(sys.argv[1])
t = lambda s: datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
assert abs(t(r["until"]) - t(r["ts"]) - 6) < 0.05
EOF
grep -q "^suspend	pair	127.0.0.10	prova	[0-9]*	spamhaus-test$" "$T/state1" || fail "state: $(cat "$T/state1")"
[ "$(log_count '.result=="bounced"')" -eq 0 ] || fail "a blocklist answer bounced a recipient"
[ "$(log_count '.result=="deferred" and .code==554 and .source=="127.0.0.10"')" -gt 0 ] ||
	fail "the refused recipients were not deferred with the 554"
ok "suspend line (until = ts + 6 s), the 554s deferred not bounced, the state file holds it"
ta=$(timeline "$T/mx-127.0.0.2-$pa.json" 127.0.0.10)
echo "   A, from .10 (accepted/refused per second): $ta"
$PY - "$ta" <<'EOF' || fail "A saw .10 during its suspension, across the restart"
import sys
refused = [i for i, x in enumerate(sys.argv[1].split()) if x.split("/")[1] != "0"]
accepted = sum(int(x.split("/")[0]) for x in sys.argv[1].split())
assert accepted == 0, "a listed source got a message through"
assert len(refused) >= 2, "no second attempt after the suspension: %s" % refused
assert refused[1] - refused[0] >= 5, "tried again %d s after the first refusal" % (refused[1] - refused[0])
EOF
jq -s -e '[.[] | select(.event=="resume" or .event=="suspend") | .event] | .[0:3] == ["suspend","resume","suspend"]' \
	"$T/acct.jsonl" >/dev/null || fail "want suspend, resume, suspend: $(jq -c 'select(.event)|.event' "$T/acct.jsonl")"
ok "kept across the restart: no attempt from .10 to A until its time was over; then resume, refused, suspended again"
for mx in "127.0.0.2-$pa 127.0.0.11" "127.0.0.3-$pb 127.0.0.10" "127.0.0.3-$pb 127.0.0.11"; do
	set -- $mx
	tl=$(timeline "$T/mx-$1.json" "$2")
	$PY - "$tl" <<'EOF' || fail "$2 to $1 did not go on during the suspension: $tl"
import sys
acc = [int(x.split("/")[0]) for x in sys.argv[1].split()]
first = next(i for i, n in enumerate(acc) if n)
last = max(i for i, n in enumerate(acc) if n)
busy = acc[first + 1:last]         # whole seconds while it had mail
assert last - first >= 5 and all(n >= 10 for n in busy) and all(n <= 22 for n in acc), acc
EOF
done
ok "meanwhile .11 to A and both IPs to B sent every second at their rate"

# ---- 2. scope "source": one listing stops the IP toward every group ----
rm -rf "$T/sp" "$T/acct.jsonl"
pc=$(free_port); start_mockmx "127.0.0.4:$pc" --blocklist 127.0.0.10 --blocklist-at mail \
	--blocklist-text '550 5.7.1 %s is listed at rbl.test'; C=$MX_PID
pd=$(free_port); start_mockmx "127.0.0.5:$pd" --police-rate 1000; D=$MX_PID
sed -e "s/127.0.0.2\"; port = $pa; group = \"prova\"/127.0.0.4\"; port = $pc; group = \"provc\"/" \
	-e "s/127.0.0.3\"; port = $pb; group = \"provb\"/127.0.0.5\"; port = $pd; group = \"provd\"/" \
	-e 's/name = "spamhaus-test"; text = "spamhaus"; action = "suspend"; duration = "6s";/name = "rbl-test"; text = "rbl[.]test"; action = "suspend"; scope = "source"; duration = "4s";/' \
	"$T/sus.conf" >"$T/src.conf"
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:60:a pb.test:300:a >/dev/null
run_sluice -c "$T/src.conf" --spool "$T/sp" --shards 3 --max-time 9
MX_PID=$C stop_mockmx
MX_PID=$D stop_mockmx
jq -e -s '[.[] | select(.event=="suspend")][0] | .source=="127.0.0.10" and .group==null and .scope=="source"
	and .rule=="rbl-test"' "$T/acct.jsonl" >/dev/null || fail "source suspension: $(jq -c 'select(.event)' "$T/acct.jsonl")"
tc=$(timeline "$T/mx-127.0.0.4-$pc.json" 127.0.0.10)
echo "   C, from .10: $tc"
# the two mockmx count seconds from their own starts: the log's clock decides
$PY - "$T/acct.jsonl" <<'EOF' || fail ".10 sent to D while suspended everywhere, or .11 did not go on"
import datetime, json, sys
t = lambda s: datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
rows = [json.loads(l) for l in open(sys.argv[1])]
sus = next(r for r in rows if r.get("event") == "suspend")
t0, until = t(sus["ts"]), t(sus["until"])
d = lambda src: [t(r["ts"]) for r in rows if r.get("result") == "delivered" and r["group"] == "provd" and r["source"] == src]
inside = [round(x - t0, 2) for x in d("127.0.0.10") if t0 + 0.5 < x < until - 0.05]
after = [x - t0 for x in d("127.0.0.10") if x >= until - 0.05]
others = [x for x in d("127.0.0.11") if t0 < x < until]
print("   D from .10 during the suspension (s after it): %s; after it: %d; from .11 during it: %d"
      % (inside, len(after), len(others)))
assert not inside and after and len(others) >= 12 * 3
EOF
ok "scope source: .10 stopped toward C and D (other shards' pairs too), .11 went on, .10 resumed after 4 s"

# ---- 3. a long suspension waits in the spool, not in memory ----
# Provider A lists both IPs for 30 s; with 16 messages in flight per shard,
# its 300 would fill every lane and B's mail would wait behind them. They
# wait in the spool instead (delivery.wait-in-spool = 3 s): B's 300 go.
rm -rf "$T/sp" "$T/acct.jsonl"
pa=$(free_port); start_mockmx "127.0.0.2:$pa" --blocklist 127.0.0.10,127.0.0.11; A=$MX_PID
pb=$(free_port); start_mockmx "127.0.0.3:$pb"; B=$MX_PID
sed -e "s/port = [0-9]*; group = \"prova\"/port = $pa; group = \"prova\"/" \
	-e "s/port = [0-9]*; group = \"provb\"/port = $pb; group = \"provb\"/" \
	-e 's/duration = "6s"/duration = "30s"/' \
	-e 's/retry-max = 1; }/retry-max = 1; wait-in-spool = 3; inflight-per-shard = 16; }/' \
	-e 's/max-rate = "20\/s"/max-rate = "100\/s"/' "$T/sus.conf" >"$T/hol.conf"
grep -q "wait-in-spool = 3" "$T/hol.conf" || fail "hol.conf: $(cat "$T/hol.conf")"
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:300:a pb.test:300:a >/dev/null
( for _ in $(seq 80); do ls "$T/sp/active" 2>/dev/null | wc -l; sleep 0.1; done >"$T/active.count" ) &
WATCH=$!
run_sluice -c "$T/hol.conf" --spool "$T/sp" --shards 2 --max-time 8
wait $WATCH
MX_PID=$A stop_mockmx
MX_PID=$B stop_mockmx
[ "$(log_count '.result=="delivered" and .group=="provb"')" -eq 300 ] ||
	fail "B's mail waited behind A's: $(log_count '.result=="delivered"') delivered"
[ "$(log_count '.result=="deferred" and (.response|test("toward prova is suspended until .* \\(rule spamhaus-test\\)"))')" -ge 298 ] ||
	fail "A's queue was not deferred for the suspension"
[ "$(sort -n "$T/active.count" | tail -1)" -eq 300 ] || fail "A's 300 were not all in active/: $(sort -n "$T/active.count" | tail -1)"
grep -q "not final         300" "$T/run.out" || fail "summary: $(cat "$T/run.out")"
[ "$(spool_files "$T/sp/new")" -eq 300 ] || fail "A's files are not back in new/ after the run"
ok "a 30 s suspension: its 300 messages waited in active/, out of memory; 16 in flight per shard, B's 300 went"

# ---- 4. ... and come back when it ends ----
# A polices 50/s (TSS04 above it) and a rule suspends the pair 2 s on
# TSS04: sent at 100/s, mail goes in bursts between suspensions, each
# time out of memory and back; everything delivered exactly once.
rm -rf "$T/sp" "$T/acct.jsonl"
pa=$(free_port); start_mockmx "127.0.0.2:$pa" --police-rate 50; A=$MX_PID
sed -e "s/port = [0-9]*; group = \"prova\"/port = $pa; group = \"prova\"/" \
	-e 's/name = "spamhaus-test"; text = "spamhaus"; action = "suspend"; duration = "30s";/name = "tss04"; text = "TSS04"; action = "suspend"; duration = "2s";/' \
	-e 's/wait-in-spool = 3;/wait-in-spool = 1;/' "$T/hol.conf" >"$T/back.conf"
$PY "$HERE/shaping_spool.py" "$T/sp" pa.test:400:a >/dev/null
run_sluice -c "$T/back.conf" --spool "$T/sp" --shards 2 --max-time 120
MX_PID=$A stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "exit $RC"; }
check_log_final 400
[ "$(log_count '.result=="delivered"')" -eq 400 ] || fail "not all 400 delivered"
[ "$(log_count '.event=="suspend"')" -ge 2 ] || fail "fewer than two suspensions"
[ "$(log_count '.event=="resume"')" -ge 1 ] || fail "no resume"
[ "$(log_count '.result=="deferred" and (.response|test("is suspended until"))')" -ge 1 ] ||
	fail "nothing waited for a suspension"
ok "suspended $(log_count '.event=="suspend"') times, waited in the spool, 400 delivered exactly once"
