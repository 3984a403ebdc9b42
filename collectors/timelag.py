"""Lag in seconds: the age of the oldest record a group has not consumed yet.

Two ways to know it, best first:

- exact: read the record at the committed offset and take `now - timestamp`.
  The collector does this for lagging partitions within a per-refresh budget
  (`plan_reads` orders the reads; the I/O lives in `collectors.lag`).
- estimated from the partition's history of end offsets (kafka-lag-exporter's
  lookup table): the record at offset `c` was produced when the end offset
  passed `c`, so between two observations `(t_a, end_a)` and `(t_b, end_b)`
  with `end_a <= c < end_b`; the newest such pair is interpolated linearly.
  Older than every observation, it is extrapolated.

What this does that kafka-lag-exporter does not:

- lag 0 is 0 seconds ("zero"), never NaN, even on an idle topic (#111, #37);
- flat stretches of the table (idle topic) never bracket an offset, so there
  is no division by zero; the current end offset at `now` is always the
  newest point, so an idle topic with a lagging consumer stays finite;
- extrapolation never goes below what is known for sure (the record existed
  at the oldest observation, so its age is at least `now - t_oldest`), and
  uses the fastest production rate seen rather than the mean over a mostly
  idle window, which is what made a group reprocessing from the start read
  "years" (#496); exact reads feed the table too (`record_point`), so a
  reprocessing group is interpolated against real record times next time;
- every result says how it was obtained (`method`).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EXACT = "exact"
INTERPOLATED = "interpolated"
EXTRAPOLATED = "extrapolated"
ZERO = "zero"
UNKNOWN = "unknown"
METHODS = (EXACT, INTERPOLATED, EXTRAPOLATED, ZERO, UNKNOWN)

#: record timestamps this far in the future (producer clock skew) are ignored as points
_FUTURE_SKEW = 5.0


@dataclass(frozen=True)
class Point:
    """At `time` (seconds), the partition's end offset was `end`."""

    time: float
    end: int


@dataclass(frozen=True)
class TimeLag:
    seconds: float | None
    method: str


def record_point(offset: int, timestamp: float) -> Point:
    """A record read at `offset` with `timestamp`: the end offset passed `offset` then."""
    return Point(timestamp, offset + 1)


def exact(record_timestamp: float, now: float) -> TimeLag:
    """Age of the oldest unconsumed record; a record from the future (clock skew) is 0."""
    return TimeLag(_clean_seconds(now - record_timestamp), EXACT)


def clean_points(points: Iterable[Point], now: float | None = None) -> list[Point]:
    """Sorted, monotonic, flat runs reduced to their ends, only since the last reset.

    - points in the future are dropped;
    - an end offset that goes down for good means the topic was recreated (or
      the broker restarted): everything before it is forgotten;
    - a point below an earlier one that later points exceed again (an
      out-of-order record timestamp) is dropped;
    - a flat run keeps its first and last point (kafka-lag-exporter's
      compression), which is all interpolation needs.
    """
    limit = math.inf if now is None else now + _FUTURE_SKEW
    ordered = sorted(
        (p for p in points if math.isfinite(p.time) and p.time <= limit and p.end >= 0),
        key=lambda p: (p.time, p.end),
    )
    n = len(ordered)
    later_max = [-1] * (n + 1)  # later_max[i]: highest end among ordered[i:]
    for i in range(n - 1, -1, -1):
        later_max[i] = max(ordered[i].end, later_max[i + 1])
    start = 0
    for i in range(1, n):
        if ordered[i].end < ordered[i - 1].end and later_max[i + 1] < ordered[i - 1].end:
            start = i
    out: list[Point] = []
    for p in ordered[start:]:
        if out and p.end < out[-1].end:
            continue
        if len(out) >= 2 and out[-1].end == p.end and out[-2].end == p.end:
            out[-1] = p
        else:
            out.append(p)
    return out


def build_table(points: Iterable[Point], end: int, now: float) -> list[Point]:
    """The lookup table of one partition: its history plus the end offset now."""
    return clean_points([*points, Point(now, end)], now)


def estimate(committed: int, end: int, points: Iterable[Point], now: float) -> TimeLag:
    """Lag in seconds of `committed` from the end-offset history (`end` is the end now)."""
    return estimate_from_table(committed, end, build_table(points, end, now), now)


@dataclass(frozen=True)
class Table:
    """A partition's lookup table with what every estimate on it needs, computed once:
    a partition is shared by many groups (thousands of estimates per refresh)."""

    points: Sequence[Point]
    ends: Sequence[int]
    rate: float | None

    @classmethod
    def of(cls, points: Sequence[Point]) -> Table:
        return cls(points, [p.end for p in points], fastest_rate(points))


