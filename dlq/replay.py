"""Replay: reset a consumer group's offsets on one topic, previewed first, proved after.

`plan_reset` computes, without changing anything, where every partition of
`topic` would move for a `ResetSpec` (earliest, latest, a datetime, an
offset, a shift, a duration back from now), clamped to each partition's
[low, high] watermarks. `execute_reset` applies exactly that plan and nothing
else:

- it refuses a group that is not empty (Kafka cannot reset an active group;
  the message names the state the broker reports);
- it refuses when the group's committed offsets moved since the plan was
  made, so what the operator previewed is what changes;
- after the change it reads the committed offsets back and fails loudly if
  they differ from the plan (tools that reported success while changing
  nothing are why this exists: kafkactl #43).

Time-based plans use the broker's `offsets_for_times`; a time after the
newest record resolves to the end of the partition.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from collectors.config import ClusterConfig
from collectors.durations import duration_seconds
from collectors.errors import (
    BrokerUnavailable,
    InvalidValue,
    KafkaOperationError,
    LagdeckError,
    NotFoundError,
    UsageError,
)
from collectors.kafka import DEFAULT_TIMEOUT, admin, consumer, translate
from collectors.scan import iter_bounded, watermarks
from collectors.timefmt import iso_utc
from collectors.topics import list_topics
from dlq.audit import audited
from dlq.guard import ensure_writable

KINDS = ("earliest", "latest", "datetime", "offset", "shift", "duration")
#: Offsets read back from each partition's end to find its newest record.
_TAIL_WINDOW = 8
#: Group states in which offsets may be changed.
RESETTABLE_STATES = ("EMPTY", "DEAD")


@dataclass(frozen=True)
class ResetSpec:
    """Where to move: `kind` in KINDS; `value` an int (offset, shift), epoch ms
    (datetime) or seconds (duration)."""

    kind: str
    value: int | float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown reset {self.kind!r} (one of: {', '.join(KINDS)})")
        if self.kind in ("earliest", "latest"):
            return
        if self.value is None:
            raise UsageError(f"reset {self.kind!r} needs a value")
        if self.kind == "offset" and self.value < 0:
            raise InvalidValue("to_offset", f"must be 0 or more, got {self.value}")
        if self.kind == "duration" and self.value <= 0:
            raise InvalidValue("by_duration", "must be a positive duration")
        if self.kind == "datetime" and self.value < 0:
            raise UsageError("a time before 1970-01-01T00:00:00Z (the Unix epoch) cannot be "
                             "replayed to; Kafka timestamps start there")

    @property
    def amount(self) -> int | float:
        """`value` of a kind that carries one (`__post_init__` made sure it is set)."""
        if self.value is None:
            raise UsageError(f"reset {self.kind!r} needs a value")
        return self.value

    @classmethod
    def earliest(cls) -> ResetSpec:
        return cls("earliest")

    @classmethod
    def latest(cls) -> ResetSpec:
        return cls("latest")

    @classmethod
    def to_offset(cls, offset: int) -> ResetSpec:
        return cls("offset", int(offset))

    @classmethod
    def shift_by(cls, n: int) -> ResetSpec:
        return cls("shift", int(n))

    @classmethod
    def to_datetime(cls, text: str) -> ResetSpec:
        return cls("datetime", parse_datetime_ms(text))

    @classmethod
    def by_duration(cls, text: str) -> ResetSpec:
        seconds = parse_duration_s(text)
        _check_duration_reach(seconds, int(time.time() * 1000), repr(text))
        return cls("duration", seconds)

    def describe_value(self) -> str:
        """The value as a flag would take it (for messages)."""
        return f"{self.value:g}s" if self.kind == "duration" else str(self.value)

    def describe(self) -> str:
        if self.kind == "datetime":
            return f"to {iso_utc(float(self.value or 0) / 1000, zulu=False)}"
        if self.kind == "duration":
            return f"by duration {self.value:g}s back from now"
        if self.kind in ("earliest", "latest"):
            return f"to {self.kind}"
        return f"{'to offset' if self.kind == 'offset' else 'shift by'} {self.value}"


#: 9999-12-31T23:59:59.999Z, the last time Python (and an operator) can name.
_MAX_MS = 253402300799999


def parse_datetime_ms(text: str) -> int:
    """ISO 8601 (naive times are UTC) or epoch milliseconds -> epoch milliseconds.

    Times before the Unix epoch are refused: Kafka has no records from then,
    and the negative numbers they become mean "latest" (-1) or "earliest" (-2)
    in its protocol.
    """
    raw = text.strip()
    if re.fullmatch(r"\d{10,}", raw):
        if int(raw) > _MAX_MS:
            raise InvalidValue("to_datetime", f"{text!r} is after the year 9999")
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        millis = int(parsed.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise InvalidValue(
            "to_datetime", f"{text!r}: expected ISO 8601 such as 2024-05-01T12:00:00Z "
            "(naive times are UTC) or epoch milliseconds") from None
    if millis < 0:
        raise InvalidValue("to_datetime", f"{text!r} is before 1970-01-01T00:00:00Z (the Unix "
                         "epoch); Kafka timestamps start there")
    return millis


def parse_duration_s(text: str) -> float:
    """`PT1H30M` (as kafka-consumer-groups) or `1h30m`, `90s`, `2d` -> seconds."""
    try:
        return duration_seconds(text.strip().replace(" ", ""), bare=False)
    except ValueError:
        raise UsageError(f"duration {text!r}: expected e.g. 15m, 1h30m, 2d or PT1H30M") from None


def _check_duration_reach(seconds: float, now_ms: int, shown: str) -> None:
    if seconds * 1000 > now_ms:
        raise InvalidValue("by_duration", f"{shown} reaches back before 1970-01-01T00:00:00Z "
                         "(the Unix epoch); Kafka timestamps start there")


@dataclass(frozen=True)
class PartitionReset:
    partition: int
    current_offset: int | None
    new_offset: int | None
    low: int
    high: int
    note: str | None = None

    @property
    def changes(self) -> bool:
        return self.new_offset is not None and self.new_offset != self.current_offset

    @property
    def delta(self) -> int | None:
        """Records to reprocess (positive) or to skip (negative)."""
        if self.new_offset is None:
            return None
        base = self.current_offset if self.current_offset is not None else self.high
        return base - self.new_offset


@dataclass(frozen=True)
class ReplayPlan:
    group: str
    topic: str
    spec: ResetSpec
    group_state: str
    partitions: tuple[PartitionReset, ...]
    planned_at: float
    #: False when the broker does not know the group (a typo?): executing would create it
    exists: bool = True

    @property
    def changes(self) -> tuple[PartitionReset, ...]:
        return tuple(p for p in self.partitions if p.changes)

    def to_json(self, dry_run: bool = True) -> dict[str, Any]:
        return {
            "group": self.group, "topic": self.topic, "dry_run": dry_run,
            "state": self.group_state, "reset": self.spec.describe(),
            "group_exists": self.exists,
            "partitions": [{"partition": p.partition, "current_offset": p.current_offset,
                            "new_offset": p.new_offset, "low": p.low, "high": p.high,
                            "note": p.note} for p in self.partitions],
        }


@dataclass(frozen=True)
class ReplayResult:
    plan: ReplayPlan
    applied: tuple[PartitionReset, ...]
    committed_after: tuple[tuple[int, int | None], ...]
    verified: bool

    def to_json(self) -> dict[str, Any]:
        doc = self.plan.to_json(dry_run=False)
        doc["applied"] = [p.partition for p in self.applied]
        doc["committed_after"] = [{"partition": p, "offset": o} for p, o in self.committed_after]
        doc["verified"] = self.verified
        return doc


def group_state(cluster: ClusterConfig, group: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The broker's state of `group` (STABLE, EMPTY, DEAD, ...), upper case."""
    client = admin(cluster)
    try:
        desc = client.describe_consumer_groups([group], request_timeout=timeout)[group] \
            .result(timeout=timeout + 5)
    except KafkaException as exc:
        del client  # an error kept by the caller must not keep the client alive (below)
        raise translate(exc, f"describing group {group}") from None
    state = getattr(desc.state, "name", str(desc.state))
    return str(state).upper()


