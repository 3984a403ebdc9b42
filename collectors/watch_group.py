"""Several `lagdeck watch --publish` processes share the groups through a consumer group.

Kafka's own group protocol is the distributed engine: every watcher of one
cluster joins the consumer group `lagdeck-watch.<cluster id>` on a small
coordination topic (`_lagdeck.watch`, `COORDINATION_PARTITIONS` partitions,
no records needed). Consumer group `g` belongs to partition
`crc32(g) mod N` (a stable hash: Python's `hash()` is salted per process);
a watcher polls, alerts on and publishes only the groups of the partitions it
is assigned. When a watcher dies, the broker notices after the session
timeout and the rebalance hands its partitions to the others; a new watcher
takes some on joining.

The membership consumer is polled on its own thread, so a slow lag refresh
never makes the watcher miss its heartbeats or its poll interval.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException

from collectors import kafka
from collectors.config import ClusterConfig
from collectors.logs import get_logger
from collectors.snapshot_topic import DEFAULT_TOPIC, check_topic_name, ensure_topic

COORDINATION_TOPIC = "_lagdeck.watch"
COORDINATION_PARTITIONS = 12
GROUP_PREFIX = "lagdeck-watch."

_log = get_logger("watch.group")


def group_partition(group: str, partitions: int) -> int:
    """The coordination partition that owns consumer group `group` (stable across hosts)."""
    return zlib.crc32(group.encode("utf-8")) % partitions


def watch_group_id(cluster_id: str, snapshot_topic: str | None = None) -> str:
    """`lagdeck-watch.<cluster>`; watchers publishing to another topic than the default
    are another fleet (each publishes every group to its own topic)."""
    name = GROUP_PREFIX + re.sub(r"[^A-Za-z0-9._-]+", "_", cluster_id)
    if snapshot_topic is not None and snapshot_topic != DEFAULT_TOPIC:
        name += "." + snapshot_topic
    return name


class WatchGroup:
    """This watcher's share of the groups, kept current by the consumer group protocol."""

    def __init__(self, cluster: ClusterConfig, cluster_id: str, *,
                 snapshot_topic: str | None = None, topic: str = COORDINATION_TOPIC,
                 partitions: int = COORDINATION_PARTITIONS,
                 session_timeout: float = 10.0, timeout: float = 10.0,
                 client_overrides: Mapping[str, Any] | None = None) -> None:
        self.topic = check_topic_name(topic)
        self.group_id = watch_group_id(cluster_id, snapshot_topic)
        self.partitions = ensure_topic(cluster, self.topic, partitions, timeout=timeout)
        self.session_timeout = session_timeout
        session_ms = int(session_timeout * 1000)
        self._consumer = kafka.consumer(cluster, group=self.group_id, **{
            "client.id": "lagdeck-watch",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(100, session_ms // 4),
            "partition.assignment.strategy": "roundrobin",
            **(client_overrides or {})})
        self._owned: frozenset[int] = frozenset()
        self._generation = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self._thread = threading.Thread(target=self._run, name="lagdeck-watch-group",
                                        daemon=True)
        self._thread.start()

    # -- membership (on the poll thread) -------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        owned = frozenset(tp.partition for tp in partitions if tp.topic == self.topic)
        with self._changed:
            self._owned = owned
            self._generation += 1
            self._changed.notify_all()
        _log.info("watch group %s: assigned partitions %s", self.group_id, sorted(owned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        gone = {tp.partition for tp in partitions if tp.topic == self.topic}
        with self._changed:
            self._owned = frozenset(self._owned - gone)
            self._generation += 1
            self._changed.notify_all()
        _log.info("watch group %s: revoked partitions %s", self.group_id, sorted(gone))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consumer.poll(0.2)  # records are never written there: membership only
            except (KafkaException, RuntimeError) as exc:
                _log.warning("watch group poll: %s", kafka.describe(exc))
                self._stop.wait(1.0)
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()  # leave the group: the others take over at once

    # -- what the watch loop asks ----------------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        with self._changed:
            return self._owned

    @property
    def generation(self) -> int:
        with self._changed:
            return self._generation

    def owns(self, group: str) -> bool:
        return group_partition(group, self.partitions) in self.owned

    def wait_assigned(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait for the first assignment (the broker holds a join for a while); `stop`
        ends the wait early (SIGTERM while joining)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._owned and time.monotonic() < deadline:
                if stop is not None and stop.is_set():
                    break
                self._changed.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            return bool(self._owned)

    def close(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
