/* engine/lib/job_file.c - job files (README "Job files"): the head, the
 * template cut into pieces, CSV framing and splitting, and the rendering of
 * one row into spool-file text. Pure functions, no I/O.
 *
 * Readings of the README chosen where it leaves room (the simplest one
 * each time; a renderer written from the same text must agree):
 *  - Head: the first line is exactly "X-Sluice-Job: 1" (case and spaces
 *    as written). X-Sender/X-Job/X-Pool come in any order, before
 *    X-Template-Bytes. Values lose their leading and trailing spaces and
 *    tabs. X-Sender's value loses one pair of <> when it has them (as an
 *    envelope's X-Sender does), an empty value is the null sender like
 *    "<>". X-Job and X-Pool must be non-empty and hold no control byte
 *    (below 0x20, tab included, or 0x7f). X-Template-Bytes: decimal
 *    digits only.
 *  - Template: its line ends (LF, CRLF, bare CR) are made CRLF once, when
 *    the job is prepared (so job_head.tpl holds the CRLF form); since a
 *    {{...}} never spans a line end this is the same as converting each
 *    literal piece as it is emitted. The header part is everything up to
 *    the first empty line (the whole template when there is none; then the
 *    body is empty); a field is a line and the continuation lines (SP or
 *    HTAB first) after it; a line starting with SP/HTAB at the very start
 *    of the header part is a field of its own. "Message-ID" and "Date"
 *    fields are those whose first line starts with "Message-ID:" or
 *    "Date:" (any case, no space before the colon). A Message-ID field is
 *    dropped, with its {{...}}, before the template's names are checked.
 *  - Substitution is what a leftmost regular-expression search for
 *    \{\{([A-Za-z0-9_-]+)(\|[^}\r\n]*)?\}\} gives: where "{{" starts no
 *    match, the scan moves on by one byte ("{{{a}}" is "{" and a's value).
 *    {{name|}} has a default (empty).
 *  - CSV: a field is quoted when its first byte is '"'; inside, "" is one
 *    '"', and a lone '"' ends the quotes; bytes after the closing quote,
 *    up to the next ',' or line end, are kept as they are (as Python's csv
 *    module reads "ab"c: abc); a '"' inside an unquoted field is a plain
 *    byte; a quote never closed runs to the record's end. Only LF (alone
 *    or after CR) outside quotes ends a record; a bare CR is data. Line
 *    numbers count LF bytes.
 *  - A row's refusal reason is that of the first rule it breaks in
 *    README's order: the field count, then a required field (the first in
 *    template order), then a value in a header or body (template order),
 *    then the email check. Values are "used" only where not empty (an
 *    empty value with a default uses the default). The email value is
 *    checked as it is (no spaces or <> stripped).
 *  - The body's template bytes get CRLF line ends; values put into the
 *    body are emitted as they are, and no final CRLF is added
 *    (envelope_parse normalises the body's line ends and adds it). Each
 *    header field is emitted with a final CRLF, also the template's last
 *    one when the template has no line end after it.
 *  - RFC 2047: a field whose first line has no ':' is left as it is.
 *    "Name" is the bytes before the first ':' (as they are); an address
 *    field is one whose Name is From/To/Cc/Bcc/Reply-To/Sender in any case.
 *    A display name's surrounding quotes go when it is at least 2 bytes
 *    and starts and ends with '"' (nothing inside is unescaped). A field
 *    whose stripped value is empty (the 8-bit byte was in its name)
 *    becomes "Name: " (no encoded word). */
#define _GNU_SOURCE
#include "job_file.h"
#include "envelope.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WHY(...) snprintf(why, why_len, __VA_ARGS__)

static bool is_name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void strip_wsp(const char **p, size_t *len)
{
	while (*len && is_wsp(**p)) {
		(*p)++;
		(*len)--;
	}
	while (*len && is_wsp((*p)[*len - 1]))
		(*len)--;
}

/* ---- the head ---- */

