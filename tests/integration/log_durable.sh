# A file leaves the spool only after its accounting lines are on disk: under
# strace, every unlink of active/NAME comes after an fdatasync of the log
# that started after NAME's lines were written and finished before the unlink.
# (LeakSanitizer cannot run under ptrace: leaks are checked by the other tests.)
source "$(dirname "$0")/../lib.sh"
set -e
command -v strace >/dev/null || { echo "  skipped: strace is not installed"; exit 0; }
port=$(free_port)
start_mockmx "$port"
"$SLUICE" spoolgen --spool "$T/sp" --count 300 --seed 4 >/dev/null
set +e
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" timeout 120 strace -f -qq -o "$T/trace" -s 1000000 -e trace=write,fdatasync,unlinkat -e signal=none \
	"$SLUICE" run --drain --spool "$T/sp" --route "*=127.0.0.1:$port" --log "$T/acct.jsonl" --shards 2 \
	--max-time 60 >"$T/run.out" 2>"$T/run.err"
rc=$?
set -e
stop_mockmx
[ "$rc" -eq 0 ] || { cat "$T/run.err"; fail "sluice exit $rc"; }
python3 - "$T/trace" <<'PY' || fail "a file left the spool before its lines were synced"
import re, sys
writes, syncs, unlinks, open_sync, open_unlink = {}, [], {}, {}, {}
for i, line in enumerate(open(sys.argv[1], errors="replace")):
    pid = line.split(None, 1)[0]
    if "fdatasync(" in line and "resumed" not in line:
        if "unfinished" in line: open_sync[pid] = i
        elif "= 0" in line: syncs.append((i, i))
    elif "<... fdatasync resumed>" in line and "= 0" in line and pid in open_sync:
        syncs.append((open_sync.pop(pid), i))
    elif "write(" in line and '{\\"ts\\"' in line:
        for name in re.findall(r'\\"id\\":\\"([^\\]+)\\"', line):
            writes.setdefault(name, i)
    elif "unlinkat(" in line and "resumed" not in line:
        m = re.search(r'unlinkat\(\d+[^,]*, "([^"]+)"', line)
        if not m or m.group(1).startswith("."): continue
        if "unfinished" in line: open_unlink[pid] = m.group(1)
        elif "= 0" in line: unlinks.setdefault(m.group(1), i)
    elif "<... unlinkat resumed>" in line and "= 0" in line and pid in open_unlink:
        unlinks.setdefault(open_unlink.pop(pid), i)
bad = [n for n, u in unlinks.items() if n not in writes or
       not any(s > writes[n] and e < u for s, e in syncs)]
print(f"  {len(unlinks)} files removed, {len(syncs)} log syncs, {len(bad)} removed too early")
sys.exit(1 if bad or len(unlinks) < 300 else 0)
PY
check_log_final 300
ok "every file was removed after an fdatasync that covered its lines"
