#!/usr/bin/env python3
"""A server that greets properly, then answers every line with garbage:
an HTTP status line, binary bytes, a 3000-byte line, or a reply with two
different codes. Loopback only, bounded by the caller's timeout."""
import socket, sys, threading, itertools
port = int(sys.argv[1])
answers = itertools.cycle([
    b'HTTP/1.1 400 Bad Request\r\n',
    b'\x00\xff\xfe garbage\r\n',
    b'250-ok\r\n550 mixed\r\n',
    b'250 ' + b'x' * 3000 + b'\r\nzzz\r\n',
])
def serve(c):
    with c:
        c.sendall(b'220 garbage.example ESMTP\r\n')
        try:
            for _ in c.makefile('rb'):
                c.sendall(next(answers))
        except OSError:
            return
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', port))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
