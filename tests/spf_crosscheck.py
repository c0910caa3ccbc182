#!/usr/bin/env python3
"""tests/spf_crosscheck.py NSD_PORT SLUICE CASES... - every SPF verdict of
sluice's RFC 7208 check_host() (`sluice doctor --check-spf`) next to the
expected result and to pyspf's, an implementation sluice shares nothing with.
Both ask the same NSD on 127.0.0.1:NSD_PORT; nothing else is contacted.

CASES: files of one case a line (see tests/fixtures/spf/cases.txt):
    NAME IP SENDER HELO EXPECTED SPEC [pyspf=RESULT REASON...]
The trailing pyspf=RESULT marks a known pyspf divergence from RFC 7208: then
pyspf may give RESULT instead of EXPECTED (the reason is printed).

Prints a table (case, expected, sluice, pyspf, the lookups and void lookups
each counted) and exits 1 when sluice differs from the expected result, when
pyspf does (outside the marked divergences), when sluice's answer is not the
one JSON line of the contract, or when a case file is malformed.
SLUICE "-" runs pyspf alone (to check the fixtures without sluice).
Needs Debian's python3-spf (pyspf 2.0.14, dnspython): run /usr/bin/python3."""
import json
import subprocess
import sys

import dns.resolver
import spf

RESULTS = ('pass', 'fail', 'softfail', 'neutral', 'none', 'permerror', 'temperror')
SLUICE_TIMEOUT = 30   # seconds for one `sluice doctor --check-spf`
PYSPF_TIME = 10       # pyspf's budget for all the lookups of one case


def point_pyspf_at(port):
    """pyspf 2.0.14 (with dnspython present) looks names up with
    spf.DNSLookup = DNSLookup_dnspython, which calls the module-level
    dns.resolver.query(name, qtype, lifetime=...): that asks
    dns.resolver.get_default_resolver(). Installing our own Resolver as the
    default one (configure=False: /etc/resolv.conf is never read) sends every
    pyspf query to NSD, and only there; no cache, so each case starts cold."""
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ['127.0.0.1']
    r.port = port
    r.timeout = 2
    r.lifetime = 5
    r.cache = None
    dns.resolver.default_resolver = r


def read_cases(paths):
    cases, errors = [], []
    for path in paths:
        with open(path, encoding='utf-8') as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith('#'):
                    continue
                t = line.split()
                where = '%s:%d' % (path, n)
                if len(t) < 6 or t[4] not in RESULTS:
                    errors.append('%s: want NAME IP SENDER HELO EXPECTED SPEC: %s' % (where, line))
                    continue
                c = dict(name=t[0], ip=t[1], sender=t[2], helo=t[3], expected=t[4],
                         spec=t[5], pyspf_alt=None, reason='', where=where)
                if len(t) > 6:
                    alt = t[6].partition('=')
                    if alt[0] != 'pyspf' or alt[2] not in RESULTS or len(t) < 8:
                        errors.append('%s: after SPEC only "pyspf=RESULT REASON..."' % where)
                        continue
                    c['pyspf_alt'], c['reason'] = alt[2], ' '.join(t[7:])
                cases.append(c)
    names = [c['name'] for c in cases]
    errors += ['duplicate case name %s' % x for x in sorted({x for x in names if names.count(x) > 1})]
    return cases, errors


def sender_domain(sender):
    return sender.rpartition('@')[2].rstrip('.').lower()


def run_pyspf(c):
    try:
        q = spf.query(i=c['ip'], s=c['sender'], h=c['helo'], querytime=PYSPF_TIME)
        res = q.check()[0]
        return res, q.lookups, q.void_lookups
    except Exception as e:  # pyspf's check() catches its own errors; this is a crash
        return 'crash: %s' % e, '-', '-'


