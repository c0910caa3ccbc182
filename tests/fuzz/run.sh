#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS BINARY CORPUS_DIR [libFuzzer options...]
# Runs one libFuzzer target for SECONDS on a copy of CORPUS_DIR (new
# inputs go to build/fuzz/work/NAME/corpus, crash files to
# build/fuzz/work/NAME/) and prints one line: the target, the runs, the
# result. Exit status 1 when the target crashed (assertion, sanitizer
# report, leak, timeout, out of memory), 0 otherwise.
set -u
secs=$1 bin=$2 seeds=$3
shift 3
name=$(basename "$bin")
work=build/fuzz/work/$name
mkdir -p "$work/corpus"
cp -n "$seeds"/* "$work/corpus/" 2>/dev/null || true
log=$work/log
"$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$work/" "$@" "$work/corpus" >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
[ -n "$runs" ] || runs=$(grep -ao '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
if [ $rc -eq 0 ]; then
	printf 'fuzz %-16s %10s runs in %ss: ok\n' "$name" "${runs:-?}" "$secs"
	exit 0
fi
art=$(ls -t "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | head -n 1)
printf 'fuzz %-16s %10s runs: FAILED (exit %s), input: %s\n' "$name" "${runs:-?}" "$rc" "${art:-?}"
grep -a -m 5 -E 'check failed|assertion failed|ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/    /'
echo "    full log: $log"
exit 1
