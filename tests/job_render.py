#!/usr/bin/env python3
"""tests/job_render.py - an independent renderer of sluice job files, written
from README.md ("### Job files: one file, a million personalised messages")
alone, to check engine/lib/job_file.c against. Standard library only; the
CSV reader is hand-rolled (Python's csv module takes a bare CR as a record
end, which the README does not).

  job_render.py [--max-message-bytes N] JOBFILE OUTDIR
      Renders every row. For a rendered row: OUTDIR/ROW.eml, the message as
      the receiving server must store it (after DATA, dot-stuffing undone):
      CRLF line ends, with two placeholders for what cannot be predicted:
      the first line is "Message-ID: <ROW.*@DOMAIN>" (TOKEN: 16 lowercase
      hex digits, one per job file) and, when the template has no Date
      field, the second is "Date: *". For a refused row: a line
      "ROW LINE REASON" in OUTDIR/refused.txt. Also OUTDIR/envelope.tsv
      ("ROW<TAB>SENDER<TAB>RCPT" per rendered row) and OUTDIR/job.json
      (job id, file name, domain, counts). A job refused as a whole: exit
      2, OUTDIR/bad.txt with the reason. Prints the counts.

  job_render.py --compare [--allow-dups] [--sender ADDR] OUTDIR|JOBFILE RECEIVED...
      (given the job file instead of an OUTDIR, renders it in memory: no
      file per row.) RECEIVED: files or directories of files, each a mockmx --store file
      (X-Sender/X-Receiver lines, then the exact content) or an smtp-sink
      -d dump (its X-* and Received: lines, the content in LF, one final
      empty line; turned back into CRLF, exact here since every line end
      of a rendered message is CRLF). Each message is matched to its
      expected one by the ROW of its Message-ID and compared byte for
      byte, the placeholders as wildcards: the TOKEN must be 16 lowercase
      hex digits and the same in every message, the Date an RFC 5322 date.
      The envelope (MAIL FROM, RCPT TO) must match too. Every rendered row
      must be received, exactly once unless --allow-dups; no refused row
      may be received. --sender ADDR: only captures whose MAIL FROM is ADDR
      are looked at (several jobs in one store). Exit 0 if all is well, 1 otherwise, with the first
      differences shown (expected and received bytes).

  job_render.py --rows RECEIVED...
      Prints the ROW of each captured message, one a line.

  job_render.py --selftest
      Checks the renderer against the README's example and hand-made
      cases.

Readings of the README where it leaves room (the C renderer may differ;
those cases are kept out of the integration tests' data):
 R1  Head: the first line must be exactly "X-Sluice-Job: 1" (case and
     spacing; sluice agrees), then LF or CRLF. Other head
     values: spaces and tabs around them are stripped; X-Sender's one pair
     of <> is optional (as for a spool file's X-Sender). X-Sender, X-Job
     and X-Pool may come in any order; X-Template-Bytes must be the last
     head line. An empty X-Job, or one with control characters, refuses
     the job.
 R2  The template is exactly N bytes after the X-Template-Bytes line's LF;
     a file shorter than that refuses the job. The recipient list starts
     right after, even in the middle of a line (line numbers still count
     every LF of the file from its start).
 R3  Line numbers (L in "line L:"): 1 + the number of LF bytes in the file
     before the record's first byte (a bare CR does not end a line).
 R4  CSV: a field is quoted only when its first byte is '"'; a '"' inside
     an unquoted field is data. Bytes between a closing quote and the next
     ',' or record end, or a quote still open at the end of the file,
     refuse the row ("malformed"). (sluice differs: '"ab"c' gives abc and
     an open quote at the end of the file gives the rest as the value;
     RFC 4180 allows neither; the tests avoid both.) Spaces around fields are data. A bare
     CR (not before LF) is data. A record is at most 65,536 bytes with its
     line end; a longer one is a refused row (counted as a row). A line
     holding nothing (LF or CRLF alone) is skipped and is not a row; a
     line holding '""' or spaces is a record. Empty lines before the
     column names are skipped too (sluice differs: it refuses the job, the
     empty line being a column record of one empty name). A CSV with no column record refuses
     the job; one with columns and no rows is a job of 0 messages.
 R5  Substitution is leftmost-first like a regex scan: where "{{" does not
     start a valid {{name}} or {{name|text}}, one '{' is copied and the
     scan goes on at the next byte (so "{{{a}}" gives "{" + a's value).
     Message-ID fields are removed from the template before anything else,
     so a {{x}} inside one is never looked at.
 R6  The header/body split is at the template's first empty line (LF or
     CRLF alone). A template without an empty line is all header; its
     rendered message still has the empty line ("the header fields, the
     empty line and the body"; sluice agrees) and an empty body. The template's
     Date field, if any, is found by the field names of the template
     (case-insensitive), not after substitution.
 R7  The row's email is checked as it is (no stripping of spaces or <>),
     with the X-Receiver rules of engine/lib/envelope.c address_check.
 R8  Refusal order (only the reason differs): malformed / too long, field
     count, email, then substitution in template order (missing required
     field, header injection, NUL in body), then max-message-bytes on the
     final message (Date counted as 37 bytes with its CRLF).
 R9  RFC 2047: a header field's name is the bytes before its first ':'; a
     line with no ':' is left as it is. Unfolding removes CRLF and LF.
     The rebuilt field is "Name: ENCODED" with the name as written. The
     display name's surrounding quotes are removed as one pair, nothing
     inside is unescaped.
 R10 DOMAIN is the part of X-Sender after its last '@', as written.
"""
import base64, json, os, re, sys

