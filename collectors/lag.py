"""Consumer lag for every group: messages, seconds, Burrow status, in one batched refresh.

One refresh asks the cluster as little as it can, and everything in flight
together: list groups; describe them and fetch every group's committed
offsets at once (the Python client takes one group per OffsetFetch call, so
the futures are all issued before any is awaited); metadata; then the end
offsets of every partition in one `list_offsets` call. The naive loop a user
would write (per group: committed offsets, then watermarks) pays a round trip
per group and per partition instead; `bench/lag_refresh.py` measures both.

Lag in seconds is exact (the record at the committed offset, read within a
per-refresh time budget and cached: a record's timestamp never changes) or
estimated from the history (`collectors.timelag`). Status comes from Burrow's
rules over the history window (`collectors.status`). Nothing a single group
or partition does (no commit, deleted topic, unknown partition, an error)
fails the refresh: it is reported on that group or partition.

The collector keeps its clients open between refreshes, so the TUI and
`lagdeck watch` can call `refresh()` in a loop; `close()` releases them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from collectors import kafka, timelag
from collectors.batched_groups import (
    DEFAULT_CHUNK,
    BatchedGroupReader,
    BatchedUnavailable,
    GroupRead,
)
from collectors.config import ClusterConfig, Settings, require_bootstrap
from collectors.durations import parse_duration
from collectors.errors import BrokerUnavailable, ConfigError, UsageError
from collectors.gcpause import gc_paused
from collectors.history import GroupTotal, LagHistory, PartitionSample
from collectors.logs import get_logger
from collectors.snapshots import (
    SEVERITY,
    GroupLag,
    LagSnapshot,
    Member,
    PartitionLag,
    Status,
    group_lag,
    partition_lag,
)
from collectors.status import (
    Sample,
    StatusPolicy,
    allowed_lag_for,
    evaluate_current,
    evaluate_group,
    evaluate_window,
)
from collectors.timelag import Point, ReadRun, TimeLag

_log = get_logger("lag")

#: group states in which the group has live members (it commits, or it holds its offsets)
ACTIVE_STATES = frozenset({"STABLE", "PREPARING_REBALANCING", "COMPLETING_REBALANCING"})
#: samples handed to the status rules: commit times look back past the window (Burrow
#: judges the last N commits, and a stopped group's last commit can be many samples old)
LOOKBACK = 32
MAX_WINDOW = 30
#: a group partition seen this recently whose topic is gone is shown as "topic deleted"
VANISHED_HORIZON = 3600.0
TOPIC_DELETED = "topic deleted"
PARTITION_UNKNOWN = "partition does not exist"
_TS_CACHE = 50_000
#: seconds before an offset whose record could not be read in time is tried again
UNREADABLE_RETRY = 60.0
#: seconds before a batched reader that could not connect is tried again
BATCHED_RETRY = 60.0

TP = tuple[str, int]


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class LagSettings:
    """The `[lag]` section of the config file.

    ```toml
    [lag]
    window = 10               # commits per partition the status is judged over (<= 30)
    min_samples = 2           # fewer: status UNKNOWN, "status needs 2 samples"
    grace = "10s"             # STOP/STALL need at least this much evidence
    exact_budget = "500ms"    # time per refresh for exact lag-in-seconds reads
    exact_max_reads = 1000    # records read per refresh at most
    history_retention = "7d"  # lag history kept this long
    offsets_via = "auto"      # "auto": batched OffsetFetch v8 when possible; "per-group"

    [lag.allowed_lag]         # regex on the whole group name -> messages tolerated
    "batch-.*" = 5000
    "notification-service" = 100
    ```
    The first `allowed_lag` entry whose regex matches the whole group name wins.
    """

    policy: StatusPolicy = field(default_factory=StatusPolicy)
    allowed_lag: tuple[tuple[re.Pattern[str], int], ...] = ()
    exact_budget_seconds: float = 0.5
    exact_max_reads: int = 1000
    history_retention_seconds: float = 7 * 86400.0
    #: "auto" (batched when the broker and settings allow) or "per-group" (docs/lag.md)
    offsets_via: str = "auto"

    KEYS = ("window", "min_samples", "grace", "exact_budget", "exact_max_reads",
            "history_retention", "allowed_lag", "offsets_via")

    def allowed_lag_for(self, group: str) -> int:
        return allowed_lag_for(group, self.allowed_lag)

    @classmethod
    def from_settings(cls, settings: Settings | None) -> LagSettings:
        if settings is None:
            return cls()
        section, where = settings.known_section("lag", cls.KEYS)

        def integer(key: str, default: int, minimum: int, maximum: int = 10**9) -> int:
            value = section.get(key, default)
            if (isinstance(value, bool) or not isinstance(value, int)
                    or not minimum <= value <= maximum):
                raise ConfigError(f"{where}: {key} must be an integer from {minimum} to "
                                  f"{maximum}, got {value!r}")
            return value

        def duration(key: str, default: float) -> float:
            if key not in section:
                return default
            try:
                return parse_duration(section[key])
            except ValueError as exc:
                raise ConfigError(f"{where}: {key}: {exc}") from None

        allowed_raw = section.get("allowed_lag", {})
        if not isinstance(allowed_raw, Mapping):
            raise ConfigError(f"{where}: allowed_lag must be a table of \"group regex\" = "
                              "messages")
        allowed: list[tuple[re.Pattern[str], int]] = []
        for pattern, value in allowed_raw.items():
            try:
                regex = re.compile(str(pattern))
            except re.error as exc:
                raise ConfigError(f"{where}.allowed_lag: invalid regex {pattern!r}: {exc}") \
                    from None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.allowed_lag: {pattern!r} must be a number of "
                                  f"messages >= 0, got {value!r}")
            allowed.append((regex, value))
        offsets_via = section.get("offsets_via", "auto")
        if offsets_via not in ("auto", "per-group"):
            raise ConfigError(f"{where}: offsets_via must be \"auto\" or \"per-group\", got "
                              f"{offsets_via!r}")
        window = integer("window", StatusPolicy.window, 1, MAX_WINDOW)
        policy = StatusPolicy(
            window=window,
            min_samples=min(window, integer("min_samples", StatusPolicy.min_samples, 1)),
            grace_seconds=duration("grace", StatusPolicy.grace_seconds),
        )
        return cls(
            policy=policy,
            allowed_lag=tuple(allowed),
            exact_budget_seconds=duration("exact_budget", cls.exact_budget_seconds),
            exact_max_reads=integer("exact_max_reads", cls.exact_max_reads, 0),
            history_retention_seconds=duration("history_retention",
                                               cls.history_retention_seconds),
            offsets_via=offsets_via,
        )


def cluster_key(cluster: ClusterConfig) -> str:
    """How the history names a cluster: its bootstrap servers, normalised."""
    servers = (s.strip().lower() for s in cluster.bootstrap_servers.split(","))
    return ",".join(sorted(s for s in servers if s))


def compile_group_regex(pattern: str | None) -> re.Pattern[str] | None:
    """`--group` is searched like grep (anchor with ^...$); a bad regex is a usage error."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"invalid group regex {pattern!r}: {exc}") from None


