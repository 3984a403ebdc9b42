"""The flow rules as pure functions: hand-made cases, and random pipelines checked
against a plain-Python reading of the rules (tests/flow_reference.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.flow_reference import percentile, reference
from tracing.flows import (
    DUPLICATE,
    OUT_OF_ORDER,
    FlowRecord,
    Step,
    compute_flows,
    events_from_records,
    nearest_rank,
)

NOW = 10_000_000


def flows_of(records, now=NOW, stuck_after=60_000):
    return compute_flows(events_from_records(records), now_ms=now, stuck_after_ms=stuck_after)


def test_nearest_rank_percentiles():
    values = np.arange(1, 101)
    assert [nearest_rank(values, q) for q in (50, 95, 99)] == [50, 95, 99]
    assert nearest_rank(np.array([7]), 99) == 7
    assert nearest_rank(np.array([1, 2, 3, 4]), 50) == 2  # ceil(0.5*4) = 2nd value
    assert percentile([4, 3, 2, 1], 50) == 2


def test_steps_transitions_compensation_and_stops():
    o, i, p, dlt = "orders", "inventory", "payments", "payments-dlt"
    records = []
    # 3 orders complete: placed -> reserved -> captured (completed: nothing goes on)
    for n in range(3):
        base = 1_000_000 + n * 1000
        records += [FlowRecord(f"ok{n}", o, "Placed", base, offset=n),
                    FlowRecord(f"ok{n}", i, "Reserved", base + 10 * (n + 1), offset=n),
                    FlowRecord(f"ok{n}", p, "Captured", base + 100, offset=n)]
    # compensation: payment failed, then the stock is released
    records += [FlowRecord("comp", o, "Placed", 2_000_000, offset=10),
                FlowRecord("comp", i, "Reserved", 2_000_005, offset=10),
                FlowRecord("comp", p, "Failed", 2_000_050, offset=11),
                FlowRecord("comp", i, "Released", 2_000_070, offset=12)]
    # dead-lettered long ago: stopped at the dead-letter step
    records += [FlowRecord("dead", o, "Placed", 3_000_000, offset=20),
                FlowRecord("dead", i, "Reserved", 3_000_010, offset=20),
                FlowRecord("dead", dlt, "Reserved", 3_000_020, kind=1)]
    # reserved long ago and nothing since: stopped at Reserved (others go on from it)
    records += [FlowRecord("waiting", o, "Placed", 4_000_000, offset=30),
                FlowRecord("waiting", i, "Reserved", 4_000_001, offset=30)]
    # reserved just now: not stopped yet
    records += [FlowRecord("fresh", o, "Placed", NOW - 2000, offset=40),
                FlowRecord("fresh", i, "Reserved", NOW - 1000, offset=40)]
    flows = flows_of(records)
    assert flows.orders == 7
    by = {s.step: s for s in flows.steps}
    assert by[Step(o, "Placed")].orders == 7
    assert by[Step(i, "Reserved")].stopped == 1
    assert by[Step(dlt, "Reserved")].dead_letter and by[Step(dlt, "Reserved")].stopped == 1
    assert by[Step(p, "Captured")].terminal and by[Step(p, "Captured")].stopped == 0
    assert by[Step(i, "Released")].terminal
    trans = {(t.source, t.target): t for t in flows.transitions}
    assert trans[(Step(o, "Placed"), Step(i, "Reserved"))].count == 7
    assert trans[(Step(p, "Failed"), Step(i, "Released"))].count == 1
    assert trans[(Step(i, "Reserved"), Step(dlt, "Reserved"))].count == 1
    placed_reserved = trans[(Step(o, "Placed"), Step(i, "Reserved"))]
    lat = [10, 20, 30, 5, 10, 1, 1000]
    assert (placed_reserved.p50_ms, placed_reserved.p95_ms, placed_reserved.max_ms) == (
        percentile(lat, 50), percentile(lat, 95), 1000)
    assert {s.id for s in flows.stopped} == {"dead", "waiting"}
    assert flows.stopped[0].id == "dead"  # oldest first
    doc = flows.to_json(step="Reserved")
    assert {s["id"] for s in doc["stopped_orders"]} == {"dead", "waiting"}
    doc = flows.to_json(step=f"{dlt}:Reserved")
    assert [s["id"] for s in doc["stopped_orders"]] == ["dead"]
    assert doc["stopped_orders"][0]["last_event"] == {
        "topic": dlt, "partition": 0, "offset": 0, "event_type": "Reserved"}


def test_duplicates_are_counted_once_and_left_out_of_transitions():
    records = [FlowRecord("a", "t", "X", 100, offset=0, identity="e1"),
               FlowRecord("a", "t", "Y", 200, offset=1, identity="e2"),
               FlowRecord("a", "t", "X", 250, offset=2, identity="e1"),  # re-sent X
               FlowRecord("a", "t", "Y", 300, offset=3, identity="e2"),  # re-sent Y
               # a redriven copy is a retry, not a duplicate
               FlowRecord("a", "t", "Z", 400, offset=4, identity="e3"),
               FlowRecord("a", "t", "Z", 500, offset=5, identity="e3", kind=2)]
    flows = flows_of(records)
    by = {s.step.event_type: s for s in flows.steps}
    assert (by["X"].duplicates, by["Y"].duplicates, by["Z"].duplicates) == (1, 1, 0)
    assert [(t.source.event_type, t.target.event_type, t.count) for t in flows.transitions] \
        == [("X", "Y", 1), ("Y", "Z", 1), ("Z", "Z", 1)]
    assert {(m.offset, m.mark) for m in flows.marks} == {(2, DUPLICATE), (3, DUPLICATE)}


def test_out_of_order_needs_a_step_that_almost_always_comes_first():
    records = []
    for n in range(40):
        t = n * 1000
        late = n == 7
        records += [FlowRecord(f"o{n}", "a", "A", t + (50 if late else 0), offset=n),
                    FlowRecord(f"o{n}", "b", "B", t + 10, offset=n)]
    flows = flows_of(records)
    by = {s.step.event_type: s for s in flows.steps}
    assert (by["A"].out_of_order, by["B"].out_of_order) == (0, 1)
    assert [(m.order, m.topic, m.mark) for m in flows.marks] == [("o7", "b", OUT_OF_ORDER)]
    # below the support threshold nothing is flagged: 19 orders are too few to know
    few = [r for r in records if int(r.order[1:]) < 19]
    assert all(s.out_of_order == 0 for s in flows_of(few).steps)


@pytest.mark.parametrize("seed", range(12))
def test_random_pipelines_agree_with_the_reference(seed):
    rng = random.Random(seed)
    chain = ["Placed", "Reserved", "Charged", "Shipped", "Delivered"]
    records: list[FlowRecord] = []
    ident = 0
    for n in range(rng.randint(30, 120)):
        t = rng.randint(0, NOW - 1000)
        depth = rng.randint(1, len(chain))
        events = []
        for _s, etype in enumerate(chain[:depth]):
            t += rng.choice([0, 1, 5, 50, 400, 3000, 70_000])
            ident += 1
            events.append([etype, t, ident])
        if rng.random() < 0.15 and depth > 1:  # out of order: a later step stamped early
            k = rng.randrange(1, depth)
            events[k][1] = events[0][1] - rng.randint(1, 100)
        if rng.random() < 0.2:  # a duplicate, re-sent a little later
            e = rng.choice(events)
            events.append([e[0], e[1] + rng.randint(0, 500), e[2]])
        if rng.random() < 0.1:
            events.append(["Reserved", t + 5, -n - 1, 1])  # a dead letter
        for k, e in enumerate(events):
            topic = "dlt" if len(e) == 4 else f"t{chain.index(e[0])}"
            records.append(FlowRecord(f"ord{n}", topic, e[0], e[1],
                                      partition=rng.randrange(3), offset=len(records) + k,
                                      identity=e[2], kind=e[3] if len(e) == 4 else 0))
    rng.shuffle(records)
    stuck = rng.choice([0, 1000, 60_000])
    flows = flows_of(records, stuck_after=stuck)
    ref = reference(records, NOW, stuck)
    assert flows.orders == len(ref.orders)
    got_steps = {(s.step.topic, s.step.event_type): s for s in flows.steps}
    assert {k: s.orders for k, s in got_steps.items()} == dict(ref.step_orders)
    assert {k: s.duplicates for k, s in got_steps.items() if s.duplicates} \
        == dict(ref.duplicates)
    assert {k: s.out_of_order for k, s in got_steps.items() if s.out_of_order} \
        == dict(ref.out_of_order)
    got_trans = {((t.source.topic, t.source.event_type), (t.target.topic, t.target.event_type)):
                 (t.count, t.p50_ms, t.p95_ms, t.p99_ms, t.max_ms) for t in flows.transitions}
    assert got_trans == ref.transitions()
    assert {s.id: ((s.step.topic, s.step.event_type), round(s.age_seconds * 1000))
            for s in flows.stopped} == ref.stopped
    assert {(m.topic, m.partition, m.offset) for m in flows.marks if m.mark == DUPLICATE} \
        == ref.dup_events
    assert {(m.topic, m.partition, m.offset) for m in flows.marks if m.mark == OUT_OF_ORDER} \
        == ref.late_events


def test_empty_input():
    flows = flows_of([])
    assert (flows.orders, flows.steps, flows.transitions, flows.stopped) == (0, (), (), ())
    assert flows.to_json(step="X")["stopped_orders"] == []


def test_the_text_output_never_passes_terminal_escapes_through():
    from console.commands.flows import render, render_stopped

    evil = "\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07"
    records = [FlowRecord(f"ord{evil}", f"t{evil}", f"Placed{evil}", 1000, offset=0),
               FlowRecord(f"ord{evil}", "t2", "Next", 2000, offset=1)]
    for n in range(3):  # others go on from Next, so the evil order has stopped there
        records += [FlowRecord(f"o{n}", "t2", "Next", 1000 + n, offset=n + 2),
                    FlowRecord(f"o{n}", "t3", "Done", 1500 + n, offset=n)]
    flows = flows_of(records, stuck_after=0)
    assert [s.id for s in flows.stopped] == [f"ord{evil}"]
    text = render(flows) + render_stopped("Next", flows.stopped)
    assert "\x1b" not in text and "\x07" not in text
    assert text.count("\\x1b[2J") >= 3  # topic, event type and order id: shown, escaped