ADDR_FIELDS = {b'from', b'to', b'cc', b'bcc', b'reply-to', b'sender'}
RECORD_MAX = 65536
BAD_HDR_RE = re.compile(rb'[\r\n\x00]')
HIGH_RE = re.compile(rb'[\x80-\xff]')
ADDR_OK_RE = re.compile(rb'^[^\x00-\x20\x7f<>]+$')
NAME_RE = re.compile(rb'^[A-Za-z0-9_-]+$')
SUBST_RE = re.compile(rb'\{\{([A-Za-z0-9_-]+)(?:\|([^}\r\n]*))?\}\}')
DATE_RE = re.compile(rb'^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} '
                     rb'(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} '
                     rb'\d\d:\d\d(?::\d\d)? [+-]\d{4}$')


class JobRefused(Exception):
    pass


# ---------------------------------------------------------------- head ----

def parse_head(data):
    """Returns (sender, job, pool, tpl_off, tpl_len)."""
    pos = 0
    lines = []
    while True:
        nl = data.find(b'\n', pos)
        if nl < 0:
            raise JobRefused('head: no X-Template-Bytes line')
        line = data[pos:nl]
        if line.endswith(b'\r'):
            line = line[:-1]
        lines.append(line)
        pos = nl + 1
        if not lines[0:1] or len(lines) == 1:
            if line != b'X-Sluice-Job: 1':
                raise JobRefused('head: first line is not X-Sluice-Job: 1')
            continue
        m = re.match(rb'^([A-Za-z-]+):(.*)$', line, re.S)
        if not m:
            raise JobRefused('head: unknown line %r' % line)
        name, val = m.group(1).lower(), m.group(2).strip(b' \t')
        if name == b'x-template-bytes':
            if not re.match(rb'^[0-9]{1,10}$', val):
                raise JobRefused('head: bad X-Template-Bytes')
            n = int(val)
            break
        if name not in (b'x-sender', b'x-job', b'x-pool'):
            raise JobRefused('head: unknown line %r' % line)
    seen = {}
    for line in lines[1:-1]:
        name, _, val = line.partition(b':')
        name, val = name.lower(), val.strip(b' \t')
        if name in seen:
            raise JobRefused('head: repeated %s' % name.decode())
        seen[name] = val
    if b'x-sender' not in seen:
        raise JobRefused('head: no X-Sender')
    if b'x-job' not in seen:
        raise JobRefused('head: no X-Job')
    sender = seen[b'x-sender']
    if len(sender) >= 2 and sender[:1] == b'<' and sender[-1:] == b'>':
        sender = sender[1:-1]
    if sender and address_check(sender):
        raise JobRefused('head: X-Sender ' + address_check(sender))
    job = seen[b'x-job']
    if not job or any(c < 0x20 and c != 9 for c in job):
        raise JobRefused('head: bad X-Job')
    pool = seen.get(b'x-pool')
    if pool is not None and any(c < 0x20 and c != 9 for c in pool):
        raise JobRefused('head: bad X-Pool')
    if pos + n > len(data):
        raise JobRefused('template: file shorter than X-Template-Bytes')
    return sender, job, pool, pos, n


def address_check(a):
    """engine/lib/envelope.c address_check's rules; None if good."""
    if not a:
        return 'empty address'
    if len(a) > 252:
        return 'too long'
    if ADDR_OK_RE.match(a):
        at = a.rfind(b'@')
        if 0 < at < len(a) - 1 and at <= 64:
            return None
    for c in a:
        if c in (13, 10):
            return 'CR or LF'
        if c == 0:
            return 'NUL'
        if c < 0x20 or c == 0x7f:
            return 'control character'
        if c in (0x20, 9):
            return 'white space'
        if c in (0x3c, 0x3e):
            return "'<' or '>'"
    at = a.rfind(b'@')
    if at < 0:
        return "no '@'"
    if at == 0:
        return 'empty local part'
    if at == len(a) - 1:
        return 'empty domain'
    if at > 64:
        return 'local part too long'
    return None


