# Bare metal: `make install DESTDIR=... PREFIX=/usr` lays out the program,
# its data, the man pages, the systemd unit with its sysusers and tmpfiles
# entries, the logrotate snippet and the configuration; the unit passes
# `systemd-analyze verify` (which also finds its man pages); the man pages
# render without a groff warning; and the daemon speaks systemd's notify
# protocol (READY=1, RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP,
# STOPPING=1 on SIGTERM) to a NOTIFY_SOCKET the test listens on.
source "$(dirname "$0")/../lib.sh"
set -e
cd "$T"
REPO=$(cd "$HERE/.." && pwd)
R=$T/root
timeout 300 make -s -C "$REPO" install DESTDIR="$R" PREFIX=/usr BIN="$SLUICE" >install.out 2>&1 ||
	{ cat install.out; fail "make install failed"; }
for f in usr/bin/sluice usr/share/sluice/providers.conf usr/share/sluice/responses.conf \
	usr/share/doc/sluice/sluice.conf usr/share/man/man8/sluice.8 usr/share/man/man5/sluice.conf.5 \
	usr/lib/systemd/system/sluice.service usr/lib/sysusers.d/sluice.conf usr/lib/tmpfiles.d/sluice.conf \
	etc/logrotate.d/sluice etc/sluice/sluice.conf; do
	[ -s "$R/$f" ] || fail "make install: no $f in $(cd "$R" && find . -type f | sort | tr '\n' ' ')"
done
[ -x "$R/usr/bin/sluice" ] || fail "the binary is not executable"
[ "$(stat -c %a "$R/etc/sluice/sluice.conf")" = 644 ] || fail "sluice.conf mode $(stat -c %a "$R/etc/sluice/sluice.conf") (the service user must read it)"
grep -q '^d /var/spool/sluice/new 2770 sluice sluice' "$R/usr/lib/tmpfiles.d/sluice.conf" &&
	grep -q '^d /var/spool/sluice/tmp 2770 sluice sluice' "$R/usr/lib/tmpfiles.d/sluice.conf" ||
	fail "tmpfiles: producers in group sluice cannot write tmp/ and new/"
unit=$R/usr/lib/systemd/system/sluice.service
grep -qx 'ExecStart=/usr/bin/sluice run -c /etc/sluice/sluice.conf' "$unit" || fail "ExecStart: $(grep ExecStart "$unit")"
! grep -q '@' "$unit" || fail "a placeholder left in the unit: $(grep '@' "$unit")"
grep -q '^Type=notify' "$unit" && grep -q '^ExecReload=/bin/kill -HUP \$MAINPID' "$unit" &&
	grep -q '^ProtectSystem=strict' "$unit" && grep -q '^ReadWritePaths=/var/spool/sluice /var/log/sluice' "$unit" &&
	grep -q '^NoNewPrivileges=yes' "$unit" && grep -q '^User=sluice' "$unit" || fail "the unit lacks a setting"
# A second install keeps an edited configuration.
echo '# edited' >>"$R/etc/sluice/sluice.conf"
timeout 300 make -s -C "$REPO" install DESTDIR="$R" PREFIX=/usr BIN="$SLUICE" >install2.out 2>&1 || fail "second install"
grep -q '# edited' "$R/etc/sluice/sluice.conf" || fail "make install overwrote the configuration"
ok "make install DESTDIR PREFIX=/usr: binary, data, man pages, unit (ExecStart /usr/bin/sluice), sysusers, tmpfiles, logrotate, config (kept on reinstall)"

# groff's man macros may be left out of a minimal image (dpkg path-exclude
# /usr/share/groff/*, as slim container images do): then the man pages
# cannot be rendered here, and that is said, not hidden.
GROFF_OK=1
timeout 30 groff -man -z </dev/null 2>groff.err || GROFF_OK=""

