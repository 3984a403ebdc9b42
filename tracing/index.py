"""The correlation index: id -> record positions, filled as topics are scanned.

One SQLite file per cluster under the state directory. For each partition it
records the offset range already scanned (`coverage`), so the next lookup of
*any* id in that range is answered from the index, and only the new tail
(and, for a longer `--since`, an older head) is read from Kafka.

Layout, chosen so that a scan of a million records costs a few thousand
SQLite rows rather than millions:

- `partitions`: one row per partition *incarnation* (`tp_id`), with its
  covered range `[start, end)`, the time bound `since_ms` the start satisfies
  and the broker's topic id. A topic deleted and recreated (its topic id
  changes, or its offsets go backwards) gets a new incarnation; the old one is
  marked dead and its positions are ignored, then purged.
- `postings`: append-only segments, each a marshal-encoded
  `{id bytes: [position, ...]}` (zlib-compressed) for one of 4096 hash buckets. A position is
  `offset << 20 | tp_id`. A lookup reads the few segments of one bucket;
  buckets with many segments are merged when they are next written.
- `flow_blocks` / `flow_names`: the flow fact of every record (see
  `tracing.flowfacts`), packed as int64 columns per block of consecutive
  offsets, and the strings the facts hash; `lagdeck flows` reads these.
- `details`: what a timeline shows of each record (timestamp, key, event
  type, correlation and trace ids, dead-letter facts) in compressed
  marshal-encoded blocks of consecutive offsets, so a lookup never fetches old records from
  the broker (on some brokers one fetch in a big partition takes 50 ms+).

Ids are UTF-8 bytes (see `tracing.extract`). The settings that decide which
ids a record has are fingerprinted; when they change, the index starts over.
"""

from __future__ import annotations

import hashlib
import marshal
import sqlite3
import threading
import time
import zlib
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.config import ClusterConfig
from collectors.errors import LagdeckError
from collectors.logs import get_logger
from collectors.paths import state_dir

SCHEMA_VERSION = "5"  # 4: flow facts (tracing.flowfacts); 5: rows with payload ids and values
BUCKETS = 4096
_BUCKET_MASK = BUCKETS - 1
TP_BITS = 20
_TP_MASK = (1 << TP_BITS) - 1
#: Segments of one bucket before they are merged into one.
MAX_SEGMENTS = 64
#: Records per block of stored rows (what a lookup unpacks to show one event).
BLOCK = 512
#: Records per block of flow facts (read in bulk, never one by one).
FACT_BLOCK = 8192

TP = tuple[str, int]

_log = get_logger("trace.index")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    tp_id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    topic_id TEXT,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    since_ms INTEGER NOT NULL,
    live INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS partitions_live ON partitions(topic, partition) WHERE live = 1;
