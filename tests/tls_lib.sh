# tests/tls_lib.sh - helpers for the STARTTLS tests (sourced after lib.sh):
# certificates made at run time, the servers of tests/tls_servers.py, a
# private Postfix instance with smtpd_tls_security_level = encrypt, and
# checks of the accounting log. Loopback only; everything bounded in time.
# Needs: openssl, python3-aiosmtpd (Debian's, for /usr/bin/python3),
# postfix (its binaries only: the system instance is never started), jq.

TLS_SRV=$HERE/tls_servers.py
# The Python with aiosmtpd: `python3` first, then Debian's (a pyenv or venv
# python3 earlier in PATH does not see Debian's dist-packages).
TLS_PY=
for _py in python3 /usr/bin/python3; do
	if "$_py" -c 'import aiosmtpd' 2>/dev/null; then TLS_PY=$(command -v "$_py"); break; fi
done
[ -n "$TLS_PY" ] || fail "python3-aiosmtpd missing (apt-get install python3-aiosmtpd)"
command -v openssl >/dev/null || fail "openssl missing"
mkdir -p "$T/certs"

# make_cert NAME [ec|rsa] [SAN_DNS_NAME]: a self-signed certificate for
# SAN_DNS_NAME (default NAME) into $T/certs/NAME.pem and NAME.key (the
# .pem doubles as the CA file for --tls-ca).
make_cert() {
	local name=$1 kind=${2:-ec} san=${3:-$1} alg
	if [ "$kind" = rsa ]; then alg=(-newkey rsa:2048); else alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); fi
	timeout 30 openssl req -x509 "${alg[@]}" -nodes -days 2 -subj "/CN=$san" \
		-addext "subjectAltName=DNS:$san" -keyout "$T/certs/$name.key" -out "$T/certs/$name.pem" \
		>"$T/certs/$name.log" 2>&1 || { cat "$T/certs/$name.log" >&2; fail "openssl req for $name"; }
}

# start_tls_server TAG MODE [tls_servers.py options...]: starts it with
# --record $T/TAG.rec --maildir $T/TAG.md; port in TPORT, pid in TPID.
start_tls_server() {
	local tag=$1 mode=$2; shift 2
	rm -rf "$T/$tag.rec" "$T/$tag.md" "$T/$tag.srv"
	timeout 120 "$TLS_PY" "$TLS_SRV" "$mode" --record "$T/$tag.rec" --maildir "$T/$tag.md" \
		--max-time 110 "$@" >"$T/$tag.srv" 2>"$T/$tag.srverr" &
	PIDS+=($!)
	TPID=$!
	for _ in $(seq 200); do
		grep -q '^listening' "$T/$tag.srv" 2>/dev/null && break
		sleep 0.05
	done
	TPORT=$(sed -n 's/^listening 127\.0\.0\.1://p' "$T/$tag.srv")
	[ -n "$TPORT" ] || { cat "$T/$tag.srverr" >&2; fail "tls server $tag ($mode) did not start"; }
	touch "$T/$tag.rec"
}
stop_tls_server() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

# mkspool DIR N DOMAIN [RECIPIENTS]: N messages (spoolgen) whose recipients
# are all at DOMAIN; several calls may fill one spool (distinct seeds).
MKSPOOL_SEED=100
mkspool() {
	local dir=$1 n=$2 dom=$3 r=${4:-1}
	MKSPOOL_SEED=$((MKSPOOL_SEED + 1))
	"$SLUICE" spoolgen --spool "$dir" --count "$n" --domains 1 --recipients "$r" --seed "$MKSPOOL_SEED" >/dev/null ||
		fail "spoolgen"
	sed -i "/^X-Receiver:/s/@d0\.example>/@$dom>/" "$dir"/new/g$MKSPOOL_SEED-*
}

# spool_pairs DIR: "id rcpt" of every recipient of DIR/new (sorted).
spool_pairs() {
	awk 'FNR == 1 { n = FILENAME; sub(/.*\//, "", n); hdr = 1 }
	     hdr && /^\r?$/ { hdr = 0 }
	     hdr && tolower($0) ~ /^x-receiver:/ { v = $0; sub(/^[^<]*</, "", v); sub(/>.*/, "", v); print n, v }' \
		"$1"/new/* 2>/dev/null | sort
}

