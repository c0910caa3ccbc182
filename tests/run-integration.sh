#!/usr/bin/env bash
# tests/run-integration.sh - runs every tests/integration/*.sh, each in its
# own bounded process, then prints "integration: N passed, M failed".
cd "$(dirname "$0")/integration" || exit 2
pass=0; fail=0; failed=()
for t in ${ONLY:-*.sh}; do
	start=$(date +%s)
	echo "== ${t%.sh}"
	if timeout 600 bash "$t"; then
		pass=$((pass + 1)); echo "   passed ($(( $(date +%s) - start )) s)"
	else
		fail=$((fail + 1)); failed+=("$t"); echo "   FAILED ($(( $(date +%s) - start )) s)"
	fi
done
[ "$fail" -eq 0 ] || echo "failed: ${failed[*]}"
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
