# SIGHUP: the configuration is read again without dropping connections that
# are still valid; the accounting log is reopened (logrotate); a bad
# configuration is refused and the running one kept; a route that changes
# takes the next messages to the new server and its old connection QUITs.
source "$(dirname "$0")/../lib.sh"
set -e
a=$(free_port); start_mockmx "$a"; A=$MX_PID
b=$(free_port); start_mockmx "$b"; B=$MX_PID
conf() { # conf STAR_PORT [extra route entry]
	cat >"$T/sluice.conf" <<CONF
delivery: { max-connections = 1; max-per-connection = 100000; };
timeouts: { idle = 60; };
routes = ( { domain = "*"; host = "127.0.0.1"; port = $1; } ${2:-} );
CONF
}
delivered() { cat "$T"/acct.jsonl* 2>/dev/null | jq -c 'select(.result=="delivered")' | wc -l; }
drop() { # drop SEED: 10 messages into new/, wait until delivered
	local want=$(( $(delivered) + 10 ))
	"$SLUICE" spoolgen --spool "$T/sp" --count 10 --seed "$1" >/dev/null
	for _ in $(seq 200); do [ "$(delivered)" -ge "$want" ] && return 0; sleep 0.05; done
	cat "$T/d.err"; fail "messages of seed $1 not delivered"
}
reloaded() { # reloaded N: SIGHUP, wait for the N-th "reload:" message
	kill -HUP "$DAEMON"
	for _ in $(seq 100); do [ "$(grep -c 'reload:' "$T/d.err")" -ge "$1" ] && return 0; sleep 0.05; done
	fail "no reload message"
}
conns_to() { ss -Htn state established "( dport = :$1 )" | awk '{print $3}' | sort | tr '\n' ' '; }
conf "$a"
mkdir -p "$T/sp"
start_daemon -c "$T/sluice.conf" --spool "$T/sp" --shards 1
drop 1
first=$(conns_to "$a")
[ -n "$first" ] || fail "no connection to A"
# 1: logrotate moved the log; a route for another domain is added.
mv "$T/acct.jsonl" "$T/acct.jsonl.1"
conf "$a" ', { domain = "other.example"; host = "127.0.0.1"; port = '"$b"'; }'
reloaded 1
grep -q "reload: configuration read again (2 routes)" "$T/d.err" || fail "reload 1 not reported"
drop 2
[ "$(wc -l <"$T/acct.jsonl.1")" -eq 10 ] && [ "$(wc -l <"$T/acct.jsonl")" -eq 10 ] ||
	fail "the log was not reopened: $(wc -l <"$T/acct.jsonl.1") + $(wc -l <"$T/acct.jsonl") lines"
ok "reload 1: log reopened after rotation, route added"
# 2: a broken file is refused, the running configuration stays; the log
# is reopened all the same (logrotate's reload finds a bad edit too).
mv "$T/acct.jsonl" "$T/acct.jsonl.2"
echo 'routes = ( { domain = "*"; host = ' >"$T/sluice.conf"
reloaded 2
grep -q "reload: .*the running configuration is kept" "$T/d.err" || fail "bad configuration not reported"
drop 3
[ "$(wc -l <"$T/acct.jsonl.2")" -eq 10 ] && [ "$(wc -l <"$T/acct.jsonl")" -eq 10 ] ||
	fail "a refused reload did not reopen the log: $(wc -l <"$T/acct.jsonl.2") + $(wc -l <"$T/acct.jsonl") lines"
ok "reload 2: bad configuration refused, delivery goes on, the log reopened"
[ "$(conns_to "$a")" = "$first" ] || fail "the connection to A changed across reloads: $first -> $(conns_to "$a")"
ok "30 messages and two reloads over the same connection ($first)"
# 3: '*' now goes to the second server; the connection to A QUITs.
conf "$b"
reloaded 3
drop 4
[ "$(jq -r 'select(.id|startswith("g4-")) | .mx' "$T/acct.jsonl" | sort -u)" = "127.0.0.1:$b" ] ||
	fail "after the route changed, messages did not go to the new server"
for _ in $(seq 40); do [ -z "$(conns_to "$a")" ] && break; sleep 0.05; done
[ -z "$(conns_to "$a")" ] || fail "the connection to A stayed open after its route left"
ok "reload 3: the new route is used, the old connection closed"
# 4: reloads while a batch is in flight, the route flipping between the two
# servers: nothing lost, nothing sent twice.
n=$((2000 / SCALE))
want=$(( $(delivered) + n ))
"$SLUICE" spoolgen --spool "$T/sp" --count "$n" --seed 5 >/dev/null
for i in $(seq 10); do
	conf "$([ $((i % 2)) = 0 ] && echo "$b" || echo "$a")"
	reloaded $((3 + i))
	sleep 0.05
done
for _ in $(seq 400); do [ "$(delivered)" -ge "$want" ] && break; sleep 0.05; done
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
MX_PID=$A; stop_mockmx
MX_PID=$B; stop_mockmx
[ "$(delivered)" -eq "$want" ] || fail "after reloads in flight: $(delivered) delivered, want $want"
[ $(( $(mx_stat "$a" messages) + $(mx_stat "$b" messages) )) -eq $((40 + n)) ] ||
	fail "want $((40 + n)) messages in all, got $(mx_stat "$a" messages) + $(mx_stat "$b" messages)"
! grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/d.err" || { cat "$T/d.err"; fail "sanitizer report"; }
ok "reload 4: ten reloads during a batch of $n: each delivered once"
