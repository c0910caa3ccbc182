#!/usr/bin/env bash
# bench/bench.sh - `make bench`: sluice against Postfix's smtp-source, both
# sending to the same sluice mockmx in the same run, 3 KB messages, 50
# domains. Prints a table and writes bench/results/<timestamp>.json. Every
# sluice figure stands beside its peer as a ratio: machines are noisy.
# Loopback only; every process bounded by timeout.
#   BENCH_N       messages in the sluice drain (default 200000; quick 20000)
#   BENCH_PEER_N  messages smtp-source sends (default 100000; quick 20000)
#   BENCH_SHARDS  sluice shards (default: online CPUs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SLUICE=$ROOT/sluice
if [ -n "${BENCH_QUICK:-}" ]; then N=${BENCH_N:-20000}; PEER_N=${BENCH_PEER_N:-20000}
else N=${BENCH_N:-200000}; PEER_N=${BENCH_PEER_N:-100000}; fi
SHARDS=${BENCH_SHARDS:-$(nproc)}
SIZE=${BENCH_SIZE:-3000}
DOMAINS=${BENCH_DOMAINS:-50}
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
W=$(mktemp -d /tmp/sluice-bench.XXXXXX)
# The spool as a producer leaves it: files just written (in the page cache).
# BENCH_SPOOL_DIR puts it elsewhere, e.g. on tmpfs (/dev/shm) or a synced disk.
SPOOL=${BENCH_SPOOL_DIR:-$W/spool}
PIDS=()
cleanup() { set +e; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$W" "$SPOOL"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cpu_of PID: user+system seconds of a running process.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

MX_PORT=$(port)
timeout 3000 "$SLUICE" mockmx --listen "127.0.0.1:$MX_PORT" --max-time 2900 >"$W/mx.json" 2>"$W/mx.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$W/mx.err" 2>/dev/null && break; sleep 0.05; done
MX=$(pgrep -P "${PIDS[0]}")   # mockmx itself, not its timeout wrapper

echo "bench: generating $N messages of $SIZE bytes over $DOMAINS domains..." >&2
"$SLUICE" spoolgen --spool "$SPOOL" --count "$N" --size "$SIZE" --domains "$DOMAINS" >/dev/null

# Peer: smtp-source, 20 sessions, connection reuse (-d), no pipelining.
echo "bench: smtp-source -d -s 20 -l $SIZE -m $PEER_N -> mockmx..." >&2
c0=$(cpu_of $MX); t0=$(date +%s.%N)
timeout 600 "$SOURCE" -d -s 20 -l "$SIZE" -m "$PEER_N" -f bench@sender.example -t user@d0.example "127.0.0.1:$MX_PORT"
t1=$(date +%s.%N); c1=$(cpu_of $MX)
peer_secs=$(echo "$t1 - $t0" | bc -l); peer_mx_cpu=$(echo "$c1 - $c0" | bc -l)

# sluice: drain the spool into the same mockmx.
echo "bench: sluice run --drain --shards $SHARDS -> mockmx..." >&2
c0=$(cpu_of $MX)
/usr/bin/time -f '%e %U %S %M' -o "$W/time" timeout 1200 "$SLUICE" run --drain --spool "$SPOOL" \
	--route "*=127.0.0.1:$MX_PORT" --shards "$SHARDS" --log "$W/acct.jsonl" --max-time 1100 >"$W/run.out"
c1=$(cpu_of $MX)
read -r s_secs s_user s_sys s_rss < "$W/time"
s_mx_cpu=$(echo "$c1 - $c0" | bc -l)
delivered=$(grep -c '"result":"delivered"' "$W/acct.jsonl" || true)
[ "$delivered" -eq "$N" ] || { cat "$W/run.out"; echo "bench: only $delivered of $N delivered" >&2; exit 1; }

mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$N" "$PEER_N" "$peer_secs" "$peer_mx_cpu" "$s_secs" "$s_user" "$s_sys" "$s_rss" "$s_mx_cpu" \
	"$SHARDS" "$SIZE" "$DOMAINS" "bench/results/$stamp.json" <<'PY'
import json, sys, os, platform
(n, pn, ps, pmx, ss, su, sy, rss, smx, shards, size, doms, out) = sys.argv[1:]
n, pn, ps, pmx, ss, su, sy, smx = int(n), int(pn), float(ps), float(pmx), float(ss), float(su), float(sy), float(smx)
peer_rate, s_rate = pn / ps, n / ss
cpu = open('/proc/cpuinfo').read().split('model name')[1].split('\n')[0].strip(': \t')
res = {
  'machine': {'cpus': os.cpu_count(), 'model': cpu, 'kernel': platform.release()},
  'scenario': {'size': int(size), 'domains': int(doms), 'shards': int(shards), 'sink': 'sluice mockmx (1 thread)'},
  'smtp_source': {'messages': pn, 'seconds': round(ps, 3), 'msgs_per_s': round(peer_rate), 'mockmx_cpu_s': round(pmx, 2),
                  'mockmx_cpu_us_per_msg': round(pmx / pn * 1e6, 1)},
  'sluice': {'messages': n, 'seconds': round(ss, 3), 'msgs_per_s': round(s_rate), 'cpu_s': round(su + sy, 2),
             'cpu_us_per_msg': round((su + sy) / n * 1e6, 1), 'peak_rss_kb': int(rss),
             'mockmx_cpu_s': round(smx, 2), 'mockmx_cpu_us_per_msg': round(smx / n * 1e6, 1)},
  'ratio_sluice_to_smtp_source': round(s_rate / peer_rate, 2),
}
json.dump(res, open(out, 'w'), indent=1)
print(f"\n{'scenario: 3 KB-ish messages, %s domains, all to one mockmx' % doms}")
print(f"{'sender':<34}{'messages':>10}{'msgs/s':>10}{'sender cpu':>12}{'mockmx cpu':>12}")
print(f"{'smtp-source -d -s 20 (peer)':<34}{pn:>10}{peer_rate:>10.0f}{'-':>12}{pmx:>11.2f}s")
print(f"{'sluice run --drain --shards %s' % shards:<34}{n:>10}{s_rate:>10.0f}{su+sy:>11.2f}s{smx:>11.2f}s")
print(f"ratio sluice / smtp-source: {s_rate/peer_rate:.2f}x   (sluice peak RSS {int(rss)//1024} MB)")
print(f"results: {out}")
PY
