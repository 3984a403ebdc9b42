"""Hostile records: what anyone who can write to a topic (or name a group) puts in front
of the on-call engineer.

Every field a screen or a command shows gets the same payload: Rich markup that
raises (`[/]`) or links (`[link=...]`), ANSI CSI (clear screen, cursor home), OSC
(terminal title, clipboard write), BEL, a C1 control, bidi overrides, zero-width
characters, invalid UTF-8, newlines (in keys too) and 100 kB header values.

`hostile_records(...)` builds the records; `write_hostile(...)` produces them on the
broker with kafka-python (as another team's service would) and commits offsets
under a hostile group name; `HostileSource` serves the same records to the TUI.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from collectors.alerts.rules import Severity
from collectors.alerts.state import AlertEvent, AlertKey, AlertState, EventKind, Phase
from collectors.errors import UsageError
from collectors.snapshots import GroupLag, Header, LagSnapshot, Member, PartitionLag, Record, Status
from console.data import AlertsView, DlqPageView, LagView
from console.demo.events import spring_dlt_headers
from dlq.browse import DeadLetter, PageCursor
from dlq.discovery import DlqTopicSummary, ErrorCount
from dlq.redrive import RedriveProgress, RedriveResult, RedriveSample
from dlq.replay import PartitionReset, ReplayPlan, ReplayResult, ResetSpec
from dlq.select import parse_where
from tests.tui_fixtures import T0, FixedSource
from tracing.deadletter import decode_envelope
from tracing.extract import DeadLetterInfo
from tracing.timeline import ScanStats, SpanInfo, Timeline, TimelineEvent

MARKUP = "[/][bold red]x[/bold red]"
LINK = "[link=https://evil.example/]click[/link]"
CSI = "\x1b[2J\x1b[H"  # clear screen, cursor home
OSC_TITLE = "\x1b]0;pwned\x07"  # terminal title
OSC_CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4K\x07"  # clipboard write
BEL = "\x07"
C1 = "\x9b31m"  # 8-bit CSI
BIDI = "\u202egnp.exe\u202c\u2066x\u2069"
ZERO_WIDTH = "a\u200bb\u200dc\ufeffd"
#: every trick in one string (valid UTF-8; `HOSTILE_BYTES` adds invalid bytes)
HOSTILE = f"{MARKUP} {LINK} {CSI}{OSC_TITLE}{OSC_CLIPBOARD}{BEL}{C1}{BIDI}{ZERO_WIDTH}\nsecond line"
INVALID_UTF8 = b"\xff\xfe\xc3("
HOSTILE_BYTES = HOSTILE.encode() + INVALID_UTF8
BIG = 100_000

#: how the escaped text must appear wherever a hostile field is shown
VISIBLE = ("[/]", "\\x1b[2J", "\\u202e", "\\u200b")


def unsafe_chars(text: str, allow: str = "\n") -> list[str]:
    """Characters of `text` a terminal would act on, or that hide or reorder text."""
    return sorted({ch for ch in text if not ch.isprintable() and ch not in allow})


#: lagdeck's own styling when written to a terminal: SGR colours and rich's OSC 8 links
_OWN_STYLING = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b\x07]*(?:\x1b\\|\x07)")


def without_styling(text: str) -> str:
    return _OWN_STYLING.sub("", text)


def _name(prefix: str, run: str) -> str:
    return f"{prefix}-{run}"


@dataclass(frozen=True)
class HostileWorld:
    """Names of what `hostile_records` / `write_hostile` made."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def order(self) -> str:
        """A plain id, so `trace` can find the order whose every other field is hostile."""
        return f"ord-hostile-{self.run}"

    # Topic names carry no `/`: Tansu accepts such a topic but panics when offsets are
    # committed on it (it is a storage path there); Kafka refuses all of these names.

    @property
    def events_topic(self) -> str:
        return f"orders[bold]x[link=evil]{CSI}\u202e\u200b.{self.run}"

    @property
    def dlt_topic(self) -> str:
        return f"payments[i]{OSC_TITLE}{BIDI}{ZERO_WIDTH}.{self.run}-dlt"

    @property
    def group(self) -> str:
        """No `/`: Tansu keeps group ids as storage keys, cut at `/` and %-encoded when
        listed, so this is as hostile as a group name gets through this broker."""
        return f"svc[bold]x[link=evil]{CSI}{OSC_TITLE}{BIDI}{ZERO_WIDTH}\n{self.run}"

    @property
    def plain_group(self) -> str:
        """A group the broker reports faithfully, reading the hostile topic."""
        return f"plain-{self.run}"

    @property
    def group_regex(self) -> str:
        return re.escape(self.run)


