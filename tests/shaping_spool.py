#!/usr/bin/env python3
"""tests/shaping_spool.py - writes spool files for the shaping tests.

usage: shaping_spool.py SPOOL DOMAIN:COUNT[:POOL[:JOB[:SENDER]]] ...

Each message has one recipient at DOMAIN; X-Pool is written when POOL is
given and is not "-", X-Job when JOB is given and is not "-"; the sender
is news@sender.test unless SENDER is given. Files go through tmp/ and
rename(2) into new/, as a producer must write them. Messages of the
different specs are interleaved, so that every provider's mail is spread
over the whole spool as a real campaign's is."""
import os
import sys


def main():
    spool = sys.argv[1]
    specs = []
    for arg in sys.argv[2:]:
        parts = arg.split(":")
        domain, count = parts[0], int(parts[1])
        pool = parts[2] if len(parts) > 2 and parts[2] != "-" else None
        job = parts[3] if len(parts) > 3 and parts[3] != "-" else None
        sender = parts[4] if len(parts) > 4 else "news@sender.test"
        specs.append([domain, count, pool, job, sender])
    for d in ("tmp", "new"):
        os.makedirs(os.path.join(spool, d), exist_ok=True)
    n = 0
    while any(s[1] for s in specs):
        for s in specs:
            if not s[1]:
                continue
            s[1] -= 1
            domain, _, pool, job, sender = s
            head = [f"X-Sender: <{sender}>", f"X-Receiver: <user{n}@{domain}>"]
            if pool:
                head.append(f"X-Pool: {pool}")
            if job:
                head.append(f"X-Job: {job}")
            body = (f"From: {sender}\nTo: user{n}@{domain}\nSubject: shaping {n}\n"
                    f"Message-ID: <shaping{n}@sender.test>\n\nmessage {n}\n")
            name = f"m{n:07d}"
            tmp = os.path.join(spool, "tmp", name)
            with open(tmp, "w") as f:
                f.write("\n".join(head) + "\n" + body)
            os.rename(tmp, os.path.join(spool, "new", name))
            n += 1
    print(n)


if __name__ == "__main__":
    main()
