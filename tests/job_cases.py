#!/usr/bin/env python3
"""tests/job_cases.py - job files for tests/integration/job_*.sh.

  job_cases.py exact SPOOL NAME N      a job of N rows over 5 domains that
      exercises substitution, defaults, CSV quoting (commas, "", line breaks
      in quoted values, CRLF and LF records, empty lines, a BOM, a last
      record without a line end), 8-bit display names and subjects that need
      RFC 2047 (pieces cut next to multi-byte characters), dot lines in the
      body, a folded template field, a dropped template Message-ID and no
      Date (sluice adds one). Every row is good.
  job_cases.py refused SPOOL NAME      good rows mixed with rows that must be
      refused: header injection by CR, LF, CRLF and NUL (quoted values, in
      Subject, To and another field), a NUL in the body, bad emails, an
      empty required field, too few / too many fields;
      and rows that must go: a line break in a value used only in the body,
      CR/LF/NUL in a column no template field uses. Injected text always
      names a header X-Injected-*.
  job_cases.py exact-parts DIR N       the same rows as exact, as
      DIR/template.eml and DIR/recipients.csv (for sluice inject).
  job_cases.py long SPOOL NAME         four rows, the second a record of
      70,000 bytes (over the 64 KiB limit).
  job_cases.py big SPOOL NAME          three rows, the second rendered
      larger than max-message-bytes (64 MiB).
  job_cases.py kill9 SPOOL NAME N      N plain good rows over 10 domains.
  job_cases.py badhead SPOOL           jobs whose head or columns are wrong,
      named bad-*.job; prints their names.

A job is written into SPOOL/tmp/NAME, then renamed into SPOOL/new/NAME (and
a copy is kept as SPOOL/../NAME for the renderer, and for refused and long
SPOOL/../NAME.intent: "ROW good|bad" per row, what the generator meant).
Prints NAME.
"""
import os, random, sys


def write_job(spool, name, template, csv, sender=b'<bounces@shop.example>', job=b'job-test',
              pool=None, head=None, intent=None):
    if head is None:
        head = b'X-Sluice-Job: 1\nX-Sender: ' + sender + b'\nX-Job: ' + job + b'\n'
        if pool:
            head += b'X-Pool: ' + pool + b'\n'
        head += b'X-Template-Bytes: %d\n' % len(template)
    data = head + template + csv
    for d in ('tmp', 'new'):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    tmp = os.path.join(spool, 'tmp', name)
    with open(tmp, 'wb') as f:
        f.write(data)
    with open(os.path.join(os.path.dirname(os.path.abspath(spool)), name), 'wb') as f:
        f.write(data)
    os.rename(tmp, os.path.join(spool, 'new', name))
    if intent is not None:  # what each row is meant to be: good or bad
        with open(os.path.join(os.path.dirname(os.path.abspath(spool)), name + '.intent'), 'w') as f:
            f.writelines(f'{r} {k}\n' for r, k in enumerate(intent, 1))
    return name


def q(v):
    """A CSV field, quoted (with "" for ") when it needs it, or sometimes anyway."""
    if any(c in v for c in (b',', b'"', b'\n', b'\r')):
        return b'"' + v.replace(b'"', b'""') + b'"'
    return v


EXACT_TEMPLATE = (
    'From: "Shop Ünïcode Ltd" <news@shop.example>\n'
    'To: "{{first|Valued}} {{last}}" <{{email}}>\n'
    'Reply-To: {{agent|Support}} <support@shop.example>\n'
    'Subject: {{first|Friend}}, your offer in {{city|your city}} - {{code}}\n'
    'X-Campaign: {{campaign|none}} {{nocolumn|default-for-no-column}}\n'
    'X-Folded: start {{city|nowhere}}\n'
    '\tcontinued {{code}}\n'
    'Message-ID: <template-id@shop.example>\n'
    'MIME-Version: 1.0\n'
    'Content-Type: text/plain; charset=utf-8\n'
    'Content-Transfer-Encoding: 8bit\n'
    '\n'
    'Dear {{first|customer}} {{last}},\n'
    '.a line starting with a dot, {{ not a tag }}, {{first and }} and {{x|y\n'
    'Your code: {{code}}; amount {{amount}} EUR; empty default: [{{agent|}}]\n'
    '{{note|No note.}}\n'
    '.\n'
    '..\n'
    'Grüße, {{agent|the team}}\n').encode()