# trun TAG [run args...]: sluice run --drain logging to $T/TAG.acct
# (stdout $T/TAG.out, stderr .err); exit status in RC.
trun() {
	local tag=$1; shift
	set +e
	timeout 90 "$SLUICE" run --drain --log "$T/$tag.acct" "$@" >"$T/$tag.out" 2>"$T/$tag.err"
	RC=$?
	set -e
	touch "$T/$tag.acct"
	if grep -q "ERROR: AddressSanitizer\|runtime error:\|assertion failed" "$T/$tag.err"; then
		cat "$T/$tag.err" >&2
		fail "$tag: sanitizer report or assertion"
	fi
	[ "$RC" -lt 124 ] || { tail -5 "$T/$tag.err" >&2; fail "$tag: sluice killed or timed out (exit $RC)"; }
	[ "$RC" -ne 2 ] || fail "$tag: sluice refused to start: $(head -3 "$T/$tag.err")"
	jq . "$T/$tag.acct" >/dev/null || fail "$tag: accounting log is not valid JSON"
}
# tlc TAG JQ_CONDITION: log lines of $T/TAG.acct for which it holds.
tlc() { jq -c "select($2)" "$T/$1.acct" | wc -l; }
# tls_summary TAG: parses the summary's "tls connections N (F full
# handshakes, R resumed)" into TLS_CONNS TLS_FULL TLS_RESUMED.
tls_summary() {
	local line
	line=$(grep -E 'tls connections +[0-9]+ \([0-9]+ full handshakes, [0-9]+ resumed\)' "$T/$1.out" | head -1)
	[ -n "$line" ] || { cat "$T/$1.out" >&2; fail "$1: no 'tls connections N (F full handshakes, R resumed)' line in the summary"; }
	read -r TLS_CONNS TLS_FULL TLS_RESUMED < <(echo "$line" |
		sed -E 's/.*tls connections +([0-9]+) \(([0-9]+) full handshakes, ([0-9]+) resumed\).*/\1 \2 \3/')
}
# outcomes TAG: the most frequent result/tls/response triples (for messages).
outcomes() { jq -r '.result+" tls="+(.tls // "null")+" "+.response' "$T/$1.acct" | cut -c1-110 | sort | uniq -c | sort -rn | head -3 | tr -s ' \n' ' '; }
# openssl_names: PROTO:CIPHER lines on stdin, out with the cipher in
# OpenSSL's naming, as Python's ssl and Postfix write it: an IANA name
# (TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, as wolfSSL names TLS 1.2
# suites) becomes ECDHE-ECDSA-AES256-GCM-SHA384 (`openssl ciphers
# -stdname`); TLS 1.3 suites have one name in both.
openssl_names() {
	[ -s "$T/cipher.map" ] || openssl ciphers -stdname ALL 2>/dev/null | awk '$2 == "-" { print $1, $3 }' >"$T/cipher.map"
	awk 'NR == FNR { m[$1] = $2; next }
	     { i = index($0, ":"); p = substr($0, 1, i); c = substr($0, i + 1); print p ((c in m) ? m[c] : c) }' "$T/cipher.map" -
}
# responses TAG: the distinct responses of the deferrals (for messages).
responses() { jq -r 'select(.result=="deferred") | .response' "$T/$1.acct" | cut -c1-120 | sort | uniq -c | sort -rn | head -3 | tr -s ' \n' ' '; }