# ------------------------------------------------------------ template ----

def split_lines(b):
    """Lines with their line ends (LF or CRLF); the last may lack one."""
    return re.findall(rb'[^\n]*\n|[^\n]+$', b)


def is_blank(line):
    return line in (b'\n', b'\r\n')


def split_template(tpl):
    """(header_lines, has_empty_line, body) with Message-ID fields removed."""
    lines = split_lines(tpl)
    hdr, i = [], 0
    while i < len(lines) and not is_blank(lines[i]):
        hdr.append(lines[i])
        i += 1
    has_empty = i < len(lines)
    body = b''.join(lines[i + 1:])
    out, skip = [], False
    for line in hdr:
        if line[:1] in (b' ', b'\t') and out is not None:
            if not skip:
                out.append(line)
            continue
        skip = line.split(b':', 1)[0].lower() == b'message-id' and b':' in line
        if not skip:
            out.append(line)
    return out, has_empty, body


def check_field_names(tpl):
    """A header field's first line with {{ before its colon (or with no
    colon) refuses the job."""
    lines = split_lines(tpl)
    for n, line in enumerate(lines, 1):
        if is_blank(line):
            return
        if line[:1] in (b' ', b'\t'):
            continue
        name = line.split(b':', 1)[0] if b':' in line else line
        if b'{{' in name:
            raise JobRefused(f"template line {n}: a header field's name holds {{{{")


def field_names(hdr_lines):
    return [l.split(b':', 1)[0].lower() for l in hdr_lines
            if l[:1] not in (b' ', b'\t') and b':' in l]


# ----------------------------------------------------------------- CSV ----

def frame_records(data, base_off, line_of):
    """Yields (record_bytes_without_line_end, first_line, error)."""
    pos, n = 0, len(data)
    if data.startswith(b'\xef\xbb\xbf'):
        pos = 3
    while pos < n:
        start = pos
        nl = data.find(b'\n', pos)
        if nl >= 0 and data.find(b'"', pos, nl) < 0:
            rec = data[pos:nl - 1] if nl > pos and data[nl - 1] == 0x0d else data[pos:nl]
            yield rec, line_of(base_off + start), ('too-long' if nl + 1 - pos > RECORD_MAX else None)
            pos = nl + 1
            continue
        st = 'start'  # start, unq, q, qq (quote seen inside quotes)
        i = pos
        end = None
        while i < n:
            c = data[i]
            if st == 'q':
                if c == 0x22:
                    st = 'qq'
            elif c == 0x0a:
                end = i
                break
            elif st == 'qq':
                st = 'q' if c == 0x22 else ('start' if c == 0x2c else 'unq')
            elif st == 'start':
                st = 'q' if c == 0x22 else ('start' if c == 0x2c else 'unq')
            else:
                if c == 0x2c:
                    st = 'start'
            i += 1
        if end is None:
            rec, nxt = data[start:], n
        else:
            rec, nxt = data[start:end], end + 1
            if rec.endswith(b'\r'):
                rec = rec[:-1]
        too_long = nxt - start > RECORD_MAX
        yield rec, line_of(base_off + start), ('too-long' if too_long else None)
        pos = nxt


def parse_fields(rec):
    """Fields of one record (line end removed), or None if malformed."""
    if b'"' not in rec:
        return rec.split(b',')
    fields, i, n = [], 0, len(rec)
    while True:
        if i < n and rec[i] == 0x22:
            i += 1
            val = bytearray()
            while True:
                if i >= n:
                    return None  # quote open at the end
                if rec[i] == 0x22:
                    if i + 1 < n and rec[i + 1] == 0x22:
                        val += b'"'
                        i += 2
                        continue
                    i += 1
                    break
                val.append(rec[i])
                i += 1
            fields.append(bytes(val))
            if i == n:
                return fields
            if rec[i] != 0x2c:
                return None
            i += 1
        else:
            j = rec.find(b',', i)
            if j < 0:
                fields.append(rec[i:])
                return fields
            fields.append(rec[i:j])
            i = j + 1


# ----------------------------------------------------------- rendering ----

def b_encode(text):
    pieces, i, n = [], 0, len(text)
    while i < n:
        end = min(i + 45, n)
        if end < n:
            e = end
            while e > i and 0x80 <= text[e] <= 0xbf:
                e -= 1
            if e > i:
                end = e
        pieces.append(b'=?UTF-8?B?' + base64.b64encode(text[i:end]) + b'?=')
        i = end
    return b'\r\n '.join(pieces)


