"""What the alert loop costs over calling the pure evaluation by hand.

The TUI evaluates its rules on every lag poll through `AlertLoop.in_memory`
(console/data.py), where it used to call `evaluate` and keep the book itself.
This measures, in the same run and over the same snapshots, `--rounds` steps
of both over `--groups` groups and `--rules` rules (half of the groups
breaching, so the book holds firing alerts), and prints the median time per
round of each and their ratio.

    .venv/bin/python bench/alert_loop.py [--groups 2000] [--rules 5] [--rounds 30]

Target (issue 13): ratio <= 1.10 (the loop adds a store call and a copy of the events).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from collectors.alerts.evaluate import evaluate
from collectors.alerts.loop import AlertLoop
from collectors.alerts.rules import Rule
from collectors.alerts.state import AlertBook
from collectors.snapshots import GroupLag, LagSnapshot, PartitionLag, Status


def snapshot(at: float, groups: int) -> LagSnapshot:
    out = []
    for i in range(groups):
        lag = 500 + (i * 37 + int(at)) % 1000 if i % 2 else (i + int(at)) % 50
        part = PartitionLag("orders", 0, 10_000 - lag, 10_000, lag, float(lag) / 10,
                            "exact", Status.OK)
        out.append(GroupLag(f"svc-{i}", "Stable", Status.OK, lag, float(lag) / 10, (part,)))
    return LagSnapshot(taken_at=at, groups=tuple(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--rules", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rules = [Rule(name=f"r{n}", group=re.compile(rf"svc-\d*{n}"), max_lag=400 + n,
                  for_seconds=10.0) for n in range(args.rules)]
    snaps = [snapshot(10.0 * r, args.groups) for r in range(args.rounds)]

    direct: list[float] = []
    looped: list[float] = []
    book: AlertBook | None = None
    loop = AlertLoop.in_memory(rules)
    evaluate(rules, snaps[0])  # warm up (regex caches) before either side is timed
    for s in snaps:  # interleaved, so a busy machine slows both sides alike
        started = time.perf_counter()
        book = evaluate(rules, s, book).book
        direct.append(time.perf_counter() - started)
        started = time.perf_counter()
        loop.step(s)
        looped.append(time.perf_counter() - started)

    a, b = statistics.median(direct), statistics.median(looped)
    assert book is not None
    print(f"{args.groups} groups, {args.rules} rules, {args.rounds} rounds, "
          f"{len(book.states)} alerts in the book")
    print(f"evaluate by hand: {a * 1000:.2f} ms/round (median)")
    print(f"AlertLoop.step:   {b * 1000:.2f} ms/round (median)")
    print(f"ratio loop/by hand: {b / a:.3f}")


if __name__ == "__main__":
    main()
