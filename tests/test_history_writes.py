"""How the lag history stores refreshes: packed columns round trip exactly, in a thread or
not, a file of the first format is converted, and the first read of a file another process
wrote. No broker."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from collectors import history_format as fmt
from collectors.history import GroupTotal, LagHistory, PartitionSample
from collectors.status import Sample
from collectors.timelag import Point

C = "127.0.0.1:9092"
#: recent (`record` prunes by the wall clock) but old enough for the tests' retention
T = float(int(time.time()) - 900)

#: names and values a cluster may hand over: unicode, quotes, control characters, a NUL
#: (the keys then take `executemany`), unknown offsets and membership, 64-bit extremes
AWKWARD = [
    PartitionSample("g-ü\u202e\"'\\", "t\tx", 0, 5, 9, True),
    PartitionSample("g\x1b[31m", "t", 1, None, 9, None),
    PartitionSample("g", "t", 2, 2**63 - 1, None, False),
    PartitionSample("𝕘", "t", 3, 0, 0, True),
    PartitionSample("g", "t", 4, -1, -(2**63) + 1, True),
    PartitionSample("nul \x00 inside", "t", 0, 1, 2, False),
    PartitionSample("nul", "t\x00", 0, 1, 2, None),
]


def _as_read(samples: list[PartitionSample], at: float) -> dict:
    return {s[:3]: [Sample(at, s.committed, s.end, s.active)] for s in samples}


@pytest.mark.parametrize("background", [False, True])
def test_awkward_samples_read_back_exactly(tmp_path: Path, background: bool) -> None:
    """What one process stores, another reads back unchanged (each key its own window)."""
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T, samples=AWKWARD[:5], background=background)
        h.record(C, T + 1, samples=AWKWARD[5:], background=background)
    with LagHistory(tmp_path / "h.db") as other:
        keys = [s[:3] for s in AWKWARD]
        assert other.windows(C, keys) == {**_as_read(AWKWARD[:5], T),
                                          **_as_read(AWKWARD[5:], T + 1)}
        assert other.counts()["samples"] == len(AWKWARD)


def test_a_name_sqlite_cannot_hold_is_left_out_not_fatal(tmp_path: Path) -> None:
    """A lone surrogate (a name that was not UTF-8) cannot be SQLite text: that partition
    is not recorded, the others of the refresh are."""
    good = PartitionSample("g", "t", 0, 1, 2, True)
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T, samples=[PartitionSample("\udc80", "t", 0, 1, 2, True), good])
    with LagHistory(tmp_path / "h.db") as other:
        assert other.windows(C, [("\udc80", "t", 0), good[:3]]) == _as_read([good], T)


def test_offsets_outside_64_bits_are_stored_as_unknown() -> None:
    """No Kafka offset is: a broker's garbage must not fail the refresh's write."""
    packed = fmt.pack_offsets([1, 2**64, None, -(2**70)])
    assert list(fmt.unpack_offsets(packed)) == [1, None, None, None]


def test_a_first_format_file_is_converted_once(tmp_path: Path) -> None:
    """A history written row per sample (before the packed format) keeps its samples."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE samples (id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, grp TEXT NOT "
        "NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, ts REAL NOT NULL, committed "
        "INTEGER, end_offset INTEGER, active INTEGER);"
        "CREATE INDEX samples_window ON samples (cluster, grp, topic, part, ts, id, "
        "committed, end_offset, active);")
    rows = [(C, T + i, "g", "t", p, i, 10 + i, i % 2) for i in range(3) for p in range(2)]
    rows += [(C, T + 5, "g", "t", 0, None, 20, None), ("other:1", T, "h", "u", 0, 1, 2, 1)]
    db.executemany("INSERT INTO samples (cluster, ts, grp, topic, part, committed, "
                   "end_offset, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    with LagHistory(path) as h:
        assert h.counts()["samples"] == len(rows)
        win = h.windows(C, [("g", "t", 0), ("g", "t", 1)])
        assert win[("g", "t", 0)] == [Sample(T, 0, 10, False), Sample(T + 1, 1, 11, True),
                                      Sample(T + 2, 2, 12, False), Sample(T + 5, None, 20, None)]
        assert win[("g", "t", 1)][-1] == Sample(T + 2, 2, 12, False)
        assert h.windows("other:1", [("h", "u", 0)]) == {("h", "u", 0): [Sample(T, 1, 2, True)]}
        tables = {n for (n,) in h._db.execute("SELECT name FROM sqlite_master")}
        assert "samples" not in tables and "samples_window" not in tables
    with LagHistory(path) as again:  # nothing converted twice
        assert again.counts()["samples"] == len(rows)


def test_first_read_takes_each_keys_newest_samples_across_keysets(tmp_path: Path) -> None:
    """Refreshes of different groups (a fleet's shares, `--group`): the first read skips
    a refresh only once its keyset has `cache_samples` newer ones; every key still gets
    its own newest samples."""
    path = tmp_path / "h.db"
    with LagHistory(path) as h:
        for i in range(10):
            h.record(C, T + 2 * i, samples=[PartitionSample("a", "t", 0, i, 50, True)])
            h.record(C, T + 2 * i + 1, samples=[PartitionSample("a", "t", 0, 100 + i, 150, True),
                                                PartitionSample("b", "t", 0, i, 50, False)])
    with LagHistory(path, cache_samples=4) as h:
        win = h.windows(C, [("a", "t", 0), ("b", "t", 0)], 10)
    assert [s.committed for s in win[("a", "t", 0)]] == [8, 108, 9, 109]
    assert [s.committed for s in win[("b", "t", 0)]] == [6, 7, 8, 9]


def test_pruning_drops_keys_no_refresh_refers_to(tmp_path: Path) -> None:
    # times from now (not the module's T): `record` also prunes by the wall clock
    T = time.time() - 900
    with LagHistory(tmp_path / "h.db", retention_seconds=1000) as h:
        h.record(C, T, samples=[PartitionSample("gone", "t", 0, 1, 2, True)])
        h.prune(now=T + 1100)  # the retention cuts at T + 100: nothing is left
        assert h.counts()["samples"] == 0
        # a new key after the newest was pruned gets a new id (not the pruned one's: a
        # reader following by id would never see it)
        h.record(C, T + 200, samples=[PartitionSample("kept", "t", 0, 1, 2, True)])
        h.record(C, T + 190, samples=[PartitionSample("gone", "t", 0, 0, 2, True)])
        h.prune(now=T + 1195)  # the retention cuts at T + 195
        assert [k for (k,) in h._db.execute("SELECT grp FROM sample_keys")] == ["kept"]
        h.record(C, T + 210, samples=[PartitionSample("gone", "t", 0, 3, 4, True)])
        assert h.windows(C, [("gone", "t", 0)]) == {("gone", "t", 0): [Sample(T + 210, 3, 4,
                                                                              True)]}
    with LagHistory(tmp_path / "h.db") as other:
        assert other.last_seen(C, T + 150) == {
            ("kept", "t", 0): Sample(T + 200, 1, 2, True),
            ("gone", "t", 0): Sample(T + 210, 3, 4, True)}


def test_background_write_is_seen_by_every_reader(tmp_path: Path) -> None:
    key = ("g", "t", 0)
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T, samples=[PartitionSample("g", "t", 0, 1, 5, False)])
        h.windows(C, [key])  # the cache is loaded: later rows come from `pending`
        h.record(C, T + 1, samples=[PartitionSample("g", "t", 0, 2, 6, False)],
                 points=[("t", 0, Point(T + 1, 6), "end")], background=True)
        assert h.windows(C, [key])[key] == [Sample(T, 1, 5, False), Sample(T + 1, 2, 6, False)]
        assert h.counts()["samples"] == 2
        assert h.points(C, [("t", 0)]) == {("t", 0): [Point(T + 1, 6)]}
        h.record(C, T + 2, samples=[PartitionSample("g", "t", 0, 3, 7, True)], background=True)
    # closing waited for the last write: another process finds it
    with LagHistory(tmp_path / "h.db") as other:
        assert [s.committed for s in other.windows(C, [key])[key]] == [1, 2, 3]
        assert other.last_seen(C, T + 2) == {key: Sample(T + 2, 3, 7, True)}


