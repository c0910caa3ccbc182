#!/usr/bin/env python3
"""bench/bench.py - the benchmark driver behind `sluice bench` and `make bench`.

Measures sluice against real peers in one run, on one machine, against the
same sinks, and reports every sluice figure beside its peer as a ratio
(machines here are shared and noisy: absolute numbers move from run to run).

  peers     Postfix's smtp-source -d -s 20 -> sluice mockmx, and -> Postfix's
            smtp-sink; a throwaway Postfix MTA delivering from its own queue
            to the mockmx; `openssl speed rsa2048 ed25519` (signing ceiling)
  sluice    `sluice run --drain` on generated spools, a matrix of scenarios:
            message size, shards, domains, connections, sink; job files
            (one file, N rows) beside the one-file-per-message rows; STARTTLS
            (3KB-tls beside 3KB-tls-none against the same mockmx with a
            certificate; handshakes per second per core, full and resumed,
            beside `openssl speed ecdhp256 ecdsap256`); traffic shaping
            (3KB-shaped beside 3KB-unshaped; 4 source IPs and 1 over 1 and
            2 shards; a mockmx policing each source IP, --only shaping);
            adaptation (an AIMD row against a mockmx that answers 421
            [TSS04] above a rate sluice is not told, plotted; 3KB with reply
            rules beside none, --only adapt); metrics (3KB with /metrics
            and the control socket on, each asked twice a second, beside
            both off, --only metrics)
  spool     `sluice spoolbench`: the spool's file operations (read, rename,
            unlink: 1 thread, 2 threads, io_uring) per file, on the disk
            and on tmpfs
  million   (--million) a 1,000,000-row job file renamed into an idle
            daemon's new/: time to the first delivery, peak RSS, rate

Writes bench/results/<timestamp>.json, a table on the terminal (and as
markdown), PNG plots through gnuplot (rates per scenario; throughput over
time within the headline run; the AIMD row's rate against its hidden
limit), and shows a live progress line on a TTY.
Only loopback addresses are used; every process is bounded in time.
"""
import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK = os.sysconf('SC_CLK_TCK')
SMTP_SOURCE = shutil.which('smtp-source') or '/usr/sbin/smtp-source'
SMTP_SINK = shutil.which('smtp-sink') or '/usr/sbin/smtp-sink'
TTY = sys.stderr.isatty()


def say(msg):
    print(('\r\033[K' if TTY else '') + 'bench: ' + msg, file=sys.stderr, flush=True)


class Scraper:
    """GETs a URL every `every` seconds on a thread until stop(), and asks
    the control socket (a unix path) for a status as `sluice status`
    does; counts the scrapes that came back 200."""

    def __init__(self, url, every, control=None):
        import threading
        import urllib.request
        self.ok, self.done = 0, threading.Event()

        def status():
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(control)
                s.sendall(b'status\n')
                while s.recv(65536):
                    pass

        def loop():
            while not self.done.wait(every):
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        r.read()
                        self.ok += r.status == 200
                    if control:
                        status()
                except OSError:
                    pass
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.done.set()
        self.thread.join(10)
        return self.ok


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_of(pid):
    """User+system CPU seconds of a running process (and its reaped children)."""
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK
    except OSError:
        return 0.0


def thread_cpu(pid):
    """User+system CPU seconds of each of pid's threads, by name (shard0,
    spool0, reaper, ...; /proc/PID/task), threads of one name summed."""
    out = {}
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f'/proc/{pid}/task/{t}/stat') as f:
                st = f.read()
        except OSError:
            continue
        name, f = st[st.index('(') + 1:st.rindex(')')], st.rsplit(')', 1)[1].split()
        out[name] = out.get(name, 0) + (int(f[11]) + int(f[12])) / CLK
    return out


def run_timed(cmd, timeout, poll=None, env=None, threads=None):
    """Runs cmd; returns (rc, wall_s, cpu_s, maxrss_kb). poll() is called
    every 0.25 s while it runs (the live progress line). With a dict as
    threads, every 0.05 s instead, and the dict holds the last sample of
    thread_cpu (what a thread did after the last sample is missing)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    tick = 0
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > timeout:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        if threads is not None:
            threads.update(thread_cpu(p.pid))
        if poll and (threads is None or tick % 5 == 0):
            poll(time.monotonic() - t0)
        tick += 1
        time.sleep(0.25 if threads is None else 0.05)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out = p.stdout.read().decode(errors='replace')
    err = p.stderr.read().decode(errors='replace')
    return p.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, out, err


def child_pid(parent, wait_s=5.0):
    """The pid of parent's child, from /proc (procps may not be installed:
    everything the bench runs comes from make deps or Python)."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        for d in os.listdir('/proc'):
            if not d.isdigit():
                continue
            try:
                with open(f'/proc/{d}/stat') as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == parent:
                return int(d)
        time.sleep(0.01)
    raise SystemExit(f'bench: no child of pid {parent}')


