#!/usr/bin/env python3
"""tests/shaping_rates.py - the delivery rate of each (source IP, MX group)
pair in an accounting log, checked against the rate it was allowed.

usage: shaping_rates.py LOG TOLERANCE SOURCE/GROUP=RATE ...

A pair's rate is (delivered - 1) / (last - first), over its delivered
lines' timestamps. Prints one line per pair; exits 1 when a pair is
missing or its rate is not within TOLERANCE (0.15 = 15%) of RATE."""
import datetime
import json
import sys


def ts(s):
    return datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def main():
    log, tol = sys.argv[1], float(sys.argv[2])
    pairs = {}
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r.get("result") == "delivered":
                pairs.setdefault((r["source"], r["group"]), []).append(ts(r["ts"]))
    bad = 0
    for spec in sys.argv[3:]:
        key, rate = spec.split("=")
        source, group = key.split("/")
        t = sorted(pairs.get((source, group), []))
        if len(t) < 3:
            print(f"{source}/{group}: {len(t)} delivered, too few to measure")
            bad += 1
            continue
        got = (len(t) - 1) / (t[-1] - t[0])
        ok = abs(got - float(rate)) <= tol * float(rate)
        print(f"{source}/{group}: {len(t)} delivered in {t[-1] - t[0]:.2f} s: {got:.2f}/s, "
              f"allowed {rate}/s {'ok' if ok else 'NOT within ' + str(int(tol * 100)) + '%'}")
        bad += not ok
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
