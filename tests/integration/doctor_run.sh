# sluice doctor with a configuration (-c: every domain it signs for, with
# its keys, its pool's source IPs and their EHLO names), the same checks
# when `sluice run` starts (warnings that never hold delivery back; with
# doctor.at-start = "refuse", nothing is sent), and --message, the lint of
# a spool file against the bulk-sender rules. NSD serves the zones.
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
P=$(free_port)
"$SLUICE" dkim keygen --domain brand.test --selector s1 --out s1.key >s1.rec 2>/dev/null
"$SLUICE" dkim keygen --domain lame.test --selector s1 --out lame.key >/dev/null 2>&1
REC=$(grep -o '"[^"]*"' s1.rec | tr '\n' ' ')
cat >brand.test.zone <<Z
\$ORIGIN brand.test.
\$TTL 300
@ SOA ns.brand.test. hostmaster.brand.test. 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
@ TXT "v=spf1 ip4:127.0.0.1 -all"
@ MX 10 mx
mx A 127.0.0.1
mta A 127.0.0.1
s1._domainkey TXT $REC
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@brand.test"
Z
cat >lame.test.zone <<'Z'
$ORIGIN lame.test.
$TTL 300
@ SOA ns.brand.test. hostmaster.brand.test. 1 3600 600 86400 60
@ NS ns.brand.test.
@ MX 10 mx.brand.test.
Z
cat >rcpt.test.zone <<'Z'
$ORIGIN rcpt.test.
$TTL 300
@ SOA ns.brand.test. hostmaster.brand.test. 1 3600 600 86400 60
@ NS ns.brand.test.
@ MX 10 mx
mx A 127.0.0.1
Z
cat >rev.zone <<'Z'
$ORIGIN 0.0.127.in-addr.arpa.
$TTL 300
@ SOA ns.brand.test. hostmaster.brand.test. 1 3600 600 86400 60
@ NS ns.brand.test.
1 PTR mta.brand.test.
Z
start_nsd brand.test brand.test.zone lame.test lame.test.zone rcpt.test rcpt.test.zone \
	0.0.127.in-addr.arpa rev.zone
DNS=127.0.0.1:$NSD_PORT
cat >sluice.conf <<C
helo = "mta.brand.test";
dkim = ( { domain = "brand.test"; selector = "s1"; key = "$T/s1.key"; },
         { domain = "lame.test"; selector = "s1"; key = "$T/lame.key"; } );
pools = ( { name = "main"; ips = ( { ip = "127.0.0.1"; helo = "mta.brand.test"; } ); } );
C

# 1. doctor -c: one JSON line per domain of the configuration.
set +e
timeout 60 "$SLUICE" doctor -c sluice.conf --dns-server "$DNS" --json >cfg.json 2>cfg.err
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "doctor -c: exit $rc (want 1: lame.test fails): $(cat cfg.err)"
[ "$(wc -l <cfg.json)" -eq 2 ] || fail "doctor -c: want one line per domain: $(cat cfg.json)"
st() { jq -r --arg d "$1" --arg n "$2" --arg s "$3" \
	'select(.domain==$d) | .checks[] | select(.name==$n and .subject==$s) | .status' cfg.json; }
for c in "spf brand.test" "spf 127.0.0.1" "dkim s1._domainkey.brand.test" "dmarc _dmarc.brand.test" \
	"ptr 127.0.0.1" "mx brand.test"; do
	set -- $c
	[ "$(st brand.test "$1" "$2")" = pass ] || fail "brand.test $c: $(jq -c "select(.domain==\"brand.test\")" cfg.json)"
done
ok "doctor -c: brand.test passes SPF (record and its pool's IP 127.0.0.1), DKIM against s1.key, DMARC, PTR = the pool's EHLO name, MX"
[ "$(st lame.test spf lame.test)" = fail ] && [ "$(st lame.test spf 127.0.0.1)" = fail ] &&
	[ "$(st lame.test dkim s1._domainkey.lame.test)" = fail ] && [ "$(st lame.test dmarc _dmarc.lame.test)" = fail ] ||
	fail "lame.test: $(jq -c 'select(.domain=="lame.test")' cfg.json)"
jq -r 'select(.domain=="lame.test") | .checks[] | select(.name=="dkim") | .fix' cfg.json | grep -q 'v=DKIM1; k=rsa; p=MII' ||
	fail "lame.test dkim: the fix does not give the record to publish"
ok "doctor -c: lame.test fails SPF, DKIM (the fix is the record of lame.key) and DMARC; exit status 1"

