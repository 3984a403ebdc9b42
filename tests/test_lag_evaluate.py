"""The collector's evaluation (`LagCollector.evaluate`) gives what the reference rules give.

`_evaluate` judges 100,000 partitions per refresh at 10,000 groups, so it
folds the work into a few passes (`collectors.lag`), judges each partition
with `evaluate_current` and builds snapshots without the frozen `__init__`
(`collectors.snapshots.partition_lag`, `group_lag`). Here generated broker
views, refresh after refresh, are evaluated by the collector and, alongside,
by the plain reference: `evaluate_partition` over the samples seen so far
plus the one taken now, `timelag.estimate` over the history's points, the
snapshot dataclasses' own constructors, the group folded with `max`. The two
snapshots must be equal and give the same `--json` bytes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors import timelag
from collectors.config import ClusterConfig
from collectors.lag import (
    LOOKBACK,
    PARTITION_UNKNOWN,
    TOPIC_DELETED,
    BrokerView,
    GroupData,
    LagCollector,
    LagSettings,
)
from collectors.snapshots import (
    SEVERITY,
    GroupLag,
    LagSnapshot,
    Member,
    PartitionLag,
    Status,
    group_lag,
    partition_lag,
)
from collectors.status import (
    Sample,
    StatusPolicy,
    Verdict,
    evaluate_group,
    evaluate_partition,
    partition_status,
)
from collectors.timelag import ReadRequest, plan_distinct_reads, plan_reads
from console.context import _fast_bytes, to_jsonable

NOWHERE = ClusterConfig({"bootstrap.servers": "127.0.0.1:1"})
TOPICS = {"a": 2, "b": 3}
#: partitions a group may have offsets on: existing ones, one past "b"'s count, a deleted topic
CHOICES = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2), ("b", 5), ("gone", 0)]
STATES = ["STABLE", "EMPTY", "UNKNOWN", "PREPARING_REBALANCING", "DEAD"]


# ---------------------------------------------------------------- the fast constructors


def test_partition_lag_builds_what_the_dataclass_builds() -> None:
    args = ("t", 3, 10, 20, 10, 1.5, "interpolated", Status.WARN, None, "lag not decreasing")
    fast, plain = partition_lag(*args), PartitionLag(*args)
    assert fast == plain and hash(fast) == hash(plain)
    assert list(vars(fast)) == [f.name for f in dataclasses.fields(PartitionLag)]
    assert _fast_bytes(LagSnapshot(1.0, (GroupLag("g", "EMPTY", Status.OK, 0, None, (fast,)),))) \
        == _fast_bytes(LagSnapshot(1.0, (GroupLag("g", "EMPTY", Status.OK, 0, None, (plain,)),)))
    try:
        fast.lag = 5  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("a fast-built PartitionLag must stay frozen")


def test_group_lag_builds_what_the_dataclass_builds() -> None:
    part = PartitionLag("t", 0, 1, 2, 1, None, "unknown", Status.UNKNOWN)
    members = (Member("m", "c", "/h", (("t", 0),)),)
    args = ("g", "STABLE", Status.UNKNOWN, 1, None, (part,), members, None, "why", 7)
    fast, plain = group_lag(*args), GroupLag(*args)
    assert fast == plain
    assert list(vars(fast)) == [f.name for f in dataclasses.fields(GroupLag)]
    assert _fast_bytes(LagSnapshot(1.0, (fast,))) == _fast_bytes(LagSnapshot(1.0, (plain,)))


# ---------------------------------------------------------------- exact reads planned


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("tu"), st.integers(0, 2), st.integers(0, 60),
                          st.integers(1, 50), st.booleans()),
                max_size=40, unique_by=lambda r: r[:3]),
       st.integers(0, 12))
def test_distinct_reads_are_planned_as_plan_reads_plans_them(requests, limit: int) -> None:
    expected = plan_reads([ReadRequest(*r) for r in requests], limit, scan_limit=20)
    assert plan_distinct_reads(requests, limit, scan_limit=20) == expected


# ---------------------------------------------------------------- generated refreshes


@st.composite
def refreshes(draw: st.DrawFn) -> list[BrokerView]:
    """A few groups over a few refreshes: offsets that move, hold and go back, members
    that come and go, end offsets unknown, partition and group errors, deleted topics."""
    n_groups = draw(st.integers(1, 4))
    layouts = [draw(st.lists(st.sampled_from(CHOICES), min_size=0, max_size=5, unique=True))
               for _ in range(n_groups)]
    committed = {(g, tp): draw(st.integers(0, 40)) for g in range(n_groups) for tp in CHOICES}
    ends = {tp: draw(st.integers(40, 80)) for tp in CHOICES}
    t = float(int(time.time()) - 86400)  # within the history's retention (7 days)
    views = []
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([0.0, 1.0, 5.0, 9.0, 30.0, 600.0]))
        for tp in ends:
            ends[tp] += draw(st.sampled_from([0, 0, 1, 4, 20]))
        groups = []
        for g, layout in enumerate(layouts):
            state = draw(st.sampled_from(STATES))
            members = draw(st.sampled_from([None, (), (Member("m", "c", "/h", ()),)]))
            offsets: dict[tuple[str, int], int | None] = {}
            errors: dict[tuple[str, int], str] = {}
            for tp in layout:
                committed[(g, tp)] = max(0, committed[(g, tp)]
                                         + draw(st.sampled_from([0, 0, 0, 1, 5, -3, 30])))
                offsets[tp] = min(committed[(g, tp)], ends[tp] + 2)
                roll = draw(st.integers(0, 14))
                if roll == 0:
                    offsets[tp] = None
                elif roll == 1:
                    errors[tp] = "UNSTABLE_OFFSET_COMMIT: try again"
                    offsets[tp] = None
            vanished = draw(st.sampled_from([{}, {}, {}, {("old", 1): 3, ("old", 0): None}]))
            groups.append(GroupData(f"g{g}", state, members, offsets, errors,
                                    draw(st.sampled_from([None] * 6 + ["describe: timed out"])),
                                    vanished))
        known = {tp: e for tp, e in ends.items() if tp[0] in TOPICS and tp[1] < TOPICS[tp[0]]}
        missing = draw(st.sampled_from([None, None, ("a", 1)]))
        end_errors = {}
        if missing is not None:
            del known[missing]
            end_errors[missing] = "NOT_LEADER_FOR_PARTITION"
        views.append(BrokerView(t, tuple(groups), TOPICS, known, end_errors, len(groups)))
    return views


def reference(view: BrokerView, seen: dict[tuple[str, str, int], list[Sample]],
              points: dict[tuple[str, int], list[timelag.Point]],
              options: LagSettings) -> LagSnapshot:
    """The snapshot as the plain rules and constructors give it."""
    now, policy = view.taken_at, options.policy
    groups = []
    for d in view.groups:
        allowed = options.allowed_lag_for(d.group)
        parts = []
        for tp in sorted(d.committed):
            topic, partition = tp
            committed, end = d.committed[tp], view.ends.get(tp)
            error = d.partition_errors.get(tp)
            if error is None:
                if topic not in view.topics:
                    error = TOPIC_DELETED
                elif partition >= view.topics[topic]:
                    error = PARTITION_UNKNOWN
                elif end is None:
                    error = f"end offset unknown: {view.end_errors.get(tp, 'no answer')}"
            if error is not None:
                parts.append(PartitionLag(topic, partition, committed, end, None, None,
                                          "unknown", Status.ERR, error=error,
                                          status_reason=error))
                continue
            if committed is None:
                parts.append(PartitionLag(topic, partition, None, end, None, None, "unknown",
                                          Status.OK, status_reason="no committed offset"))
                continue
            lag = max(0, end - committed)
            window = seen.get((d.group, topic, partition), [])[-LOOKBACK:]
            verdict: Verdict
            if window and window[-1].time >= now:
                verdict = evaluate_partition(window, policy=policy, allowed_lag=allowed)
            elif lag <= allowed:
                verdict = partition_status([], [], lag, now, allowed_lag=allowed)
            else:
                verdict = evaluate_partition([*window, Sample(now, committed, end, d.active)],
                                             policy=policy, allowed_lag=allowed)
            lag_s = (timelag.estimate(committed, end, points.get(tp, []), now) if lag > 0
                     else timelag.TimeLag(0.0, timelag.ZERO))
            parts.append(PartitionLag(topic, partition, committed, end, lag, lag_s.seconds,
                                      lag_s.method, verdict.status,
                                      status_reason=verdict.reason))
        for tp, committed in sorted(d.vanished.items()):
            parts.append(PartitionLag(tp[0], tp[1], committed, None, None, None, "unknown",
                                      Status.ERR, error=TOPIC_DELETED,
                                      status_reason=f"{TOPIC_DELETED}: the group had offsets "
                                                    "on it"))
        worst = max(parts, key=lambda p: (SEVERITY[p.status], p.lag or 0), default=None)
        seconds = [p.lag_seconds for p in parts if p.lag_seconds is not None]
        groups.append(GroupLag(
            d.group, d.state, evaluate_group([p.status for p in parts], d.error),
            sum(p.lag or 0 for p in parts), max(seconds) if seconds else None, tuple(parts),
            d.members, d.error,
            d.error or (worst.status_reason if worst is not None else "no committed offsets"),
            allowed))
    return LagSnapshot(now, tuple(groups), view.errors, view.listed, view.offsets_via,
                       view.offsets_via_reason)


@settings(max_examples=60, deadline=None)
@given(views=refreshes(), window=st.integers(1, 8), min_samples=st.integers(1, 3),
       grace=st.sampled_from([0.0, 5.0, 10.0]), allowed=st.sampled_from([0, 3, 40]))
def test_each_refresh_gives_the_reference_snapshot(views: list[BrokerView], window: int,
                                                   min_samples: int, grace: float,
                                                   allowed: int) -> None:
    options = LagSettings(
        policy=StatusPolicy(window=window, min_samples=min(window, min_samples),
                            grace_seconds=grace),
        allowed_lag=((re.compile("g1"), allowed),), exact_budget_seconds=0.0)
    seen: dict[tuple[str, str, int], list[Sample]] = {}
    with LagCollector(NOWHERE, lag_settings=options) as collector:
        for view in views:
            tps = {tp for d in view.groups for tp in d.committed if tp in view.ends}
            points = collector.history.points(collector.key, tps)
            expected = reference(view, seen, points, options)
            snapshot = collector.evaluate(view)
            assert snapshot == expected
            assert _fast_bytes(snapshot) == _fast_bytes(expected)
            assert json.dumps(to_jsonable(snapshot)) == json.dumps(to_jsonable(expected))
            for d in view.groups:  # what the collector records: every partition with an end
                for tp, committed in d.committed.items():
                    if tp in view.ends:
                        seen.setdefault((d.group, *tp), []).append(
                            Sample(view.taken_at, committed, view.ends[tp], d.active))
