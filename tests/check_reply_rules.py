#!/usr/bin/env python3
"""tests/check_reply_rules.py - checks share/sluice/responses.conf against
tests/fixtures/provider_replies.txt.

The rules are read with libconfig and their texts compiled and matched with
the C library's regcomp/regexec (REG_EXTENDED | REG_ICASE) and fnmatch,
through ctypes: what sluice itself does, so an expression that is not POSIX
ERE, or a backslash libconfig swallows, fails here as it would there.

Checked: every rule is well formed (name [a-z0-9-] and unique, action,
code, at least one of code/enhanced/text, scope/duration only with suspend,
factor only with slow and 0 < f < 1, groups that providers.conf names);
each rule has a sample; each sample's FIRST matching rule is its own (a
rule limited to a group is tried in that group, one without a group in
every group of providers.conf and in one no rule names); lines whose rule is
"-" match no rule in any group.

Fixture lines: RULE<TAB>CODE<TAB>ENHANCED<TAB>TEXT, ENHANCED "-" when the
reply has none; TEXT is the reply's text after the code and the enhanced
code (a multi-line reply's lines joined by a space). '#' starts a comment.
Linux (glibc or musl): the regcomp flag values below are theirs.
Usage: check_reply_rules.py [RESPONSES [FIXTURE [PROVIDERS]]]
"""
import ctypes
import ctypes.util
import re
import sys

ROOT = __file__.rsplit('/tests/', 1)[0] if '/tests/' in __file__ else '.'
REG_EXTENDED, REG_ICASE, REG_NOSUB = 1, 2, 8
FIELDS = {'name', 'group', 'code', 'enhanced', 'text', 'action', 'scope', 'duration', 'factor'}
ACTIONS = {'slow', 'suspend', 'bounce', 'defer'}
TYPE_FLOAT, TYPE_STRING = 4, 5
OTHER_GROUP = 'example'  # a group no rule names

libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
libc.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
libc.regexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int]
libc.regerror.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]

_libconfig = ctypes.util.find_library('config')
if not _libconfig:
    sys.exit('check_reply_rules: libconfig not found (apt-get install libconfig-dev)')
lc = ctypes.CDLL(_libconfig)
lc.config_init.argtypes = [ctypes.c_void_p]
lc.config_read_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lc.config_lookup.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lc.config_lookup.restype = ctypes.c_void_p
lc.config_setting_length.argtypes = [ctypes.c_void_p]
lc.config_setting_get_elem.argtypes = [ctypes.c_void_p, ctypes.c_uint]
lc.config_setting_get_elem.restype = ctypes.c_void_p
lc.config_setting_get_string.argtypes = [ctypes.c_void_p]
lc.config_setting_get_string.restype = ctypes.c_char_p
lc.config_setting_get_float.argtypes = [ctypes.c_void_p]
lc.config_setting_get_float.restype = ctypes.c_double


class Setting(ctypes.Structure):
    """The head of config_setting_t, the same in libconfig 1.4 to 1.7."""
    _fields_ = [('name', ctypes.c_char_p), ('type', ctypes.c_short)]


def read_list(path, key):
    """The groups of the list `key` of a libconfig file, as dicts."""
    cfg = ctypes.create_string_buffer(512)  # larger than any config_t
    lc.config_init(cfg)
    if lc.config_read_file(cfg, path.encode()) != 1:
        sys.exit(f'{path}: libconfig cannot read it (a syntax error, or a backslash escape '
                 'other than \\\\ \\" \\n \\t \\f \\r \\xHH)')
    lst = lc.config_lookup(cfg, key.encode())
    if not lst:
        sys.exit(f'{path}: no {key} = ( ... )')
    out = []
    for i in range(lc.config_setting_length(lst)):
        grp = lc.config_setting_get_elem(lst, i)
        item = {}
        for j in range(lc.config_setting_length(grp)):
            m = lc.config_setting_get_elem(grp, j)
            head = Setting.from_address(m)
            name = head.name.decode()
            if head.type == TYPE_STRING:
                item[name] = lc.config_setting_get_string(m).decode()
            elif head.type == TYPE_FLOAT:
                item[name] = lc.config_setting_get_float(m)
            else:
                item[name] = None  # a type no field of ours has
        out.append(item)
    return out


class Regex:
    def __init__(self, pattern):
        self.buf = ctypes.create_string_buffer(256)  # larger than any regex_t
        err = libc.regcomp(self.buf, pattern.encode(), REG_EXTENDED | REG_ICASE | REG_NOSUB)
        if err:
            why = ctypes.create_string_buffer(200)
            libc.regerror(err, self.buf, why, 200)
            raise ValueError(why.value.decode())

    def search(self, text):
        return libc.regexec(self.buf, text.encode(), 0, None, 0) == 0


def fnmatch(pattern, s):
    return libc.fnmatch(pattern.encode(), s.encode(), 0) == 0


def lint_escapes(path):
    # libconfig's string escapes are backslash-backslash, backslash-quote,
    # n, t, f, r and xHH; another one depends on its version (1.5 keeps the
    # backslash), so a regex's escaped bracket must be written with two.
    errors = []
    for lineno, line in enumerate(open(path, encoding='utf-8'), 1):
        for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|#.*', line):
            for e in re.finditer(r'\\(.)', m.group(1) or ''):
                if e.group(1) not in '\\"ntfrx':
                    errors.append(f'{path}:{lineno}: "\\{e.group(1)}" in a string: write "\\\\{e.group(1)}"')
    return errors


