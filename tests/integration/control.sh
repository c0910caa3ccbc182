# The control socket end to end, against a running daemon (one mock MX,
# reached by a --route, so its MX group is the route's "127.0.0.1:PORT"):
#   status --json / status: the daemon's pid, totals and the pair's
#     delivered count agree with the accounting log after a drain;
#   top (in tmux): the header and the group's row with its count; q quits
#     and gives the terminal back;
#   ctl suspend GROUP: nothing reaches the MX, the waiting messages are
#     deferred as "suspended", `ctl why` says so; ctl resume: delivered;
#   ctl pause JOB / resume JOB: the job's messages wait ("paused"), then go;
#   ctl bounce JOB: its waiting messages bounce and leave the spool,
#     another job's are untouched;
#   ctl reload: the configuration is read again;
#   every ctl command is an {"event":"ctl"} line in the log;
#   the socket is mode 0660: another user is refused (Permission denied);
#   usage errors exit 2, no daemon exits 1 with a hint.
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
TMUX_SOCK="$T/tmux.sock"
trap 'rc=$?; set +e; tmux -S "$TMUX_SOCK" kill-server 2>/dev/null; (exit $rc); cleanup' EXIT

# wait_until SECONDS CMD...: CMD every 0.1 s until it succeeds; false after SECONDS.
wait_until() {
	local end=$(( $(date +%s%N) + $1 * 1000000000 ))
	shift
	until "$@"; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.1
	done
}
# ctl ARGS...: sluice ctl against the daemon; stdout in OUT, stderr in ERR, exit status in RC.
ctl() {
	set +e
	OUT=$(timeout 20 "$SLUICE" ctl --control "$S" "$@" 2>"$T/ctl.err")
	RC=$?
	set -e
	ERR=$(cat "$T/ctl.err")
}
ctl_ok() { ctl "$@"; [ "$RC" -eq 0 ] || fail "ctl $*: exit $RC: $ERR $OUT"; }
# inject TO [JOB]: one message into the spool; prints its spool id.
inject() {
	printf 'Subject: control test\n\nhello\n' |
		"$SLUICE" inject --spool "$T/sp" --from s@sender.example --to "$1" ${2:+--job "$2"}
}
delivered_at_mx() { spool_files "$T/store"; }
# ids_with RESULT REGEX ID...: every ID has a RESULT line whose response matches REGEX.
ids_with() {
	local result=$1 re=$2 have
	shift 2
	have=$(jq -r --arg r "$result" --arg re "$re" \
		'select(.result==$r and ((.response // "") | test($re))) | .id' "$T/acct.jsonl" | sort -u)
	for id in "$@"; do grep -qxF "$id" <<<"$have" || return 1; done
}
ids_delivered() { ids_with delivered . "$@"; }
none_final() { # none_final ID...: no ID has a delivered, bounced or expired line
	local have
	have=$(jq -r 'select(.result=="delivered" or .result=="bounced" or .result=="expired") | .id' "$T/acct.jsonl")
	for id in "$@"; do ! grep -qxF "$id" <<<"$have" || return 1; done
}
in_spool() { [ -e "$T/sp/new/$1" ] || [ -e "$T/sp/active/$1" ]; }
gone_from_spool() { for id in "$@"; do ! in_spool "$id" || return 1; done; }
ctl_logged() { # ctl_logged COMMAND-START ANSWER-START: an {"event":"ctl"} line by this user
	[ "$(log_count ".event==\"ctl\" and (.command|startswith(\"$1\")) and (.answer|startswith(\"$2\"))
		and .uid==$(id -u)")" -ge 1 ]
}

P=$(free_port)
start_mockmx "$P" --store "$T/store"
G="127.0.0.1:$P"      # the MX group of a --route destination: its host:port
S="$T/ctl.sock"
N=20
cat >"$T/sluice.conf" <<CONF
delivery = { retry-interval = 0.5; retry-max = 1; };
CONF
"$SLUICE" spoolgen --spool sp --count "$N" --recipients 1 --domains 3 >/dev/null
start_daemon -c "$T/sluice.conf" --spool sp --route "*=$G" --control "$S" --shards 2 --max-time 120
PIDS+=("$DAEMON")
wait_until 5 test -S "$S" || fail "no control socket $S after 5 s: $(tail -5 d.err)"