static bool has_control(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

/* Takes X-Job's or X-Pool's value into *dst. */
static bool take_name_value(char **dst, const char *name, const char *v, size_t vlen, char *why,
                            size_t why_len)
{
	if (*dst) {
		WHY("more than one %s line", name);
		return false;
	}
	if (vlen == 0) {
		WHY("%s is empty", name);
		return false;
	}
	if (has_control(v, vlen)) {
		WHY("%s contains a control character", name);
		return false;
	}
	if (!strcmp(name, "X-Job") && vlen > JOB_NAME_MAX) {
		WHY("X-Job is longer than %d bytes", JOB_NAME_MAX);
		return false;
	}
	*dst = xstrndup(v, vlen);
	return true;
}

static bool take_sender(struct job_head *h, const char *v, size_t vlen, char *why, size_t why_len)
{
	if (h->sender) {
		WHY("more than one X-Sender line");
		return false;
	}
	if (vlen >= 2 && v[0] == '<' && v[vlen - 1] == '>') {
		v++;
		vlen -= 2;
	}
	const char *bad = address_check(v, vlen, true);
	if (bad) {
		WHY("X-Sender: %s", bad);
		return false;
	}
	h->sender = xstrndup(v, vlen);
	return true;
}

static bool take_template_bytes(const char *v, size_t vlen, size_t *tpl_len, char *why,
                                size_t why_len)
{
	size_t n = 0;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9') {
			vlen = 0;
			break;
		}
		if (n <= JOB_TEMPLATE_MAX)
			n = n * 10 + (size_t)(v[i] - '0');
	}
	if (vlen == 0) {
		WHY("X-Template-Bytes is not a decimal number");
		return false;
	}
	if (n > JOB_TEMPLATE_MAX) {
		WHY("X-Template-Bytes larger than %u", JOB_TEMPLATE_MAX);
		return false;
	}
	*tpl_len = n;
	return true;
}

/* One head line after the first (line_len without its line end); *done
 * when it was X-Template-Bytes. */