def encode_field(raw):
    """A header field (its lines, with line ends), substituted: itself, or
    its RFC 2047 form when it holds 8-bit bytes."""
    if not HIGH_RE.search(raw) or b':' not in raw.split(b'\n', 1)[0]:
        return raw
    name, _, value = raw.partition(b':')
    value = re.sub(rb'\r?\n', b'', value).strip(b' \t')
    if name.lower() in ADDR_FIELDS:
        lt = value.rfind(b'<')
        if lt < 0:
            return raw
        disp = value[:lt].strip(b' \t')
        if len(disp) >= 2 and disp[:1] == b'"' and disp[-1:] == b'"':
            disp = disp[1:-1]
        if not HIGH_RE.search(disp):
            return raw
        return name + b': ' + b_encode(disp) + b' ' + value[lt:] + b'\r\n'
    return name + b': ' + b_encode(value) + b'\r\n'


def crlf_normalise(b):
    out = re.sub(rb'\r\n|\r|\n', b'\r\n', b)
    if not out.endswith(b'\r\n'):
        out += b'\r\n'
    return out


class Job:
    def __init__(self, data, max_bytes=64 << 20):
        self.max_bytes = max_bytes
        self.sender, self.job, self.pool, off, n = parse_head(data)
        self.domain = (self.sender[self.sender.rfind(b'@') + 1:] if self.sender
                       else b'sluice.invalid')
        tpl = data[off:off + n]
        check_field_names(tpl)
        self.hdr_lines, self.has_empty, self.body = split_template(tpl)
        self.has_date = b'date' in field_names(self.hdr_lines)
        self._data = data
        self._lf_offsets = None
        csv_off = off + n
        self._csv_off = csv_off
        recs = frame_records(data[csv_off:], csv_off, self.line_of)
        self.columns = None
        for rec, line, err in recs:
            if rec == b'':
                continue
            f = parse_fields(rec) if not err else None
            if f is None:
                raise JobRefused('columns: malformed record')
            for c in f:
                if not NAME_RE.match(c):
                    raise JobRefused('columns: bad name %r' % c)
            if len(set(f)) != len(f):
                raise JobRefused('columns: repeated name')
            if b'email' not in f:
                raise JobRefused('columns: no email')
            self.columns = f
            break
        if self.columns is None:
            raise JobRefused('columns: no column record')
        self.col = {c: i for i, c in enumerate(self.columns)}
        for part in (b''.join(self.hdr_lines), self.body):
            for m in SUBST_RE.finditer(part):
                if m.group(2) is None and m.group(1) not in self.col:
                    raise JobRefused('template: {{%s}} is not a column and has no default'
                                     % m.group(1).decode())

    def line_of(self, off):
        if self._lf_offsets is None:
            import bisect
            self._bisect = bisect.bisect_left
            self._lf_offsets = [m.start() for m in re.finditer(rb'\n', self._data)]
        return self._bisect(self._lf_offsets, off) + 1

    def rows(self):
        """Yields (row, line, message_or_None, reason_or_None, rcpt)."""
        row, header = 0, True
        for rec, line, err in frame_records(self._data[self._csv_off:], self._csv_off,
                                            self.line_of):
            if rec == b'':
                continue
            if header:
                header = False
                continue
            row += 1
            if err:
                yield row, line, None, 'record-too-long', None
                continue
            f = parse_fields(rec)
            if f is None:
                yield row, line, None, 'malformed', None
                continue
            if len(f) != len(self.columns):
                yield row, line, None, 'field-count', None
                continue
            email = f[self.col[b'email']]
            if address_check(email):
                yield row, line, None, 'bad-email', email
                continue
            try:
                msg = self.render(row, f)
            except ValueError as e:
                yield row, line, None, str(e), email
                continue
            if len(msg) - len(b'Date: *\r\n') * (not self.has_date) + 37 * (not self.has_date) > self.max_bytes:
                yield row, line, None, 'too-large', email
                continue
            yield row, line, msg, None, email

    def compile(self):
        """The template cut into literal text and substitutions, per header
        field (a line and its continuation lines) and for the body."""
        def pieces(part):
            out, pos = [], 0
            for m in SUBST_RE.finditer(part):
                out += [part[pos:m.start()], (self.col.get(m.group(1)), m.group(2))]
                pos = m.end()
            return out + [part[pos:]]
        fields = []
        for line in self.hdr_lines:
            if line[:1] in (b' ', b'\t') and fields:
                fields[-1].append(line)
            else:
                fields.append([line])
        self.fields = []
        for fl in fields:
            raw = b''.join(fl)
            if not raw.endswith(b'\n'):
                raw += b'\n'
            p = pieces(raw)
            self.fields.append((raw, p, len(p) == 1 and not HIGH_RE.search(raw)))
        self.body_pieces = pieces(self.body)

    @staticmethod
    def fill(pieces, f, in_header):
        out = []
        for i, p in enumerate(pieces):
            if not i & 1:
                out.append(p)
                continue
            ci, default = p
            v = f[ci] if ci is not None else b''
            if not v:
                if default is None:
                    raise ValueError('missing-field')
                out.append(default)
                continue
            if in_header and BAD_HDR_RE.search(v):
                raise ValueError('header-injection')
            if not in_header and b'\0' in v:
                raise ValueError('nul-in-body')
            out.append(v)
        return b''.join(out)

    def render(self, row, f):
        if not hasattr(self, 'fields'):
            self.compile()
        out = [b'Message-ID: <%d.*@' % row + self.domain + b'>\r\n']
        if not self.has_date:
            out.append(b'Date: *\r\n')
        for raw, pieces, static in self.fields:
            if static:
                out.append(raw)
                continue
            text = self.fill(pieces, f, True)
            out.append(encode_field(text) if HIGH_RE.search(text) else text)
        body = self.fill(self.body_pieces, f, False)
        out.append(b'\r\n')
        out.append(body)
        return crlf_normalise(b''.join(out))


