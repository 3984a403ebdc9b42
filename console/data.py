"""The worker side of the console: fetch functions that return snapshots.

Dolphie splits each panel into `fetch_data` (worker thread) and
`create_panel` (main thread); this module is the fetch half for every screen.
Everything here runs in a Textual thread worker and calls collectors/,
tracing/ and dlq/ (never confluent_kafka, never a widget) and returns
immutable snapshots that the screens render. `Source` is the interface the
screens depend on; `KafkaSource` implements it against a real cluster.

Clients are created lazily and dropped after a failure, so the next poll
reconnects from scratch (the app backs off between attempts).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from collectors.alerts.loop import AlertLoop
from collectors.alerts.rules import RuleSet, from_settings
from collectors.alerts.state import AlertEvent, AlertState, EventKind
from collectors.config import ClusterConfig, Settings
from collectors.errors import LagdeckError, UsageError
from collectors.logs import get_logger
from collectors.registry import RegistryConfig
from collectors.snapshots import LagSnapshot
from console.settings import ConsoleSettings
from dlq.browse import DeadLetter, PageCursor, RecordAt, read_page
from dlq.discovery import DlqTopicSummary, list_dead_letter_topics
from dlq.redrive import Redrive, RedriveProgress, RedriveResult
from dlq.replay import ReplayPlan, ReplayResult, ResetSpec, execute_reset, plan_reset
from dlq.select import parse_where, picked_selector
from tracing.flows import FlowMap
from tracing.frames import PayloadDecoder
from tracing.timeline import Timeline

if TYPE_CHECKING:  # imported on first use at run time (the scanner is heavy)
    from tracing.search import Tracer

_log = get_logger("tui.data")

#: Points of lag history per group in the overview's sparkline.
TREND_POINTS = 16
#: Resolved alerts kept for the alerts screen.
RESOLVED_KEPT = 20


@dataclass(frozen=True)
class AlertsView:
    """Alert states after one evaluation, for the alerts screen and the overview banner."""

    rules: int = 0
    source: str | None = None
    states: tuple[AlertState, ...] = ()
    #: most recent first
    resolved: tuple[AlertEvent, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class LagView:
    """One lag poll as the console shows it: the snapshot, trends and alert states."""

    snapshot: LagSnapshot
    #: group -> recent total lag values, oldest first (from the lag history)
    trends: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    alerts: AlertsView | None = None
    #: read from the snapshot topic (`--from-snapshots`): per group, who published it
    #: and when (`collectors.snapshot_topic.Provenance`); None when polled directly
    provenance: Mapping[str, Any] | None = None
    snapshot_topic: str | None = None


@dataclass(frozen=True)
class DlqPageView:
    """One page of a dead-letter topic as the browser shows it (filtered or not)."""

    topic: str
    entries: tuple[DeadLetter, ...]
    start: PageCursor | None
    next: PageCursor | None
    depth: int
    remaining: int
    #: records read to fill this page (more than `entries` when a filter is set)
    scanned: int = 0
    selection: str = "all records"


class Source(Protocol):
    """What the console needs from a cluster; every method runs in a worker thread."""

    cluster: ClusterConfig
    settings: Settings

    @property
    def label(self) -> str: ...

    @property
    def read_only(self) -> bool: ...

    def poll_lag(self) -> LagView: ...

    def dead_letter_topics(self) -> list[DlqTopicSummary]: ...

    def dead_letter_page(self, topic: str, start: PageCursor | RecordAt | None, *,
                         where: Sequence[str] = (), limit: int = 50) -> DlqPageView: ...

    def redrive(self, topic: str, *, picked: frozenset[tuple[int, int]] | None = None,
                where: Sequence[str] = (), dry_run: bool,
                progress: Callable[[RedriveProgress], None] | None = None,
                cancel: threading.Event | None = None) -> RedriveResult: ...

    def plan_replay(self, group: str, topic: str, spec: ResetSpec) -> ReplayPlan: ...

    def execute_replay(self, plan: ReplayPlan) -> ReplayResult: ...

    def timeline(self, query: str) -> Timeline: ...

    def flows(self) -> FlowMap: ...

    def close(self) -> None: ...


class AlertTracker:
    """The alerts screen's view of the alert loop (`collectors.alerts.loop`), one lag poll
    at a time, plus the last resolved alerts it shows."""

    def __init__(self, ruleset: RuleSet | None, error: str | None = None) -> None:
        self.ruleset = ruleset or RuleSet()
        self.error = error
        #: the book in memory, no sinks: the TUI shows alerts, `watch` delivers them
        self.loop = AlertLoop.in_memory(self.ruleset.rules)
        self.resolved: deque[AlertEvent] = deque(maxlen=RESOLVED_KEPT)

    def update(self, snapshot: LagSnapshot) -> AlertsView:
        source = str(self.ruleset.path) if self.ruleset.path else None
        if not self.ruleset.rules:
            return AlertsView(0, source, error=self.error)
        result = self.loop.step(snapshot)
        for event in result.events:
            if event.kind is EventKind.RESOLVED:
                self.resolved.appendleft(event)
        return AlertsView(len(self.ruleset.rules), source, result.book.states,
                          tuple(self.resolved), self.error)


def rules_from_settings(settings: Settings) -> tuple[RuleSet | None, str | None]:
    """The config file's rules; a broken rule is reported on the alerts screen, not fatal."""
    try:
        return from_settings(settings), None
    except LagdeckError as exc:
        return None, str(exc)


