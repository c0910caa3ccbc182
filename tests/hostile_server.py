#!/usr/bin/env python3
"""hostile_server.py - a small scriptable SMTP server for sluice's hostile
tests. Listens on 127.0.0.1 only, bounded by --max-time, standard library
only (one thread per connection).

Without a behaviour flag it is a correct ESMTP server: EHLO offers
PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES (and CHUNKING with --chunking),
MAIL/RCPT/DATA/BDAT/RSET/NOOP/QUIT, every message accepted. Behaviours:

  --data-250            answer DATA with "250 ok" instead of 354 and never
                        read a body (whatever follows is read as commands)
  --extra-reply         after the reply to the end of data (final dot, BDAT
                        LAST) send one unsolicited "250 extra" reply, in the
                        same write
  --greet-421-after MS  accept, wait MS ms, send "421 4.3.2 too busy", close
  --ehlo-fail           greet 220, answer EHLO and HELO with "554 5.7.1 no"
  --ehlo-lines N        EHLO answer with N extension lines (X-FILLER-k ...),
                        PIPELINING (and CHUNKING) among the last ones
  --nul-reply           answer the first RCPT (of the server's life) with
                        "550 5.1.1 bad\\0mailbox tail" (a NUL in the text)
  --chunking            offer CHUNKING (BDAT) too
  --no-pipelining       do not offer PIPELINING
  --max-conns N         at most N connections open at once; one more is
                        greeted with --refuse TEXT (default "421 4.7.0 too
                        many connections from your IP") and closed
  --early-250 MS        after the 354, wait a random 0..MS ms and send
                        "250 early ack id=K" (K counts over the server's
                        life) BEFORE reading any of the data; then read the
                        data and answer it "554 5.7.1 content rejected".
                        --early-250 0: the 250 goes in the same write as
                        the 354 (a client has both in hand at once)
  --dot-421             answer every final dot (and BDAT LAST) with
                        "421 4.7.28 unusual rate, closing" and close
  --double-refusal      refuse some RCPTs with "550 5.1.1 no such user" and
                        write the first refusal of each transaction twice
                        (one reply too many: the later replies shift).
                        Which: those matching --refuse-rcpt REGEX (on the
                        address as sent, <> included); without it the first
                        RCPT of a transaction, the first time the server
                        sees that address (an address keeps its answer:
                        refused once, refused always; accepted, accepted)

Record (--record FILE, JSON lines): one object per connection, written
when it ends (connections still open at exit are written then, with
"open": true):
  {"conn": k, "accepted_at": epoch s, "closed_at": epoch s,
   "commands": ["EHLO x", "MAIL FROM:<a>", ...],  (each cut to 300 chars)
   "pipelined": true if a command was already waiting when a reply went out,
   "messages": [{"via": "DATA"|"BDAT", "acked_at": epoch s, "bytes": n,
                 "mail_from": "<a>", "rcpts": ["<b>", ...],
                 "message_id": "<...>" or null, "x_test": "..." or null,
                 "well_formed": header section is RFC 5322 header fields}],
   "nul_rcpt": the address answered with the NUL reply, or absent,
   "refused": true when --max-conns refused it at the greeting (absent
              otherwise), "concurrent": connections open with it (--max-conns),
   "early": [{"id": K, "data_before_ack": bool, "mail_from": "<a>",
              "rcpts": [...], "data_after_ms": ms, "next": "..."}]
              (--early-250: per early 250; data_before_ack is whether any
              byte of the data was in hand, read or waiting in the socket,
              right after the early 250 was written (with --early-250 0:
              before the 354 and the 250 were written); if not, data_after_ms
              is how long after it the socket became readable, and next its
              first bytes then: "" when the client closed),
   "dot_421": how many ends of data got the 421 (--dot-421),
   "rcpts_accepted": [...], "rcpts_refused": [...]  (--double-refusal)}
A message is listed only when the server acknowledged its end of data
(2xx); message_id / x_test are read from the body the server received.
The refused connections are counted by
  jq -s 'map(select(.refused)) | length' RECORD

Prints "listening 127.0.0.1:PORT" on standard output once it accepts
(--port 0, the default, picks a free port).
"""
import argparse
import json
import os
import random
import re
import select
import signal
import socket
import sys
import threading
import time

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--port', type=int, default=0)
ap.add_argument('--record', default=None)
ap.add_argument('--max-time', type=float, default=60.0)
ap.add_argument('--data-250', action='store_true')
ap.add_argument('--extra-reply', action='store_true')
ap.add_argument('--greet-421-after', type=int, default=None, metavar='MS')
ap.add_argument('--ehlo-fail', action='store_true')
ap.add_argument('--ehlo-lines', type=int, default=0, metavar='N')
ap.add_argument('--nul-reply', action='store_true')
ap.add_argument('--chunking', action='store_true')
ap.add_argument('--no-pipelining', action='store_true')
ap.add_argument('--max-conns', type=int, default=None, metavar='N')
ap.add_argument('--refuse', default='421 4.7.0 too many connections from your IP', metavar='TEXT')
ap.add_argument('--early-250', type=int, default=None, metavar='MS')
ap.add_argument('--dot-421', action='store_true')
ap.add_argument('--double-refusal', action='store_true')
ap.add_argument('--refuse-rcpt', default=None, metavar='REGEX')
opt = ap.parse_args()
REFUSE_RCPT = re.compile(opt.refuse_rcpt) if opt.refuse_rcpt is not None else None

