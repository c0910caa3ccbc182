# A SIGHUP storm while mail flows: every reload alternates the route
# between two servers, so retired destinations and old configurations come
# and go under traffic. Old configurations are freed once no shard uses
# them: memory stays flat (an idle daemon used to keep every one until
# exit, +2.5 KB per SIGHUP), and under ASan any use of a freed one would
# be reported. Every message is delivered exactly once.
source "$(dirname "$0")/../lib.sh"
set -e
a=$(free_port); start_mockmx "$a"
b=$(free_port); start_mockmx "$b"
conf() {
	cat >"$T/sluice.conf" <<CONF
delivery: { max-connections = 2; };
routes = ( { domain = "*"; host = "127.0.0.1"; port = $1; } );
CONF
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status"; }
conf "$a"
mkdir -p "$T/sp"
start_daemon -c "$T/sluice.conf" --spool "$T/sp" --shards 2
for _ in $(seq 100); do grep -q . "/proc/$DAEMON/status" 2>/dev/null && break; sleep 0.05; done
# Warm up (connections, arenas, buffers) before measuring.
"$SLUICE" spoolgen --spool "$T/sp" --count 200 --seed 1 >/dev/null
for _ in $(seq 200); do [ "$(log_count '.result=="delivered"')" -ge 200 ] && break; sleep 0.05; done
before=$(rss)
n=$((1500 / SCALE))
for i in $(seq "$n"); do
	[ $((i % 2)) -eq 0 ] && conf "$a" || conf "$b"
	kill -HUP "$DAEMON"
	sleep 0.001
	[ $((i % 500)) -eq 0 ] && "$SLUICE" spoolgen --spool "$T/sp" --count 100 --seed "$((i + 1))" >/dev/null
done
sleep 1
after=$(rss)
want=$((200 + 100 * (n / 500)))
for _ in $(seq 200); do [ "$(log_count '.result=="delivered"')" -ge "$want" ] && break; sleep 0.05; done
reloads=$(grep -c 'reload: configuration read again' "$T/d.err" || true)
kill -TERM "$DAEMON"; wait "$DAEMON" || true
grep -q "assertion\|AddressSanitizer\|runtime error" "$T/d.err" && { cat "$T/d.err" | grep -v reload | head; fail "crash or sanitizer report"; }
check_log_final "$want"
[ "$reloads" -ge $((n / 4)) ] || fail "only $reloads reloads taken of $n SIGHUPs"
if [ -z "${SLUICE_ASAN:-}" ]; then  # ASan's quarantine holds freed memory on purpose
	[ $((after - before)) -lt 2048 ] || fail "RSS grew by $((after - before)) KB over $reloads reloads"
	ok "$reloads reloads under traffic: RSS $before -> $after KB, $want messages delivered once each"
else
	ok "$reloads reloads under traffic under ASan: $want messages delivered once each"
fi
