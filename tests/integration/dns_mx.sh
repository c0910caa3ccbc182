# DNS: recipients' MX hosts found through NSD (a real authoritative server)
# on 127.0.0.1, mockmx on 127.0.0.2-6 playing the MX hosts. Preferences,
# failover to the next MX within the attempt, equal preferences sharing
# the load, null MX, NXDOMAIN, an MX host without address (no fallback to
# the domain's A), no MX but an A, an answer too big for UDP (TCP), MX
# groups in the log, one query for thousands of messages to one domain,
# a server that never answers (the next one is asked; alone: deferral).
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
P=$(free_port)
{ cat <<'Z'
$ORIGIN sluice.test.
$TTL 300
@ SOA ns.sluice.test. hostmaster.sluice.test. 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
multi MX 10 mx1.multi
multi MX 20 mx2.multi
mx1.multi A 127.0.0.2
mx2.multi A 127.0.0.3
failover MX 10 dead.failover
failover MX 20 live.failover
dead.failover A 127.0.0.9
live.failover A 127.0.0.3
equal MX 10 a.equal
equal MX 10 b.equal
a.equal A 127.0.0.2
b.equal A 127.0.0.3
nullmx MX 0 .
noaddr MX 10 ghost.noaddr
noaddr A 127.0.0.2
implicit A 127.0.0.4
gm MX 5 gmail-smtp-in.l.google.com.
gm MX 10 alt1.gmail-smtp-in.l.google.com.
Z
  for i in $(seq -w 0 39); do
	echo "big MX 10 host-$i-$(printf 'x%.0s' $(seq 50)).big"
	echo "host-$i-$(printf 'x%.0s' $(seq 50)).big A 127.0.0.5"
  done; } >sluice.test.zone
cat >google.com.zone <<'Z'
$ORIGIN google.com.
$TTL 300
@ SOA ns.sluice.test. hostmaster.sluice.test. 1 3600 600 86400 60
@ NS ns.sluice.test.
gmail-smtp-in.l A 127.0.0.6
alt1.gmail-smtp-in.l A 127.0.0.6
Z
cat >example.zone <<'Z'
$ORIGIN example.
$TTL 300
@ SOA ns.sluice.test. hostmaster.sluice.test. 1 3600 600 86400 60
@ NS ns.sluice.test.
d0 MX 10 mx.d0
mx.d0 A 127.0.0.2
Z
start_nsd sluice.test sluice.test.zone google.com google.com.zone example example.zone
DNS=127.0.0.1:$NSD_PORT
for a in 2 3 4 5 6; do start_mockmx 127.0.0.$a:$P; done

# `sluice resolve` (the shards' resolver): the big answer comes over TCP.
"$SLUICE" resolve --dns-server "$DNS" --smtp-port "$P" big.sluice.test >big.json 2>big.err
grep -q '"kind":"deliver"' big.json && grep -q '127.0.0.5' big.json || fail "big answer: $(cat big.json big.err)"
grep -q ", 1 TCP;" big.err || fail "big answer did not go over TCP: $(cat big.err)"
ok "an MX answer too big for UDP is asked again over TCP ($(grep -o '[0-9]* UDP, [0-9]* TCP' big.err))"

n=0
send() { # COUNT DOMAIN
	for i in $(seq "$1"); do
		n=$((n + 1))
		printf 'From: s@sender.test\r\nSubject: %s\r\n\r\nhello\r\n' "$n" |
			"$SLUICE" inject --spool sp --from s@sender.test --to "u$i@$2" >/dev/null
	done
}
send 10 multi.sluice.test
send 10 failover.sluice.test
send 40 equal.sluice.test
send 2 nullmx.sluice.test
send 2 noaddr.sluice.test
send 5 implicit.sluice.test
send 2 nosuch.sluice.test
send 3 big.sluice.test
send 3 gm.sluice.test
printf 'From: s@sender.test\r\nSubject: mixed\r\n\r\nhello\r\n' |
	"$SLUICE" inject --spool sp --from s@sender.test --to a@multi.sluice.test --to b@implicit.sluice.test \
		--to c@nosuch.sluice.test --to d@nullmx.sluice.test >/dev/null