# 2. sluice run: the same checks at start, as warnings; delivery goes on.
start_mockmx "$P"
printf 'From: news@brand.test\r\nSubject: hi\r\n\r\nhello\r\n' |
	"$SLUICE" inject --spool sp --from news@brand.test --to u@rcpt.test >/dev/null
run_sluice -c sluice.conf --spool sp --dns-server "$DNS" --smtp-port "$P" --shards 1 --max-time 60
[ "$RC" -eq 0 ] || fail "run: exit $RC: $(cat run.err)"
[ "$(log_count '.result=="delivered"')" -eq 1 ] || fail "run: not delivered: $(cat acct.jsonl)"
for w in "lame.test spf lame.test" "lame.test dkim s1._domainkey.lame.test" "lame.test dmarc _dmarc.lame.test"; do
	grep -q "warning: doctor: $w: " run.err || fail "run: no warning '$w': $(cat run.err)"
done
! grep -q "warning: doctor: brand.test" run.err || fail "run: a warning for brand.test: $(grep doctor run.err)"
ok "sluice run: lame.test's failures are warnings on stderr, brand.test has none, the message is delivered"

# 3. doctor.at-start = "refuse": a failed check and nothing is sent.
printf 'doctor = { at-start = "refuse"; };\n' >>sluice.conf
printf 'From: news@brand.test\r\nSubject: hi\r\n\r\nhello\r\n' |
	"$SLUICE" inject --spool sp --from news@brand.test --to v@rcpt.test >/dev/null
run_sluice -c sluice.conf --spool sp --dns-server "$DNS" --smtp-port "$P" --shards 1 --max-time 60 --log acct2.jsonl
[ "$RC" -eq 1 ] || fail "refuse: exit $RC"
grep -q 'doctor.at-start is "refuse": not delivering' run.err || fail "refuse: $(cat run.err)"
[ ! -s acct2.jsonl ] && [ "$(spool_files sp/new)" -eq 1 ] || fail "refuse: something was sent or lost"
ok "doctor.at-start = \"refuse\": exit 1, nothing sent, the message stays in the spool"

# 4. --message: a spool file against the bulk-sender rules.
long=$(python3 -c 'print("x" * 1200)')
printf 'X-Sender: news@brand.test\nX-Receiver: u@rcpt.test\nFrom: Brand <news@brand.test>\nTo: u@rcpt.test\nDate: Tue, 01 Dec 2026 10:00:00 +0000\nMessage-ID: <1@brand.test>\nList-Unsubscribe: <https://brand.test/u/1>, <mailto:u@brand.test>\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nSubject: ok\n\nh\xc3\xa9llo\n' >good.msg
printf 'X-Sender: news@other.test\nX-Receiver: u@rcpt.test\nFrom: news@other.test\nTo: u@rcpt.test\nList-Unsubscribe: <mailto:u@other.test>\nSubject: bad\n\nh\xc3\xa9llo\n%s\n' "$long" >bad.msg
printf 'From: nobody\n\nno envelope\n' >noenv.msg
set +e
timeout 30 "$SLUICE" doctor --message good.msg -c sluice.conf --json >good.json 2>good.err; grc=$?
timeout 30 "$SLUICE" doctor --message bad.msg -c sluice.conf --json >bad.json 2>bad.err; brc=$?
timeout 30 "$SLUICE" doctor --message noenv.msg --json >noenv.json 2>noenv.err; nrc=$?
set -e
[ "$grc" -eq 0 ] && [ "$(jq -r '[.checks[].status] | unique | join(",")' good.json)" = pass ] ||
	fail "good message (exit $grc): $(cat good.json)"
ok "--message: a conforming message passes every check (exit 0)"
mst() { jq -r --arg n "$1" '.checks[] | select(.name==$n) | .status' bad.json; }
for n in from list-unsubscribe one-click message-id date line-length 8bit; do
	[ "$(mst $n)" = fail ] || fail "bad message: $n is $(mst $n): $(cat bad.json)"
done
[ "$(mst envelope)" = pass ] && [ "$brc" -eq 1 ] || fail "bad message: exit $brc: $(cat bad.json)"
ok "--message: From not aligned with a DKIM domain, mailto-only List-Unsubscribe, no one-click, no Message-ID, no Date, a 1200-octet line, undeclared 8-bit: each fails"
[ "$nrc" -eq 1 ] && [ "$(jq -r '.checks[0].name + " " + .checks[0].status' noenv.json)" = "envelope fail" ] ||
	fail "no envelope: $(cat noenv.json)"
ok "--message: a file without envelope lines fails the envelope check"
! grep -H "Sanitizer\|runtime error" cfg.err good.err bad.err noenv.err || fail "sanitizer report"
