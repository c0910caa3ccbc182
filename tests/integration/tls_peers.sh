# STARTTLS with real peers, policy opportunistic: aiosmtpd that requires
# STARTTLS before MAIL (what it stored is what the log says was delivered,
# over TLS), aiosmtpd without STARTTLS (delivered in clear, tls null), and a
# private Postfix smtpd with smtpd_tls_security_level = encrypt (delivered
# into its Maildir, one file per recipient). Several connections to one
# host, one after the other (--max-per-connection 5, --max-connections 1,
# one shard): sessions are resumed, and the servers agree on what the
# summary counts. Then sluice's own mockmx with STARTTLS, when it has it.
source "$(dirname "$0")/../lib.sh"
source "$HERE/tls_lib.sh"
set -e
make_cert mx ec mx.test.example
make_cert mxrsa rsa mx.test.example

# ---- 1. aiosmtpd, STARTTLS required before MAIL (EC P-256 certificate)
N=$((40 / SCALE))
mkspool "$T/sp1" "$N" peers.example 2
spool_pairs "$T/sp1" >"$T/sp1.before"
grep -hi '^message-id:' "$T/sp1"/new/* | sed 's/^[^:]*: *//; s/\r$//' | sort >"$T/sp1.msgids"
start_tls_server a starttls --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
trun a --spool "$T/sp1" --route "*=127.0.0.1:$TPORT" --tls opportunistic --shards 1 --max-connections 1 \
	--max-per-connection 5 --retry-interval 0.5 --max-time 30
stop_tls_server "$TPID"
[ "$RC" -eq 0 ] || fail "aiosmtpd: exit $RC, $(tlc a '.result=="delivered"') delivered; deferrals: $(responses a)"
accounted a "$T/sp1" "$T/sp1.before"
[ "$(tlc a '.result=="delivered"')" -eq $((2 * N)) ] || fail "aiosmtpd: want $((2 * N)) delivered; log: $(outcomes a)"
bad=$(jq -c 'select(.result=="delivered" and ((.tls // "") | test("^TLSv1\\.[23]:[A-Z0-9_-]+$") | not)) | {rcpt, tls}' "$T/a.acct" | head -3)
[ -z "$bad" ] || fail "aiosmtpd: delivered lines without a TLSv1.2/1.3 protocol:cipher in tls: $bad"
[ "$(ls "$T/a.md/new" | wc -l)" -eq "$N" ] || fail "aiosmtpd stored $(ls "$T/a.md/new" | wc -l) messages, want $N"
[ "$(stored_rcpts "$T/a.md")" = "$(cut -d' ' -f2 "$T/sp1.before" | sort)" ] ||
	fail "aiosmtpd: the envelope recipients it stored differ from the spool's: $(diff <(stored_rcpts "$T/a.md") <(cut -d' ' -f2 "$T/sp1.before" | sort) | head -4 | tr '\n' ' ')"
[ "$(jq -r 'select(.ev=="message") | .message_id' "$T/a.rec" | sort)" = "$(cat "$T/sp1.msgids")" ] ||
	fail "aiosmtpd: the Message-IDs it received differ from the spool's"
[ "$(grep -c '^X-Peer-TLS: none' "$T/a.md"/new/* | awk -F: '{s += $NF} END {print s + 0}')" -eq 0 ] ||
	fail "aiosmtpd stored messages received in clear"
clear=$(jq -r 'select(.ev=="cmd" and (.tls|not) and (.line|test("^(MAIL|RCPT|DATA)"; "i"))) | .line' "$T/a.rec" | head -2)
[ -z "$clear" ] || fail "aiosmtpd: commands sent in clear before STARTTLS: ${clear//$'\n'/, }"
# Every tls value in the log names a protocol:cipher the server negotiated
# (the cipher in either naming: IANA or OpenSSL).
bad=$(comm -23 <(jq -r 'select(.tls != null) | .tls' "$T/a.acct" | openssl_names | sort -u) \
	<(jq -r 'select(.ev=="tls") | .proto+":"+.cipher' "$T/a.rec" | sort -u))
