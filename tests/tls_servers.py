#!/usr/bin/env python3
"""tls_servers.py - SMTP servers for sluice's STARTTLS tests. 127.0.0.1
only, bounded by --max-time (every connection by --conn-time too).

  tls_servers.py MODE [--port P] --record FILE [--maildir DIR]
                 [--cert PEM --key PEM] [--max-time S] [--accept-plain]

Modes:
  starttls   aiosmtpd with STARTTLS required before MAIL (require_starttls,
             an ssl.SSLContext from --cert/--key): "530 Must issue a STARTTLS
             command first" to MAIL/RCPT/DATA in clear. After STARTTLS a new
             EHLO is needed (aiosmtpd resets the session: "503 Error: send
             HELO first" otherwise) and it no longer offers STARTTLS.
  plain      aiosmtpd without TLS: STARTTLS is never offered (a STARTTLS
             command gets "502 Command not implemented" or similar).
  hostile modes (raw sockets, one thread per connection); EHLO offers
  STARTTLS and 8BITMIME; what they do to STARTTLS:
    close-hello   "220 ready", read the ClientHello, close.
    garbage       "220 ready", read the ClientHello, send non-TLS bytes
                  (an HTTP reply and binary junk), then keep reading (what
                  comes next is recorded) until the client closes.
    inject        "220 go ahead\\r\\n250 injected\\r\\n" in ONE write, then a
                  real TLS handshake (--cert/--key) and SMTP over TLS: a
                  client that ignores the extra bytes gets through, and the
                  record says so (handshake_ok, tls_commands).
    stall         "220 ready", then never answers the handshake (reads and
                  records whatever comes, until the client closes or
                  --conn-time).
    refuse454     "454 4.7.0 TLS not available due to temporary reason".
  Without --accept-plain a MAIL FROM in clear gets "530 5.7.0 Must issue a
  STARTTLS command first" (it is still recorded); with it, a full plaintext
  transaction (MAIL/RCPT/DATA/RSET/NOOP/QUIT) is accepted and the message
  stored. EHLO always offers STARTTLS.

Storage (--maildir DIR, every mode that accepts mail): one file per message
in DIR/new (written in DIR/tmp, renamed), the envelope first:
  X-Envelope-From: <a>
  X-Envelope-To: <b>          (one line per recipient)
  X-Peer-TLS: TLSv1.3:TLS_AES_256_GCM_SHA384   (or "none")
then the message as received.

Record (--record FILE, JSON lines, appended and flushed at once):
  aiosmtpd modes: one object per event
    {"conn": k, "ev": "connect"}
    {"conn": k, "ev": "cmd", "line": "MAIL FROM:<a>", "tls": false}
    {"conn": k, "ev": "reply", "line": "530 ...", "tls": false}
    {"conn": k, "ev": "tls", "proto": "TLSv1.3", "cipher": "..."}
    {"conn": k, "ev": "message", "from": "<a>", "rcpts": [...],
     "tls": "TLSv1.3:..." or null, "message_id": "...", "file": "..."}
    {"conn": k, "ev": "close"}
  hostile modes: one object per connection, written when it ends
    {"conn": k, "mode": M, "commands": [lines before STARTTLS, in clear],
     "starttls": bool, "client_hello": bool (the first bytes after our 220
     were a TLS handshake record), "hello_bytes": n,
     "after_tls_clear": [printable lines read in clear after STARTTLS],
     "clear_mail": bool (a MAIL FROM was read in clear: before STARTTLS,
     or after it failed or was refused),
     "handshake_ok": bool (inject), "tls_commands": [...] (inject),
     "messages": [{"from", "rcpts", "message_id", "tls": null}]}
  Addresses in records are bare (no <>).
  A line "listening 127.0.0.1:PORT" goes to stdout once it accepts.
--tls-max 1.2 makes any mode's TLS server a TLS 1.2-only one.
"""
import argparse
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time

MODES = ('starttls', 'plain', 'close-hello', 'garbage', 'inject', 'stall',
         'refuse454')
ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('mode', choices=MODES)
ap.add_argument('--port', type=int, default=0)
ap.add_argument('--record', required=True)
ap.add_argument('--maildir', default=None)
ap.add_argument('--cert', default=None)
ap.add_argument('--key', default=None)
ap.add_argument('--max-time', type=float, default=60.0)
ap.add_argument('--conn-time', type=float, default=20.0,
                help='seconds a hostile connection may last')
ap.add_argument('--accept-plain', action='store_true')
ap.add_argument('--tls-max', choices=('1.2', '1.3'), default='1.3',
                help='highest TLS version offered (1.2: a TLS 1.2-only server)')
