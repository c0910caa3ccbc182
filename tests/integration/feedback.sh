#!/bin/bash
# tests/integration/feedback.sh - feedback end to end: sluice sends (with
# its tracking header, Feedback-ID and List-Unsubscribe from templates,
# DKIM-signed), reports come back into a maildir - an RFC 3464 bounce and an
# ARF complaint built around the messages as the mock MX received them, and
# one whose tracking header is forged - `sluice feedback ingest` records
# them (bounced with its class, complained), suppresses the bounced address
# globally and the complainer for the sender's domain, and leaves the
# forged one alone; the next campaign logs the suppressed recipients
# "suppressed" and the server receives only the others. Then the daemon
# with feedback.maildir: a complaint dropped in is ingested within seconds
# and, over the complaint threshold, pauses its job.
set -eu
. "$(dirname "$0")/../lib.sh"

PORT=$(free_port)
start_mockmx "$PORT" --store "$T/got"
head -c 32 /dev/urandom | base64 >"$T/secret"
mkdir -p "$T/fb/new" "$T/fb/cur" "$T/fb/tmp" "$T/spool/new" "$T/spool/tmp"
cat >"$T/sluice.conf" <<EOF
spool = "$T/spool";
log = "$T/acct.jsonl";
feedback: {
  secret-file = "$T/secret";
  feedback-id = "%{job}:%{domain}:sluice";
  list-unsubscribe = "<https://list.example/u?r=%{rcpt}&s=%{sig}>";
  complaint-threshold = 0.1;
  complaint-min = 1;
};
EOF