static bool head_line(struct job_head *h, const char *p, size_t line_len, size_t *tpl_len,
                      bool *done, char *why, size_t why_len)
{
	static const char *const names[] = { "X-Sender:", "X-Job:", "X-Pool:", "X-Template-Bytes:" };
	for (int k = 0; k < 4; k++) {
		size_t n = prefix_ci(p, line_len, names[k]);
		if (!n)
			continue;
		const char *v = p + n;
		size_t vlen = line_len - n;
		strip_wsp(&v, &vlen);
		switch (k) {
		case 0: return take_sender(h, v, vlen, why, why_len);
		case 1: return take_name_value(&h->job, "X-Job", v, vlen, why, why_len);
		case 2: return take_name_value(&h->pool, "X-Pool", v, vlen, why, why_len);
		default:
			*done = true;
			return take_template_bytes(v, vlen, tpl_len, why, why_len);
		}
	}
	if (line_len == 0) {
		WHY("empty line in the head (before X-Template-Bytes)");
		return false;
	}
	char esc[80];
	char line[64];
	size_t n = line_len < sizeof(line) - 1 ? line_len : sizeof(line) - 1;
	memcpy(line, p, n);
	line[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (!line[i])
			line[i] = ' '; /* escape_text stops at a NUL */
	WHY("unknown head line '%s%s'", escape_text(line, esc, sizeof(esc)),
	    line_len > n ? "..." : "");
	return false;
}

bool job_head_parse(struct job_head *h, const char *buf, size_t len, size_t *tpl_off,
                    size_t *tpl_len, char *why, size_t why_len)
{
	memset(h, 0, sizeof(*h));
	h->email_column = -1;
	size_t lim = len < JOB_HEAD_MAX ? len : JOB_HEAD_MAX;
	size_t magic = strlen(JOB_MAGIC);
	const char *nl = memchr(buf, '\n', lim);
	size_t first = nl ? (size_t)(nl - buf) : lim;
	if (first && buf[first - 1] == '\r')
		first--;
	if (!nl || first != magic || memcmp(buf, JOB_MAGIC, magic) != 0) {
		WHY("not a job file: the first line is not '" JOB_MAGIC "'");
		return false;
	}
	size_t p = (size_t)(nl - buf) + 1;
	bool done = false;
	while (!done) {
		nl = memchr(buf + p, '\n', lim - p);
		if (!nl) {
			if (lim == JOB_HEAD_MAX)
				WHY("no X-Template-Bytes line in the head's first %u bytes", JOB_HEAD_MAX);
			else
				WHY("the file ends before an X-Template-Bytes line");
			goto fail;
		}
		size_t line_len = (size_t)(nl - buf) - p;
		if (line_len && buf[p + line_len - 1] == '\r')
			line_len--;
		if (!head_line(h, buf + p, line_len, tpl_len, &done, why, why_len))
			goto fail;
		p = (size_t)(nl - buf) + 1;
	}
	if (!h->sender) {
		WHY("no X-Sender line");
		goto fail;
	}
	if (!h->job) {
		WHY("no X-Job line");
		goto fail;
	}
	*tpl_off = p;
	return true;
fail:
	job_head_free(h);
	return false;
}

/* ---- CSV ---- */

/* The framing automaton (job_csv_record); job_csv_split reads the same way. */
enum csv_state { CSV_START, CSV_PLAIN, CSV_QUOTED, CSV_QUOTE_SEEN };

size_t job_csv_record(const char *buf, size_t len, bool at_eof, unsigned *lines, bool *too_long)
{
	*too_long = false;
	size_t lim = len < JOB_RECORD_MAX ? len : JOB_RECORD_MAX;
	enum csv_state st = CSV_START;
	unsigned n = 0;
	for (size_t i = 0; i < lim; i++) {
		char c = buf[i];
		if (c == '\n')
			n++;
		switch (st) {
		case CSV_QUOTED:
			if (c == '"')
				st = CSV_QUOTE_SEEN;
			continue;
		case CSV_QUOTE_SEEN:
			if (c == '"') {
				st = CSV_QUOTED;
				continue;
			}
			break;
		case CSV_START:
			if (c == '"') {
				st = CSV_QUOTED;
				continue;
			}
			break;
		case CSV_PLAIN:
			break;
		}
		/* outside quotes */
		if (c == '\n') {
			*lines = n;
			return i + 1;
		}
		st = c == ',' ? CSV_START : CSV_PLAIN;
	}
	*lines = n;
	if (at_eof && len && len <= JOB_RECORD_MAX)
		return len; /* the last record, without a line end */
	if (lim == JOB_RECORD_MAX) {
		*too_long = true;
		return JOB_RECORD_MAX;
	}
	*lines = 0;
	return 0;
}

bool job_csv_blank(const char *rec, size_t len)
{
	return (len == 1 && rec[0] == '\n') || (len == 2 && rec[0] == '\r' && rec[1] == '\n');
}

/* A field's value: p/len, or (while splitting) copied into the scratch
 * buffer at off when unquoting changed it (p NULL). */
struct field {
	const char *p;
	size_t len;
	size_t off;
};

static bool line_end_at(const char *rec, size_t len, size_t i)
{
	return rec[i] == '\n' || (rec[i] == '\r' && i + 1 < len && rec[i + 1] == '\n');
}

/* Appends rec[from, to) to the field's copy, making one (of what it held
 * so far) if it has none. */
static void field_copy(struct field *f, struct buf *scratch, const char *from, const char *to)
{
	if (f->p) {
		size_t off = scratch->len;
		if (f->len)
			buf_add(scratch, f->p, f->len);
		f->p = NULL;
		f->off = off;
	}
	if (to > from) /* buf_add of nothing to an empty buffer: memcpy to NULL */
		buf_add(scratch, from, (size_t)(to - from));
	f->len += (size_t)(to - from);
}

/* Splits one record into its fields (at most max stored, all counted;
 * stops at the first line end outside quotes). Unquoted values that
 * changed go into scratch (appended to). */
static unsigned csv_split(const char *rec, size_t len, struct field *fs, unsigned max,
                          struct buf *scratch)
{
	struct field dummy;
	size_t i = 0;
	unsigned n = 0;
	for (;;) {
		struct field *f = n < max ? &fs[n] : &dummy;
		n++;
		if (i < len && rec[i] == '"') {
			size_t seg = ++i;
			f->p = rec + seg;
			f->len = 0;
			for (;;) {
				const char *q = memchr(rec + i, '"', len - i);
				if (!q) { /* never closed: to the record's end */
					if (f->p)
						f->len = len - seg;
					else
						field_copy(f, scratch, rec + seg, rec + len);
					return n;
				}
				size_t qi = (size_t)(q - rec);
				if (qi + 1 < len && rec[qi + 1] == '"') { /* "" is one " */
					field_copy(f, scratch, rec + seg, rec + qi + 1);
					i = seg = qi + 2;
					continue;
				}
				if (f->p)
					f->len = qi - seg;
				else
					field_copy(f, scratch, rec + seg, rec + qi);
				i = qi + 1;
				break;
			}
			size_t t = i; /* bytes after the closing quote, kept */
			while (i < len && rec[i] != ',' && !line_end_at(rec, len, i))
				i++;
			if (i > t)
				field_copy(f, scratch, rec + t, rec + i);
		} else {
			size_t t = i;
			while (i < len && rec[i] != ',' && !line_end_at(rec, len, i))
				i++;
			f->p = rec + t;
			f->len = i - t;
		}
		if (i < len && rec[i] == ',') {
			i++;
			continue;
		}
		return n;
	}
}

static void fields_fix(struct field *fs, unsigned n, const struct buf *scratch)
{
	for (unsigned k = 0; k < n; k++)
		if (!fs[k].p)
			fs[k].p = scratch->p + fs[k].off;
}

/* ---- preparing the template ---- */

/* The template with every line end (LF, CRLF, bare CR) made CRLF. */
static char *to_crlf(const char *src, size_t len, size_t *out_len)
{
	char *out = xmalloc(len * 2 + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] == '\r' || src[i] == '\n') {
			if (src[i] == '\r' && i + 1 < len && src[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
		} else {
			out[o++] = src[i];
		}
	}
	out[o] = 0;
	*out_len = o;
	return out;
}

/* End of the CRLF line starting at i (after its CRLF), or len. */
static size_t line_next(const char *p, size_t len, size_t i)
{
	const char *nl = memchr(p + i, '\n', len - i);
	return nl ? (size_t)(nl - p) + 1 : len;
}

/* End of the field starting at i: its line and the continuation lines. */
static size_t field_next(const char *p, size_t len, size_t i)
{
	size_t e = line_next(p, len, i);
	while (e < len && is_wsp(p[e]))
		e = line_next(p, len, e);
	return e;
}

static void add_piece(struct job_head *h, size_t *cap, const struct job_piece *pc)
{
	if (h->npieces == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		h->pieces = xrealloc(h->pieces, *cap * sizeof(*h->pieces));
	}
	h->pieces[h->npieces++] = *pc;
}

static int column_of(const struct job_head *h, const char *name, size_t len)
{
	for (unsigned k = 0; k < h->ncolumns; k++)
		if (strlen(h->columns[k]) == len && memcmp(h->columns[k], name, len) == 0)
			return (int)k;
	return -1;
}

/* Length of a {{name}} or {{name|text}} at p (which starts with "{{"), or
 * 0 if none starts there; its name and default (NULL: none). */
static size_t match_token(const char *p, size_t len, size_t *name_len, const char **def,
                          size_t *def_len)
{
	size_t i = 2;
	while (i < len && is_name_char((unsigned char)p[i]))
		i++;
	if (i == 2)
		return 0;
	*name_len = i - 2;
	*def = NULL;
	*def_len = 0;
	if (i < len && p[i] == '|') {
		size_t d = ++i;
		while (i < len && p[i] != '}' && p[i] != '\r' && p[i] != '\n')
			i++;
		*def = p + d;
		*def_len = i - d;
	}
	if (i + 1 < len && p[i] == '}' && p[i + 1] == '}')
		return i + 2;
	return 0;
}

/* Cuts tpl[from, to) into pieces. */
static bool cut_pieces(struct job_head *h, size_t *cap, size_t from, size_t to, bool in_header,
                       char *why, size_t why_len)
{
	const char *t = h->tpl;
	size_t lit = from, i = from;
	while (i + 1 < to) {
		const char *o = memchr(t + i, '{', to - i - 1);
		if (!o)
			break;
		i = (size_t)(o - t);
		if (t[i + 1] != '{') {
			i++;
			continue;
		}
		size_t name_len, def_len;
		const char *def;
		size_t n = match_token(t + i, to - i, &name_len, &def, &def_len);
		if (!n) {
			i++;
			continue;
		}
		if (i > lit)
			add_piece(h, cap, &(struct job_piece){ .text = t + lit, .len = i - lit,
			                                      .column = -1, .in_header = in_header });
		int col = column_of(h, t + i + 2, name_len);
		if (col < 0 && !def) {
			WHY("the template uses {{%.*s}} (no default) but there is no column %.*s",
			    (int)(name_len > 64 ? 64 : name_len), t + i + 2,
			    (int)(name_len > 64 ? 64 : name_len), t + i + 2);
			return false;
		}
		add_piece(h, cap, &(struct job_piece){ .column = col, .def = def, .def_len = def_len,
		                                      .in_header = in_header });
		i += n;
		lit = i;
	}
	if (to > lit)
		add_piece(h, cap, &(struct job_piece){ .text = t + lit, .len = to - lit, .column = -1,
		                                      .in_header = in_header });
	return true;
}

/* The CSV's first record: the column names. */
static bool take_columns(struct job_head *h, const char *rec, size_t rec_len, char *why,
                         size_t why_len)
{
	if (rec_len >= 3 && memcmp(rec, "\xef\xbb\xbf", 3) == 0) {
		rec += 3;
		rec_len -= 3;
	}
	struct buf scratch = { 0 };
	struct field fs[JOB_COLUMNS_MAX];
	unsigned n = csv_split(rec, rec_len, fs, JOB_COLUMNS_MAX, &scratch);
	bool ok = false;
	if (n > JOB_COLUMNS_MAX) {
		WHY("%u columns, more than %u", n, JOB_COLUMNS_MAX);
		goto out;
	}
	fields_fix(fs, n, &scratch);
	h->columns = xcalloc(n, sizeof(*h->columns));
	for (unsigned k = 0; k < n; k++) {
		bool good = fs[k].len > 0;
		for (size_t i = 0; i < fs[k].len; i++)
			good = good && is_name_char((unsigned char)fs[k].p[i]);
		if (!good) {
			char esc[80], name[64];
			size_t l = fs[k].len < sizeof(name) - 1 ? fs[k].len : sizeof(name) - 1;
			memcpy(name, fs[k].p, l);
			name[l] = 0;
			for (size_t i = 0; i < l; i++)
				if (!name[i])
					name[i] = ' ';
			WHY("column %u's name '%s' is not letters, digits, '_' and '-'", k + 1,
			    escape_text(name, esc, sizeof(esc)));
			goto out;
		}
		if (column_of(h, fs[k].p, fs[k].len) >= 0) {
			WHY("column %.*s appears twice", (int)fs[k].len, fs[k].p);
			goto out;
		}
		h->columns[h->ncolumns++] = xstrndup(fs[k].p, fs[k].len);
	}
	h->email_column = column_of(h, "email", 5);
	if (h->email_column < 0) {
		WHY("no column named email");
		goto out;
	}
	ok = true;
out:
	buf_free(&scratch);
	return ok;
}

/* The template's line (from 1) that holds byte i. */
static size_t line_of_offset(const char *t, size_t i)
{
	size_t n = 1;
	for (size_t k = 0; k < i; k++)
		n += t[k] == '\n';
	return n;
}

bool job_head_prepare(struct job_head *h, const char *tpl, size_t tpl_len, const char *rec,
                      size_t rec_len, char *why, size_t why_len)
{
	if (!take_columns(h, rec, rec_len, why, why_len))
		return false;
	size_t len;
	char *t = to_crlf(tpl, tpl_len, &len);
	/* the header part: up to the first empty line */
	size_t hdr = 0;
	while (hdr < len && !(t[hdr] == '\r' && hdr + 1 < len && t[hdr + 1] == '\n'))
		hdr = line_next(t, len, hdr);
	/* drop the Message-ID fields, note a Date field; a field's name is
	 * written out: a {{...}} before its colon could make a row's value a
	 * field of its own (a second Message-ID, a Date, a Bcc) */
	size_t o = 0, i = 0;
	while (i < hdr) {
		size_t e = field_next(t, hdr, i);
		size_t line_end = line_next(t, e, i);
		const char *colon = memchr(t + i, ':', line_end - i);
		const char *subst = memmem(t + i, (colon ? (size_t)(colon - t) : line_end) - i, "{{", 2);
		if (t[i] != ' ' && t[i] != '\t' && subst) {
			WHY("template line %zu: a header field's name holds {{: write the name out, only its value may be "
			    "filled in", line_of_offset(t, i));
			free(t);
			return false;
		}
		if (prefix_ci(t + i, e - i, "Message-ID:"))
			;
		else {
			if (prefix_ci(t + i, e - i, "Date:"))
				h->has_date = true;
			memmove(t + o, t + i, e - i);
			o += e - i;
		}
		i = e;
	}
	memmove(t + o, t + hdr, len - hdr);
	len -= hdr - o;
	hdr = o;
	t[len] = 0;
	h->tpl = t;
	h->tpl_len = len;
	size_t body = hdr < len ? hdr + 2 : len; /* after the empty line */
	size_t cap = 0;
	return cut_pieces(h, &cap, 0, hdr, true, why, why_len) &&
	       cut_pieces(h, &cap, body, len, false, why, why_len);
}

void job_head_free(struct job_head *h)
{
	free(h->sender);
	free(h->job);
	free(h->pool);
	free(h->tpl);
	free(h->pieces);
	for (unsigned k = 0; k < h->ncolumns; k++)
		free(h->columns[k]);
	free(h->columns);
	memset(h, 0, sizeof(*h));
	h->email_column = -1;
}

/* ---- rendering ---- */

/* Copies out's own bytes [off, off+n) to its end. */
static void buf_copy_within(struct buf *b, size_t off, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, b->p + off, n);
	b->len += n;
}