# ---------------------------------------------------------------- raw broker view


@dataclass(frozen=True)
class GroupData:
    """What the broker said about one group, before any evaluation."""

    group: str
    state: str
    members: tuple[Member, ...] | None
    #: committed offset per partition; None = assigned but never committed
    committed: Mapping[TP, int | None]
    #: per-partition errors from OffsetFetch
    partition_errors: Mapping[TP, str] = field(default_factory=dict)
    error: str | None = None
    #: partitions known only from the history: their topic is gone
    vanished: Mapping[TP, int | None] = field(default_factory=dict)

    @property
    def active(self) -> bool | None:
        if self.members:
            return True
        if self.state in ACTIVE_STATES:
            return True
        if self.state in ("EMPTY", "DEAD"):
            return False
        return None


@dataclass(frozen=True)
class BrokerView:
    taken_at: float
    groups: tuple[GroupData, ...]
    #: partition count per existing topic
    topics: Mapping[str, int]
    ends: Mapping[TP, int]
    end_errors: Mapping[TP, str]
    listed: int | None
    errors: tuple[str, ...] = ()
    #: "batched" or "per-group", and why (see `LagCollector._read_groups`)
    offsets_via: str = "per-group"
    offsets_via_reason: str = ""


@dataclass
class _Judged:
    """Passes 1 and 2 of the evaluation for some groups, as `LagCollector._judge` left them:
    flat lists in the groups' order, `bounds[i]` where group i's samples start."""

    groups: list[str]
    bounds: list[int]
    samples: list[PartitionSample]
    #: per sample: (topic, partition, committed) when the group is behind there
    ats: list[tuple[str, int, int] | None]
    #: per group: every partition of it has a sample (its end offset is known)
    whole: list[bool]
    verdicts: list[tuple[Status, str] | None]
    #: `[lag.allowed_lag]` of each group (matched once, in `_judge`)
    allowed: dict[str, int]

    def columns(self, groups: Sequence[GroupData]) -> tuple[
            list[PartitionSample], list[tuple[str, int, int] | None], list[bool],
            list[tuple[Status, str] | None]]:
        """samples, ats, whole, verdicts in the order of `groups` (each judged)."""
        order = [d.group for d in groups]
        if order == self.groups:
            return self.samples, self.ats, self.whole, self.verdicts
        at = {g: i for i, g in enumerate(self.groups)}
        cut = self.bounds
        samples: list[PartitionSample] = []
        ats: list[tuple[str, int, int] | None] = []
        verdicts: list[tuple[Status, str] | None] = []
        whole: list[bool] = []
        for g in order:
            i = at[g]
            a, b = cut[i], cut[i + 1]
            samples += self.samples[a:b]
            ats += self.ats[a:b]
            verdicts += self.verdicts[a:b]
            whole.append(self.whole[i])
        return samples, ats, whole, verdicts

    @classmethod
    def joined(cls, parts: Sequence[_Judged]) -> _Judged:
        if len(parts) == 1:
            return parts[0]
        out = cls([], [0], [], [], [], [], {})
        for part in parts:
            shift = len(out.samples)
            out.groups += part.groups
            out.bounds += [b + shift for b in part.bounds[1:]]
            out.samples += part.samples
            out.ats += part.ats
            out.whole += part.whole
            out.verdicts += part.verdicts
            out.allowed.update(part.allowed)
        return out


# ---------------------------------------------------------------- the collector


