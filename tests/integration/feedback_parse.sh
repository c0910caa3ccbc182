#!/bin/bash
# tests/integration/feedback_parse.sh - `sluice feedback parse` over the
# fixtures of tests/fixtures/feedback/ (real mailers' bounces, feedback
# loops' complaints, auto-replies, broken and garbage input): each file's
# JSON lines equal its NAME.expect on the fields listed there, in order;
# the table says the same; the tracking header ties a report back only
# when valid (headers made here under a fresh secret, following
# dkim/track.h: valid, forged, malformed, a wrong secret, no secret, the
# secret from -c sluice.conf); a file that cannot be read is exit 1 (the
# others still printed), a usage error exit 2.
set -eu
. "$(dirname "$0")/../lib.sh"
FX=$(cd "$HERE/fixtures/feedback" && pwd)

# ---- every fixture against its .expect ----
n=0
for f in "$FX"/*.eml "$FX"/garbage.bin; do
	exp="${f%.*}.expect"
	[ -f "$exp" ] || fail "$(basename "$f"): no $(basename "$exp")"
	"$SLUICE" feedback parse --json --secret-file "$FX/test.secret" "$f" >"$T/out.json" 2>"$T/out.err" ||
		fail "$(basename "$f"): exit $?: $(cat "$T/out.err")"
	[ -s "$T/out.err" ] && fail "$(basename "$f"): said on stderr: $(cat "$T/out.err")"
	python3 - "$f" "$exp" "$T/out.json" <<'PY' || exit 1
import json, sys
name, exp, got = sys.argv[1], sys.argv[2], sys.argv[3]
want = [json.loads(l) for l in open(exp) if l.strip()]
have = [json.loads(l) for l in open(got)]
def bad(msg):
    print(f"FAIL: {name.rsplit('/', 1)[-1]}: {msg}", file=sys.stderr)
    sys.exit(1)
if len(want) != len(have):
    bad(f"{len(have)} lines, {len(want)} expected:\n" + "\n".join(json.dumps(h) for h in have))
for i, (w, h) in enumerate(zip(want, have)):
    if h.get("file") != name:
        bad(f"line {i + 1}: file {h.get('file')!r}")
    for k, v in w.items():
        if h.get(k, "(absent)") != v:
            bad(f"line {i + 1}: {k} is {h.get(k, '(absent)')!r}, expected {v!r}")
    if h["track"] != "valid" and (h["id"] or h["job"] or h["source"]):
        bad(f"line {i + 1}: id/job/source without a valid tracking header")
PY
	n=$((n + 1))
done
[ "$n" -ge 20 ] || fail "only $n fixtures"
ok "$n fixtures: type, rcpt, action, status, code, class, hard, feedback type and tie-back as expected"

# ---- the table: a head, one row per JSON line, the same verdicts ----
"$SLUICE" feedback parse --secret-file "$FX/test.secret" "$FX"/*.eml "$FX/garbage.bin" >"$T/table.txt"
"$SLUICE" feedback parse --json --secret-file "$FX/test.secret" "$FX"/*.eml "$FX/garbage.bin" >"$T/all.json"
head -n 1 "$T/table.txt" | grep -q "^FILE .*TYPE .*RCPT .*ACTION .*STATUS .*CODE .*CLASS .*HARD .*TRACK" || fail "table head"
[ $(($(wc -l <"$T/table.txt") - 1)) -eq "$(wc -l <"$T/all.json")" ] || fail "table rows != JSON lines"
grep -q "postfix-multi.eml dsn  *bob@example.net  *failed  *5.1.1  *550  *bad-mailbox  *yes  *none" "$T/table.txt" ||
	fail "table: postfix's bob"
grep -q "postfix-multi.eml dsn  *carol@example.net  *delayed  *4.2.2  *452  *mailbox-full  *no " "$T/table.txt" ||
	fail "table: postfix's carol"
grep -q "arf-yahoo-cfl.eml arf  *-  .* complaint  *yes  *valid  *id 20261201T0930-4f2a~17 job spring-sale source 192.0.2.10" \
	"$T/table.txt" || fail "table: the redacted complaint tied back"
grep -q "garbage.bin unknown " "$T/table.txt" || fail "table: garbage"
ok "table mode: same rows as the JSON lines"

# ---- tie-back: tracking headers made here, under a fresh secret ----
head -c 32 /dev/urandom | base64 >"$T/secret"
head -c 32 /dev/urandom | base64 >"$T/other-secret"
python3 - "$T" "$FX/rfc3464-tracked.eml" <<'PY'
import base64, hashlib, hmac, re, sys
T, src = sys.argv[1], sys.argv[2]
secret = open(T + "/secret", "rb").read().rstrip(b"\r\n")
def b64u(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
def track(id, rcpt, source, job):  # dkim/track.h
    mac = hmac.new(secret, b"\0".join(x.encode() for x in ("1", id, rcpt, source, job)), hashlib.sha256)
    return "1." + ".".join(b64u(x) for x in (id, rcpt, source, job)) + "." + mac.digest()[:12].hex()
good = track("t1~7", "leo@example.org", "2001:db8::25", "autumn-sale")
forged = good[:-1] + ("0" if good[-1] != "0" else "1")
other_id = good.split(".")
other_id[1] = b64u("t1~8")  # another message's id under the same MAC
variants = {"valid": good, "forged": forged, "forged-id": ".".join(other_id),
            "malformed": "1.dDE.x", "none": None}
msg = open(src, "rb").read()
for name, v in variants.items():
    m = re.sub(rb"X-Sluice-Track: [^\n]*\n(?:[ \t][^\n]*\n)*",
               b"" if v is None else b"X-Sluice-Track: " + v.encode() + b"\n", msg)
    open(f"{T}/track-{name}.eml", "wb").write(m)
PY
tie() { # tie FILE [args]: the first line's track id job source track_rcpt
	"$SLUICE" feedback parse --json "$@" | head -n 1 | jq -r '[.track, .id, .job, .source, .track_rcpt] | map(. // "null") | join(" ")'
}
got=$(tie "$T/track-valid.eml" --secret-file "$T/secret")
[ "$got" = "valid t1~7 autumn-sale 2001:db8::25 leo@example.org" ] || fail "valid header: $got"
for v in forged forged-id; do
	got=$(tie "$T/track-$v.eml" --secret-file "$T/secret")
	[ "$got" = "forged null null null null" ] || fail "$v header: $got"
done
got=$(tie "$T/track-malformed.eml" --secret-file "$T/secret")
[ "$got" = "malformed null null null null" ] || fail "malformed header: $got"
got=$(tie "$T/track-none.eml" --secret-file "$T/secret")
[ "$got" = "none null null null null" ] || fail "no header: $got"
got=$(tie "$T/track-valid.eml" --secret-file "$T/other-secret")
[ "$got" = "forged null null null null" ] || fail "another secret: $got"
got=$(tie "$T/track-valid.eml")
[ "$got" = "unchecked null null null null" ] || fail "no secret: $got"
printf 'feedback: { secret-file = "%s"; };\n' "$T/secret" >"$T/sluice.conf"
got=$(tie "$T/track-valid.eml" -c "$T/sluice.conf")
[ "$got" = "valid t1~7 autumn-sale 2001:db8::25 leo@example.org" ] || fail "secret from -c: $got"
# the verdict never depends on the tie-back: a forged header still classes the bounce
"$SLUICE" feedback parse --json --secret-file "$T/secret" "$T/track-forged.eml" |
	jq -e '.class == "bad-mailbox" and .hard == true and .rcpt == "leo@example.org"' >/dev/null || fail "forged: verdict"
ok "tie-back: valid (id, job, source, recipient), forged, another message's id, malformed, none, wrong secret, no secret, -c"

# ---- standard input, a file past 10 MiB ----
got=$("$SLUICE" feedback parse --json - <"$FX/qmail.eml" | jq -r '.rcpt' | tr '\n' ' ')
[ "$got" = "henry@example.net ivan@mail.example.net " ] || fail "standard input: $got"
{ cat "$FX/yahoo.eml"; head -c $((11 << 20)) /dev/zero | tr '\0' 'x'; } >"$T/big.eml"
"$SLUICE" feedback parse --json "$T/big.eml" >"$T/big.json" 2>"$T/big.err" || fail "big file: exit $?"
grep -q "longer than 10485760 bytes, only those read" "$T/big.err" || fail "big file: nothing said: $(cat "$T/big.err")"
jq -e '.rcpt == "kate@example.com"' "$T/big.json" >/dev/null || fail "big file: its report"
ok "standard input; a file past 10 MiB read up to it, said on stderr"

# ---- exit statuses ----
set +e
out=$("$SLUICE" feedback parse --json "$FX/qmail.eml" "$T/none.eml" "$T" "$FX/gmail.eml" 2>"$T/err"); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "unreadable files: exit $rc"
grep -q "$T/none.eml: No such file or directory" "$T/err" && grep -q "$T: Is a directory" "$T/err" ||
	fail "unreadable files: $(cat "$T/err")"
[ "$(echo "$out" | jq -r .rcpt | tr '\n' ' ')" = "henry@example.net ivan@mail.example.net jack@example.com " ] ||
	fail "the readable files are still read: $out"
printf 'tooshort\n' >"$T/short.secret"
echo 'classes = ( { name = "x"; class = "no-such-class"; } );' >"$T/bad.rules"
for args in "" "parse" "parse --json" "parse --frob $FX/qmail.eml" "frob $FX/qmail.eml" \
	"parse --secret-file $T/short.secret $FX/qmail.eml" "parse --secret-file $T/nothing $FX/qmail.eml" \
	"parse --rules $T/bad.rules $FX/qmail.eml" "parse --rules $T/nothing $FX/qmail.eml"; do
	set +e
	# shellcheck disable=SC2086
	"$SLUICE" feedback $args >"$T/out" 2>"$T/err"; rc=$?
	set -e
	[ "$rc" -eq 2 ] || fail "feedback $args: exit $rc, 2 expected: $(cat "$T/err")"
	[ -s "$T/out" ] && fail "feedback $args: printed $(cat "$T/out")"
	[ -s "$T/err" ] || fail "feedback $args: said nothing"
done
"$SLUICE" feedback parse --help | grep -q "usage: sluice feedback parse" || fail "parse --help"
ok "exit 1 for unreadable files (the others read), 2 for usage errors, bad secrets and bad rules"
