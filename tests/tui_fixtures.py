"""Hand-made, deterministic data for the console's UI tests and snapshots.

`FixedSource` implements `console.data.Source` with canned snapshots (no
broker, no clock), so screens render the same pixels on every run. Tests
about Kafka behaviour use `KafkaSource` against the real broker instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from collectors.alerts.rules import Severity
from collectors.alerts.state import AlertEvent, AlertKey, AlertState, EventKind, Phase
from collectors.config import ClusterConfig, Settings
from collectors.errors import UsageError
from collectors.snapshots import GroupLag, Header, LagSnapshot, Member, PartitionLag, Record, Status
from console.data import AlertsView, DlqPageView, LagView
from console.demo.events import PAYMENT_ERRORS, spring_dlt_headers
from dlq.browse import DeadLetter, PageCursor
from dlq.discovery import DlqTopicSummary, ErrorCount
from dlq.redrive import RedriveProgress, RedriveResult, RedriveSample
from dlq.replay import PartitionReset, ReplayPlan, ReplayResult, ResetSpec
from dlq.select import parse_where
from tracing.deadletter import decode_envelope
from tracing.flows import FlowMap, FlowRecord, compute_flows, events_from_records
from tracing.timeline import DeadLetterInfo, ScanStats, Timeline, TimelineEvent

#: 2024-05-01 10:00:00 UTC
T0 = 1714557600.0


def _parts(topic: str, lags: list[int], committed_base: int = 1000,
           status: Status = Status.OK, seconds: float | None = 0.4,
           method: str = "interpolated") -> tuple[PartitionLag, ...]:
    out = []
    for i, lag in enumerate(lags):
        committed = committed_base + i * 37
        out.append(PartitionLag(topic, i, committed, committed + lag, lag,
                                0.0 if lag == 0 else seconds, "zero" if lag == 0 else method,
                                status))
    return tuple(out)


def demo_snapshot(taken_at: float = T0) -> LagSnapshot:
    groups = (
        GroupLag("inventory-service", "STABLE", Status.OK, 3, 0.8,
                 _parts("orders.events", [1, 2, 0], seconds=0.8)),
        GroupLag("payment-service", "STABLE", Status.OK, 2, 0.5,
                 _parts("inventory.events", [0, 1, 1], seconds=0.5)),
        GroupLag("notification-service", "STABLE", Status.WARN, 412, 96.0,
                 _parts("payments.events", [130, 141, 141], status=Status.WARN,
                        seconds=96.0)),
        GroupLag("analytics-service", "STABLE", Status.OK, 4, 1.1,
                 _parts("orders.events", [1, 1, 0], seconds=1.1)
                 + _parts("payments.events", [0, 1, 1], seconds=0.9)),
        GroupLag("loyalty-service", "EMPTY", Status.STOP, 377, 312.0,
                 _parts("payments.events", [120, 131, 126], committed_base=60,
                        status=Status.STOP, seconds=312.0, method="extrapolated")),
    )
    return LagSnapshot(taken_at, groups)


def with_members(snapshot: LagSnapshot) -> LagSnapshot:
    """The same snapshot on a broker that reports members (real Kafka)."""
    groups = []
    for g in snapshot.groups:
        if g.state == "STABLE":
            topics = sorted({p.topic for p in g.partitions})
            members = (Member(f"{g.group}-1-6f2c", f"{g.group}-1", "/10.0.3.17",
                              tuple((t, p.partition) for t in topics for p in g.partitions
                                    if p.topic == t)),)
            g = replace(g, members=members)
        else:
            g = replace(g, members=())
        groups.append(g)
    return replace(snapshot, groups=tuple(groups))


TRENDS = {
    "inventory-service": (2, 3, 1, 4, 2, 3, 1, 3),
    "payment-service": (1, 0, 2, 1, 1, 0, 2, 2),
    "notification-service": (40, 80, 120, 170, 220, 280, 350, 412),
    "analytics-service": (3, 5, 2, 4, 6, 3, 5, 4),
    "loyalty-service": (0, 30, 80, 130, 190, 250, 310, 377),
}


def demo_alerts() -> AlertsView:
    states = (
        AlertState(AlertKey("consumer-stopped", "loyalty-service"), Phase.FIRING,
                   Severity.CRITICAL, since=T0 - 240, seen_at=T0, fired_at=T0 - 210,
                   value="STOP", threshold="STALL",
                   message="loyalty-service: status STOP, threshold STALL or worse"),
        AlertState(AlertKey("notifications-behind", "notification-service"), Phase.PENDING,
                   Severity.WARNING, since=T0 - 20, seen_at=T0, value=96.0, threshold=60,
                   message="notification-service: lag 96.0s, threshold 60.0s"),
    )
    resolved = (
        AlertEvent(EventKind.RESOLVED, "notifications-behind", "inventory-service", None,
                   Severity.WARNING, 12.0, 60, "inventory-service: resolved, lag 12.0s "
                   "(threshold 60.0s)", at=T0 - 600, since=T0 - 900),
    )
    return AlertsView(2, "/etc/lagdeck/config.toml", states, resolved)


DLT = "payments.events-dlt"


def dead_letters(count: int = 6) -> tuple[DeadLetter, ...]:
    out = []
    for i in range(count):
        cls, message, _ = PAYMENT_ERRORS[i % len(PAYMENT_ERRORS)]
        order = f"ord_{i:05d}"
        headers = [("correlation-id", order.encode()),
                   ("traceparent", f"00-{i + 1:032x}-{i + 1:016x}-01".encode()),
                   *spring_dlt_headers(topic="inventory.events", partition=i % 3,
                                       offset=100 + i, timestamp_ms=int(T0 * 1000) - 5000 + i,
                                       group="payment-service", error_class=cls,
                                       error_message=message)]
        value = (f'{{"type":"InventoryReserved","order_id":"{order}",'
                 f'"reservationId":"res_{i:08x}"}}').encode()
        record = Record(DLT, 0, 10 + i, int(T0 * 1000) + i * 1000, order.encode(), value,
                        tuple(Header(k, v) for k, v in headers))
        out.append(DeadLetter(record, decode_envelope(record)))
    return tuple(out)


def dlq_topics() -> list[DlqTopicSummary]:
    return [DlqTopicSummary(DLT, 6, 1, int(T0 * 1000), int(T0 * 1000) + 5000,
                            (ErrorCount(PAYMENT_ERRORS[0][0], 2),
                             ErrorCount(PAYMENT_ERRORS[1][0], 2),
                             ErrorCount(PAYMENT_ERRORS[2][0], 2)), 6, "name", ("spring",))]


def order_timeline(query: str = "ord_00001") -> Timeline:
    """ord_00001: placed, reserved, dead-lettered by payment, redriven, captured; loyalty
    has stopped, so the captured event is stuck for it."""
    ms = int(T0 * 1000) - 60_000
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    dl = dead_letters()[1]
    envelope = dl.envelope
    events = (
        TimelineEvent("orders.events", 1, 4711, ms, query, "OrderPlaced", query, trace, None,
                      consumers={"analytics-service": "processed",
                                 "inventory-service": "processed"}),
        TimelineEvent("inventory.events", 1, 101, ms + 350, query, "InventoryReserved", query,
                      trace, None, consumers={"payment-service": "dead-lettered"}),
        TimelineEvent(DLT, 0, dl.record.offset, ms + 900, query, "InventoryReserved", query,
                      trace, None, dead_letter=DeadLetterInfo.from_envelope(envelope)),
        TimelineEvent("payments.events", 2, 88, ms + 41_000, query, "shop.PaymentCaptured",
                      query, trace, None, consumers={"analytics-service": "processed",
                                           "loyalty-service": "pending",
                                           "notification-service": "processed"}, stuck=True),
    )
    return Timeline(query, events, since_seconds=86400, stuck_after_seconds=15,
                    generated_at_ms=int(T0 * 1000),
                    stats=ScanStats(topics=5, partitions=13, scanned_records=1204,
                                    indexed_hits=3, elapsed_seconds=0.2))


def order_flows() -> FlowMap:
    """Six orders: two complete, two dead-lettered (one with an id full of markup),
    one waiting at InventoryReserved (its reservation re-sent, at the position the
    canned timeline shows), one with a re-sent payment event."""
    ms = int(T0 * 1000)
    records = []
    for n, fate in enumerate(("ok", "ok", "dead", "dead", "waiting", "dup")):
        order = "[bold]ord_[/]x" if n == 3 else f"ord_{n:05d}"
        base = ms - 3_600_000 + n * 60_000
        records += [FlowRecord(order, "orders.events", "OrderPlaced", base, 0, n),
                    FlowRecord(order, "inventory.events", "InventoryReserved", base + 300, 1, n)]
        if fate == "waiting":
            records.append(FlowRecord(order, "inventory.events", "InventoryReserved",
                                      base + 400, 1, 101, identity=f"res-{n}"))
            records[-2] = replace(records[-2], identity=f"res-{n}")
        if fate == "dead":
            records.append(FlowRecord(order, DLT, "InventoryReserved", base + 800, 0, n,
                                      kind=1))
        elif fate in ("ok", "dup"):
            records.append(FlowRecord(order, "payments.events", "shop.PaymentCaptured",
                                      base + 900, 2, n, identity=f"pay-{n}"))
            if fate == "dup":
                records.append(FlowRecord(order, "payments.events", "shop.PaymentCaptured",
                                          base + 950, 2, n + 100, identity=f"pay-{n}"))
    return compute_flows(events_from_records(records), now_ms=ms, stuck_after_ms=300_000,
                         since_seconds=3600)


@dataclass
class FixedSource:
    """Canned data; `gate` (when set) blocks `poll_lag` until the test releases it."""

    members: bool = False
    snapshot: LagSnapshot = field(default_factory=demo_snapshot)
    cluster: ClusterConfig = field(
        default_factory=lambda: ClusterConfig({"bootstrap.servers": "kafka-1.prod:9092"}))
    settings: Settings = field(default_factory=Settings)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    polls: int = 0
    fail_with: BaseException | None = None
    redriven: list = field(default_factory=list)
    replayed: list = field(default_factory=list)
    lookups: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return "kafka-1.prod:9092"

    @property
    def read_only(self) -> bool:
        return self.cluster.read_only

    def poll_lag(self) -> LagView:
        self.polls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_with is not None:
            raise self.fail_with
        snap = with_members(self.snapshot) if self.members else self.snapshot
        return LagView(snap, TRENDS, demo_alerts())

    def dead_letter_topics(self) -> list[DlqTopicSummary]:
        return dlq_topics()

    def dead_letter_page(self, topic, start, *, where=(), limit=50) -> DlqPageView:
        selector = parse_where(where)
        entries = tuple(e for e in dead_letters() if selector.matches(e.record, e.envelope))
        return DlqPageView(topic, entries[:limit], PageCursor(((0, 10),)), None, 6, 0,
                           6, selector.describe())

    def redrive(self, topic, *, picked=None, where=(), dry_run, progress=None, cancel=None):
        """Counts what a redrive would move, as the real one reports it (no broker)."""
        if not picked and not where:
            raise UsageError("nothing to redrive")
        selector = parse_where(where)
        chosen = [e for e in dead_letters()
                  if ((e.record.partition, e.record.offset) in picked if picked
                      else selector.matches(e.record, e.envelope))]
        if self.gate is not None and not dry_run:
            self.entered.set()
            self.gate.wait(30)
        if progress is not None:
            progress(RedriveProgress(6, 6, len(chosen), 0 if dry_run else len(chosen), 0, 0,
                                     0.5, dry_run))
        self.redriven.extend([] if dry_run else chosen)
        samples = tuple(RedriveSample(e.record.partition, e.record.offset,
                                      e.record.key.decode(), e.envelope.original_topic,
                                      e.envelope.error_class, e.envelope.error_message,
                                      "redrive") for e in chosen[:5])
        return RedriveResult(topic, dry_run, len(chosen), 0 if dry_run else len(chosen), 0, 0,
                             6, 6 - len(chosen), "lagdeck-redrive.test",
                             (("inventory.events", len(chosen)),), samples=samples,
                             cancelled=bool(cancel and cancel.is_set()), elapsed_s=0.5,
                             selection=selector.describe())

    def timeline(self, query: str) -> Timeline:
        self.lookups.append(query)
        if query.startswith("ord_"):
            return order_timeline(query)
        return Timeline(query, (), since_seconds=86400, generated_at_ms=int(T0 * 1000))

    def flows(self) -> FlowMap:
        return order_flows()

    def plan_replay(self, group: str, topic: str, spec: ResetSpec) -> ReplayPlan:
        g = self.snapshot.group(group)
        assert g is not None
        parts = []
        for p in g.partitions:
            if p.topic != topic:
                continue
            new = 0 if spec.kind == "earliest" else p.end_offset
            parts.append(PartitionReset(p.partition, p.committed_offset, new, 0,
                                        p.end_offset or 0))
        return ReplayPlan(group, topic, spec, g.state, tuple(parts), T0)

    def execute_replay(self, plan: ReplayPlan) -> ReplayResult:
        self.replayed.append(plan)
        return ReplayResult(plan, plan.changes,
                            tuple((p.partition, p.new_offset) for p in plan.partitions), True)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()


async def until(pilot, predicate, timeout: float = 60.0, message: str = "condition") -> None:
    """Let the app run until `predicate()` holds (no fixed sleeps)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await pilot.pause(0.05)


async def confirm_ready(pilot) -> None:
    """Wait until the typed-confirmation box has focus (it takes it after a refresh),
    so the keys a test types land in it even on a loaded machine."""
    app = pilot.app
    await until(pilot, lambda: app.focused is not None and app.focused.id == "confirm-input",
                message="the confirmation box to take focus")
