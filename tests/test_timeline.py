"""The pure timeline: order, per-group status, dead letters, stuck, links, spans, JSON shape."""

from __future__ import annotations

from collectors.timefmt import iso_utc_ms as iso
from tracing.extract import DeadLetterInfo, EventInfo
from tracing.timeline import (
    DEAD_LETTERED,
    PENDING,
    PROCESSED,
    ScanStats,
    SpanInfo,
    build_timeline,
)

T0 = 1_700_000_000_000
MIN = 60_000


def ev(topic: str, partition: int, offset: int, ts: int | None, *, etype: str = "E",
       dead: DeadLetterInfo | None = None, trace: str | None = None,
       span: str | None = None) -> EventInfo:
    return EventInfo(topic, partition, offset, ts, "ord_1", etype, "ord_1", trace, span, dead)


def build(events, committed, *, now=T0 + 10 * MIN, stuck_after=5 * MIN, **kw):
    return build_timeline("ord_1", events, committed, now_ms=now, stuck_after_ms=stuck_after,
                          **kw)


def test_events_are_sorted_by_time_and_deduplicated() -> None:
    a = ev("payments", 0, 5, T0 + 2000)
    b = ev("orders", 1, 9, T0)
    c = ev("inventory", 0, 3, T0 + 1000)
    no_time = ev("legacy", 0, 1, None)
    tl = build([a, no_time, b, c, a], {})
    assert [e.topic for e in tl.events] == ["orders", "inventory", "payments", "legacy"]
    assert tl.events[0].timestamp == iso(T0) == "2023-11-14T22:13:20.000Z"


def test_processed_and_pending_per_group_from_committed_offsets() -> None:
    events = [ev("orders", 0, 10, T0), ev("orders", 1, 4, T0 + 1)]
    committed = {
        "inventory": {("orders", 0): 11, ("orders", 1): 4},  # past p0's event, at p1's
        "audit": {("orders", 1): 5},  # never committed p0: pending there
        "billing": {("payments", 0): 99},  # does not read orders: not shown
    }
    tl = build(events, committed)
    p0, p1 = tl.events
    assert p0.consumers == {"audit": PENDING, "inventory": PROCESSED}
    assert p1.consumers == {"audit": PROCESSED, "inventory": PENDING}
    assert tl.groups == ("audit", "inventory")


def test_stuck_means_pending_longer_than_stuck_after() -> None:
    old = ev("orders", 0, 1, T0)
    young = ev("orders", 0, 2, T0 + 9 * MIN)
    done = ev("payments", 0, 1, T0)
    untimed = ev("orders", 0, 3, None)
    committed = {"g": {("orders", 0): 0, ("payments", 0): 2}}
    tl = build([old, young, done, untimed], committed)
    stuck = {e.position: e.stuck for e in tl.events}
    assert stuck == {("orders", 0, 1): True, ("orders", 0, 2): False,
                     ("payments", 0, 1): False, ("orders", 0, 3): False}
    assert [e.position for e in tl.stuck] == [("orders", 0, 1)]
    assert not any(e.stuck for e in build([old], committed, stuck_after=20 * MIN).events)
    assert not any(e.stuck for e in build([old], {}).events)  # nobody reads it


def spring(topic: str, partition: int, offset: int, group: str | None) -> DeadLetterInfo:
    return DeadLetterInfo("spring", topic, partition, offset, group,
                          "com.shop.GatewayTimeoutException", "PSP timeout", 3)


def test_dead_letter_marks_its_group_on_the_original_event() -> None:
    original = ev("payments", 2, 40, T0)
    dlt = ev("payments-dlt", 0, 7, T0 + 500, dead=spring("payments", 2, 40, "payment-service"))
    committed = {"payment-service": {("payments", 2): 41}, "loyalty": {("payments", 2): 41}}
    tl = build([dlt, original], committed)
    first, second = tl.events
    assert first.position == ("payments", 2, 40)
    assert first.consumers == {"loyalty": PROCESSED, "payment-service": DEAD_LETTERED}
    assert first.dead_letter is None and not first.stuck
    assert second.dead_letter.error_class == "com.shop.GatewayTimeoutException"
    assert second.consumers == {}


