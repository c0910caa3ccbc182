# Job files, byte for byte: a job of 100,000 rows (100,000 / SCALE) over
# five domains (tests/job_cases.py exact: substitution with and without
# defaults, a name that is not a column with a default, CSV quoting with
# commas, "" and line breaks, LF and CRLF records, empty lines, a BOM, a
# last record without a line end, 8-bit display names and subjects that
# need RFC 2047 in several pieces, a folded template field, dot lines, a
# template Message-ID to drop, no Date) and a second job of 2,000 rows
# made by `sluice inject --template --recipients` from the same template
# go with `sluice run --drain` to Postfix's smtp-sink (a real, independent
# server; -d dumps one file per message: 100,000 dumps take about 20 s on
# 2 cores, so smtp-sink takes the whole run; the dumps are on /dev/shm
# when it is there, to spare the disk). Every received message must equal
# what the independent renderer (tests/job_render.py, from the README
# alone) makes of the job file, byte for byte, except the Message-ID's
# TOKEN (16 lowercase hex digits, the same for the whole job, another for
# the other job) and the
# Date sluice adds (an RFC 5322 date), with the right MAIL FROM and RCPT
# TO; the accounting log has exactly one line per row, "delivered", with
# "file", "id" (NAME#ROW), "job" and "row"; the job files are gone from
# SPOOL/new and SPOOL/active and SPOOL/state are empty.
# CORRUPT_ROW=R changes one byte of row R's CSV value in the renderer's
# copy of the job file: the test must then fail.
source "$(dirname "$0")/../lib.sh"
set -e
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || fail "smtp-sink missing (apt-get install postfix)"
N=$((100000 / SCALE)); M=$((2000 / SCALE))
python3 "$HERE/job_render.py" --selftest >/dev/null || fail "job_render.py --selftest"

python3 "$HERE/job_cases.py" exact "$T/sp" exact.job "$N" >/dev/null
python3 "$HERE/job_cases.py" exact-parts "$T/parts" "$M"
inj=$(timeout 60 "$SLUICE" inject --spool "$T/sp" --from bounces@inject.example --job inject-2026 \
	--pool warm --template "$T/parts/template.eml" --recipients "$T/parts/recipients.csv")
inj=$(basename "$inj")
case $inj in *.job) ;; *) fail "sluice inject --template printed '$inj', not a .job name" ;; esac
[ -f "$T/sp/new/$inj" ] || fail "sluice inject: $inj not in SPOOL/new"
cp "$T/sp/new/$inj" "$T/inject.job"
if [ -n "${CORRUPT_ROW:-}" ]; then
	python3 - "$T/exact.job" "$CORRUPT_ROW" <<'PY'
import sys
p, r = sys.argv[1], sys.argv[2]
d = open(p, 'rb').read()
i = d.index(b'C-%06d' % int(r))
open(p, 'wb').write(d[:i] + b'Z' + d[i + 1:])
PY
	echo "  (CORRUPT_ROW: row $CORRUPT_ROW changed in the renderer's copy; this run must fail)"
fi

DUMP=$T/dump
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	DUMP=$(mktemp -d /dev/shm/sluice-job-exact.XXXXXX)
	trap 'rc=$?; rm -rf "$DUMP"; (exit $rc); cleanup' EXIT
fi
mkdir -p "$DUMP"; chmod 777 "$DUMP"
port=$(free_port)
timeout 280 "$SINK" -u nobody -d "$DUMP/%H%M%S." "127.0.0.1:$port" 256 &
PIDS+=($!)
sink=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
start=$(date +%s)
# The injected job says X-Pool: warm (a pool must exist: an unknown one is deferred)
echo 'pools = ( { name = "warm"; ips = ( { ip = "127.0.0.1"; } ); } );' >"$T/warm.conf"
run_sluice -c "$T/warm.conf" --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 240
[ "$RC" -eq 0 ] || { tail -20 "$T/run.err"; fail "exit $RC"; }
ok "$((N + M)) rows delivered in $(( $(date +%s) - start )) s"
# smtp-sink finishes a dump after its 250: wait until the count settles.
want=$((N + M)); prev=-1
for _ in $(seq 100); do
	n=$(ls "$DUMP" | wc -l)
	[ "$n" -ge "$want" ] && [ "$n" -eq "$prev" ] && break
	prev=$n
	sleep 0.2
done
kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true
[ "$(ls "$DUMP" | wc -l)" -eq "$want" ] || fail "smtp-sink dumped $(ls "$DUMP" | wc -l) messages, want $want"

# The accounting log: one delivered line per row, with file, id, job, row.
jq . "$T/acct.jsonl" >/dev/null || fail "accounting log is not valid JSON"
check_rows() {
	local name=$1 job=$2 n=$3 bad
	bad=$(jq -r --arg f "$name" --arg j "$job" 'select(.file==$f) |
		select(.result!="delivered" or .job!=$j or .id!=($f+"#"+(.row|tostring)) or (.row|type)!="number")
		| .id' "$T/acct.jsonl" | head -5)
	[ -z "$bad" ] || fail "$name: lines that are not delivered, or with a wrong job/id/row: $bad"
	jq -r --arg f "$name" 'select(.file==$f) | .row' "$T/acct.jsonl" | sort -n >"$T/$name.rows"
	seq 1 "$n" | cmp -s - "$T/$name.rows" \
		|| fail "$name: delivered rows are not exactly 1..$n once each ($(wc -l <"$T/$name.rows") lines, dups: $(uniq -d "$T/$name.rows" | head -3 | tr '\n' ' '))"
}
check_rows exact.job exact-2026 "$N"
check_rows "$inj" inject-2026 "$M"
[ "$(jq -c 'select(.file==null or .row==null)' "$T/acct.jsonl" | wc -l)" -eq 0 ] || fail "log lines without file or row"
ok "accounting log: one delivered line per row, with file, id, job, row"

# Byte for byte against the independent renderer.
python3 "$HERE/job_render.py" --compare --sender bounces@shop.example "$T/exact.job" "$DUMP" >"$T/cmp1" \
	|| { cat "$T/cmp1"; fail "exact.job: received messages differ from the renderer's"; }
python3 "$HERE/job_render.py" --compare --sender bounces@inject.example "$T/inject.job" "$DUMP" >"$T/cmp2" \
	|| { cat "$T/cmp2"; fail "$inj: received messages differ from the renderer's"; }
ok "byte-exact: $(cat "$T/cmp1")"
t1=$(sed -n 's/.*, token \([0-9a-f]*\)$/\1/p' "$T/cmp1"); t2=$(sed -n 's/.*, token \([0-9a-f]*\)$/\1/p' "$T/cmp2")
[ -n "$t1" ] && [ -n "$t2" ] && [ "$t1" != "$t2" ] || fail "two job files, Message-ID tokens '$t1' and '$t2': want two different ones"
ok "byte-exact (sluice inject --template): $(cat "$T/cmp2")"

[ ! -e "$T/sp/new/exact.job" ] && [ ! -e "$T/sp/new/$inj" ] || fail "a job file is still in SPOOL/new"
[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "spool not empty"
[ "$(spool_files "$T/sp/state")" -eq 0 ] || fail "SPOOL/state not empty: $(ls "$T/sp/state" | head -3)"
ok "job files gone, SPOOL/state empty"
