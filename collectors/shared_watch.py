"""One watcher's part in a fleet: its share of the groups, their alerts, their snapshots.

`lagdeck watch --publish` runs one of these beside its collector. Each round:
`begin_round()` freezes this watcher's share (the coordination partitions it
holds now) as a predicate the collector filters by; the alert loop
(`collectors.alerts.loop`, with `collectors.alerts.book.split_book`) takes the
alert states of the owned groups out of the book, importing from the
snapshot topic the states of groups this watcher has just taken over (the
previous owner published them with its last snapshot), so a handover neither
re-fires an alert nor forgets to resolve one; `publish()` writes the owned
groups' snapshots with their alert states, and tombstones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from collectors.alerts.state import AlertState
from collectors.config import ClusterConfig
from collectors.logs import get_logger
from collectors.snapshot_topic import PublishedLag, SnapshotPublisher, SnapshotReader
from collectors.snapshots import LagSnapshot
from collectors.watch_group import COORDINATION_PARTITIONS, WatchGroup, group_partition

_log = get_logger("watch.shared")


def owner_predicate(owned: frozenset[int], partitions: int) -> Callable[[str], bool]:
    return lambda group: group_partition(group, partitions) in owned


class SharedWatch:
    """Membership, publishing and handover for one `watch --publish` process."""

    def __init__(self, cluster: ClusterConfig, cluster_id: str, topic: str, *,
                 interval: float, session_timeout: float = 10.0, timeout: float = 10.0,
                 partitions: int = COORDINATION_PARTITIONS,
                 client_overrides: Mapping[str, Any] | None = None) -> None:
        self.publisher = SnapshotPublisher(cluster, topic, interval=interval,
                                           timeout=timeout, client_overrides=client_overrides)
        self.reader = SnapshotReader(cluster, topic, timeout=timeout)
        try:
            self.group = WatchGroup(cluster, cluster_id, snapshot_topic=topic,
                                    partitions=partitions, session_timeout=session_timeout,
                                    timeout=timeout)
        except BaseException:
            self.publisher.close()
            self.reader.close()
            raise
        self.cluster_id = cluster_id
        self._held: frozenset[int] = frozenset()
        self._round: frozenset[int] = frozenset()
        self._caught_up = True

    @property
    def published_by(self) -> str:
        return self.publisher.published_by

    def wait_assigned(self, timeout: float, stop: threading.Event | None = None) -> bool:
        return self.group.wait_assigned(timeout, stop)

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep between rounds, but start the next one at once when the share changed:
        groups taken over from a dead watcher are published without waiting an interval."""
        generation = self.group.generation
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if self.group.generation != generation and self.group.owned != self._round:
                return
            stop.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def begin_round(self) -> Callable[[str], bool]:
        """This round's share, frozen: ownership may change meanwhile, the round may not."""
        self._round = self.group.owned
        return owner_predicate(self._round, self.group.partitions)

    def taken_over(self) -> Mapping[str, tuple[float, tuple[AlertState, ...]]]:
        """Alert states published for the groups of partitions gained since last round."""
        gained = self._round - self._held
        if not gained:
            return {}
        owns = owner_predicate(gained, self.group.partitions)
        published: PublishedLag = self.reader.read(owns)
        self._caught_up = published.complete
        out = {g: (p.snapshot_at, p.alerts) for g, p in published.provenance.items()
               if owns(g)}
        # groups published before (by anyone) are ours to tombstone if they are gone
        self.publisher.adopt(out)
        _log.info("took over partitions %s: %d published groups", sorted(gained), len(out))
        return out

    def publish(self, snapshot: LagSnapshot, states: Iterable[AlertState], *,
                refresh_seconds: float | None) -> tuple[int, int]:
        by_group: dict[str, list[AlertState]] = {}
        for s in states:
            by_group.setdefault(s.key.group, []).append(s)
        owns = owner_predicate(self._round, self.group.partitions)
        result = self.publisher.publish(snapshot, owns=owns, alerts=by_group,
                                        refresh_seconds=refresh_seconds,
                                        cluster=self.cluster_id)
        if self._caught_up:  # else: import again next round, from where the read got to
            self._held = self._round
        return result

    def close(self) -> None:
        self.group.close()
        self.publisher.close()
        self.reader.close()
