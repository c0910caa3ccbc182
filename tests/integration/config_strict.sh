# A strict configuration: unknown or mistyped settings, wrong types and
# values out of range are refused with the file and line (exit 2, nothing
# sent, the spool untouched), the same bounds hold for a flag and its file
# key, EHLO names are checked; source IPs, pools, pool rules, rates and
# shaping rules are checked (a source IP must be an address of this
# machine), and so are the providers file, reply rules (regular
# expressions, actions, scopes, durations), waves and warm-up plans; the shipped sluice.conf with
# every setting is accepted, with the shipped providers.conf; on SIGHUP a
# bad file (a bad key, helo or pool) leaves the running configuration.
source "$(dirname "$0")/../lib.sh"
set -e
a=$(free_port); start_mockmx "$a"; A=$MX_PID
mkdir -p "$T/sp"
"$SLUICE" spoolgen --spool "$T/sp" --count 3 >/dev/null
# refused 'PATTERN' 'CONFIG' [flags...]: exit 2, PATTERN in stderr, nothing sent.
refused() {
	local want=$1; printf '%s\n' "$2" >"$T/bad.conf"; shift 2
	set +e
	timeout 60 "$SLUICE" run -c "$T/bad.conf" --spool "$T/sp" --route "*=127.0.0.1:$a" \
		--drain --max-time 20 --log "$T/refused.jsonl" "$@" >/dev/null 2>"$T/err"
	local rc=$?
	set -e
	[ "$rc" -eq 2 ] || fail "exit $rc, not 2, for: $(cat "$T/bad.conf") $* ($(cat "$T/err"))"
	grep -q -- "$want" "$T/err" || fail "want '$want', got: $(cat "$T/err")"
	! grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/err" || { cat "$T/err"; fail "sanitizer report"; }
	[ "$(spool_files "$T/sp/new")" -eq 3 ] || fail "the spool changed after a refusal"
	[ ! -s "$T/refused.jsonl" ] || fail "something was logged after a refusal"
}
refused "bad.conf:2: unknown setting 'delivery.max-conections'; did you mean 'delivery.max-connections'?" \
	"$(printf 'shards = 1;\ndelivery: { max-conections = 5; };')"
refused "bad.conf:3: spool must be a string" "$(printf '\n\nspool = 5;')"
refused "bad.conf:1: unknown setting 'delivery.x'" 'delivery: { x = 1; };'
refused "bad.conf:2: unknown setting 'routes\[0\].hots'; did you mean 'routes\[0\].host'?" \
	"$(printf 'routes = (\n  { domain = "*"; hots = "127.0.0.1"; port = 25; } );')"
refused "bad.conf:1: unknown setting 'max-connections'; did you mean 'delivery.max-connections'?" 'max-connections = 2;'
refused "bad.conf:1: unknown setting 'dns.server'" 'dns: { server = [ "127.0.0.1:53" ]; };'
refused "bad.conf:1: log-fsync must be true or false" 'log-fsync = 1;'
refused "bad.conf:1: shards must be a whole number" 'shards = "2";'
refused "bad.conf:1: delivery must be a group" 'delivery = 5;'
refused "bad.conf:1: routes must be a list" 'routes = { domain = "*"; };'
refused "bad.conf:1: routes\[0\].port must be 1..65535" 'routes = ( { domain = "*"; host = "127.0.0.1"; port = 0; } );'
refused "bad.conf:1: dns.servers\[0\] must be a string" 'dns: { servers = [ 53 ]; };'
refused "bad.conf:1: mx-groups\[0\]: unknown\|unknown setting 'mx-groups\[0\].pattern'" \
	'mx-groups = ( { group = "g"; pattern = [ "*.x" ]; } );'