# a. status after the drain of N messages
drained() { [ "$(log_count '.result=="delivered"')" -ge "$N" ] && [ "$(spool_files sp/new)" -eq 0 ] && [ "$(spool_files sp/active)" -eq 0 ]; }
wait_until 20 drained ||
	fail "the $N messages were not delivered within 20 s"
set +e
timeout 20 "$SLUICE" status --json --control "$S" >status.json 2>status.err
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "status --json: exit $rc: $(cat status.err)"
jq -e . status.json >/dev/null || fail "status --json is not JSON: $(head -c 300 status.json)"
[ "$(wc -l <status.json)" -eq 1 ] || fail "status --json: not one line"
logged=$(log_count '.result=="delivered"')
jq -e --argjson pid "$DAEMON" --argjson d "$logged" --arg g "$G" --argjson n "$N" '
	.pid == $pid and .mode == "daemon" and .shards == 2 and .uptime_s > 0
	and .totals.delivered == $d and .totals.bounced == 0
	and .spool.in_memory == 0
	and ([.pairs[] | select(.group == $g) | .delivered] | add) == $n
	and ([.pairs[] | select(.group == $g)] | length) >= 1
	and (.suspensions | length) == 0 and (.jobs | length) == 0' status.json >/dev/null ||
	fail "status --json disagrees (pid $DAEMON, $logged delivered in the log, group $G): $(cat status.json)"
timeout 20 "$SLUICE" status --control "$S" >status.txt 2>status.err || fail "status: $(cat status.err)"
grep -q "^sluice pid $DAEMON: daemon, 2 shards" status.txt || fail "status: no header: $(cat status.txt)"
awk -v g="$G" -v n="$N" '$1 == g { d += $5 } END { exit d == n ? 0 : 1 }' status.txt ||
	fail "status: no row for $G with $N delivered: $(cat status.txt)"
ok "status --json: pid $DAEMON, totals.delivered $logged = the log, pair $G delivered $N; status prints its row"

# b. top in tmux: the screen, then q
printf -v top_cmd '%q top --control %q --interval 0.5; echo $? >%q; sleep 30' "$SLUICE" "$S" "$T/top.rc"
tmux -S "$TMUX_SOCK" new-session -d -x 160 -y 40 "$top_cmd" || fail "tmux new-session"
screen_shows() {
	tmux -S "$TMUX_SOCK" capture-pane -p >top.txt 2>/dev/null &&
		grep -q "^sluice top .* pid $DAEMON .* 2 shards  daemon" top.txt &&
		grep -q "delivered $logged (" top.txt && # a rate: the second screen
		awk -v g="$G" -v n="$N" '$1 == g { d += $6 } END { exit d == n ? 0 : 1 }' top.txt
}
wait_until 10 screen_shows || fail "top's screen: $(cat top.txt)"
grep -q "GROUP .*SOURCE .*RATE/s .*CONN .*QUEUED .*DELIV .*DEFER .*BOUNCE .*LIMIT .*FILL .*SUSPENDED" top.txt ||
	fail "top: no column heading: $(cat top.txt)"
tmux -S "$TMUX_SOCK" send-keys q
wait_until 5 test -s top.rc || fail "top did not quit on q: $(tmux -S "$TMUX_SOCK" capture-pane -p)"
[ "$(cat top.rc)" = 0 ] || fail "top exit status $(cat top.rc) after q"
tmux -S "$TMUX_SOCK" capture-pane -p >after.txt
! grep -q "sluice top" after.txt || fail "top left its screen behind (no alternate screen?): $(cat after.txt)"
tmux -S "$TMUX_SOCK" kill-server 2>/dev/null || true
ok "top in tmux: header with pid $DAEMON, $G's row with $N delivered, rates; q quit it (exit 0) and restored the screen"

