# Job files: rows that must be refused, rows that must go, and jobs that
# must be refused whole. One `sluice run --drain` into mockmx --store (exact
# bytes) takes three kinds of job file (tests/job_cases.py):
#   refused.job  88 rows (22 kinds x 4, LF and CRLF records, empty lines):
#                header injection through a quoted value holding LF, CR,
#                CRLF or NUL used in Subject, To or X-Tag; a NUL in the body;
#                bad emails (no @, a space, <>, no domain, empty); an empty
#                required field; too few and too many fields; and good rows:
#                a line break in a value used only in the body, CR/LF/NUL
#                in a column no field uses, 8-bit values (RFC 2047), quoted
#                commas and quotes. Every injection attempt names a header
#                X-Injected-*.
#   long.job     4 rows, the second a 70,000-byte record (over 64 KiB).
#   big.job      3 rows, the second rendered to 72 MB (over the default
#                max-message-bytes, 64 MiB).
#   bad-*.job    heads and column lines that refuse the job as a whole
#                (no X-Job, version 2, an unknown or repeated head line,
#                no X-Sluice-Job line, {{x}} without a default where x is
#                not a column, no email column, a repeated or bad column
#                name, X-Template-Bytes past the end of the file).
# Asserts: the independent renderer (tests/job_render.py) agrees with the
# generator's intent for every row; each refused row has exactly one log
# line, "bounced" with "code":null and a response starting "line L:" with
# L the record's first line in the file, and is never sent; every good row
# is delivered once, byte for byte as the renderer says (mod the
# Message-ID token), with "file", "id" (NAME#ROW), "job" and "row" in its
# log line; no stored message holds an X-Injected header name anywhere,
# and the body-only line break stays in the body; each bad job is in
# SPOOL/bad/ with a .why and nothing of it is sent or logged as delivered;
# SPOOL/new, active and state are empty at the end.
source "$(dirname "$0")/../lib.sh"
set -e
python3 "$HERE/job_render.py" --selftest >/dev/null || fail "job_render.py --selftest"
python3 "$HERE/job_cases.py" refused "$T/sp" refused.job >/dev/null
python3 "$HERE/job_cases.py" long "$T/sp" long.job >/dev/null
python3 "$HERE/job_cases.py" big "$T/sp" big.job >/dev/null
BAD=$(python3 "$HERE/job_cases.py" badhead "$T/sp")

# The renderer's view, checked against what the generator meant.
for j in refused long big; do
	python3 "$HERE/job_render.py" "$T/$j.job" "$T/want-$j" >/dev/null || fail "renderer refused $j.job"
	got=$( (awk '{print $1" bad"}' "$T/want-$j/refused.txt"; awk '{print $1" good"}' "$T/want-$j/envelope.tsv") | sort -n)
	[ "$got" = "$(sort -n "$T/$j.job.intent")" ] || fail "$j.job: the renderer disagrees with the generator's intent"
done
nref=$(wc -l <"$T/want-refused/refused.txt"); ngood=$(wc -l <"$T/want-refused/envelope.tsv")
[ "$nref" -ge 60 ] && [ "$ngood" -ge 20 ] || fail "refused.job: $nref refused, $ngood good rows?"

port=$(free_port)
start_mockmx "$port" --store "$T/store"
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 60
stop_mockmx
grep -q "ERROR: .*Sanitizer\|runtime error:" "$T/mx-$port.err" && fail "mockmx: sanitizer report"
jq . "$T/acct.jsonl" >/dev/null || fail "accounting log is not valid JSON"

