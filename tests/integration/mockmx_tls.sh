# mockmx's STARTTLS against an independent client (Python's smtplib and
# ssl, i.e. OpenSSL): TLS 1.2 and 1.3, messages stored intact, the second
# connection with the same session resumes, EHLO offers STARTTLS only in
# clear, RFC 3207's refusals (inside a transaction, twice, before EHLO),
# plaintext pipelined after STARTTLS discarded; the three --tls-fault
# modes fail the way they say; --tls-no-resume resumes nothing; the
# counters in --stats.
source "$(dirname "$0")/../lib.sh"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=mx.test.example \
	-addext subjectAltName=DNS:mx.test.example -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null \
	|| fail "openssl req failed"
TLS=(--tls-cert "$T/cert.pem" --tls-key "$T/key.pem")

cat >"$T/client.py" <<'EOF'
import smtplib, socket, ssl, sys
mode, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
NAME = 'mx.test.example'

def ctx_for(ver):
    c = ssl.create_default_context(cafile=cafile)
    c.minimum_version = c.maximum_version = ver
    return c

def smtp():
    s = smtplib.SMTP('127.0.0.1', port, timeout=5)
    s._host = NAME  # the name starttls() verifies
    return s

def starttls(s, ctx, session=None):
    """smtplib's starttls(), with a session to resume."""
    code, msg = s.docmd('STARTTLS')
    assert code == 220, (code, msg)
    s.sock = ctx.wrap_socket(s.sock, server_hostname=NAME, session=session)
    s.file = None
    s.helo_resp = s.ehlo_resp = None
    s.esmtp_features = {}
    s.does_esmtp = False

def raw_reply(sock):
    buf = b''
    while not buf.endswith(b'\r\n') or buf.split(b'\r\n')[-2][3:4] == b'-':
        d = sock.recv(4096)
        if not d:
            break
        buf += d
    return buf

if mode in ('deliver', 'no-resume'):
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx, sess = ctx_for(ver), None
        for i in range(2):
            s = smtp()
            s.ehlo('client.example')
            assert s.has_extn('starttls'), 'STARTTLS not offered in clear'
            if sess is None:
                code, _ = s.starttls(context=ctx)
                assert code == 220
            else:
                starttls(s, ctx, sess)
            s.ehlo('client.example')
            assert not s.has_extn('starttls'), 'STARTTLS offered again inside TLS'
            assert s.sock.version() == {'TLSv1_2': 'TLSv1.2', 'TLSv1_3': 'TLSv1.3'}[ver.name], s.sock.version()
            assert s.sock.session_reused == (i == 1 and mode == 'deliver'), (ver.name, i, s.sock.session_reused)
            for k in range(3):
                s.sendmail('sender@client.example', ['rcpt%d@dest.example' % k],
                           'Subject: %s %d %d\r\n\r\nline\r\n.dot\r\n' % (ver.name, i, k) + 'x' * 40000 + '\r\n')
            code, msg = s.docmd('STARTTLS')
            assert code == 554, ('second STARTTLS', code, msg)
            sess = s.sock.session
            print(ver.name, 'connection', i, s.sock.version(), s.sock.cipher()[0], 'resumed', s.sock.session_reused)
            s.quit()
elif mode == 'refusals':
    s = smtp()
    code, msg = s.docmd('STARTTLS')
    assert code == 503, ('STARTTLS before EHLO', code, msg)
    s.ehlo('client.example')
    s.docmd('MAIL FROM:<a@client.example>')
    code, msg = s.docmd('STARTTLS')
    assert code == 503, ('STARTTLS in a transaction', code, msg)
    code, msg = s.docmd('STARTTLS now')
    assert code == 501, ('STARTTLS with an argument', code, msg)
    s.quit()
    # pipelined behind STARTTLS in the same write: discarded, not answered
    sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    raw_reply(sock)
    sock.sendall(b'EHLO client.example\r\n')
    raw_reply(sock)
    sock.sendall(b'STARTTLS\r\nMAIL FROM:<injected@client.example>\r\n')
    r = raw_reply(sock)
    assert r.startswith(b'220 '), r
    t = ctx_for(ssl.TLSVersion.TLSv1_3).wrap_socket(sock, server_hostname=NAME)
    t.sendall(b'EHLO client.example\r\n')
    r = raw_reply(t)
    assert b'STARTTLS' not in r and r.startswith(b'250'), r
    t.sendall(b'RCPT TO:<r@dest.example>\r\n')
    r = raw_reply(t)
    assert r.startswith(b'503'), ('the MAIL after STARTTLS was not discarded', r)
    # a record that does not decrypt: mockmx sends an alert and closes
    raw = socket.socket(fileno=t.detach())
    raw.settimeout(5)
    raw.sendall(b'\x17\x03\x03\x00\x20' + b'\x55' * 32)
    alert = raw.recv(100)
    # an alert (TLS 1.3: encrypted, an application_data record of 2+1+16 bytes)
    assert alert == b'' or alert[:1] == b'\x15' or alert[:5] == b'\x17\x03\x03\x00\x13', alert
    assert raw.recv(100) == b'', 'mockmx did not close after a bad record'
    raw.close()
    print('refusals: 503 before EHLO, 503 in a transaction, 501 with an argument, pipelined MAIL discarded; '
          'a bad record got %s and the close' % ('an alert' if alert else 'no alert'))
