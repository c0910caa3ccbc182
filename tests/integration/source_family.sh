# A source IP reaches only MX addresses of its own family: an MX host with
# both an AAAA (::1) and an A (127.0.0.2) record (found through NSD, with
# IPv6 on) gets every connection from an IPv4 source on 127.0.0.2 and from
# an IPv6 source on ::1, with no failed connection on the way.
source "$(dirname "$0")/../lib.sh"
set -e
PY=/usr/bin/python3
cd "$T"
P=$(free_port)
cat >fam.zone <<'Z'
$ORIGIN fam.test.
$TTL 300
@ SOA ns.fam.test. hostmaster.fam.test. 1 3600 600 86400 60
@ NS ns
ns A 127.0.0.1
@ MX 10 mx
mx AAAA ::1
mx A 127.0.0.2
Z
start_nsd fam.test fam.zone
start_mockmx "[::1]:$P" --police-conns 1000
V6=$MX_PID
start_mockmx "127.0.0.2:$P" --police-conns 1000
V4=$MX_PID
for src in 127.0.0.10 ::1; do
	rm -rf "$T/sp" "$T/acct.jsonl"
	n=$($PY "$HERE/shaping_spool.py" "$T/sp" "fam.test:50")
	printf 'dns = { ipv6 = true; };\ntls = { policy = "none"; };\nshaping = { providers = ""; };\n' >fam.conf
	run_sluice -c fam.conf --spool "$T/sp" --dns-server "127.0.0.1:$NSD_PORT" --smtp-port "$P" \
		--source-ip "$src" --shards 2 --max-time 60 --trace smtp
	[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "source $src: exit $RC"; }
	check_log_final "$n"
	[ "$(log_count '.result=="deferred"')" -eq 0 ] || fail "source $src: deferrals: $(jq -r 'select(.result=="deferred") | .response' "$T/acct.jsonl" | head -2)"
	want=127.0.0.2:$P; [ "$src" = ::1 ] && want="[::1]:$P"
	[ "$(log_count ".result==\"delivered\" and .source==\"$src\" and .peer==\"$want\"")" -eq "$n" ] ||
		fail "source $src: not every message went from $src to $want: $(jq -r '.source+" "+.peer' "$T/acct.jsonl" | sort | uniq -c)"
	! grep -m2 "cannot reach\|cannot bind" "$T/run.err" || fail "source $src: a connection tried the other family"
	ok "source $src: all $n to $want, none tried the other family"
done