def estimate_from_table(committed: int, end: int, table: Sequence[Point] | Table,
                        now: float) -> TimeLag:
    """`estimate` over a table from `build_table` (shared by the groups of a partition)."""
    if end - committed <= 0:
        return TimeLag(0.0, ZERO)
    prepared = table if isinstance(table, Table) else Table.of(table)
    points = prepared.points
    if len(points) < 2:
        return TimeLag(None, UNKNOWN)
    # the adjacent pair whose end offsets bracket the record: end_a <= c < end_b (the
    # table's ends never go down, so it is the first point past c and the one before)
    i = bisect.bisect_right(prepared.ends, committed)
    if 0 < i < len(points):
        a, b = points[i - 1], points[i]
        produced = a.time + (committed + 1 - a.end) / (b.end - a.end) * (b.time - a.time)
        return TimeLag(_clean_seconds(now - produced), INTERPOLATED)
    oldest = points[0]
    if committed >= oldest.end:
        # past the newest point: only if the table lacks the end offset now
        return TimeLag(None, UNKNOWN)
    at_least = now - oldest.time
    rate = prepared.rate
    if rate is None:
        return TimeLag(_clean_seconds(at_least), EXTRAPOLATED)
    produced = oldest.time - (oldest.end - (committed + 1)) / rate
    return TimeLag(_clean_seconds(max(at_least, now - produced)), EXTRAPOLATED)


def fastest_rate(table: Sequence[Point]) -> float | None:
    """The highest records-per-second between adjacent points, or None on a flat table."""
    best: float | None = None
    for a, b in itertools.pairwise(table):
        dt, dn = b.time - a.time, b.end - a.end
        if dt > 0 and dn > 0:
            rate = dn / dt
            best = rate if best is None else max(best, rate)
    return best


@dataclass(frozen=True)
class ReadRequest:
    """Read the record at `offset` of `topic[partition]` (the oldest one a group has not read)."""

    topic: str
    partition: int
    offset: int
    lag: int
    #: the history cannot interpolate it: a read matters most here
    blind: bool


@dataclass(frozen=True)
class ReadRun:
    """One sequential read of a partition from `offsets[0]` that resolves every offset listed."""

    topic: str
    partition: int
    offsets: tuple[int, ...]


def plan_reads(requests: Iterable[ReadRequest], limit: int,
               scan_limit: int = 1000) -> list[list[ReadRun]]:
    """Choose the exact reads of one refresh and group them into sequential runs, in rounds.

    Up to `limit` distinct offsets are chosen: blind ones first (no estimate, or
    an extrapolated one), then by lag, largest first; two groups at one offset
    are read once. The chosen offsets of a partition that lie within
    `scan_limit` records of each other are read in one pass (several groups a
    few records apart cost one fetch). A consumer assigns a partition once, so
    a partition's k-th run goes to round k.
    """
    if limit <= 0:
        return []
    seen: set[tuple[str, int, int]] = set()
    chosen: dict[tuple[str, int], list[int]] = {}
    for r in sorted(requests, key=lambda r: (not r.blind, -r.lag, r.topic, r.partition,
                                             r.offset)):
        key = (r.topic, r.partition, r.offset)
        if key in seen:
            continue
        seen.add(key)
        chosen.setdefault((r.topic, r.partition), []).append(r.offset)
        if len(seen) >= limit:
            break
    rounds: list[list[ReadRun]] = []
    for (topic, partition), offsets in chosen.items():
        runs: list[list[int]] = []
        for offset in sorted(offsets):
            if runs and offset - runs[-1][0] <= scan_limit:
                runs[-1].append(offset)
            else:
                runs.append([offset])
        for k, run in enumerate(runs):
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(ReadRun(topic, partition, tuple(run)))
    return rounds


def plan_distinct_reads(requests: Iterable[tuple[str, int, int, int, bool]], limit: int,
                        scan_limit: int = 1000) -> list[list[ReadRun]]:
    """`plan_reads` for requests already distinct by (topic, partition, offset), given
    as (topic, partition, offset, lag, blind) tuples.

    A refresh of 10,000 groups asks about up to 100,000 offsets for 1,000 reads: only
    the first `limit` in `plan_reads`' order (a total order: the offsets are
    distinct) become `ReadRequest`s, picked by one pass over plain tuples.
    """
    keyed = [(not blind, -lag, topic, partition, offset)
             for topic, partition, offset, lag, blind in requests]
    if len(keyed) > limit:
        keyed = heapq.nsmallest(max(0, limit), keyed)
    return plan_reads([ReadRequest(topic, partition, offset, -negative_lag, not sighted)
                       for sighted, negative_lag, topic, partition, offset in keyed],
                      limit, scan_limit)


def _clean_seconds(value: float) -> float:
    if not math.isfinite(value):
        return 0.0
    return round(max(0.0, value), 3)