elif mode in ('close-after-hello', 'garbage'):
    s = smtp()
    s.ehlo('client.example')
    try:
        s.starttls(context=ctx_for(ssl.TLSVersion.TLSv1_3))
    except (ssl.SSLError, OSError, smtplib.SMTPServerDisconnected) as e:
        print(mode, 'failed as it should:', type(e).__name__, e)
        sys.exit(0)
    sys.exit(mode + ': the handshake succeeded')
elif mode == 'inject':
    sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    raw_reply(sock)
    sock.sendall(b'EHLO client.example\r\n')
    raw_reply(sock)
    sock.sendall(b'STARTTLS\r\n')
    got = b''
    while b'250 injected\r\n' not in got:
        d = sock.recv(4096)
        if not d:
            break
        got += d
    assert got == b'220 ready\r\n250 injected\r\n', got
    # A client that took the 220 and then started TLS on the rest of what
    # it read sees the injected line as its ServerHello:
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx_for(ssl.TLSVersion.TLSv1_3).wrap_bio(inc, out, server_hostname=NAME)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    inc.write(b'250 injected\r\n')
    try:
        obj.do_handshake()
        sys.exit('inject: the injected bytes passed as TLS')
    except ssl.SSLError as e:
        print('inject: "220 ready" and "250 injected" in one read; as TLS input:', type(e).__name__, e.reason)
else:
    sys.exit('unknown mode ' + mode)
EOF

client() { timeout 30 python3 "$T/client.py" "$1" "$2" "$T/cert.pem" || fail "$1: the client failed"; }

port=$(free_port)
start_mockmx "$port" "${TLS[@]}" --store "$T/store"
client deliver "$port"
client refusals "$port"
stop_mockmx
[ "$(mx_stat "$port" messages)" -eq 12 ] || fail "mockmx counted $(mx_stat "$port" messages) messages, want 12"
[ "$(mx_stat "$port" tls_connections)" -eq 5 ] || fail "tls_connections $(mx_stat "$port" tls_connections), want 5"
[ "$(mx_stat "$port" tls_resumed)" -eq 2 ] || fail "tls_resumed $(mx_stat "$port" tls_resumed), want 2"
[ "$(mx_stat "$port" tls_failures)" -eq 1 ] || fail "tls_failures $(mx_stat "$port" tls_failures), want 1 (the bad record)"
[ "$(ls "$T/store" | wc -l)" -eq 12 ] || fail "stored $(ls "$T/store" | wc -l) messages, want 12"
grep -q '^\.dot' "$T"/store/0-0.eml || fail "the dot-stuffed line did not come back intact"
grep -q '^Subject: TLSv1_3 1 2' "$T"/store/*.eml || fail "a TLS 1.3 message is missing from the store"
ok "TLS 1.2 and 1.3: 12 messages stored, 5 handshakes of which 2 resumed, refusals as RFC 3207 says"

for f in close-after-hello garbage inject; do
	port=$(free_port)
	start_mockmx "$port" "${TLS[@]}" --tls-fault "$f"
	client "$f" "$port"
	stop_mockmx
	[ "$(mx_stat "$port" tls_connections)" -eq 0 ] || fail "$f: a handshake completed"
	ok "--tls-fault $f"
done

port=$(free_port)
start_mockmx "$port" "${TLS[@]}" --tls-no-resume
client no-resume "$port"
stop_mockmx
[ "$(mx_stat "$port" tls_connections)" -eq 4 ] && [ "$(mx_stat "$port" tls_resumed)" -eq 0 ] \
	|| fail "--tls-no-resume: $(mx_stat "$port" tls_resumed) of $(mx_stat "$port" tls_connections) resumed"
ok "--tls-no-resume: 4 full handshakes though the client offered its sessions"

# Without --tls-cert STARTTLS is neither offered nor understood.
port=$(free_port)
start_mockmx "$port"
timeout 10 python3 -c '
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5)
s.ehlo("c.example")
assert not s.has_extn("starttls")
assert s.docmd("STARTTLS")[0] == 502
s.quit()' "$port" || fail "STARTTLS without --tls-cert"
stop_mockmx
ok "no --tls-cert: no STARTTLS (502)"