refused "bad.conf:1: unknown setting 'dkim\[0\].file'" 'dkim = ( { domain = "x"; selector = "s"; file = "/k"; } );'
ok "unknown settings and wrong types: exit 2 with file:line, nothing sent"
# One definition of the bounds for a flag and its file key.
refused "delivery.retry-interval must be 0.001..86400 seconds" 'delivery: { retry-interval = 0; };'
refused "retry-interval: '0' must be 0.001..86400 seconds" '' --retry-interval 0
refused "delivery.max-connections must be 1..100000" 'delivery: { max-connections = 0; };'
refused "max-connections: '0' must be a whole number, 1..100000" '' --max-connections 0
refused "timeouts.dot must be" 'timeouts: { dot = 0; };'
refused "delivery.max-recipients-per-transaction must be 1..1000" 'delivery: { max-recipients-per-transaction = 0; };'
refused "delivery.max-recipients-per-transaction must be 1..1000" 'delivery: { max-recipients-per-transaction = 1001; };'
refused "delivery.destination-failures must be 1..100" 'delivery: { destination-failures = 0; };'
refused "delivery.destination-backoff must be" 'delivery: { destination-backoff = 0; };'
refused "delivery.destination-backoff-max must be" 'delivery: { destination-backoff-max = 86401; };'
refused "destination-backoff-max must be at least delivery.destination-backoff" \
	'delivery: { destination-backoff = 120; destination-backoff-max = 60; };'
ok "flags and file keys share their bounds; retry interval 0 refused in both"
long=$(printf 'a%.0s' $(seq 300))
refused "helo must be a host name" '' --helo "$long"
refused "helo must be a host name" '' --helo "mta1.example.com x"
refused "helo must be a host name" '' --helo $'mta1.example.com\r'
refused "helo must be a host name" '' --helo "$(printf 'a%.0s' $(seq 64)).example.com"
refused "helo must be a host name" '' --helo "-mta.example.com"
refused "helo must be a host name" '' --helo "[300.1.1.1]"
refused "bad.conf:1: helo must be a host name" 'helo = "mta1 example.com";'
refused "bad.conf:1: helo must be a host name" "helo = \"$long\";"
ok "EHLO names: over 255 octets, spaces, CR, long labels, bad literals refused"
# Source IPs, pools, rules and rates.
P='pools = ( { name = "p"; ips = ( { ip = "127.0.0.10"; helo = "mta10.example.com"; } ); } );'
refused "bad.conf:2: pools\[0\].ips\[0\].ip: source IP 192.0.2.1 is not an address of this machine" \
	"$(printf 'shards = 1;\npools = ( { name = "p"; ips = ( { ip = "192.0.2.1"; } ); } );')"
refused "^sluice: --source-ip: source IP 192.0.2.1 is not an address of this machine" '' --source-ip 192.0.2.1
refused "source IP 2001:db8::25 \(is not an address of this machine\|cannot be used\)" '' --source-ip 127.0.0.2 --source-ip 2001:db8::25
refused "--source-ip: source IP 'mx.example.com' must be a numeric IPv4 or IPv6 address" '' --source-ip mx.example.com
refused "bad.conf:1: pools\[0\].ips\[0\].ip: source IP '127.0.0.1.5' must be a numeric" \
	'pools = ( { name = "p"; ips = ( { ip = "127.0.0.1.5"; } ); } );'
for r in abc 10/x 0/s -1/s; do
	refused "--max-rate '$r' is not a rate: N/s, N/m or N/h" '' --max-rate "$r"
	refused "bad.conf:1: delivery.max-rate '$r' is not a rate" "delivery: { max-rate = \"$r\"; };"
done
refused "bad.conf:1: delivery.max-new-connections '6/d' is not a rate" 'delivery: { max-new-connections = "6/d"; };'
refused "bad.conf:1: delivery.rate-burst must be 1..1000000" 'delivery: { rate-burst = 0; };'
refused "bad.conf:1: shaping.rules\[0\].max-rate 'fast' is not a rate" 'shaping: { rules = ( { group = "g"; max-rate = "fast"; } ); };'
refused "bad.conf:1: pools\[0\]: pool 'p' has no IPs" 'pools = ( { name = "p"; ips = ( ); } );'
refused "bad.conf:1: pools\[0\].ips\[0\].weight must be 1..1000000" \
	'pools = ( { name = "p"; ips = ( { ip = "127.0.0.10"; weight = 0; } ); } );'
refused "bad.conf:2: pools\[1\]: pool name 'p' is used twice" \
	"$(printf 'pools = ( { name = "p"; ips = ( { ip = "127.0.0.10"; } ); },\n  { name = "p"; ips = ( { ip = "127.0.0.11"; } ); } );')"
refused "bad.conf:2: default-pool: no pool named 'x' (pools: p)" "$(printf '%s\ndefault-pool = "x";' "$P")"
refused "bad.conf:2: pool-rules\[0\].pool: no pool named 'q' (pools: p)" \
	"$(printf '%s\npool-rules = ( { job = "j"; pool = "q"; } );' "$P")"
