# The command line: every command has --help; flags with bad values are
# refused with a clear error, never ignored; a config file is read and
# flags override it.
source "$(dirname "$0")/../lib.sh"
set -e
for c in run mockmx spoolgen inject bench dkim resolve suppress status top ctl; do
	"$SLUICE" $c --help | grep -qi usage || fail "$c --help"
done
"$SLUICE" run --help | grep -q -- "--source-ip ADDR" || fail "run --help: no --source-ip"
"$SLUICE" run --help | grep -q -- "--max-rate N/s|N/m|N/h" || fail "run --help: no --max-rate"
! "$SLUICE" run --help | grep -qi "not built yet" || fail "run --help still says something is not built"
# feedback: built (feedback_parse.sh has the rest); no subcommand or no file is a usage error
"$SLUICE" feedback --help | grep -q "usage: sluice feedback parse" || fail "feedback --help"
! "$SLUICE" --help | grep -qi "not built yet" || fail "sluice --help still says something is not built"
for args in "feedback" "feedback parse" "feedback frob" "feedback parse --frob x"; do
	set +e
	# shellcheck disable=SC2086
	out=$("$SLUICE" $args 2>&1); rc=$?
	set -e
	[ "$rc" -eq 2 ] && echo "$out" | grep -q "usage: sluice feedback" || fail "sluice $args: exit $rc: $out"
done
! "$SLUICE" --help | grep -qi "not built yet: .*\(status\|top\|ctl\)" || fail "sluice --help: status, top or ctl not built yet"
"$SLUICE" status --help | grep -q -- "--json" || fail "status --help: no --json"
"$SLUICE" top --help | grep -q -- "--interval SECONDS" || fail "top --help: no --interval"
"$SLUICE" ctl --help | grep -q "suspend GROUP \[--source IP\] \[--for DURATION\]" || fail "ctl --help: no suspend"
# status, top, ctl: no daemon behind the socket is exit 1 with a hint (the
# socket's path from --control, -c's control-socket or --spool); a config
# without a socket and a bad ctl command line exit 2 (control.sh has the rest).
printf 'control-socket = "%s";\n' "$T/c.sock" >"$T/ctl.conf"
printf 'control-socket = "off";\n' >"$T/off.conf"
for args in "status --control $T/none.sock" "status --json -c $T/ctl.conf" "ctl --spool $T/sp reload" \
	"top --control $T/none.sock --count 1 --interval 0.1"; do
	set +e
	# shellcheck disable=SC2086
	out=$(timeout 10 "$SLUICE" $args 2>&1); rc=$?
	set -e
	[ "$rc" -eq 1 ] && echo "$out" | grep -q "cannot connect to $T/\(none.sock\|c.sock\|sp/control\): No such file or directory (is sluice run going" ||
		fail "sluice $args: exit $rc: $out"
done
set +e
out=$("$SLUICE" status -c "$T/off.conf" 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] && echo "$out" | grep -q "no control socket" || fail "status -c (control-socket off): exit $rc: $out"
for args in "ctl" "ctl suspend" "ctl frob" "ctl pause a b" "ctl suspend g --for 1y" \
	"ctl resume g --source mx.example" "top --interval 0" "status --json x"; do
	set +e
	# shellcheck disable=SC2086
	out=$(timeout 10 "$SLUICE" $args --control "$T/none.sock" 2>&1); rc=$?
	set -e
	[ "$rc" -eq 2 ] || fail "sluice $args: want exit 2, got $rc: $out"
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
ok "help, refused flag values, --source-ip and --max-rate accepted, config file and overrides; status, top, ctl without a daemon"
# The shipped example config parses and works, with flags overriding it.
port=$(free_port)
start_mockmx "$port"
"$SLUICE" spoolgen --spool "$T/sp2" --count 5 >/dev/null
run_sluice -c "$HERE/../sluice.conf" --spool "$T/sp2" --route "*=127.0.0.1:$port" --shards 1 --max-time 30
stop_mockmx
[ "$RC" -eq 0 ] && [ "$(mx_stat "$port" messages)" -eq 5 ] || fail "sluice.conf example does not work: $(cat "$T/run.err")"
ok "the example sluice.conf works"
