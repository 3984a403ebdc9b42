"""`lagdeck lag`: consumer-group lag, time lag and status.

Status is judged over the lag history kept between runs (SQLite under the
state directory) plus the samples taken now (`--samples N --interval S`).
Exit codes: 0 when the lag was read (whatever the statuses: `lagdeck watch`
is the alerting command), 1 when the cluster cannot be read or `--group`
matches nothing, 2 for bad usage (an invalid regex, a bad `[lag]` section).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import operator
import sys
import time
from collections.abc import Sequence

from collectors.errors import NotFoundError, UsageError
from collectors.gcpause import gc_paused
from collectors.history import LagHistory
from collectors.lag import TOPIC_DELETED, LagCollector, LagSettings, compile_group_regex
from collectors.own_groups import REDRIVE_GROUP_PREFIX as GROUP_PREFIX
from collectors.snapshots import GroupLag, LagSnapshot, PartitionLag
from collectors.timelag import EXACT, ZERO
from collectors.untrusted import line_field as _s
from console import fastexit
from console.argtypes import seconds
from console.context import Context, print_json

_error = operator.attrgetter("error")

#: above this many groups `--json` is printed on one line (indenting costs ~0.5 s at 1,000)
COMPACT_JSON_GROUPS = 100
#: a first run with no history samples again for at most this long before judging
FIRST_LOOK_MAX_SECONDS = 3.0
#: how long `lagdeck lag` waits for the cluster before saying it cannot reach it
REACH_TIMEOUT = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lag", help="consumer-group lag in messages and seconds, with status")
    p.add_argument("--group", metavar="REGEX",
                   help="only groups matching this regex (searched, like grep; anchor with ^$)")
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="samples to take now (default 1; with no lag history, as many as the "
                        f"status needs, {FIRST_LOOK_MAX_SECONDS:g}s at most)")
    p.add_argument("--interval", type=seconds, default=1.0, metavar="S",
                   help="seconds between samples")
    p.add_argument("--all", action="store_true",
                   help=f"also lagdeck's own redrive progress groups ({GROUP_PREFIX}*)")
    p.add_argument("-v", "--verbose", action="store_true", help="show partitions")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="S",
                   help="timeout of each request to the cluster (default 10)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """One run, with the cyclic GC off (`collectors.gcpause`).

    A run builds about ten objects per group partition (the history's samples,
    the broker's answer, the snapshot: ~1.5 million at 10,000 groups) and keeps
    most of them to the end; every gen-2 pass walks them all again, for no
    garbage. The collector pauses GC during evaluation only; the history's first
    read and the group read (threads) and the output ran with it on (user CPU at
    10,000 groups: 4.4-5.1 s with it, 3.5-4.1 s without). Restored after (tests
    call `run` in-process); `--samples N` collects once between samples."""
    with gc_paused():
        return _run(args, ctx)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    compile_group_regex(args.group)
    asked_samples = args.samples is not None
    args.samples = args.samples if asked_samples else 1
    if args.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {args.samples}")
    if args.interval < 0:
        raise UsageError(f"--interval must be zero or positive, got {args.interval:g}")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout:g}")
    config = ctx.config
    options = ctx.settings.lag
    if ctx.snapshots_topic is not None:
        return _run_from_snapshots(args, ctx, ctx.snapshots_topic, options)
    history = LagHistory(retention_seconds=options.history_retention_seconds)
    try:  # closed last: closing waits for the history's last write, done while this prints
        with LagCollector(config.cluster, history, timeout=args.timeout,
                          lag_settings=options, background_writes=True) as collector:
            collector.check_reachable(args.timeout)  # the timeout the user set
            snapshot = collector.refresh(args.group)
            for _ in range(args.samples - 1):
                gc.collect()  # GC is off for the run: `--samples 500` must not grow unbounded
                time.sleep(args.interval)
                snapshot = collector.refresh(args.group)
            if not asked_samples:
                snapshot = first_look(collector, snapshot, args.group, options.policy.min_samples,
                                      args.interval)
        code = _report(args, snapshot, options)
    finally:
        history.close()
    # freed at exit, not now: the process has nothing left to do (`console.fastexit`)
    fastexit.keep(snapshot, collector, history)
    return code


def _report(args: argparse.Namespace, snapshot: LagSnapshot, options: LagSettings) -> int:
    """The snapshot on stdout (table or JSON), warnings on stderr."""
    hidden = 0
    if not args.all:
        shown = without_own_groups(snapshot)
        hidden = len(snapshot.groups) - len(shown.groups)
        snapshot = shown

    if args.group is not None and not snapshot.groups:
        listed = snapshot.groups_on_cluster
        on_cluster = "" if listed is None else f" ({listed} groups with committed offsets)"
        own = f"; {hidden} lagdeck redrive groups match: add --all" if hidden else ""
        raise NotFoundError(f"no consumer group matches {args.group!r}{on_cluster}{own}")
    for line in warnings(snapshot):
        sys.stderr.write(f"lagdeck: warning: {line}\n")
    if args.json:
        print_json(snapshot, compact=len(snapshot.groups) > COMPACT_JSON_GROUPS)
    else:
        sys.stdout.write(render(snapshot, partitions=args.verbose or args.group is not None,
                                min_samples=options.policy.min_samples))
        if hidden:
            sys.stdout.write(f"{hidden} lagdeck redrive progress group"
                             f"{'s' if hidden > 1 else ''} hidden ({GROUP_PREFIX}*; --all shows "
                             "them)\n")
    return 0


def first_look(collector: LagCollector, snapshot: LagSnapshot, group: str | None,
               min_samples: int, interval: float) -> LagSnapshot:
    """No history for some lagging partitions: sample again now, then judge.

    A first `lagdeck lag` would otherwise print UNKNOWN ("status needs 2
    samples") for every lagging partition. The extra samples are taken
    `interval` apart, within FIRST_LOOK_MAX_SECONDS, and said on stderr. A
    STOP or STALL still needs `[lag] grace` of evidence: a partition that has
    not moved for less than that stays UNKNOWN, with the reason.
    """
    needed = min_samples - 1
    interval = max(0.2, min(interval, FIRST_LOOK_MAX_SECONDS / max(1, needed)))
    taken = 0
    while taken < needed and _unjudged(snapshot):
        time.sleep(interval)
        snapshot = collector.refresh(group)
        taken += 1
    if taken:
        sys.stderr.write(f"lagdeck: no lag history for some partitions: took {taken} more "
                         f"sample{'s' if taken > 1 else ''} {interval:g}s apart to judge "
                         "their status\n")
    return snapshot


def _unjudged(snapshot: LagSnapshot) -> bool:
    return any("status needs" in (p.status_reason or "") for g in snapshot.groups
               for p in g.partitions)


def without_own_groups(snapshot: LagSnapshot) -> LagSnapshot:
    """lagdeck's redrive progress groups are bookkeeping, not consumers: hidden unless --all."""
    kept = tuple(g for g in snapshot.groups if not g.group.startswith(GROUP_PREFIX))
    if len(kept) == len(snapshot.groups):
        return snapshot
    return dataclasses.replace(snapshot, groups=kept)


def _run_from_snapshots(args: argparse.Namespace, ctx: Context, topic: str,
                        options: LagSettings) -> int:
    """The same output from the snapshot topic: no request to any group coordinator."""
    from console.snapshot_view import published_document, read_published, stale_ages

    if args.samples != 1:
        raise UsageError("--samples does not apply to --from-snapshots (the publisher "
                         "samples; its interval sets how fresh the figures are)")
    published = read_published(ctx.config.cluster, topic, args.group, timeout=args.timeout)
    snapshot = published.snapshot
    if args.group is not None and not snapshot.groups:
        raise NotFoundError(f"no snapshot on {topic!r} matches {args.group!r} "
                            f"({len(published.provenance)} groups published)")
    for line in warnings(snapshot):
        sys.stderr.write(f"lagdeck: warning: {line}\n")
    if args.json:
        print_json(published_document(published))
        return 0
    stale = stale_ages(published)
    sys.stdout.write(render(snapshot, partitions=args.verbose or args.group is not None,
                            min_samples=options.policy.min_samples, stale=stale))
    sys.stdout.write(_provenance_line(published, stale))
    return 0


def _provenance_line(published, stale: dict[str, float]) -> str:
    ages = [p.age() for p in published.provenance.values()]
    if not ages:
        return f"no snapshots on {published.topic} yet\n"
    by = ", ".join(_s(p) for p in published.publishers())
    line = (f"from snapshots on {published.topic}: published by {by}; "
            f"newest {duration(min(ages))} old, oldest {duration(max(ages))} old")
    if stale:
        line += f"; {len(stale)} STALE (older than a few publisher intervals)"
    return line + "\n"


def warnings(snapshot: LagSnapshot) -> list[str]:
    """One line per group and deleted topic, and per snapshot error."""
    out = [_s(e) for e in snapshot.errors]
    for g in snapshot.groups:
        # looked for in C first: 100,000 partitions at 10,000 groups, almost never there
        if TOPIC_DELETED not in map(_error, g.partitions):
            deleted = []
        else:
            deleted = sorted({p.topic for p in g.partitions if p.error == TOPIC_DELETED})
        for topic in deleted:
            out.append(f"group {_s(repr(g.group))} has offsets on topic {_s(repr(topic))}, "
                       "which no longer "
                       "exists")
        if g.error:
            out.append(f"group {_s(repr(g.group))}: {_s(g.error)}")
    return out


# ---------------------------------------------------------------- table


def duration(seconds: float | None, method: str = EXACT) -> str:
    """`4.2s`, `3m12s`, `2h05m`, `3d04h`; `~` marks an estimate, `-` unknown."""
    if seconds is None:
        return "-"
    mark = "" if method in (EXACT, ZERO) else "~"
    if seconds < 10:
        text = f"{seconds:.1f}s" if seconds else "0s"
    elif seconds < 60:
        text = f"{seconds:.0f}s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    else:
        text = f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"
    return mark + text


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int],
           indent: str = "") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return (indent + "  ".join(parts)).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _max_method(g: GroupLag) -> str:
    known = [p for p in g.partitions if p.lag_seconds is not None]
    if not known:
        return EXACT
    return max(known, key=lambda p: p.lag_seconds or 0.0).lag_seconds_method


