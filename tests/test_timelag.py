"""Lag in seconds: exact, interpolated, extrapolated; kafka-lag-exporter's failure cases.

Pure functions, no broker. A point (t, end) says: at time t the partition's
end offset was `end`, so the record at offset c was produced when the end
passed c, i.e. between two points with end_a <= c < end_b.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from collectors.timelag import (
    EXACT,
    EXTRAPOLATED,
    INTERPOLATED,
    UNKNOWN,
    ZERO,
    Point,
    ReadRequest,
    clean_points,
    estimate,
    exact,
    fastest_rate,
    plan_reads,
    record_point,
)


def pts(*pairs: tuple[float, int]) -> list[Point]:
    return [Point(t, e) for t, e in pairs]


# ---------------------------------------------------------------- exact and zero


def test_exact_is_the_age_of_the_record() -> None:
    assert exact(1000.0, 1012.5).seconds == 12.5
    assert exact(1000.0, 1012.5).method == EXACT


def test_record_from_the_future_is_zero_not_negative() -> None:
    assert exact(2000.0, 1000.0).seconds == 0.0


def test_zero_lag_is_zero_seconds_even_without_history() -> None:
    """kafka-lag-exporter #111 / #37: NaN for a caught-up group on a quiet topic."""
    for history in ([], pts((0, 10)), pts((0, 10), (100, 10), (200, 10))):
        result = estimate(10, 10, history, now=300.0)
        assert (result.seconds, result.method) == (0.0, ZERO)


def test_no_history_is_unknown_not_a_guess() -> None:
    result = estimate(5, 10, [], now=100.0)
    assert (result.seconds, result.method) == (None, UNKNOWN)


# ---------------------------------------------------------------- interpolation


def test_interpolates_between_the_bracketing_points() -> None:
    history = pts((0, 0), (10, 100), (20, 200))
    result = estimate(150, 300, history, now=30.0)
    # record 150 appeared when the end passed 150: 10 + 51/100 * 10 = 15.1 s
    assert result.method == INTERPOLATED
    assert math.isclose(result.seconds, 14.9, abs_tol=1e-6)


def test_the_current_end_is_the_newest_point() -> None:
    # nothing in the history brackets 250, but the end offset now (300 at t=30) does
    result = estimate(250, 300, pts((0, 0), (20, 200)), now=30.0)
    assert result.method == INTERPOLATED
    assert math.isclose(result.seconds, 30 - (20 + 51 / 100 * 10), abs_tol=1e-6)


def test_flat_stretches_never_divide_by_zero() -> None:
    """An idle topic makes flat runs in the table; they cannot bracket an offset."""
    history = pts((0, 100), (10, 100), (20, 100))
    result = estimate(100, 110, history, now=30.0)
    # record 100 was produced after t=20 (still end 100 then) and by t=30
    assert result.method == INTERPOLATED
    assert math.isclose(result.seconds, 30 - 21.0, abs_tol=1e-6)


# ---------------------------------------------------------------- extrapolation


def test_idle_topic_with_a_lagging_group_is_finite_and_a_lower_bound() -> None:
    """kafka-lag-exporter #37: no production in the whole table, consumer behind."""
    history = pts((0, 500), (100, 500), (200, 500))
    result = estimate(400, 500, history, now=300.0)
    assert result.method == EXTRAPOLATED
    assert result.seconds == 300.0  # the record existed at t=0: at least 300 s old


def test_reprocessing_from_the_start_is_anchored_by_an_exact_read() -> None:
    """kafka-lag-exporter #496: a group replaying 45 min of data was reported years behind.

    The topic got 1,000,000 records in a 45-minute burst, then one record a second.
    kafka-lag-exporter's table only has the slow tail, so the mean rate puts offset
    1000 about 11 days back. One exact read (offset 0 at t=0) anchors the table.
    """
    now = 3600.0
    tail = pts(*[(2700.0 + 15 * i, 1_000_000 + 15 * i) for i in range(61)])
    end = 1_000_900
    mean_rate = (tail[-1].end - tail[0].end) / (tail[-1].time - tail[0].time)
    naive = now - (tail[0].time - (tail[0].end - 1000) / mean_rate)
    assert naive > 10 * 86400  # what the mean-rate extrapolation says: ~11.5 days

    anchored = estimate(1000, end, [record_point(0, 0.0), *tail], now)
    assert anchored.method == INTERPOLATED
    assert 3550 <= anchored.seconds <= 3600  # produced in the first seconds of the burst