[ -z "$bad" ] || fail "aiosmtpd: the log's tls says $bad, which the server never negotiated"
tls_summary a
srv_tls=$(jq -s 'map(select(.ev=="tls")) | length' "$T/a.rec")
srv_res=$(jq -s 'map(select(.ev=="tls" and .resumed)) | length' "$T/a.rec")
[ "$TLS_CONNS" -ge $(((N + 4) / 5)) ] || fail "aiosmtpd: summary counts $TLS_CONNS tls connections for $N messages at 5 per connection"
[ $((TLS_FULL + TLS_RESUMED)) -eq "$TLS_CONNS" ] || fail "aiosmtpd: summary: $TLS_FULL full + $TLS_RESUMED resumed != $TLS_CONNS"
[ "$TLS_CONNS" -eq "$srv_tls" ] || fail "aiosmtpd: summary counts $TLS_CONNS tls connections, the server completed $srv_tls handshakes"
[ "$TLS_RESUMED" -ge 1 ] || fail "aiosmtpd: no session resumed over $TLS_CONNS connections to one host (the server resumed $srv_res)"
[ "$TLS_RESUMED" -eq "$srv_res" ] || fail "aiosmtpd: summary says $TLS_RESUMED resumed, the server saw $srv_res"
ok "aiosmtpd (STARTTLS required): $((2 * N)) recipients delivered over $(jq -r 'select(.tls != null) | .tls' "$T/a.acct" | sort -u | tr '\n' ' ')stored as sent; $TLS_CONNS tls connections, $TLS_RESUMED resumed (the server agrees)"

# ---- 1b. the same, a TLS 1.2-only server: "TLSv1.2:<cipher>", resumed
N12=10
mkspool "$T/sp12" "$N12" peers12.example 1
spool_pairs "$T/sp12" >"$T/sp12.before"
start_tls_server a12 starttls --tls-max 1.2 --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
trun a12 --spool "$T/sp12" --route "*=127.0.0.1:$TPORT" --shards 1 --max-connections 1 \
	--max-per-connection 5 --retry-interval 0.5 --max-time 20
stop_tls_server "$TPID"
[ "$RC" -eq 0 ] || fail "TLS 1.2 server: exit $RC; deferrals: $(responses a12)"
accounted a12 "$T/sp12" "$T/sp12.before"
[ "$(tlc a12 '.result=="delivered" and ((.tls // "") | test("^TLSv1\\.2:[A-Z0-9_-]+$"))')" -eq "$N12" ] ||
	fail "TLS 1.2 server: want $N12 delivered with tls TLSv1.2:<cipher>, got: $(jq -r '.result+" "+(.tls // "null")' "$T/a12.acct" | sort | uniq -c | tr -s ' \n' ' ')"
[ "$(stored_rcpts "$T/a12.md")" = "$(cut -d' ' -f2 "$T/sp12.before" | sort)" ] || fail "TLS 1.2 server: stored recipients differ from the spool's"
bad=$(comm -23 <(jq -r 'select(.tls != null) | .tls' "$T/a12.acct" | openssl_names | sort -u) \
	<(jq -r 'select(.ev=="tls") | .proto+":"+.cipher' "$T/a12.rec" | sort -u))
[ -z "$bad" ] || fail "TLS 1.2 server: the log's tls says $bad, which the server never negotiated"
tls_summary a12
srv_res=$(jq -s 'map(select(.ev=="tls" and .resumed)) | length' "$T/a12.rec")
[ "$TLS_RESUMED" -ge 1 ] && [ "$TLS_RESUMED" -eq "$srv_res" ] ||
	fail "TLS 1.2 server: summary says $TLS_RESUMED of $TLS_CONNS resumed, the server saw $srv_res resumed (want >= 1, the same)"
ok "TLS 1.2-only server: $N12 delivered over $(jq -r 'select(.tls != null) | .tls' "$T/a12.acct" | sort -u | tr '\n' ' ')$TLS_CONNS connections, $TLS_RESUMED resumed"

# ---- 2. aiosmtpd without STARTTLS, the default policy: delivered in clear
N2=$((20 / SCALE))
mkspool "$T/sp2" "$N2" plain.example 1
spool_pairs "$T/sp2" >"$T/sp2.before"
start_tls_server p plain
trun p --spool "$T/sp2" --route "*=127.0.0.1:$TPORT" --shards 1 --retry-interval 0.5 --max-time 20
stop_tls_server "$TPID"
[ "$RC" -eq 0 ] || fail "plain: exit $RC; deferrals: $(responses p)"
accounted p "$T/sp2" "$T/sp2.before"
[ "$(tlc p '.result=="delivered" and .tls == null')" -eq "$N2" ] ||
	fail "plain: want $N2 delivered with tls null, got $(tlc p '.result=="delivered" and .tls == null') ($(tlc p '.tls != null') with tls set)"