class Sink:
    """A server on a loopback port, bounded by `timeout`; cpu() reads the
    server process itself, not its timeout wrapper."""
    def __init__(self, name, argv_for_port, stdout):
        self.port = free_port()
        self.proc = subprocess.Popen(['timeout', '3000'] + argv_for_port(self.port),
                                     stdout=stdout, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            raise SystemExit(f'bench: {name} did not start')
        self.pid = child_pid(self.proc.pid)

    def cpu(self):
        return cpu_of(self.pid)


class MockMX(Sink):
    def __init__(self, sluice, threads=1, extra=()):
        super().__init__('mockmx', lambda p: [sluice, 'mockmx', '--listen', f'127.0.0.1:{p}',
                                              '--threads', str(threads), '--max-time', '2900', *extra],
                         subprocess.PIPE)

    def stop(self):
        """SIGTERM; returns the counters mockmx prints as it exits."""
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.communicate(timeout=30)[0].decode()
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


class SmtpSink(Sink):
    def __init__(self):
        super().__init__('smtp-sink', lambda p: [SMTP_SINK, '-u', 'nobody', f'127.0.0.1:{p}', '1000'],
                         subprocess.DEVNULL)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def smtp_source(port, n, size, sessions=20):
    c = ['timeout', '900', SMTP_SOURCE, '-d', '-s', str(sessions), '-l', str(size), '-m', str(n),
         '-f', 'bench@sender.example', '-t', 'user@d0.example', f'127.0.0.1:{port}']
    rc, wall, cpu, rss, out, err = run_timed(c, 900)
    if rc != 0:
        raise SystemExit(f'bench: smtp-source failed: {err.strip()}')
    return wall, cpu


def openssl_speed(seconds):
    try:
        out = subprocess.run(['openssl', 'speed', '-seconds', str(seconds), 'rsa2048', 'ed25519'],
                             capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return {'error': str(e)}
    res = {}
    for line in out.splitlines():
        f = line.split()
        if line.startswith('rsa 2048 bits'):
            res['rsa2048_sign_per_s'] = float(f[5])
        if 'Ed25519' in line and len(f) >= 7:
            res['ed25519_sign_per_s'] = float(f[-2])
    return res


def openssl_speed_p256(seconds):
    """One core's P-256 ECDH derivations and ECDSA signs/verifies per second
    (the key type of the bench's certificate): the public-key work of a full
    handshake, for the client about 2 ECDH + 1 verify (ephemeral key,
    shared secret, the server's signature)."""
    try:
        out = subprocess.run(['openssl', 'speed', '-seconds', str(seconds), 'ecdhp256', 'ecdsap256'],
                             capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {'error': str(e)}
    res = {}
    for line in out.splitlines():
        f = line.split()
        if 'ecdsa (nistp256)' in line and len(f) >= 2:
            res['ecdsa_p256_sign_per_s'], res['ecdsa_p256_verify_per_s'] = float(f[-2]), float(f[-1])
        if 'ecdh (nistp256)' in line:
            res['ecdh_p256_per_s'] = float(f[-1])
    if {'ecdh_p256_per_s', 'ecdsa_p256_verify_per_s'} <= res.keys():
        res['client_full_handshake_ceiling_per_s'] = round(
            1 / (2 / res['ecdh_p256_per_s'] + 1 / res['ecdsa_p256_verify_per_s']), 1)
    return res


def tls_support(sluice, work):
    """(True, '') when this sluice accepts `--tls opportunistic`; else
    (False, why): until the client has STARTTLS the TLS rows are left out
    and the bench runs on."""
    spool = os.path.join(work, 'tls-probe-spool')
    try:
        r = subprocess.run([sluice, 'run', '--drain', '--tls', 'opportunistic', '--spool', spool,
                            '--route', '*=127.0.0.1:9', '--max-time', '10'],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    if r.returncode == 0:
        return True, ''
    why = (r.stderr.strip().splitlines() or [f'exit {r.returncode}'])[-1]
    return False, why


def tls_cert(a, work):
    """A P-256 self-signed certificate for mockmx (made once per run)."""
    cert, key = os.path.join(work, 'mx-cert.pem'), os.path.join(work, 'mx-key.pem')
    if not os.path.exists(cert):
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                        '-nodes', '-days', '2', '-subj', '/CN=mx.test.example',
                        '-addext', 'subjectAltName=DNS:mx.test.example', '-keyout', key, '-out', cert],
                       check=True, capture_output=True, timeout=60)
    return cert, key


def sluice_tls_summary(text):
    """sluice's summary line `tls connections N (F full handshakes, R
    resumed)`, when this sluice prints it."""
    m = re.search(r'tls connections\s+(\d+)\s*\((\d+) full handshakes?,\s*(\d+) resumed\)', text)
    return {'tls_connections': int(m[1]), 'full': int(m[2]), 'resumed': int(m[3])} if m else None


def postfix_from_queue(sink_port, n, size, work):
    """A throwaway Postfix (private config and queue under work, loopback
    only, relayhost = the sink, bulk settings): messages are injected
    through its smtpd while smtp delivery is deferred, then released; only
    the delivery is timed."""
    d = os.path.join(work, 'postfix')
    etc, queue, data = (os.path.join(d, x) for x in ('etc', 'queue', 'data'))
    for x in (etc, queue, data):
        os.makedirs(x, exist_ok=True)
    os.chmod(d, 0o755)
    shutil.chown(data, 'postfix')
    smtpd_port = free_port()
    master = []
    for line in open('/etc/postfix/master.cf'):
        f = line.split()
        if len(f) >= 8 and not line.startswith('#') and f[1] in ('unix', 'inet', 'fifo', 'pass', 'unix-dgram'):
            if f[0] == 'smtp' and f[1] == 'inet':
                f[0] = f'127.0.0.1:{smtpd_port}'
            f[4] = 'n'  # no chroot
            line = ' '.join(f) + '\n'
        master.append(line)
    open(os.path.join(etc, 'master.cf'), 'w').writelines(master)
    open(os.path.join(etc, 'main.cf'), 'w').write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.sluice.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_recipient_restrictions = permit_mynetworks, reject
default_destination_concurrency_limit = 20
initial_destination_concurrency = 20
default_process_limit = 100
qmgr_message_active_limit = 100000
smtp_connection_cache_destinations = [127.0.0.1]:{sink_port}
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
defer_transports = smtp
""")
    pf = ['postfix', '-c', etc]
    try:
        subprocess.run(pf + ['start'], check=True, capture_output=True, timeout=60)
        if not wait_port(smtpd_port):
            return {'error': 'postfix smtpd did not start'}
        smtp_source(smtpd_port, n, size)
        subprocess.run(['postconf', '-c', etc, '-e', 'defer_transports ='], check=True, timeout=30)
        subprocess.run(pf + ['reload'], check=True, capture_output=True, timeout=30)
        dirs = [os.path.join(queue, q) for q in ('incoming', 'active', 'deferred')]
        t0 = time.monotonic()
        subprocess.run(['postqueue', '-c', etc, '-f'], timeout=30)
        while time.monotonic() - t0 < 600:
            if sum(len(files) for q in dirs for _, _, files in os.walk(q)) == 0:
                break
            time.sleep(0.1)
        wall = time.monotonic() - t0
        return {'messages': n, 'seconds': round(wall, 3), 'msgs_per_s': round(n / wall, 1)}
    except (OSError, subprocess.SubprocessError) as e:
        return {'error': f'postfix peer failed: {e}'}
    finally:
        subprocess.run(pf + ['stop'], capture_output=True, timeout=60)


def analyze_log(path, n_msgs):
    counts = {'delivered': 0, 'deferred': 0, 'bounced': 0, 'expired': 0}
    lat, stamps = [], []
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if 'event' in o:  # adaptation's lines (slow, suspend, ...): no recipient's
                continue
            counts[o['result']] = counts.get(o['result'], 0) + 1
            if o['result'] == 'delivered':
                lat.append(o['queue_ms'])
                stamps.append(o['ts'])
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] if lat else None
    return counts, pct(0.50), pct(0.99), stamps


def timeline(stamps, bucket=0.25):
    """Deliveries per second, in buckets, from the log's RFC 3339 stamps."""
    def secs(ts):  # 2026-11-26T05:30:36.421Z
        h, m, s = ts[11:23].split(':')
        return int(h) * 3600 + int(m) * 60 + float(s)
    if not stamps:
        return []
    t = sorted(secs(s) for s in stamps)
    t0, out, i = t[0], [], 0
    k = 0
    while i < len(t):
        end = t0 + (k + 1) * bucket
        c = 0
        while i < len(t) and t[i] < end:
            c += 1
            i += 1
        out.append((round(k * bucket, 2), c / bucket))
        k += 1
    return out


def fs_type(path):
    """The file system type a path lives on (ext2/ext3 for ext4, tmpfs...), as stat -f says."""
    try:
        return subprocess.run(['stat', '-f', '-c', '%T', path], capture_output=True, text=True,
                              timeout=10).stdout.strip() or '?'
    except (OSError, subprocess.SubprocessError):
        return '?'


def has_jobs(sluice):
    """Whether this sluice writes job files (`spoolgen --job`): until the
    engine has them the job rows are left out and the bench runs on."""
    try:
        r = subprocess.run([sluice, 'spoolgen', '--help'], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return '--job' in r.stdout + r.stderr


def job_seed(name):
    return 1 + sum(map(ord, name)) % 1000


def spoolgen(a, sc, spool):
    """Writes the scenario's spool: N files, or one job file of N rows
    (then the bytes are the N messages' nominal size)."""
    if sc.get('job'):
        say(f'{sc["name"]}: generating a job file of {sc["n"]} rows, {sc["size"]} B template, '
            f'{sc["domains"]} domains')
        subprocess.run([a.sluice, 'spoolgen', '--spool', spool, '--job', str(sc['n']), '--size', str(sc['size']),
                        '--domains', str(sc['domains']), '--seed', str(job_seed(sc['name']))],
                       check=True, stdout=subprocess.DEVNULL)
        return sc['n'] * sc['size']
    say(f'{sc["name"]}: generating {sc["n"]} messages of {sc["size"]} B over {sc["domains"]} domains')
    subprocess.run([a.sluice, 'spoolgen', '--spool', spool, '--count', str(sc['n']), '--size',
                    str(sc['size']), '--domains', str(sc['domains'])], check=True, stdout=subprocess.DEVNULL)
    return sum(e.stat().st_size for e in os.scandir(os.path.join(spool, 'new')))


def spool_base(a, sc, work):
    """Where a row's spool goes: --spool-dir, else the work directory; the
    template rows (shaping) on tmpfs when there is one: they compare sluice
    with sluice (throttle, shards), and on a shared machine other tenants'
    disk traffic stalls the unlinks of a spool on disk for seconds at a
    time, which would swamp what they measure (spool_fs says which)."""
    if a.spool_dir or not sc.get('tpl'):
        return a.spool_dir or work
    if a.shm_dir is None:
        try:
            a.shm_dir = tempfile.mkdtemp(prefix='sluice-bench.', dir='/dev/shm')
        except OSError:
            a.shm_dir = ''
    return a.shm_dir or work


def spool_from_template(a, sc, spool, work):
    """The first sc['n'] files of a spool generated once for all the rows
    of template sc['tpl'] (sc['tpl_n'] messages), hard-linked into this
    row's new/: sluice only renames and unlinks spool files, so the
    template outlives each run, and linking tens of thousands of files
    costs a fraction of writing them (the ABBA rows run the same spool 16
    times). Returns the bytes, as spoolgen."""
    key = (sc['tpl'], sc['tpl_n'], sc['size'], sc['domains'])
    if key not in a.templates:
        tpl = os.path.join(spool_base(a, sc, work), f'template-{sc["tpl"]}')
        shutil.rmtree(tpl, ignore_errors=True)
        spoolgen(a, dict(sc, name=f'template {sc["tpl"]}', n=sc['tpl_n']), tpl)
        a.templates[key] = (tpl, sorted(os.listdir(os.path.join(tpl, 'new'))))
    tpl, names = a.templates[key]
    say(f'{sc["name"]}: linking {sc["n"]} messages from template {sc["tpl"]}')
    for d in ('tmp', 'new'):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    total = 0
    for name in names[:sc['n']]:
        src = os.path.join(tpl, 'new', name)
        os.link(src, os.path.join(spool, 'new', name))
        total += os.stat(src).st_size
    return total


def police_result(sc, mx_stats):
    """A policed row's verdict from its mockmx's counters: the violations
    it counted (421 answers: too many connections of a source IP, messages
    on a connection, MAIL FROM past the rate), each source IP's share;
    'failed' when there was a violation or the sources are not sluice's."""
    pol, srcs = mx_stats.get('police') or {}, mx_stats.get('sources') or {}
    viol = {k: pol.get(k) for k in ('conns', 'per_conn', 'rate')}
    r = {'mockmx_police': {'violations': viol, 'limits': pol.get('limits')},
         'violations': sum(v or 0 for v in viol.values()),
         'expected_msgs_per_s': sc['police']['rate'] * len(sc['sources']), 'sources_seen': {}}
    srcs = {ip: s for ip, s in srcs.items() if s.get('mails')}  # not the bench's port probe
    for ip, s in srcs.items():
        span = ((s.get('last_ms') or 0) - (s.get('first_ms') or 0)) / 1000
        r['sources_seen'][ip] = {
            'connections': s.get('connections'), 'messages': s.get('messages'),
            'max_concurrent': s.get('max_concurrent'), 'violations': s.get('violations'),
            'mail_per_s': round((s['mails'] - 1) / span, 1) if s.get('mails', 0) >= 2 and span > 0 else None}
    why = []
    if not pol:
        why.append('mockmx reported no police counters')
    elif r['violations']:
        why.append('mockmx counted violations: ' + ', '.join(f'{k} {v}' for k, v in viol.items() if v))
    if pol and set(srcs) != set(sc['sources']):
        why.append(f"mockmx saw sources {', '.join(sorted(srcs)) or 'none'}, not {', '.join(sc['sources'])}")
    if why:
        r['failed'] = '; '.join(why)
    return r


def suppression_store(a, work):
    """A suppression list of a.suppress_entries random addresses (none of
    them a recipient of the spools), made once per run by `sluice suppress
    import` from a CSV written here; its directory."""
    store = os.path.join(work, 'suppress-big')
    if os.path.isdir(store):
        return store
    n = a.suppress_entries
    say(f'suppression list: importing {n:,} entries')
    csv = os.path.join(work, 'suppress-big.csv')
    rng = random.Random(7)
    with open(csv, 'w') as f:
        f.write('address,domain,reason\n')
        chunk = []
        for i in range(n):
            chunk.append(f'u{rng.getrandbits(40):x}.{i}@list{i % 5000}.example\n')
            if len(chunk) == 100000:
                f.writelines(chunk)
                chunk = []
        f.writelines(chunk)
    t0 = time.monotonic()
    subprocess.run([a.sluice, 'suppress', '--store', store, 'import', csv], check=True, stdout=subprocess.DEVNULL)
    a.suppress_import_s = round(time.monotonic() - t0, 1)
    os.sync()  # gigabytes written back now, not during the rows that follow
    a.suppress_store_mb = round(sum(os.path.getsize(os.path.join(store, x)) for x in os.listdir(store)) / 1e6, 1)
    os.unlink(csv)
    return store


def feedback_parse_rate(a, work):
    """`sluice feedback parse --json` over the fixtures' reports, copied
    until there are a.parse_reports of them, beside Python's email parser
    (the standard library's, reading each file as a message and walking
    its parts) on the same files: reports per second."""
    src = os.path.join(os.path.dirname(HERE), 'tests', 'fixtures', 'feedback')
    files = sorted(f for f in os.listdir(src) if f.endswith('.eml'))
    d = os.path.join(work, 'reports')
    os.makedirs(d, exist_ok=True)
    paths = []
    for i in range(a.parse_reports):
        p = os.path.join(d, f'{i}.eml')
        shutil.copyfile(os.path.join(src, files[i % len(files)]), p)
        paths.append(p)
    t0 = time.monotonic()
    r = subprocess.run([a.sluice, 'feedback', 'parse', '--json'] + paths, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    ours = time.monotonic() - t0
    lines = r.stdout.count(b'\n')
    import email
    import email.policy
    t0 = time.monotonic()
    for p in paths:
        with open(p, 'rb') as f:
            m = email.message_from_binary_file(f, policy=email.policy.compat32)
        for part in m.walk():
            part.get_payload(decode=True)
    peer = time.monotonic() - t0
    shutil.rmtree(d, ignore_errors=True)
    return {'reports': len(paths), 'lines': lines, 'exit': r.returncode, 'seconds': round(ours, 3),
            'reports_per_s': round(len(paths) / ours, 1), 'python_email_seconds': round(peer, 3),
            'python_email_reports_per_s': round(len(paths) / peer, 1), 'ratio': round(peer / ours, 2)}


def sluice_scenario(a, sc, sinks, work):
    spool = os.path.join(spool_base(a, sc, work), f'spool-{sc["name"]}')
    log = os.path.join(work, f'acct-{sc["name"]}.jsonl')
    shutil.rmtree(spool, ignore_errors=True)
    total_bytes = spool_from_template(a, sc, spool, work) if sc.get('tpl') else spoolgen(a, sc, spool)
    own = None
    if sc.get('hidden'):  # a moody provider: 421 [TSS04] above a rate sluice is not told
        own = MockMX(a.sluice, extra=['--police-rate', str(sc['hidden'])])
        sink = own
    elif sc.get('police'):  # a mockmx of its own that polices each source IP: its counters are this row's
        pl = sc['police']
        own = MockMX(a.sluice, extra=['--police-rate', str(pl['rate']), '--police-conns', str(pl['conns']),
                                      '--police-per-conn', str(pl['per_conn'])])
        sink = own
    elif sc.get('mx_tls'):  # a mockmx of its own with a certificate: its counters are this row's
        cert, key = tls_cert(a, work)
        own = MockMX(a.sluice, extra=['--tls-cert', cert, '--tls-key', key] +
                     (['--tls-no-resume'] if sc['mx_tls'] == 'full' else []))
        sink = own
    else:
        sink = sinks[sc['sink']]
    where = ['--route', f'*=127.0.0.1:{sink.port}']
    if sc.get('dns'):  # every domain's MX found through NSD, all at the sink
        where = ['--dns-server', a.nsd.server, '--smtp-port', str(sink.port)]
    cmd = [a.sluice, 'run', '--drain', '--spool', spool, *where,
           '--shards', str(sc['shards']), '--max-connections', str(sc['conns']), '--log', log,
           '--max-time', str(a.max_run_time)]
    if sc.get('tls'):
        cmd += ['--tls', sc['tls']]
    if sc.get('mpc'):
        cmd += ['--max-per-connection', str(sc['mpc'])]
    for ip in sc.get('sources', ()):
        cmd += ['--source-ip', ip]
    if sc.get('max_rate'):
        cmd += ['--max-rate', sc['max_rate']]
    if sc.get('conf') is not None:  # a configuration file of its own (adaptation rows)
        conf = os.path.join(work, f'{sc["name"]}.conf')
        with open(conf, 'w') as f:
            f.write(sc['conf'].replace('@STORE@', suppression_store(a, work) if '@STORE@' in sc['conf'] else ''))
        cmd += ['-c', conf]
    if sc.get('police'):  # a 421 from the police retried soon, the run bounded: a failure does not stall the bench
        bound = min(a.max_run_time, int(sc['n'] / (sc['police']['rate'] * len(sc['sources'])) * 3) + 30)
        cmd[cmd.index('--max-time') + 1] = str(bound)
        cmd += ['--retry-interval', '1']
    env = None
    scraper = None
    if sc.get('metrics'):  # /metrics and the control socket on, each asked twice a second
        mport = free_port()
        control = os.path.join(work, f'{sc["name"]}.control')
        cmd += ['--metrics', f'127.0.0.1:{mport}', '--control', control]
        scraper = Scraper(f'http://127.0.0.1:{mport}/metrics', 0.5, control)
    elif sc.get('control_off'):  # the row it is measured against: both off
        cmd += ['--control', 'off']
    if sc.get('dkim'):
        cmd += ['--dkim', f'sender.example:{sc["dkim"]}:{dkim_key(a, work, sc["dkim"])}']
        if sc.get('reparse'):  # libopendkim as shipped: the key parsed for every message
            # (which leaks each parsed Ed25519 key in 2.11.0: not ours for LeakSanitizer to report)
            env = dict(os.environ, SLUICE_DKIM_REPARSE='1',
                       ASAN_OPTIONS=os.environ.get('ASAN_OPTIONS', '') + ':detect_leaks=0')
    seen = {'off': 0, 'final': 0, 'deferred': 0}

    def progress(el):
        """done/total, msgs/s, deferred, ETA: read from the log as it grows."""
        if not TTY:
            return
        try:
            with open(log, 'rb') as f:
                f.seek(seen['off'])
                chunk = f.read()
        except OSError:
            return
        chunk = chunk[:chunk.rfind(b'\n') + 1]
        seen['off'] += len(chunk)
        seen['deferred'] += chunk.count(b'"result":"deferred"')
        seen['final'] += chunk.count(b'\n') - chunk.count(b'"result":"deferred"')
        done = seen['final']
        rate = done / el if el > 0 else 0
        eta = (sc['n'] - done) / rate if rate > 0 else 0
        print(f'\r\033[Kbench: {sc["name"]}: {done}/{sc["n"]} {rate:,.0f} msgs/s '
              f'deferred {seen["deferred"]} ETA {eta:.0f}s', end='', file=sys.stderr, flush=True)

    c0 = sink.cpu()
    threads = {} if sc.get('tpl') else None  # shaping rows: which threads had the CPU
    try:
        rc, wall, cpu, rss, out, err = run_timed(cmd, a.max_run_time + 60, progress, env=env, threads=threads)
        mx_cpu = sink.cpu() - c0
    finally:
        mx_stats = own.stop() if own else None
        scrapes = scraper.stop() if scraper else None
    counts, p50, p99, stamps = analyze_log(log, sc['n'])
    adapt = adapt_result(sc, log, mx_stats) if sc.get('hidden') else None
    shutil.rmtree(spool, ignore_errors=True)
    if rc != 0 or counts['delivered'] != sc['n']:
        say(f'{sc["name"]}: sluice exit {rc}, {counts["delivered"]}/{sc["n"]} delivered\n{out}{err}')
    r = dict(sc)
    r.update({
        'spool_fs': fs_type(os.path.dirname(spool)), 'exit': rc, 'seconds': round(wall, 3), 'msgs_per_s': round(sc['n'] / wall, 1),
        'rcpts_per_s': round(counts['delivered'] / wall, 1), 'mb_per_s': round(total_bytes / wall / 1e6, 2),
        'cpu_s': round(cpu, 2), 'cpu_us_per_msg': round(cpu / sc['n'] * 1e6, 1),
        'sink_cpu_s': round(mx_cpu, 2), 'peak_rss_mb': round(rss / 1024, 1),
        'latency_ms_p50': p50, 'latency_ms_p99': p99,
        'deferred': counts['deferred'], 'bounced': counts['bounced'], 'delivered': counts['delivered'],
        'errors': sc['n'] - counts['delivered'] - counts['bounced'],
    })
    if sc.get('timeline'):
        r['timeline'] = timeline(stamps)
    if sc.get('tpl'):  # sluice and the mockmx, in cores: on 2 cores they compete
        r['cores_busy'] = round((cpu + mx_cpu) / wall, 2)
        r['sink_cpu_us_per_msg'] = round(mx_cpu / sc['n'] * 1e6, 1)
        r['threads_cpu_s'] = {k: round(v, 2) for k, v in sorted(threads.items())}  # sampled every 50 ms
    if adapt:
        r['adapt'] = adapt
    if scrapes is not None:
        r['scrapes'] = scrapes
    if sc.get('police'):
        r.update(police_result(sc, mx_stats or {}))
        if r.get('failed'):
            say(f'{sc["name"]}: FAILED: {r["failed"]}')
    if mx_stats is not None and sc.get('mx_tls'):
        r['mockmx'] = {k: mx_stats.get(k) for k in ('connections', 'tls_connections', 'tls_resumed', 'tls_failures')}
        r['sluice_tls'] = sluice_tls_summary(out + err)
        hs = mx_stats.get('tls_connections', 0)
        if sc.get('mpc'):  # one message per connection: handshakes per second of sluice's CPU
            r['handshakes'] = hs
            r['handshakes_per_s'] = round(hs / wall, 1)
            r['handshakes_per_core_s'] = round(hs / cpu, 1) if cpu > 0 else None
        if sc.get('tls') not in (None, 'none') and hs == 0:
            r['note'] = 'mockmx saw no TLS handshake: sluice sent in clear'
            say(f'{sc["name"]}: {r["note"]}')
    os.unlink(log)
    return r


class Nsd:
    """NSD on 127.0.0.1 serving zone 'example.' for spoolgen's domains
    d0.example .. dN.example: each has MX 10 mx.example, which is 127.0.0.1."""
    def __init__(self, work, ndomains):
        self.dir = os.path.join(work, 'nsd')
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.names = [f'd{i}.example' for i in range(ndomains)]
        with open(os.path.join(self.dir, 'example.zone'), 'w') as f:
            f.write('$ORIGIN example.\n$TTL 3600\n@ SOA ns.example. h.example. 1 3600 600 86400 300\n'
                    '@ NS ns\nns A 127.0.0.1\nmx A 127.0.0.1\n')
            for i in range(ndomains):
                f.write(f'd{i} MX 10 mx\n')
        d = self.dir
        with open(os.path.join(d, 'nsd.conf'), 'w') as f:
            f.write(f'server:\n  ip-address: 127.0.0.1@{self.port}\n  username: ""\n  chroot: ""\n  database: ""\n'
                    f'  zonesdir: "{d}"\n  pidfile: "{d}/pid"\n  zonelistfile: "{d}/zl"\n  xfrdfile: "{d}/xs"\n'
                    f'  xfrdir: "{d}"\n  logfile: "{d}/log"\n  server-count: 1\n'
                    f'remote-control:\n  control-enable: no\nzone:\n  name: example\n  zonefile: "example.zone"\n')
        self.p = subprocess.Popen(['timeout', '3600', 'nsd', '-d', '-c', os.path.join(d, 'nsd.conf')],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(os.path.join(d, 'log')) and 'nsd started' in open(os.path.join(d, 'log')).read():
                break
            time.sleep(0.05)
        self.server = f'127.0.0.1:{self.port}'

    def stop(self):
        self.p.terminate()
        self.p.wait()


def dns_resolutions(a, nsd):
    """Cold cache: sluice's resolver over all names (one process, up to 500
    queries out), next to drill in a loop (one process and query per name)
    as the floor."""
    names = os.path.join(nsd.dir, 'names')
    with open(names, 'w') as f:
        f.write('\n'.join(nsd.names) + '\n')
    out = {'names': len(nsd.names)}
    for t in ('mx', 'plan'):
        t0 = time.monotonic()
        r = subprocess.run([a.sluice, 'resolve', '--dns-server', nsd.server, '--type', t, '--file', names, '--quiet'],
                           capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - t0
        out[f'sluice_{t}_per_s'] = round(len(nsd.names) / wall, 1)
        out[f'sluice_{t}_summary'] = r.stderr.strip()
    k = min(len(nsd.names), 300 if a.quick else 1000)
    t0 = time.monotonic()
    for n in nsd.names[:k]:
        subprocess.run(['drill', '-p', str(nsd.port), '@127.0.0.1', 'MX', n], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
    out['drill_loop_names'] = k
    out['drill_loop_per_s'] = round(k / (time.monotonic() - t0), 1)
    return out


def dkim_key(a, work, alg):
    """A signing key for sender.example (spoolgen's From domain), made once."""
    path = os.path.join(work, f'{alg}.key')
    if not os.path.exists(path):
        subprocess.run([a.sluice, 'dkim', 'keygen', '--domain', 'sender.example', '--selector', alg,
                        '--type', alg, '--out', path], check=True, stdout=subprocess.DEVNULL)
    return path


def daemon_latency(a, mx, work, drops):
    """An idle daemon: a file renamed into new/ -> 250 at mockmx (the log's ts)."""
    spool = os.path.join(work, 'latency-spool')
    for d in ('tmp', 'new'):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    log = os.path.join(work, 'latency.jsonl')
    p = subprocess.Popen([a.sluice, 'run', '--spool', spool, '--route', f'*=127.0.0.1:{mx.port}',
                          '--log', log, '--max-time', str(drops * 0.1 + 20)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dropped = {}
    try:
        time.sleep(0.5)
        for i in range(drops):
            name = f'lat-{i:04d}'
            tmp = os.path.join(spool, 'tmp', name)
            with open(tmp, 'w') as f:
                f.write(f'X-Sender: <b@sender.example>\nX-Receiver: <u{i}@d{i % 7}.example>\n'
                        f'From: b@sender.example\nTo: u{i}@d{i % 7}.example\nSubject: latency {i}\n'
                        f'Message-ID: <lat{i}@sender.example>\n\nbody {i}\n')
            dropped[name] = time.time()
            os.rename(tmp, os.path.join(spool, 'new', name))
            time.sleep(0.05 + random.random() * 0.05)  # idle between drops
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(log) and sum(1 for _ in open(log)) >= drops:
                break
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(timeout=30)
    lat = []
    for line in open(log) if os.path.exists(log) else []:
        o = json.loads(line)
        if o['result'] == 'delivered' and o['id'] in dropped:
            t = datetime.datetime.strptime(o['ts'], '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)
            lat.append((t.timestamp() - dropped[o['id']]) * 1000)
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))], 1) if lat else None
    return {'drops': drops, 'delivered': len(lat), 'p50_ms': pct(0.5), 'p99_ms': pct(0.99),
            'max_ms': round(lat[-1], 1) if lat else None}


def spool_ops(a):
    """`sluice spoolbench --json`: the spool's file operations per file, on
    the disk (--spoolbench-dir, /var/tmp) and on tmpfs (/dev/shm)."""
    n = a.spoolbench_count or (2000 if a.quick else 5000)
    out = {}
    for where, d in (('disk', a.spoolbench_dir), ('tmpfs', '/dev/shm')):
        if not os.path.isdir(d):
            out[where] = {'error': f'{d}: not a directory'}
            continue
        say(f'spool operations: sluice spoolbench --count {n} --dir {d} ({fs_type(d)})')
        try:
            r = subprocess.run(['timeout', '900', a.sluice, 'spoolbench', '--json', '--dir', d, '--count', str(n)],
                               capture_output=True, text=True, timeout=960)
            o = json.loads(r.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            out[where] = {'error': f'spoolbench failed: {e}'}
            continue
        o['exit'] = r.returncode
        o['fs_seen'] = fs_type(d)
        out[where] = o
    return out


def log_ts(ts):
    """The accounting log's RFC 3339 stamp as seconds since the epoch."""
    t = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def wait_locked(spool, pid, timeout=10.0):
    """Until the daemon holds SPOOL/lock (its pid written there: new/ is watched by then)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if open(os.path.join(spool, 'lock')).read().strip() == str(pid):
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def running(pid):
    """Not exited (a zombie has exited; it is left for wait4 to reap, with its rusage)."""
    try:
        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def follow_log(log, rows, p, bound):
    """Reads the daemon's log as it grows until every row has its final
    line (or the bound passes, or the daemon exits): (first delivered ts,
    last final ts, counts). Counts bytes rather than parsing every line:
    the bench shares the CPUs with the daemon it measures."""
    counts = {'delivered': 0, 'deferred': 0, 'bounced': 0, 'expired': 0}
    first = last = None
    off, end = 0, time.monotonic() + bound
    while time.monotonic() < end and running(p.pid):
        time.sleep(0.2)
        try:
            with open(log, 'rb') as f:
                f.seek(off)
                chunk = f.read()
        except OSError:
            continue
        chunk = chunk[:chunk.rfind(b'\n') + 1]
        off += len(chunk)
        for k in counts:
            counts[k] += chunk.count(b'"result":"%s"' % k.encode())
        lines = chunk.splitlines()
        if first is None:
            first = next((json.loads(x)['ts'] for x in lines if b'"result":"delivered"' in x), None)
        last = next((json.loads(x)['ts'] for x in reversed(lines) if b'"result":"deferred"' not in x), last)
        if counts['delivered'] + counts['bounced'] + counts['expired'] >= rows:
            break
    return first, last, counts


def reap(p, grace=30.0):
    """SIGTERM (then SIGKILL after grace seconds) and wait: the rusage."""
    p.terminate()
    end = time.monotonic() + grace
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > end:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru


def million_job(a, mx, work):
    """A job file of a million rows (~3 KB messages) renamed into an idle
    daemon's new/ (`sluice run` without --drain, started first and holding
    the spool): the time from the rename to the first delivered line in the
    log (its ts), the rate to the last, the daemon's peak RSS and CPU."""
    rows = a.million_rows
    base = a.spool_dir or work
    stage, spool = os.path.join(base, 'million-stage'), os.path.join(base, 'million-spool')
    log = os.path.join(work, 'million.jsonl')
    for d in (stage, spool):
        shutil.rmtree(d, ignore_errors=True)
    say(f'million: generating a job file of {rows} rows')
    t0 = time.monotonic()
    subprocess.run([a.sluice, 'spoolgen', '--spool', stage, '--job', str(rows), '--size', '3000', '--domains', '50',
                    '--seed', '7'], check=True, stdout=subprocess.DEVNULL, timeout=900)
    gen_s = time.monotonic() - t0
    job = next(e.path for e in os.scandir(os.path.join(stage, 'new')) if e.name.endswith('.job'))
    res = {'rows': rows, 'job_file_mb': round(os.path.getsize(job) / 1e6, 1), 'spoolgen_s': round(gen_s, 1),
           'spool_fs': fs_type(base)}
    for d in ('tmp', 'new'):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    errf = open(os.path.join(work, 'million.err'), 'w+')
    p = subprocess.Popen([a.sluice, 'run', '--spool', spool, '--route', f'*=127.0.0.1:{mx.port}', '--log', log,
                          '--shards', str(a.cores), '--max-connections', '20', '--max-time', str(a.max_run_time)],
                         stdout=subprocess.DEVNULL, stderr=errf)
    try:
        if not wait_locked(spool, p.pid):
            return dict(res, error='the daemon did not take the spool')
        time.sleep(0.3)  # idle
        say(f'million: {rows} rows renamed into an idle daemon\'s new/')
        t_rename = time.time()
        os.rename(job, os.path.join(spool, 'new', os.path.basename(job)))
        first, last, counts = follow_log(log, rows, p, a.max_run_time)
    finally:
        ru = reap(p)
        errf.seek(0)
        err = errf.read()[-2000:]
        errf.close()
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)
    cpu = ru.ru_utime + ru.ru_stime
    res.update({'delivered': counts['delivered'], 'deferred': counts['deferred'], 'bounced': counts['bounced'],
                'first_delivery_ms': round((log_ts(first) - t_rename) * 1000, 1) if first else None,
                'last_final_s': round(log_ts(last) - t_rename, 2) if last else None,
                'peak_rss_mb': round(ru.ru_maxrss / 1024, 1), 'cpu_s': round(cpu, 2),
                'cpu_us_per_msg': round(cpu / max(1, counts['delivered']) * 1e6, 1)})
    if last and first:
        res['msgs_per_s'] = round(counts['delivered'] / max(1e-3, log_ts(last) - t_rename), 1)
    if counts['delivered'] != rows:
        res['error'] = f"{counts['delivered']}/{rows} delivered; daemon stderr: {err.strip()}"
    if os.path.exists(log):
        os.unlink(log)
    return res


def scenarios(a, cores):
    q = a.quick
    n3 = a.messages or (20000 if q else 200000)
    small = max(1000, n3 // 2)
    base = {'size': 3000, 'domains': 50, 'shards': cores, 'conns': 20, 'sink': 'mockmx'}
    out = [dict(base, name='3KB', n=n3, timeline=True)]
    out.append(dict(base, name='100KB', size=100000, n=max(500, n3 // 20)))
    if not q:
        for s in range(1, cores):
            out.append(dict(base, name=f'3KB-shards{s}', shards=s, n=small))
        out.append(dict(base, name='3KB-domains1', domains=1, n=small))
        for c in (2, 100):
            out.append(dict(base, name=f'3KB-conns{c}', conns=c, n=small // 2))
    # DNS: 5,000 domains by --route, then the same through MX lookups (cold
    # cache; every domain's MX is one host, so only the DNS cost differs)
    out.append(dict(base, name='3KB-domains5000', domains=5000, n=small))
    out.append(dict(base, name='3KB-domains5000-dns', domains=5000, n=small, dns=True, vs='3KB-domains5000'))
    out.append(dict(base, name='3KB-smtp-sink', sink='smtp-sink', n=small))
    # Job files: one file of N rows (~3 KB messages rendered from a template)
    # instead of N files; the same counts and sinks as the rows they mirror.
    if a.jobs:
        out.append(dict(base, name='job-3KB', n=n3, job=True, files_row='3KB'))
        out.append(dict(base, name='job-3KB-smtp-sink', sink='smtp-sink', n=small, job=True,
                        files_row='3KB-smtp-sink'))
    # DKIM: next to one core's `openssl speed` sign/s x shards (the ceiling),
    # and as libopendkim ships (the key parsed again for every message).
    nd = 2000 if q else 10000
    out.append(dict(base, name='100KB-dkim-rsa', size=100000, n=nd // 2, dkim='rsa'))
    out.append(dict(base, name='3KB-dkim-rsa', n=nd, dkim='rsa'))
    out.append(dict(base, name='3KB-dkim-ed25519', n=nd * 2, dkim='ed25519'))
    out.append(dict(base, name='3KB-dkim-rsa-reparse', n=nd // 2, dkim='rsa', reparse=True))
    out.append(dict(base, name='3KB-dkim-ed25519-reparse', n=nd // 2, dkim='ed25519', reparse=True))
    # STARTTLS: every row against a mockmx of its own with a P-256
    # certificate (its counters: handshakes, of which resumed). 3KB-tls
    # beside 3KB-tls-none: the same kind of mockmx, sluice with and without
    # TLS, twice in the order none, tls, tls, none (part 1, 2): on a
    # shared 2-core machine the second of two identical runs is measurably
    # slower, and ABBA cancels that. Handshakes: one message per
    # connection, full (mockmx resumes nothing) and resumed (the shard's
    # session cache), and the same in clear (tls-conn1-none) to net out
    # what a connection costs anyway.
    nt, nh = max(1000, n3 // 8), 1000 if q else 5000
    tbase = dict(base, sink='mockmx+tls', mx_tls='resume', tls='opportunistic')
    tls_rows = [dict(tbase, name='3KB-tls-none', n=nt, tls='none', part=1),
                dict(tbase, name='3KB-tls', n=nt, vs='3KB-tls-none', part=1),
                dict(tbase, name='3KB-tls', n=nt, vs='3KB-tls-none', part=2),
                dict(tbase, name='3KB-tls-none', n=nt, tls='none', part=2),
                dict(tbase, name='tls-conn1-none', n=nh, mpc=1, tls='none'),
                dict(tbase, name='tls-handshakes-full', n=nh, mpc=1, mx_tls='full'),
                dict(tbase, name='tls-handshakes-resumed', n=nh, mpc=1)]
    only = a.only.split(',') if a.only else None
    if only and 'tls' in only:
        only += [s['name'] for s in tls_rows]
    wanted = [s for s in tls_rows if only is None or s['name'] in only]
    if wanted and not a.tls:
        a.notes.append(f"TLS rows left out ({', '.join(s['name'] for s in wanted)}): this sluice refuses "
                       f"--tls opportunistic ({a.tls_why})")
    elif wanted:
        out += tls_rows
    # Traffic shaping: limits per (source IP, MX group) pair; one route is
    # one MX group. 3KB-shaped beside 3KB-unshaped: the same spool and
    # mockmx, sluice with limits far above what the machine does vs none,
    # in the order unshaped, shaped, shaped, unshaped (ABBA, as the TLS
    # rows, twice: the difference sought is smaller than the noise of
    # one pair): what the throttle costs. ips4-/ips1-shards1/2: a pair lives
    # on one shard, so 4 source IPs spread the route over the shards and
    # one cannot (ABBA each). policed: a mockmx policing each source IP
    # like a provider (421 and a counted violation beyond), sluice with 4
    # source IPs and the same limits: near 4R msgs/s, no violation (else
    # the row fails). All link their spools from one template.
    ns = max(2000, n3 // 5)
    ips4 = [f'127.0.0.{10 + i}' for i in range(4)]
    sbase = dict(base, tpl='shaping')
    shaping_rows = []
    if not q:
        un = dict(sbase, name='3KB-unshaped', n=ns)
        sh = dict(sbase, name='3KB-shaped', n=ns, vs='3KB-unshaped', max_rate='10000000/s', mpc=1000000)
        shaping_rows += [dict(x, part=k) for x, k in ((un, 1), (sh, 1), (sh, 2), (un, 2), (un, 3), (sh, 3), (sh, 4), (un, 4))]
        for k, ips in (('ips4', ips4), ('ips1', ips4[:1])):
            one = dict(sbase, name=f'{k}-shards1', n=ns, shards=1, sources=ips)
            two = dict(one, name=f'{k}-shards2', shards=2, vs=f'{k}-shards1')
            shaping_rows += [dict(one, part=1), dict(two, part=1), dict(two, part=2), dict(one, part=2)]
    # policed: about 5 s at 4R (quick: a 1 s check of the wiring)
    rate, conns, per_conn, secs = (250, 4, 100, 1) if q else (500, 4, 100, 5)
    shaping_rows.append(dict(sbase, name='policed', n=4 * rate * secs, sink='mockmx+police', sources=ips4,
                             conns=conns, mpc=per_conn, max_rate=f'{rate}/s',
                             police={'rate': rate, 'conns': conns, 'per_conn': per_conn}))
    if only and 'shaping' in only:
        only += [s['name'] for s in shaping_rows]
    out += shaping_rows
    # Adaptation: the AIMD row (one source IP, a mockmx answering 421
    # [TSS04] above `hidden` a second, sluice allowed 5x that and a rule
    # that slows the pair down on TSS04: converges below it, keeps most of
    # it; plotted), and reply rules on clean traffic: the shipped file and
    # three rules of the config's beside none at all (ABBA twice: rule
    # matching runs on refusals only, so the two should not differ).
    hidden, asecs = (100, 8) if q else (300, 20)
    rule = ('adaptation: { slow-factor = 0.7; increase = 0.05; increase-every = 1; holdoff = 1;\n'
            '  rules = ( { name = "tss04-slow"; code = "421"; text = "\\\\[TSS04\\\\]"; action = "slow"; },\n'
            '            { name = "busy"; code = "4xx"; text = "busy|try again"; action = "slow"; },\n'
            '            { name = "rbl"; code = "5xx"; text = "blocked using"; action = "suspend"; } ); };\n')
    adapt_rows = [dict(sbase, name='adapt-aimd', n=hidden * asecs, sources=ips4[:1], hidden=hidden,
                       max_rate=f'{hidden * 5}/s', conns=4, conf=rule + 'delivery: { retry-interval = 0.5; retry-max = 1; };\n')]
    if not q:
        on = dict(sbase, name='3KB-rules', n=ns, vs='3KB-norules', conf=rule)
        off = dict(sbase, name='3KB-norules', n=ns, conf='adaptation: { responses = ""; };\n')
        adapt_rows += [dict(x, part=k) for x, k in ((off, 1), (on, 1), (on, 2), (off, 2), (off, 3), (on, 3), (on, 4), (off, 4))]
    if only and 'adapt' in only:
        only += [s['name'] for s in adapt_rows]
    out += adapt_rows
    # Metrics: 3KB with /metrics on and scraped twice a second beside off
    # (ABBA twice: counting at each log line is all it adds).
    if not q:
        mon = dict(sbase, name='3KB-metrics', n=ns, vs='3KB-nometrics', metrics=True)
        moff = dict(sbase, name='3KB-nometrics', n=ns, control_off=True)
        metric_rows = [dict(x, part=k) for x, k in ((moff, 1), (mon, 1), (mon, 2), (moff, 2), (moff, 3), (mon, 3),
                                                     (mon, 4), (moff, 4))]
        if only and 'metrics' in only:
            only += [s['name'] for s in metric_rows]
        out += metric_rows
    # Suppression: 3KB checked against a list of 10 million entries beside
    # no list (ABBA twice: one lookup per recipient at claim is all it adds).
    if not q:
        son = dict(sbase, name='3KB-suppress', n=ns, vs='3KB-nosuppress', conf='suppression-list = "@STORE@";\n')
        soff = dict(sbase, name='3KB-nosuppress', n=ns, conf='suppression-list = "off";\n')
        sup_rows = [dict(x, part=k) for x, k in ((soff, 1), (son, 1), (son, 2), (soff, 2), (soff, 3), (son, 3),
                                                  (son, 4), (soff, 4))]
        if only and 'suppress' in only:
            only += [s['name'] for s in sup_rows]
        out += sup_rows
    if only:
        out = [s for s in out if s['name'] in only]
    tpl_n = max((s['n'] for s in out if s.get('tpl')), default=0)  # one template serves them all
    for s in out:
        if s.get('tpl'):
            s['tpl_n'] = tpl_n
    return out


def plots(res, stem):
    if not shutil.which('gnuplot'):
        say('gnuplot not found: no plots')
        return []
    rows = [(s['name'], s['msgs_per_s']) for s in res['sluice']]
    for k, v in res['peers'].items():
        if isinstance(v, dict) and 'msgs_per_s' in v:
            rows.append((k, v['msgs_per_s']))
    dat = stem + '-rates.dat'
    with open(dat, 'w') as f:
        for name, rate in rows:
            f.write(f'"{name}" {rate}\n')
    tl = next((s['timeline'] for s in res['sluice'] if s.get('timeline')), [])
    tdat = stem + '-timeline.dat'
    with open(tdat, 'w') as f:
        for t, r in tl:
            f.write(f'{t} {r}\n')
    m = res['machine']
    gp = f"""set terminal pngcairo size 1000,520 font ",10"
set output "{stem}-rates.png"
set title "messages/s per scenario - {m['cpus']} CPUs, {m['model']} ({res['timestamp']})"
set style fill solid 0.8
set boxwidth 0.7
set xtics rotate by -35
set ylabel "messages/s"
set yrange [0:*]
set grid ytics
plot "{dat}" using 0:2:xtic(1) with boxes notitle lc rgb "#3a6ea5"
set output "{stem}-timeline.png"
set title "throughput over time, headline run (3 KB) - deliveries per second in 0.25 s buckets"
set xtics norotate
set xlabel "seconds since the first delivery"
set yrange [0:*]
plot "{tdat}" using 1:2 with lines lw 2 lc rgb "#c0392b" title "sluice"
"""
    pngs = [stem + '-rates.png', stem + '-timeline.png']
    ad = next((s['adapt'] for s in res['sluice'] if s.get('adapt')), None)
    if ad and ad['per_second']:
        # mockmx counts seconds from its start; the rate changes are placed
        # from the first second it refused in (the first slow-down answers it)
        first = next((i for i, n in enumerate(ad['refused_per_second']) if n), 0)
        adat = stem + '-adapt.dat'
        with open(adat, 'w') as f:
            for i, (n, rf) in enumerate(zip(ad['per_second'], ad['refused_per_second'])):
                f.write(f'{i} {n} {rf}\n')
            f.write('\n\n')
            for t, rate in ad['rates']:
                f.write(f'{first + t} {rate}\n')
        gp += f"""set output "{stem}-adapt.png"
set title "AIMD against a hidden limit: mockmx answers 421 [TSS04] above {ad['hidden_per_s']}/s per source IP"
set xlabel "seconds (mockmx's clock)"
set ylabel "messages/s"
set yrange [0:*]
set key top right
plot "{adat}" index 0 using 1:2 with lines lw 2 lc rgb "#3a6ea5" title "accepted by mockmx", \\
     "{adat}" index 0 using 1:3 with impulses lw 2 lc rgb "#c0392b" title "refused (421 TSS04)", \\
     "{adat}" index 1 using 1:2 with steps lw 2 lc rgb "#27ae60" title "sluice's rate for the pair", \\
     {ad['hidden_per_s']} with lines dt 2 lw 2 lc rgb "#555555" title "hidden limit"
"""
        pngs.append(stem + '-adapt.png')
    subprocess.run(['gnuplot'], input=gp, text=True, check=False)
    return pngs


def peer_key(sink, size):
    return f'smtp-source->{sink}' + ('' if size == 3000 else f'@{size // 1000}KB')


def job_lines(res):
    """Each job row beside the one-file-per-message row it mirrors."""
    rows = {s['name']: s for s in res['sluice']}
    out = []
    for s in res['sluice']:
        f = rows.get(s.get('files_row'))
        if not f:
            continue
        if not out:
            out.append('\njob files (one file, N rows) vs one file per message, same sink and run:')
        out.append(f"- {s['name']}: {s['msgs_per_s']:,.0f} msgs/s, {s['cpu_us_per_msg']} µs CPU/msg, "
                   f"RSS {s['peak_rss_mb']} MB; {f['name']}: {f['msgs_per_s']:,.0f} msgs/s, "
                   f"{f['cpu_us_per_msg']} µs CPU/msg -> {s['msgs_per_s'] / f['msgs_per_s']:.2f}x the rate, "
                   f"{s['cpu_us_per_msg'] / max(0.1, f['cpu_us_per_msg']):.2f}x the CPU")
    return out


def tls_memory(a, n=1000):
    """bench/tls_memory.sh: sluice's RSS holding n idle connections to a
    TLS mockmx, with and without --tls (one JSON line)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tls_memory.sh')
    try:
        r = subprocess.run(['bash', script, str(n)], capture_output=True, text=True, timeout=280,
                           env=dict(os.environ, SLUICE=a.sluice))
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - reported in the table
        return {'error': f'{type(e).__name__}: {e}'}


def tls_lines(res):
    """STARTTLS: 3KB-tls beside 3KB-tls-none (rate and CPU), handshakes
    per second per core of sluice's CPU, full and resumed, beside one
    core's openssl P-256 figures."""
    rows = {s['name']: s for s in res['sluice'] if s.get('mx_tls')}
    out = []
    if not rows:
        return out
    out.append('\nSTARTTLS (mockmx with a P-256 certificate, sluice --tls opportunistic vs --tls none, same run):')

    def both(name):  # the parts of a row (ABBA order) as one: messages / wall, CPU / messages
        ps = [s for s in res['sluice'] if s['name'] == name]
        if not ps:
            return None
        n, wall, cpu = sum(s['n'] for s in ps), sum(s['seconds'] for s in ps), sum(s['cpu_s'] for s in ps)
        mx = [s.get('mockmx') or {} for s in ps]
        return {'msgs_per_s': n / wall, 'cpu_us_per_msg': round(cpu / n * 1e6, 1), 'parts': len(ps),
                'tls_connections': sum(m.get('tls_connections') or 0 for m in mx),
                'connections': sum(m.get('connections') or 0 for m in mx),
                'note': '; '.join(sorted({s['note'] for s in ps if s.get('note')}))}
    t, p = both('3KB-tls'), both('3KB-tls-none')
    if t and p:
        out.append(f"- 3KB-tls: {t['msgs_per_s']:,.0f} msgs/s, {t['cpu_us_per_msg']} µs CPU/msg; 3KB-tls-none: "
                   f"{p['msgs_per_s']:,.0f} msgs/s, {p['cpu_us_per_msg']} µs CPU/msg ({t['parts']} + {p['parts']} runs, "
                   f"ABBA) -> {t['msgs_per_s'] / p['msgs_per_s']:.2f}x the rate (target >= 0.8x), "
                   f"{t['cpu_us_per_msg'] / max(0.1, p['cpu_us_per_msg']):.2f}x the CPU; mockmx: "
                   f"{t['tls_connections']} TLS of {t['connections']} connections"
                   + (f"; {t['note']}" if t['note'] else ''))
    base = rows.get('tls-conn1-none')
    for kind in ('full', 'resumed'):
        h = rows.get(f'tls-handshakes-{kind}')
        if not h:
            continue
        mx = h.get('mockmx') or {}
        st = h.get('sluice_tls')
        said = (f"sluice: tls connections {st['tls_connections']} ({st['full']} full, {st['resumed']} resumed)"
                if st else 'sluice printed no tls summary line')
        line = (f"- handshakes {kind} (--max-per-connection 1, {h['n']} messages): {h.get('handshakes')} done "
                f"(mockmx: {mx.get('tls_resumed')} resumed; {said}), {h.get('handshakes_per_s', 0):,.0f}/s, "
                f"{h.get('handshakes_per_core_s') or 0:,.0f} per second of sluice CPU")
        if base and h.get('handshakes') and base['n'] == h['n']:
            extra_us = (h['cpu_s'] - base['cpu_s']) / h['handshakes'] * 1e6
            if extra_us > 0:
                line += (f"; net of a connection in clear (tls-conn1-none, {base['cpu_us_per_msg']} µs/msg): "
                         f"{extra_us:,.0f} µs -> {1e6 / extra_us:,.0f} per core-second")
        out.append(line + (f"; {h['note']}" if h.get('note') else ''))
    m = res.get('tls_memory')
    if m and 'error' not in m:
        out.append(f"- idle connections ({m['connections']:,}, one shard): RSS {m['plain_rss_kb'] / 1024:.1f} MB in clear, "
                   f"{m['tls_rss_kb'] / 1024:.1f} MB with TLS -> {m['bytes_per_idle_tls_connection'] / 1024:.1f} KB more "
                   f"per idle TLS connection ({m['tls_open']} open; {m['summary']})")
    elif m:
        out.append(f"- idle connections: {m['error']}")
    sp = res['peers'].get('openssl-speed-p256', {})
    if sp.get('client_full_handshake_ceiling_per_s'):
        out.append(f"- openssl speed, one core: ECDH P-256 {sp['ecdh_p256_per_s']:,.0f}/s, ECDSA P-256 sign "
                   f"{sp['ecdsa_p256_sign_per_s']:,.0f}/s verify {sp['ecdsa_p256_verify_per_s']:,.0f}/s -> a client's "
                   f"public-key work (2 ECDH + 1 verify) caps full handshakes near "
                   f"{sp['client_full_handshake_ceiling_per_s']:,.0f}/s per core")
    return out


def parts_of(res, name):
    """The runs of a row (ABBA parts) as one: messages / wall, CPU per
    message of sluice and of the mockmx, the cores both kept busy."""
    ps = [s for s in res['sluice'] if s['name'] == name]
    if not ps:
        return None
    n, wall = sum(s['n'] for s in ps), sum(s['seconds'] for s in ps)
    cpu, mx = sum(s['cpu_s'] for s in ps), sum(s['sink_cpu_s'] for s in ps)
    th = {}
    for s in ps:
        for k, v in (s.get('threads_cpu_s') or {}).items():
            th[k] = th.get(k, 0) + v
    shard = sum(v for k, v in th.items() if k.startswith('shard'))
    return {'name': name, 'parts': len(ps), 'n': n, 'msgs_per_s': n / wall, 'cpu_us_per_msg': round(cpu / n * 1e6, 1),
            'sink_cpu_us_per_msg': round(mx / n * 1e6, 1), 'cores_busy': round((cpu + mx) / wall, 2),
            'shard_share': shard / sum(th.values()) if th else None,
            'busiest_shard_share': max((v for k, v in th.items() if k.startswith('shard')), default=0) / sum(th.values())
            if th else None}


def adapt_result(sc, log, mx_stats):
    """The AIMD row: when sluice's rate first fell below the hidden one
    (its "slow" lines), what it delivered from then on (mockmx's count per
    second of the source IP), and the series for the plot."""
    ev, first = [], None
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r.get('event') in ('slow', 'speedup', 'restore'):
                ev.append((log_ts(r['ts']), r['event'], r.get('rate') or 0))
    src = next(iter(sc['sources']))
    s = (mx_stats or {}).get('sources', {}).get(src, {})
    per_s, refused = s.get('per_second') or [], s.get('refused_per_second') or []
    hidden = sc['hidden']
    conv = next((t for t, e, rate in ev if e == 'slow' and rate < hidden), None)
    slow0 = next((t for t, e, _ in ev if e == 'slow'), None)
    busy = [i for i, n in enumerate(per_s) if n]
    out = {'hidden_per_s': hidden, 'slowdowns': sum(e == 'slow' for _, e, _ in ev), 'steps': len(ev),
           'refused_421': sum(refused), 'per_second': per_s, 'refused_per_second': refused,
           'rates': [(round(t - (slow0 or t), 3), rate) for t, e, rate in ev]}
    if conv is not None and slow0 is not None and busy:
        out['converged_s'] = round(conv - slow0, 1)
        # mockmx's seconds count from its start; sluice's first delivery is busy[0]:
        # skip the seconds up to convergence (counted from the first slow-down,
        # which comes within the first busy second or two), and the last partial one
        start = busy[0] + int(conv - slow0) + 2
        tail = per_s[start:busy[-1]]
        if tail:
            out['kept_pct'] = round(100 * sum(tail) / len(tail) / hidden)
    return out


def adapt_lines(res):
    """Adaptation: the AIMD row (rate vs a hidden limit) and what reply
    rules cost on clean traffic (ABBA, rules on vs none)."""
    out = []
    on, off = parts_of(res, '3KB-rules'), parts_of(res, '3KB-norules')
    row = next((s for s in res['sluice'] if s.get('adapt')), None)
    if not (row or (on and off)):
        return out
    out.append('\nadaptation (reply rules; a provider that answers 421 [TSS04] above a rate sluice is not told):')
    if row:
        x = row['adapt']
        out.append(f"- AIMD: hidden {x['hidden_per_s']}/s (mockmx --police-rate), sluice --max-rate {row['max_rate']}: "
                   f"{x['slowdowns']} slow-downs, {x['steps']} rate changes, {x['refused_421']} refusals; "
                   f"below the hidden rate {x.get('converged_s', '?')} s after the first slow-down, then "
                   f"{x.get('kept_pct', '?')}% of it delivered (target >= 70%); {row['n']} messages, "
                   f"{row['delivered']} delivered, exit {row['exit']}")
    if on and off:
        r = on['msgs_per_s'] / off['msgs_per_s']
        out.append(f"- 3KB with the shipped reply rules + 3 of the config's: {on['msgs_per_s']:,.0f} msgs/s, "
                   f"{on['cpu_us_per_msg']} µs CPU/msg; with none: {off['msgs_per_s']:,.0f} msgs/s, "
                   f"{off['cpu_us_per_msg']} µs CPU/msg ({on['parts']} + {off['parts']} runs, ABBA) -> "
                   f"{r:.2f}x (target >= 0.98x{'' if r >= 0.98 else ': BELOW'})")
    return out


def metrics_lines(res):
    """/metrics on (scraped twice a second) beside off, ABBA."""
    on, off = parts_of(res, '3KB-metrics'), parts_of(res, '3KB-nometrics')
    if not (on and off):
        return []
    scrapes = sum(s.get('scrapes', 0) for s in res['sluice'] if s['name'] == '3KB-metrics')
    r = on['msgs_per_s'] / off['msgs_per_s']
    return ['\nmetrics (/metrics and the control socket on, each asked every 0.5 s, beside both off):',
            f"- 3KB with metrics: {on['msgs_per_s']:,.0f} msgs/s, {on['cpu_us_per_msg']} µs CPU/msg ({scrapes} scrapes); "
            f"without: {off['msgs_per_s']:,.0f} msgs/s, {off['cpu_us_per_msg']} µs CPU/msg ({on['parts']} + "
            f"{off['parts']} runs, ABBA) -> {r:.2f}x (target >= 0.98x{'' if r >= 0.98 else ': BELOW'})"]


def suppress_lines(res):
    """The suppression list (10 million entries) beside none, ABBA; the
    report reader's speed."""
    out = []
    on, off = parts_of(res, '3KB-suppress'), parts_of(res, '3KB-nosuppress')
    if on and off:
        r = on['msgs_per_s'] / off['msgs_per_s']
        st = res.get('suppress_store', {})
        out += ['\nsuppression list (every recipient checked at claim, beside no list):',
                f"- 3KB with {st.get('entries', 0):,} entries ({st.get('mb', '?')} MB, imported in "
                f"{st.get('import_s', '?')} s): {on['msgs_per_s']:,.0f} msgs/s, {on['cpu_us_per_msg']} µs CPU/msg; "
                f"without: {off['msgs_per_s']:,.0f} msgs/s, {off['cpu_us_per_msg']} µs CPU/msg ({on['parts']} + "
                f"{off['parts']} runs, ABBA) -> {r:.2f}x (target >= 0.98x{'' if r >= 0.98 else ': BELOW'})"]
    fp = res.get('feedback_parse')
    if fp:
        out += [f"- sluice feedback parse: {fp['reports_per_s']:,.0f} reports/s ({fp['reports']} reports, "
                f"{fp['lines']} lines); Python's email parser on the same files: "
                f"{fp['python_email_reports_per_s']:,.0f} reports/s -> {fp['ratio']:.1f}x"]
    return out


def shaping_lines(res):
    """Traffic shaping: 3KB-shaped beside 3KB-unshaped (what the throttle
    costs), the rate over 1 and 2 shards with 4 source IPs and with 1 (a
    (source IP, MX group) pair lives on one shard), and the policed row:
    the rate beside R x source IPs, and the violations mockmx counted."""
    out = []
    rows = [s for s in res['sluice'] if s.get('tpl') == 'shaping']
    if not rows:
        return out
    out.append('\ntraffic shaping (one route = one MX group; limits per (source IP, MX group) pair, '
               f"each pair on one shard; spool on {rows[0]['spool_fs']}; sluice and mockmx share the machine):")
    desc = lambda x: (f"{x['msgs_per_s']:,.0f} msgs/s, {x['cpu_us_per_msg']} µs CPU/msg "
                      f"(mockmx {x['sink_cpu_us_per_msg']}), {x['cores_busy']} cores busy")
    u, sh = parts_of(res, '3KB-unshaped'), parts_of(res, '3KB-shaped')
    if u and sh:
        r = sh['msgs_per_s'] / u['msgs_per_s']
        x = next(s for s in rows if s['name'] == '3KB-shaped')
        out.append(f"- 3KB-shaped (--max-rate {x['max_rate']} --max-connections {x['conns']} --max-per-connection {x['mpc']}): "
                   f"{desc(sh)}; 3KB-unshaped: {desc(u)} ({sh['parts']} + {u['parts']} runs, ABBA) -> "
                   f"{r:.2f}x the rate (target >= 0.95x{'' if r >= 0.95 else ': BELOW'}), "
                   f"{sh['cpu_us_per_msg'] / max(0.1, u['cpu_us_per_msg']):.2f}x the CPU")
    for k, what, target in (('ips4', '4 source IPs (127.0.0.10-13)', 'target >= 1.7x'),
                            ('ips1', '1 source IP (127.0.0.10)', 'expected flat: one pair, one shard')):
        one, two = parts_of(res, f'{k}-shards1'), parts_of(res, f'{k}-shards2')
        if not (one and two):
            continue
        shares = lambda x: (f"; shard threads {x['shard_share']:.0%} of sluice's CPU (sampled), the busiest "
                            f"{x['busiest_shard_share']:.0%}" if x['shard_share'] is not None else '')
        out.append(f"- {what}: shards 1: {desc(one)}{shares(one)}; shards 2: {desc(two)}{shares(two)} ({one['parts']} + "
                   f"{two['parts']} runs, ABBA) -> shards2/shards1 {two['msgs_per_s'] / one['msgs_per_s']:.2f}x ({target})")
    for s in res['sluice']:
        if not s.get('police'):
            continue
        pl = s['police']
        per = '; '.join(f"{ip}: {v['messages']} msgs in {v['connections']} conns, max {v['max_concurrent']} "
                        f"concurrent, MAIL FROM {v['mail_per_s'] or 0:,.0f}/s" for ip, v in s.get('sources_seen', {}).items())
        vi = (s.get('mockmx_police') or {}).get('violations') or {}
        out.append(f"- policed (mockmx --police-rate {pl['rate']} --police-conns {pl['conns']} --police-per-conn "
                   f"{pl['per_conn']} per source IP; sluice with {len(s['sources'])} source IPs, --max-rate "
                   f"{s['max_rate']} --max-connections {s['conns']} --max-per-connection {s['mpc']}): "
                   f"{s['n']} messages, {s['msgs_per_s']:,.0f} msgs/s of {s['expected_msgs_per_s']:,} expected "
                   f"({s['msgs_per_s'] / s['expected_msgs_per_s']:.2f}x), {s['cpu_us_per_msg']} µs CPU/msg; "
                   f"violations {s.get('violations')} (conns {vi.get('conns')}, per-conn {vi.get('per_conn')}, "
                   f"rate {vi.get('rate')}) -> {'FAILED: ' + s['failed'] if s.get('failed') else 'ok'}"
                   + (f"\n  per source IP: {per}" if per else ''))
    return out


def spool_ops_lines(so):
    """The spoolbench section: per file, CPU (user+sys, whole process) and wall."""
    if not so:
        return []
    ok = {k: v for k, v in so.items() if 'phases' in v}
    out = ['']
    for k, v in so.items():
        if 'error' in v:
            out.append(f'spool operations on {k}: {v["error"]}')
    if not ok:
        return out
    first = next(iter(ok.values()))
    out.append(f"spool operations per file (sluice spoolbench, {first['count']} files of {first['size']} B, "
               f"{first['threads']} threads, io_uring batch {first['batch']}; µs CPU user+sys / µs wall):")
    out.append('| phase | ' + ' | '.join(f"{k} ({v['fs']}) cpu | {k} wall" for k, v in ok.items()) + ' | what |')
    out.append('|---|' + '---|---|' * len(ok) + '---|')
    for i, ph in enumerate(first['phases']):
        cells = []
        for v in ok.values():
            x = v['phases'][i]
            cells.append(f"{x['cpu_us_per_file']:.1f} | {x['wall_us_per_file']:.1f}")
        out.append(f"| {ph['name']} | " + ' | '.join(cells) + f" | {ph['what']} |")
    return out


def million_line(m):
    if m.get('first_delivery_ms') is None:
        return f"\nmillion-row job: {m.get('error', 'no delivery')}"
    return (f"\nmillion-row job ({m['rows']:,} rows of ~3 KB, {m['job_file_mb']} MB file on {m['spool_fs']}, renamed "
            f"into an idle daemon's new/): first delivery {m['first_delivery_ms']} ms after the rename, "
            f"{m['delivered']:,} delivered by {m['last_final_s']} s ({m.get('msgs_per_s', 0):,.0f} msgs/s), "
            f"peak RSS {m['peak_rss_mb']} MB, {m['cpu_us_per_msg']} µs CPU/msg"
            + (f"; {m['error']}" if m.get('error') else ''))


def table(res):
    peers = res['peers']
    lines = ['| scenario | msgs | msgs/s | peer msgs/s | ratio | MB/s | sluice cpu µs/msg | peer cpu µs/msg | sink cpu s | RSS MB | p50/p99 ms | deferred |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    speed = peers.get('openssl-speed', {})
    for s in res['sluice']:
        peer = peers.get(peer_key(s['sink'], s['size']), {})
        p = peer.get('msgs_per_s')
        pc = peer.get('sender_cpu_us_per_msg', '-')
        if s.get('vs'):  # the same run without the capability, measured in this session
            p = next((x['msgs_per_s'] for x in res['sluice'] if x['name'] == s['vs'] and x.get('part') == s.get('part')), None)
        if s.get('dkim'):  # the ceiling: one core's openssl sign/s x shards
            one = speed.get(f"{'rsa2048' if s['dkim'] == 'rsa' else 'ed25519'}_sign_per_s")
            p = one * s['shards'] if one else None
        if s.get('expected_msgs_per_s'):  # policed: the rate allowed, R x source IPs
            p = s['expected_msgs_per_s']
        ratio = f"{s['msgs_per_s'] / p:.2f}x" if p else '-'
        srcs = f", {len(s['sources'])} source IP{'s' if len(s['sources']) > 1 else ''}" if s.get('sources') else ''
        lines.append(f"| {s['name']}{' #' + str(s['part']) if s.get('part') else ''} ({s['sink']}, {s['shards']} shards, {s['domains']} domains, {s['conns']} conns"
                     f"{', peer: openssl sign/s x shards' if s.get('dkim') else ''}"
                     f"{srcs}{', peer: the police rate x source IPs' if s.get('expected_msgs_per_s') else ''}) "
                     f"| {s['n']} | {s['msgs_per_s']:,.0f} | {p:,.0f} | {ratio} | {s['mb_per_s']} | {s['cpu_us_per_msg']} "
                     f"| {pc if not s.get('dkim') and not s.get('vs') and not s.get('expected_msgs_per_s') else '-'} | {s['sink_cpu_s']} | {s['peak_rss_mb']} | {s['latency_ms_p50']}/{s['latency_ms_p99']} | {s['deferred']} |"
                     if p else
                     f"| {s['name']}{' #' + str(s['part']) if s.get('part') else ''} | {s['n']} | {s['msgs_per_s']:,.0f} | - | - | {s['mb_per_s']} | {s['cpu_us_per_msg']} "
                     f"| - | {s['sink_cpu_s']} | {s['peak_rss_mb']} | {s['latency_ms_p50']}/{s['latency_ms_p99']} | {s['deferred']} |")
    lines.append('')
    lines.append('| peer | msgs | msgs/s | cpu | note |')
    lines.append('|---|---|---|---|---|')
    for k, v in peers.items():
        if 'error' in v:
            lines.append(f'| {k} | - | - | - | {v["error"]} |')
        elif 'msgs_per_s' in v:
            lines.append(f"| {k} | {v['messages']} | {v['msgs_per_s']:,.0f} | {v.get('cpu', '-')} | {v.get('note', '')} |")
        else:
            lines.append(f"| {k} | - | - | - | " + ', '.join(f'{x} {y:,.0f}/s' for x, y in v.items()) + ' |')
    dn = res.get('dns')
    if dn:
        lines.append(f"\nDNS cold cache, {dn['names']} domains on local NSD: sluice resolve MX {dn['sluice_mx_per_s']:,.0f}/s, "
                     f"MX plan (MX + A) {dn['sluice_plan_per_s']:,.0f}/s; drill in a loop ({dn['drill_loop_names']} names) "
                     f"{dn['drill_loop_per_s']:,.0f}/s -> {dn['sluice_mx_per_s'] / dn['drill_loop_per_s']:.1f}x the floor")
    dl = res.get('daemon_latency')
    if dl:
        lines.append(f"\ndaemon pick-up latency (file renamed into new/ -> 250 from mockmx, idle daemon, "
                     f"{dl['delivered']}/{dl['drops']} drops): p50 {dl['p50_ms']} ms, p99 {dl['p99_ms']} ms, "
                     f"max {dl['max_ms']} ms")
    lines += job_lines(res)
    lines += tls_lines(res)
    lines += shaping_lines(res)
    lines += adapt_lines(res)
    lines += metrics_lines(res)
    lines += suppress_lines(res)
    lines += spool_ops_lines(res.get('spool_ops'))
    mj = res.get('million')
    if mj:
        lines.append(million_line(mj))
    head = res['sluice'][0] if res['sluice'] else None
    pf = peers.get('postfix-from-queue->mockmx', {})
    if head and pf.get('msgs_per_s'):
        lines.append(f"\nsluice {head['name']} / Postfix from its queue: {head['msgs_per_s'] / pf['msgs_per_s']:.1f}x")
    for n in res.get('notes', []):
        lines.append(f'\nnote: {n}')
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(prog='sluice bench', description=__doc__.split('\n\n')[0])
    ap.add_argument('--sluice', default=os.path.join(os.path.dirname(HERE), 'sluice'), help='the sluice binary')
    ap.add_argument('--quick', action='store_true', help='a small matrix, under a minute on 2 cores')
    ap.add_argument('--messages', type=int, help='messages in the headline 3 KB scenario (default 200000; quick 20000)')
    ap.add_argument('--peer-messages', type=int, help='messages smtp-source sends (default 100000; quick 20000)')
    ap.add_argument('--postfix-messages', type=int, help='messages through the throwaway Postfix (default 5000; quick 500)')
    ap.add_argument('--shards', type=int, help='shards for the headline scenarios (default: online CPUs)')
    ap.add_argument('--only', help='comma-separated scenario names to run (also: spool-ops, million; job rows: job-3KB, '
                    'job-3KB-smtp-sink; TLS rows: 3KB-tls, 3KB-tls-none (each run twice), tls-conn1-none, '
                    'tls-handshakes-full, tls-handshakes-resumed, or tls for all of them; shaping rows: '
                    '3KB-unshaped, 3KB-shaped (each run 4 times), ips4-shards1, ips4-shards2, ips1-shards1, '
                    'ips1-shards2 (each run twice), policed, or shaping for all of them; adaptation rows: '
                    'adapt-aimd, 3KB-rules, 3KB-norules (each run 4 times), or adapt for all of them; '
                    '3KB-metrics, 3KB-nometrics, or metrics for both; 3KB-suppress, 3KB-nosuppress, or suppress '
                    'for both and the report reader\'s speed)')
    ap.add_argument('--suppress-entries', type=int, default=10000000,
                    help='entries of the suppression list of the suppress rows (default 10,000,000)')
    ap.add_argument('--parse-reports', type=int, default=20000, help='reports the report reader reads (default 20000)')
    ap.add_argument('--no-peers', action='store_true', help='skip the peers (then no ratios)')
    ap.add_argument('--no-postfix', action='store_true', help='skip the Postfix-from-queue peer')
    ap.add_argument('--no-latency', action='store_true', help='skip the daemon pick-up latency measurement')
    ap.add_argument('--spool-dir', help='where spools are generated (default: a temp dir, the shaping rows /dev/shm; try /dev/shm)')
    ap.add_argument('--results', default=os.path.join(HERE, 'results'), help='output folder')
    ap.add_argument('--max-run-time', type=int, default=300, help='bound on each sluice run, seconds')
    ap.add_argument('--no-dns', action='store_true', help='skip the DNS resolution measurement')
    ap.add_argument('--no-spool-ops', action='store_true', help='skip the spool operations (sluice spoolbench)')
    ap.add_argument('--spoolbench-count', type=int,
                    help='files per spoolbench phase (default 5000; quick 2000): on a disk mounted with discard '
                         'the removal of each synced file waits for the device')
    ap.add_argument('--spoolbench-dir', default='/var/tmp', help='the disk directory for spoolbench (default /var/tmp)')
    ap.add_argument('--million', action='store_true', help='also the million-row job check (about a minute on 2 cores; not by default)')
    ap.add_argument('--million-rows', type=int, default=1000000, help='rows of the --million job (default 1000000)')
    a = ap.parse_args()
    only = set(a.only.split(',')) if a.only else None
    run_spool_ops = not a.no_spool_ops and (only is None or 'spool-ops' in only)
    run_million = a.million or (only is not None and 'million' in only)
    a.jobs = has_jobs(a.sluice)
    if not a.jobs:
        say('this sluice has no job files (spoolgen --job): the job rows are left out')
    cores = os.cpu_count() or 1
    if a.shards:
        cores = a.shards
    a.cores = cores
    q = a.quick
    peer_n = a.peer_messages or (20000 if q else 100000)
    pf_n = a.postfix_messages or (500 if q else 5000)
    model = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
    res = {'timestamp': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
           'machine': {'cpus': os.cpu_count(), 'model': model, 'kernel': platform.release()},
           'peers': {}, 'sluice': []}
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix='sluice-bench.')
    os.chmod(work, 0o755)
    a.notes = []
    a.templates, a.shm_dir = {}, None
    a.tls, a.tls_why = tls_support(a.sluice, work)
    if not a.tls:
        say(f'this sluice refuses --tls opportunistic ({a.tls_why}): the TLS rows are left out')
    mx = MockMX(a.sluice)
    sink = SmtpSink()
    a.nsd = Nsd(work, 5000)
    try:
        if not a.no_peers:
            say('openssl speed rsa2048 ed25519 (one core)')
            res['peers']['openssl-speed'] = openssl_speed(1 if q else 3)
            for name, s, size, n in (('mockmx', mx, 3000, peer_n), ('smtp-sink', sink, 3000, peer_n),
                                     ('mockmx', mx, 100000, max(500, peer_n // 20))):
                say(f'smtp-source -d -s 20 -l {size} -m {n} -> {name}')
                c0 = s.cpu()
                wall, cpu = smtp_source(s.port, n, size)
                res['peers'][peer_key(name, size)] = {
                    'messages': n, 'seconds': round(wall, 3), 'msgs_per_s': round(n / wall, 1),
                    'cpu': f'{cpu:.2f}s + sink {s.cpu() - c0:.2f}s',
                    'sender_cpu_s': round(cpu, 2), 'sink_cpu_s': round(s.cpu() - c0, 2),
                    'sender_cpu_us_per_msg': round(cpu / n * 1e6, 1),
                    'note': 'no pipelining, connection reuse'}
            if not a.no_postfix:
                say(f'Postfix delivering {pf_n} messages from its own queue -> mockmx')
                r = postfix_from_queue(mx.port, pf_n, 3000, work)
                r['note'] = 'throwaway instance, concurrency 20, relayhost = mockmx'
                res['peers']['postfix-from-queue->mockmx'] = r
        if not a.no_dns:
            say('DNS: cold-cache resolutions of 5,000 domains, sluice resolve vs drill in a loop')
            res['dns'] = dns_resolutions(a, a.nsd)
        if run_spool_ops:
            res['spool_ops'] = spool_ops(a)
        sinks = {'mockmx': mx, 'smtp-sink': sink}
        scs = scenarios(a, cores)
        if any(sc.get('mpc') and sc.get('mx_tls') and sc.get('tls') != 'none' for sc in scs):
            say('openssl speed ecdhp256 ecdsap256 (one core)')
            res['peers']['openssl-speed-p256'] = openssl_speed_p256(1)
        if any(sc['name'] == '3KB-suppress' for sc in scs):
            suppression_store(a, work)  # before the first of its ABBA rows, with or without the list
        for sc in scs:
            res['sluice'].append(sluice_scenario(a, sc, sinks, work))
        if any(sc.get('mx_tls') and sc.get('tls') != 'none' for sc in scs):
            say('bytes per idle TLS connection: sluice RSS with 1,000 idle TLS vs 1,000 plaintext connections')
            res['tls_memory'] = tls_memory(a)
        if not a.no_latency:
            n = 30 if q else 100
            say(f'daemon latency: {n} files dropped one by one into an idle daemon\'s new/')
            res['daemon_latency'] = daemon_latency(a, mx, work, n)
        if run_million:
            res['million'] = million_job(a, mx, work)
        if getattr(a, 'suppress_import_s', None) is not None:
            res['suppress_store'] = {'entries': a.suppress_entries, 'import_s': a.suppress_import_s,
                                     'mb': a.suppress_store_mb}
        if only is None or 'suppress' in only:
            say(f'sluice feedback parse: {a.parse_reports} reports, beside Python\'s email parser')
            res['feedback_parse'] = feedback_parse_rate(a, work)
    finally:
        res['mockmx_totals'] = mx.stop()
        sink.stop()
        a.nsd.stop()
        for tpl, _ in a.templates.values():  # under --spool-dir, outside work
            shutil.rmtree(tpl, ignore_errors=True)
        if a.shm_dir:
            shutil.rmtree(a.shm_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    res['notes'] = a.notes
    res['seconds_total'] = round(time.monotonic() - started, 1)
    os.makedirs(a.results, exist_ok=True)
    stem = os.path.join(a.results, res['timestamp'].replace(':', ''))
    res['plots'] = plots(res, stem)
    json.dump(res, open(stem + '.json', 'w'), indent=1)
    t = table(res)
    open(stem + '.md', 'w').write(f"{res['machine']['cpus']} CPUs, {model}, kernel {platform.release()}, "
                                  f"{res['timestamp']}\n\n{t}\n")
    if TTY:
        print('\r\033[K', end='', file=sys.stderr)
    print(f"\nsluice bench - {res['machine']['cpus']} CPUs, {model}, {res['timestamp']}\n")
    print(t)
    print(f"\nresults: {stem}.json, {stem}.md" + ''.join(f', {p}' for p in res['plots']))
    print(f"total {res['seconds_total']} s")
    bad = [s['name'] + (f" ({s['failed']})" if s.get('failed') else '') for s in res['sluice']
           if s['exit'] != 0 or s['errors'] or s.get('failed')]
    bad += [f'spool-ops ({k})' for k, v in res.get('spool_ops', {}).items() if 'error' in v or v.get('exit')]
    bad += ['million'] if res.get('million', {}).get('error') else []
    if bad:
        print(f'scenarios with errors: {", ".join(bad)}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
