#!/usr/bin/env bash
# bench/demo.sh - `make demo`: the main job on embedded defaults. Starts a
# mock MX on loopback, generates a spool, drains it through sluice and
# prints what happened; then sluice adapting to a provider that refuses
# above a rate it is not told. No DNS, nothing leaves 127.0.0.1, bounded
# in time.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE=$PWD/sluice
N=${DEMO_N:-20000}
J=${DEMO_JOB:-20000}
W=$(mktemp -d /tmp/sluice-demo.XXXXXX)
MX=""
cleanup() { set +e; [ -n "$MX" ] && kill "$MX" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "== 1. a mock MX on 127.0.0.1:$PORT that offers STARTTLS (a self-signed certificate made now),"
echo "      defers 2% of recipients (451) and rejects 0.5% (550)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=mx.demo.example \
	-keyout "$W/mx.key" -out "$W/mx.pem" 2>/dev/null
timeout 300 "$SLUICE" mockmx --listen "127.0.0.1:$PORT" --fail rcpt:451:0.02 --fail rcpt:550:0.005 \
	--tls-cert "$W/mx.pem" --tls-key "$W/mx.key" --store "$W/store" --max-time 290 >"$W/mx.json" 2>"$W/mx.err" &
MX=$!
for _ in $(seq 100); do grep -q listening "$W/mx.err" 2>/dev/null && break; sleep 0.05; done

echo "== 2. a spool of $N messages (3 KB, 50 domains), written tmp/ -> new/"
"$SLUICE" spoolgen --spool "$W/spool" --count "$N" --size 3000 --domains 50
sed -n '1,6p' "$W/spool/new/$(ls "$W/spool/new" | head -1)" | sed 's/^/     | /'

echo "== 2b. a job file: one template and a CSV of $J recipients, rendered by sluice per row"
"$SLUICE" spoolgen --spool "$W/spool" --job "$J" --size 3000 --domains 50 --seed 2
sed -n '1,8p' "$W/spool/new/g2.job" | cut -c1-100 | sed 's/^/     | /'
echo "     | ... (the template, then the recipients:)"
grep -m1 -A3 '^email,' "$W/spool/new/g2.job" | sed 's/^/     | /'

echo "== 3. a DKIM key for sender.example (the spool's From: domain)"
"$SLUICE" dkim keygen --domain sender.example --selector demo --out "$W/demo.key" >"$W/keygen.txt"
cut -c1-110 "$W/keygen.txt" | sed 's/^/     /; s/$/.../' 

echo "== 4. sluice run --drain --route '*=127.0.0.1:$PORT' --source-ip 127.0.0.10 --source-ip 127.0.0.11"
echo "        --max-rate 20000/s --retry-interval 1 --dkim sender.example:demo:KEY"
echo "     (two source IPs on loopback, a pool: each (source IP, MX group) pair has its own"
echo "      limits and lives on one shard)"
"$SLUICE" run --drain --spool "$W/spool" --route "*=127.0.0.1:$PORT" --log "$W/acct.jsonl" \
	--source-ip 127.0.0.10 --source-ip 127.0.0.11 --max-rate 20000/s \
	--retry-interval 1 --max-time 120 --dkim "sender.example:demo:$W/demo.key"

echo "== 5. the accounting log ($W/acct.jsonl): one JSON line per recipient per attempt"
jq -r '.result' "$W/acct.jsonl" | sort | uniq -c | sed 's/^/     /'
echo "     by source IP (the pool's two addresses, in turn):"
jq -r 'select(.result=="delivered") | .source' "$W/acct.jsonl" | sort | uniq -c | sed 's/^/     /'
echo "     over TLS (STARTTLS, opportunistic: the default):"
jq -r '.tls // "plaintext"' "$W/acct.jsonl" | sort | uniq -c | sed 's/^/     /'
echo "     a bounce:"
jq -c -n 'first(inputs | select(.result=="bounced"))' "$W/acct.jsonl" | sed 's/^/     /'
echo "     a job file's row:"
jq -c -n 'first(inputs | select(.row != null and .result=="delivered")) | {id,file,job,row,rcpt,result,dkim}' \
	"$W/acct.jsonl" | sed 's/^/     /'
echo "     a deferral and its later delivery:"
id=$(jq -r -n 'first(inputs | select(.result=="deferred")) | .id' "$W/acct.jsonl")
jq -c --arg id "$id" 'select(.id==$id) | {ts,result,code,response,attempt}' "$W/acct.jsonl" | sed 's/^/     /'

kill -TERM "$MX"; wait "$MX" 2>/dev/null || true; MX=""
echo "== 6. what the mock MX counted"
sed 's/^/     /' "$W/mx.json"
echo "== 7. captured messages checked by python3-dkim, an independent verifier: a spool file's, a job row's"
rec=$(grep -o '"[^"]*"' "$W/keygen.txt" | tr -d '"\n')   # the TXT record, as DNS would serve it
/usr/bin/python3 - "$W/store" "$rec" <<'PY' | sed 's/^/     /'
import os, re, sys
import dkim
store, record = sys.argv[1], sys.argv[2].encode()
shown = set()
for f in sorted(os.listdir(store)):
    data = re.sub(rb'\A(?:X-(?:Sender|Receiver):[^\n]*\n)+', b'', open(os.path.join(store, f), 'rb').read())
    kind = 'job row' if re.search(rb'\r\nMessage-ID: <\d+\.[0-9a-f]{16}@', data) else 'spool file'
    if kind in shown:
        continue
    shown.add(kind)
    print(kind + ':', data.split(b'\r\n\r\n')[0].decode(errors='replace').split('\r\nFrom:')[0][:300])
    print('verify:', dkim.verify(data, dnsfunc=lambda name, timeout=5: record))
    if len(shown) == 2:
        break
PY
left=$(find "$W/spool/new" "$W/spool/active" -type f | wc -l)
echo "== spool after the run: $left file(s) left (every message reached a final state)"

# Adaptation: a provider that answers 421 [TSS04] above 100 messages a
# second from one IP, which sluice is not told (it may send 500/s); the
# shipped rule for TSS04 suspends (it is Yahoo's), so a rule of this run's
# own slows the pair down instead: sluice finds the provider's pace.
APORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SLUICE" mockmx --listen "127.0.0.1:$APORT" --police-rate 100 --max-time 60 --stats "$W/amx.json" \
	>/dev/null 2>"$W/amx.err" &
MX=$!
for _ in $(seq 100); do grep -q listening "$W/amx.err" 2>/dev/null && break; sleep 0.05; done
"$SLUICE" spoolgen --spool "$W/aspool" --count 1200 --domains 5 >/dev/null
cat >"$W/adapt.conf" <<'CONF'
adaptation: { slow-factor = 0.7; increase = 0.05; increase-every = 1; holdoff = 1;
  rules = ( { name = "tss04-slow"; code = "421"; text = "\\[TSS04\\]"; action = "slow"; } ); };
delivery: { retry-interval = 0.5; retry-max = 1; };
CONF
echo "== 8. adaptation: a provider answering 421 [TSS04] above 100 msgs/s per source IP (sluice is not"
echo "      told; it may send 500/s) and a reply rule that slows the pair down on TSS04 (AIMD)"
"$SLUICE" run -c "$W/adapt.conf" --drain --spool "$W/aspool" --route "*=127.0.0.1:$APORT" --log "$W/aacct.jsonl" \
	--source-ip 127.0.0.10 --max-rate 500/s --tls none --max-time 60 | grep -E "delivered|adaptation|drain" | sed 's/^/     /'
kill -TERM "$MX"; wait "$MX" 2>/dev/null || true; MX=""
echo "     the pair's rate, from the log's event lines (messages/s):"
jq -r 'select(.event) | "\(.event) \(.rate|floor)"' "$W/aacct.jsonl" | head -12 | paste -sd' ' | fold -s -w 90 | sed 's/^/     /'
echo "     one of them:"
jq -c -n 'first(inputs | select(.event=="slow"))' "$W/aacct.jsonl" | cut -c1-300 | sed 's/^/     /'
echo "     accepted by the provider per second: $(jq -c '.sources["127.0.0.10"].per_second' "$W/amx.json")"

echo "== 9. sluice doctor: is sender.example's DNS coherent with the key and the IPs just used?"
echo "      (NSD, a real DNS server, serves a zone on 127.0.0.1 with three mistakes in it:"
echo "       127.0.0.11 left out of SPF and without PTR, and a DMARC record without rua=)"
if command -v nsd >/dev/null; then
	NSDPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$W/nsd"
	{ printf '$ORIGIN sender.example.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n'
	  printf '@ TXT "v=spf1 ip4:127.0.0.10 -all"\n@ MX 10 mx\nmx A 127.0.0.1\nmta1 A 127.0.0.10\n'
	  printf '_dmarc TXT "v=DMARC1; p=quarantine"\n'
	  printf 'demo._domainkey TXT %s\n' "$(grep -o '"[^"]*"' "$W/keygen.txt" | tr '\n' ' ')"; } >"$W/nsd/sender.zone"
	printf '$ORIGIN 0.0.127.in-addr.arpa.\n$TTL 300\n@ SOA ns.sender.example. h.sender.example. 1 3600 600 86400 60\n@ NS ns.sender.example.\n10 PTR mta1.sender.example.\n' >"$W/nsd/rev.zone"
	cat >"$W/nsd/nsd.conf" <<NSD
server:
  ip-address: 127.0.0.1@$NSDPORT
  username: ""
  chroot: ""
  database: ""
  zonesdir: "$W/nsd"
  pidfile: "$W/nsd/pid"
  zonelistfile: "$W/nsd/zone.list"
  xfrdfile: "$W/nsd/xfrd.state"
  xfrdir: "$W/nsd"
  logfile: "$W/nsd/log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: sender.example
  zonefile: "sender.zone"
zone:
  name: 0.0.127.in-addr.arpa
  zonefile: "rev.zone"
NSD
	timeout 60 nsd -d -c "$W/nsd/nsd.conf" >/dev/null 2>&1 &
	NSDPID=$!
	for _ in $(seq 100); do grep -q "nsd started" "$W/nsd/log" 2>/dev/null && break; sleep 0.05; done
	echo "     sluice doctor --domain sender.example --selector demo --dkim-key KEY --source-ip 127.0.0.10"
	echo "                   --source-ip 127.0.0.11 --helo mta1.sender.example --dns-server 127.0.0.1:$NSDPORT"
	"$SLUICE" doctor --domain sender.example --selector demo --dkim-key "$W/demo.key" --source-ip 127.0.0.10 \
		--source-ip 127.0.0.11 --helo mta1.sender.example --dns-server "127.0.0.1:$NSDPORT" --timeout 2 |
		cut -c1-160 | sed 's/^/     /' || true
	kill "$NSDPID" 2>/dev/null; wait "$NSDPID" 2>/dev/null || true
else
	echo "     (nsd is not installed: skipped)"
fi
