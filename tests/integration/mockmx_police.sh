# mockmx --police-*: a mailbox provider's limits per client source IP,
# driven by Python's smtplib (Debian's /usr/bin/python3) from two source
# addresses, 127.0.0.10 and 127.0.0.11. Each rule triggers exactly when it
# is exceeded and not before: --police-per-conn 3 (the 4th MAIL on one
# connection gets 421 and the connection closes; a new connection may send
# 3 again), --police-conns 2 (the 3rd concurrent connection from one IP is
# refused at greeting; after a QUIT the slot is free again), --police-rate 5
# (the first 5 quick MAILs pass, then 421 [TSS04]; MAILs spaced 0.3 s apart
# never trip it). Sources are counted separately, their EHLO names are
# recorded, the --stats JSON (written at SIGTERM) parses and has the
# counts the client saw; several threads share the counters; without a
# --police option the JSON has no "police" or "sources".
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3
[ -x $PY ] || { echo "  skipped: no $PY"; exit 0; }

cat >"$T/client.py" <<'EOF'
import json, smtplib, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
A, B = '127.0.0.10', '127.0.0.11'
PER_CONN = '421 4.7.0 Too many messages on one connection (mockmx --police-per-conn)'
def TSS09(ip): return '421 4.7.0 [TSS09] Too many concurrent connections from %s; mockmx --police-conns' % ip
def TSS04(ip): return ('421 4.7.0 [TSS04] Messages from %s temporarily deferred due to unexpected '
                       'volume or user complaints (mockmx --police-rate)' % ip)
MSG = 'Subject: police\r\n\r\nhello\r\n'

def conn(src, name):
    s = smtplib.SMTP(timeout=10, local_hostname=name, source_address=(src, 0))
    code, msg = s.connect('127.0.0.1', port)
    if code != 220:
        s.close()
        raise smtplib.SMTPConnectError(code, msg)
    code, msg = s.ehlo()
    assert code == 250, (code, msg)
    return s

def send(s):
    """One message: None when accepted, else the MAIL reply as one line."""
    code, msg = s.mail('a@example.org')
    if code != 250:
        return '%d %s' % (code, msg.decode())
    assert s.rcpt('b@example.net')[0] == 250
    code, msg = s.data(MSG)
    assert code == 250, (code, msg)
    return None

def closed(s):
    """The server closed the connection after its 421."""
    try:
        s.noop()
    except smtplib.SMTPServerDisconnected:
        return True
    return False

out = {}
if mode == 'per_conn':
    s = conn(A, 'a1.example')
    got = [send(s) for _ in range(3)]
    assert got == [None] * 3, got
    r = send(s)
    assert r == PER_CONN, r
    assert closed(s), 'still open after the per-conn 421'
    s = conn(A, 'a2.example')            # a new connection: 3 more
    got = [send(s) for _ in range(3)]
    assert got == [None] * 3, got
    s.quit()
    s = conn(B, 'b.example')             # the other source: its own counts
    got = [send(s) for _ in range(3)]
    assert got == [None] * 3, got
    s.quit()
elif mode == 'conns':
    a = [conn(A, 'a.example') for _ in range(2)]
    b = [conn(B, 'b.example') for _ in range(2)]  # B is not A: 2 of its own
    try:
        conn(A, 'a.example')
        raise AssertionError('3rd concurrent connection from A accepted')
    except smtplib.SMTPConnectError as e:
        assert '%d %s' % (e.smtp_code, e.smtp_error.decode()) == TSS09(A), e
    assert send(a[0]) is None and send(a[1]) is None and send(b[0]) is None
    a[0].quit()                          # a slot is free again
    a.append(conn(A, 'a.example'))
    assert send(a[2]) is None
    for s in a[1:] + b:
        s.quit()
elif mode == 'rate':
    # A: quick messages, reconnecting after every 421 [TSS04]
    t0 = time.monotonic()
    results, s = [], conn(A, 'a.example')
    while len(results) < 20:
        r = send(s)
        results.append(r)
        if r is not None:
            assert r == TSS04(A), r
            assert closed(s), 'still open after the rate 421'
            s = conn(A, 'a.example')
    s.quit()
    elapsed = time.monotonic() - t0
    ok = results.count(None)
    assert results[:5] == [None] * 5, results   # the bucket starts full (depth 5)
    assert ok < 20, results
    assert ok <= 5 + 5 * elapsed + 1, (ok, elapsed)
    out['a_ok'], out['a_refused'] = ok, 20 - ok
    # B: its own bucket, full now although A's is empty: 5 quick pass
    s = conn(B, 'b.example')
    got = [send(s) for _ in range(5)]
    assert got == [None] * 5, got
    # then spaced 0.3 s apart (3.3/s under 5/s): never refused
    for _ in range(8):
        time.sleep(0.3)
        r = send(s)
        assert r is None, r
    s.quit()
print(json.dumps(out))
EOF

# stats_check PORT PYTHON: runs the Python (with j, the parsed --stats JSON,
# and S, its sources) as assertions.
stats_check() {
	$PY - "$T/mx-$1.json" "$2" <<'EOF' || fail "stats check failed: $2"
import json, sys
j = json.load(open(sys.argv[1]))
S = j.get('sources')
exec(sys.argv[2])
EOF
}

