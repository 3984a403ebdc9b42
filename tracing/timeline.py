"""The timeline of one order: its events in time order, with each consumer group's status.

Pure: decoded events, committed offsets and the dead letters among the
events go in, an immutable `Timeline` comes out. The same function serves
`lagdeck trace`, its JSON and the TUI's timeline screen.

Status of an event for a group that has committed offsets on its topic:

- ``processed``: the group's committed offset on the partition is past the event;
- ``pending``: it is not (or the group never committed that partition);
- ``dead-lettered``: a dead letter refers to the event's topic/partition/offset
  (Spring `kafka_dlt-original-*`, Connect `__connect.errors.*` or plain
  headers) naming that group, or carries the order's ids and names that group
  as the original consumer group. A dead letter that names no group is put on
  the only group reading the topic; with several readers the statuses stay as
  they are and the dead letter shows on its own event.

An event is ``stuck`` when some group still has it pending longer than
`stuck_after` after it was written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from collectors.timefmt import iso_utc_ms
from tracing.extract import DeadLetterInfo, EventInfo
from tracing.scanreport import ReadStats, ScanWindow

PROCESSED = "processed"
PENDING = "pending"
DEAD_LETTERED = "dead-lettered"

TP = tuple[str, int]


@dataclass(frozen=True)
class SpanInfo:
    """One span of the event's trace, from the trace backend (Jaeger)."""

    span_id: str
    service: str
    operation: str
    duration_ms: float
    start_ms: float | None = None
    #: span ids this span is a child of / follows from
    references: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TimelineEvent(EventInfo):
    """One event of the order: the decoded event and what the timeline adds to it.

    `consumers` maps group -> status; treat it as read-only. `payload` and
    `found_in` (from `EventInfo`) are set when the timeline was built with values.
    """

    consumers: dict[str, str] = field(default_factory=dict)
    stuck: bool = False
    trace_url: str | None = None
    spans: tuple[SpanInfo, ...] = ()

    @classmethod
    def of(cls, event: EventInfo, **added: Any) -> TimelineEvent:
        """`event` as a timeline event, with the timeline's `added` facts."""
        return cls(**{f.name: getattr(event, f.name) for f in fields(EventInfo)}, **added)

    @property
    def timestamp(self) -> str | None:
        """ISO 8601 UTC with milliseconds, or None when the record has no timestamp."""
        return iso_utc_ms(self.timestamp_ms)

    @property
    def redriven(self) -> bool:
        """A copy put back on its own original topic (redrive keeps the dead-letter
        headers): an ordinary event again, not a new dead letter."""
        return self.dead_letter is not None and self.dead_letter.original_topic == self.topic

    def to_json(self) -> dict[str, Any]:
        dl = None if self.redriven else self.dead_letter
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key,
            "event_type": self.event_type,
            "correlation_id": self.correlation_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "consumers": dict(sorted(self.consumers.items())),
            "stuck": self.stuck,
            "redriven": self.redriven,
            "dead_letter": None if dl is None else dl.to_json(),
            "trace_url": self.trace_url,
            "spans": [{"span_id": s.span_id, "service": s.service, "operation": s.operation,
                       "duration_ms": s.duration_ms} for s in self.spans],
            **(self.payload.to_json() if self.payload is not None
               else {"value": None, "value_format": None}),
            **({"found_in": self.found_in} if self.found_in else {}),
        }


@dataclass(frozen=True, kw_only=True)
class ScanStats(ReadStats):
    """How a timeline was found: what was read from Kafka and what came from the index."""

    indexed_hits: int = 0

    def counts(self) -> dict[str, int]:
        return {"indexed_hits": self.indexed_hits}


