#!/usr/bin/env bash
# bench/tls_memory.sh - bytes per idle TLS connection: sluice's RSS while
# it holds N idle connections to a mockmx with STARTTLS, against the same
# with --tls none, in one run. mockmx holds its replies (--slow) so that
# sluice opens one connection per message; then every connection sits idle
# (timeouts.idle is long) while the RSS is read. Loopback only, bounded.
# usage: bench/tls_memory.sh [N] (default 1000); prints one JSON line.
set -eu
SLUICE=${SLUICE:-$(cd "$(dirname "$0")/.." && pwd)/sluice}
N=${1:-1000}
T=$(mktemp -d /tmp/sluice-tlsmem.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=mx.test.example \
	-keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 300 "$SLUICE" mockmx --listen "127.0.0.1:$port" --max-time 280 --slow 1500 \
	--tls-cert "$T/cert.pem" --tls-key "$T/key.pem" >/dev/null 2>"$T/mx.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$T/mx.err" 2>/dev/null && break; sleep 0.05; done
printf 'timeouts: { idle = 120; };\n' >"$T/idle.conf"

rss_with() {   # POLICY: sluice's VmRSS (kB) with N idle connections
	local spool=$T/sp-$1 log=$T/log-$1
	"$SLUICE" spoolgen --spool "$spool" --count "$N" --domains 1 --seed 3 >/dev/null
	timeout 120 "$SLUICE" run -c "$T/idle.conf" --spool "$spool" --route "*=127.0.0.1:$port" --log "$log" \
		--shards 1 --max-connections "$N" --max-time 100 --tls "$1" >"$T/run-$1.out" 2>&1 &
	local tpid=$! pid=""
	for _ in $(seq 50); do pid=$(pgrep -P "$tpid" -x sluice || true); [ -n "$pid" ] && break; sleep 0.1; done
	for _ in $(seq 600); do
		[ "$(cat "$log" 2>/dev/null | grep -c '"delivered"')" -ge "$N" ] && break
		sleep 0.1
	done
	sleep 2 # every connection idle
	local conns rss
	conns=$(ss -Htn state established "( dport = :$port )" | wc -l)
	rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	kill -TERM "$pid"
	wait "$tpid" 2>/dev/null || true
	echo "$rss $conns $(grep -c '"delivered"' "$log")"
}
read -r plain plain_conns plain_done < <(rss_with none)
read -r tls tls_conns tls_done < <(rss_with opportunistic)
tls_line=$(grep 'tls connections' "$T/run-opportunistic.out" | sed 's/^ *//')
echo "{\"connections\": $N, \"plain_rss_kb\": $plain, \"plain_open\": $plain_conns, \"plain_delivered\": $plain_done," \
     "\"tls_rss_kb\": $tls, \"tls_open\": $tls_conns, \"tls_delivered\": $tls_done," \
     "\"bytes_per_idle_tls_connection\": $(( (tls - plain) * 1024 / N )), \"summary\": \"$tls_line\"}"