# --police-per-conn 3, four threads
port=$(free_port)
start_mockmx "$port" --threads 4 --police-per-conn 3
timeout 60 $PY "$T/client.py" per_conn "$port" >/dev/null || fail "per_conn client"
stop_mockmx
stats_check "$port" '
assert j["messages"] == 9 and j["connections"] == 3, j
assert j["police"] == {"conns": 0, "per_conn": 1, "rate": 0,
                       "limits": {"conns": 0, "per_conn": 3, "rate": 0}}, j["police"]
a, b = S["127.0.0.10"], S["127.0.0.11"]
assert set(S) == {"127.0.0.10", "127.0.0.11"}, S
assert (a["connections"], a["mails"], a["messages"]) == (2, 6, 6), a
assert a["violations"] == {"conns": 0, "per_conn": 1, "rate": 0}, a
assert sorted(a["helo"]) == ["a1.example", "a2.example"], a
assert (b["connections"], b["mails"], b["messages"]) == (1, 3, 3), b
assert b["violations"] == {"conns": 0, "per_conn": 0, "rate": 0} and b["helo"] == ["b.example"], b
assert 0 <= a["first_ms"] <= a["last_ms"] and a["max_concurrent"] == 1, a
'
grep -q "^mockmx: police 127.0.0.10: 2 connections (max 1 concurrent), 6 MAIL FROM accepted, 6 messages, violations conns 0 per_conn 1 rate 0" \
	"$T/mx-$port.err" || { cat "$T/mx-$port.err"; fail "no stderr summary for 127.0.0.10"; }
ok "per-conn 3: the 4th MAIL gets 421 and the connection closes; counted once, per source"

# --police-conns 2, four threads
port=$(free_port)
start_mockmx "$port" --threads 4 --police-conns 2
timeout 60 $PY "$T/client.py" conns "$port" >/dev/null || fail "conns client"
stop_mockmx
stats_check "$port" '
assert j["police"]["conns"] == 1 and j["police"]["per_conn"] == 0 and j["police"]["rate"] == 0, j
assert j["police"]["limits"]["conns"] == 2, j
a, b = S["127.0.0.10"], S["127.0.0.11"]
assert (a["connections"], a["max_concurrent"], a["messages"]) == (4, 2, 3), a
assert a["violations"] == {"conns": 1, "per_conn": 0, "rate": 0}, a
assert (b["connections"], b["max_concurrent"], b["messages"]) == (2, 2, 1), b
assert b["violations"]["conns"] == 0 and b["helo"] == ["b.example"] and a["helo"] == ["a.example"], (a, b)
'
ok "conns 2: the 3rd concurrent connection from one IP gets 421 [TSS09], the other IP is not affected"

# --police-rate 5, four threads
port=$(free_port)
start_mockmx "$port" --threads 4 --police-rate 5
res=$(timeout 60 $PY "$T/client.py" rate "$port") || fail "rate client"
stop_mockmx
refused=$(echo "$res" | jq .a_refused)
stats_check "$port" "
assert j['police']['rate'] == $refused and j['police']['limits']['rate'] == 5, j['police']
a, b = S['127.0.0.10'], S['127.0.0.11']
assert a['violations']['rate'] == $refused and a['messages'] == 20 - $refused, a
assert b['violations'] == {'conns': 0, 'per_conn': 0, 'rate': 0} and b['messages'] == 13, b
assert b['last_ms'] - b['first_ms'] >= 8 * 300 - 50, b
"
ok "rate 5: $refused of 20 quick MAILs got 421 [TSS04] (the first 5 passed); 0.3 s apart: none"

# R/m form, bad values, --help, no policing: no police/sources members
port=$(free_port)
start_mockmx "$port" --police-rate 120/m
stop_mockmx
[ "$(mx_stat "$port" police.limits.rate)" = 2 ] || fail "--police-rate 120/m is not 2/s"
for bad in 0 -1 5/x abc; do
	if timeout 10 "$SLUICE" mockmx --listen 127.0.0.1:1 --police-rate "$bad" 2>/dev/null; then
		fail "--police-rate $bad accepted"
	fi
done
timeout 10 "$SLUICE" mockmx --listen 127.0.0.1:1 --police-conns 0 2>/dev/null && fail "--police-conns 0 accepted"
h=$(timeout 10 "$SLUICE" mockmx --help)
for o in --police-conns --police-per-conn --police-rate; do
	echo "$h" | grep -q -- "$o" || fail "--help does not mention $o"
done
port=$(free_port)
start_mockmx "$port"
timeout 30 $PY -c 'import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10, source_address=("127.0.0.10", 0))
s.sendmail("a@example.org", "b@example.net", "Subject: x\r\n\r\nx\r\n"); s.quit()' "$port" || fail "plain client"
stop_mockmx
stats_check "$port" 'assert "police" not in j and S is None and j["messages"] == 1, j'
! grep -q "police" "$T/mx-$port.err" || fail "stderr mentions police without --police"
ok "R/m form, bad values refused, --help; without --police the JSON is as before"
