"""The CPU of judging a refresh: `LagCollector.evaluate` and the `lag --json` output.

No broker: the bench builds synthetic broker views (`collectors.lag.BrokerView`)
of `--groups` groups x `--partitions` partitions spread over `--topics` topics,
and fills an in-memory lag history by evaluating `--rounds` views `--step`
seconds apart (end offsets grow, committed offsets hold, move or go back), the
way a TUI or cron `lagdeck lag` builds its history. Then it times, per repeat,
one more `evaluate(view)` (the cyclic GC paused, as `refresh` does; the history
written in the background, as `lagdeck lag` does) and the `--json` output of
that snapshot (`console.commands.lag._report`, to an in-memory stdout). It
prints wall seconds and the main thread's CPU seconds of both.

Scenarios (`--scenario`):
- `stop`: every partition lagging and STOP (no members, offsets held, ends grow);
- `mixed` (default): OK, caught up, within allowed lag, WARN, STALL, STOP,
  REWIND, UNKNOWN (new groups, unknown membership), partition errors, unknown end
  offsets, deleted topics, partitions past the topic's count, never-committed
  partitions and group errors, all in one view.

`--compare REF` runs the same bench on git ref REF's collectors/ and console/
(exported to a temporary directory) and on this tree, each in its own process,
alternately, `--repeat` times; it prints both figures, the ratio, and whether the
two produced byte-identical `--json` output for every view of the run.

    .venv/bin/python bench/lag_evaluate.py                        # 10,000 groups x 10, mixed
    .venv/bin/python bench/lag_evaluate.py --scenario stop --compare main
    .venv/bin/python bench/lag_evaluate.py --groups 1000 --repeat 5

Target (issue 11, the evaluation part): at 10,000 groups x 10 partitions, at
least 2x less CPU for evaluate + output than before, with identical output.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: the rounds before the timed ones are `step` seconds apart, starting here (seconds ago)
NOWHERE = "127.0.0.1:1"


# ---------------------------------------------------------------- the synthetic world


def kind_of(i: int, scenario: str) -> str:
    """What group `i` does over the rounds."""
    if scenario == "stop":
        return "stop"
    kinds = ("stop", "stall", "warn", "progress", "caught-up", "allowed", "rewind",
             "stop", "stall", "warn", "unknown-state", "late", "errors", "progress",
             "stop", "no-commit")
    return kinds[i % len(kinds)]


def build_view(args: argparse.Namespace, r: int) -> Any:
    """The broker's answer at round `r` (0-based; every round `args.step` seconds later)."""
    from collectors.lag import BrokerView, GroupData
    from collectors.snapshots import Member

    taken_at = args.base_time + r * args.step
    topics = {f"topic-{t:03d}": args.partitions for t in range(args.topics)}
    # every partition produces at its own rate; end offsets only grow
    ends: dict[tuple[str, int], int] = {}
    end_errors: dict[tuple[str, int], str] = {}
    for t in range(args.topics):
        for p in range(args.partitions):
            rate = 3 + (t * 7 + p * 13) % 40
            ends[(f"topic-{t:03d}", p)] = 10_000 + t * 100 + p + rate * r * int(args.step)
    groups = []
    for i in range(args.groups):
        kind = kind_of(i, args.scenario)
        name = f"{'batch' if kind == 'allowed' else 'svc'}-{kind}-{i:05d}"
        topic = f"topic-{i % args.topics:03d}"
        committed: dict[tuple[str, int], int | None] = {}
        partition_errors: dict[tuple[str, int], str] = {}
        error = None
        state, members = "EMPTY", ()
        for p in range(args.partitions):
            tp = (topic, p)
            base = 10_000 + (i % args.topics) * 100 + p - (i % 7) * 11 - 500
            end = ends[tp]
            if kind == "stop":
                committed[tp] = base
            elif kind == "stall":
                state = "STABLE"
                committed[tp] = base - 3
            elif kind == "warn":
                state = "STABLE"
                committed[tp] = base + r * 2
            elif kind == "progress":
                state = "STABLE"
                committed[tp] = min(end, base + r * (60 + p))
            elif kind == "caught-up":
                state = "STABLE"
                committed[tp] = end
            elif kind == "allowed":
                state = "STABLE"
                committed[tp] = end - (p * 7) % 60
            elif kind == "rewind":
                state = "STABLE"
                committed[tp] = base + (r * 5 if r < args.rounds - 2 else -40)
            elif kind == "unknown-state":
                state = "UNKNOWN"
                committed[tp] = base + (r // 3) * 4
            elif kind == "late":
                state = "EMPTY"
                committed[tp] = base
            elif kind == "errors":
                state = "STABLE"
                committed[tp] = base + r
                if p == 1:
                    partition_errors[tp] = "UNSTABLE_OFFSET_COMMIT: try again"
                    committed[tp] = None
            elif kind == "no-commit":
                state = "STABLE"
                committed[tp] = None if p % 3 == 0 else base + r * 9
        if kind == "late":
            name = f"svc-new-{r}-{i:05d}"  # a group seen for the first time: not judged yet
        vanished: dict[tuple[str, int], int | None] = {}
        if kind == "errors":
            committed[("gone-topic", 0)] = 17  # a deleted topic Kafka still has offsets on
            committed[(topic, args.partitions + 2)] = 4  # past the topic's partitions
            if i % 3 == 0:
                error = "describe: timed out"
            if i % 2 == 0:  # offsets the history knows on a topic deleted since
                vanished = {("old-topic", 1): 5, ("old-topic", 0): None}
        if kind == "no-commit" and i % 3 == 0:  # only offsets on deleted topics: a ghost
            committed, vanished = {}, {("old-topic", 2): 9}
        if state == "STABLE" and i % 5 == 0:
            members = (Member(f"m-{i}", "svc", "/10.0.0.1", ((topic, 0),)),)
        groups.append(GroupData(name, state, members if state == "STABLE" else (),
                                committed, partition_errors, error, vanished))
    if args.scenario == "mixed" and args.topics > 1:
        # one partition whose end offset could not be read this round
        end_errors[("topic-001", 0)] = "NOT_LEADER_FOR_PARTITION"
        del ends[("topic-001", 0)]
    return BrokerView(taken_at=taken_at, groups=tuple(groups), topics=topics, ends=ends,
                      end_errors=end_errors, listed=len(groups), offsets_via="batched",
                      offsets_via_reason="synthetic")


# ---------------------------------------------------------------- one run


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """Fill the history, then time `--repeat-inner` evaluations and outputs in this process."""
    from collectors.config import ClusterConfig
    from collectors.gcpause import gc_paused
    from collectors.lag import LagCollector, LagSettings
    from collectors.status import StatusPolicy
    from console.commands.lag import _report

    options = LagSettings(policy=StatusPolicy(), allowed_lag=((re.compile("batch-.*"), 50),),
                          exact_budget_seconds=0.0)
    report_args = argparse.Namespace(all=False, group=None, json=True, verbose=False)
    digest = hashlib.sha256()
    figures: dict[str, list[float]] = {"evaluate": [], "evaluate_cpu": [], "output": [],
                                       "output_cpu": []}
    collector = LagCollector(ClusterConfig({"bootstrap.servers": NOWHERE}),
                             lag_settings=options, background_writes=True)
    with collector:
        total = args.rounds + args.inner
        for r in range(total):
            view = build_view(args, r)
            timed = r >= args.rounds
            # what `fetch` does before evaluating: the history brought up to date
            collector.history.last_seen(collector.key, view.taken_at)
            gc.collect()
            with gc_paused():
                w0, c0 = time.perf_counter(), time.thread_time()
                snapshot = collector.evaluate(view)
                w1, c1 = time.perf_counter(), time.thread_time()
                out = io.BytesIO()
                stdout = io.TextIOWrapper(out, encoding="utf-8")
                with contextlib.redirect_stdout(stdout), \
                        contextlib.redirect_stderr(io.StringIO()):
                    _report(report_args, snapshot, options)
                    stdout.flush()
                w2, c2 = time.perf_counter(), time.thread_time()
            collector.history.wait()  # the background write, not part of the figures
            digest.update(out.getvalue())
            if timed:
                figures["evaluate"].append(w1 - w0)
                figures["evaluate_cpu"].append(c1 - c0)
                figures["output"].append(w2 - w1)
                figures["output_cpu"].append(c2 - c1)
            del snapshot, view
        partitions = sum(len(g.committed) for g in build_view(args, total - 1).groups)
    return {"digest": digest.hexdigest(), "partitions": partitions,
            **{k: statistics.median(v) for k, v in figures.items()}}


# ---------------------------------------------------------------- side by side


def export_ref(ref: str, into: Path) -> Path:
    """`ref`'s collectors/ and console/ (and what they import) into a temporary directory."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "collectors", "console",
                              "tracing", "dlq"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def child(args: argparse.Namespace, code: Path) -> dict[str, Any]:
    """One run in a fresh interpreter, importing lagdeck from `code`."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child",
            "--groups", str(args.groups), "--partitions", str(args.partitions),
            "--topics", str(args.topics), "--rounds", str(args.rounds),
            "--step", str(args.step), "--scenario", args.scenario,
            "--base-time", repr(args.base_time), "--inner", str(args.inner)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env,
                          cwd=str(code))
    return json.loads(done.stdout.strip().splitlines()[-1])


