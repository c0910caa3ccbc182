# Source IPs and per-provider shaping against mockmx policing like a
# provider (--police-*: it answers 421 and counts a violation for every
# connection, message per connection or message per second beyond its
# limits, per client source IP).
#
# 1. Four providers (mockmx on 127.0.0.2-.5, MX groups by route) with
#    different limits, sluice sending from 127.0.0.10-.13 in two pools:
#    no violation, every recipient delivered, each (source IP, group)
#    pair within 15% of its allowed rate (the slowest provider does not
#    slow the others), the EHLO name of each source IP seen by the
#    server, the right source in every line.
# 2. One source IP, limits 3 connections / 10 messages per connection /
#    100 msg/s, for --shards 1, 2 and 3: never exceeded, rate within 15%.
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3

violations() { # PORTFILE-KEY: total violations counted by that mockmx
	jq -r '(.police.conns // 0) + (.police.per_conn // 0) + (.police.rate // 0)' "$T/mx-$1.json"
}

# ---- 1. four providers, four source IPs in two pools ----
declare -A RATE=([1]=4 [2]=10 [3]=20 [4]=40) CONNS=([1]=2 [2]=3 [3]=3 [4]=4) PERCONN=([1]=20 [2]=50 [3]=50 [4]=100)
SECS=6
routes="" rules="" specs=()
for i in 1 2 3 4; do
	port=$(free_port)
	PORT[$i]=$port
	start_mockmx "127.0.0.$((i + 1)):$port" --police-rate "${RATE[$i]}" --police-conns "${CONNS[$i]}" \
		--police-per-conn "${PERCONN[$i]}"
	MXPID[$i]=$MX_PID
	routes+="{ domain = \"p$i.test\"; host = \"127.0.0.$((i + 1))\"; port = $port; group = \"prov$i\"; },"
	rules+="{ group = \"prov$i\"; max-connections = ${CONNS[$i]}; max-per-connection = ${PERCONN[$i]}; max-rate = \"${RATE[$i]}/s\"; },"
	per_pool=$((RATE[$i] * SECS * 2)) # two IPs per pool, each allowed RATE
	specs+=("p$i.test:$per_pool:a" "p$i.test:$per_pool:b")
done
cat >"$T/shape.conf" <<EOF
pools = (
  { name = "a"; ips = ( { ip = "127.0.0.10"; helo = "mta10.sender.test"; },
                        { ip = "127.0.0.11"; helo = "mta11.sender.test"; } ); },
  { name = "b"; ips = ( { ip = "127.0.0.12"; helo = "mta12.sender.test"; },
                        { ip = "127.0.0.13"; helo = "mta13.sender.test"; } ); }
);
routes = ( ${routes%,} );
shaping = { providers = ""; rules = ( ${rules%,} ); };
tls = { policy = "none"; };
EOF
total=$($PY "$HERE/shaping_spool.py" "$T/sp" "${specs[@]}")
run_sluice -c "$T/shape.conf" --spool "$T/sp" --shards 2 --max-time 120
for i in 1 2 3 4; do MX_PID=${MXPID[$i]} stop_mockmx; done
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "four providers: exit $RC"; }
check_log_final "$total"
[ "$(log_count '.result=="delivered"')" -eq "$total" ] || fail "four providers: not all $total delivered"
[ "$(spool_files "$T/sp/new")" -eq 0 ] || fail "four providers: spool not empty"
for i in 1 2 3 4; do
	key="127.0.0.$((i + 1))-${PORT[$i]}"
	v=$(violations "$key")
	[ "$v" = 0 ] || { jq . "$T/mx-$key.json" >&2; fail "prov$i: mockmx counted $v violations"; }
	for s in 10 11 12 13; do
		helo=$(jq -r ".sources[\"127.0.0.$s\"].helo | join(\",\")" "$T/mx-$key.json")
		[ "$helo" = "mta$s.sender.test" ] || fail "prov$i: 127.0.0.$s said EHLO '$helo'"
	done
done
ok "four providers, four source IPs: $total delivered, 0 violations, EHLO name per source IP"
bad=$(jq -r 'select(.result=="delivered") | select((.source|test("^127\\.0\\.0\\.1[0-3]$")|not) or
	(.group != ("prov" + (.rcpt|capture("@p(?<n>[0-9])").n)))) | .id' "$T/acct.jsonl" | head -3)
