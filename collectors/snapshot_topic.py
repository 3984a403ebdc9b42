"""Lag snapshots shared through a compacted Kafka topic: one record per consumer group.

`lagdeck watch --publish` writes, after each refresh, one record per group it
owns: key = the group name, value = the group's `lag --json` document plus its
status, its alert states, when it was taken, how long the refresh took and who
took it (`published_by`, host:pid, one per process). A group that disappears
gets a tombstone (null value). Viewers (`--from-snapshots`) are plain
consumers of that topic: `assign()` from the beginning, no group membership,
no commits, so they send no OffsetFetch, DescribeGroups or JoinGroup at all.

Compaction keeps the topic at about one record per group on Kafka. Tansu does
not compact, so the reader never relies on it: it keeps the latest record per
key itself (a later tombstone removes the key) and reads on from where it
stopped on the next refresh instead of from the beginning.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from collectors import kafka
from collectors.alerts.book import book_from_dict, book_to_dict
from collectors.alerts.state import AlertBook, AlertState
from collectors.config import ClusterConfig
from collectors.errors import KafkaOperationError, NotFoundError, UsageError
from collectors.logs import get_logger
from collectors.snapshots import GroupLag, LagSnapshot, Member, PartitionLag, Status
from collectors.timefmt import iso_utc

DEFAULT_TOPIC = "_lagdeck.lag"
#: partitions of the snapshot topic when lagdeck creates it
TOPIC_PARTITIONS = 6
#: the topic configuration lagdeck creates it with: compacted, small segments so the
#: cleaner can run, tombstones kept a day so a viewer that reads daily still sees them
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(15 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
    "delete.retention.ms": str(24 * 3600 * 1000),
}
#: a snapshot older than this many of its publisher's intervals is stale
STALE_INTERVALS = 3
#: a publisher's interval counts as at most this (s): a record claiming a huge interval
#: must not make its snapshot look fresh forever
MAX_INTERVAL = 3600.0
FORMAT = 1

_log = get_logger("snapshots")


def publisher_id() -> str:
    """Who publishes: host and process id (two watchers on one host differ)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_topic_name(topic: str) -> str:
    """A Kafka topic name, or a usage error naming what is wrong with it."""
    if not topic or len(topic) > 249 or topic in (".", "..") or any(
            not (c.isascii() and (c.isalnum() or c in "._-")) for c in topic):
        raise UsageError(f"invalid snapshot topic name {topic!r} (letters, digits, '.', '_', "
                         "'-'; at most 249)")
    return topic


# ---------------------------------------------------------------- the document


@dataclass(frozen=True)
class Provenance:
    """Where a group's figures come from when they were read from the snapshot topic."""

    snapshot_at: float
    published_by: str
    #: the publisher's interval between refreshes (seconds)
    interval: float
    #: how long the publisher's refresh took (seconds)
    refresh_seconds: float | None = None
    alerts: tuple[AlertState, ...] = ()

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.snapshot_at)

    def stale(self, now: float | None = None) -> bool:
        """Older than `STALE_INTERVALS` of its publisher's intervals (at least 1 s)."""
        interval = min(max(self.interval, 1.0 / STALE_INTERVALS), MAX_INTERVAL)
        return self.age(now) > STALE_INTERVALS * interval


def _plain(value: Any) -> Any:
    if isinstance(value, Status):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def group_document(group: GroupLag) -> dict[str, Any]:
    """The group as `lag --json` shows it (every field of `GroupLag`)."""
    return _plain(group)


