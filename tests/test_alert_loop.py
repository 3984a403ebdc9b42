"""The one alert loop (`collectors.alerts.loop.AlertLoop`) that `watch` and the TUI run:
book carried between steps, notices in the sinks before the book is saved, a fleet
watcher's share, the cluster-unreachable alert. Pure: hand-built snapshots, the
real `AlertStore` / `OutageStore` on the test's own state directory, no broker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from collectors.alerts.book import AlertStore
from collectors.alerts.loop import AlertLoop, Share
from collectors.alerts.rules import Severity
from collectors.alerts.state import AlertEvent, AlertState, EventKind, Phase
from collectors.alerts.unreachable import RULE, OutageStore
from collectors.snapshots import LagSnapshot
from tests.test_alerts import lagging, rule


class RecordingSink:
    """A sink that remembers every call, and what the book on disk said at `notify`."""

    label = "recording"

    def __init__(self, store: AlertStore | None = None) -> None:
        self.store = store
        self.calls: list[str] = []
        self.events: list[AlertEvent] = []
        self.book_at_notify: list[tuple[Phase, ...]] = []
        self.states: tuple[AlertState, ...] = ()

    def observe(self, snapshot: LagSnapshot) -> None:
        self.calls.append("observe")

    def notify(self, events: Sequence[AlertEvent]) -> None:
        self.calls.append("notify")
        self.events.extend(events)
        if self.store is not None:
            self.book_at_notify.append(tuple(s.phase for s in self.store.load().states))

    def observe_alerts(self, states: Iterable[AlertState]) -> None:
        self.calls.append("observe_alerts")
        self.states = tuple(states)

    def close(self, timeout: float = 10.0) -> None:
        self.calls.append("close")


def test_in_memory_loop_carries_the_book_and_writes_nothing(isolated_state: Path) -> None:
    loop = AlertLoop.in_memory([rule(max_lag=100, for_seconds=30)])
    assert loop.step(lagging(0, 150)).events == ()
    fired = loop.step(lagging(30, 160))
    assert [e.kind for e in fired.events] == [EventKind.FIRING]
    assert [s.phase for s in fired.book.states] == [Phase.FIRING]
    assert loop.step(lagging(60, 0)).events == ()  # clear, not yet for `resolve_for` (30s)
    resolved = loop.step(lagging(90, 0))
    assert [e.kind for e in resolved.events] == [EventKind.RESOLVED]
    assert list(isolated_state.iterdir()) == []  # the TUI's book never touches the disk


def test_notices_reach_the_sinks_before_the_book_says_firing(isolated_state: Path) -> None:
    store = AlertStore(cluster="c1")
    sink = RecordingSink(store)
    loop = AlertLoop.persistent([rule(max_lag=10, severity=Severity.CRITICAL)],
                                source="/rules.toml", sinks=[sink])
    result = loop.step(lagging(0, 50), cluster="c1")
    assert [(e.kind, e.cluster) for e in result.events] == [(EventKind.FIRING, "c1")]
    assert sink.calls == ["observe", "notify", "observe_alerts"]
    assert sink.book_at_notify == [()]  # nothing saved yet when the notice was handed over
    assert [s.phase for s in sink.states] == [Phase.FIRING]
    saved = store.load().states
    assert [(s.phase, s.source) for s in saved] == [(Phase.FIRING, "/rules.toml")]
    # a second process (cron `--once`) with the same rules sees it firing: no second notice
    again = AlertLoop.persistent([rule(max_lag=10, severity=Severity.CRITICAL)],
                                 source="/rules.toml").step(lagging(10, 60), cluster="c1")
    assert again.events == () and again.exit_code == 2


def test_each_cluster_has_its_own_book(isolated_state: Path) -> None:
    loop = AlertLoop.persistent([rule(max_lag=10)], source="<config>")
    assert len(loop.step(lagging(0, 50), cluster="a").events) == 1
    assert len(loop.step(lagging(0, 50), cluster="b").events) == 1
    assert len(AlertStore(cluster="a").load().states) == 1
    assert len(AlertStore(cluster="b").load().states) == 1


def test_a_share_judges_only_owned_groups_and_saves_the_rest(isolated_state: Path) -> None:
    rules = [rule(max_lag=10, group_re="svc-.*")]
    loop = AlertLoop.persistent(rules, source="<config>")
    both = LagSnapshot(0, (lagging(0, 50, name="svc-a").groups[0],
                           lagging(0, 50, name="svc-b").groups[0]))
    assert {e.group for e in loop.step(both, cluster="c").events} == {"svc-a", "svc-b"}
    # this watcher now owns svc-a only; svc-b (someone else's now) is absent from its
    # snapshot, yet it must not resolve it
    result = loop.step(LagSnapshot(10, (lagging(10, 0, name="svc-a").groups[0],)),
                       cluster="c", share=Share(lambda g: g == "svc-a"))
    assert [(e.group, e.kind) for e in result.events] == [("svc-a", EventKind.RESOLVED)]
    assert [s.group for s in AlertStore(cluster="c").load().states] == ["svc-b"]


def test_unreachable_cluster_notifies_once_per_outage(isolated_state: Path) -> None:
    sink = RecordingSink()
    loop = AlertLoop.persistent([], source="<config>", sinks=[sink])
    outage, events = loop.unreachable("k:9092", "no answer within 5s")
    assert [(e.kind, e.rule) for e in events] == [(EventKind.FIRING, RULE)]
    assert outage.message == "no answer within 5s"
    assert loop.unreachable("k:9092", "still nothing")[1] == ()
    # a cron run on the same state directory knows the outage is already notified
    assert OutageStore().load("k:9092") is not None
    resolved = loop.reachable("k:9092")
    assert [e.kind for e in resolved] == [EventKind.RESOLVED]
    assert loop.reachable("k:9092") == ()
    # every round hands the sinks a notify, even an empty one (the webhook retries then)
    assert sink.calls == ["notify"] * 4
    assert [e.kind for e in sink.events] == [EventKind.FIRING, EventKind.RESOLVED]


def test_in_memory_outage_is_kept_in_the_loop(isolated_state: Path) -> None:
    loop = AlertLoop.in_memory([])
    assert len(loop.unreachable("k:9092")[1]) == 1
    assert loop.unreachable("k:9092")[1] == ()
    assert [e.kind for e in loop.reachable("k:9092")] == [EventKind.RESOLVED]
    assert list(isolated_state.iterdir()) == []


def test_close_closes_every_sink(isolated_state: Path) -> None:
    sinks = [RecordingSink(), RecordingSink()]
    AlertLoop.persistent([], source=None, sinks=sinks).close(1.0)
    assert [s.calls for s in sinks] == [["close"], ["close"]]
