#!/usr/bin/env python3
"""Reads a `tessera-bench --latency-log` file and shows whether the slow operations are spread
over the run or come in bursts (as they do while SQLite's checkpoints sync the log; see
bench/README.md, 2026-12-07, third section).

    python3 bench/tools/bursts.py lat.txt [--slow-ms 8] [--gap-ms 5] [--show 40] [--scenario start]

A burst is a run of operations slower than --slow-ms whose starts are less than --gap-ms
apart. For each it prints when it began (ms from the run's start), how long it lasted, its
slowest latency, how many operations it held, and the gap since the burst before.
"""

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--slow-ms", type=float, default=8.0)
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--show", type=int, default=40)
    ap.add_argument("--scenario", help="only lines of this scenario (e.g. start, otp-login/RS256)")
    ap.add_argument("--round", type=int, help="only this round of --repeat")
    a = ap.parse_args()

    ops = []
    with open(a.log, encoding="utf-8") as f:
        for line in f:
            name, rnd, at, latency = line.split()
            if a.scenario and name != a.scenario:
                continue
            if a.round is not None and int(rnd) != a.round:
                continue
            ops.append((int(at), int(latency)))
    if not ops:
        print("no operations", file=sys.stderr)
        return 1
    ops.sort()
    lat = sorted(l for _, l in ops)
    q = lambda p: lat[round((len(lat) - 1) * p)] / 1000
    print(f"{len(ops)} operations: p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {lat[-1] / 1000:.2f} ms")

    slow_us, gap_us = a.slow_ms * 1000, a.gap_ms * 1000
    bursts = []  # [first start, last start, slowest, count]
    for at, latency in ops:
        if latency <= slow_us:
            continue
        if bursts and at - bursts[-1][1] < gap_us:
            b = bursts[-1]
            b[1], b[2], b[3] = at, max(b[2], latency), b[3] + 1
        else:
            bursts.append([at, at, latency, 1])
    slow = sum(b[3] for b in bursts)
    print(f"{slow} slower than {a.slow_ms:g} ms, in {len(bursts)} bursts")
    previous = None
    for first, last, slowest, n in bursts[: a.show]:
        gap = "" if previous is None else f"  {(first - previous) / 1000:7.1f} ms after the last"
        print(
            f"at {first / 1000:9.1f} ms  for {(last - first) / 1000:6.1f} ms"
            f"  slowest {slowest / 1000:6.1f} ms  {n:4d} operations{gap}"
        )
        previous = first
    return 0


if __name__ == "__main__":
    sys.exit(main())
