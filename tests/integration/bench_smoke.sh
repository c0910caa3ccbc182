# `sluice bench` works end to end on a tiny matrix: peers measured, sluice
# scenarios delivered everything, JSON, markdown table and plots written.
# (Speed is never asserted here: make bench measures it.)
source "$(dirname "$0")/../lib.sh"
set -e
"$SLUICE" bench --quick --messages 2000 --peer-messages 1000 --no-postfix --results "$T/res" \
	>"$T/bench.out" 2>"$T/bench.err" || { cat "$T/bench.out" "$T/bench.err"; fail "sluice bench failed"; }
j=$(ls "$T"/res/*.json)
[ "$(jq '.sluice | length' "$j")" -ge 3 ] || fail "fewer than 3 scenarios"
[ "$(jq '[.sluice[] | select(.delivered != .n)] | length' "$j")" -eq 0 ] || fail "a scenario did not deliver everything"
[ "$(jq '.peers["smtp-source->mockmx"].msgs_per_s > 0' "$j")" = true ] || fail "no smtp-source peer"
[ "$(jq '.peers["smtp-source->smtp-sink"].msgs_per_s > 0' "$j")" = true ] || fail "no smtp-sink peer"
[ "$(jq '.peers["openssl-speed"].rsa2048_sign_per_s > 0' "$j")" = true ] || fail "no openssl figure"
[ "$(jq '.sluice[0].timeline | length' "$j")" -gt 0 ] || fail "no timeline"
grep -q "ratio" "$T/bench.out" || fail "no ratio column in the table"
for p in $(jq -r '.plots[]' "$j"); do [ -s "$p" ] || fail "plot $p missing"; done
ok "bench ran: $(jq -r '.sluice | map(.name) | join(", ")' "$j")"