class LagCollector:
    """Refreshes lag for every group of one cluster; reusable, keeps its clients open."""

    #: groups per batched request (one part of the read, judged as it lands)
    batched_chunk: int = DEFAULT_CHUNK

    def __init__(
        self,
        cluster: ClusterConfig,
        history: LagHistory | None = None,
        *,
        timeout: float = 10.0,
        settings: Settings | None = None,
        lag_settings: LagSettings | None = None,
        client_overrides: Mapping[str, Any] | None = None,
        connections: int = 4,
        offsets_via: str | None = None,
        background_writes: bool = False,
    ) -> None:
        """`background_writes`: a refresh's samples are written to the history in a
        thread while statuses are judged (`LagHistory.record(background=True)`);
        whoever owns the history closes it, which waits for the write."""
        self.cluster = cluster
        self._background_writes = bool(background_writes)
        self.timeout = float(timeout)
        self.options = lag_settings or LagSettings.from_settings(settings)
        self._own_history = history is None
        self.history = history if history is not None else LagHistory.in_memory(
            retention_seconds=self.options.history_retention_seconds
        )
        self.key = cluster_key(cluster)
        self._overrides = dict(client_overrides or {})
        #: per-group requests are spread over this many admin clients (connections):
        #: librdkafka runs one FindCoordinator + OffsetFetch chain per group, and a
        #: broker answers one connection's requests in order
        self.connections = max(1, int(connections))
        self._admins: list[Any] = []
        self._reader: Consumer | None = None
        self._lock = threading.Lock()
        self._timestamps: OrderedDict[tuple[str, int, int], tuple[int, float]] = OrderedDict()
        self._last_end: dict[TP, int] = {}
        #: offsets a read could not resolve in time, and when: not retried for a while, so
        #: one missing record does not spend the whole budget of every refresh
        self._unreadable: dict[tuple[str, int, int], float] = {}
        #: counts of the last refresh, for `-v` and the bench
        self.last_stats: dict[str, float] = {}
        offsets_via = offsets_via or self.options.offsets_via
        if offsets_via not in ("auto", "per-group"):
            raise ValueError(f"offsets_via must be 'auto' or 'per-group', got {offsets_via!r}")
        #: the batched kafka-python reader (docs/lag.md); None once it is known unusable
        self._batched: BatchedGroupReader | None = None
        self._batched_reason: str | None = (
            "per-group asked for ([lag] offsets_via)" if offsets_via == "per-group" else None)
        #: how the last refresh read committed offsets ("batched" / "per-group") and why
        self.offsets_via = "per-group"
        self.offsets_via_reason = ""
        #: requests of the last refresh sent by the batched reader, by API name
        self.batched_requests: dict[str, int] = {}
        self._groups_read = 0
        self._batched_retry_at: float | None = None
        self._opener: threading.Thread | None = None
        self._closed = False
        #: only groups this accepts are read (a watcher's share, `collectors.watch_group`)
        self.group_filter: Callable[[str], bool] | None = None

    # ---------------------------------------------------------- lifecycle

    def __enter__(self) -> LagCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._reader is not None:
                with contextlib.suppress(KafkaException, RuntimeError):
                    self._reader.close()
                self._reader = None
            self._admins = []
            if self._batched is not None:
                self._batched.close()
                self._batched = None
            if self._own_history:
                self.history.close()

    def poll(self, timeout: float = 0.0) -> None:
        """Serve the clients' librdkafka callbacks (errors to the log, `stats_cb` overrides)."""
        with self._lock:
            for admin in self._admins:
                admin.poll(timeout)
            if self._reader is not None:
                self._reader.poll(0)

    def check_reachable(self, timeout: float) -> None:
        """`collectors.kafka.check_reachable` on this collector's own admin client: the
        same one-line failure, without starting (and destroying) a client of its own
        before the refresh (~50 ms), and the refresh finds the connection made."""
        bootstrap = require_bootstrap(self.cluster)
        self._open_batched_soon()  # kafka-python's import and connection overlap this wait
        try:
            self._admin_pool()[0].list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"cannot reach Kafka at {bootstrap} within {timeout:g}s ({kafka.describe(exc)})"
            ) from None

    def _admin_pool(self, size: int = 1) -> list[Any]:
        """The first `size` admin clients; the per-group path spreads over all of them,
        the batched path (and listing, metadata, end offsets) needs only the first."""
        while len(self._admins) < min(size, self.connections):
            i = len(self._admins)
            self._admins.append(kafka.admin(self.cluster, **{"client.id": f"lagdeck-lag-{i}",
                                                             **self._overrides}))
        return self._admins

    def _reader_client(self):
        if self._reader is None:
            self._reader = kafka.consumer(
                self.cluster,
                **{
                    "isolation.level": "read_uncommitted",
                    "fetch.wait.max.ms": 10,
                    "queued.min.messages": 1000,
                    "client.id": "lagdeck-lag",
                    **self._overrides,
                },
            )
        return self._reader

    # ---------------------------------------------------------- refresh

    def refresh(self, group_regex: str | None = None) -> LagSnapshot:
        """One refresh of every group (matching `group_regex`, searched like grep)."""
        regex = compile_group_regex(group_regex)
        with self._lock:
            started = time.monotonic()
            view, early = self._fetch(regex, judge=True)
            fetched = time.monotonic()
            with gc_paused():
                snapshot = self._evaluate(view, early)
            for admin in self._admins:
                admin.poll(0)  # error_cb: broker trouble reaches the log
            self.last_stats.update(
                fetch_seconds=fetched - started,
                total_seconds=time.monotonic() - started,
                groups=len(snapshot.groups),
                partitions=sum(len(g.partitions) for g in snapshot.groups),
            )
            return snapshot

    def fetch(self, regex: re.Pattern[str] | None = None) -> BrokerView:
        """Everything one refresh asks the cluster, batched (see the module docstring)."""
        return self._fetch(regex, judge=False)[0]

    def _fetch(self, regex: re.Pattern[str] | None, *, judge: bool
               ) -> tuple[BrokerView, _Judged | None]:
        """`fetch`; with `judge`, the groups of the batched read are also judged (passes 1
        and 2 of the evaluation) part by part as the broker answers, each part with end
        offsets read right after its committed offsets (`_Parts`). At 10,000 groups the
        broker answers ten parts over ~1.3 s, during which this thread had nothing to do."""
        pool = self._admin_pool()
        admin = pool[0]
        t = self.timeout
        opener = self._open_batched_soon()
        try:
            listing_future = admin.list_consumer_groups(request_timeout=t)
            metadata = admin.list_topics(timeout=t)
            listing = listing_future.result(timeout=t + 5)
        except concurrent.futures.TimeoutError:
            raise BrokerUnavailable(
                f"listing consumer groups: no answer within {t:g}s from "
                f"{self.cluster.bootstrap_servers}"
            ) from None
        except KafkaException as exc:
            raise kafka.translate(exc, "listing consumer groups") from None
        topics = {name: len(tm.partitions) for name, tm in metadata.topics.items()
                  if tm.error is None or tm.partitions}
        errors = [f"listing groups: {kafka.describe(e)}" for e in listing.errors or ()]
        listed = sorted({g.group_id for g in listing.valid})
        wanted = [g for g in listed if (regex is None or regex.search(g))
                  and (self.group_filter is None or self.group_filter(g))]
        if opener is not None:
            opener.join()
            self._opener = None
        # the history's first read (Python work: ~0.3 s at 10,000 partitions) overlaps the
        # group read, which waits on the broker; started earlier, it took the GIL from
        # the opener thread (kafka-python's import and connection), which is on the path
        threading.Thread(target=self.history.last_seen, args=(self.key, time.time()),
                         name="lagdeck-history-load", daemon=True).start()
        parts = _Parts(self, topics) if judge and self._batched_reader() is not None else None
        read = parts.read(wanted) if parts is not None else self._read_groups(wanted)
        recent = parts.recent if parts is not None else self._recent()
        listed_set = set(listed)
        ghosts = sorted(g for g in recent if g not in listed_set
                        and (regex is None or regex.search(g))
                        and (self.group_filter is None or self.group_filter(g)))
        if ghosts:
            read += self._read_groups(ghosts, more=True)

        raw: list[GroupData] = []
        ghost_set = set(ghosts)
        gone = _gone(recent, topics)
        done = parts.done if parts is not None else {}
        for data in read:
            judged = done.get(data.group)
            if judged is not None:  # read, completed and judged while the read went on
                raw.append(judged)
                continue
            seen = recent.get(data.group, {})
            if data.group in ghost_set:
                ghost = _ghost(data, seen, topics)
                if ghost is None:
                    continue
                data = ghost
            elif seen and gone:
                data = _with_vanished(data, seen, topics)
            raw.append(data)

        rest = [d for d in raw if d.group not in done]
        failed_ends = parts.end_errors if parts is not None else {}
        ends, end_errors = self._end_offsets(
            [tp for tp in _valid_tps(rest, topics) if tp not in failed_ends])
        early = None
        if parts is not None:
            ends = {**parts.ends, **ends}
            end_errors = {**parts.end_errors, **end_errors}
            if rest:
                parts.judged.append(self._judge(rest, ends, time.time()))
            early = _Judged.joined(parts.judged)
        return BrokerView(
            taken_at=time.time(), groups=tuple(raw), topics=topics, ends=ends,
            end_errors=end_errors, listed=len(listed), errors=tuple(errors),
            offsets_via=self.offsets_via, offsets_via_reason=self.offsets_via_reason,
        ), early

    def _recent(self) -> dict[str, dict[TP, Sample]]:
        """Groups seen within VANISHED_HORIZON, with their partitions' newest samples:
        their topics may have been deleted since (Tansu drops their offsets)."""
        recent: dict[str, dict[TP, Sample]] = {}
        for (g, topic, partition), sample in self.history.last_seen(
                self.key, time.time() - VANISHED_HORIZON).items():
            recent.setdefault(g, {})[(topic, partition)] = sample
        return recent

    def _open_batched_soon(self) -> threading.Thread | None:
        """Open the batched reader in a thread (kafka-python's import and connection,
        ~0.15 s) while librdkafka connects and lists; the thread, until joined."""
        if self._opener is None and self._batched is None and self._batched_reason is None:
            self._opener = threading.Thread(target=self._batched_reader,
                                            name="lagdeck-batched-open", daemon=True)
            self._opener.start()
        return self._opener

    def _batched_reader(self) -> BatchedGroupReader | None:
        """The batched reader, opened once; None (with the reason kept) when it cannot serve.

        Settings and broker versions are final; a failed connection is tried again
        after BATCHED_RETRY seconds (the TUI's collector lives for hours)."""
        if self._batched_reason is not None and self._batched_retry_at is not None \
                and time.monotonic() >= self._batched_retry_at:
            self._batched_reason = self._batched_retry_at = None
        if self._batched is None and self._batched_reason is None:
            try:
                reader = BatchedGroupReader(self.cluster, timeout=self.timeout,
                                            chunk=self.batched_chunk)
                reader.open()
            except BatchedUnavailable as exc:
                self._batched_reason = str(exc)
                if not exc.final:
                    self._batched_retry_at = time.monotonic() + BATCHED_RETRY
                _log.info("committed offsets per group: %s", exc)
                return None
            if self._closed:  # closed while connecting (opened in a thread)
                reader.close()
                return None
            self._batched = reader
        return self._batched

    def _read_groups(self, ids: list[str], *, more: bool = False,
                     on_part: Callable[[list[GroupRead]], None] | None = None
                     ) -> list[GroupData]:
        """Every group's state and committed offsets: batched when possible, else per group.

        `more`: a second read in the same refresh (groups known only from the history),
        counted together with the first.
        """
        if not more:
            self.batched_requests = {}
            self._groups_read = 0
        self._groups_read += len(ids)
        reader = self._batched_reader()
        if reader is not None:
            result = reader.read(ids, on_part) if ids else None
            for kind, n in (result.requests if result else {}).items():
                self.batched_requests[kind] = self.batched_requests.get(kind, 0) + n
            self.offsets_via = "batched"
            asked = ", ".join(f"{n} {k}" for k, n in sorted(self.batched_requests.items()))
            self.offsets_via_reason = (f"broker speaks OffsetFetch v8 (KIP-709): "
                                       f"{self._groups_read} groups in "
                                       f"{asked or 'no requests'}")
            return [_from_batched(result.groups[g]) for g in ids] if result else []
        self.offsets_via = "per-group"
        self.offsets_via_reason = self._batched_reason or ""
        return self._read_groups_per_group(ids, self._admin_pool(self.connections))

    def _read_groups_per_group(self, ids: list[str], pool: list[Any]) -> list[GroupData]:
        """librdkafka's way: one describe and one OffsetFetch per group, all in flight."""
        t = self.timeout
        # everything in flight together, spread over the pool's connections
        n = len(pool)
        describe: dict[str, concurrent.futures.Future] = {}
        for i in range(min(n, len(ids))):
            describe.update(pool[i].describe_consumer_groups(ids[i::n], request_timeout=t))
        offsets: dict[str, concurrent.futures.Future] = {}
        for i, g in enumerate(ids):
            offsets.update(pool[i % n].list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(g)], request_timeout=t))
        concurrent.futures.wait([*describe.values(), *offsets.values()], timeout=t + 5)
        return [_group_data(g, describe.get(g), offsets.get(g)) for g in ids]

    def _end_offsets(self, tps: list[TP]) -> tuple[dict[TP, int], dict[TP, str]]:
        ends: dict[TP, int] = {}
        errors: dict[TP, str] = {}
        if not tps:
            return ends, errors
        t = self.timeout
        try:
            futures = self._admin_pool()[0].list_offsets(
                {TopicPartition(topic, p): OffsetSpec.latest() for topic, p in tps},
                isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=t,
            )
        except KafkaException as exc:
            text = kafka.describe(exc)
            return ends, dict.fromkeys(tps, text)
        concurrent.futures.wait(futures.values(), timeout=t + 5)
        for tp, future in futures.items():
            key = (tp.topic, tp.partition)
            try:
                end = int(future.result(timeout=0).offset)
            except (KafkaException, concurrent.futures.TimeoutError) as exc:
                errors[key] = kafka.describe(_as_kafka(exc))
                continue
            if end < 0:
                # librdkafka answers a ListOffsets that timed out with OFFSET_INVALID
                # (-1001), not an error: taken as an end offset, every group on the
                # partition looked caught up (OK) while its leader did not answer
                errors[key] = f"no end offset in the broker's answer ({end})"
                continue
            ends[key] = end
        return ends, errors

    # ---------------------------------------------------------- evaluation

    def evaluate(self, view: BrokerView) -> LagSnapshot:
        """Lag, lag in seconds and status from one broker view, recorded into the history."""
        with self._lock:
            return self._evaluate(view)

    def _judge(self, groups: Sequence[GroupData], ends: Mapping[TP, int],
               now: float) -> _Judged:
        """Passes 1 and 2 of `_evaluate` for `groups`: their samples and verdicts.

        `refresh` judges each part of the batched read here as soon as it landed (with
        the end offsets read right after it), while the broker answers the next parts;
        `_evaluate` then only builds the snapshot."""
        end: int | None
        # pass 1: a sample (and its history key) per group partition with a known end
        # offset, in group order; and how many group partitions are behind at each
        # (topic, partition, committed offset), what lag in seconds is worked out for
        new = tuple.__new__
        samples: list[PartitionSample] = []
        keys: list[tuple[str, str, int]] = []
        #: per sample: (topic, partition, committed) when the group is behind there
        ats: list[tuple[str, int, int] | None] = []
        #: per group: every partition of it has a sample (its end offset is known)
        whole: list[bool] = []
        #: where each group's samples start (and, last, where they end)
        bounds: list[int] = [0]
        for d in groups:
            group, active = d.group, d.active
            complete = True
            for tp, committed in d.committed.items():
                end = ends.get(tp)
                if end is None and tp not in ends:
                    complete = False
                    continue
                topic, partition = tp
                # tuple.__new__ skips the named tuple's Python-level __new__
                samples.append(new(PartitionSample,
                                   (group, topic, partition, committed, end, active)))
                keys.append((group, topic, partition))
                if committed is not None and end is not None and end > committed:
                    ats.append((topic, partition, committed))
                else:
                    ats.append(None)
            whole.append(complete)
            bounds.append(len(samples))

        # pass 2: the verdict of each sample, (status, reason), in the samples' order
        windows = self.history.windows(self.key, keys, LOOKBACK)
        opts = self.options
        allowed_by_group = {d.group: opts.allowed_lag_for(d.group) for d in groups}
        policy = opts.policy
        verdicts: list[tuple[Status, str] | None] = []
        judged = verdicts.append
        window_of = windows.get
        for s, key in zip(samples, keys, strict=True):
            committed, end = s[3], s[4]
            if committed is None or end is None:
                judged(None)  # the snapshot says why without a verdict
                continue
            window = window_of(key)
            if not window or window[-1][0] < now:
                # the history's windows are in time order, and `now` is after them
                judged(evaluate_current(window or (), now, committed, end, s[5], policy,
                                        allowed_by_group[s[0]]))
            else:  # the history already holds a sample this recent: judge its window
                held = evaluate_window(window, policy=policy,
                                       allowed_lag=allowed_by_group[s[0]])
                judged((held.status, held.reason))
        return _Judged([d.group for d in groups], bounds, samples, ats, whole, verdicts,
                       allowed_by_group)

    def _evaluate(self, view: BrokerView, early: _Judged | None = None) -> LagSnapshot:
        """Three passes over the group partitions (100,000 at 10,000 groups), each doing
        all its work at once: the samples (and the offsets groups are behind at) and their
        verdicts (`_judge`; `early` when `refresh` judged them while the read went on),
        then the snapshot, once the exact reads (a thread, started while the history
        write is queued) are in. Results go from one pass to the next in lists in the
        same order, not in dicts keyed by tuples."""
        now = view.taken_at
        opts = self.options
        ends = view.ends
        end: int | None
        at: tuple[str, int, int] | None
        # partitions whose end offset went down were recreated: forget cached record times
        for tp, end in ends.items():
            if tp in self._last_end and end < self._last_end[tp]:
                for stale in [k for k in self._timestamps if k[:2] == tp]:
                    del self._timestamps[stale]
            self._last_end[tp] = end

        judged = early if early is not None else self._judge(view.groups, ends, now)
        samples, ats, whole, verdicts = judged.columns(view.groups)
        # counted in C, keys in the order first seen
        behind: Counter[tuple[str, int, int]] = Counter(filter(None, ats))

        # exact reads go to the broker in a thread while the history write is queued
        times, rounds = self._plan_time_lags(view, behind)
        reads: dict[tuple[str, int, int], tuple[int, float]] = {}
        tried: set[tuple[str, int, int]] = set()
        reader = None
        if rounds:
            reader = threading.Thread(
                target=lambda: reads.update(self._read_timestamps(
                    rounds, opts.exact_budget_seconds, tried)),
                name="lagdeck-exact-reads", daemon=True,
            )
            reader.start()

        # samples and end offsets are stored now (with `background_writes`, SQLite writes
        # them on the other core while the snapshot is built); record times and group
        # totals, known only after, follow in a second, small write
        self.history.record(
            self.key, now, samples=samples,
            points=[(tp[0], tp[1], Point(now, end), "end") for tp, end in ends.items()],
            background=self._background_writes,
        )
        allowed_by_group = judged.allowed

        if reader is not None:
            reader.join(opts.exact_budget_seconds + self.timeout)
            unresolved = tried - set(reads)
            self._unreadable = {k: t for k, t in self._unreadable.items()
                                if now - t < UNREADABLE_RETRY}
            self._unreadable.update(dict.fromkeys(unresolved, now))
        for at, (_offset, ts) in reads.items():
            if at in times:
                times[at] = timelag.exact(ts, now)
        self.last_stats.update(
            lagging=sum(behind.values()), exact_reads=len(reads),
            exact=sum(n for at, n in behind.items() if times[at].method == timelag.EXACT),
            exact_planned=sum(len(run.offsets) for r in rounds for run in r),
        )

        # pass 3: the snapshot, group by group, partitions in (topic, partition) order;
        # the group's figures are folded in as its partitions are built (as `_group`)
        groups: list[GroupLag] = []
        topics = view.topics
        # partitions with an end offset whose topic or partition is unknown (usually none)
        bad_ends = {tp for tp in ends if tp[0] not in topics or tp[1] >= topics[tp[0]]}
        build = partition_lag
        severity = SEVERITY
        j = 0  # the next sample (and verdict): samples follow each group's `committed`
        for d, complete in zip(view.groups, whole, strict=True):
            parts: list[PartitionLag] = []
            errors = d.partition_errors
            previous: TP | None = None
            in_order = True
            worst: PartitionLag | None = None
            worst_severity, worst_lag, total = -1, 0, 0
            max_seconds: float | None = None
            for tp, committed in d.committed.items():
                if previous is not None and tp < previous:
                    in_order = False
                previous = tp
                if complete:
                    end, verdict, at = samples[j][4], verdicts[j], ats[j]
                    j += 1
                else:
                    end, verdict, at = ends.get(tp), None, None
                    if end is not None or tp in ends:
                        verdict, at = verdicts[j], ats[j]
                        j += 1
                if (end is None or (bad_ends and tp in bad_ends)
                        or (errors and errors.get(tp) is not None)):
                    p = _partition_error(d, tp, view)
                    status, lag, seconds = p.status, p.lag, p.lag_seconds
                elif committed is None or verdict is None:
                    status, lag, seconds = Status.OK, None, None
                    p = build(tp[0], tp[1], None, end, None, None, timelag.UNKNOWN, status,
                              None, "no committed offset")
                else:
                    lag = end - committed
                    if lag > 0:
                        lag_s = None if at is None else times.get(at)
                        if lag_s is None:
                            seconds, method = None, timelag.UNKNOWN
                        else:
                            seconds, method = lag_s.seconds, lag_s.method
                    else:
                        lag, seconds, method = 0, 0.0, timelag.ZERO
                    status = verdict[0]
                    p = build(tp[0], tp[1], committed, end, lag, seconds, method, status,
                              None, verdict[1])
                parts.append(p)
                rank = severity[status]
                if rank > worst_severity or (rank == worst_severity and (lag or 0) > worst_lag):
                    worst, worst_severity, worst_lag = p, rank, lag or 0
                if lag is not None:
                    total += lag
                if seconds is not None and (max_seconds is None or seconds > max_seconds):
                    max_seconds = seconds
            allowed = allowed_by_group[d.group]
            if not in_order:  # the first of equals depends on the order: fold it again
                parts.sort(key=_partition_order)
                parts += [_vanished_partition(tp, committed) for tp, committed
                          in sorted(d.vanished.items())]
                groups.append(_group(d, parts, allowed))
                continue
            if d.vanished:
                gone = [_vanished_partition(tp, committed) for tp, committed
                        in sorted(d.vanished.items())]
                # ERR with no lag: the first of them is the worst unless an ERR came before
                if worst_severity < severity[Status.ERR]:
                    worst = gone[0]
                parts += gone
            error = d.error
            reason: str | None
            if error is not None:
                status, reason = Status.ERR, error
            elif worst is not None:
                status, reason = worst.status, worst.status_reason
            else:
                status, reason = Status.OK, "no committed offsets"
            groups.append(group_lag(d.group, d.state, status, total, max_seconds, tuple(parts),
                                    d.members, error, reason, allowed))

        points = [(t, p, timelag.record_point(actual, ts), "record")
                  for (t, p, _asked), (actual, ts) in reads.items()]
        self.history.record(
            self.key, now, points=points,
            groups=[GroupTotal(g.group, g.total_lag, g.status.value) for g in groups
                    if g.error is None],
            background=self._background_writes,
        )
        return LagSnapshot(taken_at=now, groups=tuple(groups), errors=view.errors,
                           groups_on_cluster=view.listed, offsets_via=view.offsets_via,
                           offsets_via_reason=view.offsets_via_reason)

    # ---------------------------------------------------------- lag in seconds

    def _plan_time_lags(
        self, view: BrokerView, behind: Mapping[tuple[str, int, int], int]
    ) -> tuple[dict[tuple[str, int, int], TimeLag], list[list[ReadRun]]]:
        """Estimates (or cached exact values) for every (topic, partition, committed
        offset) some group is behind at, and the exact reads worth doing this refresh,
        in rounds. Groups at the same offset of a partition share the answer and the
        read request (a request depends only on the partition and the offset)."""
        if not behind:
            return {}, []
        now = view.taken_at
        tps = {at[:2] for at in behind}
        history = self.history.points(self.key, tps)
        tables = {tp: timelag.Table.of(timelag.build_table(history.get(tp, []), view.ends[tp],
                                                          now))
                  for tp in tps}
        out: dict[tuple[str, int, int], TimeLag] = {}
        # (topic, partition, offset, lag, blind) of each offset worth an exact read
        candidates: list[tuple[str, int, int, int, bool]] = []
        cache = self._timestamps
        for at in behind:
            topic, partition, committed = at
            cached = cache.get(at)
            if cached is not None:
                cache.move_to_end(at)
                out[at] = timelag.exact(cached[1], now)
                continue
            tp = (topic, partition)
            end = view.ends[tp]
            estimate = timelag.estimate_from_table(committed, end, tables[tp], now)
            out[at] = estimate
            failed_at = self._unreadable.get(at)
            if failed_at is not None and now - failed_at < UNREADABLE_RETRY:
                continue
            blind = estimate.method in (timelag.EXTRAPOLATED, timelag.UNKNOWN)
            candidates.append((topic, partition, committed, end - committed, blind))
        rounds = timelag.plan_distinct_reads(candidates, self.options.exact_max_reads)
        return out, rounds

    def _read_timestamps(
        self, rounds: list[list[ReadRun]], budget: float,
        tried: set[tuple[str, int, int]] | None = None,
    ) -> dict[tuple[str, int, int], tuple[int, float]]:
        """Timestamp of the first record at or after each planned offset, within `budget` s.

        Returns {(topic, partition, offset asked): (offset read, timestamp)}. The
        record read can be later than the one asked when the asked one is gone
        (retention, compaction, a transaction marker): it is then the oldest
        record the group has not consumed, which is what lag in seconds means.
        """
        found: dict[tuple[str, int, int], tuple[int, float]] = {}
        if not rounds or budget <= 0:
            return found
        deadline = time.monotonic() + budget
        reader = self._reader_client()
        try:
            for batch in rounds:
                if time.monotonic() >= deadline:
                    break
                todo = {(r.topic, r.partition): list(r.offsets) for r in batch}
                if tried is not None:
                    tried.update((r.topic, r.partition, o) for r in batch for o in r.offsets)
                paused: list[TopicPartition] = []
                reader.assign([TopicPartition(t, p, offs[0]) for (t, p), offs in todo.items()])
                while todo and time.monotonic() < deadline:
                    timeout = min(0.05, max(0.0, deadline - time.monotonic()))
                    for msg in reader.consume(5000, timeout=timeout):
                        tp = (msg.topic(), msg.partition())
                        waiting = todo.get(tp)
                        if msg.error() or not waiting or msg.offset() < waiting[0]:
                            continue
                        ts_type, ts_ms = msg.timestamp()
                        while waiting and waiting[0] <= msg.offset():
                            asked = waiting.pop(0)
                            if ts_type != 0 and ts_ms >= 0:
                                entry = (msg.offset(), ts_ms / 1000.0)
                                found[(*tp, asked)] = entry
                                self._timestamps[(*tp, asked)] = entry
                        if not waiting:
                            del todo[tp]
                            paused.append(TopicPartition(*tp))
                            reader.pause(paused[-1:])
                # a paused partition stays paused across assignments: resume before leaving
                if paused:
                    reader.resume(paused)
                reader.unassign()
        except KafkaException as exc:
            _log.warning("exact lag read stopped: %s", kafka.describe(exc))
        while len(self._timestamps) > _TS_CACHE:
            self._timestamps.popitem(last=False)
        return found