# -------------------------------------------------------------- render ----

def render_file(path, outdir, max_bytes=64 << 20):
    os.makedirs(outdir, exist_ok=True)
    data = open(path, 'rb').read()
    try:
        job = Job(data, max_bytes)
    except JobRefused as e:
        with open(os.path.join(outdir, 'bad.txt'), 'w') as f:
            f.write(str(e) + '\n')
        print(f'job refused: {e}')
        return 2
    nmsg = nref = 0
    with open(os.path.join(outdir, 'refused.txt'), 'w') as ref, \
            open(os.path.join(outdir, 'envelope.tsv'), 'wb') as env:
        for row, line, msg, reason, rcpt in job.rows():
            if msg is None:
                ref.write(f'{row} {line} {reason}\n')
                nref += 1
            else:
                with open(os.path.join(outdir, f'{row}.eml'), 'wb') as f:
                    f.write(msg)
                env.write(b'%d\t%s\t%s\n' % (row, job.sender, rcpt))
                nmsg += 1
    with open(os.path.join(outdir, 'job.json'), 'w') as f:
        json.dump({'file': os.path.basename(path), 'job': job.job.decode('utf-8', 'replace'),
                   'domain': job.domain.decode('utf-8', 'replace'), 'rendered': nmsg,
                   'refused': nref, 'rows': nmsg + nref, 'has_date': job.has_date}, f)
    print(f'{nmsg + nref} rows: {nmsg} rendered, {nref} refused')
    return 0


# ------------------------------------------------------------- compare ----

def read_capture(data):
    """(sender, [rcpts], content) from a mockmx --store file or an
    smtp-sink dump; None if neither."""
    if data.startswith(b'X-Sender: <'):
        pos, rcpts, sender = 0, [], None
        while True:
            m = re.match(rb'X-(Sender|Receiver): <([^>\n]*)>\n', data[pos:pos + 1100])
            if not m:
                break
            if m.group(1) == b'Sender':
                sender = m.group(2)
            else:
                rcpts.append(m.group(2))
            pos += m.end()
        return sender, rcpts, data[pos:]
    pos, rcpts, sender = 0, [], None
    while True:
        m = re.match(rb'X-([A-Za-z-]+): ([^\n]*)\n', data[pos:pos + 2000])
        if not m:
            break
        if m.group(1) == b'Mail-Args':
            sender = m.group(2).split(b' ')[0][1:-1]
        elif m.group(1) == b'Rcpt-Args':
            rcpts.append(m.group(2).split(b' ')[0][1:-1])
        pos += m.end()
    m = re.match(rb'Received: [^\n]*\n(?:[ \t][^\n]*\n)*', data[pos:pos + 2000])
    if not m or not data.endswith(b'\n\n') or sender is None:
        return None
    return sender, rcpts, data[pos + m.end():-1].replace(b'\n', b'\r\n')