[ "$(ls "$T/p.md/new" | wc -l)" -eq "$N2" ] || fail "plain server stored $(ls "$T/p.md/new" | wc -l), want $N2"
[ "$(stored_rcpts "$T/p.md")" = "$(cut -d' ' -f2 "$T/sp2.before" | sort)" ] || fail "plain: stored recipients differ from the spool's"
[ "$(jq -s 'map(select(.ev=="cmd" and (.line|test("^STARTTLS"; "i")))) | length' "$T/p.rec")" -eq 0 ] ||
	fail "plain: STARTTLS sent to a server that did not offer it"
tls_summary p
[ "$TLS_CONNS" -eq 0 ] || fail "plain: summary counts $TLS_CONNS tls connections to a server without STARTTLS"
ok "server without STARTTLS: $N2 delivered in clear (tls null), STARTTLS never sent"

# ---- 3. Postfix smtpd, smtpd_tls_security_level = encrypt (RSA 2048)
N3=$((30 / SCALE))
start_postfix "$T/certs/mxrsa.pem" "$T/certs/mxrsa.key" test.example
mkspool "$T/sp3" "$N3" test.example 2
spool_pairs "$T/sp3" >"$T/sp3.before"
trun pf --spool "$T/sp3" --route "test.example=127.0.0.1:$PF_PORT" --shards 1 --max-connections 1 \
	--max-per-connection 5 --retry-interval 0.5 --max-time 30
[ "$RC" -eq 0 ] || fail "postfix: exit $RC; deferrals: $(responses pf); maillog: $(grep -c reject "$PF_DIR/maillog") rejections"
accounted pf "$T/sp3" "$T/sp3.before"
[ "$(tlc pf '.result=="delivered" and ((.tls // "") | test("^TLSv1\\.[23]:"))')" -eq $((2 * N3)) ] ||
	fail "postfix: want $((2 * N3)) delivered with tls set, got $(tlc pf '.result=="delivered" and .tls != null') of $(tlc pf '.result=="delivered"'); log: $(outcomes pf); maillog: $(grep -m2 -E 'SSL_accept error|TLS library problem' "$PF_DIR/maillog" | sed 's/.*: //' | tr '\n' ' ')"
pf_wait $((2 * N3))
[ "$PF_COUNT" -eq $((2 * N3)) ] || fail "postfix delivered $PF_COUNT files into its Maildir, want $((2 * N3)) (maillog: $(grep -E 'status=|fatal' "$PF_DIR/maillog" | grep -v status=sent | tail -2))"
[ "$(cat "$PF_MAIL"/* | tr -d '\r' | sed -n 's/^Delivered-To: //p' | sort)" = "$(cut -d' ' -f2 "$T/sp3.before" | sort)" ] ||
	fail "postfix: the Maildir's Delivered-To differ from the spool's recipients"