class _Parts:
    """A batched read whose parts are completed and judged as they land (`_fetch`).

    The read runs in a thread; each part its `on_part` hands over is taken here, on the
    refreshing thread: its groups' vanished partitions added, the end offsets of their
    partitions read (after their committed offsets, as for a whole read), and the part
    judged (`LagCollector._judge`). What no part carried (groups asked again, failed
    before being asked) is completed after the read, with the ghosts."""

    def __init__(self, collector: LagCollector, topics: Mapping[str, int]) -> None:
        self.collector = collector
        self.topics = topics
        self.recent: dict[str, dict[TP, Sample]] = {}
        self.ends: dict[TP, int] = {}
        self.end_errors: dict[TP, str] = {}
        self.judged: list[_Judged] = []
        #: completed groups, by name
        self.done: dict[str, GroupData] = {}

    def read(self, ids: list[str]) -> list[GroupData]:
        queue: SimpleQueue[list[GroupRead] | None] = SimpleQueue()
        out: list[list[GroupData]] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                out.append(self.collector._read_groups(ids, on_part=queue.put))
            except BaseException as exc:  # raised again on the refreshing thread
                failed.append(exc)
            finally:
                queue.put(None)

        reader = threading.Thread(target=run, name="lagdeck-group-read", daemon=True)
        reader.start()
        try:
            # the history's first read is on its way (started by `_fetch`); waited for here
            self.recent = self.collector._recent()
            gone = _gone(self.recent, self.topics)
            while (part := queue.get()) is not None:
                self._take(part, gone)
        finally:  # even when judging failed: no read left running behind the next refresh
            reader.join()
        if failed:
            raise failed[0]
        return out[0]

    def _take(self, part: list[GroupRead], gone: bool) -> None:
        datas = []
        for read in part:
            data = _from_batched(read)
            seen = self.recent.get(data.group)
            if seen and gone:
                data = _with_vanished(data, seen, self.topics)
            datas.append(data)
        # a partition whose end offset an earlier part could not read (a leader that does
        # not answer) is not asked again: one timeout per refresh, not one per part
        ends, errors = self.collector._end_offsets(
            [tp for tp in _valid_tps(datas, self.topics) if tp not in self.end_errors])
        self.ends.update(ends)
        self.end_errors.update(errors)
        self.judged.append(self.collector._judge(datas, ends, time.time()))
        self.done.update((d.group, d) for d in datas)


