"""Alert evaluation as pure functions over hand-built lag snapshots (no broker)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.alerts.book import AlertStore, book_from_dict, book_to_dict
from collectors.alerts.evaluate import evaluate, rule_identity
from collectors.alerts.rules import Rule, Severity
from collectors.alerts.state import AlertBook, AlertKey, EventKind, Phase
from collectors.snapshots import GroupLag, LagSnapshot, PartitionLag, Status


def part(topic: str, partition: int, lag: int | None, seconds: float | None = None,
         status: Status = Status.OK) -> PartitionLag:
    end = 1000
    committed = None if lag is None else end - lag
    return PartitionLag(topic, partition, committed, end, lag, seconds,
                        "exact" if seconds is not None else "unknown", status)


def group(name: str, *parts: PartitionLag, status: Status | None = None,
          error: str | None = None) -> GroupLag:
    lags = [p.lag for p in parts if p.lag is not None]
    seconds = [p.lag_seconds for p in parts if p.lag_seconds is not None]
    worst = max((p.status for p in parts), key=lambda s: s.severity, default=Status.OK)
    return GroupLag(name, "Stable", status or worst, sum(lags), max(seconds, default=None),
                    tuple(parts), error=error)


def snap(at: float, *groups: GroupLag, errors: tuple[str, ...] = ()) -> LagSnapshot:
    return LagSnapshot(taken_at=at, groups=tuple(groups), errors=errors)


def rule(name: str = "behind", group_re: str = "notification-.*", **kw) -> Rule:
    topic = kw.pop("topic", None)
    return Rule(name=name, group=re.compile(group_re),
                topic=re.compile(topic) if topic else None, **kw)


def lagging(at: float, lag: int, seconds: float | None = None,
            name: str = "notification-service") -> LagSnapshot:
    return snap(at, group(name, part("payments.events", 0, lag, seconds)))


def run(rules: list[Rule], snapshots: list[LagSnapshot], book: AlertBook | None = None):
    events = []
    for s in snapshots:
        result = evaluate(rules, s, book)
        book = result.book
        events.extend(result.events)
    return book, events


def test_pending_then_firing_after_for() -> None:
    r = rule(max_lag=100, for_seconds=30, severity=Severity.CRITICAL)
    first = evaluate([r], lagging(0, 150))
    assert first.events == () and first.firing == ()
    (pending,) = first.book.states
    assert pending.phase is Phase.PENDING and pending.since == 0
    assert first.exit_code == 0

    held = evaluate([r], lagging(20, 170), first.book)
    assert held.events == () and held.book.states[0].since == 0

    fired = evaluate([r], lagging(30, 180), held.book)
    (event,) = fired.events
    assert event.kind is EventKind.FIRING
    assert (event.rule, event.group, event.topic) == ("behind", "notification-service", None)
    assert event.value == 180 and event.threshold == 100
    assert event.since == 0 and event.at == 30
    assert event.severity is Severity.CRITICAL
    assert "lag 180 messages" in event.message and "100" in event.message
    (alert,) = fired.firing
    assert alert.rule == "behind" and alert.value == 180
    assert fired.exit_code == 2


def test_without_for_fires_at_once_and_warning_exits_1() -> None:
    result = evaluate([rule(max_lag=10)], lagging(5, 11))
    assert [e.kind for e in result.events] == [EventKind.FIRING]
    assert result.exit_code == 1


def test_at_the_threshold_is_not_a_breach() -> None:
    result = evaluate([rule(max_lag=10)], lagging(5, 10))
    assert result.events == () and result.book.states == ()


def test_pending_that_clears_is_dropped_silently() -> None:
    r = rule(max_lag=100, for_seconds=30)
    book, events = run([r], [lagging(0, 150), lagging(10, 50), lagging(20, 150),
                             lagging(45, 150)])
    assert events == []  # the clock restarted at t=20, so 25 s is not enough
    assert book.states[0].phase is Phase.PENDING and book.states[0].since == 20
    book, events = run([r], [lagging(50, 150)], book)
    assert [e.kind for e in events] == [EventKind.FIRING]


def test_firing_is_deduplicated_and_resolves_once() -> None:
    r = rule(max_lag=100)
    book, events = run([r], [lagging(t, 200 + t) for t in range(5)])
    assert [e.kind for e in events] == [EventKind.FIRING]
    assert book.firing[0].value == 204  # the book follows the latest value

    book, events = run([r], [lagging(10, 10), lagging(11, 5)], book)
    (resolved,) = events
    assert resolved.kind is EventKind.RESOLVED
    assert resolved.value == 10 and resolved.since == 0 and resolved.at == 10
    assert "resolved" in resolved.message
    assert book.states == () and book.exit_code == 0


def test_hysteresis_stops_flapping_at_the_threshold() -> None:
    """Lag hovering around 1000 (+-5) fires once and never resolves until it drops below 900."""
    r = rule(max_lag=1000, hysteresis=0.1)
    hover = [lagging(t, 1000 + (5 if t % 2 else -5)) for t in range(1, 40)]
    book, events = run([r], hover)
    assert [e.kind for e in events] == [EventKind.FIRING]
    book, events = run([r], [lagging(50, 901)], book)
    assert events == [] and book.firing
    book, events = run([r], [lagging(51, 900)], book)
    assert [e.kind for e in events] == [EventKind.RESOLVED]


def test_without_hysteresis_it_would_flap() -> None:
    r = rule(max_lag=1000, hysteresis=0.0)
    _, events = run([r], [lagging(t, 1000 + (5 if t % 2 else -5)) for t in range(1, 9)])
    assert len(events) == 8  # the control: the band above is what prevents this


def test_lag_seconds_rule_and_unknown_time_lag() -> None:
    r = rule(max_lag_seconds=60.0)
    book, events = run([r], [lagging(0, 5, seconds=75.25)])
    assert events[0].value == 75.25 and events[0].threshold == 60.0
    assert "lag 75.25s, threshold 60s" in events[0].message
    # time lag unknown: neither resolves nor fires again
    book, events = run([r], [lagging(1, 5, seconds=None)], book)
    assert events == [] and book.firing
    book, events = run([r], [lagging(2, 0, seconds=0.0)], book)
    assert [e.kind for e in events] == [EventKind.RESOLVED]


def test_unknown_lag_never_fires() -> None:
    r = rule(max_lag=0, max_lag_seconds=1.0)
    s = snap(0, group("notification-service", part("t", 0, None, None)))
    result = evaluate([r], s)
    assert result.events == () and result.book.states == ()


def test_status_rule() -> None:
    r = rule(min_status=Status.STALL, for_seconds=10)
    stalled = [snap(t, group("notification-x", part("t", 0, 5, status=Status.STOP)))
               for t in (0, 10)]
    book, events = run([r], stalled)
    assert [(e.kind, e.value, e.threshold) for e in events] == [
        (EventKind.FIRING, "STOP", "STALL")]
    better = [snap(t, group("notification-x", part("t", 0, 5, status=Status.WARN)))
              for t in (11, 20, 21)]
    book, events = run([r], better, book)
    # clear from t=11: resolves once it has been clear for `for` (10 s), at t=21
    assert [(e.kind, e.at) for e in events] == [(EventKind.RESOLVED, 21)]
    assert "status WARN" in events[0].message


def test_any_condition_fires() -> None:
    r = rule(max_lag=1000, max_lag_seconds=30.0)
    result = evaluate([r], lagging(0, 10, seconds=31.0))
    assert result.events[0].value == 31.0
    result = evaluate([r], lagging(0, 1001, seconds=1.0))
    assert result.events[0].value == 1001


def test_topic_rules_alert_per_topic() -> None:
    r = rule(max_lag=10, topic="payments\\..*")
    s = snap(0, group("notification-service",
                      part("payments.events", 0, 8), part("payments.events", 1, 8),
                      part("payments.events-dlt", 0, 3), part("orders.events", 0, 500)))
    result = evaluate([r], s)
    assert [(e.topic, e.value) for e in result.events] == [("payments.events", 16)]
    keys = [st.key for st in result.book.states]
    assert keys == [AlertKey("behind", "notification-service", "payments.events",
                             rule_identity(r))]


def test_group_rules_use_the_group_total() -> None:
    r = rule(max_lag=10)
    s = snap(0, group("notification-service", part("a", 0, 6), part("b", 0, 6)))
    assert evaluate([r], s).events[0].value == 12


def test_only_matching_groups() -> None:
    r = rule(max_lag=1, group_re="notification-.*")
    s = snap(0, group("payment-service", part("t", 0, 99)),
             group("notification-service", part("t", 0, 99)))
    assert [e.group for e in evaluate([r], s).events] == ["notification-service"]


def test_several_rules_and_worst_severity() -> None:
    warn = rule("warn", max_lag=10, severity=Severity.WARNING)
    crit = rule("crit", max_lag=100, severity=Severity.CRITICAL)
    assert evaluate([warn, crit], lagging(0, 50)).exit_code == 1
    assert evaluate([warn, crit], lagging(0, 500)).exit_code == 2


def test_group_gone_resolves_but_a_partial_snapshot_holds() -> None:
    r = rule(max_lag=1)
    book, _ = run([r], [lagging(0, 50)])
    held, events = run([r], [snap(1, errors=("describe failed",))], book)
    assert events == [] and held.firing
    errored = snap(2, group("notification-service", error="group coordinator unavailable"))
    held, events = run([r], [errored], book)
    assert events == [] and held.firing
    gone, events = run([r], [snap(3)], book)
    assert [e.kind for e in events] == [EventKind.RESOLVED]
    assert "no longer reported" in events[0].message and gone.states == ()


def test_removed_rule_resolves_its_alerts() -> None:
    book, _ = run([rule("old", max_lag=1)], [lagging(0, 50)])
    book, events = run([rule("new", max_lag=1000)], [lagging(1, 50)], book)
    assert [(e.kind, e.rule) for e in events] == [(EventKind.RESOLVED, "old")]
    assert "rule no longer configured" in events[0].message


def test_stale_pending_restarts_its_clock() -> None:
    r = rule(max_lag=10, for_seconds=60)
    book, _ = run([r], [lagging(0, 50)])
    # seen again two hours later: the condition may have cleared in between
    book, events = run([r], [lagging(7200, 50)], book)
    assert events == [] and book.states[0].since == 7200


def test_book_round_trips_through_json(tmp_path: Path) -> None:
    r = rule(max_lag=10, for_seconds=5, topic=".*")
    book, _ = run([r], [lagging(0, 50)])
    book, _ = run([rule("f", max_lag=1)], [lagging(1, 50)], book)
    assert book_from_dict(json.loads(json.dumps(book_to_dict(book)))) == book

    store = AlertStore(tmp_path / "state" / "alerts.json")
    assert store.load() == AlertBook()
    store.save(book)
    assert store.load() == book


def test_for_survives_between_processes(tmp_path: Path) -> None:
    """The cron case: each `watch --once` loads the book, evaluates, saves it."""
    store = AlertStore(tmp_path / "alerts.json")
    r = rule(max_lag=10, for_seconds=120)
    fired = []
    for t in (0, 60, 120):
        result = evaluate([r], lagging(t, 50), store.load())
        store.save(result.book)
        fired.extend(result.events)
    assert [(e.kind, e.at, e.since) for e in fired] == [(EventKind.FIRING, 120, 0)]


def test_corrupt_state_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    for garbage in ("{not json", '{"format": 99}', '{"format": 1, "alerts": [{"rule": 1}]}',
                    "[]"):
        path.write_text(garbage)
        assert AlertStore(path).load() == AlertBook()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=60))
def test_events_alternate_and_match_the_book(lags: list[int]) -> None:
    """Whatever the lag does: firing and resolved alternate, starting with firing."""
    r = rule(max_lag=1000, for_seconds=2)
    book: AlertBook | None = None
    kinds = []
    for t, lag in enumerate(lags):
        result = evaluate([r], lagging(float(t), lag), book)
        book = result.book
        kinds.extend(e.kind for e in result.events)
        assert len(result.events) <= 1
        if result.events and result.events[0].kind is EventKind.FIRING:
            assert lag > 1000
        if result.events and result.events[0].kind is EventKind.RESOLVED:
            assert lag <= 900
    expected = [EventKind.FIRING, EventKind.RESOLVED] * len(kinds)
    assert kinds == expected[: len(kinds)]
    assert bool(book and book.firing) == (bool(kinds) and kinds[-1] is EventKind.FIRING)


def test_resolve_waits_for_resolve_for_and_a_dip_does_not_flap() -> None:
    """A bursty consumer: lag drops to zero between bursts, never for `resolve_for`."""
    r = rule(max_lag=10, resolve_for_seconds=5)
    series = [(0, 50), (1, 0), (2, 0), (3, 60), (4, 0), (8, 0), (9, 0)]
    book, events = run([r], [lagging(t, lag) for t, lag in series])
    assert [(e.kind, e.at) for e in events] == [(EventKind.FIRING, 0), (EventKind.RESOLVED, 9)]
    # the dip at t=1..2 was forgotten when lag came back at t=3: clear since t=4
    assert book.states == ()


def test_resolve_for_defaults_to_for_and_can_be_zero() -> None:
    slow = rule(max_lag=10, for_seconds=3)
    assert slow.resolve_after == 3
    quick = rule(max_lag=10, for_seconds=3, resolve_for_seconds=0)
    _, events = run([quick], [lagging(0, 50), lagging(3, 50), lagging(4, 0)])
    assert [(e.kind, e.at) for e in events] == [(EventKind.FIRING, 3), (EventKind.RESOLVED, 4)]
    book, events = run([slow], [lagging(0, 50), lagging(3, 50), lagging(4, 0)])
    assert [e.kind for e in events] == [EventKind.FIRING]
    assert book.firing and book.states[0].clear_since == 4
    assert "lag 0 messages" in book.firing[0].message  # the book shows the current value