cat >groups.conf <<'C'
mx-groups = ( { group = "bulkco"; mx = [ "*.equal.sluice.test" ]; } );
C
run_sluice -c groups.conf --spool sp --dns-server "$DNS" --smtp-port "$P" --shards 2 --max-per-connection 1 \
	--retry-interval 1 --bounce-after 2 --max-time 60
[ "$RC" -eq 0 ] || { cat run.out run.err; fail "drain did not finish (rc $RC)"; }
check_log_final 81
peer_count() { log_count ".result==\"delivered\" and (.rcpt|endswith(\"@$1\")) and .peer==\"$2:$P\""; }
[ "$(peer_count multi.sluice.test 127.0.0.2)" -eq 11 ] || fail "multi: not all at the preferred MX: $(jq -c 'select(.rcpt|endswith("multi.sluice.test"))|[.result,.peer]' acct.jsonl | sort | uniq -c)"
[ "$(log_count '(.rcpt|endswith("multi.sluice.test")) and .mx=="mx1.multi.sluice.test" and .group=="sluice.test"')" -eq 11 ] || fail "multi: mx/group fields"
ok "lowest preference first: 11/11 to mx1.multi (127.0.0.2), mx and group logged"
[ "$(peer_count failover.sluice.test 127.0.0.3)" -eq 10 ] || fail "failover: $(jq -c 'select(.rcpt|endswith("failover.sluice.test"))|[.result,.peer,.response]' acct.jsonl | sort | uniq -c)"
[ "$(log_count '(.rcpt|endswith("failover.sluice.test")) and .result=="deferred"')" -eq 0 ] || fail "failover: a message was deferred instead of trying the next MX"
ok "refused primary MX (127.0.0.9): all 10 delivered to the secondary within the first attempt"
e2=$(peer_count equal.sluice.test 127.0.0.2); e3=$(peer_count equal.sluice.test 127.0.0.3)
[ $((e2 + e3)) -eq 40 ] && [ "$e2" -ge 5 ] && [ "$e3" -ge 5 ] || fail "equal preference: $e2 at .2, $e3 at .3"
[ "$(log_count '(.rcpt|endswith("equal.sluice.test")) and .group=="bulkco"')" -eq 40 ] || fail "equal: config mx-groups rule not applied"
ok "equal preference shared: $e2 + $e3 of 40; the config's group rule names them bulkco"
[ "$(log_count '(.rcpt|endswith("nullmx.sluice.test")) and .result=="bounced" and .code==556 and .enhanced=="5.1.10" and .peer==null')" -eq 3 ] || fail "null MX: $(grep nullmx acct.jsonl)"
ok "null MX: 556 5.1.10 at once, no connection"
[ "$(log_count '(.rcpt|endswith("nosuch.sluice.test")) and .result=="bounced" and .enhanced=="5.1.2" and .peer==null')" -eq 3 ] || fail "NXDOMAIN: $(grep nosuch acct.jsonl)"
ok "NXDOMAIN: bounced 5.1.2, no connection"
[ "$(log_count '(.rcpt|endswith("noaddr.sluice.test")) and .result=="deferred" and .enhanced=="4.4.4"')" -ge 2 ] || fail "MX without address: $(grep noaddr acct.jsonl)"
[ "$(log_count '(.rcpt|endswith("noaddr.sluice.test")) and .result=="expired"')" -eq 2 ] || fail "MX without address: not expired after bounce-after"
[ "$(log_count '(.rcpt|endswith("noaddr.sluice.test")) and .peer!=null')" -eq 0 ] || fail "MX without address: fell back to the domain's A record"
ok "MX host without address: deferred 4.4.4, never sent to the domain's own A, expired after bounce-after"
[ "$(peer_count implicit.sluice.test 127.0.0.4)" -eq 6 ] || fail "implicit MX: $(grep implicit acct.jsonl | head -3)"
ok "no MX but an A record: the domain is its own MX (6 delivered to 127.0.0.4)"
[ "$(peer_count big.sluice.test 127.0.0.5)" -eq 3 ] || fail "big: $(grep big.sluice acct.jsonl | head -3)"
[ "$(log_count '(.rcpt|endswith("gm.sluice.test")) and .group=="gmail" and .peer=="127.0.0.6:'$P'"')" -eq 3 ] || fail "gmail group: $(grep gm.sluice acct.jsonl | head -2)"
ok "MX answer over TCP delivered; MX hosts under google.com form the gmail group"
grep -q "dns queries" run.out || fail "no DNS counters in the summary"