FIRST = ['Alice', 'Bob', 'Jörg', 'Zoë', '李雷', 'Émile', '', 'Ann-Marie', 'Ødegård', 'Chloé']
LAST = ['Smith', 'O"Brien, Jr.', 'Müller', 'van der Berg', 'Nguyễn', 'Doe', 'Łukasiewicz',
        'Jones "JJ"', 'Ng', 'Schrödinger']
CITY = ['Paris', 'Zürich', '', 'São Paulo', 'Kraków', 'Reykjavík',
        'Llanfairpwllgwyngyll, Ynys Môn (Ænglësey), Cymru', '東京都千代田区千代田一丁目一番一号',
        'Ḿünchen-Schwabing-West, Bayern, Deutschland, Europa', 'New York, NY']
NOTES = ['', 'Thanks for being with us.', 'Line one\nLine two, with a comma',
         '.dot first\n..two dots\n.', 'CRLF inside\r\nthe value', 'bare\rCR in body',
         'quotes "here" and ""there""', 'tab\there', 'ends with newline\n', 'ünï çödé\n\n']


def exact(spool, name, n, parts=None):
    rnd = random.Random(42)
    rows = [b'\xef\xbb\xbf' + b'email,first,last,city,code,amount,agent,campaign,note\r\n']
    for i in range(1, n + 1):
        dom = 'd%d.example' % (i % 5)
        email = ('user%d@%s' % (i, dom) if i % 7 else 'first.last+tag%d@%s' % (i, dom))
        f = [email, FIRST[rnd.randrange(10)], LAST[rnd.randrange(10)], CITY[rnd.randrange(10)],
             'C-%06d' % i, '%d,%02d' % (rnd.randrange(1000), i % 100),
             rnd.choice(['', 'Ørjan', 'Sam']), rnd.choice(['', 'spring', 'x,y']),
             NOTES[rnd.randrange(10)]]
        rec = b','.join(q(v.encode()) for v in f)
        end = b'\r\n' if i % 3 == 0 else b'\n'
        if i % 1000 == 0:
            end += b'\n'       # an empty line: skipped, not a row
        if i == n:
            end = b''          # the last record without a line end
        rows.append(rec + end)
    if parts:  # the template and the CSV as files, for sluice inject --template
        os.makedirs(parts, exist_ok=True)
        open(os.path.join(parts, 'template.eml'), 'wb').write(EXACT_TEMPLATE)
        open(os.path.join(parts, 'recipients.csv'), 'wb').write(b''.join(rows))
        return
    write_job(spool, name, EXACT_TEMPLATE, b''.join(rows), job=b'exact-2026')


REFUSED_TEMPLATE = (
    b'From: Shop <news@shop.example>\n'
    b'To: {{name|Friend}} <{{email}}>\n'
    b'Subject: {{subject}}\n'
    b'X-Tag: {{tag|none}}\n'
    b'Date: Tue, 01 Dec 2026 10:00:00 +0000\n'
    b'\n'
    b'Hello {{name|friend}},\n'
    b'{{body}}\n'
    b'Bye.\n')


