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
start_mockmx "$port" --store "$T/store"
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
stop_mockmx
