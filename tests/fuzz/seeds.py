#!/usr/bin/env python3
"""tests/fuzz/seeds.py DIR - a few valid DNS answers as the fuzzer's start."""
import os, struct, sys

def name(n):
    return b''.join(bytes([len(l)]) + l.encode() for l in n.split('.') if l) + b'\0'

def packet(qtype, rcode, answers, auth=b'', nauth=0, qname='example.com'):
    h = struct.pack('>HHHHHH', 0x1234, 0x8580 | rcode, 1, len(answers), nauth, 0)
    q = name(qname) + struct.pack('>HH', qtype, 1)
    return h + q + b''.join(answers) + auth

def rr(rtype, rdata, owner=b'\xc0\x0c', ttl=300):
    return owner + struct.pack('>HHIH', rtype, 1, ttl, len(rdata)) + rdata

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
soa = rr(6, name('ns.example.com') + name('h.example.com') + struct.pack('>IIIII', 1, 2, 3, 4, 60))
seeds = {
    'mx': (0, packet(15, 0, [rr(15, b'\0\x0a' + name('mx1.example.com')), rr(15, b'\0\x14' + b'\x03mx2\xc0\x0c')])),
    'nullmx': (0, packet(15, 0, [rr(15, b'\0\0\0')])),
    'a': (1, packet(1, 0, [rr(5, name('edge.example.net')), rr(1, b'\xc0\x00\x02\x07', owner=name('edge.example.net'))])),
    'aaaa': (2, packet(28, 0, [rr(28, b'\x20\x01\x0d\xb8' + b'\0' * 11 + b'\1')])),
    'txt': (3, packet(16, 0, [rr(16, b'\x05v=spf\x03 -a')])),
    'nxdomain': (0, packet(15, 3, [], soa, 1)),
}
for k, (t, p) in seeds.items():
    open(os.path.join(out, k), 'wb').write(bytes([t]) + p)
