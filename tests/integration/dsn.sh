# DSNs (RFC 3464): with --dsn-spool, each message with bounced or expired
# recipients gets one multipart/report to its envelope sender in that
# spool's new/, matching the accounting log; none for the null sender; the
# DSN spool is itself deliverable (MAIL FROM:<>).
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
"$SLUICE" spoolgen --spool sp --count 200 --seed 11 >/dev/null
port=$(free_port)
start_mockmx "$port" --fail rcpt:550:0.3 --seed 5     # 550 for 30% of RCPTs
run_sluice --spool sp --route "*=127.0.0.1:$port" --dsn-spool "$T/dsn"
stop_mockmx
[ "$RC" -eq 0 ] || { cat run.err; fail "run 1: exit $RC"; }
# Expiry: "late" recipients are deferred until bounce-after; one message
# has two of them (one DSN for both), one comes from the null sender.
printf 'From: <>\r\nSubject: a bounce itself\r\nMessage-ID: <nullsender@x.example>\r\n\r\nbody\r\n' |
	"$SLUICE" inject --spool sp --from '' --to late-null@d0.example >/dev/null
printf 'From: news@sender.example\r\nSubject: two fail\r\nMessage-ID: <two@sender.example>\r\n\r\nbody\r\n' |
	"$SLUICE" inject --spool sp --from owner@sender.example --to late1@d.example --to late2@d.example --to ok@d.example >/dev/null
port=$(free_port)
start_mockmx "$port" --defer-rcpt late
run_sluice --spool sp --route "*=127.0.0.1:$port" --dsn-spool "$T/dsn" --retry-interval 0.3 --bounce-after 1 --max-time 30
stop_mockmx
[ "$RC" -eq 0 ] || { cat run.err; fail "run 2: exit $RC"; }
python3 - "$T/acct.jsonl" "$T/dsn/new" <<'PY' || fail "DSNs do not match the log"
import email, email.policy, json, os, sys
log = [json.loads(l) for l in open(sys.argv[1])]
want = {}
for o in log:
    if o['result'] in ('bounced', 'expired') and o['from']:
        want.setdefault(o['id'], {})[o['rcpt']] = o
null_failed = [o for o in log if o['result'] in ('bounced', 'expired') and not o['from']]
assert null_failed, 'the null-sender message should have expired'
files = os.listdir(sys.argv[2])
assert len(files) == len(want), f'{len(files)} DSNs for {len(want)} messages with failures'
seen = set()
for f in files:
    raw = open(os.path.join(sys.argv[2], f), 'rb').read()
    env, _, body = raw.partition(b'\r\nFrom:')
    assert env.startswith(b'X-Sender: <>\r\nX-Receiver: <'), env[:80]
    msg = email.message_from_bytes(b'From:' + body, policy=email.policy.compat32)
    assert msg.get_content_type() == 'multipart/report' and msg.get_param('report-type') == 'delivery-status'
    text, status, headers = msg.get_payload()
    assert status.get_content_type() == 'message/delivery-status'
    blocks = status.get_payload()
    assert blocks[0]['Reporting-MTA'].startswith('dns;')
    qid = blocks[0]['X-Sluice-Queue-ID']
    assert qid in want, qid
    seen.add(qid)
    rcpts = {b['Final-Recipient'].split(';', 1)[1].strip(): b for b in blocks[1:]}
    assert set(rcpts) == set(want[qid]), (qid, set(rcpts), set(want[qid]))
    for r, b in rcpts.items():
        o = want[qid][r]
        assert b['Action'] == 'failed'
        assert b['Status'] == (o['enhanced'] or ('4.4.7' if o['result'] == 'expired' else '5.0.0')), (b['Status'], o)
        if o['code']:
            assert b['Diagnostic-Code'].startswith(f"smtp; {o['code']}"), b['Diagnostic-Code']
    assert env.split(b'X-Receiver: <')[1].split(b'>')[0].decode() == log[[x['id'] for x in log].index(qid)]['from']
    assert headers.get_content_type() == 'text/rfc822-headers' and b'Message-ID:' in headers.get_payload().encode()
two = [w for w in want.values() if 'late1@d.example' in w]
assert two and set(two[0]) == {'late1@d.example', 'late2@d.example'}, 'the two expired recipients share one DSN'
assert all(o['result'] == 'expired' for o in two[0].values())
print(f'  {len(files)} DSNs for {sum(len(w) for w in want.values())} failed recipients; none for the null sender')
PY
ok "one RFC 3464 report per message with failures, matching the log"
# The DSN spool is a spool: sluice delivers it with the null sender.
n=$(spool_files dsn/new)
port=$(free_port)
start_mockmx "$port" --store "$T/store"
run_sluice --spool dsn --route "*=127.0.0.1:$port" --log "$T/dsn.jsonl"
stop_mockmx
[ "$RC" -eq 0 ] && [ "$(spool_files store)" -eq "$n" ] || fail "DSN spool: exit $RC, $(spool_files store) of $n delivered"
grep -l '^X-Sender: <>' store/* | wc -l | grep -qx "$n" || fail "DSNs were not sent from the null sender"
ok "the $n DSNs delivered from the null sender"