# In a POSIX ERE a backslash quotes one of these; \d \s \w \b \< are GNU's or Perl's.
ERE_QUOTABLE = set('.[](){}*+?|^$\\')


def check_rule(r, groups):
    """Why the rule is malformed, or None."""
    name = r.get('name')
    if not name or not re.fullmatch(r'[a-z0-9-]+', name):
        return f'name {name!r} must be [a-z0-9-]'
    if set(r) - FIELDS:
        return f'unknown field(s) {", ".join(sorted(set(r) - FIELDS))}'
    for k, v in r.items():
        if v is None or (k != 'factor' and not isinstance(v, str)) or (k == 'factor' and not isinstance(v, float)):
            return f'{k} has the wrong type'
    if r.get('action') not in ACTIONS:
        return f'action {r.get("action")!r}'
    code = r.get('code')
    if code is not None and not re.fullmatch(r'[45]xx|4[0-9][0-9]|5[0-9][0-9]', code):
        return f'code {code!r}'
    if not ({'code', 'enhanced', 'text'} & set(r)):
        return 'matches every refusal (no code, enhanced or text)'
    if ('scope' in r or 'duration' in r) and r['action'] != 'suspend':
        return 'scope/duration without action = "suspend"'
    if r.get('scope', 'pair') not in ('pair', 'group', 'source'):
        return f'scope {r["scope"]!r}'
    if 'duration' in r and not re.fullmatch(r'[0-9]+(\.[0-9]+)?[smhd]?', r['duration']):
        return f'duration {r["duration"]!r}'
    if 'factor' in r and (r['action'] != 'slow' or not 0 < r['factor'] < 1):
        return 'factor is for slow, 0 < f < 1'
    if 'group' in r and not any(fnmatch(r['group'], g) for g in groups):
        return f'group {r["group"]!r} names no group of providers.conf'
    if 'text' in r:
        bad = [e for e in re.findall(r'\\(.)', r['text']) if e not in ERE_QUOTABLE]
        if bad:
            return f'text has "\\{bad[0]}", not POSIX ERE (use a bracket expression)'
        try:
            r['re'] = Regex(r['text'])
        except ValueError as e:
            return f'text is not POSIX ERE: {e}'
    return None


def matches(r, group, code, enh, text):
    if code < 400:
        return False
    if 'group' in r and not fnmatch(r['group'], group):
        return False
    c = r.get('code')
    if c and (c[1:] == 'xx' and str(code)[0] != c[0] or c[1:] != 'xx' and int(c) != code):
        return False
    if 'enhanced' in r and (enh is None or not fnmatch(r['enhanced'], enh)):
        return False
    return 're' not in r or r['re'].search(text)


def first_match(rules, group, code, enh, text):
    return next((r['name'] for r in rules if matches(r, group, code, enh, text)), None)


def main(argv):
    responses = argv[1] if len(argv) > 1 else f'{ROOT}/share/sluice/responses.conf'
    fixture = argv[2] if len(argv) > 2 else f'{ROOT}/tests/fixtures/provider_replies.txt'
    providers = argv[3] if len(argv) > 3 else f'{ROOT}/share/sluice/providers.conf'
    groups = [p['group'] for p in read_list(providers, 'providers')]
    rules = read_list(responses, 'responses')
    errors, seen, sampled = lint_escapes(responses), set(), set()
    for i, r in enumerate(rules):
        why = check_rule(r, groups)
        if why:
            errors.append(f'{responses}: responses[{i}] ({r.get("name")}): {why}')
        elif r['name'] in seen:
            errors.append(f'{responses}: a second rule named {r["name"]}')
        seen.add(r.get('name'))
    if errors:
        print('\n'.join(errors))
        return 1
    byname = {r['name']: r for r in rules}
    nsamples = 0
    for lineno, line in enumerate(open(fixture, encoding='utf-8'), 1):
        line = line.rstrip('\n')
        if not line.strip() or line.startswith('#'):
            continue
        where = f'{fixture}:{lineno}'
        f = line.split('\t')
        if len(f) != 4 or not re.fullmatch(r'[245][0-9][0-9]', f[1]):
            errors.append(f'{where}: not RULE<TAB>CODE<TAB>ENHANCED<TAB>TEXT')
            continue
        want, code, enh, text = f[0], int(f[1]), None if f[2] == '-' else f[2], f[3]
        if want != '-' and want not in byname:
            errors.append(f'{where}: no rule named {want}')
            continue
        if want != '-' and 'group' in byname[want]:
            tried = [g for g in groups if fnmatch(byname[want]['group'], g)]
        else:
            tried = groups + [OTHER_GROUP]
        nsamples += 1
        for g in tried:
            got = first_match(rules, g, code, enh, text) or '-'
            if got != want:
                errors.append(f'{where}: in group {g} the first rule matching is {got}, not {want}')
                break
        sampled.add(want)
    for r in rules:
        if r['name'] not in sampled:
            errors.append(f'{fixture}: no sample for rule {r["name"]}')
    if '-' not in sampled:
        errors.append(f'{fixture}: no reply that must match no rule')
    if errors:
        print('\n'.join(errors))
        return 1
    print(f'check_reply_rules: {len(rules)} rules, {nsamples} replies: each matched by its rule first')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
