# `sluice suppress` end to end: a million-entry CSV import (timed), count,
# checks, export and its round trip, remove, scopes, bad lines reported by
# number, two writing processes at once, and stores that cannot be used
# (corrupt, truncated, empty, another program's LMDB, missing) refused
# with an error naming the file, never read as "nothing suppressed".
source "$(dirname "$0")/../lib.sh"
set -e
S=$T/store
if [ "$SCALE" -gt 1 ]; then N=200000; else N=1000000; fi

# sup ARGS...: runs sluice suppress; stdout in $T/o, stderr in $T/e, exit
# status in RC; a sanitizer report fails the test.
sup() {
	set +e
	timeout 300 "$SLUICE" suppress "$@" >"$T/o" 2>"$T/e"
	RC=$?
	set -e
	if grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" "$T/e"; then
		cat "$T/e" >&2
		fail "sanitizer report: suppress $*"
	fi
	[ "$RC" -lt 124 ] || { cat "$T/e" >&2; fail "suppress $* did not finish (rc $RC)"; }
}

# A CSV of N addresses: a header, mixed case, every tenth one for a sending
# domain, the rest global; then the first 5000 again in upper case, with
# another reason (the later line wins; with a million, in a second batch).
awk -v n="$N" 'BEGIN {
	print "address,domain,reason"
	for (i = 0; i < n; i++) {
		a = (i % 7 == 0 ? "User" : "user") i "@Domain" (i % 5000) ".example"
		if (i % 10 == 3) print a ",news.example,unsubscribe"
		else print a ",,bad-mailbox"
	}
	for (i = 0; i < 5000; i++)
		print "USER" i "@DOMAIN" i ".EXAMPLE," (i % 10 == 3 ? "news.example" : "") ",complaint"
}' >"$T/big.csv"
start=$(date +%s.%N)
sup --store "$S" import "$T/big.csv"
secs=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
[ "$RC" -eq 0 ] || { cat "$T/e"; fail "import: exit $RC"; }
grep -q "($((N + 5001)) lines: 0 bad, 1 header or empty)" "$T/o" || fail "import: $(cat "$T/o")"
echo "  import of $N addresses (and 5000 lines repeating some): ${secs} s; store $(du -k "$S/data.mdb" | cut -f1) KiB on disk"
awk -v s="$secs" 'BEGIN { exit !(s < 120) }' || fail "import of $N entries took $secs s"
sup --store "$S" count
[ "$RC" -eq 0 ] && [ "$(cat "$T/o")" = "$N" ] || fail "count: $(cat "$T/o" "$T/e")"
sup --store "$S" count --domain news.example
[ "$(cat "$T/o")" = "$((N / 10))" ] || fail "count --domain news.example: $(cat "$T/o" "$T/e")"
[ "$(stat -c %a "$S/data.mdb")" = 660 ] && [ "$(stat -c %a "$S")" = 770 ] ||
	fail "modes: $(stat -c '%a %n' "$S" "$S"/*)"
ok "import of $N addresses, count"

# Present and absent, in any case; a domain's entry only for that domain.
sup --store "$S" check user5001@domain1.example
[ "$RC" -eq 0 ] && grep -q "suppressed globally: reason bad-mailbox" "$T/o" || fail "check present: $RC $(cat "$T/o" "$T/e")"
sup --store "$S" check user1@domain1.example
[ "$RC" -eq 0 ] && grep -q "suppressed globally: reason complaint" "$T/o" || fail "the later line did not win: $(cat "$T/o")"
sup --store "$S" check USER7@DOMAIN7.example
[ "$RC" -eq 0 ] || fail "check in upper case: $RC $(cat "$T/o")"
sup --store "$S" check "user$((N - 1))@domain$(((N - 1) % 5000)).example"
[ "$RC" -eq 0 ] || fail "check last: $RC $(cat "$T/o")"
sup --store "$S" check "user$N@domain$((N % 5000)).example"
[ "$RC" -eq 1 ] && grep -q "not suppressed" "$T/o" || fail "check absent: $RC $(cat "$T/o")"
sup --store "$S" check user1@domain2.example
[ "$RC" -eq 1 ] || fail "check absent (other domain): $RC"
sup --store "$S" check user5003@domain3.example
[ "$RC" -eq 1 ] || fail "a news.example entry suppresses globally"
sup --store "$S" check user5003@domain3.example --domain News.Example
[ "$RC" -eq 0 ] && grep -q "for mail from news.example: reason unsubscribe" "$T/o" || fail "check --domain: $RC $(cat "$T/o")"
ok "check: present, absent, case, scopes"