class KafkaSource:
    """A real cluster, through collectors/, tracing/ and dlq/."""

    def __init__(self, cluster: ClusterConfig, settings: Settings | None = None, *,
                 rules: RuleSet | None = None, timeout: float = 10.0,
                 label: str | None = None, since_seconds: float = 86400.0,
                 stuck_after_seconds: float = 300.0,
                 flows_since_seconds: float = 3600.0,
                 registry: RegistryConfig | None = None,
                 parsed: ConsoleSettings | None = None) -> None:
        self.cluster = cluster
        #: the sections parsed at start-up (`console.settings`); without them (a source
        #: built by hand) each feature reads its section from `settings` itself
        self.parsed = parsed
        self.flows_since_seconds = flows_since_seconds
        #: the Schema Registry for payloads (dead letters, timelines, value.PATH filters)
        self.registry = registry
        self._payloads: PayloadDecoder | None = None
        self.settings = settings or Settings()
        self.timeout = timeout
        self.since_seconds = since_seconds
        self.stuck_after_seconds = stuck_after_seconds
        self._label = label
        self._lock = threading.Lock()
        self._trace_lock = threading.Lock()
        self._collector: Any = None
        self._history: Any = None
        self._tracer: Any = None
        #: group -> recent total lags for the sparklines (see `_update_trends`)
        self._trends: dict[str, deque[int]] = {}
        self._probe: Any = None
        #: bumped by `abandon()`: a poll of an older generation no longer owns the collector
        self._generation = 0
        if rules is None and parsed is not None:
            rules, error = parsed.rules, None
        elif rules is None:
            rules, error = rules_from_settings(self.settings)
        else:
            error = None
        self.alerts = AlertTracker(rules, error)

    @property
    def label(self) -> str:
        if self._label:
            return self._label
        name = self.cluster.bootstrap_servers or "no cluster"
        return f"{self.cluster.profile}: {name}" if self.cluster.profile else name

    @property
    def read_only(self) -> bool:
        return self.cluster.read_only

    # -- liveness --------------------------------------------------------

    def probe(self, timeout: float) -> Any:
        """Is the cluster there (`collectors.liveness.Liveness`)? Cheap; never raises for
        an unreachable cluster. Sources without `probe` are taken as always reachable."""
        from collectors.liveness import LivenessProbe

        if self._probe is None or self._probe.timeout != timeout:
            self._probe = LivenessProbe(self.cluster, timeout)
        return self._probe.check()

    # -- lag -------------------------------------------------------------

    def _lag_collector(self) -> Any:
        from collectors.history import LagHistory
        from collectors.lag import LagCollector

        if self._history is None:
            self._history = LagHistory()
        if self._collector is None:
            self._collector = LagCollector(
                self.cluster, self._history, timeout=self.timeout, settings=self.settings,
                lag_settings=self.parsed.lag if self.parsed else None)
        return self._collector

    def abandon(self) -> None:
        """The cluster stopped answering: a poll still waiting on it is left to finish on
        its own (with its own collector and lock), so the first poll once the cluster
        answers again does not queue behind it for its whole timeout."""
        self._generation += 1
        self._lock = threading.Lock()
        self._collector = None

    def poll_lag(self) -> LagView:
        lock, generation = self._lock, self._generation
        with lock:
            try:
                snapshot = self._lag_collector().refresh()
            except BaseException:
                if generation == self._generation:
                    self._drop_collector()
                raise
            trends = self._update_trends(snapshot)
        return LagView(snapshot, trends, self.alerts.update(snapshot))

    def _update_trends(self, snapshot: LagSnapshot) -> dict[str, tuple[int, ...]]:
        """Sparkline points per group: read from the history once per group, then
        appended from each poll (the collector has just recorded the same totals),
        instead of one history query per group on every poll."""
        trends: dict[str, deque[int]] = {}
        for g in snapshot.groups:
            series = self._trends.get(g.group)
            if series is None:
                points = self._history.group_trend(g.group, limit=TREND_POINTS)
                series = deque((int(lag) for _, lag in points), maxlen=TREND_POINTS)
            elif g.error is None:
                series.append(int(g.total_lag))
            trends[g.group] = series
        self._trends = trends
        return {group: tuple(series) for group, series in trends.items()}

    # -- dead letters --------------------------------------------------

    def dead_letter_topics(self) -> list[DlqTopicSummary]:
        return list_dead_letter_topics(self.cluster, self.settings, timeout=self.timeout,
                                       options=self.parsed.dlq if self.parsed else None)

    def dead_letter_page(self, topic: str, start: PageCursor | RecordAt | None, *,
                         where: Sequence[str] = (), limit: int = 50,
                         scan_cap: int = 5000) -> DlqPageView:
        """A page of dead letters; with `where`, pages are read until `limit` match
        or `scan_cap` records were read (the page then says how far it got)."""
        selector = parse_where(where)
        entries: list[DeadLetter] = []
        scanned = 0
        payloads = self.payloads
        first = read_page(self.cluster, topic, start=start, limit=limit, timeout=self.timeout,
                          payloads=payloads)
        page = first
        while True:
            scanned += len(page.entries)
            entries += [e for e in page.entries
                        if selector.matches(e.record, e.envelope, e.payload)]
            if not selector.conditions or len(entries) >= limit or page.next is None \
                    or scanned >= scan_cap:
                break
            page = read_page(self.cluster, topic, start=page.next, limit=limit,
                             timeout=self.timeout, payloads=payloads)
        return DlqPageView(topic, tuple(entries[:limit]), first.start, page.next, page.depth,
                           page.remaining, scanned, selector.describe())

    @property
    def payloads(self) -> PayloadDecoder:
        """One decoder (registry client, schema cache) for the session; a registry that
        went down is tried again after the next reconnect (see `close`)."""
        if self._payloads is None or self._payloads.down:
            self._payloads = PayloadDecoder(self.registry)
        return self._payloads

    def redrive(self, topic: str, *, picked: frozenset[tuple[int, int]] | None = None,
                where: Sequence[str] = (), dry_run: bool,
                progress: Callable[[RedriveProgress], None] | None = None,
                cancel: threading.Event | None = None) -> RedriveResult:
        """Preview (`dry_run`) or run a redrive of the picked records or of a filter."""
        if picked:
            task = Redrive(self.cluster, topic, where=picked_selector(frozenset(picked)),
                           timeout=self.timeout)
        elif where:
            task = Redrive(self.cluster, topic, where=list(where), timeout=self.timeout,
                           payloads=self.payloads)
        else:
            raise UsageError("nothing to redrive: select records (space) or set a filter (/)")
        if dry_run:
            return task.plan(progress=progress, cancel=cancel)
        return task.run(progress=progress, cancel=cancel)

    # -- timeline --------------------------------------------------------

    def _shared_tracer(self) -> Tracer:
        """The one tracer of the timeline and the flows (call with `_trace_lock` held)."""
        from tracing.search import Tracer  # loaded on first use: the scanner is heavy

        if self._tracer is None:
            self._tracer = Tracer(self.cluster,
                                  self.parsed.trace if self.parsed else self.settings,
                                  timeout=self.timeout, registry=self.registry)
        return self._tracer

    def timeline(self, query: str) -> Timeline:
        """The order's events; the tracer (clients, correlation index) is kept between
        lookups so following an order re-reads only what arrived since."""
        with self._tracing() as tracer:
            return tracer.find(query, since_seconds=self.since_seconds,
                               stuck_after_seconds=self.stuck_after_seconds)

    # -- flows -----------------------------------------------------------

    def flows(self) -> FlowMap:
        """The flow of all orders over `flows_since_seconds`; shares the timeline's tracer
        (one correlation index, one lock: a tracer is not thread-safe)."""
        from tracing.flowquery import flows_from_index

        with self._tracing() as tracer:
            return flows_from_index(tracer, since_seconds=self.flows_since_seconds,
                                    stuck_after_seconds=self.stuck_after_seconds)

    @contextmanager
    def _tracing(self) -> Iterator[Tracer]:
        """The shared tracer under its lock (a tracer is not thread-safe). An unexpected
        failure drops it, so the next lookup starts with fresh clients; a domain error
        (`LagdeckError`: not found, bad input) keeps it."""
        with self._trace_lock:
            tracer = self._shared_tracer()
            try:
                yield tracer
            except LagdeckError:
                raise
            except BaseException:
                self._tracer = None
                tracer.close()
                raise

    # -- replay ----------------------------------------------------------

    def plan_replay(self, group: str, topic: str, spec: ResetSpec) -> ReplayPlan:
        return plan_reset(self.cluster, group, topic, spec, timeout=self.timeout)

    def execute_replay(self, plan: ReplayPlan) -> ReplayResult:
        return execute_reset(self.cluster, plan, timeout=self.timeout)

    def _drop_collector(self) -> None:
        collector, self._collector = self._collector, None
        if collector is not None:
            try:
                collector.close()
            except Exception:
                _log.debug("closing the lag collector", exc_info=True)

    def close(self) -> None:
        """Close clients that are idle; one still busy in a worker is left to the
        process exit rather than blocking the UI while it quits."""
        if self._payloads is not None:
            self._payloads.close()
        if self._probe is not None:
            self._probe.close()
        if self._trace_lock.acquire(timeout=0.5):
            try:
                if self._tracer is not None:
                    self._tracer.close()
                    self._tracer = None
            finally:
                self._trace_lock.release()
        if self._lock.acquire(timeout=0.5):
            try:
                self._drop_collector()
                if self._history is not None:
                    self._history.close()
                    self._history = None
            finally:
                self._lock.release()
