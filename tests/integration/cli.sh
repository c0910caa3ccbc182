# The command line: every command has --help; flags with bad values are
# refused with a clear error, never ignored; a config file is read and
# flags override it.
source "$(dirname "$0")/../lib.sh"
set -e
for c in run mockmx spoolgen inject bench dkim resolve suppress; do
	"$SLUICE" $c --help | grep -qi usage || fail "$c --help"
done
"$SLUICE" run --help | grep -q -- "--source-ip ADDR" || fail "run --help: no --source-ip"
"$SLUICE" run --help | grep -q -- "--max-rate N/s|N/m|N/h" || fail "run --help: no --max-rate"
! "$SLUICE" run --help | grep -qi "not built yet" || fail "run --help still says something is not built"
for cmd in status top ctl feedback; do
	set +e
	out=$("$SLUICE" "$cmd" 2>&1); rc=$?
	set -e
	[ "$rc" -eq 2 ] && echo "$out" | grep -q "'$cmd' is not built yet" || fail "sluice $cmd: exit $rc: $out"
done
# Source IPs and rates: a value that is no address of this machine, no
# numeric address or no rate is refused (exit 2, nothing sent).
for f in "--source-ip 192.0.2.1" "--source-ip mx.example.com" "--max-rate 10/x" "--max-rate 0/s" "--max-rate fast"; do
	set +e
	# shellcheck disable=SC2086
	out=$(timeout 10 "$SLUICE" run --spool "$T/sp" --route '*=127.0.0.1:9' $f 2>&1); rc=$?
	set -e
	[ "$rc" -eq 2 ] || fail "$f: want exit 2, got $rc: $out"
	echo "$out" | grep -qE "not an address of this machine|must be a numeric IPv4 or IPv6 address|is not a rate: N/s, N/m or N/h" ||
		fail "$f: unclear refusal: $out"
done
# TLS flags: a word that is no policy, a CA file that is not there or not
# PEM certificates: a clear error, nothing sent.
for f in "--tls sometimes" "--tls-ca $T/none.pem" "--tls-ca /etc/hostname"; do
	set +e
	# shellcheck disable=SC2086
	out=$(timeout 10 "$SLUICE" run --spool "$T/sp" --route '*=127.0.0.1:9' $f 2>&1); rc=$?
	set -e
	[ "$rc" -eq 2 ] || fail "$f: want exit 2, got $rc: $out"
	echo "$out" | grep -qE "none, opportunistic, required or verify|tls.ca|CA certificates" || fail "$f: unclear refusal: $out"
done
for f in "--dns-server dns.example:53" "--dns-server 127.0.0.1:0" "--smtp-port 0" "--dns-timeout -1"; do
	set +e
	# shellcheck disable=SC2086
	out=$("$SLUICE" run --spool "$T/sp" --drain $f 2>&1); rc=$?
	set -e
	[ "$rc" -ne 0 ] && echo "$out" | grep -qi "dns\|port\|seconds" || fail "$f: not refused clearly: $out"
done
# Config file with a route and a retry interval; a flag overrides the spool.
port=$(free_port)
start_mockmx "$port"
cat > "$T/s.conf" <<CONF
spool = "/nonexistent/never-used";
helo = "test.sluice.example";
routes = ( { domain = "*"; host = "127.0.0.1"; port = $port; } );
delivery: { max-connections = 2; retry-interval = 0.5; };
CONF
"$SLUICE" spoolgen --spool "$T/sp" --count 10 --domains 2 >/dev/null
run_sluice -c "$T/s.conf" --spool "$T/sp" --shards 1 --max-time 60 --source-ip 127.0.0.2 --max-rate 600/m
stop_mockmx
[ "$RC" -eq 0 ] || { cat "$T/run.err"; fail "config file run: exit $RC"; }
[ "$(mx_stat "$port" messages)" -eq 10 ] || fail "config file run: not delivered"
[ "$(mx_stat "$port" connections)" -le 2 ] || fail "max-connections from the file ignored"
echo 'routes = ( { domain = "*"; host = "mx.example.com"; port = 25; } );' > "$T/bad.conf"
set +e
out=$("$SLUICE" run -c "$T/bad.conf" --spool "$T/sp" 2>&1); rc=$?
set -e
[ "$rc" -ne 0 ] && echo "$out" | grep -q "numeric" || fail "host name route accepted: $out"
ok "help, refused flag values, --source-ip and --max-rate accepted, config file and overrides"
# The shipped example config parses and works, with flags overriding it.
port=$(free_port)
start_mockmx "$port"
"$SLUICE" spoolgen --spool "$T/sp2" --count 5 >/dev/null
run_sluice -c "$HERE/../sluice.conf" --spool "$T/sp2" --route "*=127.0.0.1:$port" --shards 1 --max-time 30
stop_mockmx
[ "$RC" -eq 0 ] && [ "$(mx_stat "$port" messages)" -eq 5 ] || fail "sluice.conf example does not work: $(cat "$T/run.err")"
ok "the example sluice.conf works"