# Export: every entry, and its import into a new store gives the same export.
start=$(date +%s)
sup --store "$S" export
[ "$RC" -eq 0 ] || fail "export: $RC $(cat "$T/e")"
mv "$T/o" "$T/export.csv"
[ "$(wc -l <"$T/export.csv")" -eq $((N + 1)) ] || fail "export: $(wc -l <"$T/export.csv") lines"
head -1 "$T/export.csv" | grep -qx "address,domain,reason,added,source" || fail "export header: $(head -1 "$T/export.csv")"
grep -q '^user5003@domain3.example,news.example,unsubscribe,20[0-9-]*T[0-9:]*Z,import:big.csv$' "$T/export.csv" ||
	fail "export line: $(grep '^user5003@' "$T/export.csv")"
sup --store "$T/store2" import "$T/export.csv"
[ "$RC" -eq 0 ] || fail "re-import: $RC $(cat "$T/e")"
sup --store "$T/store2" count
[ "$(cat "$T/o")" = "$N" ] || fail "re-import count: $(cat "$T/o")"
sup --store "$T/store2" export
cmp -s "$T/o" "$T/export.csv" || fail "export of the re-imported store differs"
echo "  export and re-import: $(($(date +%s) - start)) s"
rm -f "$T/store2"/* "$T/big.csv"
ok "export round trip ($N lines)"

# Remove; add for a domain; reasons.
sup --store "$S" remove User1@Domain1.example
[ "$RC" -eq 0 ] || fail "remove: $RC $(cat "$T/e")"
sup --store "$S" check user1@domain1.example
[ "$RC" -eq 1 ] || fail "removed address still suppressed"
sup --store "$S" remove user1@domain1.example
[ "$RC" -eq 1 ] && grep -q "not suppressed" "$T/e" || fail "second remove: $RC $(cat "$T/e")"
sup --store "$S" count
[ "$(cat "$T/o")" = "$((N - 1))" ] || fail "count after remove: $(cat "$T/o")"
sup --store "$S" add Someone@Example.org --domain shop.example --reason complaint
[ "$RC" -eq 0 ] || fail "add: $RC $(cat "$T/e")"
sup --store "$S" check someone@example.org --domain shop.example
[ "$RC" -eq 0 ] && grep -q "reason complaint" "$T/o" && grep -q "source cli" "$T/o" || fail "added: $(cat "$T/o")"
sup --store "$S" check someone@example.org
[ "$RC" -eq 1 ] || fail "a shop.example entry suppresses globally"
for bad in "a b@x.example" $'a\r\nRCPT TO:<x@y>@x.example' "noat" "<a@x.example>"; do
	sup --store "$S" add "$bad"
	[ "$RC" -eq 2 ] && grep -qi "address" "$T/e" || fail "add '$bad': $RC $(cat "$T/e")"
done
sup --store "$S" add x@y.example --reason "no such"
[ "$RC" -eq 2 ] || fail "--reason 'no such' accepted"
ok "remove, add --domain --reason, bad addresses refused"

# Bad lines: reported with their numbers, the rest imported.
printf 'address\nok1@x.example\nbad line@x.example\nok2@x.example,bad domain\n\nok3@x.example,,complaint,2024-01-01T00:00:00Z,feedback:r1\n"unclosed@x.example\n' >"$T/mixed.csv"
sup --store "$T/s3" import "$T/mixed.csv"
[ "$RC" -eq 0 ] || fail "import with bad lines: exit $RC"
grep -q "mixed.csv:3: .*white space" "$T/e" && grep -q "mixed.csv:4: domain" "$T/e" && grep -q "mixed.csv:7: " "$T/e" ||
	fail "bad lines not reported by number: $(cat "$T/e")"
grep -q "imported 2 entries .* 3 bad" "$T/o" || fail "import summary: $(cat "$T/o")"
sup --store "$T/s3" check ok3@x.example
grep -q "added 2024-01-01T00:00:00Z, source feedback:r1" "$T/o" || fail "added/source columns: $(cat "$T/o")"
ok "bad lines reported by number, the rest imported"

# Two writing processes at once: an import while another adds one by one.
awk 'BEGIN { for (i = 0; i < 100000; i++) print "c" i "@conc.example" }' >"$T/conc.csv"
(for i in $(seq 50); do "$SLUICE" suppress --store "$S" add "single$i@conc.example" >/dev/null || exit 1; done) &
adder=$!
sup --store "$S" import "$T/conc.csv"
wait $adder || fail "adds beside an import failed"
[ "$RC" -eq 0 ] || fail "import beside adds: $RC $(cat "$T/e")"
sup --store "$S" count --domain ""
[ "$(cat "$T/o")" = "$((N - N / 10 - 1 + 100000 + 50))" ] || fail "count after concurrent writes: $(cat "$T/o")"
ok "an import and adds from another process at once"

# Stores that cannot be used: an error naming the file (exit 1; check: 3,
# never "not suppressed").
mkdir "$T/bad"
head -c 100000 /dev/urandom >"$T/bad/data.mdb"
for cmd in count export "add a@x.example" "import $T/mixed.csv"; do
	# shellcheck disable=SC2086
	sup --store "$T/bad" $cmd
	[ "$RC" -eq 1 ] && grep -q "bad/data.mdb: corrupt or not an LMDB file" "$T/e" || fail "garbage store, $cmd: $RC $(cat "$T/o" "$T/e")"
done
sup --store "$T/bad" check a@x.example
[ "$RC" -eq 3 ] && grep -q "bad/data.mdb" "$T/e" && ! grep -q "not suppressed" "$T/o" || fail "garbage store, check: $RC $(cat "$T/o" "$T/e")"
: >"$T/bad/data.mdb"
sup --store "$T/bad" count
[ "$RC" -eq 1 ] && grep -q "bad/data.mdb: empty file" "$T/e" || fail "empty data.mdb: $RC $(cat "$T/e")"
mkdir "$T/cut"
cp "$S/data.mdb" "$T/cut/"
truncate -s 1M "$T/cut/data.mdb"
sup --store "$T/cut" check user2@domain2.example
[ "$RC" -eq 3 ] && grep -q "cut/data.mdb: truncated" "$T/e" || fail "truncated store: $RC $(cat "$T/o" "$T/e")"
mkdir "$T/other"
printf 'k1\nv1\nk2\nv2\n' | mdb_load -T "$T/other"
sup --store "$T/other" add a@x.example
[ "$RC" -eq 1 ] && grep -q "other/data.mdb: an LMDB file, but not a sluice suppression store" "$T/e" ||
	fail "another LMDB database: $RC $(cat "$T/e")"
sup --store "$T/missing" check a@x.example
[ "$RC" -eq 3 ] && grep -q "missing: no suppression store" "$T/e" && ! grep -q "not suppressed" "$T/o" ||
	fail "missing store, check: $RC $(cat "$T/o" "$T/e")"
[ ! -e "$T/missing" ] || fail "check created a store"
sup --store "$T/missing" count
[ "$RC" -eq 1 ] || fail "missing store, count: $RC"
ok "corrupt, empty, truncated, foreign and missing stores refused, naming the file"

# Usage: exit 2.
for args in "" "frob" "add" "check" "check a@x.example b@x.example" "export extra" "add a@x.example --domain 'a b'" "count --bogus"; do
	# shellcheck disable=SC2086
	eval sup --store "$S" $args
	[ "$RC" -eq 2 ] || fail "suppress $args: exit $RC"
done
for c in add remove check import export count; do
	"$SLUICE" suppress $c --help | grep -q "usage: sluice suppress" || fail "$c --help"
done
ok "usage errors exit 2, --help for each"
