"""The correlation index on its own: postings, rows, coverage, recreated topics, compaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collectors.config import ClusterConfig
from collectors.errors import LagdeckError
from tracing.index import MAX_SEGMENTS, TP_BITS, CorrelationIndex, bucket_of, index_path


@pytest.fixture
def index(tmp_path: Path):
    with CorrelationIndex(tmp_path / "idx.sqlite", "fp1") as idx:
        yield idx


def row(offset: int, key: bytes = b"k") -> tuple:
    return (offset, 1_700_000_000_000 + offset, key, "E", key, None, None, None)


def fill(index: CorrelationIndex, topic: str, partition: int, offsets: range,
         id_of=lambda o: f"ord_{o % 3}".encode(), topic_id: str | None = None) -> int:
    tp_id = index.incarnation(topic, partition, topic_id, offsets.start, 0)
    postings: dict[bytes, list[int]] = {}
    for o in offsets:
        postings.setdefault(id_of(o), []).append((o << TP_BITS) | tp_id)
    index.write(postings, {tp_id: (offsets.start, offsets.stop, 0)},
                {tp_id: [row(o, id_of(o)) for o in offsets]})
    return tp_id


def test_lookup_and_rows(index: CorrelationIndex) -> None:
    fill(index, "orders", 0, range(0, 30))
    fill(index, "orders", 1, range(0, 10))
    hits = index.lookup([b"ord_1"])
    assert hits == {("orders", 0): set(range(1, 30, 3)), ("orders", 1): {1, 4, 7}}
    rows = index.rows({("orders", 1): {4, 7, 99}})
    assert [(t, p, r[0], r[2]) for t, p, r in rows] == [("orders", 1, 4, b"ord_1"),
                                                        ("orders", 1, 7, b"ord_1")]
    assert index.lookup([b"nothing"]) == {}
    assert index.stats()["covered_offsets"] == 40


def test_rows_span_blocks(index: CorrelationIndex) -> None:
    fill(index, "big", 0, range(0, 2000), id_of=lambda o: b"same")
    hits = index.lookup([b"same"])
    assert len(hits[("big", 0)]) == 2000
    rows = index.rows({("big", 0): {0, 511, 512, 1999}})
    assert [r[0] for _, _, r in rows] == [0, 511, 512, 1999]


def test_coverage_only_grows_and_bounds_lookups(index: CorrelationIndex) -> None:
    tp_id = fill(index, "orders", 0, range(10, 20))
    index.write({}, {tp_id: (15, 18, 5)})  # a racing, smaller scan cannot shrink it
    cov = index.coverage()[("orders", 0)]
    assert (cov.start, cov.end, cov.since_ms) == (10, 20, 0)
    # postings outside the coverage (a scan that never finished) are not answered
    index.write({b"late": [(25 << TP_BITS) | tp_id]}, {})
    assert index.lookup([b"late"]) == {}
    index.write({}, {tp_id: (10, 30, 0)})
    assert index.lookup([b"late"]) == {("orders", 0): {25}}


def test_recreated_topic_is_retired_and_rebuilt(index: CorrelationIndex) -> None:
    old = fill(index, "orders", 0, range(0, 100), topic_id="id-A")
    fill(index, "payments", 0, range(0, 10))
    # offsets went backwards: end offset 5 < indexed end 100
    notes = index.reconcile({("orders", 0): (0, 5), ("payments", 0): (0, 10)},
                            {"orders": "id-A"}, ["orders", "payments"])
    assert len(notes) == 1 and "orders was deleted and recreated" in notes[0]
    assert "offsets went backwards" in notes[0]
    assert ("orders", 0) not in index.coverage()
    assert ("orders", 0) not in index.lookup([b"ord_1"])
    assert index.rows({("orders", 0): {1}}) == []
    new = fill(index, "orders", 0, range(0, 5), topic_id="id-B")
    assert new != old
    assert index.lookup([b"ord_1"])[("orders", 0)] == {1, 4}


def test_new_topic_id_retires_even_when_offsets_grew(index: CorrelationIndex) -> None:
    fill(index, "orders", 0, range(0, 10), topic_id="id-A")
    notes = index.reconcile({("orders", 0): (0, 50)}, {"orders": "id-B"}, ["orders"])
    assert "new topic id" in notes[0]
    assert index.coverage() == {}


def test_deleted_topic_and_lost_partitions(index: CorrelationIndex) -> None:
    fill(index, "gone", 0, range(0, 3))
    fill(index, "shrunk", 0, range(0, 3))
    fill(index, "shrunk", 1, range(0, 3))
    notes = index.reconcile({("shrunk", 0): (0, 3)}, {}, ["shrunk"])
    assert any("gone deleted" in n for n in notes)
    assert any("shrunk has fewer partitions" in n for n in notes)
    assert set(index.coverage()) == {("shrunk", 0)}


def test_unknown_topic_id_is_learned_without_a_rebuild(index: CorrelationIndex) -> None:
    fill(index, "orders", 0, range(0, 3))
    assert index.reconcile({("orders", 0): (0, 3)}, {"orders": "id-A"}, ["orders"]) == []
    assert index.coverage()[("orders", 0)].topic_id == "id-A"


def test_changed_settings_start_over(tmp_path: Path) -> None:
    path = tmp_path / "idx.sqlite"
    with CorrelationIndex(path, "fp1") as idx:
        fill(idx, "orders", 0, range(0, 10))
    with CorrelationIndex(path, "fp1") as idx:
        assert idx.lookup([b"ord_1"])
    with CorrelationIndex(path, "fp2") as idx:
        assert idx.lookup([b"ord_1"]) == {} and idx.coverage() == {}


def test_many_small_writes_are_compacted(index: CorrelationIndex) -> None:
    tp_id = index.incarnation("orders", 0, None, 0, 0)
    dead = index.incarnation("dead", 0, None, 0, 0)
    index.reconcile({("orders", 0): (0, 100)}, {}, ["orders"])  # "dead" no longer exists
    for o in range(3 * MAX_SEGMENTS):
        index.write({b"ord_x": [(o << TP_BITS) | tp_id, (o << TP_BITS) | dead]},
                    {tp_id: (0, o + 1, 0)})
    assert index.stats()["segments"] <= MAX_SEGMENTS  # one bucket written, merged as it grew
    assert index.lookup([b"ord_x"]) == {("orders", 0): set(range(3 * MAX_SEGMENTS))}


def test_an_unreadable_segment_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "idx.sqlite"
    with CorrelationIndex(path, "fp") as idx:
        fill(idx, "orders", 0, range(0, 6))
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO postings (bucket, blob) VALUES (?, ?)",
                   (bucket_of(b"ord_1"), b"not zlib at all"))
        db.execute("UPDATE details SET blob = ? WHERE first_offset = 0", (b"garbage",))
    db.close()
    with CorrelationIndex(path, "fp") as idx:
        assert idx.lookup([b"ord_1"]) == {("orders", 0): {1, 4}}
        assert idx.rows({("orders", 0): {1}}) == []  # its row block is unreadable too


def test_a_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "idx.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LagdeckError, match=r"correlation index .* is unusable"):
        CorrelationIndex(path, "fp")


def test_index_path_is_per_cluster() -> None:
    a = index_path(ClusterConfig({"bootstrap.servers": "b:9092,a:9092"}))
    b = index_path(ClusterConfig({"bootstrap.servers": "a:9092, b:9092"}))
    c = index_path(ClusterConfig({"bootstrap.servers": "c:9092"}))
    assert a == b != c
    assert a.parent.name == "trace-index"
