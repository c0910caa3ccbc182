#!/usr/bin/env python3
"""tests/check_layers.py - fails when an #include points the wrong way.

The layers, each using only itself and those below it:
  engine/lib  the ground floor (buffers, maps, JSON, the ring, the message)
  dns, dkim   use the ground floor
  shards      uses dns, dkim and the ground floor
  engine      on top: uses everything but bench (engine/main.c alone
              dispatches to bench's subcommands)
  bench       test and benchmark tools: the ground floor only
Usage: check_layers.py [ROOT]   |   check_layers.py --self-test
"""
import os
import re
import sys
import tempfile

ALLOWED = {
    'engine/lib': {'engine/lib'},
    'dns': {'engine/lib', 'dns'},
    'dkim': {'engine/lib', 'dkim'},
    'shards': {'engine/lib', 'dns', 'dkim', 'shards'},
    'engine': {'engine/lib', 'dns', 'dkim', 'shards', 'engine'},
    'bench': {'engine/lib', 'bench'},
}
EXCEPTIONS = {('engine/main.c', 'bench/bench.h')}
# Headers private to one file of their layer (tests may include them too):
# a connection's fields are the SMTP client's alone.
PRIVATE = {'shards/conn.h': {'shards/smtp_client.c'}}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# Each third-party library is wrapped by exactly one module; wolfSSL's
# OpenSSL-compatible headers clash with OpenSSL's (which dkim/keys.c uses).
LIBRARY = re.compile(r'^\s*#\s*include\s+<(wolfssl|openssl|opendkim|liburing|ldns|lmdb)[/.]', re.M)
WRAPPERS = {'wolfssl': {'engine/lib/tls.c'}, 'openssl': {'dkim/keys.c'},
            'opendkim': {'dkim/signer.c'}, 'liburing': {'engine/lib/ring.c'},
            'ldns': {'dns/packet.c'}, 'lmdb': {'engine/suppress.c'}}


def layer_of(path):
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if path == layer or path.startswith(layer + '/'):
            if layer == 'engine/lib' or '/' not in path[len(layer) + 1:]:
                return layer
    return None


SKIP = {'tests', 'build', '.git', '.ci'}


def sources(root):
    """Every C source and header of the tree, as paths relative to root."""
    for d, dirs, files in os.walk(root):
        rel_d = os.path.relpath(d, root)
        if rel_d == '.':
            dirs[:] = [x for x in dirs if x not in SKIP]
        for name in sorted(files):
            if name.endswith(('.c', '.h')):
                yield os.path.normpath(os.path.join(rel_d, name))


def check(root):
    errors, files = [], 0
    for rel in sorted(sources(root)):
        files += 1
        layer = layer_of(rel)
        if layer is None:
            errors.append(f'{rel}: outside every layer (a folder of its own needs a place in ALLOWED)')
            continue
        with open(os.path.join(root, rel), encoding='utf-8', errors='replace') as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            target = os.path.normpath(os.path.join(os.path.dirname(rel), m.group(1)))
            to = layer_of(target)
            line = text.count('\n', 0, m.start()) + 1
            if to is None:
                errors.append(f'{rel}:{line}: includes "{m.group(1)}", outside every layer')
            elif to not in ALLOWED[layer] and (rel, target) not in EXCEPTIONS:
                errors.append(f'{rel}:{line}: {layer}/ must not include {target} '
                              f'({layer}/ may use: {", ".join(sorted(ALLOWED[layer]))})')
            elif target in PRIVATE and rel not in PRIVATE[target]:
                errors.append(f'{rel}:{line}: {target} is private to '
                              f'{", ".join(sorted(PRIVATE[target]))}')
        for m in LIBRARY.finditer(text):
            if rel not in WRAPPERS[m.group(1)]:
                line = text.count('\n', 0, m.start()) + 1
                errors.append(f'{rel}:{line}: includes {m.group(1)}, which only '
                              f'{", ".join(sorted(WRAPPERS[m.group(1)]))} may')
    return errors, files


def self_test():
    with tempfile.TemporaryDirectory() as t:
        for d in ALLOWED:
            os.makedirs(os.path.join(t, d), exist_ok=True)
        open(os.path.join(t, 'engine/lib/util.h'), 'w').write('#include "../../shards/x.h"\n')
        open(os.path.join(t, 'shards/x.h'), 'w').write('#include "../engine/lib/util.h"\n')
        open(os.path.join(t, 'dns/a.c'), 'w').write('#include "../shards/x.h"\n')
        open(os.path.join(t, 'engine/main.c'), 'w').write('#include "../bench/bench.h"\n')
        open(os.path.join(t, 'engine/run.c'), 'w').write('#include "../bench/bench.h"\n')
        open(os.path.join(t, 'shards/shard.c'), 'w').write('#include "conn.h"\n')
        open(os.path.join(t, 'shards/smtp_client.c'), 'w').write('#include "conn.h"\n')
        os.makedirs(os.path.join(t, 'shards/sub'))
        open(os.path.join(t, 'shards/sub/x.c'), 'w').write('\n')
        os.makedirs(os.path.join(t, 'tools'))
        open(os.path.join(t, 'tools/y.c'), 'w').write('\n')
        os.makedirs(os.path.join(t, 'tests'))
        open(os.path.join(t, 'tests/t.c'), 'w').write('#include "../shards/conn.h"\n')
        open(os.path.join(t, 'dkim/keys.c'), 'w').write('#include <openssl/evp.h>\n#include <wolfssl/ssl.h>\n')
        errors, _ = check(t)
        want = ['engine/lib/util.h', 'dns/a.c', 'engine/run.c', 'shards/shard.c', 'shards/sub/x.c',
                'tools/y.c', 'dkim/keys.c']
        got = [e.split(':')[0] for e in errors]
        if sorted(got) != sorted(want):
            print('check_layers self-test failed: got', errors)
            return 1
    return 0


def main():
    if sys.argv[1:] == ['--self-test']:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..')
    if self_test():
        return 1
    errors, files = check(root)
    for e in errors:
        print(e)
    if errors:
        print(f'layers: {len(errors)} include(s) point the wrong way')
        return 1
    print(f'layers: {files} files, every include points down')
    return 0


if __name__ == '__main__':
    sys.exit(main())