static void add_u64(struct buf *b, uint64_t v)
{
	char d[24];
	int n = 0;
	do {
		d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_add(b, d + sizeof(d) - n, (size_t)n);
}

static void add_base64(struct buf *b, const unsigned char *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	buf_reserve(b, (n + 2) / 3 * 4);
	char *o = b->p + b->len;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	b->len = (size_t)(o - b->p);
}

#define RFC2047_PIECE 45

/* Appends s[0, n) (which lies in b itself, at offset off) as RFC 2047
 * encoded words: pieces of at most 45 bytes, cut before a UTF-8
 * continuation byte (0x80-0xBF) only when a piece holds nothing else. */
static void add_encoded(struct buf *b, size_t off, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t end = i + RFC2047_PIECE < n ? i + RFC2047_PIECE : n;
		if (end < n) {
			size_t e = end;
			while (e > i && ((unsigned char)b->p[off + e] & 0xc0) == 0x80)
				e--;
			if (e > i)
				end = e;
		}
		if (i)
			buf_add(b, "\r\n ", 3);
		buf_add(b, "=?UTF-8?B?", 10);
		buf_reserve(b, (end - i + 2) / 3 * 4 + 2);
		add_base64(b, (const unsigned char *)b->p + off + i, end - i); /* reserved: p stays */
		buf_add(b, "?=", 2);
		i = end;
	}
}

