# SIGHUP while (source IP, MX group) pairs are busy: reloads that reorder
# the pool's IPs and rename the route's group give pairs to other shards
# mid-stream (their queues cross to the new owners). Nothing is lost or
# sent twice, every line names a configured source IP, and once the reloads
# stop the limits hold again (mockmx polices 3 connections per IP).
source "$(dirname "$0")/../lib.sh"
set -e
port=$(free_port)
start_mockmx "127.0.0.2:$port" --police-conns 3
conf() { # conf "IP IP IP" GROUP
	local ips="" ip
	for ip in $1; do ips+="{ ip = \"$ip\"; helo = \"m${ip##*.}.sender.test\"; },"; done
	cat >"$T/sluice.conf" <<CONF
pools = ( { name = "p"; ips = ( ${ips%,} ); } );
routes = ( { domain = "*"; host = "127.0.0.2"; port = $port; group = "$2"; } );
delivery = { max-connections = 3; max-rate = "400/s"; };
shaping = { providers = ""; };
tls = { policy = "none"; };
CONF
}
delivered() { jq -c 'select(.result=="delivered")' "$T/acct.jsonl" 2>/dev/null | wc -l; }
reloaded() { # reloaded N: SIGHUP, wait for the N-th "reload:" message
	kill -HUP "$DAEMON"
	for _ in $(seq 100); do [ "$(grep -c 'reload:' "$T/d.err")" -ge "$1" ] && return 0; sleep 0.05; done
	fail "no reload message"
}
conf "127.0.0.10 127.0.0.11 127.0.0.12" g1
mkdir -p "$T/sp"
start_daemon -c "$T/sluice.conf" --spool "$T/sp" --shards 2 --retry-interval 0.2
sleep 0.3
n=$((3000 / SCALE))
"$SLUICE" spoolgen --spool "$T/sp" --count "$n" --seed 9 >/dev/null
orders=("127.0.0.12 127.0.0.10 127.0.0.11" "127.0.0.11 127.0.0.12 127.0.0.10" "127.0.0.10 127.0.0.11 127.0.0.12")
for i in $(seq 9); do
	conf "${orders[$((i % 3))]}" "g$((i % 2 + 1))"
	reloaded "$i"
	sleep 0.1
done
for _ in $(seq 600); do [ "$(delivered)" -ge "$n" ] && break; sleep 0.05; done
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
! grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/d.err" || { cat "$T/d.err"; fail "sanitizer report"; }
[ "$(delivered)" -eq "$n" ] || fail "$(delivered) delivered, want $n"
dup=$(jq -r 'select(.result=="delivered") | .id' "$T/acct.jsonl" | sort | uniq -d | head -3)
[ -z "$dup" ] || fail "delivered twice: $dup"
[ "$(mx_stat "127.0.0.2:$port" messages)" -eq "$n" ] || fail "mockmx got $(mx_stat "127.0.0.2:$port" messages) messages, want $n"
bad=$(jq -r 'select(.result=="delivered") | .source' "$T/acct.jsonl" | grep -vc '^127\.0\.0\.1[0-2]$' || true)
[ "$bad" -eq 0 ] || fail "$bad lines from another source"
v=$(jq -r '.police.conns' "$T/mx-127.0.0.2-$port.json")
ok "nine reloads moving pairs between shards during $n messages: each delivered once ($v connection(s) over the limit while pairs moved)"