[ -z "$bad" ] || fail "lines with a wrong source or group: $bad"
pool_a=$(jq -r 'select(.result=="delivered") | .source' "$T/acct.jsonl" | sort | uniq -c | tr -s ' ')
echo "   per source: $(echo $pool_a)"
args=()
for i in 1 2 3 4; do for s in 10 11 12 13; do args+=("127.0.0.$s/prov$i=${RATE[$i]}"); done; done
$PY "$HERE/shaping_rates.py" "$T/acct.jsonl" 0.15 "${args[@]}" | sed 's/^/   /' ||
	fail "a pair's rate is not within 15% of its limit"
ok "every (source IP, group) pair within 15% of its rate; the slow provider did not slow the others"

# ---- 2. one source IP, exact limits whatever the shards ----
for shards in 1 2 3; do
	rm -rf "$T/sp" "$T/acct.jsonl"
	port=$(free_port)
	start_mockmx "127.0.0.2:$port" --police-conns 3 --police-per-conn 10 --police-rate 100
	n=$($PY "$HERE/shaping_spool.py" "$T/sp" "one.test:600")
	run_sluice --spool "$T/sp" --route "one.test=127.0.0.2:$port" --source-ip 127.0.0.10 --tls none \
		--max-connections 3 --max-per-connection 10 --max-rate 100/s --shards "$shards" --max-time 120
	stop_mockmx
	[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "one IP, $shards shards: exit $RC"; }
	check_log_final "$n"
	[ "$(log_count '.result=="delivered" and .source=="127.0.0.10"')" -eq "$n" ] ||
		fail "one IP, $shards shards: not all delivered from 127.0.0.10"
	v=$(violations "127.0.0.2-$port")
	[ "$v" = 0 ] || { jq . "$T/mx-127.0.0.2-$port.json" >&2; fail "one IP, $shards shards: $v violations"; }
	conc=$(jq -r '.sources["127.0.0.10"].max_concurrent' "$T/mx-127.0.0.2-$port.json")
	[ "$conc" -le 3 ] || fail "one IP, $shards shards: $conc connections at once"
	$PY "$HERE/shaping_rates.py" "$T/acct.jsonl" 0.15 "127.0.0.10/127.0.0.2:$port=100" | sed 's/^/   /' ||
		fail "one IP, $shards shards: rate not within 15% of 100/s"
	ok "one IP, --shards $shards: 3 connections / 10 per connection / 100 msg/s never exceeded"
done

# ---- 3. new connections per minute ----
# One message per connection, at most 600 new connections a minute (10/s;
# the bucket holds a tenth of a minute's worth, 60): 120 messages need 120
# connections, the last 60 of them at 10/s: about 6 s (unlimited: well
# under one).
rm -rf "$T/sp" "$T/acct.jsonl"
port=$(free_port)
start_mockmx "127.0.0.2:$port" --police-conns 1000
cat >"$T/newconn.conf" <<EOF2
delivery = { max-new-connections = "600/m"; max-per-connection = 1; };
EOF2
n=$($PY "$HERE/shaping_spool.py" "$T/sp" "one.test:120")
run_sluice -c "$T/newconn.conf" --spool "$T/sp" --route "one.test=127.0.0.2:$port" --source-ip 127.0.0.10 \
	--tls none --shards 2 --max-time 60
stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "new connections: exit $RC"; }
check_log_final "$n"
conns=$(jq -r '.sources["127.0.0.10"].connections' "$T/mx-127.0.0.2-$port.json")
[ "$conns" -eq 120 ] || fail "new connections: $conns connections, want 120 (one message each)"
span=$(jq -rs '[.[] | select(.result=="delivered") | .ts | sub("\\.[0-9]+Z$"; "Z") | fromdate] | max - min' "$T/acct.jsonl")
[ "$span" -ge 4 ] && [ "$span" -le 9 ] || fail "new connections: 120 connections took ${span} s, want about 6"
ok "600 new connections a minute: 120 one-message connections over ${span} s"