# 3,000 messages to one new domain, one shard: one MX and one A query
# (AAAA not asked: IPv6 off in the config).
rm -rf sp2 && "$SLUICE" spoolgen --spool sp2 --count $((3000 / SCALE)) --domains 1 >/dev/null
echo 'dns = { ipv6 = false; };' >noipv6.conf
run_sluice -c noipv6.conf --spool sp2 --dns-server "$DNS" --smtp-port "$P" --shards 1 --max-time 60 --log acct2.jsonl
[ "$RC" -eq 0 ] || fail "coalescing run: rc $RC"
grep -q "dns queries       2 UDP, 0 TCP, 0 timed out" run.out || fail "coalescing: $(grep dns run.out)"
ok "$((3000 / SCALE)) messages to a new domain on one shard: 2 DNS queries (MX, A)"

# A server that never answers: asked first, then the next one takes over.
python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
end = time.time() + 120
while time.time() < end:
    s.settimeout(1)
    try: s.recvfrom(4096)
    except socket.timeout: pass
' >blackhole.port &
PIDS+=($!)
for _ in $(seq 50); do [ -s blackhole.port ] && break; sleep 0.1; done
BH=127.0.0.1:$(cat blackhole.port)
rm -rf sp3 && mkdir sp3 && n=0 && for i in 1 2 3 4 5; do
	printf 'From: s@sender.test\r\n\r\nx\r\n' | "$SLUICE" inject --spool sp3 --from s@sender.test --to "v$i@implicit.sluice.test" >/dev/null; done
run_sluice --spool sp3 --dns-server "$BH" --dns-server "$DNS" --dns-timeout 0.3 --smtp-port "$P" --shards 1 --max-time 30 --log acct3.jsonl
[ "$RC" -eq 0 ] && [ "$(jq -c 'select(.result=="delivered")' acct3.jsonl | wc -l)" -eq 5 ] || fail "slow first server: $(cat run.out)"
grep -q "timed out" run.out && ! grep -q " 0 timed out" run.out || fail "slow server: no timeout counted: $(grep dns run.out)"
ok "first DNS server silent: timed out after 0.3 s, the second answered, 5 delivered"
rm -rf sp4 && mkdir sp4 && printf 'From: s@sender.test\r\n\r\nx\r\n' | "$SLUICE" inject --spool sp4 --from s@sender.test --to w@implicit.sluice.test >/dev/null
run_sluice --spool sp4 --dns-server "$BH" --dns-timeout 0.2 --smtp-port "$P" --shards 1 --max-time 3 --retry-interval 1 --log acct4.jsonl
[ "$RC" -ne 0 ] && [ "$(spool_files sp4/new)" -eq 1 ] || fail "silent server alone: rc $RC, $(spool_files sp4/new) files left"
jq -e 'select(.result=="deferred" and .enhanced=="4.4.3" and (.response|test("no answer within")))' acct4.jsonl >/dev/null || fail "silent server: $(cat acct4.jsonl)"
ok "only a silent DNS server: deferred 4.4.3 (no answer), the message stays in the spool"