def _gone(recent: Mapping[str, Mapping[TP, Sample]], topics: Mapping[str, int]) -> bool:
    """Topics the history knows that no longer exist (usually none: nothing to add then)."""
    return any(t not in topics for seen in recent.values() for t, _p in seen)


def _valid_tps(groups: Iterable[GroupData], topics: Mapping[str, int]) -> list[TP]:
    """The partitions of `groups` that exist, for their end offsets."""
    return sorted({tp for d in groups for tp in d.committed
                   if tp[0] in topics and tp[1] < topics[tp[0]]})


def collect_lag(
    cluster: ClusterConfig,
    group_regex: str | None = None,
    history: LagHistory | None = None,
    settings: Settings | None = None,
) -> LagSnapshot:
    """One refresh with a throw-away collector (status needs `history` to judge a window)."""
    with LagCollector(cluster, history, settings=settings) as collector:
        return collector.refresh(group_regex)


# ---------------------------------------------------------------- assembly helpers


def _as_kafka(exc: BaseException) -> BaseException:
    """Future timeouts carry no text; say what happened."""
    if isinstance(exc, concurrent.futures.TimeoutError):
        return TimeoutError("no answer from the broker in time")
    return exc


def _state_name(state: Any) -> str:
    if isinstance(state, ConsumerGroupState):
        return state.name
    return str(state or "UNKNOWN").upper()


