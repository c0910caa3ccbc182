# Hostile STARTTLS servers (tests/tls_servers.py): one that closes on the
# ClientHello, one that answers it with garbage, one that never answers it
# (handshake timeout, bounded by --timeout), one that injects "250
# injected" in the same write as its 220 to STARTTLS (response injection:
# the extra bytes must fail the connection, never be read as a reply), one
# that refuses STARTTLS with 454. Each is met three ways, at once:
#   R  --tls required: every recipient deferred with the reason, the spool
#      kept, and nothing sent in clear (the servers accept mail in clear:
#      a leak would show as a delivery and as "clear_mail" in the record);
#   F  opportunistic with tls.plain-fallback = false: the same (not 454);
#   P  opportunistic, plain-fallback on (the default): the TLS attempt
#      fails, then a NEW connection in clear delivers everything, tls null;
#      never clear text on the connection whose handshake failed. (After
#      an injection, deferring everything as in R is accepted too.)
# Nothing lost in any of them; no delivered line without the server having
# stored that recipient.
#
# Each server mode runs in its own subshell so that every case reports
# (CASES="1 4" runs only those; KEEP=1 keeps $T).
source "$(dirname "$0")/../lib.sh"
source "$HERE/tls_lib.sh"
set -e
FAILED=()
make_cert mx ec mx.test.example
N=$((10 / SCALE))
# R and F: the first failed connection suspends the destination and defers
# its mail with the reason ("delivery suspended ...; last: TLS ...").
FAIL1='delivery = { destination-failures = 1; };'
printf '%s\n' "$FAIL1" >"$T/fail1.conf"
printf '%s\ntls = { policy = "opportunistic"; plain-fallback = false; };\n' "$FAIL1" >"$T/nofallback.conf"

case_() {   # NAME FUNCTION ARGS...
	[ -z "${CASES:-}" ] || [[ " $CASES " == *" ${1%% *} "* ]] || return 0
	local name=$1; shift
	echo "-- $name"
	if ( trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT; set -e; "$@" ); then
		:
	else
		FAILED+=("$name")
	fi
}

# recs TAG JQ_CONDITION: connection records of the server for which it holds.
recs() { jq -s "map(select($2)) | length" "$T/$1.rec"; }