# accounted TAG SPOOLDIR PAIRS_BEFORE: nothing lost. Every recipient of
# PAIRS_BEFORE (spool_pairs taken before the run) has a log line, at most
# one final; a message stays in SPOOLDIR/new exactly when one of its
# recipients has no final line; nothing in active/.
accounted() {
	local tag=$1 sp=$2 before=$3 missing dup kept want
	missing=$(comm -23 <(sort -u "$before") <(jq -r '.id+" "+.rcpt' "$T/$tag.acct" | sort -u) | head -3)
	[ -z "$missing" ] || fail "$tag: recipients without any log line: ${missing//$'\n'/, }"
	dup=$(jq -r 'select(.result=="delivered" or .result=="bounced" or .result=="expired") | .id+" "+.rcpt' "$T/$tag.acct" | sort | uniq -d | head -3)
	[ -z "$dup" ] || fail "$tag: more than one final line: ${dup//$'\n'/, }"
	want=$(comm -23 <(sort -u "$before") \
		<(jq -r 'select(.result=="delivered" or .result=="bounced" or .result=="expired") | .id+" "+.rcpt' "$T/$tag.acct" | sort -u) |
		cut -d' ' -f1 | sort -u)
	kept=$(ls "$sp/new" 2>/dev/null | sort)
	[ "$kept" = "$want" ] || fail "$tag: spool new/ holds $(echo "$kept" | grep -c .) message(s), want the $(echo "$want" | grep -c .) with a recipient not final"
	[ "$(find "$sp/active" -type f 2>/dev/null | wc -l)" -eq 0 ] || fail "$tag: files left in active/"
}