def committed_offsets(cluster: ClusterConfig, group: str, topic: str, partitions: int,
                      timeout: float = DEFAULT_TIMEOUT) -> dict[int, int | None]:
    """Committed offset per partition of `topic` for `group` (None where nothing is committed)."""
    client = admin(cluster)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)])
    try:
        res = client.list_consumer_group_offsets([request], request_timeout=timeout)[group] \
            .result(timeout=timeout + 5)
    except KafkaException as exc:
        # A client whose coordinator request failed must be gone before its connection
        # comes back: librdkafka 2.16 can abort on that late answer (librdkafka #4605).
        del client
        raise translate(exc, f"reading committed offsets of group {group}") from None
    out: dict[int, int | None] = dict.fromkeys(range(partitions))
    for tp in res.topic_partitions:
        if tp.topic == topic and tp.error is None and tp.offset >= 0:
            out[tp.partition] = tp.offset
    return out


def _partitions(cluster: ClusterConfig, topic: str, timeout: float) -> int:
    count = list_topics(cluster, timeout=timeout, include_internal=True).get(topic)
    if not count:
        raise NotFoundError(f"topic {topic!r} does not exist")
    return count


def group_exists(cluster: ClusterConfig, group: str, state: str,
                 timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether `group` is known to the cluster: it has members, or the broker lists it.

    Kafka describes any name as a group (DEAD, or EMPTY on some brokers), so
    the state alone cannot tell a mistyped name from a real, stopped group;
    the group listing can (it holds every group with committed offsets).
    """
    if state not in ("EMPTY", "DEAD", "UNKNOWN"):
        return True
    client = admin(cluster)
    try:
        listing = client.list_consumer_groups(request_timeout=timeout).result(
            timeout=timeout + 5)
    except KafkaException as exc:
        raise translate(exc, "listing consumer groups") from None
    return any(g.group_id == group for g in listing.valid)


def _newest_timestamps(reader, topic: str, marks: dict[tuple[str, int], tuple[int, int]],
                       timeout: float) -> dict[int, int | None]:
    """The newest record timestamp per partition (None: empty), read from the last few
    offsets (a transaction marker can hold the very last one)."""
    ends = {k: hi for k, (lo, hi) in marks.items() if hi > lo}
    starts = {k: max(marks[k][0], hi - _TAIL_WINDOW) for k, hi in ends.items()}
    newest: dict[int, int | None] = {p: None for (_, p) in marks}
    for msgs in iter_bounded(reader, ends, starts, idle_timeout=timeout):
        for msg in msgs:
            ts_type, ts = msg.timestamp()
            if ts_type and ts >= 0:
                p = msg.partition()
                prev = newest[p]
                newest[p] = ts if prev is None else max(prev, ts)
    reader.unassign()
    return newest


def plan_reset(cluster: ClusterConfig, group: str, topic: str, spec: ResetSpec, *,
               now_ms: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> ReplayPlan:
    """Where every partition of `topic` would move for `group`; changes nothing.

    A time after a partition's newest record resolves to its end offset. That
    is checked against the newest record's own timestamp, not left to the
    broker: some brokers answer offset 0 for a future time, which would make
    the group read the whole partition again.
    """
    if not group.strip():
        raise UsageError("the group name is empty")
    partitions = _partitions(cluster, topic, timeout)
    state = group_state(cluster, group, timeout)
    exists = group_exists(cluster, group, state, timeout)
    current = committed_offsets(cluster, group, topic, partitions, timeout)
    reader = consumer(cluster)
    target: int | None = None
    try:
        marks = watermarks(cluster, [(topic, p) for p in range(partitions)], timeout, reader)
        by_time: dict[int, int] = {}
        newest: dict[int, int | None] = {}
        if spec.kind in ("datetime", "duration"):
            now = now_ms if now_ms is not None else int(time.time() * 1000)
            if spec.kind == "duration":
                _check_duration_reach(float(spec.amount), now, spec.describe_value())
                target = now - int(float(spec.amount) * 1000)
            else:
                target = int(spec.amount)
            newest = _newest_timestamps(reader, topic, marks, timeout)
            ask = [p for p in range(partitions)
                   if (last := newest.get(p)) is not None and target <= last]
            if ask:
                try:
                    found = reader.offsets_for_times(
                        [TopicPartition(topic, p, target) for p in ask], timeout=timeout)
                except KafkaException as exc:
                    raise translate(exc, f"looking up offsets by time in {topic}") from None
                by_time = {tp.partition: tp.offset for tp in found}
    finally:
        reader.close()
    out = []
    for p in range(partitions):
        low, high = marks[(topic, p)]
        cur = current[p]
        note = None
        wanted: int | None
        if spec.kind == "earliest":
            wanted = low
        elif spec.kind == "latest":
            wanted = high
        elif spec.kind == "offset":
            wanted = int(spec.amount)
        elif spec.kind == "shift":
            wanted = None if cur is None else cur + int(spec.amount)
            if cur is None:
                note = "no committed offset to shift from; left unchanged"
        elif (last := newest.get(p)) is None:
            wanted, note = high, "no records: the end"
        elif target is not None and target > last:
            wanted, note = high, f"after the newest record ({iso_utc(last / 1000)}): the end"
        else:
            wanted = by_time.get(p, -1)
            if wanted < 0:
                wanted, note = high, "no record at or after that time: the end"
        new = wanted
        if wanted is not None and not low <= wanted <= high:
            new = min(max(wanted, low), high)
            note = f"{wanted} clamped to {'low' if wanted < low else 'high'} watermark {new}"
        out.append(PartitionReset(p, cur, new, low, high, note))
    return ReplayPlan(group, topic, spec, state, tuple(out), time.time(), exists=exists)


def execute_reset(cluster: ClusterConfig, plan: ReplayPlan, *, create: bool = False,
                  timeout: float = DEFAULT_TIMEOUT) -> ReplayResult:
    """Apply `plan` exactly, then read the committed offsets back to prove it.

    Raises `ReadOnlyError` in read-only mode, `NotFoundError` when the group
    does not exist and `create` is not set (a mistyped name would otherwise
    become a new group that timelines then show as pending), `LagdeckError`
    when the group is active or its offsets moved since the plan, `KafkaOperationError`
    when the broker refuses or the read-back differs.
    """
    ensure_writable(cluster, f"replay (offset reset) of group {plan.group}")
    params = {"group": plan.group, "topic": plan.topic, "reset": plan.spec.describe(),
              "partitions": [{"partition": p.partition, "from": p.current_offset,
                              "to": p.new_offset} for p in plan.changes]}
    with audited(cluster, "replay.execute", params) as audit:
        try:
            state = group_state(cluster, plan.group, timeout)
            exists = create or group_exists(cluster, plan.group, state, timeout)
            partitions = len(plan.partitions)
            now = committed_offsets(cluster, plan.group, plan.topic, partitions, timeout)
        except BrokerUnavailable as exc:  # gone since the preview: claim nothing
            raise BrokerUnavailable(f"replay of group {plan.group} refused: {exc}; nothing "
                                    "was changed") from None
        if not exists:
            raise NotFoundError(
                f"replay refused: consumer group {plan.group!r} does not exist (a typo?); "
                "nothing was created")
        if state not in RESETTABLE_STATES:
            raise LagdeckError(
                f"replay of group {plan.group} refused: the group is {state} (it has active "
                "members); stop its consumers first, offsets can only be reset on an empty group")
        moved = [f"partition {p.partition}: {p.current_offset} -> {now[p.partition]}"
                 for p in plan.partitions if now.get(p.partition) != p.current_offset]
        if moved:
            raise LagdeckError(
                f"replay of group {plan.group} refused: its committed offsets changed since "
                f"the plan ({'; '.join(moved[:3])}); plan again")
        changes = plan.changes
        try:
            if changes:
                _alter(cluster, plan, changes, timeout)
            after = committed_offsets(cluster, plan.group, plan.topic, partitions, timeout)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"replay of group {plan.group}: the cluster stopped answering during the reset "
                f"({exc}); whether it was applied is unknown: preview it again (a dry run) "
                "to see the committed offsets") from None
        wrong = [f"partition {p.partition}: expected {p.new_offset}, found {after[p.partition]}"
                 for p in changes if after.get(p.partition) != p.new_offset]
        audit.counts = {"partitions_changed": len(changes) - len(wrong),
                        "partitions_planned": len(changes)}
        if wrong:
            raise KafkaOperationError(
                f"replay of group {plan.group}: the broker accepted the reset but the committed "
                f"offsets read back differ ({'; '.join(wrong[:3])})")
        return ReplayResult(plan=replace(plan, group_state=state), applied=changes,
                            committed_after=tuple(sorted(after.items())), verified=True)


def _alter(cluster: ClusterConfig, plan: ReplayPlan, changes, timeout: float) -> None:
    client = admin(cluster)
    request = ConsumerGroupTopicPartitions(
        plan.group, [TopicPartition(plan.topic, p.partition, int(p.new_offset)) for p in changes])
    try:
        res = client.alter_consumer_group_offsets([request], request_timeout=timeout)[plan.group] \
            .result(timeout=timeout + 5)
    except KafkaException as exc:
        raise translate(exc, f"resetting offsets of group {plan.group}") from None
    errors = [f"partition {tp.partition}: {tp.error}" for tp in res.topic_partitions
              if tp.error is not None]
    if errors:
        raise KafkaOperationError(
            f"resetting offsets of group {plan.group}: {'; '.join(errors[:3])}")