CREATE TABLE IF NOT EXISTS postings (
    seg INTEGER PRIMARY KEY,
    bucket INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_bucket ON postings(bucket);
CREATE TABLE IF NOT EXISTS details (
    tp_id INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (tp_id, first_offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_blocks (
    tp_id INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    facts BLOB NOT NULL,
    PRIMARY KEY (tp_id, first_offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_names (h INTEGER PRIMARY KEY, name TEXT NOT NULL);
"""


def bucket_of(ident: bytes) -> int:
    return zlib.crc32(ident) & _BUCKET_MASK


def index_path(cluster: ClusterConfig) -> Path:
    """The index file of one cluster (keyed by its bootstrap servers)."""
    servers = ",".join(sorted(s.strip() for s in cluster.bootstrap_servers.split(",")))
    digest = hashlib.sha1(servers.encode()).hexdigest()[:16]
    folder = state_dir() / "trace-index"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{digest}.sqlite"


@dataclass(frozen=True)
class Coverage:
    """What the index holds for one live partition: every record in `[start, end)`."""

    tp_id: int
    topic: str
    partition: int
    topic_id: str | None
    start: int
    end: int
    #: records at or after this time (ms) are all at offsets >= start
    since_ms: int


class CorrelationIndex:
    """The index file; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self._lock = threading.RLock()
        #: unpacked row blocks, (tp_id, first_offset, blob size) -> rows: one lookup reads
        #: the same few blocks for the matches, the hop and the dead letters
        self._blocks: dict[tuple[int, int, int], list[tuple]] = {}
        try:
            self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
            self._check_meta()
        except sqlite3.DatabaseError as exc:
            raise LagdeckError(f"correlation index {path} is unusable ({exc}); "
                               "delete the file to rebuild it") from None

    @classmethod
    def for_cluster(cls, cluster: ClusterConfig, fingerprint: str) -> CorrelationIndex:
        return cls(index_path(cluster), fingerprint)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CorrelationIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -----------------------------------------------------------------

    def _check_meta(self) -> None:
        """Start over when the schema or the id settings changed (the postings would lie)."""
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if rows.get("version") == SCHEMA_VERSION and rows.get("fingerprint") == self.fingerprint:
            return
        if rows:
            _log.info("correlation index %s reset (version %s/%s, settings changed: %s)",
                      self.path, rows.get("version"), SCHEMA_VERSION,
                      rows.get("fingerprint") != self.fingerprint)
        with self._tx():
            self._db.execute("DELETE FROM postings")
            self._db.execute("DELETE FROM partitions")
            self._db.execute("DELETE FROM details")
            self._db.execute("DELETE FROM flow_blocks")
            self._db.execute("DELETE FROM flow_names")
            self._db.execute("DELETE FROM meta")
            self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("version", SCHEMA_VERSION),
                                  ("fingerprint", self.fingerprint)])

    class _Tx:
        def __init__(self, index: CorrelationIndex) -> None:
            self.index = index

        def __enter__(self) -> sqlite3.Connection:
            self.index._lock.acquire()
            self.index._db.execute("BEGIN IMMEDIATE")
            return self.index._db

        def __exit__(self, exc_type, *rest: object) -> None:
            try:
                self.index._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.index._lock.release()

    def _tx(self) -> CorrelationIndex._Tx:
        return CorrelationIndex._Tx(self)

    # -- coverage -------------------------------------------------------------

    def coverage(self) -> dict[TP, Coverage]:
        with self._lock:
            rows = self._db.execute(
                'SELECT tp_id, topic, partition, topic_id, start, "end", since_ms '
                "FROM partitions WHERE live = 1").fetchall()
        return {(r[1], r[2]): Coverage(*r) for r in rows}

    def reconcile(self, bounds: Mapping[TP, tuple[int, int]],
                  topic_ids: Mapping[str, str | None], topics: Iterable[str]) -> list[str]:
        """Retire partitions that no longer hold what was indexed; returns one note per topic.

        `bounds` are the current (earliest, end) offsets, `topics` the topics
        that exist now. A partition is retired when its topic or partition is
        gone, its topic id changed, or its end offset is below the indexed end
        (offsets went backwards: deleted and recreated).
        """
        existing = set(topics)
        retired: dict[str, str] = {}
        ids_to_set: list[tuple[str, int]] = []
        for tp, cov in self.coverage().items():
            topic = tp[0]
            now_id = topic_ids.get(topic)
            if topic not in existing:
                retired.setdefault(topic, "deleted")
            elif tp not in bounds:
                retired.setdefault(topic, "has fewer partitions")
            elif now_id and cov.topic_id and now_id != cov.topic_id:
                retired.setdefault(topic, "was deleted and recreated (new topic id)")
            elif bounds[tp][1] < cov.end:
                retired.setdefault(topic, "was deleted and recreated (offsets went backwards)")
            else:
                if now_id and not cov.topic_id:
                    ids_to_set.append((now_id, cov.tp_id))
                continue
            self._retire(cov.tp_id)
        if ids_to_set:
            with self._tx() as db:
                db.executemany("UPDATE partitions SET topic_id = ? WHERE tp_id = ?", ids_to_set)
        notes = []
        for topic, why in sorted(retired.items()):
            note = f"{topic} {why}: its part of the correlation index was dropped and rebuilt"
            _log.info(note)
            notes.append(note)
        return notes

    def _retire(self, tp_id: int) -> None:
        with self._tx() as db:
            self._blocks.clear()
            db.execute("UPDATE partitions SET live = 0 WHERE tp_id = ?", (tp_id,))
            db.execute("DELETE FROM details WHERE tp_id = ?", (tp_id,))
            db.execute("DELETE FROM flow_blocks WHERE tp_id = ?", (tp_id,))

    def stats(self) -> dict[str, int]:
        with self._lock:
            parts = self._db.execute("SELECT count(*) FROM partitions WHERE live = 1").fetchone()
            segs = self._db.execute("SELECT count(*) FROM postings").fetchone()
            covered = self._db.execute(
                'SELECT coalesce(sum("end" - start), 0) FROM partitions WHERE live = 1').fetchone()
        return {"partitions": parts[0], "segments": segs[0], "covered_offsets": covered[0]}

    # -- lookup ---------------------------------------------------------------

    def lookup(self, ids: Iterable[bytes]) -> dict[TP, set[int]]:
        """Offsets per partition of records carrying any of `ids`, within live coverage."""
        out: dict[TP, set[int]] = defaultdict(set)
        for hits in self.lookup_each(ids).values():
            for tp, offsets in hits.items():
                out[tp] |= offsets
        return dict(out)

    def lookup_each(self, ids: Iterable[bytes]) -> dict[bytes, dict[TP, set[int]]]:
        """`lookup` per id (one coverage read, one pass over each bucket)."""
        live = {c.tp_id: c for c in self.coverage().values()}
        out: dict[bytes, dict[TP, set[int]]] = {}
        wanted = list(dict.fromkeys(ids))
        by_bucket: dict[int, list[bytes]] = defaultdict(list)
        for ident in wanted:
            by_bucket[bucket_of(ident)].append(ident)
            out[ident] = {}
        with self._lock:
            for bucket, idents in by_bucket.items():
                for (blob,) in self._db.execute(
                        "SELECT blob FROM postings WHERE bucket = ?", (bucket,)):
                    segment = _load(blob)
                    for ident in idents:
                        for pos in segment.get(ident, ()):
                            cov = live.get(pos & _TP_MASK)
                            offset = pos >> TP_BITS
                            if cov is not None and cov.start <= offset < cov.end:
                                out[ident].setdefault((cov.topic, cov.partition),
                                                      set()).add(offset)
        return out

    def rows(self, hits: Mapping[TP, Iterable[int]]) -> list[tuple[str, int, tuple]]:
        """(topic, partition, row) of each hit position that has a stored row."""
        live = self.coverage()
        out = []
        with self._lock:
            for tp, offsets in hits.items():
                cov = live.get(tp)
                if cov is None:
                    continue
                block: list[tuple] = []
                for offset in sorted(set(offsets)):
                    if not block or not block[0][0] <= offset <= block[-1][0]:
                        found = self._db.execute(
                            "SELECT first_offset, blob FROM details WHERE tp_id = ? AND "
                            "first_offset <= ? AND last_offset >= ? "
                            "ORDER BY first_offset DESC LIMIT 1",
                            (cov.tp_id, offset, offset)).fetchone()
                        block = self._block(cov.tp_id, *found) if found else []
                    i = bisect_left(block, offset, key=lambda r: r[0])
                    if i < len(block) and block[i][0] == offset:
                        out.append((tp[0], tp[1], block[i]))
        return out

    # -- writing --------------------------------------------------------------

    def incarnation(self, topic: str, partition: int, topic_id: str | None,
                    start: int, since_ms: int) -> int:
        """The live tp_id of a partition, creating an empty coverage at `start` if new."""
        with self._tx() as db:
            row = db.execute("SELECT tp_id FROM partitions WHERE topic = ? AND partition = ? "
                             "AND live = 1", (topic, partition)).fetchone()
            if row:
                return int(row[0])
            cur = db.execute(
                'INSERT INTO partitions (topic, partition, topic_id, start, "end", since_ms, '
                "live, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (topic, partition, topic_id, start, start, since_ms, time.time()))
            if cur.lastrowid is None:  # sqlite3 sets it after every INSERT
                raise AssertionError("INSERT INTO partitions returned no rowid")
            tp_id = int(cur.lastrowid)
        if tp_id > _TP_MASK:
            self.reset("partition incarnations exhausted")
            return self.incarnation(topic, partition, topic_id, start, since_ms)
        return tp_id

    def _block(self, tp_id: int, first_offset: int, blob: bytes) -> list[tuple]:
        key = (tp_id, first_offset, len(blob))
        rows = self._blocks.get(key)
        if rows is None:
            rows = _load_rows(blob)
            if len(self._blocks) >= 64:
                self._blocks.pop(next(iter(self._blocks)))
            self._blocks[key] = rows
        return rows

    def reset(self, why: str) -> None:
        _log.info("correlation index %s reset: %s", self.path, why)
        with self._tx() as db:
            self._blocks.clear()
            db.execute("DELETE FROM postings")
            db.execute("DELETE FROM partitions")
            db.execute("DELETE FROM details")
            db.execute("DELETE FROM flow_blocks")
            db.execute("DELETE FROM flow_names")

    def write(self, postings: Mapping[bytes, list[int]],
              coverage: Mapping[int, tuple[int, int, int]],
              rows: Mapping[int, Sequence[tuple]] | None = None,
              flows: tuple[Mapping[int, Sequence[tuple]], Mapping[int, str]] | None = None
              ) -> None:
        """Append postings and rows, and extend coverage (tp_id -> start, end, since_ms).

        `flows` is (tp_id -> flow facts in offset order, hash -> name) from
        `tracing.flowfacts`; written in the same transaction, so what the
        coverage claims always has its facts.

        One transaction. `rows` are per tp_id in offset order, each starting
        with its offset. Coverage only grows: the new range is merged with the
        stored one, so two scans racing on one partition cannot shrink it.
        """
        buckets: dict[int, dict[bytes, list[int]]] = defaultdict(dict)
        for ident, positions in postings.items():
            buckets[zlib.crc32(ident) & _BUCKET_MASK][ident] = positions
        segments = [(b, _pack(seg)) for b, seg in buckets.items()]
        blocks = []
        for tp_id, records in (rows or {}).items():
            for i in range(0, len(records), BLOCK):
                block = records[i:i + BLOCK]
                blocks.append((tp_id, block[0][0], block[-1][0], _pack(list(block))))
        facts, names = pack_facts(flows[0]) if flows else [], flows[1] if flows else {}
        with self._tx() as db:
            self._blocks.clear()  # under the lock: rows() reads the cache holding it
            db.executemany("INSERT INTO postings (bucket, blob) VALUES (?, ?)", segments)
            db.executemany("INSERT OR REPLACE INTO details VALUES (?, ?, ?, ?)", blocks)
            db.executemany("INSERT OR REPLACE INTO flow_blocks VALUES (?, ?, ?, ?)", facts)
            db.executemany("INSERT OR IGNORE INTO flow_names VALUES (?, ?)", names.items())
            for tp_id, (start, end, since_ms) in coverage.items():
                db.execute(
                    'UPDATE partitions SET start = min(start, ?), "end" = max("end", ?), '
                    "since_ms = min(since_ms, ?), updated_at = ? WHERE tp_id = ? AND live = 1",
                    (start, end, since_ms, time.time(), tp_id))
            if buckets:
                self._compact(db, list(buckets))

    # -- flow facts -----------------------------------------------------------

    def flow_block_list(self, tp_ids: Iterable[int]) -> list[tuple[int, int, int, int]]:
        """(tp_id, first_offset, last_offset, byte size) of the fact blocks of the partitions,
        without reading them (so a reader can size its arrays first)."""
        wanted = sorted(set(tp_ids))
        out: list[tuple[int, int, int, int]] = []
        with self._lock:
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                out += self._db.execute(
                    "SELECT tp_id, first_offset, last_offset, length(facts) FROM flow_blocks "
                    f"WHERE tp_id IN ({','.join('?' * len(part))}) "
                    "ORDER BY tp_id, first_offset", part).fetchall()
        return out

    def flow_block(self, tp_id: int, first_offset: int) -> bytes | None:
        """One block of packed facts (see `flow_block_list`); None if it went away."""
        with self._lock:
            row = self._db.execute(
                "SELECT facts FROM flow_blocks WHERE tp_id = ? AND first_offset = ?",
                (tp_id, first_offset)).fetchone()
        return None if row is None else row[0]

    def flow_names(self, hashes: Iterable[int]) -> dict[int, str]:
        """The names (order ids, keys, event types) behind fact hashes; unknown ones left out."""
        wanted = list(set(hashes))
        out: dict[int, str] = {}
        with self._lock:
            if len(wanted) > 5000:  # one pass over the table beats thousands of lookups
                keep = set(wanted)
                for h, name in self._db.execute("SELECT h, name FROM flow_names"):
                    if h in keep:
                        out[h] = name
                return out
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                out.update(self._db.execute(
                    f"SELECT h, name FROM flow_names WHERE h IN ({','.join('?' * len(part))})",
                    part).fetchall())
        return out

    def _compact(self, db: sqlite3.Connection, buckets: list[int]) -> None:
        """Merge buckets with too many segments, dropping positions of dead incarnations."""
        touched = set(buckets)
        crowded = [b for (b,) in db.execute(
            "SELECT bucket FROM postings GROUP BY bucket HAVING count(*) > ?", (MAX_SEGMENTS,))
            if b in touched]
        if not crowded:
            return
        live = {r[0] for r in db.execute("SELECT tp_id FROM partitions WHERE live = 1")}
        for bucket in crowded:
            merged: dict[bytes, set[int]] = defaultdict(set)
            for (blob,) in db.execute("SELECT blob FROM postings WHERE bucket = ?", (bucket,)):
                for ident, positions in _load(blob).items():
                    merged[ident].update(p for p in positions if p & _TP_MASK in live)
            db.execute("DELETE FROM postings WHERE bucket = ?", (bucket,))
            segment = {k: sorted(v) for k, v in merged.items() if v}
            if segment:
                db.execute("INSERT INTO postings (bucket, blob) VALUES (?, ?)",
                           (bucket, _pack(segment)))


def pack_facts(facts: Mapping[int, Sequence[tuple]]) -> list[tuple[int, int, int, bytes]]:
    """Flow facts as (tp_id, first_offset, last_offset, int64 column-major bytes) blocks."""
    import numpy as np  # only writers and `lagdeck flows` pay for the import

    out = []
    for tp_id, records in facts.items():
        for i in range(0, len(records), FACT_BLOCK):
            block = records[i:i + FACT_BLOCK]
            if not block:
                continue
            array = np.array(block, dtype=np.int64)
            out.append((tp_id, int(block[0][0]), int(block[-1][0]),
                        np.ascontiguousarray(array.T).tobytes()))
    return out


def _pack(obj: dict[bytes, list[int]] | list[Any]) -> bytes:
    """marshal, then zlib at its fastest level (ids and rows shrink 3-4x)."""
    return zlib.compress(marshal.dumps(obj), 1)


def _unpack(blob: bytes) -> object:
    return marshal.loads(zlib.decompress(blob))


def _load_rows(blob: bytes) -> list[tuple]:
    try:
        rows = _unpack(blob)
    except (ValueError, EOFError, TypeError, zlib.error):
        _log.warning("skipping an unreadable correlation index block")
        return []
    return rows if isinstance(rows, list) else []


def _load(blob: bytes) -> dict[bytes, list[int]]:
    try:
        segment = _unpack(blob)
    except (ValueError, EOFError, TypeError, zlib.error):
        _log.warning("skipping an unreadable correlation index segment")
        return {}
    return segment if isinstance(segment, dict) else {}