static bool is_address_field(const char *name, size_t n)
{
	static const char *const names[] = { "From", "To", "Cc", "Bcc", "Reply-To", "Sender" };
	for (size_t k = 0; k < ARRAY_LEN(names); k++)
		if (strlen(names[k]) == n && strncasecmp(name, names[k], n) == 0)
			return true;
	return false;
}

/* Appends the field out[f, e) (CRLF lines, 8-bit) RFC 2047 encoded, or as
 * it is when the README says so. */
static void encode_field(struct buf *out, size_t f, size_t e)
{
	const char *colon = memchr(out->p + f, ':', e - f);
	const char *eol = memchr(out->p + f, '\r', e - f);
	if (!colon || (eol && eol < colon)) {
		buf_copy_within(out, f, e - f);
		return;
	}
	size_t name_len = (size_t)(colon - (out->p + f));
	/* the value, unfolded, at the end of out: u */
	size_t u = out->len;
	for (size_t i = f + name_len + 1; i < e;) {
		const char *cr = memchr(out->p + i, '\r', e - i);
		size_t stop = cr ? (size_t)(cr - out->p) : e;
		buf_copy_within(out, i, stop - i);
		i = stop + 2; /* only CRLF pairs: values with CR or LF never got here */
	}
	const char *v = out->p + u;
	size_t vlen = out->len - u;
	strip_wsp(&v, &vlen);
	size_t vo = (size_t)(v - out->p);
	size_t enc_off = vo, enc_len = vlen, rest = 0, rest_len = 0;
	bool address = is_address_field(out->p + f, name_len);
	if (address) {
		const char *lt = NULL;
		for (size_t i = vlen; i-- > 0;)
			if (v[i] == '<') {
				lt = v + i;
				break;
			}
		const char *d = v;
		size_t dlen = lt ? (size_t)(lt - v) : 0;
		strip_wsp(&d, &dlen);
		if (dlen >= 2 && d[0] == '"' && d[dlen - 1] == '"') {
			d++;
			dlen -= 2;
		}
		if (!lt || !bytes_8bit(d, dlen)) {
			out->len = u;
			buf_copy_within(out, f, e - f);
			return;
		}
		enc_off = (size_t)(d - out->p);
		enc_len = dlen;
		rest = (size_t)(lt - out->p);
		rest_len = vlen - (size_t)(lt - v);
	}
	size_t w = out->len; /* the new field, written after the value, then moved down to u */
	buf_copy_within(out, f, name_len);
	buf_add(out, ": ", 2);
	add_encoded(out, enc_off, enc_len);
	if (address) {
		buf_add(out, " ", 1);
		buf_copy_within(out, rest, rest_len);
	}
	buf_add(out, "\r\n", 2);
	memmove(out->p + u, out->p + w, out->len - w);
	out->len = u + (out->len - w);
}