# stored_pairs MAILDIR: "rcpt" of every envelope recipient of the messages
# a tls_servers.py server stored (sorted, with repeats).
stored_rcpts() {
	cat "$1"/new/* 2>/dev/null | tr -d '\r' | sed -n 's/^X-Envelope-To: <\(.*\)>$/\1/p' | sort
}

# ---------------------------------------------------------------- Postfix
# start_postfix CERT KEY DOMAIN: a private Postfix instance (its own
# config, queue and data directories under $T/pf, nothing shared with the
# system's /etc/postfix instance, which is neither started nor read) whose
# smtpd listens on 127.0.0.1:$PF_PORT with smtpd_tls_security_level =
# encrypt, accepts mail for DOMAIN only (virtual(8) into the Maildir
# $PF_MAIL: one file per recipient) and relays nothing. Log: $T/pf/maillog.
# Runs as root (master drops to the postfix user). Stopped on exit.
PF_DIR=
start_postfix() {
	local cert=$1 key=$2 dom=$3 uid gid
	PF_BIN=$(command -v postfix || echo /usr/sbin/postfix)
	[ -x "$PF_BIN" ] || fail "postfix missing (apt-get install postfix)"
	[ "$(id -u)" = 0 ] || { echo "  skipped: a private Postfix instance needs root"; exit 0; }
	uid=$(id -u postfix) && gid=$(id -g postfix) || fail "no postfix user"
	PF_DIR=$T/pf
	PF_PORT=$(free_port)
	PF_MAIL=$PF_DIR/mail/maildir/new
	mkdir -p "$PF_DIR/etc" "$PF_DIR/queue" "$PF_DIR/data" "$PF_DIR/mail"
	chmod 755 "$PF_DIR"
	# master.lock and the TLS session-ticket keys live in data_directory,
	# which postfix wants owned by its user; virtual(8) writes the Maildir
	# as that user.
	chown "$uid:$gid" "$PF_DIR/data" "$PF_DIR/mail"
	cp "$cert" "$PF_DIR/etc/cert.pem"; cp "$key" "$PF_DIR/etc/key.pem"; chmod 600 "$PF_DIR/etc/key.pem"
	cat >"$PF_DIR/etc/main.cf" <<-EOF
	compatibility_level = 3.6
	queue_directory = $PF_DIR/queue
	data_directory = $PF_DIR/data
	maillog_file = $PF_DIR/maillog
	maillog_file_prefixes = $T
	myhostname = mx.test.example
	mydomain = test.example
	myorigin = \$myhostname
	inet_interfaces = 127.0.0.1
	inet_protocols = ipv4
	mydestination =
	mynetworks = 127.0.0.1/32
	relay_domains =
	alias_maps =
	alias_database =
	local_recipient_maps =
	smtpd_relay_restrictions = reject_unauth_destination
	smtpd_recipient_restrictions =
	default_transport = error:5.7.1 this test instance delivers nothing outside
	relay_transport = error:5.7.1 this test instance relays nothing
	virtual_mailbox_domains = $dom
	virtual_mailbox_base = $PF_DIR/mail
	virtual_mailbox_maps = regexp:$PF_DIR/etc/vmailbox
	virtual_uid_maps = static:$uid
	virtual_gid_maps = static:$gid
	virtual_minimum_uid = 1
	smtpd_tls_security_level = encrypt
	smtpd_tls_cert_file = $PF_DIR/etc/cert.pem
	smtpd_tls_key_file = $PF_DIR/etc/key.pem
	smtpd_tls_loglevel = 1
	smtpd_tls_received_header = yes
	smtputf8_enable = no
	biff = no
	EOF
	# Every recipient of DOMAIN into one Maildir (one file per recipient,
	# with Delivered-To).
	printf '/@%s$/ maildir/\n' "${dom//./\\.}" >"$PF_DIR/etc/vmailbox"
	cat >"$PF_DIR/etc/master.cf" <<-EOF
	127.0.0.1:$PF_PORT inet n - n - - smtpd
	pickup    unix  n - n 60 1 pickup
	cleanup   unix  n - n - 0 cleanup
	qmgr      unix  n - n 300 1 qmgr
	tlsmgr    unix  - - n 1000? 1 tlsmgr
	rewrite   unix  - - n - - trivial-rewrite
	bounce    unix  - - n - 0 bounce
	defer     unix  - - n - 0 bounce
	trace     unix  - - n - 0 bounce
	verify    unix  - - n - 1 verify
	flush     unix  n - n 1000? 0 flush
	proxymap  unix  - - n - - proxymap
	showq     unix  n - n - - showq
	error     unix  - - n - - error
	retry     unix  - - n - - error
	discard   unix  - - n - - discard
	virtual   unix  - n n - - virtual
	anvil     unix  - - n - 1 anvil
	scache    unix  - - n - 1 scache
	postlog   unix-dgram n - n - 1 postlogd
	EOF
	timeout 60 "$PF_BIN" -c "$PF_DIR/etc" start >"$PF_DIR/start.out" 2>&1 ||
		{ cat "$PF_DIR/start.out" "$PF_DIR/maillog" >&2 2>/dev/null; fail "postfix did not start"; }
	# Bounded like everything else: should this script die without its
	# EXIT trap (SIGKILL), the instance stops by itself after 300 s.
	timeout 310 bash -c "sleep 300; '$PF_BIN' -c '$PF_DIR/etc' stop" >/dev/null 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$PF_DIR/maillog" >&2
	fail "postfix smtpd does not listen on 127.0.0.1:$PF_PORT"
}
# pf_wait N: waits (20 s at most) until the Maildir holds N files and the
# queue is empty; PF_COUNT is what it holds.
pf_wait() {
	for _ in $(seq 200); do
		PF_COUNT=$(find "$PF_MAIL" -type f 2>/dev/null | wc -l)
		[ "$PF_COUNT" -ge "$1" ] && [ -z "$(find "$PF_DIR/queue/incoming" "$PF_DIR/queue/active" "$PF_DIR/queue/deferred" -type f 2>/dev/null | head -1)" ] && return 0
		sleep 0.1
	done
	PF_COUNT=$(find "$PF_MAIL" -type f 2>/dev/null | wc -l)
}
stop_postfix() {
	[ -n "$PF_DIR" ] && [ -d "$PF_DIR/etc" ] || return 0
	local pid
	pid=$(tr -dc 0-9 <"$PF_DIR/queue/pid/master.pid" 2>/dev/null)
	timeout 30 "$PF_BIN" -c "$PF_DIR/etc" stop >/dev/null 2>&1
	# master exits on its own; wait for it (a zombie counts as gone), then
	# make sure, by its own pid, that it is gone.
	if [ -n "$pid" ]; then
		for _ in $(seq 50); do
			[ -e "/proc/$pid" ] || break
			[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
			sleep 0.1
		done
		[ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && kill -9 "$pid" 2>/dev/null
	fi
	PF_DIR=
}
tls_cleanup() {
	local rc=$?
	set +e   # (under set -e, the "(exit $rc)" below would end the trap)
	stop_postfix
	(exit $rc)
	cleanup
}
trap tls_cleanup EXIT
# run-integration.sh's timeout sends SIGTERM: exit through the EXIT trap
# (which stops Postfix) instead of dying without it.
trap 'exit 143' TERM
trap 'exit 130' INT
