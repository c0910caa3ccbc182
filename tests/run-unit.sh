#!/usr/bin/env bash
# tests/run-unit.sh - runs the cmocka unit test binaries, then prints one
# summary line: "unit: N passed, M failed" (binaries, each a group).
pass=0; fail=0
for t in "$@"; do
	if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