LINE_MAX = 8192              # a command line longer than this is refused
MSG_MAX = 20 * 1024 * 1024   # a message body longer than this is refused
IDLE_S = 30.0

lock = threading.RLock()
conns = {}                   # k -> Conn, those not yet written
nul_done = False
active = 0                   # connections open now (--max-conns)
early_seq = 0                # the K of "250 early ack id=K"
rcpt_memo = {}               # address -> refused? (--double-refusal)
deadline = time.time() + opt.max_time


def write_record(rec):
    if not opt.record:
        return
    line = json.dumps(rec, ensure_ascii=True) + '\n'
    with open(opt.record, 'a') as f:
        f.write(line)
        f.flush()


class Closed(Exception):
    pass


QUIT_RSET = re.compile(rb'(?i)(QUIT|RSET)\r?\n')
HEADER_RE = re.compile(rb'^[\x21-\x39\x3b-\x7e]+:')


def inspect_body(body):
    """Message-ID, X-Test and whether the header section is well formed."""
    data = body.replace(b'\r\n', b'\n')
    head, sep, _ = data.partition(b'\n\n')
    well = bool(sep) and len(head) > 0
    fields = {}
    name = None
    for ln in head.split(b'\n'):
        if ln[:1] in (b' ', b'\t') and name is not None:
            fields[name] += b' ' + ln.strip()
            continue
        m = HEADER_RE.match(ln)
        if not m:
            well = False
            name = None
            continue
        name = ln[:m.end() - 1].lower()
        if name not in fields:          # the first of each
            fields[name] = ln[m.end():].strip()
        else:
            name = None
    def get(n):
        v = fields.get(n)
        return v.decode('latin-1') if v is not None else None
    return get(b'message-id'), get(b'x-test'), well