def test_redriven_copy_is_an_ordinary_event_again() -> None:
    """Redrive keeps the dead-letter headers on the copy it puts back on the original
    topic: the copy gets normal consumer marks and is not reported as a new dead letter."""
    original = ev("payments", 2, 40, T0)
    dlt = ev("payments-dlt", 0, 7, T0 + 500, dead=spring("payments", 2, 40, "payment-service"))
    copy = ev("payments", 2, 90, T0 + 2 * MIN, dead=spring("payments", 2, 40, "payment-service"))
    committed = {"payment-service": {("payments", 2): 91}}
    tl = build([copy, dlt, original], committed)
    first, dead, again = tl.events
    assert first.consumers == {"payment-service": DEAD_LETTERED}
    assert dead.redriven is False and dead.to_json()["dead_letter"] is not None
    assert again.position == ("payments", 2, 90)
    assert again.redriven is True
    assert again.consumers == {"payment-service": PROCESSED}
    doc = again.to_json()
    assert doc["redriven"] is True and doc["dead_letter"] is None


def test_dead_letter_without_a_group_uses_the_only_reader() -> None:
    original = ev("payments", 0, 1, T0)
    dlt = ev("dlq", 0, 0, T0 + 1, dead=spring("payments", 0, 1, None))
    only = build([original, dlt], {"payment-service": {("payments", 0): 2}})
    assert only.events[0].consumers == {"payment-service": DEAD_LETTERED}
    several = build([original, dlt], {"a": {("payments", 0): 2}, "b": {("payments", 0): 0}})
    assert several.events[0].consumers == {"a": PROCESSED, "b": PENDING}


def test_dead_letter_naming_a_group_but_no_position_marks_the_latest_earlier_event() -> None:
    first = ev("inventory", 0, 1, T0)
    second = ev("inventory", 0, 2, T0 + 1000)
    later = ev("inventory", 0, 3, T0 + 9000)  # written after the dead letter
    plain = DeadLetterInfo("plain", None, None, None, "payment-service", "Boom", "boom", None)
    dlt = ev("inventory-dlq", 0, 0, T0 + 5000, dead=plain)
    committed = {"payment-service": {("inventory", 0): 4}}
    tl = build([first, second, later, dlt], committed)
    statuses = {e.position: e.consumers.get("payment-service") for e in tl.events}
    assert statuses[("inventory", 0, 2)] == DEAD_LETTERED
    assert statuses[("inventory", 0, 1)] == PROCESSED
    assert statuses[("inventory", 0, 3)] == PROCESSED


def test_dead_letter_pointing_elsewhere_changes_no_status() -> None:
    original = ev("payments", 0, 1, T0)
    dlt = ev("dlq", 0, 0, T0 + 1, dead=spring("payments", 0, 999, "payment-service"))
    tl = build([original, dlt], {"payment-service": {("payments", 0): 2}})
    assert tl.events[0].consumers == {"payment-service": PROCESSED}


def test_trace_links_and_spans() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    e = ev("orders", 0, 1, T0, trace=trace, span="00f067aa0ba902b7")
    spans = {trace: [SpanInfo("00f067aa0ba902b7", "order-service", "send", 1.5),
                     SpanInfo("1111111111111111", "inventory-service", "process", 7.25,
                              references=("00f067aa0ba902b7",)),
                     SpanInfo("2222222222222222", "other", "unrelated", 1.0)]}
    tl = build([e], {}, url_for=lambda t, s: f"http://jaeger/trace/{t}", spans=spans)
    got = tl.events[0]
    assert got.trace_url == f"http://jaeger/trace/{trace}"
    assert [s.service for s in got.spans] == ["order-service", "inventory-service"]
    assert build([ev("orders", 0, 1, T0)], {}, url_for=lambda t, s: None).events[0].trace_url \
        is None


def test_json_document_has_the_design_keys() -> None:
    dlt = ev("dlq", 0, 0, T0, dead=spring("payments", 0, 1, "g"))
    tl = build([ev("payments", 0, 1, T0 - 1), dlt], {"g": {("payments", 0): 0}},
               since_seconds=3600, notes=["a note"], stats=ScanStats(topics=2, partitions=3,
                                                                      scanned_records=10))
    doc = tl.to_json()
    assert doc["query"] == "ord_1"
    assert doc["notes"] == ["a note"] and doc["stats"]["scanned_records"] == 10
    first, second = doc["events"]
    for key in ("topic", "partition", "offset", "timestamp", "key", "event_type",
                "correlation_id", "trace_id", "consumers", "stuck", "dead_letter"):
        assert key in first
    assert first["consumers"] == {"g": DEAD_LETTERED}
    assert first["dead_letter"] is None
    assert second["dead_letter"]["original_offset"] == 1
    assert second["dead_letter"]["error_class"] == "com.shop.GatewayTimeoutException"
    assert isinstance(first["stuck"], bool)


def test_iso_of_odd_timestamps() -> None:
    assert iso(None) is None
    assert iso(10**20) is None
    assert iso(0) == "1970-01-01T00:00:00.000Z"