def _partition_row(p: PartitionLag) -> list[str]:
    return [
        _s(p.topic), str(p.partition), _count(p.committed_offset), _count(p.end_offset),
        _count(p.lag), duration(p.lag_seconds, p.lag_seconds_method), p.lag_seconds_method,
        p.status.value, _s(p.error or p.status_reason or ""),
    ]


def render(snapshot: LagSnapshot, *, partitions: bool = False, min_samples: int = 2,
           stale: dict[str, float] | None = None) -> str:
    """The human table: one line per group, then its partitions when asked."""
    if not snapshot.groups:
        return "no consumer groups with committed offsets on this cluster\n"
    header = ["GROUP", "STATE", "STATUS", "TOTAL LAG", "MAX LAG TIME", "WHY"]
    groups = sorted(snapshot.groups, key=lambda g: (-g.status.severity, g.group))
    stale = stale or {}
    rows = [[_s(g.group), _s(g.state), "STALE" if g.group in stale else g.status.value,
             str(g.total_lag), duration(g.max_lag_seconds, _max_method(g)),
             (f"snapshot {duration(stale[g.group])} old, was {g.status.value}: "
              if g.group in stale else "") + _s(g.status_reason)]
            for g in groups]
    lines = _table(header, rows, right={3, 4})
    if partitions:
        for g in groups:
            lines.append("")
            lines.append(f"{_s(g.group)}  (state {_s(g.state)}, members: {_members(g)})")
            if not g.partitions:
                lines.append("  no partitions with committed offsets")
                continue
            lines += _table(
                ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG TIME", "METHOD",
                 "STATUS", "NOTE"],
                [_partition_row(p) for p in g.partitions],
                right={1, 2, 3, 4, 5}, indent="  ",
            )
    lines.append("")
    lines.append("lag time: age of the oldest unconsumed record; ~ = estimated from the lag "
                 "history (see METHOD with -v)")
    if any("status needs" in (p.status_reason or "") for g in groups for p in g.partitions):
        lines.append(f"status needs {min_samples} samples per partition: run again, or use "
                     "--samples N --interval S")
    return "\n".join(lines) + "\n"


def _members(g: GroupLag) -> str:
    if g.members is None:
        return "not reported by broker"
    if not g.members:
        return "none"
    parts = []
    for m in g.members:
        assigned = ",".join(f"{_s(t)}[{p}]" for t, p in m.assignments) or "nothing assigned"
        parts.append(f"{_s(m.client_id)}@{_s(m.host)} ({assigned})")
    return "; ".join(parts)