inject() { # inject NAME JOB RCPT
	printf 'X-Sender: <news@sender.example>\nX-Receiver: <%s>\nX-Job: %s\nFrom: news@sender.example\nTo: %s\nSubject: hello\nMessage-ID: <%s@sender.example>\n\nhi %s\n' \
		"$3" "$2" "$3" "$1" "$3" >"$T/spool/tmp/$1"
	mv "$T/spool/tmp/$1" "$T/spool/new/$1"
}
for r in a b c d; do inject "m1-$r" spring "$r@rcpt.example"; done
run_sluice -c "$T/sluice.conf" --route "*=127.0.0.1:$PORT" --max-time 30
[ "$(log_count '.result=="delivered"')" = 4 ] || fail "first campaign: 4 delivered expected"
n=$(ls "$T/got" | wc -l)
[ "$n" = 4 ] || fail "the mock MX stored $n messages, not 4"
grep -l "^X-Sluice-Track: " "$T"/got/* | wc -l | grep -qx 4 || fail "every message carries the tracking header"
grep -qi "^List-Unsubscribe: <https://list.example/u?r=a@rcpt.example&s=" "$T"/got/* || fail "List-Unsubscribe from the template"
grep -qi "^Feedback-ID: spring:sender.example:sluice" "$T"/got/* || fail "Feedback-ID from the template"
ok "sent: tracking header, Feedback-ID and List-Unsubscribe on every message"

# The reports, around the messages as the server got them.
/usr/bin/python3 - "$T" <<'PY'
import sys, os, glob, email.utils
T = sys.argv[1]
msgs = {}
for p in glob.glob(T + '/got/*'):
    raw = open(p, 'rb').read().replace(b'\r\n', b'\n')
    lines = raw.split(b'\n')
    # drop the store's envelope lines
    body = b'\n'.join(l for l in lines if not l.startswith((b'X-Sender:', b'X-Receiver:')))
    to = [l for l in lines if l.lower().startswith(b'to: ')][0][4:].decode()
    msgs[to] = body
def dsn(rcpt, orig, name):
    b = 'b1-' + name
    txt = f"""From: MAILER-DAEMON@mx.rcpt.example (Mail Delivery System)
To: news@sender.example
Subject: Undelivered Mail Returned to Sender
Date: {email.utils.formatdate()}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"
Auto-Submitted: auto-replied

--{b}
Content-Type: text/plain

This is the mail system at host mx.rcpt.example.

<{rcpt}>: host mx.rcpt.example said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown

--{b}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.rcpt.example

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.rcpt.example
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown

--{b}
Content-Type: message/rfc822

""".encode() + orig + f"\n--{b}--\n".encode()
    open(f'{T}/fb/tmp/{name}', 'wb').write(txt)
    os.rename(f'{T}/fb/tmp/{name}', f'{T}/fb/new/{name}')
def arf(rcpt, orig, name):
    b = 'b2-' + name
    txt = f"""From: feedbackloop@isp.example
To: fbl@sender.example
Subject: FW: hello
Date: {email.utils.formatdate()}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="{b}"

--{b}
Content-Type: text/plain

This is an email abuse report for an email message received from IP 127.0.0.1.

--{b}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: isp-fbl/1.0
Version: 1
Original-Mail-From: <news@sender.example>
Original-Rcpt-To: <{rcpt}>
Source-IP: 127.0.0.1

--{b}
Content-Type: message/rfc822

""".encode() + orig + f"\n--{b}--\n".encode()
    open(f'{T}/fb/tmp/{name}', 'wb').write(txt)
    os.rename(f'{T}/fb/tmp/{name}', f'{T}/fb/new/{name}')
dsn('a@rcpt.example', msgs['a@rcpt.example'], '1-bounce-a')
# b: its tracking header's MAC changed by one digit
forged = msgs['b@rcpt.example']
i = forged.index(b'X-Sluice-Track: ')
j = forged.index(b'\n', i)
last = forged[j - 1:j]
forged = forged[:j - 1] + (b'0' if last != b'0' else b'1') + forged[j:]
dsn('b@rcpt.example', forged, '2-forged-b')
arf('c@rcpt.example', msgs['c@rcpt.example'], '3-complaint-c')
open(f'{T}/fb/new/4-garbage', 'wb').write(os.urandom(300))
PY

timeout 60 "$SLUICE" feedback ingest -c "$T/sluice.conf" --maildir "$T/fb" >"$T/ingest.out" 2>"$T/ingest.err" ||
	{ cat "$T/ingest.err" >&2; fail "feedback ingest failed"; }
cat "$T/ingest.out"
jq -e -s '[.[] | select(.result=="bounced" and .rcpt=="a@rcpt.example")] | length == 1 and .[0].class == "bad-mailbox"
          and .[0].job == "spring" and .[0].track == "valid" and (.[0].id | startswith("m1-a"))' "$T/acct.jsonl" >/dev/null ||
	fail "a's bounce recorded with its class, job and message"
jq -e -s '[.[] | select(.result=="complained" and .rcpt=="c@rcpt.example")] | length == 1 and .[0].class == "complaint"' \
	"$T/acct.jsonl" >/dev/null || fail "c's complaint recorded"
[ "$(log_count '.rcpt=="b@rcpt.example" and .result=="bounced"')" = 0 ] || fail "the forged report was acted on"
"$SLUICE" suppress --store "$T/spool/suppress" check a@rcpt.example >/dev/null || fail "a is suppressed"
"$SLUICE" suppress --store "$T/spool/suppress" check c@rcpt.example --domain sender.example >/dev/null ||
	fail "c is suppressed for sender.example"
if "$SLUICE" suppress --store "$T/spool/suppress" check b@rcpt.example >/dev/null; then fail "b (forged report) was suppressed"; fi
[ "$(ls "$T/fb/new" | wc -l)" = 0 ] || fail "every report left new/"
ls "$T/fb/cur" | grep -q '^4-garbage:2,F$' || fail "the garbage is kept in cur/, flagged"
ls "$T/fb/cur" | grep -q '^1-bounce-a:2,S$' || fail "the bounce moved to cur/"
grep -q "1 with a bad tracking header" "$T/ingest.out" || fail "the forged header is counted"
ok "ingest: a bounced (bad-mailbox) and suppressed, c complained and suppressed for sender.example, b's forged report not acted on, garbage kept"

# The next campaign: a and c are suppressed, b and d go.
rm -rf "$T/got"; mkdir -p "$T/got"
for r in a b c d; do inject "m2-$r" summer "$r@rcpt.example"; done
run_sluice -c "$T/sluice.conf" --route "*=127.0.0.1:$PORT" --max-time 30
[ "$(log_count '.job=="summer" and .result=="suppressed"')" = 2 ] || fail "two suppressed lines"
jq -e -s '[.[] | select(.job=="summer" and .result=="suppressed") | .rcpt] | sort == ["a@rcpt.example","c@rcpt.example"]' \
	"$T/acct.jsonl" >/dev/null || fail "a and c are the suppressed ones"
[ "$(log_count '.job=="summer" and .result=="delivered"')" = 2 ] || fail "b and d delivered"
got=$(grep -h "^To: " "$T"/got/* | sort | tr -d '\r' | tr '\n' ' ')
[ "$got" = "To: b@rcpt.example To: d@rcpt.example " ] || fail "the server got: $got"
[ "$(ls "$T/spool/new" | wc -l)" = 0 ] || fail "the suppressed messages left the spool"
ok "next campaign: a and c logged suppressed and never sent; b and d delivered"

# The daemon reads feedback.maildir by itself; a complaint over the
# threshold pauses its job.
cat >"$T/daemon.conf" <<EOF
spool = "$T/spool";
log = "$T/acct.jsonl";
feedback: { maildir = "$T/fb"; secret-file = "$T/secret"; complaint-threshold = 0.1; complaint-min = 1; };
EOF
rm -rf "$T/got"; mkdir -p "$T/got"
start_daemon -c "$T/daemon.conf" --route "*=127.0.0.1:$PORT"
for r in e f; do inject "m3-$r" autumn "$r@rcpt.example"; done
for _ in $(seq 100); do [ "$(log_count '.job=="autumn" and .result=="delivered"')" = 2 ] && break; sleep 0.1; done
[ "$(log_count '.job=="autumn" and .result=="delivered"')" = 2 ] || fail "autumn delivered"
/usr/bin/python3 - "$T" <<'PY'
import sys, os, glob
T = sys.argv[1]
p = [p for p in glob.glob(T + '/got/*') if b'To: e@rcpt.example' in open(p, 'rb').read()][0]
orig = b'\n'.join(l for l in open(p, 'rb').read().replace(b'\r\n', b'\n').split(b'\n')
                  if not l.startswith((b'X-Sender:', b'X-Receiver:')))
b = 'b3'
txt = ("From: fbl@isp.example\nTo: fbl@sender.example\nSubject: complaint\nMIME-Version: 1.0\n"
       f"Content-Type: multipart/report; report-type=feedback-report; boundary=\"{b}\"\n\n--{b}\n"
       "Content-Type: text/plain\n\nabuse report\n\n"
       f"--{b}\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\n"
       "Original-Mail-From: <news@sender.example>\nOriginal-Rcpt-To: <e@rcpt.example>\n\n"
       f"--{b}\nContent-Type: text/rfc822-headers\n\n").encode() + orig.split(b'\n\n')[0] + f"\n\n--{b}--\n".encode()
open(T + '/fb/tmp/5-complaint-e', 'wb').write(txt)
os.rename(T + '/fb/tmp/5-complaint-e', T + '/fb/new/5-complaint-e')
PY
for _ in $(seq 150); do [ "$(log_count '.event=="job-pause" and .job=="autumn"')" = 1 ] && break; sleep 0.1; done
jq -e -s '[.[] | select(.event=="job-pause" and .job=="autumn")] | length == 1 and .[0].rule == "complaint-rate"' \
	"$T/acct.jsonl" >/dev/null || { cat "$T/d.err" >&2; fail "the complaint rate paused job autumn"; }
[ "$(log_count '.result=="complained" and .rcpt=="e@rcpt.example"')" = 1 ] || fail "e's complaint recorded by the daemon"
"$SLUICE" suppress --store "$T/spool/suppress" check e@rcpt.example --domain sender.example >/dev/null ||
	fail "e is suppressed"
inject m3-g autumn g@rcpt.example
for _ in $(seq 100); do [ "$(log_count '.rcpt=="g@rcpt.example" and .result=="deferred"')" -ge 1 ] && break; sleep 0.1; done
jq -e -s '[.[] | select(.rcpt=="g@rcpt.example")][0].response | test("paused")' "$T/acct.jsonl" >/dev/null ||
	fail "a new message of the paused job waits"
kill -TERM "$DAEMON"; wait "$DAEMON" || true
grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/d.err" && { cat "$T/d.err" >&2; fail "sanitizer report"; }
ok "daemon: feedback.maildir ingested within seconds; the complaint rate (1 of 2 > 10%) paused job autumn; its next message waits"

# A suppression list that cannot be used stops the start, with a clear
# error: never "nothing suppressed".
mkdir -p "$T/corrupt"
head -c 65536 /dev/urandom >"$T/corrupt/data.mdb"
printf 'suppression-list = "%s";\n' "$T/corrupt" >"$T/corrupt.conf"
set +e
timeout 30 "$SLUICE" run -c "$T/corrupt.conf" --spool "$T/spool2" --route "*=127.0.0.1:$PORT" --drain >"$T/c.out" 2>"$T/c.err"
rc=$?
printf 'suppression-list = "%s";\n' "$T/nowhere" >"$T/missing.conf"
timeout 30 "$SLUICE" run -c "$T/missing.conf" --spool "$T/spool2" --route "*=127.0.0.1:$PORT" --drain >"$T/m.out" 2>"$T/m.err"
rc2=$?
set -e
[ "$rc" != 0 ] && grep -q "suppression-list" "$T/c.err" && grep -q "data.mdb" "$T/c.err" ||
	{ cat "$T/c.err" >&2; fail "a corrupt list: exit $rc"; }
[ "$rc2" != 0 ] && grep -q "nowhere" "$T/m.err" || { cat "$T/m.err" >&2; fail "a missing list: exit $rc2"; }
ok "a corrupt or missing suppression list stops the start with an error naming it"