# c. suspend the group: new messages wait
ctl_ok suspend "$G"
before=$(delivered_at_mx)
M=5
sus_ids=()
for i in $(seq "$M"); do sus_ids+=("$(inject "s$i@d.example")"); done
wait_until 10 ids_with deferred suspended "${sus_ids[@]}" ||
	fail "the messages of a suspended group were not deferred as suspended: $(grep -F "${sus_ids[0]}" acct.jsonl)"
sleep 1
[ "$(delivered_at_mx)" -eq "$before" ] || fail "$(( $(delivered_at_mx) - before )) messages reached the MX while $G was suspended"
none_final "${sus_ids[@]}" || fail "a message of a suspended group is final"
[ "$(log_count ".event==\"suspend\" and .group==\"$G\"")" -ge 1 ] || fail "no suspend event for $G: $(jq -c 'select(.event)' acct.jsonl)"
timeout 20 "$SLUICE" status --json --control "$S" >status2.json
jq -e --arg g "$G" '[.suspensions[] | select(.group == $g)] | length >= 1' status2.json >/dev/null ||
	fail "status shows no suspension of $G: $(jq -c .suspensions status2.json)"
timeout 20 "$SLUICE" status --control "$S" >status2.txt
grep -qF "group $G (every source)  by ctl, until resumed" status2.txt || fail "status: no suspension of $G: $(cat status2.txt)"
ok "ctl suspend $G: $M new messages deferred as suspended, none reached the MX; a suspend event; status lists it"

# d. why
ctl_ok why "${sus_ids[0]}"
grep -qF "${sus_ids[0]}" <<<"$OUT" && grep -q "s1@d.example" <<<"$OUT" && grep -q "suspended" <<<"$OUT" ||
	fail "ctl why ${sus_ids[0]}: $OUT"
ctl why i0000000000.000000000.1
[ "$RC" -eq 1 ] && grep -q "^sluice: " <<<"$ERR" || fail "ctl why (unknown id): exit $RC: $ERR"
ok "ctl why: the id, its recipient and \"suspended\"; an unknown id: exit 1 ($ERR)"

ctl_ok resume "$G"
wait_until 10 ids_delivered "${sus_ids[@]}" || fail "not delivered within 10 s of ctl resume"
[ "$(delivered_at_mx)" -eq $((before + M)) ] || fail "the MX has $(( $(delivered_at_mx) - before )) of the $M"
[ "$(log_count ".event==\"resume\" and .group==\"$G\"")" -ge 1 ] || fail "no resume event for $G"
ok "ctl resume $G: the $M delivered, a resume event"

# e. pause a job
ctl_ok pause J1
before=$(delivered_at_mx)
job_ids=()
for i in 1 2 3; do job_ids+=("$(inject "j$i@d.example" J1)"); done
other=$(inject "other@d.example" J0)
wait_until 10 ids_with deferred paused "${job_ids[@]}" || fail "J1's messages were not deferred as paused"
wait_until 10 ids_delivered "$other" || fail "a message of another job did not go while J1 was paused"
sleep 0.5
none_final "${job_ids[@]}" || fail "a message of paused J1 is final"
[ "$(delivered_at_mx)" -eq $((before + 1)) ] || fail "messages of paused J1 reached the MX"
timeout 20 "$SLUICE" status --json --control "$S" >status3.json
jq -e '[.jobs[] | select(.job == "J1" and .state == "paused")] | length == 1' status3.json >/dev/null ||
	fail "status: J1 not paused: $(jq -c .jobs status3.json)"
ctl_ok resume J1
wait_until 10 ids_delivered "${job_ids[@]}" || fail "J1 not delivered within 10 s of ctl resume J1"
ok "ctl pause J1: its messages deferred as paused (another job's went), status lists it; ctl resume J1: delivered"