def refused(spool, name):
    # (email, name, subject, tag, body, unused) or raw record bytes.
    kinds = [
        ('good', [b'{e}', b'Ann', b'Offer {i}', b'', b'plain body', b'']),
        ('bad', [b'{e}', b'Ann', b'Hi\nX-Injected-LF: yes', b'', b'b', b'']),
        ('bad', [b'{e}', b'Ann', b'Hi\rX-Injected-CR: yes', b'', b'b', b'']),
        ('bad', [b'{e}', b'Ann', b'Hi\r\nX-Injected-CRLF: yes', b'', b'b', b'']),
        ('bad', [b'{e}', b'Ann\x00X-Injected-NUL: yes', b'Hi', b'', b'b', b'']),
        ('bad', [b'{e}', b'Ann\nX-Injected-To: yes', b'Hi', b'', b'b', b'']),
        ('bad', [b'{e}', b'Ann', b'Hi', b't\nX-Injected-Tag: yes', b'b', b'']),
        ('good', [b'{e}', b'J\xc3\xb6rg', b'\xc3\x9cber {i}', b'tag',
                  b'body line\nX-Not-Injected: body only\n\nlast', b'']),
        ('bad', [b'{e}', b'Ann', b'Hi', b'', b'nul\x00in body', b'']),
        ('bad', [b'no-at-sign{i}.example', b'Ann', b'Hi', b'', b'b', b'']),
        ('bad', [b'sp ace{i}@x.example', b'Ann', b'Hi', b'', b'b', b'']),
        ('bad', [b'<angle{i}@x.example>', b'Ann', b'Hi', b'', b'b', b'']),
        ('bad', [b'nodomain{i}@', b'Ann', b'Hi', b'', b'b', b'']),
        ('bad', [b'{e}', b'Ann', b'', b'', b'b', b'']),            # required subject empty
        ('bad', [b'', b'Ann', b'Hi', b'', b'b', b'']),             # empty email
        ('bad', [b'{e}', b'', b'Defaults {i}', b'', b'', b'x']),   # body (required) empty
        ('bad', b'{e},Ann,Hi,,b'),                                   # 5 fields
        ('bad', b'{e},Ann,Hi,,b,,extra'),                            # 7 fields
        ('bad', b'{e},Ann,Hi, comma,tag,b,'),                        # 7: unquoted comma
        ('good', [b'{e}', b'Bo', b'Multi {i}', b'', b'one\ntwo\r\nthree\n.\n..', b'']),
        ('good', [b'{e}', b'Cy', b'Unused {i}', b'', b'b',
                  b'X-Injected-Unused: no\r\nbut\x00never used']),
        ('good', [b'{e}', b'"Quoted, Name"', b'Comma, "quotes" {i}', b'', b'b', b'']),
    ]
    out = [b'email,name,subject,tag,body,unused\n']
    i, intent = 0, []
    for rep in range(4):
        for kind, f in kinds:
            i += 1
            intent.append(kind)
            e = b'user%d@r%d.example' % (i, i % 3)
            if isinstance(f, bytes):
                rec = f.replace(b'{e}', e)
            else:
                rec = b','.join(q(v.replace(b'{e}', e).replace(b'{i}', b'%d' % i)) for v in f)
            out.append(rec + (b'\r\n' if rep % 2 else b'\n'))
        out.append(b'\n')
    write_job(spool, name, REFUSED_TEMPLATE, b''.join(out), job=b'refused-test', intent=intent)


def long_record(spool, name):
    """Rows 1, 3, 4 good; row 2 a record of 70,000 bytes (over 64 KiB: refused,
    and the rows after it keep their numbers)."""
    tpl = b'From: Shop <news@long.example>\nTo: <{{email}}>\nSubject: Row {{n}}\n\n{{text}}\n'
    csv = (b'email,n,text\n'
           b'l1@long.example,1,first\n'
           b'l2@long.example,2,' + b'x' * 70000 + b'\n'
           b'l3@long.example,3,third\n'
           b'l4@long.example,4,"fourth, quoted"\n')
    write_job(spool, name, tpl, csv, sender=b'<bounces@long.example>', job=b'long-test',
              intent=['good', 'bad', 'good', 'good'])


def big(spool, name):
    """Row 2 renders to about 72 MB (1,200 uses of a 60,000-byte value):
    over max-message-bytes (64 MiB), refused; rows 1 and 3 are small."""
    tpl = b'From: Shop <news@big.example>\nTo: <{{email}}>\nSubject: big\n\n' + b'{{v}}\n' * 1200
    csv = (b'email,v\n'
           b'b1@big.example,small\n'
           b'b2@big.example,' + b'v' * 60000 + b'\n'
           b'b3@big.example,small too\n')
    write_job(spool, name, tpl, csv, sender=b'<bounces@big.example>', job=b'big-test',
              intent=['good', 'bad', 'good'])


