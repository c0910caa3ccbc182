#!/usr/bin/env python3
"""tests/check_bodies.py ORIG_SPOOL_NEW CAPTURE_DIR mockmx|smtp-sink

Checks that every message captured by the server is byte-identical to the
spool input after its envelope lines (CRLF-normalised, as SMTP requires),
and that its envelope (sender, recipients) matches. Messages are matched
by Message-ID. mockmx stores the exact bytes it received (dot-stuffing
undone); smtp-sink's dump turns CRLF into LF and adds its own X- lines, a
Received: header and one empty line at the end."""
import os, re, sys

ENV = re.compile(rb'^(x-sender|x-receiver|x-job|x-pool):', re.I)

def split_envelope(data):
    env, pos = {'sender': None, 'rcpts': []}, 0
    while pos < len(data):
        nl = data.find(b'\n', pos)
        line = data[pos:nl if nl >= 0 else len(data)]
        if not ENV.match(line):
            break
        name, _, val = line.rstrip(b'\r').partition(b':')
        val = val.strip()
        if val.startswith(b'<') and val.endswith(b'>'):
            val = val[1:-1]
        if name.lower() == b'x-sender':
            env['sender'] = val
        elif name.lower() == b'x-receiver':
            env['rcpts'].append(val)
        pos = nl + 1
    return env, data[pos:]

def crlf(b):
    b = b.replace(b'\r\n', b'\n').replace(b'\r', b'\n').replace(b'\n', b'\r\n')
    return b if b.endswith(b'\r\n') else b + b'\r\n'

def msgid(body):
    m = re.search(rb'^Message-ID:\s*(<[^>]*>)', body, re.I | re.M)
    return m.group(1) if m else None

def parse_sink(data):
    env, lines, i = {'sender': None, 'rcpts': []}, data.split(b'\n'), 0
    while i < len(lines) and lines[i].startswith(b'X-'):
        k, _, v = lines[i].partition(b': ')
        if k == b'X-Mail-Args':
            env['sender'] = v.split(b' ')[0].strip(b'<>')
        elif k == b'X-Rcpt-Args':
            env['rcpts'].append(v.split(b' ')[0].strip(b'<>'))
        i += 1
    if i < len(lines) and lines[i].startswith(b'Received:'):
        i += 1
        while i < len(lines) and lines[i][:1] in (b' ', b'\t'):
            i += 1
    body = b'\n'.join(lines[i:])
    assert body.endswith(b'\n\n'), 'smtp-sink dump should end with an empty line'
    return env, body[:-1]

def main():
    orig_dir, cap_dir, kind = sys.argv[1:4]
    want = {}
    for name in os.listdir(orig_dir):
        env, body = split_envelope(open(os.path.join(orig_dir, name), 'rb').read())
        want[msgid(body)] = (env, crlf(body))
    seen, errors = {}, []
    for name in sorted(os.listdir(cap_dir)):
        data = open(os.path.join(cap_dir, name), 'rb').read()
        if kind == 'mockmx':
            env, body = split_envelope(data)
        else:
            env, body = parse_sink(data)
        mid = msgid(body)
        if mid not in want:
            errors.append(f'{name}: unknown Message-ID {mid!r}')
            continue
        wenv, wbody = want[mid]
        if kind != 'mockmx':
            wbody = wbody.replace(b'\r\n', b'\n')
        if body != wbody:
            errors.append(f'{name}: body differs from spool input {mid!r}')
        if env['sender'] != wenv['sender']:
            errors.append(f'{name}: sender {env["sender"]!r} != {wenv["sender"]!r}')
        seen.setdefault(mid, []).extend(env['rcpts'])
    for mid, (wenv, _) in want.items():
        got = sorted(seen.get(mid, []))
        if sorted(set(got)) != sorted(set(wenv['rcpts'])):
            errors.append(f'{mid!r}: recipients {got} != {sorted(wenv["rcpts"])}')
    for e in errors[:10]:
        print('  ' + e)
    print(f'check_bodies: {len(want)} messages in the spool, {sum(1 for _ in os.listdir(cap_dir))} captured, {len(errors)} problems')
    sys.exit(1 if errors else 0)

main()
