"""Is the cluster there at all? A cheap liveness probe, and the backoff to retry it.

A refresh that fails or takes long does not say why: the cluster may be slow
(a big consumer-group listing, a busy broker) or gone (killed, partitioned,
hung). The probe tells the two apart by asking for the least the protocol
offers, cluster metadata without topics (`DescribeCluster`, a Metadata
request on older brokers), with a short deadline of its own: an answer
within it means "reachable, maybe slow"; none means "unreachable".

A failed probe drops its client: librdkafka backs off between reconnects (up
to `reconnect.backoff.max.ms`), while a fresh client tries at once, so the
first probe after the broker answers again succeeds.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException

from collectors import kafka
from collectors.config import ClusterConfig, Settings
from collectors.durations import duration_seconds
from collectors.errors import ConfigError
from collectors.logs import get_logger

_log = get_logger("liveness")

#: Seconds a probe waits for an answer by default.
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Liveness:
    """One probe's verdict."""

    reachable: bool
    #: seconds the answer took (None when there was none)
    latency_s: float | None
    #: why not, in one line without the address ("" when reachable)
    detail: str
    #: wall-clock time of the probe
    checked_at: float


@dataclass(frozen=True)
class OutageSettings:
    """The `[outage]` section of the config file.

    ```toml
    [outage]
    show_after = "5s"     # the console shows an outage at most this long after it begins
    reconnect_max = "4s"  # backoff cap between probes while the cluster is away
    ```
    The probe runs every `probe_interval` seconds while the cluster answers,
    with a deadline that keeps "noticed" within `show_after`.
    """

    show_after: float = 5.0
    reconnect_max: float = 4.0

    KEYS = ("show_after", "reconnect_max")

    @property
    def probe_interval(self) -> float:
        return max(0.2, min(1.0, self.show_after / 5))

    @property
    def probe_timeout(self) -> float:
        """What is left of `show_after` after one interval, with a margin for the UI."""
        return max(0.2, min(3.0, (self.show_after - self.probe_interval) * 0.75))

    @classmethod
    def from_settings(cls, settings: Settings | None) -> OutageSettings:
        if settings is None:
            return cls()
        section, where = settings.known_section("outage", cls.KEYS)
        values: dict[str, float] = {}
        for key in cls.KEYS:
            if key not in section:
                continue
            raw = section[key]
            try:
                value = (float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool)
                         else duration_seconds(str(raw), units="ms s m"))
            except ValueError:
                raise ConfigError(f"{where}: {key} must be a duration such as \"5s\", "
                                  f"got {raw!r}") from None
            if not 0.5 <= value <= 600:
                raise ConfigError(f"{where}: {key} must be from 500ms to 10m, got {raw!r}")
            values[key] = value
        return cls(**values)


def backoff(attempt: int, *, base: float = 0.5, cap: float = 4.0) -> float:
    """Capped exponential backoff: `base * 2**(attempt-1)`, never above `cap`.

    The cap bounds recovery: the cluster is noticed at most `cap` (plus one
    probe) after it answers again.
    """
    if attempt <= 0:
        return base
    return min(cap, base * 2.0 ** min(attempt - 1, 30))


class LivenessProbe:
    """Probes one cluster; thread-safe, keeps one admin client while it answers."""

    def __init__(self, cluster: ClusterConfig, timeout: float = PROBE_TIMEOUT) -> None:
        if timeout <= 0:
            raise ValueError(f"probe timeout must be positive, got {timeout:g}")
        self.cluster = cluster
        self.timeout = float(timeout)
        self._client: Any = None
        self._lock = threading.Lock()

    def check(self) -> Liveness:
        """Ask once; never raises for an unreachable cluster (that is the answer)."""
        with self._lock:
            started = time.monotonic()
            now = time.time()
            where = self.cluster.bootstrap_servers or "the cluster"
            try:
                if self._client is None:
                    self._client = kafka.admin(self.cluster, **{
                        "client.id": "lagdeck-probe",
                        "socket.connection.setup.timeout.ms": max(1000,
                                                                  int(self.timeout * 1000)),
                    })
                future = self._client.describe_cluster(request_timeout=self.timeout)
                future.result(timeout=self.timeout + 0.5)
            except (KafkaException, concurrent.futures.TimeoutError) as exc:
                self._drop()
                detail = (f"no answer within {self.timeout:g}s"
                          if isinstance(exc, concurrent.futures.TimeoutError)
                          or _timed_out(exc) else kafka.describe(exc))
                _log.info("probe of %s failed: %s", where, detail)
                return Liveness(False, None, detail, now)
            return Liveness(True, time.monotonic() - started, "", now)

    def _drop(self) -> None:
        self._client = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> LivenessProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timed_out(exc: BaseException) -> bool:
    with contextlib.suppress(Exception):
        return "Timed out" in kafka.describe(exc) or "timed out" in kafka.describe(exc)
    return False


def probe(cluster: ClusterConfig, timeout: float = PROBE_TIMEOUT) -> Liveness:
    """One probe with a throw-away client (the headless commands)."""
    with LivenessProbe(cluster, timeout) as p:
        return p.check()
