# mockmx as a moody provider: --blocklist refuses some client source IPs,
# --police-rate defers a source above a hidden rate, and the --stats JSON
# has a timeline per source for watching a sender adapt. Driven by Python's
# smtplib (Debian's /usr/bin/python3) from loopback source addresses:
# 127.0.0.12, .14 and .15 are listed, 127.0.0.13 and .10 are not.
# --blocklist-at rcpt (the default): every RCPT TO gets the Spamhaus-style
# 554 with the client's IP, DATA and BDAT LAST then 554, the connection
# stays usable; --blocklist-at mail with --blocklist-text (each %s the IP)
# and two --blocklist options, one a list; --blocklist-at banner: 554 at
# the greeting and the connection closes. A listed source never gets a 250
# to the end of its data; an unlisted one sends as usual at the same time.
# Refusals are counted per source and in total; each source's per_second
# sums to its accepted messages and refused_per_second to its refusals
# (421 [TSS04] from --police-rate and blocklist replies).
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3
[ -x $PY ] || { echo "  skipped: no $PY"; exit 0; }

cat >"$T/client.py" <<'EOF'
import json, smtplib, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
A, B, A2, A3, C = '127.0.0.12', '127.0.0.13', '127.0.0.14', '127.0.0.15', '127.0.0.10'
def SPAMHAUS(ip): return ('554 5.7.1 Service unavailable; Client host [%s] blocked using '
                          'zen.spamhaus.org; https://www.spamhaus.org/query/ip/%s' % (ip, ip))
def CUSTOM(ip): return '550 5.7.1 [%s] listed at mockmx RBL (%s)' % (ip, ip)
def TSS04(ip): return ('421 4.7.0 [TSS04] Messages from %s temporarily deferred due to unexpected '
                       'volume or user complaints (mockmx --police-rate)' % ip)
MSG = 'Subject: moody\r\n\r\nhello\r\n'

def line(r):
    return '%d %s' % (r[0], r[1].decode())

def conn(src):
    s = smtplib.SMTP(timeout=10, source_address=(src, 0))
    code, msg = s.connect('127.0.0.1', port)
    assert code == 220, (code, msg)
    assert s.ehlo()[0] == 250
    return s

def send(s):
    """One message: None when accepted, else the MAIL reply as one line."""
    r = s.mail('a@example.org')
    if r[0] != 250:
        return line(r)
    assert s.rcpt('b@example.net')[0] == 250
    r = s.data(MSG)
    assert r[0] == 250, r
    return None

def bdat_last(s):
    """BDAT 5 LAST with its chunk: the reply as one line."""
    s.send(b'BDAT 5 LAST\r\nhello')
    return line(s.getreply())

def closed(s):
    """The server closed the connection."""
    s.sock.settimeout(10)
    return s.sock.recv(100) == b''

def unlisted(n):
    """B sends n messages, all accepted."""
    s = conn(B)
    got = [send(s) for _ in range(n)]
    assert got == [None] * n, got
    s.quit()

out = {}
if mode == 'rcpt':
    s = conn(A)
    for _ in range(2):                   # DATA: every RCPT refused, then 554
        assert s.mail('a@example.org')[0] == 250
        for rcpt in ('b@example.net', 'c@example.net'):
            r = line(s.rcpt(rcpt))
            assert r == SPAMHAUS(A), r
        r = s.docmd('DATA')
        assert r[0] == 554, r
        assert s.rset()[0] == 250
    assert s.mail('a@example.org')[0] == 250    # BDAT LAST after the refusal: 554
    assert line(s.rcpt('b@example.net')) == SPAMHAUS(A)
    r = bdat_last(s)
    assert r.startswith('554 '), r
    assert s.noop()[0] == 250            # still open
    unlisted(5)                          # meanwhile, B is not listed
    s.quit()
    out['refused'] = 5
elif mode == 'mail':
    for ip in (A, A2, A3):
        s = conn(ip)
        for _ in range(2):
            r = line(s.mail('a@example.org'))
            assert r == CUSTOM(ip), r
            assert s.rcpt('b@example.net')[0] == 503
            assert s.docmd('DATA')[0] == 554
        assert s.noop()[0] == 250
        s.quit()
    unlisted(3)
elif mode == 'banner':
    for _ in range(2):
        s = smtplib.SMTP(timeout=10, source_address=(A, 0))
        r = line(s.connect('127.0.0.1', port))
        assert r == SPAMHAUS(A), r
        assert closed(s), 'still open after the 554 greeting'
        s.close()
    unlisted(2)
elif mode == 'rate':
    # C: 20 quick messages, reconnecting after every 421 [TSS04]
    results, s = [], conn(C)
    while len(results) < 20:
        r = send(s)
        results.append(r)
        if r is not None:
            assert r == TSS04(C), r
            s.close()
            s = conn(C)
    s.quit()
    ok = results.count(None)
    assert results[:5] == [None] * 5 and ok < 20, results
    out['c_ok'], out['c_refused'] = ok, 20 - ok
    # B: one message every 0.4 s for 2.8 s (2.5/s under 5/s): over 3 seconds
    s = conn(B)
    for _ in range(8):
        assert send(s) is None
        time.sleep(0.4)
    s.quit()
    # A is listed too: its refusals are in its timeline
    s = conn(A)
    assert s.mail('a@example.org')[0] == 250
    assert line(s.rcpt('b@example.net')) == SPAMHAUS(A)
    s.quit()
print(json.dumps(out))
EOF

