#!/usr/bin/env python3
"""tests/allowed_path.py - prints a directory to use as PATH that holds only
the programs of the packages a minimal Debian 12 has (debootstrap
--variant=minbase: Essential and Priority: required, plus build-essential,
git, python3, ca-certificates) and those `make deps` installs, with their
dependencies. CI runs `make check` with PATH set to it, so a test, the demo
or the bench that calls a program from any other package (procps' pgrep,
say) fails here as it would on a minimal machine. Reads dpkg's status
file: Python's standard library only."""
import os
import re
import sys

BASE = ['build-essential', 'git', 'python3', 'ca-certificates', 'apt']
BIN_DIRS = ('/bin/', '/sbin/', '/usr/bin/', '/usr/sbin/')


def installed_packages():
    pkgs, provides = {}, {}
    with open('/var/lib/dpkg/status', encoding='utf-8', errors='replace') as f:
        for block in f.read().split('\n\n'):
            fields, key = {}, None
            for line in block.splitlines():
                if line[:1] in (' ', '\t') and key:
                    fields[key] += ' ' + line.strip()
                elif ':' in line:
                    key, _, v = line.partition(':')
                    fields[key] = v.strip()
            name = fields.get('Package')
            if not name or 'installed' not in fields.get('Status', '').split():
                continue
            pkgs[name] = fields
            for p in fields.get('Provides', '').split(','):
                p = re.sub(r'\(.*?\)', '', p).strip()
                if p:
                    provides.setdefault(p, []).append(name)
    return pkgs, provides


def closure(roots, pkgs, provides):
    seen, todo = set(), list(roots)
    while todo:
        n = re.sub(r':\w+$', '', todo.pop())
        for real in ([n] if n in pkgs else provides.get(n, [])):
            if real in seen:
                continue
            seen.add(real)
            f = pkgs[real]
            for dep in (f.get('Depends', '') + ',' + f.get('Pre-Depends', '')).split(','):
                for alt in dep.split('|'):
                    alt = re.sub(r'\(.*?\)|\[.*?\]', '', alt).strip()
                    if alt:
                        todo.append(alt)
    return seen


def package_files(name):
    for suffix in ('', ':amd64', ':arm64', ':all'):
        p = f'/var/lib/dpkg/info/{name}{suffix}.list'
        if os.path.exists(p):
            with open(p, encoding='utf-8', errors='replace') as f:
                return [l.rstrip('\n') for l in f]
    return []


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else 'build/allowed-bin'
    makefile = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'Makefile')
    text = open(makefile).read().replace('\\\n', ' ')
    deb = re.search(r'^DEB_PKGS\s*:=\s*(.*)$', text, re.M).group(1).split()
    pkgs, provides = installed_packages()
    roots = [n for n, f in pkgs.items()
             if f.get('Essential') == 'yes' or f.get('Priority') == 'required']
    allowed = closure(roots + BASE + deb, pkgs, provides)
    programs = set()
    for name in allowed:
        programs.update(p for p in package_files(name) if p.startswith(BIN_DIRS))
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.unlink(os.path.join(out, old))
    real_allowed = {os.path.realpath(p) for p in programs}
    for d in BIN_DIRS:  # alternatives (cc, awk, ...) point into allowed packages
        if os.path.isdir(d):
            for e in os.listdir(d):
                p = d + e
                if os.path.islink(p) and os.path.realpath(p) in real_allowed:
                    programs.add(p)
    for p in sorted(programs):
        link = os.path.join(out, os.path.basename(p))
        if os.path.exists(p) and not os.path.lexists(link):
            os.symlink(p, link)
    print(os.path.abspath(out))


if __name__ == '__main__':
    main()