def test_extrapolation_uses_the_fastest_rate_seen_and_never_less_than_known() -> None:
    # a burst of 10,000 records in 10 s, then a trickle; the group is before the table
    history = pts((100, 1000), (110, 11_000), (200, 11_010), (300, 11_020))
    result = estimate(500, 11_030, history, now=400.0)
    assert result.method == EXTRAPOLATED
    at_least = 400.0 - 100
    assert at_least <= result.seconds <= at_least + 1.0  # 500 records at 1000/s: 0.5 s more
    assert fastest_rate(clean_points(history)) == 1000.0


def test_flat_table_extrapolates_to_the_lower_bound() -> None:
    assert fastest_rate(pts((0, 5), (10, 5))) is None


# ---------------------------------------------------------------- table hygiene


def test_topic_recreated_forgets_the_old_offsets() -> None:
    history = pts((0, 100), (10, 200), (20, 3), (30, 10))
    assert clean_points(history) == pts((20, 3), (30, 10))


def test_out_of_order_record_time_is_dropped_not_a_reset() -> None:
    history = pts((0, 100), (10, 200), (15, 150), (20, 300))
    assert clean_points(history) == pts((0, 100), (10, 200), (20, 300))


def test_flat_runs_keep_their_first_and_last_point() -> None:
    history = pts((0, 5), (1, 5), (2, 5), (3, 5), (4, 9))
    assert clean_points(history) == pts((0, 5), (3, 5), (4, 9))


def test_points_in_the_future_are_ignored() -> None:
    assert clean_points(pts((0, 5), (500, 9)), now=100.0) == pts((0, 5))


@given(
    st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 10**9)),
             max_size=30),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.floats(0, 2e6, allow_nan=False),
)
def test_never_nan_never_infinite_never_negative(pairs, committed, end, now) -> None:
    result = estimate(committed, end, pts(*pairs), now)
    assert result.method in (EXACT, INTERPOLATED, EXTRAPOLATED, ZERO, UNKNOWN)
    if end <= committed:
        assert (result.seconds, result.method) == (0.0, ZERO)
    if result.seconds is not None:
        assert math.isfinite(result.seconds)
        assert result.seconds >= 0.0
    else:
        assert result.method == UNKNOWN


# ---------------------------------------------------------------- read planning


def runs(rounds) -> list[list[tuple[str, int, tuple[int, ...]]]]:
    return [[(r.topic, r.partition, r.offsets) for r in batch] for batch in rounds]


def test_plan_reads_blind_first_then_by_lag_deduplicated() -> None:
    requests = [
        ReadRequest("t", 0, 10, lag=5, blind=False),
        ReadRequest("t", 0, 20, lag=900, blind=False),
        ReadRequest("t", 1, 7, lag=3, blind=True),
        ReadRequest("t", 0, 20, lag=900, blind=False),  # a second group at the same offset
        ReadRequest("u", 0, 1, lag=50, blind=False),
    ]
    assert runs(plan_reads(requests, limit=10)) == [
        [("t", 1, (7,)), ("t", 0, (10, 20)), ("u", 0, (1,))],
    ]
    # with room for two reads only: the blind one, then the largest lag
    assert runs(plan_reads(requests, limit=2)) == [[("t", 1, (7,)), ("t", 0, (20,))]]


def test_offsets_far_apart_are_separate_runs_in_later_rounds() -> None:
    requests = [ReadRequest("t", 0, o, lag=10, blind=False) for o in (5, 900, 5000, 5100)]
    assert runs(plan_reads(requests, limit=10, scan_limit=1000)) == [
        [("t", 0, (5, 900))],
        [("t", 0, (5000, 5100))],
    ]


def test_plan_reads_respects_the_limit() -> None:
    requests = [ReadRequest("t", p, 0, lag=p, blind=False) for p in range(10)]
    rounds = plan_reads(requests, limit=3)
    assert [r.partition for r in rounds[0]] == [9, 8, 7]
    assert plan_reads(requests, limit=0) == []