# stats_check PORT PYTHON: runs the Python (with j, the parsed --stats JSON,
# S, its sources, and timeline_ok(), the sums of every source's timeline
# against its counters) as assertions.
stats_check() {
	$PY - "$T/mx-$1.json" "$2" <<'EOF' || fail "stats check failed: $2"
import json, sys
j = json.load(open(sys.argv[1]))
S = j.get('sources')
def timeline_ok():
    for ip, s in S.items():
        ps, rs = s['per_second'], s['refused_per_second']
        assert len(ps) == len(rs) and int(j['seconds']) <= len(ps) <= int(j['seconds']) + 2, (ip, s, j['seconds'])
        assert sum(ps) == s['messages'], (ip, s)
        assert sum(rs) == s['blocklisted'] + sum(s['violations'].values()), (ip, s)
    assert sum(sum(s['per_second']) for s in S.values()) == j['messages'], j
exec(sys.argv[2])
EOF
}

# --blocklist-at rcpt (the default)
port=$(free_port)
start_mockmx "$port" --threads 4 --blocklist 127.0.0.12
timeout 60 $PY "$T/client.py" rcpt "$port" >/dev/null || fail "rcpt client"
stop_mockmx
stats_check "$port" '
a, b = S["127.0.0.12"], S["127.0.0.13"]
assert set(S) == {"127.0.0.12", "127.0.0.13"}, S
assert (a["blocklisted"], a["messages"], a["connections"]) == (5, 0, 1), a
assert (b["blocklisted"], b["messages"]) == (0, 5), b
assert j["blocklisted"] == 5 and j["messages"] == 5, j
assert j["police"]["limits"] == {"conns": 0, "per_conn": 0, "rate": 0}, j
timeline_ok()
'
grep -q "^mockmx: blocklist 127.0.0.12: listed, 5 refusals" "$T/mx-$port.err" ||
	{ cat "$T/mx-$port.err"; fail "no stderr line for 127.0.0.12"; }
ok "rcpt: every RCPT from a listed IP gets the Spamhaus 554, DATA and BDAT LAST 554; another IP sends"

# --blocklist-at mail, --blocklist-text, a list and a second --blocklist
port=$(free_port)
start_mockmx "$port" --threads 4 --blocklist 127.0.0.12,127.0.0.14 --blocklist ::ffff:127.0.0.15 \
	--blocklist-at mail --blocklist-text '550 5.7.1 [%s] listed at mockmx RBL (%s)'
timeout 60 $PY "$T/client.py" mail "$port" >/dev/null || fail "mail client"
stop_mockmx
stats_check "$port" '
for ip in ("127.0.0.12", "127.0.0.14", "127.0.0.15"):
    assert (S[ip]["blocklisted"], S[ip]["messages"], S[ip]["mails"]) == (2, 0, 0), (ip, S[ip])
assert S["127.0.0.13"]["messages"] == 3 and S["127.0.0.13"]["blocklisted"] == 0, S
assert j["blocklisted"] == 6 and j["messages"] == 3, j
timeline_ok()
'
ok "mail: MAIL FROM from three listed IPs gets --blocklist-text with the IP; another IP sends"

# --blocklist-at banner
port=$(free_port)
start_mockmx "$port" --threads 4 --blocklist 127.0.0.12 --blocklist-at banner
timeout 60 $PY "$T/client.py" banner "$port" >/dev/null || fail "banner client"
stop_mockmx
stats_check "$port" '
a, b = S["127.0.0.12"], S["127.0.0.13"]
assert (a["connections"], a["blocklisted"], a["messages"], a["max_concurrent"]) == (2, 2, 0, 0), a
assert b["messages"] == 2 and j["blocklisted"] == 2 and j["messages"] == 2, j
timeline_ok()
'
ok "banner: a listed IP gets the 554 greeting and the connection closes; another IP sends"

# --police-rate 5 with a blocklist: refusals per second
port=$(free_port)
start_mockmx "$port" --threads 4 --police-rate 5 --blocklist 127.0.0.12
res=$(timeout 60 $PY "$T/client.py" rate "$port") || fail "rate client"
stop_mockmx
refused=$(echo "$res" | jq .c_refused)
stats_check "$port" "
c, b, a = S['127.0.0.10'], S['127.0.0.13'], S['127.0.0.12']
assert c['violations']['rate'] == $refused and sum(c['refused_per_second']) == $refused, c
assert sum(c['per_second']) == c['messages'] == 20 - $refused, c
assert sum(b['per_second']) == 8 and sum(b['refused_per_second']) == 0, b
assert sum(1 for n in b['per_second'] if n) >= 2, b   # 2.8 s of messages: 3 or 4 seconds
assert max(b['per_second']) <= 3, b
assert a['blocklisted'] == 1 and sum(a['refused_per_second']) == 1 and a['mails'] == 1, a
timeline_ok()
"
ok "rate 5: $refused 421 [TSS04] in refused_per_second, messages spread over per_second"

# bad values, --help, no options: no timeline
for bad in "--blocklist nope" "--blocklist 127.0.0.1," "--blocklist 127.0.0.1 --blocklist-at helo" \
	"--blocklist 127.0.0.1 --blocklist-text hello" "--blocklist 127.0.0.1 --blocklist-text 250_ok" \
	"--blocklist-at mail" "--blocklist-text 554"; do
	# shellcheck disable=SC2086
	if timeout 10 "$SLUICE" mockmx --listen 127.0.0.1:1 $bad 2>/dev/null; then
		fail "mockmx $bad accepted"
	fi
done
h=$(timeout 10 "$SLUICE" mockmx --help)
for o in --blocklist --blocklist-at --blocklist-text per_second refused_per_second 3600; do
	echo "$h" | grep -q -- "$o" || fail "--help does not mention $o"
done
port=$(free_port)
start_mockmx "$port"
stop_mockmx
stats_check "$port" 'assert S is None and "blocklisted" not in j, j'
ok "bad values refused, --help; without policing or a blocklist no sources"