/* The header fields at out[base, end) (CRLF lines) with 8-bit ones
 * encoded: written after them, then moved down to base. */
static void encode_header(struct buf *out, size_t base)
{
	size_t end = out->len;
	for (size_t f = base; f < end;) {
		size_t e = field_next(out->p, end, f);
		if (bytes_8bit(out->p + f, e - f))
			encode_field(out, f, e);
		else
			buf_copy_within(out, f, e - f);
		f = e;
	}
	memmove(out->p + base, out->p + end, out->len - end);
	out->len = base + (out->len - end);
}

static bool has_byte(const char *p, size_t n, bool header)
{
	if (memchr(p, 0, n))
		return true;
	return header && (memchr(p, '\r', n) || memchr(p, '\n', n));
}

/* The README's row checks, in its order; false with why. */
static bool row_check(const struct job_head *h, const struct field *fs, char *why, size_t why_len)
{
	for (size_t k = 0; k < h->npieces; k++) {
		const struct job_piece *pc = &h->pieces[k];
		if (!pc->text && pc->column >= 0 && !pc->def && fs[pc->column].len == 0) {
			WHY("missing required field %s", h->columns[pc->column]);
			return false;
		}
	}
	for (size_t k = 0; k < h->npieces; k++) {
		const struct job_piece *pc = &h->pieces[k];
		if (pc->text || pc->column < 0)
			continue;
		const struct field *f = &fs[pc->column];
		if (f->len && has_byte(f->p, f->len, pc->in_header)) {
			if (pc->in_header)
				WHY("field %s holds a line break or NUL, used in a header",
				    h->columns[pc->column]);
			else
				WHY("field %s holds a NUL, used in the body", h->columns[pc->column]);
			return false;
		}
	}
	const struct field *em = &fs[h->email_column];
	const char *bad = address_check(em->p, em->len, false);
	if (bad) {
		WHY("email: %s", bad);
		return false;
	}
	return true;
}