def run_sluice(sluice, port, c):
    """Returns (result, lookups, void_lookups, problem or None)."""
    cmd = [sluice, 'doctor', '--check-spf', c['ip'], '--mail-from', c['sender'],
           '--helo', c['helo'], '--dns-server', '127.0.0.1:%d' % port]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=SLUICE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return 'timeout', '-', '-', 'no answer within %d s' % SLUICE_TIMEOUT
    if 'AddressSanitizer' in p.stderr or 'runtime error:' in p.stderr:
        return 'sanitizer', '-', '-', 'sanitizer report: %s' % p.stderr.strip()[-2000:]
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or len(lines) != 1:
        return 'error', '-', '-', 'exit %d, %d stdout lines: %s %s' % (
            p.returncode, len(lines), p.stdout.strip()[:300], p.stderr.strip()[:300])
    try:
        j = json.loads(lines[0])
    except ValueError:
        return 'error', '-', '-', 'not JSON: %s' % lines[0][:300]
    if not isinstance(j, dict):
        return 'error', '-', '-', 'not a JSON object: %s' % lines[0][:300]
    res, lk, vd = j.get('result'), j.get('lookups'), j.get('void_lookups')
    bad = []
    if res not in RESULTS:
        bad.append('result %r' % (res,))
    for k in ('lookups', 'void_lookups'):
        if not isinstance(j.get(k), int) or isinstance(j.get(k), bool):
            bad.append('%s %r' % (k, j.get(k)))
    senders = (c['sender'], c['sender'] if '@' in c['sender'] else 'postmaster@' + c['sender'])
    if j.get('ip') is None or j.get('sender') not in senders:
        bad.append('ip/sender %r/%r' % (j.get('ip'), j.get('sender')))
    if str(j.get('domain', '')).rstrip('.').lower() != sender_domain(c['sender']):
        bad.append('domain %r' % (j.get('domain'),))
    if not isinstance(j.get('detail'), str):
        bad.append('detail %r' % (j.get('detail'),))
    if bad:
        return str(res), lk, vd, 'contract: ' + ', '.join(bad) + ' in ' + lines[0][:300]
    return res, lk, vd, None


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    port, sluice = int(sys.argv[1]), sys.argv[2]
    cases, errors = read_cases(sys.argv[3:])
    if errors:
        print('\n'.join(errors), file=sys.stderr)
        return 1
    point_pyspf_at(port)
    use_sluice = sluice != '-'
    fmt = '%-22s %-10s %-10s %-10s %9s %9s  %s'
    print(fmt % ('case', 'expected', 'sluice', 'pyspf', 'sl lk/vd', 'py lk/vd', ''))
    failures, diverged, problems, count_notes = [], [], [], 0
    n_sluice = n_pyspf = timeouts = 0
    for c in cases:
        py, plk, pvd = run_pyspf(c)
        if use_sluice and timeouts >= 3:
            sl, slk, svd, problem = 'skipped', '-', '-', 'not run: 3 cases timed out already'
        elif use_sluice:
            sl, slk, svd, problem = run_sluice(sluice, port, c)
            timeouts += sl == 'timeout'
        else:
            sl, slk, svd, problem = '-', '-', '-', None
        marks = []
        wrong = False
        if use_sluice and (sl != c['expected'] or problem):
            marks.append('SLUICE')
            wrong = True
            n_sluice += 1
            if problem:
                problems.append('%s: %s' % (c['name'], problem))
        if py != c['expected']:
            if c['pyspf_alt'] == py:
                marks.append('pyspf known: ' + c['reason'])
                diverged.append(c)
            else:
                marks.append('PYSPF')
                wrong = True
                n_pyspf += 1
        elif c['pyspf_alt']:
            marks.append('note: pyspf now gives the expected result; marker can go')
        if wrong:
            failures.append(c)
        # The lookup counts are reported, not judged: the RFC fixes the
        # limits, not how a partial count is reported on error.
        if use_sluice and (slk, svd) != (plk, pvd) and not problem:
            marks.append('(counts differ)')
            count_notes += 1
        if use_sluice and not problem and sl not in ('permerror', 'temperror') and \
                isinstance(slk, int) and (slk > 10 or svd > 2):
            marks.append('(over a 4.6.4 limit without permerror)')
        print(fmt % (c['name'], c['expected'], sl, py, '%s/%s' % (slk, svd),
                     '%s/%s' % (plk, pvd), ' '.join(marks)))
    for p in problems:
        print('  ' + p)
    for c in failures:
        print('MISMATCH %s (%s, %s): ip %s sender %s helo %s: expected %s' % (
            c['name'], c['spec'], c['where'], c['ip'], c['sender'], c['helo'], c['expected']))
    who = 'sluice = pyspf = expected' if use_sluice else 'pyspf = expected (sluice not run)'
    extra = ''
    if diverged:
        extra += ', %d known pyspf divergences' % len(diverged)
    if count_notes:
        extra += ', %d with other lookup counts than pyspf' % count_notes
    if failures:
        print('SUMMARY: %d of %d cases not as expected (sluice wrong in %d, pyspf in %d)' % (
            len(failures), len(cases), n_sluice, n_pyspf))
        return 1
    print('SUMMARY: %d cases: %s%s' % (len(cases), who, extra))
    return 0


if __name__ == '__main__':
    sys.exit(main())
