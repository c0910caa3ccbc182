# /metrics (Prometheus text): a daemon delivering through two source IPs
# to a mock MX that defers and refuses some recipients is scraped during
# its work and after it. Every scrape passes `promtool check metrics`
# (Debian's prometheus package); after the work, sluice_recipients_total
# by result, group and source equals the accounting log's counts line for
# line, and the other counters agree with the log and the spool. Other
# paths and methods are refused.
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
P=$(free_port)
M=$(free_port)
N=$((400 / SCALE))
start_mockmx "$P" --fail rcpt:451:0.05 --fail rcpt:550:0.05
"$SLUICE" spoolgen --spool sp --count "$N" --domains 5 >/dev/null
start_daemon --spool sp --route "*=127.0.0.1:$P" --source-ip 127.0.0.10 --source-ip 127.0.0.11 --shards 2 \
	--metrics "127.0.0.1:$M" --retry-interval 0.5 --bounce-after 3
cat >scrape.py <<'PY'
import sys, time, urllib.request, urllib.error
url, out = sys.argv[1], sys.argv[2]
method = sys.argv[3] if len(sys.argv) > 3 else 'GET'
end = time.time() + 20
while True:
    try:
        r = urllib.request.urlopen(urllib.request.Request(url, method=method, data=b'x' if method == 'POST' else None), timeout=10)
        open(out, 'wb').write(r.read())
        print(r.status, r.headers.get('Content-Type'))
        break
    except urllib.error.HTTPError as e:
        print(e.code)
        break
    except OSError:
        if time.time() > end:
            sys.exit('no answer from ' + url)
        time.sleep(0.1)
PY
# during the work
python3 scrape.py "http://127.0.0.1:$M/metrics" during.txt >during.status || fail "scrape: $(cat d.err)"
grep -q '^200 text/plain; version=0.0.4' during.status || fail "scrape during: $(cat during.status)"
timeout 30 promtool check metrics <during.txt >promtool.out 2>&1 || fail "promtool during the work: $(cat promtool.out)"
ok "scraped during the work: $(grep -c '^sluice_' during.txt) samples, promtool check metrics clean"

# after: every recipient final in the log
final=0
for _ in $(seq 600); do
	final=$(jq -s '[.[] | select(.result=="delivered" or .result=="bounced" or .result=="expired")] | length' acct.jsonl 2>/dev/null || echo 0)
	rcpts=$(jq -s '[.[] | select(.rcpt) | .rcpt] | unique | length' acct.jsonl 2>/dev/null || echo 0)
	[ "$final" -ge "$N" ] && [ "$(spool_files sp/new)" -eq 0 ] && break
	sleep 0.1
done
[ "$final" -ge "$N" ] || fail "not every recipient final after 60 s ($final of $N)"
sleep 0.3 # the last spool removals
python3 scrape.py "http://127.0.0.1:$M/metrics" after.txt >after.status || fail "scrape after"
timeout 30 promtool check metrics <after.txt >promtool.out 2>&1 || fail "promtool after the work: $(cat promtool.out)"
python3 - acct.jsonl after.txt "$N" <<'PY' || fail "metrics and the log disagree"
import collections, json, re, sys
log, text, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
want = collections.Counter()
for line in open(log):
    o = json.loads(line)
    if 'result' in o:
        want[(o['result'], o.get('group') or '', o.get('source') or '')] += 1
got = collections.Counter()
samples = {}
for line in open(text):
    m = re.match(r'sluice_recipients_total\{result="([^"]*)",group="([^"]*)",source="([^"]*)"\} (\d+)$', line)
    if m:
        got[(m[1], m[2], m[3])] = int(m[4])
    m = re.match(r'(sluice_[a-z_]+(?:\{[^}]*\})?) (\S+)$', line)
    if m:
        samples[m[1]] = float(m[2])
if got != want:
    sys.exit(f'recipients: metrics {dict(got)} log {dict(want)}')
results = {k[0] for k in got}
if not {'delivered', 'deferred', 'bounced'} <= results:
    sys.exit(f'not every kind of outcome seen: {results}')
if {k[2] for k in got} != {'127.0.0.10', '127.0.0.11'}:
    sys.exit(f'sources: {sorted({k[2] for k in got})}')
if samples['sluice_messages_final_total'] != n:
    sys.exit(f"messages final {samples['sluice_messages_final_total']} (want {n})")
finals = sum(v for k, v in got.items() if k[0] in ('delivered', 'bounced', 'expired'))
if samples['sluice_delivery_seconds_count'] != finals:
    sys.exit(f"delivery histogram count {samples['sluice_delivery_seconds_count']} != final recipients {finals}")
if samples['sluice_spool_claims_total'] < n or samples['sluice_messages_in_memory'] != 0:
    sys.exit(f"claims {samples['sluice_spool_claims_total']}, in memory {samples['sluice_messages_in_memory']}")
if samples['sluice_log_sync_seconds_count'] < 1:
    sys.exit('no log sync observed')
print(' '.join(f'{k[0]}/{k[2]}={v}' for k, v in sorted(got.items())))
PY
ok "after the work: sluice_recipients_total equals the log for every (result, group, source); messages final, delivery histogram, claims agree"
# A client that sends its request a byte every second holds the responder
# 5 s at most: a scrape behind it still gets its answer.
python3 - "$M" <<'PY' &
import socket, sys, time
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
end = time.time() + 12
try:
    for b in b'GET /metrics HTTP/1.1\r\nX-Slow: ' + b'a' * 100:
        if time.time() > end:
            break
        s.send(bytes([b]))
        time.sleep(1)
except OSError:
    pass
PY
SLOW=$!
sleep 0.5
t0=$(date +%s%N)
python3 scrape.py "http://127.0.0.1:$M/metrics" behind.txt >behind.status || fail "scrape behind a slow client"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(cut -d' ' -f1 behind.status)" = 200 ] && [ "$ms" -lt 9000 ] || fail "behind a slow client: $(cat behind.status) after $ms ms"
kill "$SLOW" 2>/dev/null || true
ok "a client dribbling its request is cut off: the scrape behind it answered in $ms ms"
python3 scrape.py "http://127.0.0.1:$M/other" x.txt >other.status
python3 scrape.py "http://127.0.0.1:$M/metrics" x.txt POST >post.status
[ "$(cat other.status)" = 404 ] && [ "$(cat post.status)" = 405 ] || fail "other path $(cat other.status), POST $(cat post.status)"
ok "/other: 404, POST /metrics: 405"
kill -TERM "$DAEMON"
rc=0
wait "$DAEMON" || rc=$?
[ "$rc" -eq 0 ] || fail "the daemon exited $rc after SIGTERM: $(tail -5 d.err)"
stop_mockmx
opened=$(sed -n 's/^sluice_connections_opened_total //p' after.txt)
[ "$opened" -ge 1 ] && [ "$opened" -le "$(mx_stat "$P" connections)" ] ||
	fail "connections opened: $opened by the metrics, $(mx_stat "$P" connections) accepted by the mock MX"
[ "$(sed -n 's/^sluice_connections_failed_total //p' after.txt)" = 0 ] || fail "connections failed: $(grep failed_total after.txt)"
ok "connections: $opened opened (the mock MX accepted $(mx_stat "$P" connections) by the end), none failed"
! grep -q "Sanitizer\|runtime error" d.err || { cat d.err; fail "sanitizer report"; }