static void add_piece_text(struct buf *out, const struct job_piece *pc, const struct field *fs)
{
	if (pc->text)
		buf_add(out, pc->text, pc->len);
	else if (pc->column >= 0 && fs[pc->column].len)
		buf_add(out, fs[pc->column].p, fs[pc->column].len);
	else if (pc->def_len)
		buf_add(out, pc->def, pc->def_len);
}

bool job_render(const struct job_head *h, const char *rec, size_t rec_len, uint64_t row,
                const char *token, const char *date, struct buf *out, char *rcpt, size_t rcpt_len,
                char *why, size_t why_len)
{
	struct buf scratch = { 0 }; /* unquoted values that changed: rare */
	struct field fs[JOB_COLUMNS_MAX];
	unsigned n = csv_split(rec, rec_len, fs, JOB_COLUMNS_MAX, &scratch);
	fields_fix(fs, n < JOB_COLUMNS_MAX ? n : JOB_COLUMNS_MAX, &scratch);
	bool ok = false;
	if (rcpt_len) {
		rcpt[0] = 0;
		if (h->email_column >= 0 && (unsigned)h->email_column < n) {
			const struct field *em = &fs[h->email_column];
			size_t l = em->len < rcpt_len - 1 ? em->len : rcpt_len - 1;
			memcpy(rcpt, em->p, l);
			rcpt[l] = 0;
		}
	}
	if (n != h->ncolumns) {
		WHY("%u field%s, the header has %u", n, n == 1 ? "" : "s", h->ncolumns);
		goto out;
	}
	if (!row_check(h, fs, why, why_len))
		goto out;
	const struct field *em = &fs[h->email_column];
	buf_add(out, "X-Sender: <", 11);
	buf_adds(out, h->sender);
	buf_add(out, ">\r\nX-Receiver: <", 16);
	buf_add(out, em->p, em->len);
	buf_add(out, ">\r\nX-Job: ", 10);
	buf_adds(out, h->job);
	if (h->pool) {
		buf_add(out, "\r\nX-Pool: ", 10);
		buf_adds(out, h->pool);
	}
	buf_add(out, "\r\nMessage-ID: <", 15);
	add_u64(out, row);
	buf_add(out, ".", 1);
	buf_adds(out, token);
	buf_add(out, "@", 1);
	buf_adds(out, h->sender[0] ? address_domain(h->sender) : "sluice.invalid");
	buf_add(out, ">\r\n", 3);
	if (date && !h->has_date) {
		buf_add(out, "Date: ", 6);
		buf_adds(out, date);
		buf_add(out, "\r\n", 2);
	}
	size_t base = out->len, k = 0;
	for (; k < h->npieces && h->pieces[k].in_header; k++)
		add_piece_text(out, &h->pieces[k], fs);
	if (out->len > base && out->p[out->len - 1] != '\n')
		buf_add(out, "\r\n", 2); /* the template's last line had no line end */
	if (bytes_8bit(out->p + base, out->len - base))
		encode_header(out, base);
	buf_add(out, "\r\n", 2);
	for (; k < h->npieces; k++)
		add_piece_text(out, &h->pieces[k], fs);
	ok = true;
out:
	buf_free(&scratch);
	return ok;
}
