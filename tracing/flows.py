"""The flow of all orders: steps, transitions with latencies, where orders stop,
duplicates and out-of-order events.

Pure: `compute_flows(FlowEvents, ...)` -> `FlowMap`, no Kafka, no clock. The
events come from the correlation index (`tracing.flowquery`); tests build
them by hand. Columns are numpy arrays because a flow is computed over a
million events within a second.

The rules (docs/contracts.md "flows", docs/flows.md):

- A **step** is (topic, event type). An order's events are put in time order
  (timestamp, then topic, partition, offset: the timeline's order).
- A **duplicate** is an event whose (step, identity) the order already had
  earlier: identity is the event-id header (`ce_id`, message id, ...) or else
  the key and value bytes (`tracing.flowfacts`). It is counted at its step and
  then dropped: it takes no part in transitions, latencies, "orders in",
  out-of-order or where the order stopped. A redriven copy of a dead letter is
  a retry, never a duplicate.
- A **transition** is a pair of consecutive (non-duplicate) events of one
  order; its latency is the difference of their timestamps in ms.
  Percentiles are nearest-rank: p_q is the smallest latency with at least
  q % of the transition's latencies at or below it (`sorted[ceil(q*n/100)-1]`),
  always one of the measured values.
- An order has **stopped** at step S when its latest event is at S, is older
  than `stuck_after` (now - timestamp > stuck_after), and S is a dead-letter
  step or a step that some order goes on from to another step (a repeated
  step, such as a third status update, is not going on).
  An order whose latest step no order goes on from has completed.
- Step A **precedes** step B when, among the orders that have both, A's first
  event comes before B's first event in at least `PRECEDES_RATIO` (95 %) of
  them and in at least `PRECEDES_MIN_ORDERS` (20) orders; ties count for
  neither side. An event at B is **out of order** when its order has a step A
  that precedes B whose first event is later than it. It is counted at B.
  Orders with more than `MAX_PAIRED_STEPS` distinct steps are left out of
  this test (noted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracing.flowfacts import DEAD_LETTER, REDRIVEN
from tracing.scanreport import ReadStats, ScanWindow

PRECEDES_RATIO = 0.95
PRECEDES_MIN_ORDERS = 20
#: Orders with more distinct steps than this are not tested for out-of-order events
#: (pairs grow with the square of the steps).
MAX_PAIRED_STEPS = 32
PERCENTILES = (50, 95, 99)

DUPLICATE = "duplicate"
OUT_OF_ORDER = "out-of-order"


@dataclass(frozen=True, order=True)
class Step:
    """One step of the flow: an event type on a topic."""

    topic: str
    event_type: str | None

    @property
    def name(self) -> str:
        return self.event_type if self.event_type is not None else "(no event type)"

    def label(self) -> str:
        return f"{self.topic}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "event_type": self.event_type}


@dataclass(frozen=True, eq=False)
class FlowEvents:
    """The events of a flow as columns; index i of every array is one event.

    `order` indexes `orders` (order ids), `step` indexes `steps`. `dedup` is
    the event identity (equal means "the same event"), `kind` 0 ordinary,
    1 dead letter, 2 redriven copy (`tracing.flowfacts`).
    """

    orders: tuple[str, ...]
    steps: tuple[Step, ...]
    order: np.ndarray
    step: np.ndarray
    timestamp_ms: np.ndarray
    partition: np.ndarray
    offset: np.ndarray
    dedup: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.order.shape[0])


@dataclass(frozen=True)
class FlowRecord:
    """One event, for building `FlowEvents` by hand (tests, small inputs)."""

    order: str
    topic: str
    event_type: str | None
    timestamp_ms: int
    partition: int = 0
    offset: int = 0
    #: what makes two records the same event (an event id, or key+value)
    identity: object = None
    kind: int = 0


def events_from_records(records: Iterable[FlowRecord]) -> FlowEvents:
    """Columns from records; a record without `identity` is unique."""
    records = list(records)
    orders = sorted({r.order for r in records})
    steps = sorted({Step(r.topic, r.event_type) for r in records},
                   key=lambda s: (s.topic, s.event_type or ""))
    o_index = {o: i for i, o in enumerate(orders)}
    s_index = {s: i for i, s in enumerate(steps)}
    ids: dict[object, int] = {}
    dedup = []
    for i, r in enumerate(records):
        key = ("unique", i) if r.identity is None else ("id", r.identity)
        dedup.append(ids.setdefault(key, len(ids)))

    def col(values: Sequence[int], dtype: Any = np.int64) -> np.ndarray:
        return np.asarray(values, dtype=dtype)

    return FlowEvents(
        orders=tuple(orders), steps=tuple(steps),
        order=col([o_index[r.order] for r in records]),
        step=col([s_index[Step(r.topic, r.event_type)] for r in records]),
        timestamp_ms=col([r.timestamp_ms for r in records]),
        partition=col([r.partition for r in records]),
        offset=col([r.offset for r in records]),
        dedup=col(dedup), kind=col([r.kind for r in records], np.int8))


@dataclass(frozen=True)
class FlowStep:
    step: Step
    #: orders with at least one (non-duplicate) event at this step
    orders: int
    events: int
    stopped: int
    oldest_stopped_seconds: float | None
    duplicates: int
    out_of_order: int
    dead_letter: bool
    #: no order goes on from this step (its orders have completed)
    terminal: bool
    #: p95 latency of all transitions leaving this step
    p95_next_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.step.topic, "event_type": self.step.event_type,
            "orders": self.orders, "events": self.events, "stopped": self.stopped,
            "oldest_stopped_seconds": (None if self.oldest_stopped_seconds is None
                                       else round(self.oldest_stopped_seconds, 3)),
            "duplicates": self.duplicates, "out_of_order": self.out_of_order,
            "dead_letter": self.dead_letter, "terminal": self.terminal,
            "p95_next_ms": self.p95_next_ms,
        }


@dataclass(frozen=True)
class Transition:
    source: Step
    target: Step
    count: int
    p50_ms: int
    p95_ms: int
    p99_ms: int
    max_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source.to_json(), "to": self.target.to_json(),
                "count": self.count, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms}


@dataclass(frozen=True)
class StoppedOrder:
    id: str
    step: Step
    age_seconds: float
    partition: int
    offset: int
    timestamp_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "age_seconds": round(self.age_seconds, 3),
                "last_event": {"topic": self.step.topic, "partition": self.partition,
                               "offset": self.offset, "event_type": self.step.event_type}}


@dataclass(frozen=True)
class FlowMark:
    """A flagged event (for timelines): a duplicate or an out-of-order event."""

    order: str
    topic: str
    partition: int
    offset: int
    mark: str


@dataclass(frozen=True, kw_only=True)
class FlowStats(ReadStats):
    #: events in the window that no order id could be found for
    unassigned: int = 0

    def counts(self) -> dict[str, int]:
        return {"unassigned_events": self.unassigned}


@dataclass(frozen=True)
class FlowMap(ScanWindow):
    """The flow of every order seen in the window."""

    orders: int
    events: int
    steps: tuple[FlowStep, ...]
    transitions: tuple[Transition, ...]
    #: every stopped order, oldest first
    stopped: tuple[StoppedOrder, ...]
    marks: tuple[FlowMark, ...] = ()
    stats: FlowStats = field(default_factory=FlowStats)

    def find_steps(self, name: str) -> tuple[Step, ...]:
        """Steps named `name`: an event type, or `TOPIC:EVENT_TYPE` for one topic's."""
        all_steps = [s.step for s in self.steps]
        topic, sep, etype = name.partition(":")
        if sep and any(s.topic == topic for s in all_steps):
            return tuple(s for s in all_steps if s.topic == topic and s.name == etype)
        return tuple(s for s in all_steps if s.name == name)

    def stopped_at(self, steps: Iterable[Step]) -> tuple[StoppedOrder, ...]:
        chosen = set(steps)
        return tuple(s for s in self.stopped if s.step in chosen)

    def to_json(self, step: str | None = None) -> dict[str, Any]:
        """The `lagdeck flows --json` document (docs/contracts.md), plus notes and statistics."""
        doc: dict[str, Any] = {
            "since_seconds": self.since_seconds,
            "stuck_after_seconds": self.stuck_after_seconds,
            "orders": self.orders,
            "events": self.events,
            "steps": [s.to_json() for s in self.steps],
            "transitions": [t.to_json() for t in self.transitions],
        }
        if step is not None:
            doc["step"] = step
            doc["stopped_orders"] = [s.to_json() for s in self.stopped_at(self.find_steps(step))]
        doc["flagged"] = [{"order": m.order, "topic": m.topic, "partition": m.partition,
                           "offset": m.offset, "mark": m.mark} for m in self.marks]
        doc["notes"] = list(self.notes)
        doc["stats"] = self.stats.to_json()
        return doc


