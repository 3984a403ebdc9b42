"""A plain-Python reading of the flow rules (docs/flows.md), written independently of
`tracing.flows` (no numpy, loops over each order), to check it against."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tracing.flows import FlowRecord


def percentile(values: list[int], q: int) -> int:
    """Nearest rank: the smallest value with at least q % of the values at or below it."""
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass
class Reference:
    orders: set = field(default_factory=set)
    step_orders: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    out_of_order: Counter = field(default_factory=Counter)
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    stopped: dict = field(default_factory=dict)  # order -> (step, age_ms)
    dup_events: set = field(default_factory=set)  # (topic, partition, offset)
    late_events: set = field(default_factory=set)

    def transitions(self) -> dict:
        return {k: (len(v), percentile(v, 50), percentile(v, 95), percentile(v, 99), max(v))
                for k, v in self.latencies.items()}


def reference(records: list[FlowRecord], now_ms: int, stuck_after_ms: int,
              ratio: float = 0.95, min_orders: int = 20) -> Reference:
    ref = Reference()
    by_order: dict[str, list[FlowRecord]] = defaultdict(list)
    for r in records:
        by_order[r.order].append(r)
    sequences: dict[str, list[FlowRecord]] = {}
    for order, events in by_order.items():
        events.sort(key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset))
        seen = set()
        kept = []
        for r in events:
            step = (r.topic, r.event_type)
            if r.kind != 2 and r.identity is not None and (step, r.identity) in seen:
                ref.duplicates[step] += 1
                ref.dup_events.add((r.topic, r.partition, r.offset))
                continue
            if r.kind != 2 and r.identity is not None:
                seen.add((step, r.identity))
            kept.append(r)
        sequences[order] = kept
        ref.orders.add(order)
        for step in {(r.topic, r.event_type) for r in kept}:
            ref.step_orders[step] += 1
        for a, b in itertools.pairwise(kept):
            ref.latencies[((a.topic, a.event_type), (b.topic, b.event_type))].append(
                b.timestamp_ms - a.timestamp_ms)
    going_on = {a for a, b in ref.latencies if a != b}
    dead = {(r.topic, r.event_type) for r in records if r.kind == 1}
    for order, kept in sequences.items():
        last = kept[-1]
        step = (last.topic, last.event_type)
        if (step in going_on or step in dead) and now_ms - last.timestamp_ms > stuck_after_ms:
            ref.stopped[order] = (step, now_ms - last.timestamp_ms)
    # precedence from first occurrences
    firsts: dict[str, dict] = {}
    for order, kept in sequences.items():
        first: dict = {}
        for r in kept:
            first.setdefault((r.topic, r.event_type), r.timestamp_ms)
        firsts[order] = first
    before: Counter = Counter()
    for first in firsts.values():
        for a, ta in first.items():
            for b, tb in first.items():
                if a != b and ta < tb:
                    before[(a, b)] += 1
    for order, kept in sequences.items():
        first = firsts[order]
        for r in kept:
            b = (r.topic, r.event_type)
            for a, ta in first.items():
                n_ab, n_ba = before[(a, b)], before[(b, a)]
                if a != b and n_ab >= min_orders and n_ab >= ratio * (n_ab + n_ba) \
                        and ta > r.timestamp_ms:
                    ref.out_of_order[b] += 1
                    ref.late_events.add((r.topic, r.partition, r.offset))
                    break
    return ref
