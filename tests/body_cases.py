#!/usr/bin/env python3
"""tests/body_cases.py - the messages of tests/integration/body_exact.sh.

  body_cases.py gen DIR
      writes DIR/in/CASE.msg (the message as a producer hands it to `sluice
      inject`, no envelope) and DIR/want/CASE.eml (the bytes the server must
      receive as message content: the CRLF normalisation documented in
      engine/lib/envelope.c crlf_normalise, i.e. CRLF stays, every bare LF
      and every bare CR becomes CRLF, and a CRLF is added at the end when
      the message does not end in one; for DATA this is what remains after
      the server undoes dot-stuffing). The expected bytes are written out
      literally per case where that is practical, and computed by an
      independent regex for the generated 10 MB message.

  body_cases.py strip KIND CAPDIR OUTDIR
      KIND is mockmx (a --store file: "X-Sender: <..>" and "X-Receiver: <..>"
      lines, LF-terminated, then the content exactly as received) or
      smtp-sink (a -d dump: its X-* lines, a three-line Received: header,
      the content with every CRLF turned into LF, then one empty line).
      Removes what the peer added and writes the rest to OUTDIR/CASE.eml,
      CASE taken from the recipient's local part (CASE@body.example).
      smtp-sink's dumps are turned back to CRLF (lossy: the dump cannot
      tell CRLF from a bare LF on the wire; mockmx's capture can).
      Exits 1 on a capture it cannot parse or a case captured twice.
"""
import os, re, sys

CASES = {}

# Already CRLF everywhere.
CASES['crlf'] = (
    b'From: <sender@body.example>\r\nTo: <crlf@body.example>\r\nSubject: crlf\r\n\r\n'
    b'line one\r\nline two\r\n\r\nlast line\r\n',
    b'From: <sender@body.example>\r\nTo: <crlf@body.example>\r\nSubject: crlf\r\n\r\n'
    b'line one\r\nline two\r\n\r\nlast line\r\n')

# LF only: every LF becomes CRLF.
CASES['lf'] = (
    b'From: <sender@body.example>\nTo: <lf@body.example>\nSubject: lf\n\n'
    b'line one\nline two\n\n\nlast line\n',
    b'From: <sender@body.example>\r\nTo: <lf@body.example>\r\nSubject: lf\r\n\r\n'
    b'line one\r\nline two\r\n\r\n\r\nlast line\r\n')

# Mixed: CRLF, bare LF, a bare CR inside a line, CR CR LF (a bare CR and a
# CRLF: two line breaks), LF CR (two breaks), a bare CR ending the file.
CASES['mixed'] = (
    b'From: <sender@body.example>\r\nTo: <mixed@body.example>\nSubject: mixed\r\n\n'
    b'crlf line\r\nlf line\nbare\rcr inside\r\ncr cr lf\r\r\nlf cr\n\rend with cr\r',
    b'From: <sender@body.example>\r\nTo: <mixed@body.example>\r\nSubject: mixed\r\n\r\n'
    b'crlf line\r\nlf line\r\nbare\r\ncr inside\r\ncr cr lf\r\n\r\nlf cr\r\n\r\nend with cr\r\n')

# Dots: the first body line starts with ".", a line that is only ".",
# "..", "...", ". x", a dot after a bare LF, and the last line is ".".
CASES['dots'] = (
    b'From: <sender@body.example>\nTo: <dots@body.example>\nSubject: dots\n\n'
    b'.first body line starts with a dot\n.\n..\n...\n. x\nmiddle . dot\n'
    b'.\r\nafter crlf\n.lf dot\r\ncr then dot\r.after bare cr\n.\n',
    b'From: <sender@body.example>\r\nTo: <dots@body.example>\r\nSubject: dots\r\n\r\n'
    b'.first body line starts with a dot\r\n.\r\n..\r\n...\r\n. x\r\nmiddle . dot\r\n'
    b'.\r\nafter crlf\r\n.lf dot\r\ncr then dot\r\n.after bare cr\r\n.\r\n')

# The message content itself starts with "." (no header at all), and it
# ends in "." without a newline.
CASES['dotfirst'] = (
    b'.the very first line starts with a dot\n..\nlast line is a dot without newline:\n.',
    b'.the very first line starts with a dot\r\n..\r\nlast line is a dot without newline:\r\n.\r\n')

# No final newline.
CASES['nofinal'] = (
    b'From: <sender@body.example>\nTo: <nofinal@body.example>\nSubject: nofinal\n\n'
    b'first\nno newline at the end',
    b'From: <sender@body.example>\r\nTo: <nofinal@body.example>\r\nSubject: nofinal\r\n\r\n'
    b'first\r\nno newline at the end\r\n')

# Headers only, the last one without a newline.
CASES['headeronly'] = (
    b'From: <sender@body.example>\nSubject: headers only',
    b'From: <sender@body.example>\r\nSubject: headers only\r\n')

