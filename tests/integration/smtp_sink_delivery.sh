# Delivers to Postfix's smtp-sink (a real, independent SMTP server; no
# CHUNKING, so DATA with dot-stuffing) and compares its dumps with the
# spool input, byte for byte after smtp-sink's own line-ending change.
source "$(dirname "$0")/../lib.sh"
set -e
command -v smtp-sink >/dev/null || [ -x /usr/sbin/smtp-sink ] || fail "smtp-sink missing (apt-get install postfix)"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
N=$((1000 / SCALE))
"$SLUICE" spoolgen --spool "$T/sp" --count "$N" --domains 50 --seed 11 >/dev/null
cp -r "$T/sp/new" "$T/orig"
want=$(count_rcpts "$T/sp")
mkdir -m 777 "$T/dump"
port=$(free_port)
timeout 120 "$SINK" -u nobody -d "$T/dump/%Y%m%d%H%M%S." "127.0.0.1:$port" 256 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$port" --shards 2 --max-time 120
[ "$RC" -eq 0 ] || { cat "$T/run.out" "$T/run.err"; fail "exit $RC"; }
check_log_final "$want"
# smtp-sink writes the dump after its 250: give it a moment for the last ones.
for _ in $(seq 50); do [ "$(ls "$T/dump" | wc -l)" -ge "$N" ] && break; sleep 0.1; done
[ "$(ls "$T/dump" | wc -l)" -eq "$N" ] || fail "smtp-sink dumped $(ls "$T/dump" | wc -l) messages, want $N"
python3 "$HERE/check_bodies.py" "$T/orig" "$T/dump" smtp-sink || fail "bodies differ"
ok "$N messages to smtp-sink, bodies identical"
