"""Lag history in SQLite under the state directory, shared by `lagdeck lag`, `watch` and the TUI.

Three series, each keyed by cluster (the bootstrap servers), so profiles do
not mix:

- `refreshes`: per refresh, every group partition's committed offset, end
  offset and whether the group had live members, as one row of packed columns
  (`collectors.history_format`; the keys are spelled once, in `sample_keys`).
  The status window (`collectors.status`) of a partition is its last N samples.
- `points`: per topic partition, end offsets over time (and, from exact
  reads, record times), the lookup table of `collectors.timelag`. Flat runs
  are stored as their first and last point, as kafka-lag-exporter does, so
  an idle topic does not push its production history out of the table.
- `groups`: per group and refresh, total lag and status: the TUI sparkline.

Retention is bounded twice: rows older than `retention_seconds` go, and each
key keeps at most `max_samples` samples / `max_points` points / `max_trend`
group rows (samples: refreshes of the same keys keep their newest
`max_samples`). Pruning runs from `record` at most every ten minutes, counted
across all processes sharing the file (so cron runs of `lagdeck lag` prune too).

Reads come from an in-memory cache per cluster, loaded once and then brought
up to date by row id, so rows written by another lagdeck process are seen on
the next read and a refresh of 100,000 partitions costs no table scan. A file
in the first format (a `samples` row per sample) is converted once when opened.
The store is shared by a TUI worker thread and the main thread: one
connection with `check_same_thread=False` behind a lock; WAL mode lets
separate processes read while one writes.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import itertools
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

from collectors import history_format as fmt
from collectors.errors import LagdeckError
from collectors.logs import get_logger
from collectors.paths import state_dir
from collectors.status import Sample
from collectors.timelag import Point

FILENAME = "lag-history.sqlite3"
SCHEMA_VERSION = "2"
#: pruning runs from `record` at most this often (seconds), across processes
PRUNE_EVERY = 600.0

_log = get_logger("history")

SampleKey = tuple[str, str, int]  # group, topic, partition
PointKey = tuple[str, int]  # topic, partition


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- each group partition once per cluster; refreshes refer to it by id. AUTOINCREMENT:
-- an id is never given again after its row was pruned, so a reader that follows new rows
-- by id (`_follow`) never mistakes a new row for one it has seen
CREATE TABLE IF NOT EXISTS sample_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cluster TEXT NOT NULL, grp TEXT NOT NULL,
    topic TEXT NOT NULL, part INTEGER NOT NULL, UNIQUE (cluster, grp, topic, part));
-- one row per refresh: packed columns in the order of `key_ids` (collectors.history_format);
-- `keyset` names the key list, shared by the refreshes of the same groups
CREATE TABLE IF NOT EXISTS refreshes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cluster TEXT NOT NULL, ts REAL NOT NULL,
    keyset TEXT NOT NULL, size INTEGER NOT NULL, key_ids BLOB NOT NULL, committed BLOB NOT NULL,
    end_offset BLOB NOT NULL, active BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS refreshes_key ON refreshes (cluster, ts);
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    ts REAL NOT NULL, end_offset INTEGER NOT NULL, kind TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS points_key ON points (cluster, topic, part, ts);
CREATE INDEX IF NOT EXISTS points_ts ON points (ts);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, grp TEXT NOT NULL, ts REAL NOT NULL,
    total_lag INTEGER NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS groups_key ON groups (cluster, grp, ts);
CREATE INDEX IF NOT EXISTS groups_ts ON groups (ts);
"""


class PartitionSample(NamedTuple):
    """What one refresh observed for one partition of one group.

    A named tuple (immutable) for the reason `collectors.status.Sample` is one: a
    refresh of 10,000 groups builds 100,000 of them.
    """

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int | None
    active: bool | None


@dataclass(frozen=True)
class GroupTotal:
    group: str
    total_lag: int
    status: str