# 8-bit: every byte 0x80-0xff (in lines of 32), UTF-8 text, a line
# starting with a high byte, 0x7f and tabs.
_hi = bytes(range(0x80, 0x100))
_8bit_body = b''.join(_hi[i:i + 32] + b'\n' for i in range(0, 128, 32))
CASES['eightbit'] = (
    b'From: <sender@body.example>\nTo: <eightbit@body.example>\nSubject: =?utf-8?q?8bit?=\n'
    b'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n'
    + _8bit_body + 'Grüße, Jörg — ünïcödé ✓\n'.encode() + b'\xff\xfe starts high\n\x7f\tdel tab\n',
    b'From: <sender@body.example>\r\nTo: <eightbit@body.example>\r\nSubject: =?utf-8?q?8bit?=\r\n'
    b'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
    + _8bit_body.replace(b'\n', b'\r\n') + 'Grüße, Jörg — ünïcödé ✓\r\n'.encode()
    + b'\xff\xfe starts high\r\n\x7f\tdel tab\r\n')


def big():
    """About 10 MB: lines of 1..998 bytes, LF, CRLF and bare-CR endings,
    dot lines, 8-bit bytes; no newline at the end."""
    out = [b'From: <sender@body.example>\nTo: <big@body.example>\nSubject: big\n\n']
    size, i = 0, 0
    ends = (b'\n', b'\r\n', b'\n', b'\r')
    while size < 10 * 1024 * 1024:
        n = (i * 7919) % 998 + 1
        fill = (b'%08d ' % i + b'abcdefghijklmnopqrstuvwxyz0123456789 \xc3\xa9\xe2\x82\xac' * 30)[:n]
        if i % 11 == 0:
            fill = b'.' + fill[1:]
        if i % 97 == 0:
            fill = b'.'
        if i % 101 == 0:
            fill = b'..'
        line = fill + ends[i % 4]
        out.append(line)
        size += len(line)
        i += 1
    raw = b''.join(out) + b'the end, no newline'
    want = re.sub(rb'\r\n|\r|\n', b'\r\n', raw)
    if not want.endswith(b'\r\n'):
        want += b'\r\n'
    return raw, want


def gen(d):
    os.makedirs(os.path.join(d, 'in'), exist_ok=True)
    os.makedirs(os.path.join(d, 'want'), exist_ok=True)
    cases = dict(CASES)
    cases['big'] = big()
    for name, (raw, want) in cases.items():
        # The literal expectations above must agree with the rule.
        rule = re.sub(rb'\r\n|\r|\n', b'\r\n', raw)
        rule += b'' if rule.endswith(b'\r\n') else b'\r\n'
        assert rule == want, f'{name}: the literal expectation disagrees with the rule'
        with open(os.path.join(d, 'in', name + '.msg'), 'wb') as f:
            f.write(raw)
        with open(os.path.join(d, 'want', name + '.eml'), 'wb') as f:
            f.write(want)
    print(' '.join(cases))


def strip(kind, cap, outdir):
    os.makedirs(outdir, exist_ok=True)
    seen, bad = set(), 0
    for fname in sorted(os.listdir(cap)):
        data = open(os.path.join(cap, fname), 'rb').read()
        rcpts, pos = [], 0
        if kind == 'mockmx':
            while True:
                m = re.match(rb'X-(Sender|Receiver): <([^>\n]*)>\n', data[pos:])
                if not m:
                    break
                if m.group(1) == b'Receiver':
                    rcpts.append(m.group(2))
                pos += m.end()
            content = data[pos:]
        else:
            while True:
                m = re.match(rb'X-[A-Za-z-]+: ([^\n]*)\n', data[pos:])
                if not m:
                    break
                if data[pos:].startswith(b'X-Rcpt-Args: '):
                    rcpts.append(m.group(1).split(b' ')[0].strip(b'<>'))
                pos += m.end()
            m = re.match(rb'Received: [^\n]*\n(?:[ \t][^\n]*\n)*', data[pos:])
            if not m or not data.endswith(b'\n\n'):
                print(f'  {fname}: not an smtp-sink dump as expected')
                bad += 1
                continue
            content = data[pos + m.end():-1].replace(b'\n', b'\r\n')
        names = {r.split(b'@')[0].decode() for r in rcpts if r.endswith(b'@body.example')}
        if len(names) != 1:
            print(f'  {fname}: recipients {rcpts!r} do not name one case')
            bad += 1
            continue
        name = names.pop()
        if name in seen:
            print(f'  {fname}: case {name} captured twice')
            bad += 1
        seen.add(name)
        with open(os.path.join(outdir, name + '.eml'), 'wb') as f:
            f.write(content)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'gen':
        gen(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == 'strip' and sys.argv[2] in ('mockmx', 'smtp-sink'):
        strip(*sys.argv[2:])
    else:
        sys.exit(__doc__)