refused "bad.conf:2: shaping.rules\[0\]: no pool named 'q'" \
	"$(printf '%s\nshaping: { rules = ( { group = "g"; pool = "q"; max-connections = 1; } ); };' "$P")"
refused "bad.conf:2: shaping.rules\[0\]: source and pool exclude each other" \
	"$(printf '%s\nshaping: { rules = ( { pool = "p"; source = "127.0.0.10"; max-connections = 1; } ); };' "$P")"
refused "bad.conf:2: shaping.rules\[0\].source 127.0.0.11 is not one of the source IPs" \
	"$(printf '%s\nshaping: { rules = ( { source = "127.0.0.11"; max-connections = 1; } ); };' "$P")"
printf 'providers = (\n  { group = "g"; max-connections = 0; }\n);\n' >"$T/prov.conf"
refused "prov.conf:2: providers\[0\].max-connections must be 1..100000" "shaping: { providers = \"$T/prov.conf\"; };"
refused "bad.conf: shaping.providers $T/none.conf: No such file" "shaping: { providers = \"$T/none.conf\"; };"
# Reply rules (adaptation.rules, and a responses file).
rule() { printf 'adaptation: { rules = (\n  { name = "r"; %s }\n); };' "$1"; }
refused "bad.conf:2: adaptation.rules\[0\].text is not a regular expression (POSIX extended): " \
	"$(rule 'code = "421"; text = "[TSS04"; action = "slow";')"
refused "bad.conf:2: adaptation.rules\[0\].action 'throttle' is not one of slow, suspend, bounce, defer" \
	"$(rule 'code = "421"; action = "throttle";')"
refused "bad.conf:2: adaptation.rules\[0\] needs action" "$(rule 'code = "421";')"
refused "bad.conf:2: adaptation.rules\[0\].code '250' must be a reply code from 400 to 599" \
	"$(rule 'code = "250"; action = "defer";')"
refused "bad.conf:2: adaptation.rules\[0\] matches every refusal" "$(rule 'action = "defer";')"
refused "bad.conf:2: adaptation.rules\[0\].scope 'everything' is not one of pair, group, source" \
	"$(rule 'code = "421"; action = "suspend"; scope = "everything";')"
refused "bad.conf:2: adaptation.rules\[0\].duration '2w' must be" \
	"$(rule 'code = "421"; action = "suspend"; duration = "2w";')"
refused "bad.conf:2: adaptation.rules\[0\]: scope and duration are for action = \"suspend\"" \
	"$(rule 'code = "421"; action = "slow"; duration = "1h";')"
refused "bad.conf:2: adaptation.rules\[0\].factor must be 0.01..0.99" \
	"$(rule 'code = "421"; action = "slow"; factor = 1.5;')"
refused "bad.conf:2: adaptation.rules\[1\]: a second rule named 'r'" \
	"$(printf 'adaptation: { rules = (\n  { name = "r"; code = "421"; action = "slow"; }, { name = "r"; code = "451"; action = "slow"; }\n); };')"
refused "bad.conf:1: adaptation.slow-factor must be 0.01..0.99" 'adaptation: { slow-factor = 1; };'
printf 'responses = (\n  { name = "x"; text = "a(b"; action = "defer"; }\n);\n' >"$T/resp.conf"
refused "resp.conf:2: responses\[0\].text is not a regular expression" "adaptation: { responses = \"$T/resp.conf\"; };"
# Waves and warm-up.
refused "bad.conf:1: waves\[0\] needs job" 'waves = ( { size = 10; every = "1h"; } );'
refused "bad.conf:1: waves\[0\].every '0s' must be a duration of at least a second" \
	'waves = ( { job = "j"; size = 10; every = "0s"; } );'
refused "bad.conf:1: waves\[1\]: a second wave schedule for job 'j'" \
	'waves = ( { job = "j"; size = 10; every = "1h"; }, { job = "j"; size = 5; every = "1d"; } );'
refused "bad.conf:1: waves\[0\].job must be at most 63 bytes long" \
	"waves = ( { job = \"$(printf 'j%.0s' $(seq 64))\"; size = 10; every = \"1h\"; } );"
refused "bad.conf:1: warmup.timezone 'Mars/Olympus' is not a time zone" 'warmup = { timezone = "Mars/Olympus"; };'
refused "bad.conf:1: warmup.plan\[1\] must be a whole number from 1 to 100000000" 'warmup = { plan = [ 50, 0 ]; };'
refused "bad.conf:1: warmup.ips\[0\].start '2026-13-01' must be a date" \
	'warmup = { ips = ( { ip = "127.0.0.1"; start = "2026-13-01"; } ); };'
refused "warmup.ips\[0\].ip 127.0.0.9 is not one of the source IPs" \
	'warmup = { ips = ( { ip = "127.0.0.9"; start = "2026-12-01"; } ); };' --source-ip 127.0.0.1
ok "source IPs, pools, pool rules, rates, shaping rules, providers file, reply rules, waves, warm-up: refused with file:line"
# Valid names and address literals are accepted (a short drain of the 3).
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$a" --shards 1 --max-time 60 \
	--helo "$(printf 'a%.0s' $(seq 63)).example.com" --retry-interval 0.5 --max-connections 1 \
	--source-ip 127.0.0.1 --max-rate 6000/m
[ "$RC" -eq 0 ] || fail "valid flags refused: $(cat "$T/run.err")"
for h in "[127.0.0.1]" "[IPv6:::1]" "mta-1.Example.COM"; do
	"$SLUICE" spoolgen --spool "$T/sp" --count 1 --seed 7 >/dev/null
	run_sluice --spool "$T/sp" --route "*=127.0.0.1:$a" --shards 1 --max-time 60 --helo "$h"
	[ "$RC" -eq 0 ] || fail "--helo $h refused: $(cat "$T/run.err")"
done
ok "valid EHLO names and address literals accepted"
# The shipped sluice.conf, every commented setting switched on (its
# documentation addresses, 192.0.2.x, made loopback ones; its providers
# file the shipped one).
"$SLUICE" dkim keygen --domain example.com --selector s2025 --out "$T/dkim.key" >/dev/null
mkdir -p "$T/dsn/new" "$T/dsn/tmp"
sed -E -e 's/^(\s*)# ([a-z][a-z0-9-]* = .*;)/\1\2/' \
	-e 's/^(\s*)# (\{ (domain|group) = .*(selector|mx) = .*)$/\1\2/' \
	-e 's/^(\s*)# (\{ (name|job|sender-domain|group|ip) = .*(ips|pool|source|action|size|start) = .*)$/\1\2/' \
	-e '/(ip|source) = /s/192\.0\.2\./127.0.0./g' \
	-e "s|/usr/local/share/sluice/providers.conf|$HERE/../share/sluice/providers.conf|" \
	-e "s|/usr/local/share/sluice/responses.conf|$HERE/../share/sluice/responses.conf|" \
	-e "s|/etc/sluice/dkim/example.com.pem|$T/dkim.key|" \
	-e "s|/var/spool/sluice-dsn|$T/dsn|" "$HERE/../sluice.conf" >"$T/all.conf"
for k in dsn-spool helo servers ipv6 dkim-fallback-domain 'selector = "s2025"' 'group = "gmail"' \
	destination-failures destination-backoff destination-backoff-max \
	'name = "marketing"' 'name = "transactional"' default-pool 'job = "spring-sale"' 'sender-domain = ' \
	'pool = "marketing"; max' 'source = "127.0.0.12"' 'providers = "/' max-rate rate-burst max-new-connections \
	'responses = "/' slow-factor increase-every suspend-time 'name = "local-rbl"' 'name = "bigcorp-busy"' \
	'job = "spring-sale"; size' 'start = "2026-12-15"; plan' wait-in-spool 'timezone'; do
	grep -v '^\s*#' "$T/all.conf" | grep -q -- "$k" || fail "sluice.conf: '$k' not found or not switched on"
done
"$SLUICE" spoolgen --spool "$T/sp" --count 5 --seed 8 >/dev/null
run_sluice -c "$T/all.conf" --spool "$T/sp" --route "*=127.0.0.1:$a" --shards 1 --max-time 60
[ "$RC" -eq 0 ] || fail "the full sluice.conf was refused: $(cat "$T/run.err")"
[ "$(log_count '.result=="delivered"')" -ge 5 ] || fail "the full sluice.conf: not delivered"
ok "the shipped sluice.conf with every setting is accepted (pools, rules, the shipped providers.conf)"
# Without shaping.providers: the installed providers.conf, else the copy
# built in, parses; an empty one too.
"$SLUICE" spoolgen --spool "$T/sp" --count 2 --seed 9 >/dev/null
run_sluice --spool "$T/sp" --route "*=127.0.0.1:$a" --shards 1 --max-time 60
[ "$RC" -eq 0 ] || fail "the providers file built in (or installed) was refused: $(cat "$T/run.err")"
echo 'providers = ( );' >"$T/empty-prov.conf"
echo "shaping: { providers = \"$T/empty-prov.conf\"; };" >"$T/ep.conf"
run_sluice -c "$T/ep.conf" --spool "$T/sp" --route "*=127.0.0.1:$a" --shards 1 --max-time 60
[ "$RC" -eq 0 ] || fail "an empty providers file was refused: $(cat "$T/run.err")"
ok "the providers file: built in or installed, and an empty one"
MX_PID=$A; stop_mockmx
# SIGHUP with a bad file keeps the running configuration.
b=$(free_port); start_mockmx "$b"
cat >"$T/live.conf" <<CONF
routes = ( { domain = "*"; host = "127.0.0.1"; port = $b; } );
delivery: { retry-interval = 0.5; };
CONF
rm -f "$T/acct.jsonl"; mkdir -p "$T/live"
start_daemon -c "$T/live.conf" --spool "$T/live" --shards 1
delivered() { jq -c 'select(.result=="delivered")' "$T/acct.jsonl" 2>/dev/null | wc -l; }
drop() { # drop SEED N: N messages, wait until all delivered
	local want=$(( $(delivered) + $2 ))
	"$SLUICE" spoolgen --spool "$T/live" --count "$2" --seed "$1" >/dev/null
	for _ in $(seq 200); do [ "$(delivered)" -ge "$want" ] && return 0; sleep 0.05; done
	cat "$T/d.err"; fail "messages of seed $1 not delivered"
}
hup() { # hup N: SIGHUP, wait for the N-th "reload:" line
	kill -HUP "$DAEMON"
	for _ in $(seq 100); do [ "$(grep -c 'reload:' "$T/d.err")" -ge "$1" ] && return 0; sleep 0.05; done
	fail "no reload message"
}
refused_reload() { # refused_reload N LINE PATTERN WHAT: a route to port 9 and LINE,
	# reloaded (the N-th reload); its error must match PATTERN and the
	# running configuration stay
	printf 'routes = ( { domain = "*"; host = "127.0.0.1"; port = 9; } );\n%s\n' "$2" >"$T/live.conf"
	hup "$1"
	grep -q "reload: .*live.conf:2: $3.*the running configuration is kept" "$T/d.err" ||
		fail "$4 on reload not reported: $(cat "$T/d.err")"
}
drop 11 4
refused_reload 1 'delivery: { retry-intervall = 1; };' "unknown setting 'delivery.retry-intervall'" "bad key"
refused_reload 2 'helo = "a b";' "helo must be a host name" "bad helo"
refused_reload 3 'pools = ( { name = "p"; ips = ( { ip = "192.0.2.1"; } ); } );' \
	"pools\[0\].ips\[0\].ip: source IP 192.0.2.1 is not an address of this machine" "bad pool"
refused_reload 4 'shaping: { rules = ( { group = "g"; max-rate = "10/x"; } ); };' \
	"shaping.rules\[0\].max-rate '10/x' is not a rate" "bad rate"
refused_reload 5 'adaptation: { rules = ( { name = "r"; text = "(x"; action = "slow"; } ); };' \
	"adaptation.rules\[0\].text is not a regular expression" "bad reply rule"
drop 12 4
kill -TERM "$DAEMON"
wait "$DAEMON" || fail "daemon exit $?"
stop_mockmx
[ "$(jq -r 'select(.result=="delivered") | .mx' "$T/acct.jsonl" | sort -u)" = "127.0.0.1:$b" ] ||
	fail "after bad reloads, mail did not go on to the running route"
! grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/d.err" || { cat "$T/d.err"; fail "sanitizer report"; }
ok "SIGHUP with a bad key, helo, pool, rate or reply rule: the running configuration is kept"
