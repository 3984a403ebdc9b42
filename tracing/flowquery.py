"""`lagdeck flows` end to end: bring the index up to date, read its flow facts, compute.

    flows = find_flows(cluster, since_seconds=3600, stuck_after_seconds=300)

1. `tracing.search.sync_index` reads and indexes what the correlation index
   lacks of the chosen topics within `since` (as `lagdeck trace` does).
2. The flow facts of the covered partitions are read in bulk: int64 column
   blocks straight into numpy, no per-record Python work
   (`CorrelationIndex.flow_block_list` and `flow_block`), then cut to the records still on the
   broker and within `since`.
3. Each event gets its order: its correlation id or payload order id, else
   the order of another event sharing its trace id, else its key (the
   precedence `lagdeck trace` follows too). Events with none of them are
   counted as unassigned.
4. `tracing.flows.compute_flows` does the rest (pure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from collectors.config import ClusterConfig, Settings
from collectors.errors import InvalidValue
from collectors.kafka import DEFAULT_TIMEOUT
from collectors.logs import get_logger
from tracing.flowfacts import FACT_COLUMNS
from tracing.flows import FlowEvents, FlowMap, FlowStats, Step, compute_flows
from tracing.index import CorrelationIndex, Coverage
from tracing.search import DAY, Progress, Tracer, sync_index
from tracing.settings import TraceSettings

_log = get_logger("trace.flows")

_COL = {name: i for i, name in enumerate(FACT_COLUMNS)}
_WIDTH = len(FACT_COLUMNS)


@dataclass(frozen=True)
class FactColumns:
    """Flow facts of the covered records, one numpy column per fact field plus tp_id."""

    tp_id: np.ndarray
    facts: np.ndarray  # shape (len(FACT_COLUMNS), n)


def read_facts(index: CorrelationIndex, coverage: dict[tuple[str, int], Coverage],
               lows: dict[tuple[str, int], int], cutoff_ms: int) -> FactColumns:
    """The facts of records in each partition's covered range still on the broker,
    written at or after `cutoff_ms`.

    Blocks are copied one at a time into arrays sized beforehand, so a million
    facts cost their own 64 MB and one block more, not every blob plus a
    concatenated copy.
    """
    by_id = {c.tp_id: (tp, c) for tp, c in coverage.items()}
    # in (topic, partition, offset) order: the flow computation's tie-break, so its
    # time sort needs one pass
    listing = sorted(index.flow_block_list(by_id), key=lambda b: (by_id[b[0]][0], b[1]))
    chosen = []
    overlap = False
    last: tuple[int, int] = (-1, -1)
    for tp_id, first, last_offset, size in listing:
        if tp_id == last[0] and first <= last[1]:  # blocks of one partition are adjacent
            overlap = True
        last = (tp_id, last_offset)
        tp, cov = by_id[tp_id]
        low = max(cov.start, lows.get(tp, 0))
        if last_offset >= low and first < cov.end:
            chosen.append((tp_id, first, last_offset, size // (8 * _WIDTH), low, cov.end))
    total = sum(c[3] for c in chosen)
    facts = np.empty((_WIDTH, total), dtype=np.int64)
    tp_ids = np.empty(total, dtype=np.int64)
    ts_row = _COL["timestamp_ms"]
    n = 0
    for tp_id, first, last_offset, _, low, end in chosen:
        blob = index.flow_block(tp_id, first)
        if blob is None:
            continue
        block = np.frombuffer(blob, dtype=np.int64).reshape(_WIDTH, -1)
        cut = block[ts_row] >= cutoff_ms
        if first < low or last_offset >= end:
            offs = block[_COL["offset"]]
            cut &= (offs >= low) & (offs < end)
        if cut.all():
            size = block.shape[1]
            facts[:, n:n + size] = block
        else:
            size = int(cut.sum())
            facts[:, n:n + size] = block[:, cut]
        tp_ids[n:n + size] = tp_id
        n += size
    facts, tp_ids = facts[:, :n], tp_ids[:n]
    if overlap:  # two scans wrote the same offsets: keep one fact per record
        _, first_seen = np.unique(np.stack((tp_ids, facts[_COL["offset"]])), axis=1,
                                  return_index=True)
        first_seen.sort()
        facts, tp_ids = facts[:, first_seen], tp_ids[first_seen]
    return FactColumns(tp_ids, facts)


def resolve(index: CorrelationIndex, coverage: dict[tuple[str, int], Coverage],
            columns: FactColumns) -> tuple[FlowEvents, int]:
    """Give every fact its order and step; returns the events and how many had no order."""
    f = columns.facts
    order_h, trace_h, key_h = (f[_COL["order"]].copy(), f[_COL["trace"]],
                               f[_COL["key"]])
    # trace id -> order, from the events that carry both (the first seen wins)
    with_both = (order_h != 0) & (trace_h != 0)
    if with_both.any() and ((order_h == 0) & (trace_h != 0)).any():
        traces, first = np.unique(trace_h[with_both], return_index=True)
        orders_of = order_h[with_both][first]
        missing = np.flatnonzero((order_h == 0) & (trace_h != 0))
        where = np.searchsorted(traces, trace_h[missing])
        where = np.minimum(where, len(traces) - 1)
        found = traces[where] == trace_h[missing]
        order_h[missing[found]] = orders_of[where[found]]
    no_order = order_h == 0
    order_h[no_order] = key_h[no_order]
    assigned = order_h != 0
    unassigned = int((~assigned).sum())
    tp_ids = columns.tp_id
    if unassigned:
        f, order_h, tp_ids = f[:, assigned], order_h[assigned], tp_ids[assigned]

    unique_orders, order_index = np.unique(order_h, return_inverse=True)
    # event types are few: a dense code per hash, then one small key per (tp_id, type)
    etype_h = f[_COL["event_type"]]
    etypes = np.unique(etype_h)
    pair_key = tp_ids * len(etypes) + np.searchsorted(etypes, etype_h)
    # dense codes of the few (tp_id, type) pairs without another sort
    present = np.bincount(pair_key) > 0
    step_pairs = np.flatnonzero(present)
    dense = np.cumsum(present) - 1
    step_index = dense[pair_key]
    topic_of = {c.tp_id: tp[0] for tp, c in coverage.items()}
    partition_of = {c.tp_id: tp[1] for tp, c in coverage.items()}
    names = index.flow_names([*unique_orders.tolist(), *etypes.tolist()])
    # steps: (topic, event type); several partitions of a topic are one step
    step_of_pair = []
    steps: dict[Step, int] = {}
    for key in step_pairs.tolist():
        tp_id, eh = divmod(key, len(etypes))
        eh = int(etypes[eh])
        step = Step(topic_of[tp_id], names.get(eh) if eh else None)
        step_of_pair.append(steps.setdefault(step, len(steps)))
    step_map = np.asarray(step_of_pair, dtype=np.int64)
    part_lookup = np.zeros(max(topic_of, default=0) + 1, dtype=np.int64)
    for tp_id, p in partition_of.items():
        part_lookup[tp_id] = p
    events = FlowEvents(
        orders=tuple(names.get(h, f"#{h & 0xFFFFFFFF:08x}") for h in unique_orders.tolist()),
        steps=tuple(steps),
        order=order_index.reshape(-1).astype(np.int64),
        step=step_map[step_index.reshape(-1)] if len(step_map) else step_index.reshape(-1),
        timestamp_ms=f[_COL["timestamp_ms"]],
        partition=part_lookup[tp_ids] if len(tp_ids) else tp_ids,
        offset=f[_COL["offset"]],
        dedup=f[_COL["dedup"]],
        kind=f[_COL["kind"]].astype(np.int8))
    return events, unassigned


def flows_from_index(tracer: Tracer, *, since_seconds: float = DAY,
                     topics_regex: str | None = None, stuck_after_seconds: float = 300.0,
                     progress: Progress | None = None, now_ms: int | None = None) -> FlowMap:
    """The flow map over the chosen topics, scanning first what the index lacks."""
    if stuck_after_seconds < 0:
        raise InvalidValue("stuck_after", "must not be negative")
    started = time.monotonic()
    scope = sync_index(tracer, since_seconds=since_seconds, topics_regex=topics_regex,
                       progress=progress, now_ms=now_ms)
    lows = {tp: b[0] for tp, b in scope.bounds.items()}
    columns = read_facts(tracer.index, scope.coverage, lows, scope.cutoff_ms)
    events, unassigned = resolve(tracer.index, scope.coverage, columns)
    notes = list(scope.notes)
    if unassigned:
        notes.append(f"{unassigned} events carry no order id, correlation id, trace id or key "
                     "and are left out")
    stats = FlowStats(topics=len(scope.topics), partitions=len(scope.bounds),
                      scanned_records=scope.scanned_records, unassigned=unassigned,
                      elapsed_seconds=time.monotonic() - started)
    flows = compute_flows(events, now_ms=scope.now_ms,
                          stuck_after_ms=int(stuck_after_seconds * 1000),
                          since_seconds=since_seconds, notes=notes, stats=stats)
    flows = replace(flows, stats=replace(stats, elapsed_seconds=time.monotonic() - started))
    _log.info("flows: %d events of %d orders, %d steps, scanned %d records, %.2fs",
              flows.events, flows.orders, len(flows.steps), scope.scanned_records,
              time.monotonic() - started)
    return flows


def find_flows(cluster: ClusterConfig, *, since_seconds: float = DAY,
               topics_regex: str | None = None, stuck_after_seconds: float = 300.0,
               settings: TraceSettings | Settings | None = None,
               progress: Progress | None = None, timeout: float = DEFAULT_TIMEOUT,
               now_ms: int | None = None) -> FlowMap:
    """One-shot `flows_from_index` (the CLI's form); raises as `find_timeline` does."""
    with Tracer(cluster, settings, timeout=timeout) as tracer:
        return flows_from_index(tracer, since_seconds=since_seconds, topics_regex=topics_regex,
                                stuck_after_seconds=stuck_after_seconds, progress=progress,
                                now_ms=now_ms)