# check_deferred TAG MODE REGEX: the R and F expectations.
check_deferred() {
	local tag=$1 mode=$2 re=$3 n bad probs=()
	n=$(wc -l <"$T/$tag.before")
	[ "$(tlc "$tag" '.result!="deferred"')" -eq 0 ] ||
		probs+=("$(tlc "$tag" '.result!="deferred"') lines not deferred: $(jq -r 'select(.result!="deferred") | .result+" tls="+(.tls // "null")+" "+.response' "$T/$tag.acct" | cut -c1-90 | sort | uniq -c | head -2 | tr -s ' \n' ' ')")
	[ "$(jq -r 'select(.result=="deferred") | .id+" "+.rcpt' "$T/$tag.acct" | sort -u | wc -l)" -eq "$n" ] ||
		probs+=("$(jq -r 'select(.result=="deferred") | .id+" "+.rcpt' "$T/$tag.acct" | sort -u | wc -l) of $n recipients deferred")
	bad=$(jq -r --arg re "$re" 'select(.result=="deferred" and ((.response | test($re; "i")) and (.response | test("tls"; "i")) | not)) | .response' "$T/$tag.acct" | cut -c1-120 | sort | uniq -c | head -2 | tr -s ' \n' ' ')
	[ -z "$bad" ] || probs+=("deferrals that do not say /$re/ and TLS: $bad")
	[ "$RC" -eq 1 ] || probs+=("exit $RC, want 1")
	[ "$(recs "$tag" '.starttls')" -ge 1 ] || probs+=("no connection sent STARTTLS: nothing was tested")
	case $mode in close-hello|garbage|stall)
		[ "$(recs "$tag" '.client_hello')" -ge 1 ] || probs+=("no ClientHello reached the server: no handshake was attempted") ;;
	esac
	[ "$(recs "$tag" '.clear_mail')" -eq 0 ] || probs+=("MAIL FROM sent in clear on $(recs "$tag" '.clear_mail') connection(s)")
	bad=$(jq -r '.after_tls_clear[] | select(test("^(MAIL|RCPT|DATA|AUTH|BDAT)"; "i"))' "$T/$tag.rec" | head -2)
	[ -z "$bad" ] || probs+=("commands in clear after STARTTLS: ${bad//$'\n'/, }")
	[ "$(ls "$T/$tag.md/new" | wc -l)" -eq 0 ] || probs+=("the server stored $(ls "$T/$tag.md/new" | wc -l) messages")
	[ ${#probs[@]} -eq 0 ] || fail "$tag: $(printf '%s; ' "${probs[@]}")"
	accounted "$tag" "$T/sp-$tag" "$T/$tag.before"
	[ "$(spool_files "$T/sp-$tag/new")" -eq "$N" ] || fail "$tag: spool files not kept"
}

# check_fallback TAG MODE: the P expectations.
check_fallback() {
	local tag=$1 mode=$2 n probs=() bad
	n=$(wc -l <"$T/$tag.before")
	[ "$RC" -eq 0 ] || probs+=("exit $RC, want 0 (deferrals: $(responses "$tag"))")
	[ "$(tlc "$tag" '.result=="delivered" and .tls == null')" -eq "$n" ] ||
		probs+=("$(tlc "$tag" '.result=="delivered" and .tls == null') of $n delivered with tls null ($(tlc "$tag" '.result=="delivered" and .tls != null') with tls set)")
	# Every delivered recipient is one the server stored, once.
	[ "$(jq -r 'select(.result=="delivered") | .rcpt' "$T/$tag.acct" | sort)" = "$(stored_rcpts "$T/$tag.md")" ] ||
		probs+=("delivered lines and the server's stored recipients differ: $(diff <(jq -r 'select(.result=="delivered") | .rcpt' "$T/$tag.acct" | sort) <(stored_rcpts "$T/$tag.md") | grep '^[<>]' | head -3 | tr '\n' ' ')")
	[ "$(recs "$tag" '.starttls')" -ge 1 ] || probs+=("no connection sent STARTTLS: TLS was not tried first")
	case $mode in close-hello|garbage|stall)
		[ "$(recs "$tag" '.client_hello')" -ge 1 ] || probs+=("no ClientHello reached the server") ;;
	esac
	if [ "$mode" != refuse454 ]; then
		# After a failed handshake the connection is dead: the plaintext
		# retry is a new connection, which does not send STARTTLS.
		[ "$(recs "$tag" '.starttls and .clear_mail')" -eq 0 ] || probs+=("MAIL in clear on a connection whose STARTTLS failed")
		bad=$(jq -r '.after_tls_clear[] | select(test("^(MAIL|RCPT|DATA|AUTH|BDAT)"; "i"))' "$T/$tag.rec" | head -2)
		[ -z "$bad" ] || probs+=("commands in clear after a failed STARTTLS: ${bad//$'\n'/, }")
		[ "$(recs "$tag" '(.starttls | not) and .clear_mail')" -ge 1 ] || probs+=("no plaintext connection without STARTTLS delivered")
	fi
	[ ${#probs[@]} -eq 0 ] || fail "$tag: $(printf '%s; ' "${probs[@]}")"
	accounted "$tag" "$T/sp-$tag" "$T/$tag.before"
}

# hostile MODE REGEX [extra sluice args]: the three runs at once.
hostile() {
	local mode=$1 re=$2; shift 2
	local maxt=3 ways=(R F P) w tag pids=() spids=() i
	[ "$mode" = stall ] && maxt=6
	[ "$mode" = refuse454 ] && ways=(R P)
	for w in "${ways[@]}"; do
		tag=$mode-$w
		rm -rf "$T/sp-$tag"
		mkspool "$T/sp-$tag" "$N" hostile.example 2
		spool_pairs "$T/sp-$tag" >"$T/$tag.before"
		start_tls_server "$tag" "$mode" --accept-plain --conn-time 15 --cert "$T/certs/mx.pem" --key "$T/certs/mx.key"
		spids+=("$TPID")
		local args=(--spool "$T/sp-$tag" --route "*=127.0.0.1:$TPORT" --shards 1 --timeout 2 --max-time "$maxt" "$@")
		case $w in
			R) args+=(-c "$T/fail1.conf" --tls required --retry-interval 100) ;;
			F) args+=(-c "$T/nofallback.conf" --retry-interval 100) ;;
			P) args+=(--retry-interval 0.5) ;;
		esac
		( trun "$tag" "${args[@]}"; echo "$RC" >"$T/$tag.rc" ) &
		pids+=($!)
	done
	local r=0 dead=()
	for i in "${!pids[@]}"; do wait "${pids[$i]}" || dead+=("$mode-${ways[$i]}"); done
	for i in "${!spids[@]}"; do stop_tls_server "${spids[$i]}"; done
	[ ${#dead[@]} -eq 0 ] || fail "${dead[*]}: sluice did not run (above)"
	for w in "${ways[@]}"; do
		tag=$mode-$w
		RC=$(cat "$T/$tag.rc")
		if [ "$w" = P ] && [ "$mode" = inject ] && [ "$(tlc "$tag" '.result=="delivered"')" -eq 0 ]; then
			# An injection may be taken for an attack rather than a broken
			# server: no plaintext fallback then, the mail deferred.
			( check_deferred "$tag" "$mode" "$re" ) || { r=1; continue; }
			ok "$mode, opportunistic + plain-fallback: no fallback after an injection, $(wc -l <"$T/$tag.before") deferred, kept, nothing in clear: $(jq -r '.response' "$T/$tag.acct" | head -1 | cut -c1-90)"
		elif [ "$w" = P ]; then
			( check_fallback "$tag" "$mode" ) || { r=1; continue; }
			if [ "$mode" = refuse454 ]; then
				ok "$mode, opportunistic: $(tlc "$tag" '.result=="delivered"') delivered in clear after the 454 ($(recs "$tag" '.starttls') STARTTLS refused)"
			else
				ok "$mode, opportunistic + plain-fallback: $(tlc "$tag" '.result=="delivered"') delivered in clear on a new connection after the failed TLS attempt ($(recs "$tag" '.starttls') STARTTLS, $(recs "$tag" '(.starttls|not) and .clear_mail') plaintext connection(s))"
			fi
		else
			( check_deferred "$tag" "$mode" "$re" ) || { r=1; continue; }
			ok "$mode, $([ "$w" = R ] && echo "--tls required" || echo "opportunistic, plain-fallback false"): $(wc -l <"$T/$tag.before") deferred, kept, nothing in clear: $(jq -r '.response' "$T/$tag.acct" | head -1 | cut -c1-90)"
		fi
	done
	if [ "$mode" = inject ]; then
		[ "$(jq -s 'map(select(.handshake_ok)) | length' "$T"/inject-*.rec)" -eq 0 ] ||
			{ echo "FAIL: inject: sluice went on with the TLS handshake after '220 go ahead' came with '250 injected' in the same read ($(jq -s 'map(select(.handshake_ok)) | length' "$T"/inject-*.rec) connection(s); commands over TLS then: $(jq -r '.tls_commands[]' "$T"/inject-*.rec | sort | uniq -c | head -3 | tr -s ' \n' ' '))" >&2; r=1; }
		[ $r -eq 0 ] && ok "inject: no connection went on to a handshake after the injected bytes"
	fi
	return $r
}

case_ "1 close on ClientHello" hostile close-hello 'handshake failed'
case_ "2 garbage instead of ServerHello" hostile garbage 'handshake failed'
case_ "3 no answer to the ClientHello (--timeout 2)" hostile stall 'handshake failed'
case_ "4 STARTTLS response injection" hostile inject 'inject|unexpected'
case_ "5 STARTTLS refused 454" hostile refuse454 '454|not available|refus'
[ ${#FAILED[@]} -eq 0 ] || fail "${#FAILED[@]} hostile TLS case(s) failed: ${FAILED[*]}"