opt = ap.parse_args()

lock = threading.RLock()
conn_seq = 0
msg_seq = 0


def record(obj):
    line = json.dumps(obj, ensure_ascii=True) + '\n'
    with lock:
        with open(opt.record, 'a') as f:
            f.write(line)
            f.flush()


def next_conn():
    global conn_seq
    with lock:
        conn_seq += 1
        return conn_seq


MSGID_RE = re.compile(rb'(?im)^message-id:[ \t]*(.*?)\r?$')


def store(mail_from, rcpts, tls, data):
    """Writes one message into the maildir; returns (file name, Message-ID)."""
    global msg_seq
    head_end = data.find(b'\r\n\r\n')
    if head_end < 0:
        head_end = data.find(b'\n\n')
    m = MSGID_RE.search(data[:head_end if head_end >= 0 else len(data)])
    msgid = m.group(1).decode('latin-1').strip() if m else None
    if not opt.maildir:
        return None, msgid
    with lock:
        msg_seq += 1
        name = '%d.%d.%d' % (int(time.time()), os.getpid(), msg_seq)
    env = 'X-Envelope-From: %s\r\n' % mail_from
    env += ''.join('X-Envelope-To: %s\r\n' % r for r in rcpts)
    env += 'X-Peer-TLS: %s\r\n' % (tls or 'none')
    tmp = os.path.join(opt.maildir, 'tmp', name)
    with open(tmp, 'wb') as f:
        f.write(env.encode('latin-1') + data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(opt.maildir, 'new', name))
    return name, msgid


def tls_context():
    if not (opt.cert and opt.key):
        sys.exit('%s needs --cert and --key' % opt.mode)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opt.cert, opt.key)
    if opt.tls_max == '1.2':
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


open_conns = {}   # hostile: k -> Hostile, not yet recorded


def on_term(*_):
    with lock:
        left = list(open_conns.values())
    for h in left:
        h.rec['open'] = True
        record(h.rec)
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
if opt.maildir:
    for d in ('tmp', 'new', 'cur'):
        os.makedirs(os.path.join(opt.maildir, d), exist_ok=True)


# ---------------------------------------------------------------- aiosmtpd
def run_aiosmtpd():
    import asyncio
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            tls = None
            if session.ssl is not None and server._tls_protocol is not None:
                obj = server._tls_protocol._extra.get('ssl_object')
                if obj is not None:
                    tls = '%s:%s' % (obj.version(), obj.cipher()[0])
            data = envelope.original_content or envelope.content
            if isinstance(data, str):
                data = data.encode('utf-8', 'surrogateescape')
            name, msgid = store(envelope.mail_from and '<%s>' % envelope.mail_from or '<>',
                                ['<%s>' % r for r in envelope.rcpt_tos], tls, data)
            record({'conn': server.k, 'ev': 'message',
                    'from': envelope.mail_from, 'rcpts': list(envelope.rcpt_tos),
                    'tls': tls, 'message_id': msgid, 'file': name})
            return '250 2.0.0 Ok: queued as %s' % name

    class RecSMTP(SMTP):
        k = 0
        in_data = False

        def connection_made(self, transport):
            first = self._original_transport is None and self.transport is None
            super().connection_made(transport)
            if first:
                self.k = next_conn()
                record({'conn': self.k, 'ev': 'connect'})
                rd = self._reader
                orig = rd.readuntil

                async def readuntil(*a, **kw):
                    line = await orig(*a, **kw)
                    if not self.in_data:
                        record({'conn': self.k, 'ev': 'cmd',
                                'line': line.rstrip(b'\r\n')[:300].decode('latin-1'),
                                'tls': self._tls_protocol is not None})
                    return line
                rd.readuntil = readuntil
            else:
                obj = self._tls_protocol._extra.get('ssl_object') if self._tls_protocol else None
                if obj is not None:
                    record({'conn': self.k, 'ev': 'tls', 'proto': obj.version(),
                            'cipher': obj.cipher()[0],
                            'resumed': obj.session_reused})

        def connection_lost(self, exc):
            record({'conn': self.k, 'ev': 'close'})
            super().connection_lost(exc)

        async def push(self, status):
            record({'conn': self.k, 'ev': 'reply', 'line': status[:300],
                    'tls': self._tls_protocol is not None})
            return await super().push(status)

        async def smtp_DATA(self, arg):
            self.in_data = True
            try:
                return await super().smtp_DATA(arg)
            finally:
                self.in_data = False

    ctx = tls_context() if opt.mode == 'starttls' else None
    kw = dict(hostname='aiosmtpd.test.example', timeout=30,
              decode_data=False, data_size_limit=50 * 1024 * 1024)
    if ctx is not None:
        kw.update(tls_context=ctx, require_starttls=True)
    handler = Handler()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: RecSMTP(handler, **kw),
                                       host='127.0.0.1', port=opt.port)
        port = srv.sockets[0].getsockname()[1]
        print('listening 127.0.0.1:%d' % port, flush=True)
        await asyncio.sleep(opt.max_time)
        os._exit(0)

    asyncio.run(main())