def _members(description: Any) -> tuple[Member, ...] | None:
    members = tuple(
        Member(
            member_id=m.member_id,
            client_id=m.client_id,
            host=m.host,
            assignments=tuple(
                (tp.topic, tp.partition)
                for tp in (m.assignment.topic_partitions if m.assignment else ()) or ()
            ),
        )
        for m in description.members or ()
    )
    state = _state_name(description.state)
    if not members and state in ACTIVE_STATES:
        return None  # a live group with no member list: the broker does not report them
    return members


def _group_data(group: str, describe: concurrent.futures.Future | None,
                offsets: concurrent.futures.Future | None) -> GroupData:
    state, members, errors = "UNKNOWN", None, []
    if describe is not None:
        try:
            description = describe.result(timeout=0)
            state = _state_name(description.state)
            members = _members(description)
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            errors.append(f"describe: {kafka.describe(_as_kafka(exc))}")
    committed: dict[TP, int | None] = {}
    partition_errors: dict[TP, str] = {}
    if offsets is not None:
        try:
            result = offsets.result(timeout=0)
            for tp in result.topic_partitions or ():
                key = (tp.topic, tp.partition)
                if tp.error is not None:
                    partition_errors[key] = kafka.describe(KafkaException(tp.error))
                    committed[key] = None
                else:
                    committed[key] = tp.offset if tp.offset >= 0 else None
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            errors.append(f"committed offsets: {kafka.describe(_as_kafka(exc))}")
    for m in members or ():
        for key in m.assignments:
            committed.setdefault(key, None)
    return GroupData(group, state, members, committed, partition_errors,
                     "; ".join(errors) or None)


