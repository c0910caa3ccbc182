#!/usr/bin/python3
# tests/dkim_verify.py RECORDS FILE... - checks every DKIM-Signature of each
# message captured by mockmx with python3-dkim (an independent verifier),
# the public keys given as "selector|domain|record-file,..." instead of DNS.
# Prints one line per message; exit 1 if any signature fails or is missing.
# --expect-fail: exit 0 only if every message fails (tampered copies).
import re
import sys

import dkim

args = sys.argv[1:]
expect_fail = args[0] == '--expect-fail'
if expect_fail:
    args = args[1:]
records = {}
for spec in args[0].split(','):
    sel, dom, path = spec.split('|')
    records[f'{sel}._domainkey.{dom}.'.encode()] = open(path, 'rb').read().strip()


def dnsfunc(name, timeout=5):
    return records.get(name if name.endswith(b'.') else name + b'.')


bad = 0
for path in args[1:]:
    data = open(path, 'rb').read()
    data = re.sub(rb'\A(?:X-(?:Sender|Receiver):[^\n]*\n)+', b'', data)  # mockmx's envelope lines
    head = data.split(b'\r\n\r\n', 1)[0]
    fields = re.findall(rb'^DKIM-Signature:.*?(?=\r\n\S|\Z)', head, re.M | re.I | re.S)
    d = dkim.DKIM(data)
    ours = [i for i, f in enumerate(fields) if b'd=sender.example;' in f]  # not a pre-existing one
    results = []
    for i in ours:
        try:
            results.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException as e:  # e.g. "body hash mismatch"
            results.append(False)
            print(f'{path}: signature {i}: {e}')
    ok = bool(results) and all(results)
    print(f'{path}: {len(ours)} signature(s) {results}')
    bad += ok if expect_fail else not ok
sys.exit(1 if bad else 0)