# ---------------------------------------------------------------- hostile
class Closed(Exception):
    pass


HELLO_TIMEOUT = 5.0
ADDR_RE = re.compile(r'<([^>]*)>')


def addr(arg):
    """The address of "FROM:<a> SIZE=1" / "TO:<b>", without <>."""
    m = ADDR_RE.search(arg)
    return m.group(1) if m else arg.split(':', 1)[-1].strip()


class Hostile:
    def __init__(self, sock, k):
        self.sock = sock
        self.buf = b''
        self.deadline = time.time() + opt.conn_time
        self.rec = {'conn': k, 'mode': opt.mode, 'accepted_at': time.time(),
                    'commands': [], 'starttls': False, 'client_hello': False,
                    'hello_bytes': 0, 'after_tls_clear': [], 'clear_mail': False,
                    'handshake_ok': False, 'tls_commands': [], 'messages': []}

    def send(self, b):
        try:
            self.sock.sendall(b)
        except OSError:
            raise Closed()

    def fill(self, wait=None):
        left = self.deadline - time.time()
        if wait is not None:
            left = min(left, wait)
        if left <= 0:
            raise Closed()
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except (socket.timeout, OSError):
            raise Closed()
        if not d:
            raise Closed()
        self.buf += d

    def readline(self):
        while b'\n' not in self.buf:
            if len(self.buf) > 8192:
                ln, self.buf = self.buf, b''
                return ln
            self.fill()
        i = self.buf.index(b'\n')
        ln, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        return ln

    def note_clear(self, line, after_tls):
        text = line.rstrip(b'\r\n')[:300].decode('latin-1')
        if after_tls:
            self.rec['after_tls_clear'].append(text)
        else:
            self.rec['commands'].append(text)
        if re.match(r'(?i)MAIL\s+FROM', text):
            self.rec['clear_mail'] = True

    def drain_after_tls(self):
        """After a failed/refused/stalled STARTTLS: read what the client
        sends in clear until it closes (bounded), noting printable lines."""
        try:
            while True:
                self.fill()
                while b'\n' in self.buf:
                    i = self.buf.index(b'\n')
                    ln, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                    if re.match(rb'^[\x20-\x7e]+\r?\n$', ln):
                        self.note_clear(ln, True)
                if len(self.buf) > 65536:
                    self.buf = self.buf[-8192:]
        except Closed:
            pass
        # A line without its end at the close (a "MAIL FROM:<a>" cut short)
        if re.match(rb'^[\x20-\x7e]+$', self.buf[:300]) and self.buf:
            self.note_clear(self.buf, True)

    def read_hello(self):
        """Reads the first bytes after our 220 (the ClientHello, if TLS)."""
        try:
            self.fill(HELLO_TIMEOUT)
        except Closed:
            return
        self.rec['hello_bytes'] = len(self.buf)
        self.rec['client_hello'] = self.buf[:1] == b'\x16'
        if not self.rec['client_hello'] and re.match(rb'^[\x20-\x7e]+\r?\n', self.buf):
            # A client that sent a command instead of a ClientHello
            ln = self.buf.split(b'\n', 1)[0] + b'\n'
            self.note_clear(ln, True)

    def smtp(self, tls=False):
        """An SMTP command loop; returns on STARTTLS (True) or the end."""
        mail_from, rcpts = None, []
        while True:
            ln = self.readline()
            text = ln.rstrip(b'\r\n').decode('latin-1')
            if tls:
                self.rec['tls_commands'].append(text[:300])
            else:
                self.note_clear(ln, self.rec['starttls'])
            verb = text[:4].upper()
            if verb in ('EHLO', 'HELO'):
                if verb == 'HELO':
                    self.send(b'250 hostile.test.example\r\n')
                elif tls:
                    self.send(b'250-hostile.test.example\r\n250 8BITMIME\r\n')
                else:
                    self.send(b'250-hostile.test.example\r\n250-8BITMIME\r\n250 STARTTLS\r\n')
                mail_from, rcpts = None, []
            elif text.upper() == 'STARTTLS' and not tls:
                return True
            elif verb == 'MAIL':
                if not tls and not opt.accept_plain:
                    self.send(b'530 5.7.0 Must issue a STARTTLS command first\r\n')
                    continue
                mail_from, rcpts = addr(text[5:]), []
                self.send(b'250 2.1.0 Ok\r\n')
            elif verb == 'RCPT':
                if mail_from is None:
                    self.send(b'503 5.5.1 need MAIL\r\n')
                    continue
                rcpts.append(addr(text[5:]))
                self.send(b'250 2.1.5 Ok\r\n')
            elif verb == 'DATA':
                if not rcpts:
                    self.send(b'503 5.5.1 need RCPT\r\n')
                    continue
                self.send(b'354 go ahead\r\n')
                body = []
                while True:
                    dl = self.readline()
                    if dl in (b'.\r\n', b'.\n'):
                        break
                    body.append(dl[1:] if dl.startswith(b'.') else dl)
                data = b''.join(body)
                tlsname = None
                if tls:
                    tlsname = '%s:%s' % (self.sock.version(), self.sock.cipher()[0])
                name, msgid = store('<%s>' % mail_from, ['<%s>' % r for r in rcpts],
                                    tlsname, data)
                self.rec['messages'].append({'from': mail_from, 'rcpts': rcpts,
                                             'message_id': msgid, 'tls': tlsname})
                self.send(('250 2.0.0 Ok: queued as %s\r\n' % name).encode())
                mail_from, rcpts = None, []
            elif verb == 'RSET':
                mail_from, rcpts = None, []
                self.send(b'250 2.0.0 Ok\r\n')
            elif verb == 'NOOP':
                self.send(b'250 2.0.0 Ok\r\n')
            elif verb == 'QUIT':
                self.send(b'221 2.0.0 Bye\r\n')
                return False
            else:
                self.send(b'502 5.5.2 Error: command not recognized\r\n')

    def run(self):
        try:
            self.send(b'220 hostile.test.example ESMTP\r\n')
            if not self.smtp():
                return
            self.rec['starttls'] = True
            m = opt.mode
            if m == 'refuse454':
                self.send(b'454 4.7.0 TLS not available due to temporary reason\r\n')
                self.smtp()    # the client may go on in clear; recorded
            elif m == 'close-hello':
                self.send(b'220 2.0.0 Ready to start TLS\r\n')
                self.read_hello()
            elif m == 'garbage':
                self.send(b'220 2.0.0 Ready to start TLS\r\n')
                self.read_hello()
                self.buf = b''
                self.send(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'
                          b'\x00\xff\xfe\x01 not a ServerHello \x80\x81\r\n')
                self.drain_after_tls()
            elif m == 'stall':
                self.send(b'220 2.0.0 Ready to start TLS\r\n')
                self.read_hello()
                self.buf = b''
                self.drain_after_tls()
            elif m == 'inject':
                self.send(b'220 go ahead\r\n250 injected\r\n')
                self.inject_tls()
        except Closed:
            pass
        finally:
            self.rec['closed_at'] = time.time()
            try:
                self.sock.close()
            except OSError:
                pass
            with lock:
                open_conns.pop(self.rec['conn'], None)
            record(self.rec)

    def inject_tls(self):
        ctx = tls_context()
        if self.buf:   # pipelined bytes after STARTTLS: not ours to read as TLS
            self.rec['after_tls_clear'].append(self.buf[:300].decode('latin-1'))
        self.sock.settimeout(max(0.1, min(HELLO_TIMEOUT, self.deadline - time.time())))
        try:
            s = ctx.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.rec['handshake_error'] = str(e)[:200]
            return
        self.rec['handshake_ok'] = True
        self.rec['tls'] = '%s:%s' % (s.version(), s.cipher()[0])
        self.sock, self.buf = s, b''
        self.smtp(tls=True)


def run_hostile():
    if opt.mode == 'inject':
        tls_context()   # fail early without --cert/--key
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('127.0.0.1', opt.port))
    ls.listen(64)
    print('listening 127.0.0.1:%d' % ls.getsockname()[1], flush=True)
    end = time.time() + opt.max_time
    while time.time() < end:
        ls.settimeout(max(0.05, end - time.time()))
        try:
            c, _ = ls.accept()
        except socket.timeout:
            break
        h = Hostile(c, next_conn())
        with lock:
            open_conns[h.rec['conn']] = h
        threading.Thread(target=h.run, daemon=True).start()
    os._exit(0)


if opt.mode in ('starttls', 'plain'):
    run_aiosmtpd()
else:
    run_hostile()
