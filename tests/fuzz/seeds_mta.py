#!/usr/bin/env python3
"""tests/fuzz/seeds_mta.py DIR - seed corpora for fuzz_smtp_reply,
fuzz_envelope, fuzz_job_file, fuzz_smtp_client and fuzz_spf, in DIR/reply,
DIR/envelope, DIR/job, DIR/client and DIR/spf (the input layouts are described at the top of each harness)."""
import os, sys

out = sys.argv[1]

def write(sub, name, data):
    d = os.path.join(out, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)

# ---- fuzz_smtp_reply: flags, n, n split sizes, stream ----
EHLO = (b'250-mx.example.com Hello client [127.0.0.1]\r\n250-PIPELINING\r\n'
        b'250-SIZE 52428800\r\n250-8BITMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n')
replies = {
    'banner': b'220 mx.example.com ESMTP ready\r\n',
    'ehlo': EHLO,
    'pipelined': b'250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <x@y>: no such user\r\n354 End data with <CR><LF>.<CR><LF>\r\n',
    'queued': b'250 2.0.0 Ok: queued as 4XyZ\r\n221 2.0.0 Bye\r\n',
    'toomany': b'452 4.5.3 Too many recipients\r\n452 too many recipients\r\n',
    'lf_only': b'220 hi\n250-a\n250 b\n',
    'partial': b'250-first\r\n250-second\r\n25',
    'mixed_codes': b'250-ok\r\n251 not ok\r\n',
    'garbage': b'HTTP/1.1 400 Bad Request\r\n',
    'nul_text': b'250 a\x00b\r\n',
    'no_text': b'250\r\n354\r\n',
    'bad_sep': b'250x\r\n',
    'long_line': b'250 ' + b'x' * 700 + b'\r\n',
    'enhanced': b'550 5.7.1 relay denied\r\n450 4.2.0\r\n',
}
for i, (k, v) in enumerate(replies.items()):
    splits = bytes([i % 7, 0, 3, 255][: (i % 4) + 1])
    write('reply', k, bytes([i & 1, len(splits)]) + splits + v)
# expanded runs: a 100 KB line in 1 KiB pieces, a 1,000-line reply
write('reply', 'expand_long', b'\x03\x01\x00' + b'250 ' + b'\xff\x7fa' + b'\r\n')
write('reply', 'expand_many', b'\x03\x01\x07' + b'250-x\r\n' * 200 + b'250 end\r\n')

# ---- fuzz_envelope: a spool file ----
envs = {
    'basic': b'X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\nSubject: hi\n\nbody\n',
    'crlf': b'X-Sender: a@b.example\r\nX-Receiver: c@d.example\r\nX-Receiver: <e@f.example>\r\n'
            b'X-Job: j1\r\nX-Pool: p1\r\nSubject: hi\r\n\r\n.dot\r\nbare\rcr\nlf\n',
    'null_sender': b'X-Sender: <>\nX-Receiver: <c@d.example>\n\nx',
    'case': b'x-sender:<a@b.example>\nx-RECEIVER:\t<c@d.example> \nbody without end',
    'utf8': b'X-Sender: <s\xc3\xa9@b.example>\nX-Receiver: <\xc3\xbc@d.example>\n\ncaf\xc3\xa9\n',
    'bad_ctl': b'X-Sender: <a@b.example>\nX-Receiver: <c\x01@d.example>\n\nx\n',
    'bad_job': b'X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\nX-Job: a\x07b\n\nx\n',
    'two_senders': b'X-Sender: <a@b.example>\nX-Sender: <a@b.example>\nX-Receiver: <c@d.example>\n\nx\n',
    'no_body': b'X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\n',
    'unterminated': b'X-Sender: <a@b.example>\nX-Receiver: <c@d.example>',
    'angle': b'X-Sender: <<a@b.example>>\nX-Receiver: <c@d.example>\n\nx\n',
    'long_local': b'X-Sender: <' + b'l' * 70 + b'@b.example>\nX-Receiver: <c@d.example>\n\nx\n',
    'long_addr': b'X-Sender: <a@' + b'd' * 260 + b'>\nX-Receiver: <c@d.example>\n\nx\n',
    'many_rcpt': b'X-Sender: <a@b.example>\n' + b''.join(b'X-Receiver: <r%d@d.example>\n' % i for i in range(40)) + b'\nx\n',
    'nul': b'X-Sender: <a@b.example>\nX-Receiver: <c@d\x00.example>\n\nx\n',
    'crcr': b'X-Sender: <a@b.example>\r\r\nX-Receiver: <c@d.example>\r\n\r\n\r\r\n',
}
for k, v in envs.items():
    write('envelope', k, v)

# ---- fuzz_job_file: a job file ----
def job(tpl, csv, extra=b''):
    return (b'X-Sluice-Job: 1\nX-Sender: <bounces@news.example.com>\nX-Job: j1\n' + extra +
            b'X-Template-Bytes: %d\n' % len(tpl) + tpl + csv)

readme_tpl = (b'From: News <news@news.example.com>\nTo: {{name|Customer}} <{{email}}>\n'
              b'Subject: {{name|Hello}}, your spring offer\n\nDear {{name|customer}}, your code is {{code}}.\n')
readme_csv = (b'email,name,code\nalice@example.org,Alice,A-100\nbob@example.net,,B-200\n'
              b'"carol@example.com","Carol ""CC"" Jones",C-300\n')