@dataclass(frozen=True)
class Timeline(ScanWindow):
    """The events of one order / correlation id / trace id, oldest first."""

    query: str
    events: tuple[TimelineEvent, ...] = ()
    stats: ScanStats = field(default_factory=ScanStats)
    #: False when the scan was cut short (the broker stopped answering): events may be
    #: missing, and the correlation index still lacks the ranges not read
    complete: bool = True

    @property
    def stuck(self) -> tuple[TimelineEvent, ...]:
        return tuple(e for e in self.events if e.stuck)

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group that appears in any event, sorted (the columns of a table view)."""
        return tuple(sorted({g for e in self.events for g in e.consumers}))

    def to_json(self) -> dict[str, Any]:
        """The `lagdeck trace --json` document (docs/contracts.md) plus notes, scan statistics."""
        return {
            "query": self.query,
            "events": [e.to_json() for e in self.events],
            "since_seconds": self.since_seconds,
            "stuck_after_seconds": self.stuck_after_seconds,
            "notes": list(self.notes),
            "complete": self.complete,
            "stats": self.stats.to_json(),
        }


def _readers(committed: Mapping[str, Mapping[TP, int]]) -> dict[str, set[str]]:
    readers: dict[str, set[str]] = defaultdict(set)
    for group, offsets in committed.items():
        for topic, _ in offsets:
            readers[topic].add(group)
    return readers


def _sort_key(e: EventInfo) -> tuple:
    return (e.timestamp_ms is None, e.timestamp_ms or 0, e.topic, e.partition, e.offset)


def build_timeline(
    query: str,
    events: Sequence[EventInfo],
    committed: Mapping[str, Mapping[TP, int]],
    *,
    now_ms: int,
    stuck_after_ms: int,
    url_for: Callable[[str | None, str | None], str | None] | None = None,
    spans: Mapping[str, Sequence[SpanInfo]] | None = None,
    since_seconds: float | None = None,
    notes: Sequence[str] = (),
    stats: ScanStats | None = None,
) -> Timeline:
    """Sort the events, mark each group's status, attach dead letters, links and spans.

    `committed` is group -> {(topic, partition): committed offset}; `spans`
    is trace id -> spans of that trace. Events whose `dead_letter` is set are
    the order's dead letters.
    """
    ordered = sorted({e.position: e for e in events}.values(), key=_sort_key)
    readers = _readers(committed)
    by_position = {e.position: e for e in ordered}

    # (topic, partition, offset) -> groups that dead-lettered it
    dead: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for e in ordered:
        dl = e.dead_letter
        if dl is None:
            continue
        target = by_position.get(dl.origin) if dl.origin else None
        if target is None:
            target = _by_group(dl, e, ordered, readers)
        if target is None:
            continue
        group = dl.original_group
        if group is None:
            topic_readers = readers.get(target.topic, set())
            group = next(iter(topic_readers)) if len(topic_readers) == 1 else None
        if group is not None:
            dead[target.position].add(group)

    out = []
    for e in ordered:
        consumers: dict[str, str] = {}
        for group in sorted(readers.get(e.topic, ())):
            offset = committed[group].get((e.topic, e.partition))
            consumers[group] = PROCESSED if offset is not None and offset > e.offset else PENDING
        for group in dead.get(e.position, ()):
            consumers[group] = DEAD_LETTERED
        stuck = (PENDING in consumers.values() and e.timestamp_ms is not None
                 and now_ms - e.timestamp_ms > stuck_after_ms)
        related: tuple[SpanInfo, ...] = ()
        if spans and e.trace_id and e.span_id:
            related = tuple(s for s in spans.get(e.trace_id, ())
                            if s.span_id == e.span_id or e.span_id in s.references)
        out.append(TimelineEvent.of(
            e,
            consumers=dict(sorted(consumers.items())),
            stuck=stuck,
            trace_url=url_for(e.trace_id, e.span_id) if url_for else None,
            spans=related,
        ))
    return Timeline(
        query=query,
        events=tuple(out),
        since_seconds=since_seconds,
        stuck_after_seconds=stuck_after_ms / 1000,
        generated_at_ms=now_ms,
        notes=tuple(notes),
        stats=stats or ScanStats(),
    )


def _by_group(dl: DeadLetterInfo, dead_letter: EventInfo, ordered: Sequence[EventInfo],
              readers: Mapping[str, set[str]]) -> EventInfo | None:
    """A dead letter without a position: the order's latest earlier event its group reads."""
    group = dl.original_group
    if group is None or dl.origin is not None:
        return None
    best = None
    for e in ordered:
        if e.dead_letter is not None or group not in readers.get(e.topic, ()):
            continue
        if dl.original_topic is not None and e.topic != dl.original_topic:
            continue
        if dead_letter.timestamp_ms is not None and e.timestamp_ms is not None \
                and e.timestamp_ms > dead_letter.timestamp_ms:
            continue
        best = e
    return best
