# tests/lib.sh - helpers for the integration tests (sourced). Every server
# listens on loopback only, every process is bounded by `timeout`, and
# everything a test starts is killed when it exits.
set -u
: "${SLUICE:?SLUICE must point at the binary}"
T=$(mktemp -d /tmp/sluice-test.XXXXXX)
chmod 755 "$T"   # smtp-sink runs as nobody and writes below it
PIDS=()
cleanup() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
# Under ASan everything is slower: tests scale their volume by this factor.
if [ -n "${SLUICE_ASAN:-}" ]; then SCALE=5; else SCALE=1; fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_mockmx [ADDR:]PORT [mockmx options...]: starts it (on 127.0.0.1
# unless ADDR is given), waits until it listens. Files: $T/mx-[ADDR-]PORT.*
start_mockmx() {
	local port=$1 listen=$1; shift
	case $port in *:*) port=${port/:/-} ;; *) listen=127.0.0.1:$port ;; esac
	timeout 300 "$SLUICE" mockmx --listen "$listen" --max-time 280 \
		--stats "$T/mx-$port.json" "$@" >"$T/mx-$port.out" 2>"$T/mx-$port.err" &
	PIDS+=($!)
	MX_PID=$!
	for _ in $(seq 100); do
		grep -q listening "$T/mx-$port.err" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$T/mx-$port.err" >&2
	fail "mockmx on port $port did not start"
}

# stop_mockmx: SIGTERM, wait, stats land in $T/mx-PORT.json.
stop_mockmx() {
	kill -TERM "$MX_PID" 2>/dev/null
	wait "$MX_PID" 2>/dev/null
	true
}

mx_stat() { jq -r ".$2" "$T/mx-${1/:/-}.json"; }

# start_nsd ZONE FILE [ZONE FILE...]: NSD, a real authoritative server, on
# 127.0.0.1:$NSD_PORT serving the zone files (relative to $T).
start_nsd() {
	NSD_PORT=$(free_port)
	mkdir -p "$T/nsd"
	{ echo "server:"
	  echo "  ip-address: 127.0.0.1@$NSD_PORT"
	  echo "  username: \"\""; echo "  chroot: \"\""; echo "  database: \"\""
	  echo "  zonesdir: \"$T\""
	  echo "  pidfile: \"$T/nsd/pid\""; echo "  zonelistfile: \"$T/nsd/zone.list\""
	  echo "  xfrdfile: \"$T/nsd/xfrd.state\""; echo "  xfrdir: \"$T/nsd\""
	  echo "  logfile: \"$T/nsd/log\""; echo "  server-count: 1"
	  echo "remote-control:"; echo "  control-enable: no"
	  while [ $# -ge 2 ]; do echo "zone:"; echo "  name: $1"; echo "  zonefile: \"$2\""; shift 2; done
	} >"$T/nsd/nsd.conf"
	timeout 300 nsd -d -c "$T/nsd/nsd.conf" >"$T/nsd/out" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		grep -q "nsd started" "$T/nsd/log" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$T/nsd/log" "$T/nsd/out" >&2
	fail "nsd did not start"
}

# start_daemon [args...]: `sluice run` without --drain in the background
# (bounded by --max-time 60), logging to $T/acct.jsonl; its pid in DAEMON.
start_daemon() {
	"$SLUICE" run --log "$T/acct.jsonl" --max-time 60 "$@" >"$T/d.out" 2>"$T/d.err" &
	DAEMON=$!
}

# run_sluice [args...]: drain with a time bound; exit status in RC.
run_sluice() {
	set +e
	timeout 300 "$SLUICE" run --drain --log "$T/acct.jsonl" "$@" >"$T/run.out" 2>"$T/run.err"
	RC=$?
	set -e
	[ "$RC" -lt 124 ] || { cat "$T/run.err" >&2; fail "sluice did not finish (rc $RC)"; }
	if grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/run.err"; then
		cat "$T/run.err" >&2
		fail "sanitizer report"
	fi
}

# spool_files DIR: how many files are in DIR (0 if none).
spool_files() { find "$1" -maxdepth 1 -type f | wc -l; }

# count_rcpts SPOOLDIR: X-Receiver lines in the files of SPOOLDIR/new.
count_rcpts() { cat "$1"/new/* 2>/dev/null | grep -ci '^X-Receiver:' || true; }

# log_count JQ_CONDITION: accounting lines for which the condition holds.
log_count() { jq -c "select($1)" "$T/acct.jsonl" | wc -l; }

# Every recipient has exactly one final line, the log is valid JSON.
check_log_final() {
	local want=$1
	jq . "$T/acct.jsonl" >/dev/null || fail "accounting log is not valid JSON"
	local finals dup
	finals=$(jq -r 'select(.result=="delivered" or .result=="bounced" or .result=="expired") | .id+" "+.rcpt' "$T/acct.jsonl" | sort)
	[ "$(echo "$finals" | grep -c .)" -eq "$want" ] || fail "want $want final lines, got $(echo "$finals" | grep -c .)"
	dup=$(echo "$finals" | uniq -d | head -3)
	[ -z "$dup" ] || fail "recipients with more than one final line: $dup"
}

# small_tmpfs DIR SIZE: mounts a tmpfs of SIZE on DIR (made here), unmounted
# when the test exits; exits the test as skipped when not root or not allowed.
small_tmpfs() {
	if [ "$(id -u)" != 0 ]; then echo "  skipped: mounting a small tmpfs needs root"; exit 0; fi
	mkdir -p "$1"
	mount -t tmpfs -o size="$2" tmpfs "$1" || { echo "  skipped: cannot mount tmpfs"; exit 0; }
	SMALL_TMPFS=$1
	trap 'rc=$?; umount -l "$SMALL_TMPFS" 2>/dev/null; (exit $rc); cleanup' EXIT
}