class _ClusterCache:
    def __init__(self) -> None:
        self.samples: dict[SampleKey, list[Sample]] = defaultdict(list)
        #: per key: (row id, point); the row id lets a flat run's tail be moved in place
        self.points: dict[PointKey, list[tuple[int, Point]]] = defaultdict(list)
        #: `sample_keys` of the cluster, both ways
        self.key_ids: dict[SampleKey, int] = {}
        self.keys: dict[int, SampleKey] = {}
        self.last_key_id = 0
        self.last_refresh_id = 0
        self.last_point_id = 0
        #: (time, samples) this process wrote, taken into `samples` on the next read
        #: (`_flush`): a one-shot `lagdeck lag` never reads them back, a TUI does on its
        #: next poll
        self.pending: list[tuple[float, list[PartitionSample]]] = []


class LagHistory:
    """The lag history store. `path=None` is `<state dir>/lag-history.sqlite3`."""

    def __init__(
        self,
        path: Path | str | None = None,
        retention_seconds: float = 7 * 86400,
        *,
        max_samples: int = 120,
        max_points: int = 60,
        max_trend: int = 240,
        cache_samples: int = 32,
    ) -> None:
        self.path = Path(path) if path is not None and str(path) != ":memory:" else path
        if self.path is None:
            self.path = state_dir() / FILENAME
        self.retention_seconds = float(retention_seconds)
        self.max_samples = max(2, int(max_samples))
        self.max_points = max(4, int(max_points))
        self.max_trend = max(2, int(max_trend))
        self.cache_samples = max(2, min(int(cache_samples), self.max_samples))
        self._lock = threading.RLock()
        self._caches: dict[str, _ClusterCache] = {}
        self._last_prune = 0.0  # this process; the file keeps `pruned_at` for all of them
        self._last_cluster: str | None = None
        #: `record(background=True)` writes, done in order by one thread (started on
        #: the first), and the ones not yet waited for
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._writes: list[concurrent.futures.Future[None]] = []
        self._writes_lock = threading.Lock()  # not `_lock`: the writer holds that one
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0,
                                       isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            if str(self.path) != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
            self._convert_first_format()
        except sqlite3.Error as exc:
            raise LagdeckError(f"cannot open the lag history {self.path}: {exc}") from None

    def _convert_first_format(self) -> None:
        """A file written before the packed format has a `samples` table, a row per
        sample: the rows of each cluster's newest `cache_samples` refreshes become
        refreshes (one per cluster and time) once, and the table goes. One write
        transaction, so two processes never both convert; if it fails, the old rows stay
        (and are tried again next time) and the history starts empty."""
        if not self._has_table("samples"):
            return
        converted = 0
        try:
            with self._transaction():
                if not self._has_table("samples"):  # another process converted meanwhile
                    return
                caches: dict[str, _ClusterCache] = {}
                new = tuple.__new__
                # the newest `cache_samples` refreshes of each cluster: what a window reads
                # (a history of 100,000 partitions can hold 12 million old rows)
                since = {cluster: self._db.execute(
                    "SELECT MIN(ts) FROM (SELECT DISTINCT ts FROM samples WHERE cluster = ? "
                    "ORDER BY ts DESC LIMIT ?)", (cluster, self.cache_samples)).fetchone()[0]
                    for (cluster,) in self._db.execute("SELECT DISTINCT cluster FROM samples")}
                rows = itertools.chain.from_iterable(self._db.execute(
                    "SELECT cluster, ts, grp, topic, part, committed, end_offset, active "
                    "FROM samples WHERE cluster = ? AND ts >= ? ORDER BY ts, id", (cluster, ts))
                    for cluster, ts in since.items())
                for (cluster, ts), run in itertools.groupby(rows, key=lambda r: r[:2]):
                    cache = caches.get(cluster)
                    if cache is None:
                        cache = caches[cluster] = _ClusterCache()
                        self._follow_keys(cluster, cache)
                    # (grp, topic, part, committed, end, active 0/1/NULL): a PartitionSample
                    # as the columns are packed (0 and 1 pack as False and True)
                    samples = [new(PartitionSample, row[2:]) for row in run]
                    self._insert_refresh(cluster, cache, float(ts), samples, None)
                    converted += len(samples)
                self._db.execute("DROP TABLE samples")
        except sqlite3.Error as exc:
            _log.warning("cannot convert the lag history %s to the packed format: %s",
                         self.path, exc)
            return
        _log.info("lag history %s: %d samples converted to the packed format", self.path,
                  converted)

    def _has_table(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).fetchone() is not None

    @classmethod
    def in_memory(cls, **kwargs) -> LagHistory:
        """A private, non-persistent history (one-shot collections, tests)."""
        return cls(":memory:", **kwargs)

    # ------------------------------------------------------------ writing

    def record(
        self,
        cluster: str,
        taken_at: float,
        samples: Iterable[PartitionSample] = (),
        points: Iterable[tuple[str, int, Point, str]] = (),
        groups: Iterable[GroupTotal] = (),
        *,
        background: bool = False,
    ) -> None:
        """Store one refresh. `points` are (topic, partition, point, kind "end"|"record").

        Inside one write transaction: first the rows other processes wrote are
        followed, then ours are inserted (nobody else can write meanwhile), so the
        cache takes our samples as they are instead of reading them back.

        `background`: queue the write for the store's writer thread and return at
        once, so the collector judges statuses meanwhile. Background writes are done one
        after another in the order they were asked; a second one queues behind the
        first instead of waiting for it (the collector's small second write, group
        totals, used to wait 0.2-0.4 s at 10,000 groups). Every read, a write made
        in the caller's thread and `close` first wait for the queue, so no reader
        ever sees the history without them; the owner must `close` the store
        before the process exits.
        """
        samples = list(samples)
        if background:
            # the columns are packed here: in the writer thread, this Python work and the
            # caller's would take the GIL from each other
            args = (cluster, taken_at, samples, list(points), list(groups),
                    _columns(samples))
            with self._writes_lock:
                if self._writer is None:
                    self._writer = concurrent.futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="lagdeck-history-write")
                self._writes.append(self._writer.submit(self._write, *args))
            return
        self.wait()
        self._write(cluster, taken_at, samples, points, groups)

    def wait(self) -> None:
        """Wait for the queued background writes; re-raise the first failure (once)."""
        if threading.current_thread().name.startswith("lagdeck-history-write"):
            return  # the writer itself (its `_write` reads the cache)
        with self._writes_lock:
            writes, self._writes = self._writes, []
        failed: BaseException | None = None
        for write in writes:
            error = write.exception()  # waits for it
            if error is not None and failed is None:
                failed = error
        if failed is not None:
            raise failed

    def _write(self, cluster: str, taken_at: float, samples: list[PartitionSample],
               points: Iterable[tuple[str, int, Point, str]],
               groups: Iterable[GroupTotal],
               columns: tuple[bytes, bytes, bytes] | None = None) -> None:
        with self._lock:
            cache = self._caches.get(cluster) or self._sync(cluster)
            try:
                with self._transaction():
                    # others' rows only: ours stay pending until something reads (a
                    # one-shot `lagdeck lag` never does)
                    self._follow(cluster, cache, flush=False)
                    refresh = self._insert_refresh(cluster, cache, taken_at, samples, columns)
                    added_points = self._write_points(cluster, cache, points)
                    self._rows(
                        "INSERT INTO groups (cluster, ts, grp, total_lag, status) SELECT ?, ?, "
                        "value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
                        "INSERT INTO groups (cluster, ts, grp, total_lag, status) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (cluster, taken_at),
                        [(g.group, g.total_lag, g.status) for g in groups])
                    last_point = self._max_id("points")
            except sqlite3.Error as exc:
                _log.warning("cannot write lag history %s: %s", self.path, exc)
                # keys added in the rolled-back transaction are gone: read them again
                self._caches.pop(cluster, None)
                return
            if refresh is not None:  # samples built when next read (`_flush`)
                cache.pending.append((taken_at, samples))
                cache.last_refresh_id = max(cache.last_refresh_id, refresh)
            first = last_point - len(added_points) + 1
            self._add_points(cache, [(first + i, topic, part, p.time, p.end)
                                     for i, (topic, part, p) in enumerate(added_points)])
            cache.last_point_id = max(cache.last_point_id, last_point)
            self._last_cluster = cluster
            self._maybe_prune(taken_at)

    def _insert_refresh(self, cluster: str, cache: _ClusterCache, taken_at: float,
                        samples: list[PartitionSample],
                        columns: tuple[bytes, bytes, bytes] | None) -> int | None:
        """The refresh as one row; its keys' ids first (new keys are added). Returns the
        row id, None when there is nothing to store."""
        if not samples:
            return None
        ids = cache.key_ids
        keys = [s[:3] for s in samples]  # a PartitionSample starts with its key
        new = [k for k in dict.fromkeys(keys) if k not in ids]
        if new:
            bad = {k for k in new if not _storable(k)}
            if bad:  # a lone surrogate in a name: SQLite text cannot hold it
                _log.warning("lag history: %d group partitions with names that cannot be "
                             "stored are not recorded", len(bad))
                samples = [s for s in samples if s[:3] not in bad]
                keys = [s[:3] for s in samples]
                new = [k for k in new if k not in bad]
                columns = None
                if not samples:
                    return None
            self._add_keys(cluster, cache, new)
        key_ids = fmt.pack_ids([ids[k] for k in keys])
        committed, end, active = columns or _columns(samples)
        row = self._db.execute(
            "INSERT INTO refreshes (cluster, ts, keyset, size, key_ids, committed, end_offset, "
            "active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (cluster, taken_at, fmt.keyset(key_ids), len(samples), key_ids, committed, end,
             active),
        )
        return row.lastrowid

    def _add_keys(self, cluster: str, cache: _ClusterCache, keys: list[SampleKey]) -> None:
        """Spell new keys once in `sample_keys` (inside the caller's write transaction).

        Many keys (a first refresh: 100,000) go in as one statement (`_rows`).
        """
        self._rows("INSERT OR IGNORE INTO sample_keys (cluster, grp, topic, part) "
                   "SELECT ?, value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)",
                   "INSERT OR IGNORE INTO sample_keys (cluster, grp, topic, part) "
                   "VALUES (?, ?, ?, ?)", (cluster,), keys)
        self._follow_keys(cluster, cache)
        lost = [k for k in keys if k not in cache.key_ids]
        if lost:  # cannot happen inside one write transaction
            raise sqlite3.DatabaseError(f"{len(lost)} lag history keys were not stored")

    def _follow_keys(self, cluster: str, cache: _ClusterCache) -> None:
        """The cluster's keys past the last one known, read as one JSON array: a row per
        key is a GIL release and re-take per key (`_rows` says why that costs)."""
        args = (cluster, cache.last_key_id)
        try:
            doc = self._db.execute(
                "SELECT json_group_array(json_array(id, grp, topic, part)) FROM sample_keys "
                "WHERE cluster = ? AND id > ?", args).fetchone()[0]
            rows = orjson.loads(doc) if doc else []
        except (sqlite3.OperationalError, orjson.JSONDecodeError):  # no JSON functions
            rows = self._db.execute("SELECT id, grp, topic, part FROM sample_keys "
                                    "WHERE cluster = ? AND id > ?", args).fetchall()
        keys = {row[0]: (row[1], row[2], row[3]) for row in rows}
        cache.keys.update(keys)
        cache.key_ids.update(zip(keys.values(), keys, strict=True))
        if keys:
            cache.last_key_id = max(cache.last_key_id, max(keys))

    def _write_points(self, cluster: str, cache: _ClusterCache,
                      points: Iterable[tuple[str, int, Point, str]]
                      ) -> list[tuple[str, int, Point]]:
        inserts = []
        moved: dict[float, list[int]] = {}  # flat runs' tails, by their new time
        for topic, partition, point, kind in points:
            known = cache.points.get((topic, partition), [])
            if (
                kind == "end"
                and len(known) >= 2
                and known[-1][1].end == point.end == known[-2][1].end
                and known[-1][1].time <= point.time
            ):
                # a flat run: move its tail instead of adding a point
                row_id = known[-1][0]
                moved.setdefault(point.time, []).append(row_id)
                known[-1] = (row_id, point)
                continue
            inserts.append((topic, partition, point, kind))
        for at, ids in moved.items():  # one statement per time (a refresh's ends share one)
            self._db.execute("UPDATE points SET ts = ? WHERE id IN "
                             "(SELECT value FROM json_each(?))", (at, orjson.dumps(ids)))
        self._rows(
            "INSERT INTO points (cluster, topic, part, ts, end_offset, kind) SELECT ?, "
            "value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?)",
            "INSERT INTO points (cluster, topic, part, ts, end_offset, kind) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (cluster,), [(t, p, pt.time, pt.end, kind) for t, p, pt, kind in inserts])
        return [(t, p, pt) for t, p, pt, _ in inserts]

    def _rows(self, json_sql: str, plain_sql: str, head: tuple, rows: Sequence[tuple]) -> None:
        """Many rows in one statement over a JSON array (`json_sql`, bound to `head` and
        the array), else `executemany` (`plain_sql`, bound to `head` + each row).

        Each statement releases the GIL while SQLite runs and takes it back after;
        `executemany` does so for every row. The writer runs while the collector judges
        statuses on the main thread, and each take-back then waits up to the
        interpreter's switch interval (5 ms): 100 points and 10,000 group totals cost
        0.3-0.6 s that way, against milliseconds alone. `value ->> N` (SQLite 3.38)
        gives a JSON number back exactly (`json_extract` did not, for most floats).
        Rows JSON cannot carry exactly (a NUL in a name, a lone surrogate, an integer
        past 64 bits), or an SQLite without `->>`, take `executemany`."""
        if not rows:
            return
        doc = _json_rows(rows)
        if doc is not None:
            try:
                self._db.execute(json_sql, (*head, doc))
                return
            except sqlite3.OperationalError as exc:
                _log.debug("lag history: %s; rows written one by one", exc)
        self._db.executemany(plain_sql, [(*head, *row) for row in rows])

    def _maybe_prune(self, now: float) -> None:
        """Prune at most every `PRUNE_EVERY` seconds, across all processes sharing the file."""
        if time.time() - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = time.time()
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'pruned_at'").fetchone()
            if row is not None and time.time() - float(row[0]) < PRUNE_EVERY:
                return
        except (sqlite3.Error, ValueError):
            pass
        self.prune()

    def prune(self, now: float | None = None) -> None:
        """Drop rows past the retention, then cap every key's row count.

        The caps run per key on the key's index (the newest `max_*` rows stay), so
        pruning a large history never sorts the whole table.
        """
        self.wait()
        now = time.time() if now is None else now
        cutoff = now - self.retention_seconds
        with self._lock:
            self._last_prune = time.time()
            try:
                with self._transaction():
                    aged = self._db.execute("DELETE FROM refreshes WHERE ts < ?",
                                            (cutoff,)).rowcount
                    for table in ("points", "groups"):
                        self._db.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
                    # refreshes of the same keys keep their newest `max_samples`
                    capped = self._db.execute(
                        "DELETE FROM refreshes WHERE id IN (SELECT id FROM (SELECT id, "
                        "ROW_NUMBER() OVER (PARTITION BY cluster, keyset ORDER BY ts DESC, "
                        "id DESC) AS rn FROM refreshes) WHERE rn > ?)",
                        (self.max_samples,)).rowcount
                    # keys fall out of use only with the refreshes that used them
                    dropped = self._drop_unused_keys() if aged or capped else {}
                    self._cap("points", ("cluster", "topic", "part"), self.max_points)
                    self._cap("groups", ("cluster", "grp"), self.max_trend)
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('pruned_at', ?)",
                        (str(time.time()),),
                    )
            except sqlite3.Error as exc:
                _log.warning("cannot prune lag history %s: %s", self.path, exc)
                return
            for cluster, cache in self._caches.items():
                for row_id in dropped.get(cluster, ()):
                    key = cache.keys.pop(row_id, None)
                    if key is not None:
                        del cache.key_ids[key]
                if aged:  # else nothing this old was stored (a scan of every key is not free)
                    self._flush(cache)
                    for key, rows in list(cache.samples.items()):
                        kept = [s for s in rows if s.time >= cutoff]
                        if kept:
                            cache.samples[key] = kept
                        else:
                            del cache.samples[key]
                for tp, pts in list(cache.points.items()):
                    kept_points = [(i, p) for i, p in pts if p.time >= cutoff]
                    if kept_points:
                        cache.points[tp] = kept_points[-self.max_points:]
                    else:
                        del cache.points[tp]

    def _drop_unused_keys(self) -> dict[str, list[int]]:
        """Delete the `sample_keys` no refresh refers to any more; returns their ids.

        One key list is read per distinct keyset (refreshes of the same groups share
        theirs), so this reads a few arrays, not every refresh."""
        dropped: dict[str, list[int]] = {}
        clusters = [c for (c,) in self._db.execute("SELECT DISTINCT cluster FROM sample_keys")]
        for cluster in clusters:
            used: set[int] = set()
            for (blob,) in self._db.execute(
                    "SELECT key_ids FROM refreshes WHERE id IN (SELECT MAX(id) FROM refreshes "
                    "WHERE cluster = ? GROUP BY keyset)", (cluster,)):
                used.update(fmt.unpack_ids(blob))
            # ids in and out as one JSON array each: a row per key would take the GIL back
            # per key (`_rows`), and the prune runs beside a refresh
            doc = self._db.execute("SELECT json_group_array(id) FROM sample_keys "
                                   "WHERE cluster = ?", (cluster,)).fetchone()[0]
            unused = [i for i in orjson.loads(doc or "[]") if i not in used]
            if unused:
                self._db.execute("DELETE FROM sample_keys WHERE id IN "
                                 "(SELECT value FROM json_each(?))", (orjson.dumps(unused),))
                dropped[cluster] = unused
        return dropped

    def _cap(self, table: str, key: tuple[str, ...], limit: int) -> None:
        match = " AND ".join(f"{k} = ?" for k in key)
        over = self._db.execute(
            f"SELECT {', '.join(key)} FROM {table} GROUP BY {', '.join(key)} "
            f"HAVING COUNT(*) > ?", (limit,)
        ).fetchall()
        self._db.executemany(
            f"DELETE FROM {table} WHERE {match} AND id NOT IN (SELECT id FROM {table} "
            f"WHERE {match} ORDER BY ts DESC, id DESC LIMIT ?)",
            [(*k, *k, limit) for k in over],
        )

    # ------------------------------------------------------------ reading

    def windows(
        self, cluster: str, keys: Iterable[SampleKey], limit: int = 10
    ) -> dict[SampleKey, list[Sample]]:
        """The last `limit` samples (oldest first) of each (group, topic, partition)."""
        self.wait()
        with self._lock:
            cache = self._sync(cluster)
            out = {}
            for key in keys:
                rows = cache.samples.get(key)
                if rows:
                    out[key] = rows[-limit:]
            return out

    def points(self, cluster: str, keys: Iterable[PointKey]) -> dict[PointKey, list[Point]]:
        """End-offset points (oldest first) of each (topic, partition)."""
        self.wait()
        with self._lock:
            cache = self._sync(cluster)
            return {key: [p for _, p in cache.points[key]] for key in keys
                    if key in cache.points}

    def last_seen(self, cluster: str, since: float) -> dict[SampleKey, Sample]:
        """The newest sample of every group partition seen since `since` (for vanished topics)."""
        self.wait()
        with self._lock:
            cache = self._sync(cluster)
            return {key: rows[-1] for key, rows in cache.samples.items()
                    if rows and rows[-1].time >= since}

    def group_trend(
        self, group: str, limit: int = 30, *, cluster: str | None = None
    ) -> list[tuple[float, int]]:
        """(time, total lag) of the group's last `limit` refreshes, oldest first.

        `cluster` defaults to the one this store last recorded (any cluster when none).
        """
        rows = self._group_rows("total_lag", group, limit, cluster)
        return [(float(ts), int(value)) for ts, value in rows]

    def group_statuses(
        self, group: str, limit: int = 30, *, cluster: str | None = None
    ) -> list[tuple[float, str]]:
        """(time, status) of the group's last `limit` refreshes, oldest first."""
        rows = self._group_rows("status", group, limit, cluster)
        return [(float(ts), str(value)) for ts, value in rows]

    def _group_rows(self, column: str, group: str, limit: int,
                    cluster: str | None) -> list[tuple]:
        self.wait()
        cluster = cluster or self._last_cluster
        query = f"SELECT ts, {column} FROM groups WHERE grp = ?"
        args: list[object] = [group]
        if cluster is not None:
            query += " AND cluster = ?"
            args.append(cluster)
        query += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(max(0, int(limit)))
        with self._lock:
            try:
                rows = self._db.execute(query, args).fetchall()
            except sqlite3.Error as exc:
                _log.warning("cannot read lag history %s: %s", self.path, exc)
                return []
        return list(reversed(rows))

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests and `lagdeck lag -v`)."""
        self.wait()
        with self._lock:
            counts = {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                      for t in ("points", "groups")}
            samples = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM refreshes")
            return {"samples": int(samples.fetchone()[0]), **counts}

    def close(self) -> None:
        """Finish a background write, then close the file."""
        try:
            self.wait()
        finally:
            with self._writes_lock:
                writer, self._writer = self._writer, None
            if writer is not None:
                writer.shutdown(wait=True)
            with self._lock, contextlib.suppress(sqlite3.Error):
                self._db.close()

    def __enter__(self) -> LagHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ cache

    def _transaction(self):
        return _Transaction(self._db)

    def _sync(self, cluster: str) -> _ClusterCache:
        """Bring the cluster's cache up to date with rows written since the last read."""
        cache = self._caches.get(cluster)
        fresh = cache is None
        if cache is None:
            cache = self._caches[cluster] = _ClusterCache()
        try:
            if fresh:
                self._load(cluster, cache)
            else:
                self._follow(cluster, cache)
        except sqlite3.Error as exc:
            _log.warning("cannot read lag history %s: %s", self.path, exc)
        return cache

    def _load(self, cluster: str, cache: _ClusterCache) -> None:
        """The cluster's newest `cache_samples` per key and `max_points` per partition.

        In one read transaction: the keys, then which refreshes are needed (newest
        first, a refresh is skipped once `cache_samples` newer ones of the same
        keyset were taken: its keys have their samples already), then those rows'
        columns. A history of 100,000 group partitions with five samples each
        reads 5 rows of packed columns instead of 500,000 rows.
        """
        keep = self.cache_samples
        own = not self._db.in_transaction
        if own:
            self._db.execute("BEGIN")
        try:
            self._follow_keys(cluster, cache)
            taken: dict[str, int] = defaultdict(int)
            wanted: list[int] = []
            last_refresh = 0
            keysets: set[str] = set()
            for row_id, keyset in self._db.execute(
                    "SELECT id, keyset FROM refreshes WHERE cluster = ? "
                    "ORDER BY ts DESC, id DESC", (cluster,)):
                keysets.add(keyset)
                last_refresh = max(last_refresh, row_id)
                taken[keyset] += 1
                if taken[keyset] <= keep:
                    wanted.append(row_id)
            rows: list[tuple] = []
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                rows += self._db.execute(
                    "SELECT id, ts, key_ids, committed, end_offset, active FROM refreshes "
                    f"WHERE id IN ({', '.join('?' * len(part))})", part).fetchall()
            points = self._db.execute(
                "SELECT id, topic, part, ts, end_offset FROM (SELECT *, ROW_NUMBER() OVER "
                "(PARTITION BY topic, part ORDER BY ts DESC, id DESC) AS rn FROM points "
                "WHERE cluster = ?) WHERE rn <= ? ORDER BY ts, id",
                (cluster, self.max_points),
            ).fetchall()
            last_point = self._max_id("points")
        finally:
            if own:
                self._db.execute("COMMIT")
        rows.sort(key=lambda r: (r[1], r[0]))
        keys = cache.keys
        samples = cache.samples
        if len(keysets) == 1 and rows:
            # the usual case, refreshes of the same groups: each key's series is one
            # column across the rows (zip: no Python code per sample)
            ids = fmt.unpack_ids(rows[0][2])
            columns = [fmt.samples(ts, committed, end, active)
                       for _id, ts, _k, committed, end, active in rows]
            for key_id, series in zip(ids, map(list, zip(*columns, strict=False)),
                                      strict=False):
                key = keys.get(key_id)
                if key is not None:
                    samples[key] = series
        else:
            by_id: dict[int, list[Sample]] = defaultdict(list)
            for _id, ts, key_ids, committed, end, active in rows:
                for key_id, sample in zip(fmt.unpack_ids(key_ids),
                                          fmt.samples(ts, committed, end, active),
                                          strict=False):
                    by_id[key_id].append(sample)
            for key_id, series in by_id.items():
                key = keys.get(key_id)
                if key is not None:
                    samples[key] = series[-keep:]
        cache.last_refresh_id = last_refresh
        self._add_points(cache, points)
        cache.last_point_id = last_point

    def _flush(self, cache: _ClusterCache) -> None:
        if cache.pending:
            pending, cache.pending = cache.pending, []
            for taken_at, samples in pending:
                self._add_samples(cache, [
                    (s[:3], Sample(taken_at, s.committed, s.end, s.active)) for s in samples])

    def _follow(self, cluster: str, cache: _ClusterCache, *, flush: bool = True) -> None:
        """Take in what other processes wrote since the last read (rows past the last id),
        and (`flush`) this process's own pending samples."""
        if flush:
            self._flush(cache)
        self._follow_keys(cluster, cache)
        rows = self._db.execute(
            # `+cluster`: walk the row ids past the last one seen, not the cluster index
            "SELECT id, ts, key_ids, committed, end_offset, active FROM refreshes "
            "WHERE id > ? AND +cluster = ? ORDER BY id",
            (cache.last_refresh_id, cluster),
        ).fetchall()
        keys = cache.keys
        for row_id, ts, key_ids, committed, end, active in rows:
            self._add_samples(cache, [
                (keys[k], sample) for k, sample in zip(
                    fmt.unpack_ids(key_ids), fmt.samples(ts, committed, end, active),
                    strict=False) if k in keys])
            cache.last_refresh_id = max(cache.last_refresh_id, row_id)
        rows = self._db.execute(
            "SELECT id, topic, part, ts, end_offset FROM points WHERE id > ? AND +cluster = ? "
            "ORDER BY id",
            (cache.last_point_id, cluster),
        ).fetchall()
        if rows:
            self._add_points(cache, rows)
            cache.last_point_id = max(r[0] for r in rows)

    def _max_id(self, table: str) -> int:
        row = self._db.execute(f"SELECT MAX(id) FROM {table}").fetchone()
        return int(row[0] or 0)

    def _add_samples(self, cache: _ClusterCache,
                     samples: Iterable[tuple[SampleKey, Sample]]) -> None:
        for key, sample in samples:
            series = cache.samples[key]
            if not series or series[-1].time <= sample.time:
                series.append(sample)
            else:
                bisect.insort(series, sample, key=lambda s: s.time)
            if len(series) > self.cache_samples:
                del series[: len(series) - self.cache_samples]

    def _add_points(self, cache: _ClusterCache, rows: Sequence[tuple]) -> None:
        for row_id, topic, part, ts, end in rows:
            series = cache.points[(topic, int(part))]
            item = (int(row_id), Point(float(ts), int(end)))
            if not series or series[-1][1].time <= item[1].time:
                series.append(item)
            else:
                bisect.insort(series, item, key=lambda x: x[1].time)
            if len(series) > self.max_points:
                del series[: len(series) - self.max_points]


def _columns(samples: list[PartitionSample]) -> tuple[bytes, bytes, bytes]:
    """committed, end_offset and active of a refresh, packed (`collectors.history_format`)."""
    return (fmt.pack_offsets([s[3] for s in samples]),  # committed, end, active
            fmt.pack_offsets([s[4] for s in samples]),
            fmt.pack_active([s[5] for s in samples]))


def _json_rows(rows: Sequence[tuple]) -> bytes | None:
    """Rows as a JSON array for `LagHistory._rows`, or None when JSON would not carry them
    exactly (a NUL in a name: SQLite's JSON functions stop at it)."""
    try:
        doc = orjson.dumps(rows)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return None if b"\\u0000" in doc else doc


def _storable(key: SampleKey) -> bool:
    try:
        key[0].encode("utf-8")
        key[1].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Transaction:
    """BEGIN/COMMIT around a block (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
