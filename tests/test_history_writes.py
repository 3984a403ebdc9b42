"""How the lag history writes: one JSON statement or `executemany`, in a thread or not,
and the first read of a file another process wrote. No broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.history import LagHistory, PartitionSample, _samples_json
from collectors.status import Sample
from collectors.timelag import Point

C = "127.0.0.1:9092"
T = float(int(time.time()) - 3600)

#: names and values a cluster may hand over: unicode, quotes, control characters,
#: unknown offsets and membership, the largest 64-bit offset
AWKWARD = [
    PartitionSample("g-ü\u202e\"'\\", "t\tx", 0, 5, 9, True),
    PartitionSample("g\x1b[31m", "t", 1, None, 9, None),
    PartitionSample("g", "t", 2, 2**63 - 1, None, False),
    PartitionSample("𝕘", "t", 3, 0, 0, True),
]
#: values JSON cannot carry exactly: these go through `executemany`
NOT_JSON = [
    PartitionSample("nul \x00 inside", "t", 0, 1, 2, False),
    PartitionSample("nul", "t\x00", 0, 1, 2, None),
]


def _rows(path: Path) -> list[tuple]:
    with LagHistory(path) as h:
        return h._db.execute(
            "SELECT cluster, grp, topic, part, ts, committed, end_offset, active, "
            "typeof(committed), typeof(active) FROM samples ORDER BY id").fetchall()


def _plain(path: Path, samples: list[PartitionSample]) -> None:
    """The reference: one `executemany` row per sample."""
    with LagHistory(path) as h:
        h._db.executemany(
            "INSERT INTO samples (cluster, grp, topic, part, ts, committed, end_offset, "
            "active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(C, s.group, s.topic, s.partition, T, s.committed, s.end,
              None if s.active is None else int(s.active)) for s in samples])


@pytest.mark.parametrize("background", [False, True])
def test_json_insert_stores_what_executemany_stores(tmp_path: Path, background: bool) -> None:
    assert _samples_json(AWKWARD) is not None  # these do take the JSON statement
    assert all(_samples_json([s]) is None for s in NOT_JSON)
    # (SQLite stores no lone surrogate either way: `executemany` refuses it as it did)
    assert _samples_json([PartitionSample("\udc80", "t", 0, 1, 2, True)]) is None
    samples = AWKWARD + NOT_JSON
    _plain(tmp_path / "ref.db", samples)
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T, samples=AWKWARD, background=background)
        h.record(C, T, samples=NOT_JSON[:1], background=background)
        h.record(C, T, samples=NOT_JSON[1:], background=background)
    assert _rows(tmp_path / "h.db") == _rows(tmp_path / "ref.db")


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