def nearest_rank(sorted_values: np.ndarray, q: int) -> int:
    """The nearest-rank q-th percentile of an ascending, non-empty array."""
    n = len(sorted_values)
    return int(sorted_values[max((q * n + 99) // 100 - 1, 0)])


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Start indices of runs of equal values in a sorted array."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def _group_ends(starts: np.ndarray, n: int) -> np.ndarray:
    """End indices (exclusive) of the runs that start at `starts` in an array of length n."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.append(starts[1:], n).astype(np.int64)


def compute_flows(events: FlowEvents, *, now_ms: int, stuck_after_ms: int,
                  since_seconds: float | None = None, notes: Sequence[str] = (),
                  stats: FlowStats | None = None) -> FlowMap:
    """The flow map of `events` (see the module docstring for every rule)."""
    notes = list(notes)
    n_steps = len(events.steps)
    topics = sorted({s.topic for s in events.steps})
    topic_rank = np.asarray([topics.index(s.topic) for s in events.steps] or [0],
                            dtype=np.int64)
    order, step, ts = events.order, events.step, events.timestamp_ms
    # time order within each order: (order, timestamp, topic, partition, offset)
    idx = _time_order(order, ts, topic_rank[step] if len(step) else step, events.partition,
                      events.offset)
    order, step, ts = order[idx], step[idx], ts[idx]
    partition, offset = events.partition[idx], events.offset[idx]
    dedup, kind = events.dedup[idx], events.kind[idx]
    n = len(order)

    # -- duplicates: (order, step, identity) seen earlier in time ---------------------
    dup = np.zeros(n, dtype=bool)
    candidates = np.flatnonzero(kind != REDRIVEN)
    if len(candidates):
        # one 64-bit key per (order, step, identity) (equal keys are checked field by
        # field below); the stable sort keeps the time order among equal keys
        combo = dedup[candidates] ^ ((order[candidates] * n_steps + step[candidates])
                                     * np.int64(-7046029254386353131))
        by = np.argsort(combo, kind="stable")
        c = candidates[by]
        same = ((order[c][1:] == order[c][:-1]) & (step[c][1:] == step[c][:-1])
                & (dedup[c][1:] == dedup[c][:-1]))
        dup[c[1:][same]] = True
    duplicates = np.bincount(step[dup], minlength=n_steps)
    marks = [(int(i), DUPLICATE) for i in np.flatnonzero(dup)]

    keep = ~dup
    k_order, k_step, k_ts = order[keep], step[keep], ts[keep]
    k_part, k_off = partition[keep], offset[keep]
    k_index = np.flatnonzero(keep)  # back to the time-ordered arrays, for marks
    m = len(k_order)
    dead_steps = np.zeros(n_steps, dtype=bool)
    dead_steps[step[kind == DEAD_LETTER]] = True

    # -- orders per step, events per step ---------------------------------------------
    events_per_step = np.bincount(k_step, minlength=n_steps)
    pair_key = k_order * max(n_steps, 1) + k_step
    first_keys, first_index = _first_of_each(pair_key)
    orders_per_step = np.bincount(first_keys % max(n_steps, 1), minlength=n_steps)

    # -- transitions --------------------------------------------------------------------
    same_order = k_order[1:] == k_order[:-1] if m else np.zeros(0, dtype=bool)
    src, dst = k_step[:-1][same_order], k_step[1:][same_order]
    latency = (k_ts[1:] - k_ts[:-1])[same_order]
    t_key = src * max(n_steps, 1) + dst
    t_key, latency_sorted = _sorted_pairs(t_key, latency)
    starts = _group_starts(t_key)
    ends = _group_ends(starts, len(t_key))
    transitions = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        lat = latency_sorted[a:b]
        key = int(t_key[a])
        transitions.append((key // n_steps, key % n_steps, b - a,
                            *(nearest_rank(lat, q) for q in PERCENTILES), int(lat[-1])))
    # a step some order goes on from to another step (a repeated step is not "going on")
    outgoing = np.zeros(n_steps, dtype=bool)
    outgoing[src[src != dst]] = True
    # p95 of everything leaving a step
    p95_next: dict[int, int] = {}
    if len(src):
        s_sorted, l_sorted = _sorted_pairs(src, latency)
        s_starts = _group_starts(s_sorted)
        s_ends = _group_ends(s_starts, len(s_sorted))
        for a, b in zip(s_starts.tolist(), s_ends.tolist(), strict=True):
            p95_next[int(s_sorted[a])] = nearest_rank(l_sorted[a:b], 95)

    # -- where orders stop ------------------------------------------------------------
    o_starts = _group_starts(k_order)
    o_last = _group_ends(o_starts, m) - 1
    last_step, last_ts = k_step[o_last], k_ts[o_last]
    age_ms = now_ms - last_ts
    open_step = dead_steps | outgoing
    is_stopped = open_step[last_step] & (age_ms > stuck_after_ms) if m else np.zeros(0, bool)
    stopped_idx = o_last[is_stopped]
    stopped_count = np.bincount(k_step[stopped_idx], minlength=n_steps)
    oldest = np.full(n_steps, -1, dtype=np.int64)
    if len(stopped_idx):
        np.maximum.at(oldest, k_step[stopped_idx], now_ms - k_ts[stopped_idx])
    stopped_sorted = stopped_idx[np.lexsort((k_order[stopped_idx], k_ts[stopped_idx]))]
    stopped = tuple(StoppedOrder(events.orders[int(k_order[i])], events.steps[int(k_step[i])],
                                 (now_ms - int(k_ts[i])) / 1000, int(k_part[i]), int(k_off[i]),
                                 int(k_ts[i]))
                    for i in stopped_sorted.tolist())

    # -- out of order -------------------------------------------------------------------
    out_of_order = np.zeros(n_steps, dtype=np.int64)
    if m and n_steps > 1:
        late = _out_of_order(k_order, k_step, k_ts, first_keys, first_index, n_steps, notes)
        out_of_order = np.bincount(k_step[late], minlength=n_steps)
        marks += [(int(k_index[i]), OUT_OF_ORDER) for i in np.flatnonzero(late)]

    # -- steps in flow order: by the mean time of their first event after the order's start
    start_ts = k_ts[o_starts] if m else k_ts
    order_pos = np.searchsorted(o_starts, first_index, side="right") - 1 if m else first_index
    since_start = k_ts[first_index] - (start_ts[order_pos] if m else 0)
    first_steps = first_keys % max(n_steps, 1)
    mean_pos = (np.bincount(first_steps, weights=since_start, minlength=n_steps)
                / np.maximum(orders_per_step, 1))
    flow_order = sorted(range(n_steps), key=lambda s: (
        orders_per_step[s] == 0, float(mean_pos[s]), events.steps[s].topic,
        events.steps[s].event_type or ""))

    steps = tuple(FlowStep(
        step=events.steps[s], orders=int(orders_per_step[s]), events=int(events_per_step[s]),
        stopped=int(stopped_count[s]),
        oldest_stopped_seconds=(int(oldest[s]) / 1000 if oldest[s] >= 0 else None),
        duplicates=int(duplicates[s]), out_of_order=int(out_of_order[s]),
        dead_letter=bool(dead_steps[s]), terminal=not bool(outgoing[s]),
        p95_next_ms=p95_next.get(s)) for s in flow_order
        if orders_per_step[s] or duplicates[s])
    rank = {s: i for i, s in enumerate(flow_order)}
    transitions.sort(key=lambda t: (rank[t[0]], -t[2], rank[t[1]]))
    flow_transitions = tuple(Transition(events.steps[a], events.steps[b], int(c), p50, p95,
                                        p99, mx) for a, b, c, p50, p95, p99, mx in transitions)
    flagged = tuple(sorted(
        (FlowMark(events.orders[int(order[i])], events.steps[int(step[i])].topic,
                  int(partition[i]), int(offset[i]), mark) for i, mark in marks),
        key=lambda f: (f.order, f.topic, f.partition, f.offset)))
    return FlowMap(
        orders=len(o_starts), events=m, steps=steps, transitions=flow_transitions,
        stopped=stopped, marks=flagged, since_seconds=since_seconds,
        stuck_after_seconds=stuck_after_ms / 1000, generated_at_ms=now_ms, notes=tuple(notes),
        stats=stats or FlowStats())


_TS_BITS = 42  # timestamps within 139 years of the earliest one: (order, time) in one int64
_LOW_BITS = 40


def _fits(values: np.ndarray, bits: int) -> bool:
    return len(values) == 0 or (int(values.min()) >= 0 and int(values.max()) < (1 << bits))


def _time_order(order: np.ndarray, ts: np.ndarray, topic_rank: np.ndarray,
                partition: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Indices sorting by (order, timestamp, topic, partition, offset).

    Packs (order, timestamp) into one int64 and the tie-break into another
    when they fit (one or two sorts instead of a five-key lexsort); input
    already in tie-break order (the index reads it so) needs one sort only.
    """
    if len(order) == 0:
        return np.zeros(0, dtype=np.int64)
    rel = ts - ts.min()
    tp_key = topic_rank * (int(partition.max()) + 1) + partition if len(partition) else partition
    if not (_fits(rel, _TS_BITS) and _fits(order, 63 - _TS_BITS) and _fits(offset, _LOW_BITS)
            and _fits(tp_key, 63 - _LOW_BITS)):
        return np.lexsort((offset, partition, topic_rank, ts, order))
    primary = (order << _TS_BITS) | rel
    tie = (tp_key << _LOW_BITS) | offset
    if bool(np.all(tie[1:] >= tie[:-1])):
        return np.argsort(primary, kind="stable")
    by_tie = np.argsort(tie, kind="stable")
    return by_tie[np.argsort(primary[by_tie], kind="stable")]


def _sorted_pairs(key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(key, value) pairs sorted by key then value: one sort of packed values when
    they fit (no index array, no gathers), else a lexsort."""
    if _fits(value, _LOW_BITS) and _fits(key, 63 - _LOW_BITS):
        packed = np.sort((key << _LOW_BITS) | value)
        return packed >> _LOW_BITS, packed & ((1 << _LOW_BITS) - 1)
    by = np.lexsort((value, key))
    return key[by], value[by]


def _first_of_each(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys, sorted, and the index of each one's first occurrence."""
    n = len(keys)
    bits = max(int(n).bit_length(), 1)
    if _fits(keys, 63 - bits):
        packed = np.sort((keys << bits) | np.arange(n, dtype=np.int64))
        k = packed >> bits
        first = np.concatenate(([True], k[1:] != k[:-1])) if n else np.zeros(0, bool)
        return k[first], packed[first] & ((1 << bits) - 1)
    return np.unique(keys, return_index=True)


def _out_of_order(k_order: np.ndarray, k_step: np.ndarray, k_ts: np.ndarray,
                  first_keys: np.ndarray, first_index: np.ndarray, n_steps: int,
                  notes: list[str]) -> np.ndarray:
    """Which events (of the duplicate-free, time-ordered arrays) are out of order."""
    f_order = k_order[first_index]
    f_step = first_keys % n_steps
    f_ts = k_ts[first_index]
    g_starts = _group_starts(f_order)
    g_sizes = _group_ends(g_starts, len(f_order)) - g_starts
    wide = g_sizes > MAX_PAIRED_STEPS
    if wide.any():
        notes.append(f"{int(wide.sum())} orders have more than {MAX_PAIRED_STEPS} distinct "
                     "steps and were not checked for out-of-order events")
    # Pairs of one order's first events: element x with x + d, for each distance d
    # (each x appears once per d, so plain indexing replaces ufunc.at).
    group_of = np.repeat(np.arange(len(g_starts)), g_sizes)
    ok = ~wide[group_of]
    n_first = len(f_order)
    codes = []
    pairs = []
    max_d = int(g_sizes[~wide].max()) if (~wide).any() else 1
    for d in range(1, max_d):
        i = np.arange(n_first - d)
        j = i + d
        same = (group_of[i] == group_of[j]) & ok[i]
        i, j = i[same], j[same]
        pairs.append((i, j))
        ti, tj = f_ts[i], f_ts[j]
        si, sj = f_step[i], f_step[j]
        codes.append((si * n_steps + sj)[ti < tj])
        codes.append((sj * n_steps + si)[tj < ti])
    before = np.bincount(np.concatenate(codes) if codes else np.zeros(0, np.int64),
                         minlength=n_steps * n_steps).reshape(n_steps, n_steps)
    both = before + before.T
    precedes = (before >= PRECEDES_MIN_ORDERS) & (before >= PRECEDES_RATIO * both)
    # For the first event of each (order, B): the latest first event of a step A
    # that precedes B in the same order.
    latest = np.full(n_first, np.iinfo(np.int64).min, dtype=np.int64)
    if precedes.any():
        for i, j in pairs:
            si, sj = f_step[i], f_step[j]
            a = precedes[sj, si]  # j's step precedes i's step
            latest[i[a]] = np.maximum(latest[i[a]], f_ts[j[a]])
            b = precedes[si, sj]
            latest[j[b]] = np.maximum(latest[j[b]], f_ts[i[b]])
    # every event of (order, B) arrived before that time is out of order
    key = k_order * n_steps + k_step
    where = np.searchsorted(first_keys, key)
    return k_ts < latest[where]