def _headers(world: HostileWorld, i: int) -> list[tuple[str, bytes]]:
    return [
        ("correlation-id", world.order.encode()),
        (f"x-evil{MARKUP}{CSI}\n", HOSTILE_BYTES),
        ("x-big", HOSTILE.encode() + b"B" * BIG),
        ("x-binary", INVALID_UTF8 * 4),
        ("event-type", HOSTILE.encode()),
        ("traceparent", f"00-{i + 1:032x}-{i + 1:016x}-01".encode()),
    ]


def event_value(world: HostileWorld, i: int) -> bytes:
    return json.dumps({"type": f"Evt{HOSTILE}", "order_id": world.order, "n": i,
                       "note": HOSTILE}).encode()


def hostile_records(world: HostileWorld) -> tuple[list[Record], list[Record]]:
    """(order events, dead letters): every shown field hostile, in both."""
    events = []
    for i in range(2):
        events.append(Record(world.events_topic, 0, i, int(T0 * 1000) + i * 1000,
                             f"key{i}\n{HOSTILE}".encode() + INVALID_UTF8,
                             event_value(world, i),
                             tuple(Header(k, v) for k, v in _headers(world, i))))
    letters = []
    for i in range(3):
        spring = spring_dlt_headers(
            topic=world.events_topic, partition=0, offset=i, timestamp_ms=int(T0 * 1000),
            group=world.group, error_class=f"com.evil.{HOSTILE}Exception",
            error_message=f"field [/data/orderId] missing {HOSTILE}")
        headers = [*spring, *_headers(world, i)] if i < 2 else _headers(world, i)
        value = event_value(world, i) if i != 1 else HOSTILE_BYTES + b"B" * BIG
        letters.append(Record(world.dlt_topic, 0, i, int(T0 * 1000) + 5000 + i,
                              f"dl{i}\n{HOSTILE}".encode() + INVALID_UTF8, value,
                              tuple(Header(k, v) for k, v in headers)))
    return events, letters


def write_hostile(bootstrap: str, world: HostileWorld) -> None:
    """Create the topics, produce the records with kafka-python, commit offsets under
    the hostile group name (the broker allows these names; Kafka would refuse the
    topic names but not the group name)."""
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    from tests.conftest import create_topics, kp_producer

    create_topics(bootstrap, world.events_topic, world.dlt_topic)
    events, letters = hostile_records(world)
    producer = kp_producer(bootstrap, max_request_size=2_000_000)
    now_ms = int(time.time() * 1000) - 60_000  # recent, so `trace --since` finds them
    try:
        for i, r in enumerate((*events, *letters)):
            producer.send(r.topic, key=r.key, value=r.value, partition=0,
                          timestamp_ms=now_ms + i * 1000,
                          headers=[(h.key, h.value) for h in r.headers]).get(timeout=15)
        producer.flush(15)
    finally:
        producer.close()
    for group in (world.group, world.plain_group):
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                 enable_auto_commit=False)
        try:
            consumer.commit({TopicPartition(world.events_topic, 0):
                             OffsetAndMetadata(1, "", -1)})
        finally:
            consumer.close()


# -- the same records for the TUI -------------------------------------------------------


def hostile_snapshot(world: HostileWorld) -> LagSnapshot:
    parts = (PartitionLag(world.events_topic, 0, 1, 2, 1, 4.0, "interpolated", Status.WARN,
                          status_reason=f"why {HOSTILE}"),
             PartitionLag(world.dlt_topic, 0, 0, 3, 3, None, "unknown", Status.ERR,
                          error=f"error {HOSTILE}"))
    member = Member(f"member{HOSTILE}", f"client{HOSTILE}", f"/host{HOSTILE}",
                    ((world.events_topic, 0),))
    groups = (
        GroupLag(world.group, f"STABLE{CSI}", Status.WARN, 4, 4.0, parts, members=(member,),
                 status_reason=f"reason {HOSTILE}"),
        GroupLag(f"other{MARKUP}{world.run}", "EMPTY", Status.STOP, 4, 60.0, parts,
                 members=(), error=f"broken {HOSTILE}"),
    )
    return LagSnapshot(T0, groups, errors=(f"snapshot error {HOSTILE}",))


def hostile_alerts(world: HostileWorld) -> AlertsView:
    message = f"{world.group}: lag 4, threshold 1 {HOSTILE}"
    states = (AlertState(AlertKey(f"rule{MARKUP}", world.group, world.events_topic),
                         Phase.FIRING, Severity.CRITICAL, since=T0 - 60, seen_at=T0,
                         fired_at=T0 - 30, value=f"v{HOSTILE}", threshold=1, message=message),
              AlertState(AlertKey(f"pending{MARKUP}", world.group), Phase.PENDING,
                         Severity.WARNING, since=T0 - 5, seen_at=T0, value=4.0, threshold=1,
                         message=message))
    resolved = (AlertEvent(EventKind.RESOLVED, f"rule{MARKUP}", world.group, world.dlt_topic,
                           Severity.WARNING, 0, 1, message, at=T0 - 100, since=T0 - 200),)
    return AlertsView(2, f"/etc/{MARKUP}{CSI}.toml", states, resolved,
                      error=f"rule file problem {HOSTILE}")


