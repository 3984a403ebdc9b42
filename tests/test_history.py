"""The SQLite lag history: windows, points, trends, sharing, retention, threads. No broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from collectors.history import FILENAME, GroupTotal, LagHistory, PartitionSample
from collectors.status import Sample
from collectors.timelag import Point

C = "127.0.0.1:9092"
#: an hour ago: `record` prunes by the wall clock (7 days by default), so times are recent
T = float(int(time.time()) - 3600)


def sample(group: str, committed: int, end: int, partition: int = 0,
           active: bool | None = True) -> PartitionSample:
    return PartitionSample(group, "orders", partition, committed, end, active)


KEY = ("g", "orders", 0)


def test_default_path_is_under_the_state_dir(isolated_state: Path) -> None:
    with LagHistory() as h:
        h.record(C, T, samples=[sample("g", 1, 2)])
        assert h.path == isolated_state / FILENAME
    assert (isolated_state / FILENAME).exists()


def test_windows_are_oldest_first_and_limited(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db") as h:
        for i in range(15):
            h.record(C, T + i, samples=[sample("g", i, 20), sample("g", i, 30, 1)])
        win = h.windows(C, [KEY, ("g", "orders", 1), ("x", "orders", 0)], 10)
        assert set(win) == {KEY, ("g", "orders", 1)}
        assert [s.time for s in win[KEY]] == [T + 5 + i for i in range(10)]
        assert win[("g", "orders", 1)][-1] == Sample(T + 14, 14, 30, True)


def test_clusters_do_not_mix(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db") as h:
        h.record("a:1", T, samples=[sample("g", 1, 5)], groups=[GroupTotal("g", 4, "OK")])
        h.record("b:1", T + 1, samples=[sample("g", 9, 9)], groups=[GroupTotal("g", 0, "OK")])
        assert h.windows("a:1", [KEY])[KEY] == [Sample(T, 1, 5, True)]
        assert h.group_trend("g", cluster="a:1") == [(T, 4)]
        assert h.group_trend("g") == [(T + 1, 0)]  # the cluster recorded last


def test_another_process_sees_what_was_written_after_it_loaded(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with LagHistory(path) as tui, LagHistory(path) as cli:
        tui.record(C, T + 1, samples=[sample("g", 1, 5)])
        assert len(cli.windows(C, [KEY])[KEY]) == 1
        tui.record(C, T + 2, samples=[sample("g", 2, 6)])
        cli.record(C, T + 3, samples=[sample("g", 3, 7)])
        for h in (tui, cli):
            assert [s.committed for s in h.windows(C, [KEY])[KEY]] == [1, 2, 3]
    with LagHistory(path) as later:
        assert len(later.windows(C, [KEY])[KEY]) == 3


def test_flat_runs_of_end_offsets_keep_two_points(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db") as h:
        for t, end in [(1, 10), (2, 20), (3, 20), (4, 20), (5, 20), (6, 30)]:
            h.record(C, T + t, points=[("orders", 0, Point(T + t, end), "end")])
        expected = [Point(T + 1, 10), Point(T + 2, 20), Point(T + 5, 20), Point(T + 6, 30)]
        assert h.points(C, [("orders", 0)])[("orders", 0)] == expected
    with LagHistory(tmp_path / "h.db") as again:  # the same on disk
        assert again.points(C, [("orders", 0)])[("orders", 0)] == expected


def test_record_points_are_kept_in_time_order(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T + 100, points=[("orders", 0, Point(T + 100, 50), "end")])
        h.record(C, T + 101, points=[("orders", 0, Point(T + 40, 8), "record")])
        assert h.points(C, [("orders", 0)])[("orders", 0)] == [Point(T + 40, 8),
                                                               Point(T + 100, 50)]


def test_group_trend_for_the_sparkline(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db") as h:
        for i in range(40):
            h.record(C, T + 10 * i, groups=[GroupTotal("g", i * 3, "WARN"),
                                            GroupTotal("other", 1, "OK")])
        trend = h.group_trend("g", limit=30)
        assert len(trend) == 30
        assert trend[0] == (T + 100, 30) and trend[-1] == (T + 390, 117)
        assert h.group_statuses("g", limit=2) == [(T + 380, "WARN"), (T + 390, "WARN")]
        assert h.group_trend("nobody") == []


def _fill(h: LagHistory) -> None:
    for i in range(10):
        t = T + i * 30
        h.record(C, t, samples=[sample("g", i, i + 1), sample("g", i, i + 1, 1)],
                 groups=[GroupTotal("g", 1, "OK")],
                 points=[("orders", 0, Point(t, i + 1), "end")])


def test_retention_by_age(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db", retention_seconds=100) as h:
        _fill(h)
        h.prune(now=T + 9 * 30)
        # t >= T+170 stays: the last 4 refreshes
        assert h.counts() == {"samples": 8, "points": 4, "groups": 4}
        assert [s.time for s in h.windows(C, [KEY], 10)[KEY]] == [T + 180, T + 210, T + 240,
                                                                  T + 270]
        assert [p.time for p in h.points(C, [("orders", 0)])[("orders", 0)]] == [
            T + 180, T + 210, T + 240, T + 270]


def test_retention_by_count(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db", max_samples=3, max_points=4, max_trend=2) as h:
        _fill(h)
        h.prune()
        assert h.counts() == {"samples": 6, "points": 4, "groups": 2}
    with LagHistory(tmp_path / "h.db") as again:
        assert [s.time for s in again.windows(C, [KEY], 10)[KEY]] == [T + 210, T + 240, T + 270]
        assert again.group_trend("g") == [(T + 240, 1), (T + 270, 1)]


def test_last_seen_lists_recent_partitions(tmp_path: Path) -> None:
    with LagHistory(tmp_path / "h.db") as h:
        h.record(C, T + 10, samples=[sample("old", 1, 1)])
        h.record(C, T + 50, samples=[sample("new", 4, 9)])
        assert h.last_seen(C, since=T + 40) == {("new", "orders", 0): Sample(T + 50, 4, 9, True)}


def test_a_worker_thread_writes_while_the_main_thread_reads(tmp_path: Path) -> None:
    h = LagHistory(tmp_path / "h.db")
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(200):
                h.record(C, T + i, samples=[sample("g", i, i + 5)],
                         groups=[GroupTotal("g", 5, "OK")])
        except BaseException as exc:  # reported below
            failures.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    reads = 0
    while thread.is_alive() or reads == 0:
        h.group_trend("g", cluster=C)
        h.windows(C, [KEY])
        reads += 1
    thread.join()
    assert not failures
    assert len(h.group_trend("g", limit=500)) == 200
    assert h.windows(C, [KEY], 3)[KEY][-1].committed == 199
    h.close()


def test_in_memory_history_is_private() -> None:
    with LagHistory.in_memory() as a, LagHistory.in_memory() as b:
        a.record(C, T, samples=[sample("g", 1, 2)])
        assert a.counts()["samples"] == 1
        assert b.counts()["samples"] == 0
