"""How fast the console notices an outage, and how fast it is live again.

For two faults on a real Tansu broker, SIGKILL (then a restart on the same
port) and a blackhole (a TCP proxy that accepts and never answers, then
heals), the headless console (`LagdeckApp` under `run_test`, polling every
`--poll` seconds as the demo does) is timed:

- detect: seconds from the fault until the status bar's state is
  "unreachable" (the data marked stale);
- recover: seconds from the broker answering again (restart done / proxy
  healed) until the data is live again (a complete refresh finished after it).

Baseline, in the same run: the same app with a source that has no liveness
probe, i.e. the console before issue 12, which only learned of an outage
when a lag poll failed ("reconnecting") and retried on its own backoff.
The ratio printed is baseline / probe (higher is better).

Each round runs in its own process with its own broker: librdkafka 2.16 can
abort the process when a coordinator request's connection drops
(confluentinc/librdkafka#4605, see docs/outages.md); such rounds are counted
and reported, not hidden.

    .venv/bin/python bench/outage.py [--rounds 3] [--poll 2]

Targets (issue 12): detect <= 5 s, recover <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.app import LagdeckApp
from console.data import KafkaSource
from tests.conftest import create_topics, kp_commit
from tests.faults.cluster import FaultyBroker

DETECT_TARGET, RECOVER_TARGET = 5.0, 10.0
LIMIT = 120.0


class NoProbe:
    """A KafkaSource without `probe`: the console as it was before the liveness probe."""

    def __init__(self, inner: KafkaSource) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        if name == "probe":
            raise AttributeError(name)
        return getattr(self._inner, name)


def seed(bootstrap: str) -> None:
    create_topics(bootstrap, "bench.orders")
    kp_commit(bootstrap, "bench-service", {("bench.orders", 0): 0})


async def wait(pilot, predicate, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > LIMIT:
            raise SystemExit(f"bench: gave up after {LIMIT:g}s waiting for {what}")
        await pilot.pause(0.02)
    return time.monotonic()


async def one(broker: FaultyBroker, fault: str, probe: bool, poll: float) -> tuple[float, float]:
    source = KafkaSource(broker.cluster(), timeout=10.0)
    app = LagdeckApp(source if probe else NoProbe(source), poll_interval=poll)  # type: ignore[arg-type]
    down = ("unreachable",) if probe else ("unreachable", "reconnecting")
    async with app.run_test(size=(120, 34)) as pilot:
        await wait(pilot, lambda: app.connection.state == "connected", "live data")
        if fault == "kill":
            broker.kill()
        else:
            assert broker.proxy is not None
            broker.proxy.blackhole()
        started = time.monotonic()
        noticed = await wait(pilot, lambda: app.connection.state in down, "the outage")
        await pilot.pause(1.0)  # the outage lasts a moment longer
        if fault == "kill":
            # in this (long-lived) thread: the broker dies with the thread that started it
            broker.restart()
            await asyncio.to_thread(seed, broker.bootstrap)
        else:
            assert broker.proxy is not None
            broker.proxy.heal()
        back = time.monotonic()
        back_wall = time.time()
        live = await wait(pilot, lambda: app.connection.state == "connected"
                          and app.lag_view is not None
                          and app.lag_view.snapshot.taken_at >= back_wall, "live data again")
        app.exit()
    return noticed - started, live - back


def report(label: str, new: list[float], old: list[float], target: float) -> None:
    if not new or not old:
        print(f"  {label:<8} not enough rounds completed")
        return
    n, o = statistics.median(new), statistics.median(old)
    verdict = "meets" if max(new) <= target else "MISSES"
    print(f"  {label:<8} probe median {n:6.2f}s (max {max(new):5.2f}s)   "
          f"baseline median {o:6.2f}s   ratio {o / n if n else float('inf'):5.1f}x   "
          f"target {target:g}s: {verdict}")


def round_in_process(fault: str, probe: bool, poll: float) -> None:
    """One round with its own broker and state; prints `detect recover` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LAGDECK_STATE_DIR"] = tmp
        with FaultyBroker(Path(tmp) / "broker", proxy=fault == "blackhole") as broker:
            seed(broker.bootstrap)
            detect, recover = asyncio.run(one(broker, fault, probe, poll))
    print(json.dumps([detect, recover]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=2.0,
                        help="seconds between lag polls (the demo's 2 s)")
    parser.add_argument("--round", nargs=2, metavar=("FAULT", "PROBE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round:
        round_in_process(args.round[0], args.round[1] == "probe", args.poll)
        return
    for fault in ("kill", "blackhole"):
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        aborted = 0
        for _ in range(args.rounds):
            for probe in (True, False):
                run = subprocess.run(
                    [sys.executable, __file__, "--poll", str(args.poll), "--round", fault,
                     "probe" if probe else "baseline"], capture_output=True, text=True)
                if run.returncode != 0:
                    aborted += 1
                    last = (run.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"  round aborted ({'probe' if probe else 'baseline'}, exit "
                          f"{run.returncode}): {last[:160]}")
                    continue
                results[probe].append(tuple(json.loads(run.stdout.strip().splitlines()[-1])))
        print(f"{fault} ({args.rounds} rounds each, lag poll every {args.poll:g}s, "
              f"{aborted} round(s) aborted):")
        report("detect", [r[0] for r in results[True]], [r[0] for r in results[False]],
               DETECT_TARGET)
        report("recover", [r[1] for r in results[True]], [r[1] for r in results[False]],
               RECOVER_TARGET)


if __name__ == "__main__":
    main()