def kill9(spool, name, n):
    tpl = (b'From: Shop <news@shop.example>\nTo: {{name}} <{{email}}>\n'
           b'Subject: Row {{n}} for {{name}}\n\nHello {{name}}, row {{n}}.\n')
    out = [b'email,name,n\n']
    for i in range(1, n + 1):
        out.append(b'u%d@k%d.example,Name %d,%d\n' % (i, i % 10, i, i))
    write_job(spool, name, tpl, b''.join(out), job=b'kill9-test')


def badhead(spool):
    t = b'From: a@b.example\nSubject: {{s|x}}\n\nbody {{email}}\n'
    csv = b'email,s\nu1@bad.example,x\n'
    jobs = {
        'bad-nojob.job': b'X-Sluice-Job: 1\nX-Sender: <a@b.example>\nX-Template-Bytes: %d\n',
        'bad-version.job': b'X-Sluice-Job: 2\nX-Sender: <a@b.example>\nX-Job: j\n'
                           b'X-Template-Bytes: %d\n',
        'bad-unknown.job': b'X-Sluice-Job: 1\nX-Sender: <a@b.example>\nX-Job: j\nX-Foo: bar\n'
                           b'X-Template-Bytes: %d\n',
        'bad-twosenders.job': b'X-Sluice-Job: 1\nX-Sender: <a@b.example>\nX-Job: j\n'
                              b'X-Sender: <c@b.example>\nX-Template-Bytes: %d\n',
        'bad-twojobs.job': b'X-Sluice-Job: 1\nX-Sender: <a@b.example>\nX-Job: j\nX-Job: k\n'
                           b'X-Template-Bytes: %d\n',
        'bad-nomagic.job': b'X-Sender: <a@b.example>\nX-Job: j\nX-Template-Bytes: %d\n',
    }
    names = []
    for nm, h in jobs.items():
        names.append(write_job(spool, nm, t, csv, head=h % len(t)))
    # Template uses {{x}} (no default) and x is not a column.
    names.append(write_job(spool, 'bad-notcolumn.job',
                           b'From: a@b.example\nSubject: {{x}}\n\nbody\n', csv))
    names.append(write_job(spool, 'bad-noemail.job', t, b'mail,s\nu1@bad.example,x\n'))
    # A placeholder as a field's name: a row's value would be a field of its own.
    names.append(write_job(spool, 'bad-fieldname.job',
                           b'From: a@b.example\nX-{{s}}: y\nSubject: hi\n\nbody\n', csv))
    names.append(write_job(spool, 'bad-fieldline.job',
                           b'From: a@b.example\n{{s|X-A: b}}\nSubject: hi\n\nbody\n', csv))
    names.append(write_job(spool, 'bad-dupcolumn.job', t, b'email,s,s\nu1@bad.example,x,y\n'))
    names.append(write_job(spool, 'bad-colname.job', t, b'email,s t\nu1@bad.example,x\n'))
    # X-Template-Bytes past the end of the file.
    h = b'X-Sluice-Job: 1\nX-Sender: <a@b.example>\nX-Job: j\nX-Template-Bytes: 100000\n'
    names.append(write_job(spool, 'bad-short.job', t, csv, head=h))
    print(' '.join(names))


if __name__ == '__main__':
    a = sys.argv[1:]
    if a[:1] == ['exact'] and len(a) == 4:
        exact(a[1], a[2], int(a[3]))
        print(a[2])
    elif a[:1] == ['exact-parts'] and len(a) == 3:
        exact(None, None, int(a[2]), parts=a[1])
    elif a[:1] == ['refused'] and len(a) == 3:
        refused(a[1], a[2])
        print(a[2])
    elif a[:1] == ['big'] and len(a) == 3:
        big(a[1], a[2])
        print(a[2])
    elif a[:1] == ['long'] and len(a) == 3:
        long_record(a[1], a[2])
        print(a[2])
    elif a[:1] == ['kill9'] and len(a) == 4:
        kill9(a[1], a[2], int(a[3]))
        print(a[2])
    elif a[:1] == ['badhead'] and len(a) == 2:
        badhead(a[1])
    else:
        sys.exit(__doc__)
