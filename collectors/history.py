"""Lag history in SQLite under the state directory, shared by `lagdeck lag`, `watch` and the TUI.

Three series, each keyed by cluster (the bootstrap servers), so profiles do
not mix:

- `samples`: per group partition and refresh, the committed offset, the end
  offset and whether the group had live members. The status window
  (`collectors.status`) is the last N of them.
- `points`: per topic partition, end offsets over time (and, from exact
  reads, record times), the lookup table of `collectors.timelag`. Flat runs
  are stored as their first and last point, as kafka-lag-exporter does, so
  an idle topic does not push its production history out of the table.
- `groups`: per group and refresh, total lag and status: the TUI sparkline.

Retention is bounded twice: rows older than `retention_seconds` go, and each
key keeps at most `max_samples` samples / `max_points` points / `max_trend`
group rows. Pruning runs from `record` at most every ten minutes, counted
across all processes sharing the file (so cron runs of `lagdeck lag` prune too).

Reads come from an in-memory cache per cluster, loaded once and then brought
up to date by row id, so rows written by another lagdeck process are seen on
the next read and a refresh of 10,000 partitions costs no table scan.
The store is shared by a TUI worker thread and the main thread: one
connection with `check_same_thread=False` behind a lock; WAL mode lets
separate processes read while one writes.
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from collectors.errors import LagdeckError
from collectors.logs import get_logger
from collectors.paths import state_dir
from collectors.status import Sample
from collectors.timelag import Point

FILENAME = "lag-history.sqlite3"
SCHEMA_VERSION = "1"
#: pruning runs from `record` at most this often (seconds), across processes
PRUNE_EVERY = 600.0

_log = get_logger("history")

SampleKey = tuple[str, str, int]  # group, topic, partition
PointKey = tuple[str, int]  # topic, partition


class _AsBool(dict):
    """The `active` column (NULL, 0, 1) as `Sample.active`: one dict lookup per row."""

    def __missing__(self, key: object) -> bool:
        return bool(key)


_AS_BOOL = _AsBool({None: None, 0: False, 1: True})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, grp TEXT NOT NULL, topic TEXT NOT NULL,
    part INTEGER NOT NULL, ts REAL NOT NULL, committed INTEGER, end_offset INTEGER,
    active INTEGER);
-- the key index covers what a window needs (and `id`, the tie-break of equal times), so
-- the first read walks the index alone; it replaced `samples_key` (cluster .. ts)
DROP INDEX IF EXISTS samples_key;
CREATE INDEX IF NOT EXISTS samples_window
    ON samples (cluster, grp, topic, part, ts, id, committed, end_offset, active);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
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
        self.last_sample_id = 0
        self.last_point_id = 0
        #: (first row id, time, samples) this process wrote, taken into `samples` on the
        #: next read (`_flush`): a one-shot `lagdeck lag` never reads them back, a TUI
        #: does on its next poll
        self.pending: list[tuple[int, float, list[PartitionSample]]] = []


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
        #: a `record(background=True)` in progress, and what it raised
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0,
                                       isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            if str(self.path) != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
        except sqlite3.Error as exc:
            raise LagdeckError(f"cannot open the lag history {self.path}: {exc}") from None

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
        followed, then ours are inserted; the ids of our rows are contiguous
        (nobody else can write meanwhile), so the cache takes them as they are
        instead of reading them back.

        `background`: write in a thread and return at once. The samples go in as
        one statement (`_insert_samples`), during which SQLite holds no GIL, so the
        collector judges statuses on the other core meanwhile (10,000 groups: 0.5 s
        of inserts). Every other method of the store (reads, the next `record`,
        `close`) first waits for that write, so no reader ever sees the history
        without it; the owner must `close` the store before the process exits.
        """
        self.wait()
        samples = list(samples)
        if background:
            # the JSON is built here: in the writer thread, this Python work and the
            # caller's would take the GIL from each other
            args = (cluster, taken_at, samples, list(points), list(groups),
                    _samples_json(samples))
            self._writer = threading.Thread(target=self._write_caught, args=args,
                                            name="lagdeck-history-write", daemon=True)
            self._writer.start()
            return
        self._write(cluster, taken_at, samples, points, groups)

    def wait(self) -> None:
        """Wait for a `record(background=True)` still writing; re-raise what it raised."""
        writer = self._writer
        if writer is None or writer is threading.current_thread():
            return
        writer.join()
        self._writer = None
        failed, self._writer_error = self._writer_error, None
        if failed is not None:
            raise failed

    def _write_caught(self, *args: Any) -> None:
        try:
            self._write(*args)
        except BaseException as exc:  # handed to the next caller of `wait`
            self._writer_error = exc

    def _write(self, cluster: str, taken_at: float, samples: list[PartitionSample],
               points: Iterable[tuple[str, int, Point, str]],
               groups: Iterable[GroupTotal], doc: bytes | None = None) -> None:
        with self._lock:
            cache = self._caches.get(cluster) or self._sync(cluster)
            try:
                with self._transaction():
                    self._follow(cluster, cache)
                    self._insert_samples(cluster, taken_at, samples, doc)
                    added_points = self._write_points(cluster, cache, points)
                    self._db.executemany(
                        "INSERT INTO groups (cluster, grp, ts, total_lag, status) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(cluster, g.group, taken_at, g.total_lag, g.status) for g in groups],
                    )
                    last_sample = self._max_id("samples")
                    last_point = self._max_id("points")
            except sqlite3.Error as exc:
                _log.warning("cannot write lag history %s: %s", self.path, exc)
                return
            if samples:  # rows built when next read (`_flush`): a one-shot run never does
                cache.pending.append((last_sample - len(samples) + 1, taken_at, samples))
            first = last_point - len(added_points) + 1
            self._add_points(cache, [(first + i, topic, part, p.time, p.end)
                                     for i, (topic, part, p) in enumerate(added_points)])
            cache.last_sample_id = max(cache.last_sample_id, last_sample)
            cache.last_point_id = max(cache.last_point_id, last_point)
            self._last_cluster = cluster
            self._maybe_prune(taken_at)

    def _insert_samples(self, cluster: str, taken_at: float, samples: list[PartitionSample],
                        doc: bytes | None = None) -> None:
        """All samples of a refresh in one INSERT ... SELECT over a JSON array.

        One statement runs inside one `sqlite3_step`, with the GIL released
        throughout; `executemany` takes the GIL back for every row's parameters,
        and a thread writing that way slowed the collector's main thread (and was
        slowed by it) more than it gained. Values JSON cannot carry exactly (a
        lone surrogate, an integer past 64 bits, a NUL in a name) take
        `executemany`, as do SQLite builds without the JSON functions.
        """
        if not samples:
            return
        doc = doc or _samples_json(samples)
        if doc is not None:
            try:
                self._db.execute(
                    "INSERT INTO samples (cluster, grp, topic, part, ts, committed, "
                    "end_offset, active) SELECT ?, json_extract(value, '$[0]'), "
                    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?, "
                    "json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
                    "json_extract(value, '$[5]') FROM json_each(?)",
                    (cluster, taken_at, doc),
                )
                return
            except sqlite3.OperationalError as exc:  # no JSON functions in this SQLite
                if "json" not in str(exc):
                    raise
        self._db.executemany(
            "INSERT INTO samples (cluster, grp, topic, part, ts, committed, "
            "end_offset, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(cluster, s.group, s.topic, s.partition, taken_at, s.committed, s.end,
              None if s.active is None else int(s.active)) for s in samples],
        )

    def _write_points(self, cluster: str, cache: _ClusterCache,
                      points: Iterable[tuple[str, int, Point, str]]
                      ) -> list[tuple[str, int, Point]]:
        inserts = []
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
                self._db.execute("UPDATE points SET ts = ? WHERE id = ?", (point.time, row_id))
                known[-1] = (row_id, point)
                continue
            inserts.append((topic, partition, point, kind))
        self._db.executemany(
            "INSERT INTO points (cluster, topic, part, ts, end_offset, kind) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(cluster, t, p, pt.time, pt.end, kind) for t, p, pt, kind in inserts],
        )
        return [(t, p, pt) for t, p, pt, _ in inserts]

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
                    for table in ("samples", "points", "groups"):
                        self._db.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
                    self._cap("samples", ("cluster", "grp", "topic", "part"), self.max_samples)
                    self._cap("points", ("cluster", "topic", "part"), self.max_points)
                    self._cap("groups", ("cluster", "grp"), self.max_trend)
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('pruned_at', ?)",
                        (str(time.time()),),
                    )
            except sqlite3.Error as exc:
                _log.warning("cannot prune lag history %s: %s", self.path, exc)
                return
            for cache in self._caches.values():
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
            return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                    for t in ("samples", "points", "groups")}

    def close(self) -> None:
        """Finish a background write, then close the file."""
        try:
            self.wait()
        finally:
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

        Two reads of the (covering) key index in one read transaction (so they see the same
        rows, and `last_sample_id` is the last of them): the keys with their row
        counts, then only the sample columns in the same order, cut into each key's
        run by its count. A ROW_NUMBER() window sorted every row twice more (0.54 s
        for 50,000 rows); returning the key's text with every row and finding the
        runs in Python cost twice what this does (2.0 s against 0.9 s for 500,000).
        """
        keep = self.cache_samples
        as_bool = _AS_BOOL
        new = tuple.__new__
        samples = cache.samples
        own = not self._db.in_transaction
        if own:
            self._db.execute("BEGIN")
        try:
            keys = self._db.execute(
                "SELECT grp, topic, part, COUNT(*) FROM samples INDEXED BY samples_window "
                "WHERE cluster = ? GROUP BY grp, topic, part ORDER BY grp, topic, part",
                (cluster,),
            ).fetchall()
            rows = self._db.execute(
                "SELECT ts, committed, end_offset, active FROM samples INDEXED BY samples_window "
                "WHERE cluster = ? ORDER BY grp, topic, part, ts, id",
                (cluster,),
            ).fetchall()
            last_sample = self._max_id("samples")
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
        if sum(k[3] for k in keys) != len(rows):  # one read transaction: cannot happen
            raise sqlite3.DatabaseError("lag history changed while it was read")
        stop = 0
        for grp, topic, part, count in keys:
            start, stop = stop, stop + count
            # `ts` is a REAL column (floats); tuple.__new__ skips the named tuple's
            # Python-level __new__ (0.35 s instead of 0.54 s per 500,000 samples)
            samples[(grp, topic, int(part))] = [
                new(Sample, (ts, committed, end, as_bool[active]))
                for ts, committed, end, active in rows[max(start, stop - keep):stop]]
        cache.last_sample_id = last_sample
        self._add_points(cache, points)
        cache.last_point_id = last_point

    def _flush(self, cache: _ClusterCache) -> None:
        if cache.pending:
            pending, cache.pending = cache.pending, []
            for first, taken_at, samples in pending:
                self._add_samples(cache, [
                    (first + i, s.group, s.topic, s.partition, taken_at, s.committed, s.end,
                     None if s.active is None else int(s.active))
                    for i, s in enumerate(samples)])

    def _follow(self, cluster: str, cache: _ClusterCache) -> None:
        self._flush(cache)
        rows = self._db.execute(
            # `+cluster`: walk the row ids past the last one seen, not the whole key index
            "SELECT id, grp, topic, part, ts, committed, end_offset, active FROM samples "
            "WHERE id > ? AND +cluster = ? ORDER BY id",
            (cache.last_sample_id, cluster),
        ).fetchall()
        if rows:
            self._add_samples(cache, rows)
            cache.last_sample_id = max(r[0] for r in rows)
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

    def _add_samples(self, cache: _ClusterCache, rows: Sequence[tuple]) -> None:
        for _id, grp, topic, part, ts, committed, end, active in rows:
            series = cache.samples[(grp, topic, int(part))]
            sample = Sample(float(ts), committed, end, _AS_BOOL[active])
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


def _samples_json(samples: list[PartitionSample]) -> bytes | None:
    """The samples as a JSON array for `_insert_samples`, or None when JSON would not
    carry them exactly (a lone surrogate, an integer past 64 bits, a NUL in a name)."""
    try:
        doc = orjson.dumps([(s.group, s.topic, s.partition, s.committed, s.end, s.active)
                            for s in samples])
    except (TypeError, orjson.JSONEncodeError):
        return None
    return None if b"\\u0000" in doc else doc


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