def show(b, at, width=120):
    lo = max(0, at - width // 2)
    return repr(b[lo:lo + width])


def expected(src):
    """(domain, {row: (message, sender, rcpt)}, {refused rows}) from an
    OUTDIR this script wrote, or rendered in memory from a job file."""
    if not os.path.isdir(src):
        try:
            job = Job(open(src, 'rb').read())
        except JobRefused as e:
            print(f'the renderer refuses the whole job: {e}')
            return b'sluice.invalid', {}, set()
        want, refused = {}, set()
        for row, line, msg, reason, rcpt in job.rows():
            if msg is None:
                refused.add(row)
            else:
                want[row] = (msg, job.sender, rcpt)
        return job.domain, want, refused
    meta = json.load(open(os.path.join(src, 'job.json')))
    want = {}
    for line in open(os.path.join(src, 'envelope.tsv'), 'rb'):
        r, snd, rcpt = line.rstrip(b'\n').split(b'\t')
        want[int(r)] = (open(os.path.join(src, r.decode() + '.eml'), 'rb').read(), snd, rcpt)
    refused = {int(l.split()[0]) for l in open(os.path.join(src, 'refused.txt'))}
    return meta['domain'].encode(), want, refused


def capture_files(received):
    files = []
    for p in received:
        if os.path.isdir(p):
            files += [os.path.join(p, f) for f in sorted(os.listdir(p))]
        else:
            files.append(p)
    return files


def captured_rows(received):
    """Prints the ROW of each captured message's Message-ID, one a line."""
    for path in capture_files(received):
        cap = read_capture(open(path, 'rb').read())
        m = cap and re.match(rb'Message-ID: <([0-9]+)\.', cap[2])
        print(int(m.group(1)) if m else f'? {path}')
    return 0


def compare(src, received, allow_dups=False, only_sender=None):
    """src: an OUTDIR of this script, or the job file itself. only_sender:
    captures with another MAIL FROM are left out (other jobs' messages)."""
    domain, want, refused = expected(src)
    files = capture_files(received)
    if only_sender is not None:
        def ours(path):
            with open(path, 'rb') as f:
                cap = read_capture(f.read(4096) + b'\n\n')
            return cap is None or cap[0] == only_sender
        files = [p for p in files if ours(p)]
    mid_re = re.compile(rb'Message-ID: <([0-9]+)\.([^@>]*)@' + re.escape(domain) + rb'>\r\n')
    errors, tokens, got = [], set(), {}

    def err(s):
        errors.append(s)

    for path in files:
        cap = read_capture(open(path, 'rb').read())
        if cap is None:
            err(f'{path}: not a mockmx or smtp-sink capture')
            continue
        sender, rcpts, content = cap
        m = mid_re.match(content)
        if not m:
            err(f'{path}: does not start with Message-ID: <ROW.TOKEN@{domain.decode()}>: '
                f'{content[:80]!r}')
            continue
        row = int(m.group(1))
        tokens.add(m.group(2))
        if not re.match(rb'^[0-9a-f]{16}$', m.group(2)):
            err(f'row {row} ({path}): TOKEN {m.group(2)!r} is not 16 lowercase hex digits')
        got[row] = got.get(row, 0) + 1
        if row in refused:
            err(f'row {row} ({path}): a refused row was delivered')
            continue
        if row not in want:
            err(f'row {row} ({path}): no such row')
            continue
        wmsg, wsnd, wrcpt = want[row]
        if (sender, rcpts) != (wsnd, [wrcpt]):
            err(f'row {row} ({path}): envelope {sender!r} -> {rcpts!r}, want '
                f'{wsnd!r} -> [{wrcpt!r}]')
        wl = wmsg.index(b'\r\n') + 2
        rest_w, rest_g = wmsg[wl:], content[m.end():]
        if rest_w.startswith(b'Date: *\r\n'):
            rest_w = rest_w[len(b'Date: *\r\n'):]
            e = rest_g.find(b'\r\n')
            if not rest_g.startswith(b'Date: ') or e < 0 or not DATE_RE.match(rest_g[6:e]):
                err(f'row {row} ({path}): want a Date line second, got {rest_g[:60]!r}')
                continue
            rest_g = rest_g[e + 2:]
        if rest_w != rest_g:
            i = next((k for k in range(min(len(rest_w), len(rest_g))) if rest_w[k] != rest_g[k]),
                     min(len(rest_w), len(rest_g)))
            err(f'row {row} ({path}): content differs at byte {i} after the generated lines '
                f'(expected {len(rest_w)} bytes, received {len(rest_g)})\n'
                f'      expected: {show(rest_w, i)}\n      received: {show(rest_g, i)}')
    if len(tokens) > 1:
        err(f'{len(tokens)} different TOKENs in one job: {sorted(tokens)[:4]}')
    missing = sorted(set(want) - set(got))
    if missing:
        err(f'{len(missing)} rendered rows not received, e.g. {missing[:10]}')
    dups = {r: c for r, c in got.items() if c > 1}
    if dups and not allow_dups:
        err(f'{len(dups)} rows received more than once, e.g. {sorted(dups)[:10]}')
    print(f'compare: {len(files)} received, {len(want)} expected, {len(refused)} refused, '
          f'{len(missing)} missing, {sum(c - 1 for c in dups.values())} duplicates, '
          f'{len(errors)} problems, token {",".join(t.decode("ascii", "replace") for t in sorted(tokens)[:3]) or "-"}')
    for e in errors[:10]:
        print('  ' + e)
    return 1 if errors else 0


# ------------------------------------------------------------ selftest ----

README_EXAMPLE = (
    b'X-Sluice-Job: 1\n'
    b'X-Sender: <bounces@news.example.com>\n'
    b'X-Job: spring-sale-2026\n'
    b'X-Pool: warm-ips\n'
    b'X-Template-Bytes: 160\n'
    b'From: News <news@news.example.com>\n'
    b'To: {{name|Customer}} <{{email}}>\n'
    b'Subject: {{name|Hello}}, your spring offer\n'
    b'\n'
    b'Dear {{name|customer}}, your code is {{code}}.\n'
    b'email,name,code\n'
    b'alice@example.org,Alice,A-100\n'
    b'bob@example.net,,B-200\n'
    b'"carol@example.com","Carol ""CC"" Jones",C-300\n')


def job_bytes(template, csv, sender=b'<s@x.example>', extra=b''):
    return (b'X-Sluice-Job: 1\nX-Sender: ' + sender + b'\nX-Job: t\n' + extra +
            b'X-Template-Bytes: %d\n' % len(template) + template + csv)


def selftest():
    j = Job(README_EXAMPLE)
    rows = list(j.rows())
    assert [r[0] for r in rows] == [1, 2, 3] and all(r[2] for r in rows), rows
    assert rows[0][2] == (b'Message-ID: <1.*@news.example.com>\r\nDate: *\r\n'
                          b'From: News <news@news.example.com>\r\n'
                          b'To: Alice <alice@example.org>\r\n'
                          b'Subject: Alice, your spring offer\r\n\r\n'
                          b'Dear Alice, your code is A-100.\r\n'), rows[0][2]
    assert rows[1][2].endswith(b'To: Customer <bob@example.net>\r\nSubject: Hello, your spring '
                               b'offer\r\n\r\nDear customer, your code is B-200.\r\n')
    assert b'To: Carol "CC" Jones <carol@example.com>\r\n' in rows[2][2]
    assert rows[2][4] == b'carol@example.com'
    assert [r[1] for r in rows] == [12, 13, 14]
    # The 160 of the example is right: the template ends at the CSV.
    assert README_EXAMPLE[README_EXAMPLE.index(b'From:'):].index(b'email,') == 160

    # RFC 2047: display name only, quotes removed, other fields whole.
    tpl = (b'From: "{{n}}" <a@x.example>\nTo: {{n}} <{{email}}>\nCc: j\xc3\xb6rg@x.example\n'
           b'Subject:  \xc3\x9cber {{n}} \n  folded\nX-Plain: {{n}}\nMessage-ID: <old@x>\n'
           b'  <cont>\nDate: Tue, 1 Dec 2026 10:00:00 +0000\n\nBody {{n}} {{ n }} {{n|}} {{zz|d}}\n')
    j = Job(job_bytes(tpl, b'email,n\r\nu@d.example,J\xc3\xb6rg\r\nv@d.example,Ann\r\n'))
    r1, r2 = [r[2] for r in j.rows()]
    enc = b'=?UTF-8?B?' + base64.b64encode('Jörg'.encode()) + b'?='
    assert r1.startswith(b'Message-ID: <1.*@x.example>\r\nFrom: ' + enc + b' <a@x.example>\r\n'
                         b'To: ' + enc + b' <u@d.example>\r\nCc: j\xc3\xb6rg@x.example\r\n'
                         b'Subject: =?UTF-8?B?' + base64.b64encode('Über Jörg   folded'.encode())
                         + b'?=\r\nX-Plain: ' + enc + b'\r\nDate: Tue'), r1
    assert r1.endswith(b'\r\n\r\nBody J\xc3\xb6rg {{ n }} J\xc3\xb6rg d\r\n'), r1
    assert b'From: "Ann" <a@x.example>\r\nTo: Ann <v@d.example>\r\n' in r2
    assert b'Subject: =?UTF-8?B?' in r2 and b'<old@x>' not in r2 and b'<cont>' not in r2

    # Pieces of at most 45 bytes, never inside a character.
    e = b_encode('ä'.encode() * 30)          # 60 bytes: 44 + 16
    parts = e.split(b'\r\n ')
    assert [len(base64.b64decode(p[10:-2])) for p in parts] == [44, 16], e
    e = b_encode(b'a' + 'ä'.encode() * 30)   # 61 bytes: 45 + 16
    assert [len(base64.b64decode(p[10:-2])) for p in e.split(b'\r\n ')] == [45, 16]
    e = b_encode(b'\x80' * 50)                # no character boundary: cut at 45
    assert [len(base64.b64decode(p[10:-2])) for p in e.split(b'\r\n ')] == [45, 5]

    # Refusals, with line numbers of multi-line records.
    tpl = b'Subject: {{s}}\n\n{{b}} {{req}}\n'
    csv = (b'email,s,b,req\n'
           b'a@d.example,ok,"multi\nline body",r\n'        # line 9, row 1: fine
           b'b@d.example,"inj\nBcc: x@evil",b,r\n'          # line 11, row 2: injection
           b'c@d.example,s,b,\n'                              # line 13, row 3: missing
           b'\n'                                              # line 14: skipped
           b'd@d.example,s,b\n'                               # line 15, row 4: field count
           b'e@d.example,s,"nul\x00",r\n'                     # line 16, row 5: NUL in body
           b'f d@d.example,s,b,r\n'                           # line 17, row 6: bad email
           b'"<g@d.example>",s,b,r\n'                         # line 18, row 7: bad email
           b'noat,s,b,r\r\n'                                  # line 19, row 8: bad email
           b'h@d.example,"a\rb",b,r\n'                        # line 20, row 9: injection (CR)
           b'i@d.example,"x,""y""",b,r')                      # line 21, row 10: fine, no LF
    j = Job(job_bytes(tpl, csv))
    got = [(r[0], r[1], r[3]) for r in j.rows()]
    assert got == [(1, 9, None), (2, 11, 'header-injection'), (3, 13, 'missing-field'),
                   (4, 15, 'field-count'), (5, 16, 'nul-in-body'), (6, 17, 'bad-email'),
                   (7, 18, 'bad-email'), (8, 19, 'bad-email'), (9, 20, 'header-injection'),
                   (10, 21, None)], got
    msgs = {r[0]: r[2] for r in j.rows() if r[2]}
    assert msgs[1].endswith(b'Subject: ok\r\n\r\nmulti\r\nline body r\r\n'), msgs[1]
    assert b'Subject: x,"y"\r\n' in msgs[10]

    # Whole-job refusals.
    for bad in (job_bytes(b'Subject: {{x}}\n\nb\n', b'email\na@b.c\n'),
                job_bytes(b'S: s\n\nb\n', b'email\na@b.c\n').replace(b'X-Sluice-Job', b'X-SLUICE-JOB'),
                job_bytes(b'S: s\n\nb\n', b'mail\na@b.c\n'),
                job_bytes(b'S: s\n\nb\n', b'email,email\na@b.c,d\n'),
                job_bytes(b'S: s\n\nb\n', b'email,a b\na@b.c,d\n'),
                job_bytes(b'S: s\n\nb\n', b'email\na@b.c\n', extra=b'X-Other: 1\n'),
                job_bytes(b'S: s\n\nb\n', b'email\na@b.c\n', extra=b'X-Job: again\n'),
                b'X-Sender: <a@b.c>\nX-Job: j\nX-Template-Bytes: 1\nx\nemail\n',
                b'X-Sluice-Job: 1\nX-Job: j\nX-Template-Bytes: 1\nx\nemail\n',
                b'X-Sluice-Job: 1\nX-Sender: <a@b.c>\nX-Template-Bytes: 1\nx\nemail\n',
                b'X-Sluice-Job: 1\nX-Sender: <a@b.c>\nX-Job: j\nX-Template-Bytes: 99\nx\n'):
        try:
            Job(bad)
        except JobRefused:
            continue
        raise AssertionError(f'not refused: {bad!r}')
    # A name that is not a column, with a default; the null sender; BOM; CRLF head.
    j = Job(b'X-Sluice-Job: 1\r\nx-sender: <>\r\nX-Job: j\r\nX-Template-Bytes: 16\r\n'
            b'S: {{zz|dflt}}\n\n\xef\xbb\xbfemail\r\na@b.c\r\n')
    (r,) = list(j.rows())
    assert r[2] == b'Message-ID: <1.*@sluice.invalid>\r\nDate: *\r\nS: dflt\r\n\r\n', r
    assert r[1] == 8
    # A template without an empty line: all header, the empty line still made.
    (r,) = list(Job(job_bytes(b'Subject: s {{a}}\nX-H: h', b'email,a\nu@d.example,V\n')).rows())
    assert r[2] == b'Message-ID: <1.*@x.example>\r\nDate: *\r\nSubject: s V\r\nX-H: h\r\n\r\n', r
    print('job_render selftest: ok')
    return 0


def main(argv):
    if argv[:1] == ['--selftest']:
        return selftest()
    if argv[:1] == ['--rows']:
        return captured_rows(argv[1:])
    if argv[:1] == ['--compare']:
        argv = argv[1:]
        allow, sender = False, None
        while argv[:1] in (['--allow-dups'], ['--sender']):
            if argv[0] == '--allow-dups':
                allow, argv = True, argv[1:]
            else:
                sender, argv = argv[1].encode(), argv[2:]
        if len(argv) < 1:
            sys.exit(__doc__)
        return compare(argv[0], argv[1:], allow, sender)
    max_bytes = 64 << 20
    if argv[:1] == ['--max-message-bytes']:
        max_bytes, argv = int(argv[1]), argv[2:]
    if len(argv) != 2:
        sys.exit(__doc__)
    return render_file(argv[0], argv[1], max_bytes)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