class Conn:
    def __init__(self, k, sock):
        self.k = k
        self.sock = sock
        self.buf = b''
        self.rec = {'conn': k, 'accepted_at': time.time(), 'commands': [],
                    'pipelined': False, 'messages': []}
        self.written = False

    # ---- I/O ----
    def fill(self):
        if time.time() > deadline:
            raise Closed()
        try:
            d = self.sock.recv(65536)
        except (socket.timeout, OSError):
            raise Closed()
        if not d:
            raise Closed()
        self.buf += d

    def readline(self):
        """One line with its ending; b'' never (Closed instead)."""
        while True:
            i = self.buf.find(b'\n')
            if i >= 0:
                ln, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return ln
            if len(self.buf) > LINE_MAX:
                ln, self.buf = self.buf, b''
                return ln   # too long: the caller refuses it
            self.fill()

    def readn(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def send(self, *lines):
        if self.buf:
            self.rec['pipelined'] = True
        data = b''.join(l if isinstance(l, bytes) else l.encode() for l in lines)
        try:
            self.sock.sendall(data)
        except OSError:
            raise Closed()

    def finish(self, still_open=False):
        with lock:
            if self.written:
                return
            self.written = True
            conns.pop(self.k, None)
            self.rec['closed_at'] = time.time()
            if still_open:
                self.rec['open'] = True
            write_record(self.rec)

    # ---- SMTP ----
    def ehlo_reply(self):
        ext = []
        n = opt.ehlo_lines
        tail = []
        if not opt.no_pipelining:
            tail.append('PIPELINING')
        if opt.chunking:
            tail.append('CHUNKING')
        tail += ['8BITMIME', 'ENHANCEDSTATUSCODES']
        if n:
            fill = max(0, n - len(tail) - 1)
            ext = ['X-FILLER-%d' % i for i in range(fill)] + tail + ['HELP']
        else:
            ext = tail
        lines = ['250-hostile.test greets you\r\n']
        for i, e in enumerate(ext):
            lines.append('250%s%s\r\n' % (' ' if i == len(ext) - 1 else '-', e))
        return lines

    def end_of_data(self, via, body, mail_from, rcpts):
        mid, xt, well = inspect_body(body)
        self.rec['messages'].append({'via': via, 'acked_at': time.time(), 'bytes': len(body),
                                     'mail_from': mail_from, 'rcpts': rcpts,
                                     'message_id': mid, 'x_test': xt, 'well_formed': well})

    def dot_421(self):
        """--dot-421: the end of data gets a 421 and the connection ends."""
        self.rec['dot_421'] = self.rec.get('dot_421', 0) + 1
        self.send('421 4.7.28 unusual rate, closing\r\n')

    def early_ack(self, mail_from, rcpts):
        """--early-250: the 354, then a 250 before reading the data."""
        global early_seq
        with lock:
            early_seq += 1
            eid = early_seq
        ack = '250 early ack id=%d\r\n' % eid
        if opt.early_250 == 0:
            had = len(self.buf)
            self.send('354 go ahead\r\n', ack)
        else:
            self.send('354 go ahead\r\n')
            time.sleep(random.uniform(0, opt.early_250) / 1000.0)
            had = len(self.buf)
            self.send(ack)
        sent = time.time()
        peek = b''
        try:
            if select.select([self.sock], [], [], 0)[0]:
                peek = self.sock.recv(65536, socket.MSG_PEEK)
        except OSError:
            pass
        # A QUIT or RSET (the client giving up on the transaction) is not
        # data. With the 250 in the same write as the 354, whatever came
        # after the write answers the 354: the 250 went before it.
        data = had > 0 or (opt.early_250 > 0 and len(peek) > 0 and not QUIT_RSET.match(peek))
        e = {'id': eid, 'data_before_ack': data, 'mail_from': mail_from, 'rcpts': rcpts}
        if not e['data_before_ack']:
            # how long after the early 250 the first byte of the data came
            try:
                if select.select([self.sock], [], [], 2.0)[0]:
                    e['data_after_ms'] = round((time.time() - sent) * 1000, 3)
                    e['next'] = self.sock.recv(24, socket.MSG_PEEK).decode('latin-1')
            except OSError:
                pass
        self.rec.setdefault('early', []).append(e)

    def rcpt_refused(self, addr, first_in_txn):
        """--double-refusal: whether this RCPT is refused."""
        if REFUSE_RCPT is not None:
            return REFUSE_RCPT.search(addr) is not None
        with lock:
            if addr not in rcpt_memo:
                rcpt_memo[addr] = first_in_txn
            return rcpt_memo[addr]

    def read_data(self):
        """Lines up to the final dot, dot-unstuffed (None if too large)."""
        parts, size = [], 0
        while True:
            ln = self.readline()
            if ln in (b'.\r\n', b'.\n'):
                break
            if ln.startswith(b'.'):
                ln = ln[1:]
            size += len(ln)
            if size <= MSG_MAX:
                parts.append(ln)
        return b''.join(parts) if size <= MSG_MAX else None

    def serve(self):
        global nul_done
        if opt.greet_421_after is not None:
            time.sleep(opt.greet_421_after / 1000.0)
            self.send('421 4.3.2 too busy\r\n')
            return
        self.send('220 hostile.test ESMTP ready\r\n')
        mail_from, rcpts, bdat = None, [], None
        nrcpt, doubled = 0, False   # RCPTs in this transaction; refusal doubled
        while True:
            ln = self.readline()
            if len(ln) > LINE_MAX:
                self.send('500 5.5.2 line too long\r\n')
                continue
            cmd = ln.rstrip(b'\r\n').decode('latin-1')
            if len(self.rec['commands']) < 5000:
                self.rec['commands'].append(cmd[:300])
            verb = cmd.split(' ', 1)[0].upper()
            up = cmd.upper()
            if verb in ('EHLO', 'HELO'):
                mail_from, rcpts, bdat = None, [], None
                if opt.ehlo_fail:
                    self.send('554 5.7.1 no\r\n')
                elif verb == 'EHLO':
                    self.send(*self.ehlo_reply())
                else:
                    self.send('250 hostile.test\r\n')
            elif opt.ehlo_fail and verb != 'QUIT':
                self.send('503 5.5.1 say hello first\r\n')
            elif up.startswith('MAIL FROM:'):
                if mail_from is not None:
                    self.send('503 5.5.1 nested MAIL\r\n')
                else:
                    mail_from, rcpts, bdat = cmd[10:].split(' ')[0], [], None
                    nrcpt, doubled = 0, False
                    self.send('250 2.1.0 ok\r\n')
            elif up.startswith('RCPT TO:'):
                addr = cmd[8:].split(' ')[0]
                if mail_from is None:
                    self.send('503 5.5.1 need MAIL first\r\n')
                    continue
                if opt.nul_reply:
                    with lock:
                        first, nul_done = not nul_done, True
                    if first:
                        self.rec['nul_rcpt'] = addr
                        self.send(b'550 5.1.1 bad\x00mailbox tail\r\n')
                        continue
                if opt.double_refusal:
                    nrcpt += 1
                    if self.rcpt_refused(addr, nrcpt == 1):
                        self.rec.setdefault('rcpts_refused', []).append(addr)
                        self.send(*(['550 5.1.1 no such user\r\n'] * (1 if doubled else 2)))
                        doubled = True
                        continue
                    self.rec.setdefault('rcpts_accepted', []).append(addr)
                rcpts.append(addr)
                self.send('250 2.1.5 ok\r\n')
            elif verb == 'DATA':
                if mail_from is None or not rcpts:
                    self.send('554 5.5.1 no valid recipients\r\n')
                    continue
                if opt.data_250:
                    self.send('250 ok\r\n')
                    mail_from, rcpts = None, []
                    continue
                if opt.early_250 is not None:
                    self.early_ack(mail_from, rcpts)
                else:
                    self.send('354 go ahead\r\n')
                body = self.read_data()
                if body is None:
                    self.send('552 5.3.4 message too big\r\n')
                elif opt.dot_421:
                    self.dot_421()
                    return
                elif opt.early_250 is not None:
                    self.send('554 5.7.1 content rejected\r\n')
                else:
                    self.end_of_data('DATA', body, mail_from, rcpts)
                    self.send('250 2.0.0 ok queued\r\n', *(['250 extra\r\n'] if opt.extra_reply else []))
                mail_from, rcpts = None, []
            elif verb == 'BDAT' and opt.chunking:
                a = cmd.split()
                if len(a) not in (2, 3) or not a[1].isdigit() or (len(a) == 3 and a[2].upper() != 'LAST'):
                    self.send('501 5.5.4 syntax: BDAT size [LAST]\r\n')
                    continue   # cannot know where the chunk ends: best effort
                n, last = int(a[1]), len(a) == 3
                chunk = self.readn(n)
                if mail_from is None or not rcpts:
                    self.send('554 5.5.1 no valid recipients\r\n')
                    bdat = None
                    continue
                bdat = (bdat or b'') + chunk
                if not last:
                    self.send('250 2.0.0 %d octets received\r\n' % n)
                    continue
                if opt.dot_421:
                    self.dot_421()
                    return
                self.end_of_data('BDAT', bdat, mail_from, rcpts)
                self.send('250 2.0.0 ok %d octets, queued\r\n' % len(bdat),
                          *(['250 extra\r\n'] if opt.extra_reply else []))
                mail_from, rcpts, bdat = None, [], None
            elif verb == 'RSET':
                mail_from, rcpts, bdat = None, [], None
                nrcpt, doubled = 0, False
                self.send('250 2.0.0 ok\r\n')
            elif verb == 'NOOP':
                self.send('250 2.0.0 ok\r\n')
            elif verb == 'QUIT':
                self.send('221 2.0.0 bye\r\n')
                return
            else:
                self.send('500 5.5.2 unrecognized command\r\n')


def handle(c):
    global active
    counted = False
    try:
        if opt.max_conns is not None:
            with lock:
                if active < opt.max_conns:
                    active += 1
                    counted = True
                c.rec['concurrent'] = active + (0 if counted else 1)
            if not counted:
                c.rec['refused'] = True
                c.send(opt.refuse + '\r\n')
                return
        c.serve()
    except Closed:
        pass
    except Exception as e:   # never die silently: note it in the record
        c.rec['server_error'] = repr(e)
    finally:
        try:
            c.sock.close()
        except OSError:
            pass
        if counted:
            with lock:
                active -= 1
        c.finish()


def flush_open(*_):
    with lock:
        open_ = list(conns.values())
    for c in open_:
        c.finish(still_open=True)
    os._exit(0)


signal.signal(signal.SIGTERM, flush_open)
signal.signal(signal.SIGINT, flush_open)

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', opt.port))
ls.listen(128)
ls.settimeout(0.2)
print('listening 127.0.0.1:%d' % ls.getsockname()[1], flush=True)
k = 0
while time.time() < deadline:
    try:
        s, _ = ls.accept()
    except socket.timeout:
        continue
    k += 1
    s.settimeout(IDLE_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # no Nagle wait between replies
    c = Conn(k, s)
    with lock:
        conns[k] = c
    threading.Thread(target=handle, args=(c,), daemon=True).start()
flush_open()
