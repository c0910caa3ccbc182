# One message with 100,000 recipients (ENVELOPE_MAX_RCPT, the spool
# format's maximum) over four domains, interleaved (r000000@d0, r000001@d1,
# ...), each domain with its own --route to one mockmx on loopback, beside
# five ordinary messages (routed by '*' to the same mockmx). mockmx takes at
# most 100 recipients per transaction (--max-rcpt 100, sluice's default
# max-recipients-per-transaction), so a transaction sluice did not split
# would get 452 and show up as deferrals.
# Checks: exit 0, spool empty; every one of the 100,000 recipients has
# exactly one accounting line, "delivered" on attempt 1, and the set of
# recipients logged is exactly the set in the file; no deferral; the small
# messages' recipients are delivered too; mockmx counted every recipient
# in 1000 + 5 transactions; and the drain took at most BOUND seconds.
# Measured on 2 shared cores (2026-12): about 0.7 s for the drain. The
# bound (60 s, MANY_BOUND overrides) leaves a wide margin for a loaded
# machine yet catches routing that turns quadratic in recipients.
# Under ASan (SLUICE_ASAN=1) the bound is 300 s and the count stays 100,000
# (measured: 2.5 s for the drain, 24 s for the test); MANY_N changes it.
source "$(dirname "$0")/../lib.sh"
set -e
N=${MANY_N:-100000}
if [ -n "${SLUICE_ASAN:-}" ]; then BOUND=${MANY_BOUND:-300}; else BOUND=${MANY_BOUND:-60}; fi
DOMAINS=4

"$SLUICE" spoolgen --spool "$T/sp" --count 5 --recipients 2 --domains 3 --seed 3 >/dev/null
small=$(count_rcpts "$T/sp")
cat "$T"/sp/new/* | sed -n 's/^X-Receiver: *<\(.*\)>\r\{0,1\}$/\1/Ip' | sort >"$T/small.want"
[ "$(wc -l <"$T/small.want")" -eq "$small" ] || fail "could not read the small messages' recipients"
# The big one: written to tmp/, then renamed into new/ (the pickup rule).
timeout 60 python3 - "$T/sp" "$N" "$DOMAINS" "$T/many.want" <<'EOF'
import os, sys
sp, n, nd, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rcpts = [b'r%06d@d%d.many.example' % (i, i % nd) for i in range(n)]
with open(os.path.join(sp, 'tmp', 'many'), 'wb') as f:
    f.write(b'X-Sender: <bulk@sender.example>\n')
    f.write(b''.join(b'X-Receiver: <' + r + b'>\n' for r in rcpts))
    f.write(b'From: <bulk@sender.example>\nSubject: one message, %d recipients\n\nHello.\n' % n)
os.rename(os.path.join(sp, 'tmp', 'many'), os.path.join(sp, 'new', 'many'))
with open(want, 'wb') as f:
    f.write(b''.join(r + b'\n' for r in sorted(rcpts)))
EOF
[ "$(count_rcpts "$T/sp")" -eq $((N + small)) ] || fail "spool has $(count_rcpts "$T/sp") recipients, want $((N + small))"

port=$(free_port)
start_mockmx "$port" --max-rcpt 100
routes=()
for d in $(seq 0 $((DOMAINS - 1))); do routes+=(--route "d$d.many.example=127.0.0.1:$port"); done
start=$(date +%s%N)
run_sluice --spool "$T/sp" "${routes[@]}" --route "*=127.0.0.1:$port" --shards 2 --max-time 280
ms=$(( ($(date +%s%N) - start) / 1000000 ))
stop_mockmx
! grep -q "ERROR: .*Sanitizer\|runtime error:" "$T/mx-$port.err" || { cat "$T/mx-$port.err"; fail "mockmx: sanitizer report"; }
[ "$RC" -eq 0 ] || { tail -20 "$T/run.err"; cat "$T/run.out"; fail "exit $RC after $ms ms"; }
echo "  drain of $N + $small recipients took $ms ms (bound ${BOUND} s)"
[ "$(spool_files "$T/sp/new")" -eq 0 ] && [ "$(spool_files "$T/sp/active")" -eq 0 ] || fail "spool not empty"

check_log_final $((N + small))
[ "$(log_count '.result!="delivered"')" -eq 0 ] || fail "$(log_count '.result!="delivered"') lines are not \"delivered\" (e.g. $(jq -c 'select(.result!="delivered")' "$T/acct.jsonl" | head -1))"
[ "$(log_count '.id=="many" and .result=="delivered" and .attempt==1')" -eq "$N" ] \
	|| fail "$(log_count '.id=="many" and .result=="delivered" and .attempt==1') of $N recipients of the big message delivered on attempt 1"
jq -r 'select(.id=="many" and .result=="delivered") | .rcpt' "$T/acct.jsonl" | sort >"$T/many.got"
cmp -s "$T/many.want" "$T/many.got" || { diff "$T/many.want" "$T/many.got" | head -5; fail "delivered recipients of the big message differ from its envelope"; }
ok "$N recipients of one message: each exactly one \"delivered\" line, on attempt 1"
jq -r 'select(.id!="many" and .result=="delivered") | .rcpt' "$T/acct.jsonl" | sort >"$T/small.got"
cmp -s "$T/small.want" "$T/small.got" || { diff "$T/small.want" "$T/small.got" | head -5; fail "small messages' delivered recipients differ"; }
ok "5 small messages: $small recipients delivered"

[ "$(mx_stat "$port" recipients)" -eq $((N + small)) ] || fail "mockmx saw $(mx_stat "$port" recipients) recipients, want $((N + small))"
want_txn=5   # one per small message (all on the '*' route), then per domain:
for d in $(seq 0 $((DOMAINS - 1))); do
	per=$(( (N - d + DOMAINS - 1) / DOMAINS ))   # i < N with i % DOMAINS == d
	want_txn=$(( want_txn + (per + 99) / 100 ))
done
[ "$(mx_stat "$port" rejected)" -eq 0 ] || fail "mockmx rejected $(mx_stat "$port" rejected)"
[ "$(mx_stat "$port" messages)" -eq "$want_txn" ] || fail "mockmx saw $(mx_stat "$port" messages) transactions, want $want_txn"
ok "mockmx: $((N + small)) recipients in $want_txn transactions of at most 100"
[ "$ms" -le $((BOUND * 1000)) ] || fail "took $ms ms, more than $BOUND s"
ok "within $BOUND s"