notls=$(grep -L 'using TLSv1\.[23] with cipher' "$PF_MAIL"/* | head -1)
[ -z "$notls" ] || fail "postfix: a message without 'using TLSv1.x with cipher' in its Received: $(grep -m1 -A2 '^Received:' "$notls" | tr -s '\n\t' ' ')"
bad=$(comm -23 <(jq -r 'select(.tls != null) | .tls' "$T/pf.acct" | openssl_names | sort -u) \
	<(cat "$PF_MAIL"/* | tr -d '\r' | sed -n 's/.*(using \(TLSv1\.[23]\) with cipher \([A-Z0-9_-]*\) .*/\1:\2/p' | sort -u))
[ -z "$bad" ] || fail "postfix: the log's tls says $bad, Postfix's Received headers do not"
tls_summary pf
pf_tls=$(grep -c 'TLS connection established from' "$PF_DIR/maillog" || true)
[ "$TLS_CONNS" -eq "$pf_tls" ] || fail "postfix: summary counts $TLS_CONNS tls connections, Postfix logged $pf_tls"
[ "$TLS_CONNS" -ge $(((N3 + 4) / 5)) ] || fail "postfix: $TLS_CONNS tls connections for $N3 messages at 5 per connection"
[ "$TLS_RESUMED" -ge 1 ] || fail "postfix: no session resumed over $TLS_CONNS connections (Postfix issues session tickets)"
ok "postfix encrypt: $((2 * N3)) recipients delivered into its Maildir over TLS, $TLS_CONNS connections, $TLS_RESUMED resumed"

# ---- 4. sluice's own mockmx with STARTTLS (once it has --tls-cert): two
# shards, several connections at once; everything delivered over TLS.
if "$SLUICE" mockmx --help 2>&1 | grep -q -- '--tls-cert'; then
	N4=$((50 / SCALE))
	mkspool "$T/sp4" "$N4" mock.example 2
	spool_pairs "$T/sp4" >"$T/sp4.before"
	mkdir -p "$T/mockstore"
	port=$(free_port)
	start_mockmx "$port" --tls-cert "$T/certs/mx.pem" --tls-key "$T/certs/mx.key" --store "$T/mockstore"
	trun mock --spool "$T/sp4" --route "*=127.0.0.1:$port" --shards 2 --max-per-connection 10 \
		--retry-interval 0.5 --max-time 30
	stop_mockmx
	[ "$RC" -eq 0 ] || fail "mockmx: exit $RC; deferrals: $(responses mock)"
	accounted mock "$T/sp4" "$T/sp4.before"
	[ "$(tlc mock '.result=="delivered" and ((.tls // "") | test("^TLSv1\\.[23]:"))')" -eq $((2 * N4)) ] ||
		fail "mockmx: want $((2 * N4)) delivered over TLS, got $(tlc mock '.result=="delivered" and .tls != null') of $(tlc mock '.result=="delivered"')"
	[ "$(mx_stat "$port" messages)" -eq "$N4" ] || fail "mockmx counted $(mx_stat "$port" messages) messages, want $N4"
	tls_summary mock
	[ $((TLS_FULL + TLS_RESUMED)) -eq "$TLS_CONNS" ] && [ "$TLS_CONNS" -ge 1 ] || fail "mockmx: summary $TLS_CONNS tls connections, $TLS_FULL full, $TLS_RESUMED resumed"
	ok "mockmx with STARTTLS: $((2 * N4)) delivered over TLS, 2 shards, $TLS_CONNS connections ($TLS_RESUMED resumed)"
	# Large messages through TLS: many records per message, more than the
	# 256 KB encrypted ahead of the kernel, short sends; byte for byte.
	N5=$((6 / SCALE + 2))
	rm -rf "$T/sp5" "$T/store5"
	"$SLUICE" spoolgen --spool "$T/sp5" --count "$N5" --size 3000000 --domains 1 --seed 5 >/dev/null
	cp -r "$T/sp5/new" "$T/orig5"
	mkdir -p "$T/store5"
	port=$(free_port)
	start_mockmx "$port" --tls-cert "$T/certs/mx.pem" --tls-key "$T/certs/mx.key" --store "$T/store5"
	trun big --spool "$T/sp5" --route "*=127.0.0.1:$port" --shards 1 --max-connections 2 --retry-interval 0.5 --max-time 60
	stop_mockmx
	[ "$RC" -eq 0 ] || fail "large over TLS: exit $RC; $(outcomes big)"
	[ "$(tlc big '.result=="delivered" and ((.tls // "") | test("^TLSv1\\.[23]:"))')" -eq "$(tlc big 'true')" ] || fail "large over TLS: not all delivered over TLS: $(outcomes big)"
	python3 "$HERE/check_bodies.py" "$T/orig5" "$T/store5" mockmx || fail "large over TLS: bodies differ"
	ok "large messages over TLS: $N5 of 3 MB delivered to mockmx byte for byte"
	# BDAT over TLS: a server without PIPELINING but with CHUNKING.
	rm -rf "$T/sp6" "$T/store6" "$T/orig6"
	"$SLUICE" spoolgen --spool "$T/sp6" --count 10 --size 200000 --domains 1 --seed 6 >/dev/null
	cp -r "$T/sp6/new" "$T/orig6"
	mkdir -p "$T/store6"
	port=$(free_port)
	start_mockmx "$port" --tls-cert "$T/certs/mx.pem" --tls-key "$T/certs/mx.key" --no-pipelining --store "$T/store6"
	trun bdat --spool "$T/sp6" --route "*=127.0.0.1:$port" --shards 1 --retry-interval 0.5 --max-time 30
	stop_mockmx
	[ "$RC" -eq 0 ] || fail "BDAT over TLS: exit $RC; $(outcomes bdat)"
	[ "$(mx_stat "$port" bdat)" -eq 10 ] || fail "BDAT over TLS: mockmx saw $(mx_stat "$port" bdat) BDAT transactions, want 10"
	[ "$(tlc bdat '.result=="delivered" and .tls != null')" -eq 10 ] || fail "BDAT over TLS: $(outcomes bdat)"
	python3 "$HERE/check_bodies.py" "$T/orig6" "$T/store6" mockmx || fail "BDAT over TLS: bodies differ"
	ok "BDAT LAST over TLS (no PIPELINING): 10 messages of 200 KB byte for byte"
else
	echo "  skipped: sluice mockmx has no --tls-cert yet"
fi