# check_job NAME SENDER JOBID: log lines and stored messages of one job.
check_job() {
	local name=$1 sender=$2 jobid=$3 want=$T/want-${1%.job} bad=0
	# One line per row, nothing but the expected outcomes.
	jq -r --arg f "$name" 'select(.file==$f) | [.row, .result, (.code|tostring), .id, .job,
		((.response // "") | capture("^line (?<l>[0-9]+):").l // "-")] | @tsv' "$T/acct.jsonl" \
		| sort -n >"$T/$name.log"
	local nrows
	nrows=$(( $(wc -l <"$want/refused.txt") + $(wc -l <"$want/envelope.tsv") ))
	[ "$(wc -l <"$T/$name.log")" -eq "$nrows" ] \
		|| { head "$T/$name.log"; fail "$name: $(wc -l <"$T/$name.log") log lines, want $nrows (one per row)"; }
	[ -z "$(cut -f1 "$T/$name.log" | uniq -d)" ] || fail "$name: rows with more than one line: $(cut -f1 "$T/$name.log" | uniq -d | head -5 | tr '\n' ' ')"
	while read -r row line _; do
		printf '%s\tbounced\tnull\t%s#%s\t%s\t%s\n' "$row" "$name" "$row" "$jobid" "$line"
	done <"$want/refused.txt" >"$T/$name.want"
	while read -r row _; do
		printf '%s\tdelivered\t250\t%s#%s\t%s\t-\n' "$row" "$name" "$row" "$jobid"
	done <"$want/envelope.tsv" >>"$T/$name.want"
	sort -n "$T/$name.want" -o "$T/$name.want"
	if ! diff "$T/$name.want" "$T/$name.log" >"$T/$name.diff"; then
		echo "  $name: log lines (row result code id job line-of-response), < want > got:"
		head -20 "$T/$name.diff"
		fail "$name: accounting log differs from the expected outcomes"
	fi
	ok "$name: $(wc -l <"$want/refused.txt") rows refused (bounced, code null, right line), $(wc -l <"$want/envelope.tsv") delivered"
	python3 "$HERE/job_render.py" --compare --sender "$sender" "$want" "$T/store" >"$T/$name.cmp" \
		|| { cat "$T/$name.cmp"; fail "$name: received messages differ from the renderer's"; }
	ok "$name: $(wc -l <"$want/envelope.tsv") messages byte-exact"
}
check_job refused.job bounces@shop.example refused-test
check_job big.job bounces@big.example big-test

# Nothing injected reached the server; the body-only line break stayed in the body.
! grep -rl "X-Injected" "$T/store" >/dev/null || fail "an injected header reached the server: $(grep -rl X-Injected "$T/store" | head -3)"
python3 - "$T/store" <<'PY' || fail "a value with a line break made a header field"
import os, sys
n = 0
for f in os.listdir(sys.argv[1]):
    m = open(os.path.join(sys.argv[1], f), 'rb').read()
    m = m[m.index(b'\nMessage-ID:') + 1:] if not m.startswith(b'Message-ID:') else m
    head, sep, body = m.partition(b'\r\n\r\n')
    if b'X-Not-Injected' in head:
        sys.exit(f'{f}: X-Not-Injected in the header')
    n += b'\r\nX-Not-Injected: body only\r\n' in body
if n != 4:
    sys.exit(f'{n} bodies with the body-only value, want 4')
PY
ok "no X-Injected header anywhere; the body-only line break is in the body (4 rows)"

# Jobs refused whole: in bad/ with a reason, nothing sent, nothing delivered.
for b in $BAD; do
	[ -f "$T/sp/bad/$b" ] && [ -s "$T/sp/bad/$b.why" ] || fail "$b: not in SPOOL/bad with a .why ($(ls "$T/sp/bad" | tr '\n' ' '))"
	[ "$(jq -c --arg f "$b" 'select(.file==$f and .result=="delivered")' "$T/acct.jsonl" | wc -l)" -eq 0 ] \
		|| fail "$b: delivered lines for a refused job"
done
! grep -l "^X-Sender: <a@b.example>" "$T"/store/* >/dev/null 2>&1 || fail "a message of a refused job reached the server"
ok "$(echo $BAD | wc -w) bad jobs in SPOOL/bad with a .why ($(head -c 80 "$T/sp/bad/bad-notcolumn.job.why"))"

# Last, as its failure would hide the rest: a record over 64 KiB is one
# refused row, and the rows after it keep their numbers.
check_job long.job bounces@long.example long-test

[ "$(spool_files "$T/sp/new")" -eq 0 ] || fail "SPOOL/new not empty: $(ls "$T/sp/new" | head)"
[ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "SPOOL/active not empty"
[ "$(spool_files "$T/sp/state")" -eq 0 ] || fail "SPOOL/state not empty: $(ls "$T/sp/state" | head)"
ok "spool empty (new, active, state)"
