# Which source IP a message goes out of: X-Pool picks the pool; without
# it a rule for the job (X-Job), else for the sender's domain, else the
# default pool; an X-Pool naming no pool is deferred with that reason
# (kept in the spool, never sent from another pool); weights share a
# pool's mail between its IPs. Checked on the server side too: mockmx
# sees each message from the IP the log names, and its EHLO name.
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3
port=$(free_port)
start_mockmx "127.0.0.2:$port" --police-conns 1000 # (policing on: counts per source IP)
cat >"$T/pools.conf" <<EOF
pools = (
  { name = "main"; ips = ( { ip = "127.0.0.10"; helo = "main10.sender.test"; weight = 3; },
                           { ip = "127.0.0.11"; helo = "main11.sender.test"; weight = 1; } ); },
  { name = "camp"; ips = ( { ip = "127.0.0.12"; helo = "camp12.sender.test"; } ); },
  { name = "trans"; ips = ( { ip = "127.0.0.13"; helo = "trans13.sender.test"; } ); }
);
default-pool = "main";
pool-rules = ( { job = "spring"; pool = "camp"; },
               { sender-domain = "Receipts.Test"; pool = "trans"; } );
routes = ( { domain = "d.test"; host = "127.0.0.2"; port = $port; } );
shaping = { providers = ""; };
tls = { policy = "none"; };
EOF
# default pool (weights 3:1), job rule, sender-domain rule (case ignored),
# X-Pool over the job's rule, an X-Pool naming no pool
$PY "$HERE/shaping_spool.py" "$T/sp" "d.test:400" "d.test:20:-:spring" \
	"d.test:20:-:-:bill@receipts.test" "d.test:10:trans:spring" "d.test:5:nosuch" >/dev/null
# The deferred ones wait for their retry (10 minutes): the run ends at
# --max-time with them in the spool (exit 1, "not final 5").
run_sluice -c "$T/pools.conf" --spool "$T/sp" --shards 2 --max-time 8 --retry-interval 600
stop_mockmx
[ "$RC" -eq 1 ] && grep -q "not final         5 " "$T/run.out" || { cat "$T/run.out" "$T/run.err"; fail "exit $RC"; }
src_count() { log_count ".result==\"delivered\" and .source==\"$1\""; }
a=$(src_count 127.0.0.10) b=$(src_count 127.0.0.11)
[ $((a + b)) -eq 400 ] || fail "default pool: $a + $b delivered, want 400"
[ "$a" -ge 285 ] && [ "$a" -le 315 ] || fail "weights 3:1: 127.0.0.10 sent $a of 400"
ok "default pool: 400 from main, split $a:$b by weights 3:1"
[ "$(log_count '.result=="delivered" and .source=="127.0.0.12" and .job=="spring"')" -eq 20 ] ||
	fail "job rule: spring's 20 not all from 127.0.0.12"
ok "job rule: X-Job spring from pool camp"
[ "$(log_count '.result=="delivered" and .source=="127.0.0.13" and .from=="bill@receipts.test"')" -eq 20 ] ||
	fail "sender-domain rule: not all 20 from 127.0.0.13"
[ "$(log_count '.result=="delivered" and .source=="127.0.0.13" and .job=="spring"')" -eq 10 ] ||
	fail "X-Pool trans did not win over the job's pool"
ok "sender-domain rule (case ignored), and X-Pool before the job's rule"
[ "$(log_count '.result=="deferred" and (.response|test("X-Pool \"nosuch\" names no pool")) and .code==451')" -eq 5 ] ||
	fail "unknown pool: want 5 deferrals naming it"
[ "$(find "$T/sp/new" "$T/sp/active" -type f -name 'm*' | wc -l)" -eq 5 ] ||
	fail "unknown pool: the 5 messages are not kept in the spool"
ok "X-Pool naming no pool: deferred with the reason, kept"
for s in 10:main10 11:main11 12:camp12 13:trans13; do
	ip=127.0.0.${s%%:*} name=${s#*:}.sender.test
	got=$(jq -r ".sources[\"$ip\"].helo | join(\",\")" "$T/mx-127.0.0.2-$port.json")
	[ "$got" = "$name" ] || fail "$ip said EHLO '$got', want $name"
	msgs=$(jq -r ".sources[\"$ip\"].messages" "$T/mx-127.0.0.2-$port.json")
	[ "$msgs" -eq "$(src_count "$ip")" ] || fail "$ip: mockmx saw $msgs messages, the log says $(src_count "$ip")"
done
ok "mockmx saw each IP's messages and EHLO name as the log says"
