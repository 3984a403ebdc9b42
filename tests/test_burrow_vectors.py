"""Burrow's published evaluator vectors, tests 0-11, as data.

Source: linkedin/Burrow `core/internal/evaluator/caching_test.go` (`tests`,
checked by `TestCachingEvaluator_CheckRules`). Each vector gives a window of
commits (offset, timestamp in ms, lag at commit or nil), the broker end
offsets seen recently, the current lag, the time now (seconds), what each of
Burrow's rules returns, and the expected partition status. Burrow's
timestamps are milliseconds and `timeNow` seconds; lagdeck works in seconds,
so commit timestamps are divided by 1000 here and nothing else changes.

Every rule is checked against Burrow's expected boolean, and the status
against Burrow's expected status, through lagdeck's `partition_status` with
its default settings (allowed_lag 0, grace 10 s): the fixes lagdeck adds on
top of Burrow must not change any of Burrow's answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from collectors.snapshots import Status
from collectors.status import (
    Commit,
    lag_always_nonzero,
    lag_not_decreasing,
    offsets_rewind,
    offsets_stalled,
    offsets_stopped,
    partition_status,
    recent_lag_zero,
)


@dataclass(frozen=True)
class Vector:
    index: int
    why: str
    offsets: tuple[tuple[int, int, int | None], ...]  # (offset, timestamp ms, lag or None)
    broker_offsets: tuple[int, ...]
    current_lag: int
    time_now: int  # seconds
    is_lag_always_not_zero: bool
    check_if_offsets_rewind: bool
    check_if_offsets_stopped: bool
    check_if_offsets_stalled: bool
    check_if_lag_not_decreasing: bool
    check_if_recent_lag_zero: bool
    status: Status

    def commits(self) -> list[Commit]:
        return [Commit(offset, ts / 1000.0, lag) for offset, ts, lag in self.offsets]


_BASE_TS = (100000, 200000, 300000, 400000, 500000)
_T9 = (1512224618356, 1512224619362, 1512224620366, 1512224621367, 1512224622370,
       1512224623373, 1512224624378, 1512224625379, 1512224626383, 1512224627383,
       1512224628383, 1512224629388, 1512224630391, 1512224631394, 1512224632397)


def _window(offsets, lags, stamps=_BASE_TS):
    return tuple(zip(offsets, stamps, lags, strict=True))


VECTORS = (
    Vector(0, "OK because there is zero lag somewhere",
           _window((1000, 2000, 3000, 4000, 5000), (0, 50, 100, 150, 200)),
           (5200,), 200, 600, False, False, False, False, True, False, Status.OK),
    Vector(1, "not STOP: time since last commit (400s) equals the span, not greater",
           _window((1000, 2000, 3000, 4000, 5000), (0, 50, 100, 150, 200)),
           (5200,), 200, 900, False, False, False, False, True, False, Status.OK),
    Vector(2, "STOP: time since last commit (500s) exceeds the span, though lag was zero "
              "at the start (#290)",
           _window((1000, 2000, 3000, 4000, 5000), (0, 50, 100, 150, 200)),
           (5200,), 200, 1000, False, False, True, False, True, False, Status.STOP),
    Vector(3, "STOP when lag is always non-zero as well",
           _window((1000, 2000, 3000, 4000, 5000), (50, 100, 150, 200, 250)),
           (5250,), 250, 1000, True, False, True, False, True, False, Status.STOP),
    Vector(4, "OK because of zero lag, though the offset never moves (stall is true)",
           _window((1000,) * 5, (0, 50, 100, 150, 200)),
           (1200,), 200, 600, False, False, False, True, True, False, Status.OK),
    Vector(5, "STALL: the offset never moves and the lag is always non-zero",
           _window((1000,) * 5, (100, 150, 200, 250, 300)),
           (1300,), 300, 600, True, False, False, True, True, False, Status.STALL),
    Vector(6, "still STALL when the lag stays the same",
           _window((1000,) * 5, (100,) * 5),
           (1100,), 100, 600, True, False, False, True, True, False, Status.STALL),
    Vector(7, "REWIND: offsets go backwards, even though the lag does decrease",
           _window((1000, 2000, 3000, 2000, 4000), (100, 150, 200, 1250, 300)),
           (4300,), 300, 600, True, True, False, False, False, False, Status.REWIND),
    Vector(8, "OK because the current lag is 0, though the timestamps say stopped",
           _window((1000, 2000, 3000, 4000, 5000), (50, 100, 150, 200, 250)),
           (5250,), 0, 1000, True, False, True, False, True, False, Status.OK),
    Vector(9, "STOP: current lag non-zero, lag zero in every commit only because of new "
              "data (#290)",
           _window(tuple(range(792748079, 792748094)), (0,) * 15, _T9),
           (792749024, 792749000, 792748800, 792748600, 792748500), 931, 1512224650,
           False, False, True, False, True, False, Status.STOP),
    Vector(10, "OK: would be STOP by timestamps, but within the recent broker offsets the "
               "lag was zero (#303)",
           _window(tuple(range(792748079, 792748094)), (0,) * 15, _T9),
           (792748094, 792748093, 792748093, 792748093), 1, 1512224650,
           False, False, True, False, True, True, Status.OK),
    Vector(11, "as test 0, with nil lag entries that must not affect the result",
           _window((1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 5500),
                   (0, None, 50, None, 100, None, 150, None, 200, None),
                   (100000, 150000, 200000, 250000, 300000, 350000, 400000, 450000,
                    500000, 550000)),
           (5700,), 200, 600, False, False, False, False, True, False, Status.OK),
)


def test_all_twelve_vectors_are_ported() -> None:
    assert [v.index for v in VECTORS] == list(range(12))


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"burrow-{v.index}")
def test_rules_match_burrow(v: Vector) -> None:
    commits = v.commits()
    assert lag_always_nonzero(commits) is v.is_lag_always_not_zero
    assert offsets_rewind(commits) is v.check_if_offsets_rewind
    assert offsets_stopped(commits, v.time_now) is v.check_if_offsets_stopped
    assert offsets_stalled(commits) is v.check_if_offsets_stalled
    assert lag_not_decreasing(commits) is v.check_if_lag_not_decreasing
    assert recent_lag_zero(commits, v.broker_offsets) is v.check_if_recent_lag_zero


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"burrow-{v.index}")
def test_status_matches_burrow(v: Vector) -> None:
    verdict = partition_status(v.commits(), v.broker_offsets, v.current_lag, v.time_now)
    assert verdict.status is v.status, f"vector {v.index} ({v.why}): {verdict.reason}"
    assert verdict.reason