def _from_batched(read: GroupRead) -> GroupData:
    return GroupData(read.group, read.state, read.members, read.committed,
                     read.partition_errors, "; ".join(read.errors) or None)


def _with_vanished(data: GroupData, seen: Mapping[TP, Sample],
                   topics: Mapping[str, int]) -> GroupData:
    """Add partitions the history knows (for this group) on topics that no longer exist."""
    vanished = {tp: s.committed for tp, s in seen.items()
                if tp[0] not in topics and tp not in data.committed}
    if not vanished:
        return data
    return GroupData(data.group, data.state, data.members, data.committed,
                     data.partition_errors, data.error, vanished)


def _ghost(data: GroupData, seen: Mapping[TP, Sample],
           topics: Mapping[str, int]) -> GroupData | None:
    """A group no longer listed: shown only when every topic it consumed is gone."""
    if data.committed or not seen or any(t in topics for t, _ in seen):
        return None
    return GroupData(data.group, data.state, data.members, {}, {}, data.error,
                     {tp: s.committed for tp, s in seen.items()})


def _vanished_partition(tp: TP, committed: int | None) -> PartitionLag:
    return PartitionLag(tp[0], tp[1], committed, None, None, None, timelag.UNKNOWN, Status.ERR,
                        error=TOPIC_DELETED,
                        status_reason=f"{TOPIC_DELETED}: the group had offsets on it")