jobs = {
    'readme': job(readme_tpl, readme_csv, b'X-Pool: warm-ips\n'),
    'crlf_bom': job(readme_tpl.replace(b'\n', b'\r\n'), b'\xef\xbb\xbf' + readme_csv.replace(b'\n', b'\r\n')),
    'utf8': job(b'From: "{{name}}" <news@x.example>\nTo: {{name}} <{{email}}>\nSubject: Gr\xc3\xbc\xc3\x9fe {{name}}'
                b' ' + b'\xe2\x82\xac' * 20 + b'\n\t{{name|x}}\nMessage-ID: <{{x}}>\nDate: now\n\n{{name}}\n',
                b'email,name\na@b.example,J\xc3\xb6rg\nc@d.example,"x\ny"\n\n"e@f.example","q""\x00"\n'),
    'refusals': job(b'Subject: {{a}}\n\n{{b}}\n', b'email,a,b\n,a,b\na@b.example,,b\nx y@z,a,b\nq@r.example,1\n'),
    'null_sender': job(b'S: x', b'email\na@b.example').replace(b'<bounces@news.example.com>', b'<>'),
}
for k, v in jobs.items():
    write('job', k, v)

# ---- fuzz_smtp_client ----
# Script mode: config (bit 0 set), number of messages, a byte per message,
# then control bytes; zeros are the happy path (submit, speak everything,
# full sends, 2xx replies, EHLO with PIPELINING and CHUNKING).
def script(conf, msgs, ctl=b''):
    return bytes([conf | 1, len(msgs) - 1]) + bytes(msgs) + ctl

write('client', 'script_happy', script(0, [0, 0x09, 0x21]))
write('client', 'script_data', script(4, [1, 0x0a, 0x22, 6]))            # no CHUNKING: DATA
write('client', 'script_lockstep', script(2 | 4, [0x01, 0x0b]))          # no PIPELINING, DATA
write('client', 'script_bdat_lockstep', script(2, [0x05, 0x08]))         # no PIPELINING, BDAT
write('client', 'script_per_conn', script(8, [0, 1, 2, 3]))              # 1 message per connection
write('client', 'script_two_addr', script(32 | 16, [0x11, 0x22, 0x40]))
write('client', 'script_utf8', script(4, [0x18 | 0x40, 0x80]))
# the 3rd..6th reply bytes faulted: RCPT refusals, a 452 too many recipients
write('client', 'script_refusals', script(4, [0x10, 0x10]) + bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 225, 0, 237, 0, 0]))
write('client', 'script_unsolicited', script(4, [0x01]) + bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 247, 0, 170, 0, 0]))
# an unsolicited 250 behind the 354, already in the socket when the content goes out
early = bytearray(script(4, [0]) + bytes(60))
early[17], early[18], early[20], early[22], early[23] = 247, 0xAD, 0xAD, 0xAD, 0x0F
write('client', 'script_early_reply', bytes(early))
write('client', 'script_partial_sends', script(4, [0x05, 0x25]) + bytes([0, 0, 0, 0, 0, 0, 240, 0, 0, 230, 0, 0, 250, 0]))

# Raw mode: config (bit 0 clear), messages, two bytes of control length,
# control bytes (zeros: submit, speak a line, reap), then the server's bytes.
def raw(conf, msgs, server, ctl=b''):
    return bytes([conf & ~1, len(msgs) - 1]) + bytes(msgs) + bytes([len(ctl) & 255, len(ctl) >> 8]) + ctl + server

ok = b'250 2.0.0 Ok\r\n'
write('client', 'raw_bdat', raw(0, [0], b'220 mx ESMTP\r\n' + EHLO + ok * 3 + b'221 bye\r\n'))
write('client', 'raw_data', raw(4, [1, 0x08], b'220 mx ESMTP\r\n' + EHLO + ok * 2 + b'354 go\r\n' + ok * 4 +
                                b'354 go\r\n' + ok + b'221 bye\r\n'))
write('client', 'raw_helo', raw(0, [0], b'220 mx\r\n500 what\r\n250 hi\r\n' + ok * 2 + b'354 go\r\n' + ok))
write('client', 'raw_refused', raw(0, [0], b'554 5.7.1 no\r\n'))
write('client', 'raw_garbage', raw(0, [0], b'220 mx\r\n' + EHLO + b'hello\r\n'))

# ---- fuzz_spf: line 0 the sender domain's TXT; other lines answers by a
# name's hash: T txt (records split on |), A address, M mx, P ptr, N, D ----
spf = {
    'ip4': b'v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all',
    'include': b'v=spf1 include:a.test include:b.test ~all\nTv=spf1 a mx -all\nA\xc0\x00\x02\x01\nMmx1.test,mx2.test\nN',
    'redirect': b'v=spf1 redirect=%{d2}.x.test\nTv=spf1 exists:%{ir}.%{v}._spf.%{d2} ?all\nD\nA\x7f\x00\x00\x02',
    'macros': b'v=spf1 a:%{l1r-}.%{o}/24//64 mx:%{h}/16 ptr:%{d} exists:%{p}.%{i}.%{s} -all\nPh.test,i.test\nA\xc0\x00\x02\x01',
    'loop': b'v=spf1 include:loop.test -all\nTv=spf1 include:loop.test -all',
    'two': b'v=spf1 -all|v=spf1 +all',
    'dmarc': b'v=DMARC1; p=reject; sp=none; adkim=s; aspf=r; pct=50; rua=mailto:d@x.test',
    'dkim': b'v=DKIM1; k=rsa; t=y:s; p=MIIBIjANBgkqh kiG9w0BAQEFAAOC',
    'bad': b'v=spf1 ip4:1.2.3.4/33 all:foo redirect=a redirect=b %{z} a:foo.1',
}
for k, v in spf.items():
    write('spf', k, v)