def show(label: str, fig: dict[str, Any]) -> None:
    both = fig["evaluate_cpu"] + fig["output_cpu"]
    print(f"{label:>8}: evaluate {fig['evaluate']:.3f} s wall / {fig['evaluate_cpu']:.3f} s CPU;"
          f" output {fig['output']:.3f} s / {fig['output_cpu']:.3f} s CPU;"
          f" together {both:.3f} s CPU")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=10)
    p.add_argument("--topics", type=int, default=100)
    p.add_argument("--rounds", type=int, default=6,
                   help="views evaluated before the timed ones (samples of history)")
    p.add_argument("--step", type=float, default=5.0, help="seconds between rounds")
    p.add_argument("--scenario", choices=("mixed", "stop"), default="mixed")
    p.add_argument("--inner", type=int, default=2, help="timed evaluations per process")
    p.add_argument("--repeat", type=int, default=3, help="processes per side")
    p.add_argument("--compare", metavar="REF", help="also run git ref REF's code, alternately")
    p.add_argument("--base-time", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.base_time is None:
        # recent: the history prunes what is older than its retention (7 days)
        args.base_time = float(int(time.time()) - 3600)
    if args.child:
        print(json.dumps(run_once(args)))
        return 0
    print(f"lag evaluate bench: {args.groups} groups x {args.partitions} partitions, "
          f"{args.topics} topics, scenario {args.scenario}, {args.rounds} rounds of history; "
          f"median of {args.repeat} processes x {args.inner} timed evaluations; "
          f"load {os.getloadavg()[0]:.1f}")
    sides: dict[str, list[dict[str, Any]]] = {"this": []}
    with tempfile.TemporaryDirectory(prefix="lagdeck-bench-") as tmp:
        codes = {"this": ROOT}
        if args.compare:
            codes = {"ref": export_ref(args.compare, Path(tmp)), "this": ROOT}
            sides = {"ref": [], "this": []}
        for _ in range(args.repeat):
            for side, code in codes.items():
                sides[side].append(child(args, code))
    medians = {side: {k: statistics.median(r[k] for r in runs) for k in runs[0]
                      if k not in ("digest",)} for side, runs in sides.items()}
    for side in sides:
        show(args.compare if side == "ref" else "this", medians[side])
    print(f"partitions per view: {int(medians['this']['partitions'])}")
    digests = {r["digest"] for runs in sides.values() for r in runs}
    if args.compare:
        ref, this = medians["ref"], medians["this"]
        before = ref["evaluate_cpu"] + ref["output_cpu"]
        after = this["evaluate_cpu"] + this["output_cpu"]
        evaluate = ref["evaluate_cpu"] / this["evaluate_cpu"]
        output = ref["output_cpu"] / this["output_cpu"]
        print(f"CPU evaluate + output: {before:.3f} s -> {after:.3f} s, {before / after:.2f}x "
              f"less (evaluate {evaluate:.2f}x, output {output:.2f}x)")
        print("--json output of every view identical: " + ("yes" if len(digests) == 1 else
                                                            f"NO ({len(digests)} digests)"))
        return 0 if len(digests) == 1 else 1
    print(f"output digest: {digests.pop()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