def _partition_order(p: PartitionLag) -> TP:
    return (p.topic, p.partition)


def _partition_error(d: GroupData, tp: TP, view: BrokerView) -> PartitionLag:
    """A partition that cannot be judged: OffsetFetch said why, its topic or partition
    is gone, or its end offset is unknown (ERR, with the reason)."""
    topic, partition = tp
    end = view.ends.get(tp)
    error: str | None = d.partition_errors.get(tp)
    if error is None:
        if topic not in view.topics:
            error = TOPIC_DELETED
        elif partition >= view.topics[topic]:
            error = PARTITION_UNKNOWN
        elif end is None:
            error = f"end offset unknown: {view.end_errors.get(tp, 'no answer')}"
    error = error or "end offset unknown"
    return PartitionLag(topic, partition, d.committed[tp], end, None, None, timelag.UNKNOWN,
                        Status.ERR, error=error, status_reason=error)


def _group(d: GroupData, parts: Iterable[PartitionLag], allowed: int) -> GroupLag:
    """The group from its partitions, in one pass over them (10,000 groups, 100,000
    partitions per refresh): status as `evaluate_group` folds it, the reason of the
    worst partition (severity, then lag; the first of equals), total lag and the
    largest lag in seconds, compared as `max` compares."""
    parts = tuple(parts)
    worst: PartitionLag | None = None
    worst_key: tuple[int, int] = (-1, 0)
    total = 0
    max_seconds: float | None = None
    for p in parts:
        lag, seconds = p.lag, p.lag_seconds
        key = (SEVERITY[p.status], lag or 0)
        if worst is None or key > worst_key:
            worst, worst_key = p, key
        if lag is not None:
            total += lag
        if seconds is not None and (max_seconds is None or seconds > max_seconds):
            max_seconds = seconds
    status = evaluate_group((worst.status,) if worst is not None else (), d.error)
    reason: str | None
    if d.error is not None:
        reason = d.error
    else:
        reason = worst.status_reason if worst is not None else "no committed offsets"
    return GroupLag(
        group=d.group,
        state=d.state,
        status=status,
        total_lag=total,
        max_lag_seconds=max_seconds,
        partitions=parts,
        members=d.members,
        error=d.error,
        status_reason=reason,
        allowed_lag=allowed,
    )