def hostile_timeline(world: HostileWorld, query: str) -> Timeline:
    events, letters = hostile_records(world)
    dl = DeadLetter(letters[0], decode_envelope(letters[0]))
    out = []
    for r in events:
        out.append(TimelineEvent(r.topic, r.partition, r.offset, r.timestamp_ms,
                                 f"key\n{HOSTILE}", f"Evt{HOSTILE}", world.order,
                                 f"trace{HOSTILE}", None,
                                 consumers={world.group: "pending", f"g2{MARKUP}": "processed"},
                                 stuck=True, trace_url=f"https://jaeger/{HOSTILE} x",
                                 spans=(SpanInfo("s1", f"svc{HOSTILE}", f"op{HOSTILE}", 1.5),)))
    out.append(TimelineEvent(dl.record.topic, 0, dl.record.offset, dl.record.timestamp_ms,
                             f"dl\n{HOSTILE}", f"Evt{HOSTILE}", world.order, None, None,
                             consumers={world.group: "dead-lettered"},
                             dead_letter=DeadLetterInfo.from_envelope(dl.envelope)))
    return Timeline(query, tuple(out), since_seconds=86400, stuck_after_seconds=15,
                    generated_at_ms=int(T0 * 1000), notes=(f"note {HOSTILE}",),
                    stats=ScanStats(topics=2, partitions=2, scanned_records=5,
                                    indexed_hits=0, elapsed_seconds=0.1))


@dataclass
class HostileSource(FixedSource):
    """`FixedSource` serving the hostile records, names and messages to every screen."""

    world: HostileWorld = field(default_factory=HostileWorld)

    def __post_init__(self) -> None:
        self.snapshot = hostile_snapshot(self.world)

    def poll_lag(self) -> LagView:
        self.polls += 1
        self.entered.set()
        return LagView(self.snapshot, {self.world.group: (1, 2, 3, 4)},
                       hostile_alerts(self.world))

    def letters(self) -> tuple[DeadLetter, ...]:
        return tuple(DeadLetter(r, decode_envelope(r)) for r in hostile_records(self.world)[1])

    def dead_letter_topics(self) -> list[DlqTopicSummary]:
        return [DlqTopicSummary(self.world.dlt_topic, 3, 1, int(T0 * 1000),
                                int(T0 * 1000) + 5000,
                                (ErrorCount(f"com.evil.{HOSTILE}Exception", 2),
                                 ErrorCount(f"Other{MARKUP}", 1)), 3, "name", ("spring",))]

    def dead_letter_page(self, topic, start, *, where=(), limit=50) -> DlqPageView:
        selector = parse_where(where)
        entries = tuple(e for e in self.letters() if selector.matches(e.record, e.envelope))
        return DlqPageView(topic, entries[:limit], PageCursor(((0, 0),)), None, 3, 0, 3,
                           selector.describe())

    def redrive(self, topic, *, picked=None, where=(), dry_run, progress=None, cancel=None):
        if not picked and not where:
            raise UsageError("nothing to redrive")
        chosen = [e for e in self.letters()
                  if not picked or (e.record.partition, e.record.offset) in picked]
        if progress is not None:
            progress(RedriveProgress(3, 3, len(chosen), 0, 0, 0, 0.1, dry_run))
        samples = tuple(RedriveSample(e.record.partition, e.record.offset,
                                      e.record.key.decode("utf-8", "replace"),
                                      e.envelope.original_topic, e.envelope.error_class,
                                      e.envelope.error_message, "redrive")
                        for e in chosen)
        return RedriveResult(topic, dry_run, len(chosen), 0 if dry_run else len(chosen), 0, 0,
                             3, 3 - len(chosen), f"lagdeck-redrive.{topic}",
                             ((self.world.events_topic, len(chosen)),),
                             reasons=((f"reason {HOSTILE}", 1),),
                             errors=(f"error {HOSTILE}",), samples=samples, elapsed_s=0.1,
                             selection=f"selection {HOSTILE}")

    def timeline(self, query: str) -> Timeline:
        self.lookups.append(query)
        return hostile_timeline(self.world, query)

    def plan_replay(self, group: str, topic: str, spec: ResetSpec) -> ReplayPlan:
        parts = (PartitionReset(0, 1, 0, 0, 2, note=f"note {HOSTILE}"),)
        return ReplayPlan(group, topic, spec, f"EMPTY{CSI}", parts, T0)

    def execute_replay(self, plan: ReplayPlan) -> ReplayResult:
        self.replayed.append(plan)
        return ReplayResult(plan, plan.changes, ((0, 0),), True)

