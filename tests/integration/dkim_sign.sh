# DKIM: messages signed by sluice (rsa-sha256 and ed25519-sha256, one key
# each for sender.example) and captured by mockmx pass two independent
# verifiers, python3-dkim and opendkim-testmsg (the keys published by
# dnsmasq in a private network namespace, when root); a tampered copy fails;
# tricky input; bad keys stop start-up; a message that cannot be signed is
# deferred, never sent unsigned; the log names domain and selectors.
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
"$SLUICE" dkim keygen --domain sender.example --selector rsa1 --out rsa1.key >rsa1.txt
"$SLUICE" dkim keygen --domain sender.example --selector ed1 --type ed25519 --out ed1.key >ed1.txt
for k in rsa1 ed1; do grep -o '"[^"]*"' $k.txt | tr -d '"\n' >$k.rec; done
grep -q '^rsa1._domainkey.sender.example. IN TXT ( "v=DKIM1; k=rsa; p=MII' rsa1.txt || fail "keygen: no RSA record"
[ "$(grep -o '"[^"]*"' rsa1.txt | awk '{ if (length($0) > 257) print "long" }')" = "" ] || fail "keygen: TXT string over 255 bytes"
[ "$(stat -c %a rsa1.key)" = 600 ] || fail "keygen: key file not 0600"
RECS="rsa1|sender.example|rsa1.rec,ed1|sender.example|ed1.rec"
ok "keygen: keys written, records printed in 255-byte strings"

# Tricky messages (plus spoolgen's mixed LF/CRLF ones).
inj() { "$SLUICE" inject --spool "$T/sp" --from b@sender.example --to "$1@d.example" >/dev/null; }
hdr() { printf 'From: "News" <news@sender.example>\r\nTo: <%s@d.example>\r\nSubject: %s\r\nDate: Thu, 26 Nov 2026 05:00:00 +0000\r\nMessage-ID: <%s@sender.example>\r\n' "$1" "$2" "$1"; }
{ hdr ws "trailing whitespace"; printf '\r\nline with spaces   \r\nand tabs\t\t\r\n\r\n\r\n'; } | inj ws
{ hdr empty "empty body"; printf '\r\n'; } | inj empty
{ hdr dots "dots"; printf '\r\n.\r\n..leading dots\r\n.end\r\n'; } | inj dots
{ hdr utf8 "8-bit"; printf '\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x82\xac\r\n'; } | inj utf8
{ hdr folded "folded"; printf 'X-Long: %s\r\nSubject-Folded: a\r\n  folded\r\n\tover three lines\r\n\r\nbody\r\n' "$(head -c 2000 /dev/zero | tr '\0' x)"; } | inj folded
{ printf 'From: news@sender.example\nTo: lf@d.example\nSubject: LF only\nDate: Thu, 26 Nov 2026 05:00:00 +0000\nMessage-ID: <lf@sender.example>\n\nunix\nline ends\n'; } | inj lf
{ printf 'DKIM-Signature: v=1; a=rsa-sha256; d=other.example; s=x; h=from; bh=AAAA; b=BBBB\r\n'; hdr presigned "already signed"; printf '\r\nbody\r\n'; } | inj presigned
{ hdr twoto "two To"; printf 'To: <second@d.example>\r\n\r\nbody\r\n'; } | inj twoto
{ hdr big "10 MB"; printf '\r\n'; python3 -c 'import sys
line = b"0123456789abcdefghijklmnopqrstuvwxyz " * 2 + b"\r\n"
sys.stdout.buffer.write(line * (10 * 1024 * 1024 // len(line)))'; } | inj big
"$SLUICE" spoolgen --spool "$T/sp" --count 20 --seed 9 >/dev/null
n=$(spool_files sp/new)
cp -r sp/new orig
port=$(free_port)
start_mockmx "$port" --store "$T/store" --no-pipelining   # BDAT (lock-step)
MX1=$MX_PID
run_sluice --spool sp --route "*=127.0.0.1:$port" --dkim sender.example:rsa1:rsa1.key --dkim sender.example:ed1:ed1.key
[ "$RC" -eq 0 ] || { cat run.err; fail "signed run: exit $RC"; }
[ "$(spool_files store)" -eq "$n" ] || fail "want $n messages captured"
/usr/bin/python3 "$HERE/dkim_verify.py" "$RECS" store/* >verify.out || { grep -v "True, True" verify.out; fail "python3-dkim rejected a signature"; }
[ "$(grep -c '2 signature(s) \[True, True\]' verify.out)" -eq "$n" ] || fail "not every message has both signatures"
ok "python3-dkim: $n messages x 2 signatures (rsa-sha256, ed25519-sha256) verify, tricky ones included"
[ "$(log_count '.dkim.d == "sender.example" and .dkim.s == ["rsa1","ed1"]')" -eq "$n" ] || fail "the log does not name domain and selectors"
ok "the accounting log records d= and the selectors"
# The tampered copies must fail: one body byte changed after signing.
mkdir tampered
for f in store/*; do
	python3 -c 'import sys
d = open(sys.argv[1], "rb").read(); h, _, b = d.partition(b"\r\n\r\n")
i = b.find(b"o") if b.find(b"o") >= 0 else len(b)
b = b[:i] + b"0" + b[i + 1:] if i < len(b) else b + b"tampered\r\n"
open(sys.argv[2], "wb").write(h + b"\r\n\r\n" + b)' "$f" "tampered/$(basename "$f")"
done
/usr/bin/python3 "$HERE/dkim_verify.py" --expect-fail "$RECS" tampered/* >tampered.out || { cat tampered.out; fail "a tampered copy verified"; }
ok "every tampered copy fails verification"
# The same through DATA (dot-stuffing after the signature fields).
cp orig/* sp/new/
port2=$(free_port)
start_mockmx "$port2" --store "$T/store-data" --no-chunking
run_sluice --spool sp --route "*=127.0.0.1:$port2" --dkim sender.example:rsa1:rsa1.key --dkim sender.example:ed1:ed1.key
stop_mockmx
MX_PID=$MX1
[ "$RC" -eq 0 ] && [ "$(spool_files store-data)" -eq "$n" ] || fail "DATA run: exit $RC, $(spool_files store-data) captured"
/usr/bin/python3 "$HERE/dkim_verify.py" "$RECS" store-data/* >verify-data.out || { grep -v "True, True" verify-data.out; fail "DATA path: a signature does not verify"; }
ok "through DATA too: $n messages x 2 signatures verify"

# opendkim-testmsg, the keys served by dnsmasq on 127.0.0.1:53 in a private
# network and mount namespace (root only: resolv.conf cannot name a port).
if [ "$(id -u)" = 0 ] && command -v opendkim-testmsg >/dev/null && command -v dnsmasq >/dev/null &&
	unshare --mount --net true 2>/dev/null; then
	echo "nameserver 127.0.0.1" >resolv.conf
	{ echo "txt-record=rsa1._domainkey.sender.example,$(grep -o '"[^"]*"' rsa1.txt | paste -sd, -)"
	  echo "txt-record=ed1._domainkey.sender.example,$(grep -o '"[^"]*"' ed1.txt | paste -sd, -)"; } >dnsmasq.conf
	# One signature at a time: the other DKIM-Signature field is removed.
	# The message with two To: fields is left out: opendkim-testmsg calls it
	# a syntax error (RFC 5322 allows one) before it looks at signatures.
	python3 - store <<'PY'
import os, re, sys
for f in sorted(os.listdir(sys.argv[1])):
    d = open(os.path.join(sys.argv[1], f), 'rb').read()
    if b'<twoto@sender.example>' in d:
        continue
    d = re.sub(rb'\A(?:X-(?:Sender|Receiver):[^\n]*\n)+', b'', d)
    h, _, b = d.partition(b'\r\n\r\n')
    fields = re.findall(rb'(?:^|(?<=\r\n))\S[^\r]*(?:\r\n[ \t][^\r]*)*', h)
    for alg in (b'rsa-sha256', b'ed25519-sha256'):
        keep = [x for x in fields if not (x.lower().startswith(b'dkim-signature:') and b'd=sender.example;' in x
                                          and b'a=' + alg + b';' not in x)]
        open(f'{f}.{alg.decode()}.one', 'wb').write(b'\r\n'.join(keep) + b'\r\n\r\n' + b)
PY
	unshare --mount --net sh -c "
		ip link set lo up || exit 3
		dnsmasq --port 53 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
			--pid-file=$T/dnsmasq.pid --conf-file=$T/dnsmasq.conf || exit 3
		mount --bind $T/resolv.conf /etc/resolv.conf || exit 3
		pass=0; failed=0
		for f in *.one; do
			if timeout 20 opendkim-testmsg -C <\$f 2>>testmsg.err; then pass=\$((pass + 1)); else failed=\$((failed + 1)); echo \$f >>testmsg.failed; fi
		done
		f=\$(ls *.rsa-sha256.one | head -1)
		python3 -c 'import sys; d=open(sys.argv[1],\"rb\").read(); i=d.rfind(b\"o\"); open(\"t.one\",\"wb\").write(d[:i]+b\"0\"+d[i+1:])' \$f
		if timeout 20 opendkim-testmsg -C <t.one 2>/dev/null; then echo tampered-passed >>testmsg.failed; fi
		kill \$(cat $T/dnsmasq.pid)
		echo \$pass \$failed >testmsg.count
	" || fail "could not set up dnsmasq for opendkim-testmsg"
	[ ! -s testmsg.failed ] || { cat testmsg.failed testmsg.err; fail "opendkim-testmsg rejected a signature (or passed a tampered one)"; }
	[ "$(cat testmsg.count)" = "$((2 * n - 2)) 0" ] || fail "opendkim-testmsg: $(cat testmsg.count)"
	ok "opendkim-testmsg: all $((2 * n - 2)) signatures verify one at a time (keys from dnsmasq); a tampered copy fails"
else
	echo "  skipped: opendkim-testmsg needs root, dnsmasq and unshare"
fi

# Which domain signs: the From domain, else its nearest parent with keys,
# else the fallback domain; without any, the message goes unsigned.
mv acct.jsonl acct-1.jsonl
{ printf 'From: news@mail.sender.example\r\nTo: sub@d.example\r\nSubject: sub\r\nDate: Thu, 26 Nov 2026 05:00:00 +0000\r\n\r\nbody\r\n'; } | inj sub
{ printf 'From: news@other.example\r\nTo: other@d.example\r\nSubject: other\r\nDate: Thu, 26 Nov 2026 05:00:00 +0000\r\n\r\nbody\r\n'; } | inj other
rm -rf store && mkdir store
run_sluice --spool sp --route "*=127.0.0.1:$port" --dkim sender.example:rsa1:rsa1.key
[ "$RC" -eq 0 ] || { cat run.err; fail "run without fallback: exit $RC"; }
[ "$(log_count '(.rcpt|startswith("sub@")) and .dkim.d == "sender.example"')" -eq 1 ] || fail "a subdomain's mail was not signed by the parent domain"
[ "$(log_count '(.rcpt|startswith("other@")) and .dkim == null')" -eq 1 ] || fail "mail from a domain without keys was signed"
{ printf 'From: news@other.example\r\nTo: fb@d.example\r\nSubject: fallback\r\nDate: Thu, 26 Nov 2026 05:00:00 +0000\r\n\r\nbody\r\n'; } | inj fb
run_sluice --spool sp --route "*=127.0.0.1:$port" --dkim sender.example:rsa1:rsa1.key --dkim-fallback-domain sender.example
[ "$RC" -eq 0 ] || { cat run.err; fail "run with fallback: exit $RC"; }
[ "$(log_count '(.rcpt|startswith("fb@")) and .dkim.d == "sender.example"')" -eq 1 ] || fail "the fallback domain did not sign"
/usr/bin/python3 "$HERE/dkim_verify.py" "$RECS" $(grep -l -e '^To: sub@' -e '^To: fb@' store/*) >verify2.out || { cat verify2.out; fail "parent or fallback signature does not verify"; }
[ "$(grep -c '1 signature(s) \[True\]' verify2.out)" -eq 2 ] || { cat verify2.out; fail "want 2 messages with one good signature"; }
ok "subdomain signed by its parent, fallback domain signs the rest, no key no signature"

# A message that cannot be signed is deferred with the reason, never sent.
{ printf 'From: news@sender.example\r\nThis line is not a header field\r\nSubject: x\r\n\r\nbody\r\n'; } | inj broken
before=$(spool_files store)
run_sluice --spool sp --route "*=127.0.0.1:$port" --dkim sender.example:rsa1:rsa1.key --retry-interval 0.2 --max-time 1
[ "$RC" -eq 1 ] || fail "unsignable message: want exit 1 (not final), got $RC"
[ "$(spool_files store)" -eq "$before" ] || fail "an unsignable message was sent"
[ "$(log_count '(.rcpt|startswith("broken@")) and .result == "deferred" and .enhanced == "4.3.0" and (.response|startswith("DKIM signing (sender.example, rsa1) failed"))')" -ge 2 ] ||
	fail "unsignable message not deferred (and retried) with the reason"
[ "$(spool_files sp/new)" -eq 1 ] || fail "the unsignable message left the spool"
ok "an unsignable message is deferred with the reason and stays in the spool"
stop_mockmx

# SIGHUP reads the keys again: a rotated selector signs from then on; a bad
# key file in the new configuration is refused and the running keys kept.
mkdir held && mv sp/new/* held/ && mv acct.jsonl acct-2.jsonl   # the unsignable one waits aside
kconf() { printf 'dkim = ( { domain = "sender.example"; selector = "%s"; key = "%s"; } );\n' "$1" "$2" >dk.conf; }
kconf rsa1 "$T/rsa1.key"
port=$(free_port)
start_mockmx "$port"
start_daemon -c dk.conf --spool sp --route "*=127.0.0.1:$port" --shards 1
sleep 0.3
send_one() { # send_one NAME: one message in, wait for its line
	{ printf 'From: news@sender.example\r\nTo: %s@d.example\r\nSubject: %s\r\nDate: Thu, 26 Nov 2026 05:00:00 +0000\r\n\r\nbody\r\n' "$1" "$1"; } | inj "$1"
	for _ in $(seq 100); do [ "$(log_count "(.rcpt|startswith(\"$1@\")) and .result == \"delivered\"")" -ge 1 ] && return 0; sleep 0.05; done
	cat "$T/d.err"; fail "$1 not delivered"
}
hup() { kill -HUP "$DAEMON"; for _ in $(seq 100); do [ "$(grep -c 'reload:' "$T/d.err")" -ge "$1" ] && return 0; sleep 0.05; done; fail "no reload"; }
send_one before
kconf ed1 "$T/ed1.key"; hup 1
send_one after
kconf rsa1 "$T/missing.key"; hup 2
send_one kept
kill -TERM "$DAEMON"; wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
[ "$(log_count '(.rcpt|startswith("before@")) and .dkim.s == ["rsa1"]')" -eq 1 ] &&
[ "$(log_count '(.rcpt|startswith("after@")) and .dkim.s == ["ed1"]')" -eq 1 ] &&
[ "$(log_count '(.rcpt|startswith("kept@")) and .dkim.s == ["ed1"]')" -eq 1 ] || { cat acct.jsonl; fail "keys not rotated by SIGHUP"; }
grep -q "reload: dkim sender.example:rsa1: cannot read key file .*missing.key" "$T/d.err" || fail "bad key on reload not reported"
ok "SIGHUP: a rotated key signs from then on; a bad key file is refused, the running keys kept"
mv held/* sp/new/

# Bad keys stop start-up with a clear message; nothing is sent.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512 -out short.key 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out k1024.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key 2>/dev/null
echo "not a key" >garbage.key
bad_key() { # bad_key FILE MESSAGE
	run_sluice --spool sp --route "*=127.0.0.1:1" --dkim "sender.example:s:$1" --max-time 5
	[ "$RC" -ne 0 ] && grep -q "$2" run.err || { cat run.err; fail "$1: want an error containing '$2'"; }
}
bad_key missing.key "cannot read key file missing.key: No such file or directory"
bad_key garbage.key "not a PEM private key"
bad_key short.key "RSA key of 512 bits: at least 1024 are required"
bad_key ec.key "neither RSA nor Ed25519"
[ "$(spool_files sp/new)" -eq 1 ] || fail "a refused start touched the spool"
run_sluice --spool sp --route "*=127.0.0.1:1" --dkim sender.example:s:k1024.key --max-time 0.3
grep -q "RSA key of 1024 bits: 2048 are recommended" run.err || fail "no warning for a 1024-bit key"
ok "bad keys refused at start (missing, not PEM, 512-bit RSA, EC), 1024-bit RSA warned"
