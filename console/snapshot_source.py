"""The console's lag from the snapshot topic (`lagdeck --from-snapshots`), not from polling.

Dead letters, timelines and replay still talk to the cluster; only lag (the
expensive part, shared by everyone) comes from the publishers. Each new
snapshot of a group goes into the local lag history, so a group's trend is
the snapshot history this viewer has seen plus what it polled itself before.
"""

from __future__ import annotations

from typing import Any

from collectors.config import ClusterConfig, Settings
from collectors.history import GroupTotal, LagHistory
from collectors.lag import cluster_key
from collectors.snapshot_topic import SnapshotReader
from console.data import TREND_POINTS, KafkaSource, LagView
from console.snapshot_view import fresh_only


class SnapshotSource(KafkaSource):
    def __init__(self, cluster: ClusterConfig, settings: Settings | None = None, *,
                 topic: str, **kwargs: Any) -> None:
        super().__init__(cluster, settings, **kwargs)
        self.topic = topic
        self._reader: SnapshotReader | None = None
        #: the snapshot time of each group last put into the history
        self._seen: dict[str, float] = {}

    @property
    def label(self) -> str:
        return f"{super().label} · snapshots {self.topic}"

    def poll_lag(self) -> LagView:
        with self._lock:
            if self._reader is None:
                self._reader = SnapshotReader(self.cluster, self.topic, timeout=self.timeout)
            try:
                published = self._reader.read()
            except BaseException:
                reader, self._reader = self._reader, None
                reader.close()
                raise
            if self._history is None:
                self._history = LagHistory()
            key = cluster_key(self.cluster)
            fresh: dict[float, list[GroupTotal]] = {}
            for g in published.snapshot.groups:
                at = published.provenance[g.group].snapshot_at
                if self._seen.get(g.group) != at and g.error is None:
                    self._seen[g.group] = at
                    fresh.setdefault(at, []).append(
                        GroupTotal(g.group, g.total_lag, g.status.value))
            for at, totals in sorted(fresh.items()):
                self._history.record(key, at, groups=totals)
            trends = {g.group: tuple(int(lag) for _, lag in self._history.group_trend(
                g.group, limit=TREND_POINTS, cluster=key)) for g in published.snapshot.groups}
        # stale groups are not judged as live: their alerts are held, not resolved
        alerts = self.alerts.update(fresh_only(published))
        return LagView(published.snapshot, trends, alerts,
                       provenance=published.provenance, snapshot_topic=self.topic)

    def close(self) -> None:
        super().close()
        if self._lock.acquire(timeout=0.5):
            try:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            finally:
                self._lock.release()