def test_a_failed_background_write_is_raised_to_the_next_caller(tmp_path: Path) -> None:
    h = LagHistory(tmp_path / "h.db")
    h.record(C, T, samples=[PartitionSample("g", "t", 0, 1, 5, False)], points=[object()],  # type: ignore[list-item]
             background=True)
    with pytest.raises(TypeError):
        h.windows(C, [("g", "t", 0)])
    h.close()  # the error was handed over once; closing is clean


def test_first_read_cuts_each_key_to_its_newest_samples(tmp_path: Path) -> None:
    """Keys of different lengths, read by another store: each gets its own newest
    `cache_samples`, in time order, whatever order the rows were written in."""
    path = tmp_path / "h.db"
    with LagHistory(path) as h:
        for i in range(6):
            h.record(C, T + 10 - i, samples=[PartitionSample("a", "t", 0, 10 - i, 20, None)])
        for i in range(2):
            h.record(C, T + i, samples=[PartitionSample("b", "t", 0, i, 20, True),
                                        PartitionSample("a", "t", 1, i, 20, False)])
        h.record("other:1", T, samples=[PartitionSample("a", "t", 0, 99, 99, True)])
    with LagHistory(path, cache_samples=4) as h:
        win = h.windows(C, [("a", "t", 0), ("a", "t", 1), ("b", "t", 0)], 10)
    assert [s.committed for s in win[("a", "t", 0)]] == [7, 8, 9, 10]
    assert win[("a", "t", 1)] == [Sample(T, 0, 20, False), Sample(T + 1, 1, 20, False)]
    assert win[("b", "t", 0)] == [Sample(T, 0, 20, True), Sample(T + 1, 1, 20, True)]


def test_points_and_totals_read_back_exactly(tmp_path: Path) -> None:
    """Written in one statement over JSON (no GIL take-back per row): floats come back
    bit for bit, and rows JSON cannot carry (a NUL in a topic) still go in."""
    times = [T + 0.1 * i + 1e-7 * (i % 7) for i in range(1, 50)]
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T, points=[("t", i, Point(at, i), "record") for i, at in enumerate(times)],
                 groups=[GroupTotal("ü", 2**40, "STOP")])  # JSON
        h.record(C, T, points=[("nul\x00t", 0, Point(times[3], 5), "end")],
                 groups=[GroupTotal("g\x00nul", 3, "OK")])  # executemany
    with LagHistory(tmp_path / "h.db") as other:
        assert other.points(C, [("t", i) for i in range(len(times))]) == {
            ("t", i): [Point(at, i)] for i, at in enumerate(times)}
        assert other.points(C, [("nul\x00t", 0)]) == {("nul\x00t", 0): [Point(times[3], 5)]}
        assert other.group_trend("ü", cluster=C) == [(T, 2**40)]
        assert other.group_statuses("g\x00nul", cluster=C) == [(T, "OK")]