# systemd-analyze verify: the unit as installed, its ExecStart pointed at
# this build (verify checks that the command exists), its man pages found
# (verify runs man for Documentation=, which needs groff's macros).
mkdir -p verify
sed -e "s|^ExecStart=/usr/bin/sluice|ExecStart=$SLUICE|" "$unit" >verify/sluice.service
[ -n "$GROFF_OK" ] || sed -i '/^Documentation=/d' verify/sluice.service
set +e
MANPATH=$R/usr/share/man timeout 60 systemd-analyze verify verify/sluice.service >verify.out 2>&1
vrc=$?
set -e
[ "$vrc" -eq 0 ] && [ ! -s verify.out ] || fail "systemd-analyze verify (rc $vrc): $(cat verify.out)"
ok "systemd-analyze verify: no error, no warning"

# The man pages: no groff warning (-ww), and man renders them.
if [ -z "$GROFF_OK" ]; then
	echo "  SKIP: groff's man macros are not installed here ($(head -c 200 groff.err)): man pages not rendered"
else
for p in man8/sluice.8 man5/sluice.conf.5; do
	out=$(timeout 30 groff -ww -z -man "$R/usr/share/man/$p" 2>&1) || fail "groff $p: $out"
	[ -z "$out" ] || fail "groff -ww $p: $out"
	MANWIDTH=80 timeout 30 man -l "$R/usr/share/man/$p" >"$(basename "$p").txt" 2>man.err || fail "man -l $p: $(cat man.err)"
	[ ! -s man.err ] || fail "man -l $p: $(cat man.err)"
done
grep -q '^SLUICE(8)' sluice.8.txt && grep -q 'SIGHUP' sluice.8.txt || fail "sluice(8) renders wrong: $(head -5 sluice.8.txt)"
grep -q '^SLUICE.CONF(5)' sluice.conf.5.txt && grep -q 'doctor' sluice.conf.5.txt || fail "sluice.conf(5) renders wrong"
ok "sluice(8) and sluice.conf(5): groff -ww silent, man -l renders them"
fi

# The notify protocol, as systemd's Type=notify expects it.
P=$(free_port)
start_mockmx "$P"
cat >notify.py <<'PY'
import os, signal, socket, subprocess, sys, time
sluice, spool, port, path = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(('\0' + path[1:]) if path.startswith('@') else path)  # '@': the abstract namespace
s.settimeout(1)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([sluice, 'run', '--spool', spool, '--route', f'*=127.0.0.1:{port}', '--shards', '1',
                      '--log', spool + '.log', '--max-time', '60'], env=env,
                     stdout=subprocess.DEVNULL, stderr=open(spool + '.err', 'w'))
got = []
def wait_for(word, limit=20):
    end = time.time() + limit
    while time.time() < end:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        got.append(msg.replace('\n', '|'))
        if word in msg:
            return msg
    sys.exit(f'no {word} within {limit} s; got {got}')
wait_for('READY=1')
p.send_signal(signal.SIGHUP)
m = wait_for('RELOADING=1')
if 'MONOTONIC_USEC=' not in m:
    sys.exit(f'RELOADING=1 without MONOTONIC_USEC: {m!r}')
wait_for('READY=1')
p.send_signal(signal.SIGTERM)
wait_for('STOPPING=1')
rc = p.wait(30)
if rc != 0:
    sys.exit(f'exit status {rc} after SIGTERM; got {got}')
print(' '.join(got), 'exit', rc)
PY
out=$(timeout 90 python3 notify.py "$SLUICE" "$T/sp" "$P" "$T/notify.sock") || fail "notify: $out $(cat "$T/sp.err")"
ok "notify: $out"
out=$(timeout 90 python3 notify.py "$SLUICE" "$T/sp" "$P" "@sluice-test-$$-notify") || fail "notify (abstract): $out $(cat "$T/sp.err")"
ok "notify to an abstract socket (@name): $out"
! grep -q "Sanitizer\|runtime error" "$T/sp.err" || { cat "$T/sp.err"; fail "sanitizer report"; }