def encode(group: GroupLag, *, taken_at: float, published_by: str, interval: float,
           refresh_seconds: float | None, alerts: Iterable[AlertState] = (),
           cluster: str | None = None) -> bytes:
    doc = group_document(group)
    doc.update(
        format=FORMAT, snapshot_at=iso_utc(taken_at), taken_at=taken_at, published_by=published_by,
        interval=interval, refresh_seconds=refresh_seconds, cluster=cluster,
        alerts=book_to_dict(AlertBook(tuple(alerts)))["alerts"],
    )
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _printable(text: str, limit: int = 200) -> str:
    """Whoever can write the topic writes this: no control characters, bounded."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _build(cls: type, data: Mapping[str, Any], **fixed: Any) -> Any:
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    values.update(fixed)
    return cls(**values)


def decode(value: bytes) -> tuple[GroupLag, Provenance]:
    """Raises ValueError (and friends) on a record that is not a lagdeck snapshot."""
    doc = json.loads(value)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a lagdeck snapshot (format {doc.get('format')!r})"
                         if isinstance(doc, dict) else "not a JSON object")
    parts = tuple(_build(PartitionLag, p, status=Status(p["status"]))
                  for p in doc.get("partitions") or ())
    members = doc.get("members")
    if members is not None:
        members = tuple(_build(Member, m, assignments=tuple(
            (str(t), int(p)) for t, p in m.get("assignments") or ())) for m in members)
    group = _build(GroupLag, doc, status=Status(doc["status"]), partitions=parts,
                   members=members)
    alerts = book_from_dict({"format": 2, "alerts": doc.get("alerts") or []}).states
    provenance = Provenance(float(doc["taken_at"]), _printable(str(doc["published_by"])),
                            float(doc.get("interval") or 10.0), doc.get("refresh_seconds"),
                            alerts)
    return group, provenance


# ---------------------------------------------------------------- publishing


def ensure_topic(cluster: ClusterConfig, topic: str, partitions: int,
                 config: Mapping[str, str] | None = None, timeout: float = 10.0) -> int:
    """Create `topic` if missing (with `config`); its partition count either way."""
    client = kafka.admin(cluster)
    try:
        # every topic: a metadata request naming one auto-creates it on some brokers
        meta = client.list_topics(timeout=timeout)
        found = meta.topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return len(found.partitions)
        future = client.create_topics([NewTopic(topic, partitions, 1, config=dict(config or {}))],
                                      operation_timeout=timeout,
                                      request_timeout=timeout)[topic]
        try:
            future.result(timeout=timeout + 5)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError)
                    and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
        _log.info("created topic %s (%d partitions, %s)", topic, partitions, config)
        return partitions
    except KafkaException as exc:
        raise kafka.translate(exc, f"creating topic {topic}") from None


class SnapshotPublisher:
    """Writes the groups a watcher owns, and tombstones for owned groups that went away."""

    def __init__(self, cluster: ClusterConfig, topic: str = DEFAULT_TOPIC, *,
                 interval: float = 10.0, published_by: str | None = None,
                 timeout: float = 10.0, client_overrides: Mapping[str, Any] | None = None
                 ) -> None:
        self.cluster = cluster
        self.topic = check_topic_name(topic)
        self.interval = interval
        self.published_by = published_by or publisher_id()
        self.timeout = timeout
        ensure_topic(cluster, self.topic, TOPIC_PARTITIONS, TOPIC_CONFIG, timeout)
        self._producer = kafka.producer(cluster, **{
            "client.id": "lagdeck-publisher", "linger.ms": 50, "compression.type": "lz4",
            "message.timeout.ms": int(timeout * 1000), **(client_overrides or {})})
        #: groups this publisher wrote and has not tombstoned or handed over
        self.published: set[str] = set()
        self._failed: list[str] = []

    def adopt(self, groups: Iterable[str]) -> None:
        """Groups someone published before (read from the topic): ours to tombstone if gone."""
        self.published.update(groups)

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._failed.append(err.str())

    def publish(self, snapshot: LagSnapshot, *, owns: Callable[[str], bool],
                alerts: Mapping[str, Iterable[AlertState]] | None = None,
                refresh_seconds: float | None = None, cluster: str | None = None,
                listed: Iterable[str] | None = None) -> tuple[int, int]:
        """One record per group of `snapshot`, a tombstone per owned group that is gone.

        A group is gone when it is owned, was published, and is neither in the
        snapshot nor in `listed` (the cluster's groups): groups handed to another
        watcher are only forgotten. A partial snapshot (errors) tombstones nothing.
        Returns (records, tombstones); raises when the broker did not take them.
        """
        alerts = alerts or {}
        present = {g.group for g in snapshot.groups}
        written = 0
        self._failed = []
        for g in snapshot.groups:
            value = encode(g, taken_at=snapshot.taken_at, published_by=self.published_by,
                           interval=self.interval, refresh_seconds=refresh_seconds,
                           alerts=alerts.get(g.group, ()), cluster=cluster)
            self._produce(g.group, value)
            written += 1
        still = present | set(listed or ())
        gone = [] if snapshot.errors else sorted(
            g for g in self.published if owns(g) and g not in still)
        for name in gone:
            self._produce(name, None)
        self.published = {g for g in self.published if owns(g)} | present
        self.published -= set(gone)
        left = self._producer.flush(self.timeout)
        if left or self._failed:
            why = self._failed[0] if self._failed else f"{left} record(s) still queued"
            raise KafkaOperationError(f"publishing snapshots to {self.topic}: {why}")
        return written, len(gone)

    def _produce(self, key: str, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(self.topic, key=key.encode("utf-8"), value=value,
                                       on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise kafka.translate(exc, f"publishing snapshots to {self.topic}") from None

    def close(self) -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            self._producer.flush(min(self.timeout, 2.0))


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class PublishedLag:
    """What the snapshot topic says now: a `LagSnapshot` plus where each group came from."""

    snapshot: LagSnapshot
    provenance: Mapping[str, Provenance] = field(default_factory=dict)
    topic: str = DEFAULT_TOPIC
    #: records that were not lagdeck snapshots (skipped)
    unreadable: int = 0
    #: False when the read stopped at its timeout before the end of the topic
    complete: bool = True

    def stale_groups(self, now: float | None = None) -> list[str]:
        return sorted(g for g, p in self.provenance.items() if p.stale(now))

    def publishers(self) -> list[str]:
        return sorted({p.published_by for p in self.provenance.values()})


class SnapshotReader:
    """Reads the snapshot topic: the first `read()` from the beginning, later ones on from
    where it stopped. Keeps the latest record per group (Tansu does not compact)."""

    def __init__(self, cluster: ClusterConfig, topic: str = DEFAULT_TOPIC, *,
                 timeout: float = 10.0, client_overrides: Mapping[str, Any] | None = None
                 ) -> None:
        self.cluster = cluster
        self.topic = check_topic_name(topic)
        self.timeout = timeout
        self._overrides = dict(client_overrides or {})
        self._consumer: Any = None
        self._partitions: list[int] = []
        #: latest raw value per group, and its decoded form once asked for
        self._raw: dict[str, bytes] = {}
        self._latest: dict[str, tuple[bytes, tuple[GroupLag, Provenance]]] = {}
        self._bad: set[str] = set()
        self._unreadable = 0
        self._lock = threading.Lock()

    def _client(self) -> Any:
        if self._consumer is None:
            # a group.id is mandatory in the Python client; nothing here uses it: no
            # subscribe, no commit, offsets given explicitly (librdkafka only looks the
            # coordinator up once, FindCoordinator, and never talks to it about the group)
            self._consumer = kafka.consumer(self.cluster, **{
                "group.id": "lagdeck-snapshot-viewer", "client.id": "lagdeck-snapshot-viewer",
                "enable.partition.eof": True, "fetch.wait.max.ms": 50,
                **self._overrides})
        return self._consumer

    def poll(self, timeout: float = 0.0) -> None:
        """Serve callbacks (`stats_cb` overrides) between reads."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.poll(timeout)

    def _assign_new_partitions(self, consumer: Any) -> None:
        try:
            # the first look lists every topic: naming a missing one may auto-create it
            meta = consumer.list_topics(topic=self.topic if self._partitions else None,
                                        timeout=self.timeout)
        except KafkaException as exc:
            raise kafka.translate(exc, f"reading snapshots from {self.topic}") from None
        found = meta.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            raise NotFoundError(f"snapshot topic {self.topic!r} does not exist (is a "
                                "`lagdeck watch --publish` running against this cluster?)")
        new = sorted(set(found.partitions) - set(self._partitions))
        if new:
            consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                                         for p in new])
            self._partitions += new

    def read(self, select: Callable[[str], bool] | None = None) -> PublishedLag:
        """Everything published up to now (the end offsets when the read started);
        `select` keeps only the groups it accepts (and decodes only those)."""
        with self._lock:
            consumer = self._client()
            self._assign_new_partitions(consumer)
            assigned = [TopicPartition(self.topic, p) for p in self._partitions]
            # fetching only while reading: between reads a viewer costs the broker nothing
            consumer.resume(assigned)
            started = time.time()
            ends: dict[int, int] = {}
            for p in self._partitions:
                try:
                    _low, high = consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=self.timeout, cached=False)
                except KafkaException as exc:
                    raise kafka.translate(exc, f"reading snapshots from {self.topic}") \
                        from None
                ends[p] = high
            positions = {tp.partition: tp.offset for tp in consumer.position(
                [TopicPartition(self.topic, p) for p in self._partitions])}
            # at the end offset already (nothing new): no EOF event will come
            waiting = {p for p in self._partitions if positions.get(p, -1) < ends[p]
                       or positions.get(p, -1) < 0}
            waiting = {p for p in waiting if ends[p] > 0}
            deadline = time.monotonic() + self.timeout
            while waiting and time.monotonic() < deadline:
                for msg in consumer.consume(10000, timeout=0.1):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            waiting.discard(msg.partition())
                        else:
                            _log.warning("snapshot read: %s", err)
                        continue
                    self._take(msg.key(), msg.value())
            consumer.pause(assigned)
            # not at the end yet (a long uncompacted topic): what was read counts, and the
            # next read goes on from there
            behind = sorted(waiting)
            latest = self._decoded(select)
            unreadable = self._unreadable + len(self._bad)
        groups = tuple(sorted((g for g, _ in latest.values()), key=lambda g: g.group))
        taken = max((p.snapshot_at for _, p in latest.values()), default=started)
        errors: tuple[str, ...] = ()
        if unreadable:
            errors = (f"{unreadable} record(s) on {self.topic} are not lagdeck snapshots "
                      "(skipped)",)
        if behind:
            errors += (f"still reading {self.topic} (partitions {behind} not at their end "
                       f"after {self.timeout:g}s): some figures may be older than published",)
        snapshot = LagSnapshot(taken_at=taken, groups=groups, errors=errors,
                               groups_on_cluster=len(groups))
        return PublishedLag(snapshot, {g: p for g, (_, p) in latest.items()}, self.topic,
                            unreadable, complete=not behind)

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        """Keep the latest raw record per group; decoding waits until a group is asked for
        (a watcher taking over reads thousands of records and needs a few groups)."""
        if key is None:
            self._unreadable += 1
            return
        name = key.decode("utf-8", errors="replace")
        if value is None:
            self._raw.pop(name, None)  # tombstone: the group is gone
            self._bad.discard(name)
            self._latest.pop(name, None)
            return
        # one key lives in one partition: the later record is the newer snapshot
        self._raw[name] = value

    def _decoded(self, select: Callable[[str], bool] | None) -> dict[str, tuple[GroupLag,
                                                                               Provenance]]:
        out: dict[str, tuple[GroupLag, Provenance]] = {}
        for name, value in self._raw.items():
            if select is not None and not select(name):
                continue
            cached = self._latest.get(name)
            if cached is not None and cached[0] is value:
                out[name] = cached[1]
                continue
            try:
                decoded = decode(value)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                _log.warning("snapshot of %r unreadable: %s", name, exc)
                self._bad.add(name)
                continue
            self._bad.discard(name)
            self._latest[name] = (value, decoded)
            out[name] = decoded
        return out

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                with contextlib.suppress(KafkaException, RuntimeError):
                    self._consumer.close()
                self._consumer = None


def read_snapshots(cluster: ClusterConfig, topic: str = DEFAULT_TOPIC, *,
                   timeout: float = 10.0) -> PublishedLag:
    """One read with a throw-away reader (`lagdeck lag --from-snapshots`)."""
    reader = SnapshotReader(cluster, topic, timeout=timeout)
    try:
        return reader.read()
    finally:
        reader.close()


def snapshots_setting(settings_data: Mapping[str, Any], profile: str | None) -> str | None:
    """`snapshots = "TOPIC"` (or `true` for the default topic) in the chosen profile."""
    if profile is None:
        return None
    profiles = settings_data.get("profiles")
    section = profiles.get(profile) if isinstance(profiles, Mapping) else None
    if not isinstance(section, Mapping) or "snapshots" not in section:
        return None
    value = section["snapshots"]
    if value is True:
        return DEFAULT_TOPIC
    if value is False:
        return None
    if not isinstance(value, str):
        raise UsageError(f"profile {profile!r}: snapshots must be a topic name or true, "
                         f"got {value!r}")
    return check_topic_name(value)