# f. bounce a job, while its group is suspended (so its messages wait)
ctl_ok suspend "$G" --for 1h
j2=() j3=()
for i in 1 2 3; do j2+=("$(inject "b$i@d.example" J2)"); done
for i in 1 2; do j3+=("$(inject "k$i@d.example" J3)"); done
wait_until 10 ids_with deferred suspended "${j2[@]}" "${j3[@]}" || fail "J2 and J3 did not wait"
ctl_ok bounce J2
wait_until 10 ids_with bounced . "${j2[@]}" || fail "J2's messages were not bounced within 10 s"
wait_until 10 gone_from_spool "${j2[@]}" || fail "J2's messages are still in the spool"
none_final "${j3[@]}" || fail "a message of J3 was touched by bouncing J2"
for id in "${j3[@]}"; do in_spool "$id" || fail "J3's $id left the spool"; done
ctl_ok resume "$G"
wait_until 10 ids_delivered "${j3[@]}" || fail "J3 not delivered after resume"
ok "ctl bounce J2: its 3 waiting messages bounced and left the spool; J3's stayed, delivered after resume"

# reload
reloads=$(grep -c 'reload:' d.err || true)
ctl_ok reload
reloaded() { [ "$(grep -c 'reload:' d.err)" -gt "$reloads" ]; }
wait_until 5 reloaded || fail "ctl reload: no reload: $(tail -3 d.err)"
ok "ctl reload: the configuration read again"

# h. every ctl command is a line in the log
for c in "suspend $G - 0" "suspend $G - 3600" "resume $G -" "pause J1" "resume J1 -" "bounce J2" "reload" \
	"why ${sus_ids[0]}"; do
	ctl_logged "$c" ok || fail "no {\"event\":\"ctl\"} line for \"$c\": $(jq -c 'select(.event=="ctl")' acct.jsonl)"
done
ctl_logged "why i0000000000.000000000.1" "error: " || fail "no {\"event\":\"ctl\"} line for the refused why"
ok "each ctl command has its {\"event\":\"ctl\"} line with its answer ($(log_count '.event=="ctl"') in all)"

# g. the socket's permissions
[ "$(stat -c %a "$S")" = 660 ] || fail "the control socket's mode is $(stat -c %a "$S"), not 660"
if [ "$(id -u)" = 0 ]; then
	set +e
	cp "$SLUICE" "$T/sluice-copy" # a path every user can run
	out=$(timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups "$T/sluice-copy" status --control "$S" 2>&1)
	rc=$?
	set -e
	[ "$rc" -eq 1 ] && grep -q "cannot connect to .*Permission denied" <<<"$out" ||
		fail "another user: exit $rc: $out"
	ok "socket mode 0660; another user (65534) is refused: $out"
else
	ok "socket mode 0660 (not root: the other-user check skipped)"
fi

# i. usage errors, no daemon
usage() { ctl "$@"; [ "$RC" -eq 2 ] || fail "ctl $*: exit $RC (want 2): $ERR"; }
usage
usage suspend
usage pause
usage frob x
usage pause $'a\tb'
usage pause ''
usage suspend "$G" --for 3x
usage suspend "$G" --source nohost
usage why a b
usage pause J --for 1m
ctl pause "$(printf 'x%.0s' $(seq 256))"
[ "$RC" -eq 2 ] && grep -q "longer than 255" <<<"$ERR" || fail "a 256-byte word: exit $RC: $ERR"
set +e
err=$(timeout 20 "$SLUICE" ctl --control "$T/none.sock" reload 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "is sluice run going" <<<"$err" || fail "no daemon: exit $rc: $err"
ok "usage errors exit 2; no daemon: exit 1 ($err)"

kill -TERM "$DAEMON"
rc=0
wait "$DAEMON" || rc=$?
[ "$rc" -eq 0 ] || fail "the daemon exited $rc after SIGTERM: $(tail -5 d.err)"
[ ! -e "$S" ] || fail "the control socket is still there after the daemon stopped"
! grep -q "Sanitizer\|runtime error" d.err || { cat d.err; fail "sanitizer report"; }
ok "SIGTERM: exit 0, the socket removed"
