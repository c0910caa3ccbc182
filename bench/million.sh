# bench/million.sh [DIR] - a spool of 1,000,000 files (2 KB) drained into
# mockmx on loopback: throughput per 100,000 messages (does it fall while
# the directory is huge?), peak RSS. DIR defaults to /dev/shm/sluice-m1
# (3 GB of tmpfs); give a disk directory to see the disk instead. Not in CI.
set -e
D=${1:-/dev/shm/sluice-m1}; rm -rf $D; mkdir -p $D
cd "$(dirname "$0")/.."
SECONDS=0
./sluice spoolgen --spool $D/sp --count 1000000 --size 2000 --seed 7 >/dev/null
echo "spoolgen done in ${SECONDS} s"
./sluice mockmx --listen 127.0.0.1:29940 --threads 1 --max-time 600 >/dev/null 2>&1 &
MX=$!
sleep 0.3
/usr/bin/time -f "maxrss %M KB" ./sluice run --drain --spool $D/sp --route '*=127.0.0.1:29940' --log $D/acct.jsonl --max-time 500 > $D/run.out 2>&1 || true
cat $D/run.out
kill $MX
python3 - $D/acct.jsonl <<'PY'
import sys, datetime, json
ts = []
for line in open(sys.argv[1]):
    i = line.find('"ts":"'); ts.append(line[i+6:i+29])
ts.sort()
def sec(t): return datetime.datetime.strptime(t, '%Y-%m-%dT%H:%M:%S.%f').timestamp()
first = sec(ts[0]); n = len(ts)
print("lines", n)
for k in range(0, n, n // 10):
    j = min(n - 1, k + n // 10 - 1)
    print(f"messages {k:>7}-{j:>7}: {(j - k + 1) / max(1e-3, sec(ts[j]) - sec(ts[k])):>8.0f} msgs/s")
PY
rm -rf $D
