"""Status over lagdeck's sampled windows, and the fixes for Burrow users' complaints.

Pure functions, no broker. Times are seconds; samples are what the lag history
holds (time, committed offset, end offset, group had live members).
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from collectors.snapshots import Status
from collectors.status import (
    Commit,
    Sample,
    StatusPolicy,
    allowed_lag_for,
    commits_from_samples,
    evaluate_group,
    evaluate_partition,
    offsets_stopped,
    partition_status,
)

POLICY = StatusPolicy(window=10, min_samples=2, grace_seconds=10.0)


def series(committed, ends, *, active=False, every=5.0, start=1000.0) -> list[Sample]:
    return [Sample(start + i * every, c, e, active)
            for i, (c, e) in enumerate(zip(committed, ends, strict=True))]


# ---------------------------------------------------------------- samples -> commits


def test_changed_offsets_are_commits_at_sample_time() -> None:
    samples = series([10, 20, 20, 30], [40, 50, 60, 70], active=False)
    assert commits_from_samples(samples) == [
        Commit(10, 1000.0, 30), Commit(20, 1005.0, 30), Commit(30, 1015.0, 40)
    ]


def test_unchanged_offset_is_a_recommit_only_while_the_group_has_members() -> None:
    stuck = series([10, 10, 10], [20, 25, 30], active=True)
    gone = series([10, 10, 10], [20, 25, 30], active=False)
    assert [c.timestamp for c in commits_from_samples(stuck)] == [1000.0, 1005.0, 1010.0]
    assert [c.timestamp for c in commits_from_samples(gone)] == [1000.0]


def test_samples_without_a_commit_are_skipped() -> None:
    samples = [Sample(1.0, None, 5, True), Sample(2.0, 3, 5, True)]
    assert commits_from_samples(samples) == [Commit(3, 2.0, 2)]


# ---------------------------------------------------------------- statuses from windows


def test_consumer_keeping_up_is_ok() -> None:
    samples = series([100, 200, 300, 400], [100, 205, 300, 402], active=True)
    assert evaluate_partition(samples, policy=POLICY).status is Status.OK


def test_slow_consumer_warns() -> None:
    samples = series([100, 150, 200, 250], [200, 300, 400, 500], active=True)
    verdict = evaluate_partition(samples, policy=POLICY)
    assert verdict.status is Status.WARN
    assert "not decreasing" in verdict.reason


def test_live_consumer_that_does_not_move_stalls() -> None:
    samples = series([100] * 4, [150, 160, 170, 180], active=True)
    verdict = evaluate_partition(samples, policy=POLICY)
    assert verdict.status is Status.STALL
    assert "holds offset 100" in verdict.reason


def test_group_without_members_that_does_not_move_stops() -> None:
    samples = series([100] * 4, [150, 160, 170, 180], active=False)
    verdict = evaluate_partition(samples, policy=POLICY)
    assert verdict.status is Status.STOP
    # no commit time is guessed: the first sample already held offset 100 (issue 17)
    assert "no commit for 15s of sampling (offset 100)" in verdict.reason
    assert "commit time unknown" in verdict.reason


def test_offset_going_back_is_rewind() -> None:
    samples = series([500, 600, 0], [650, 700, 800], active=False)
    verdict = evaluate_partition(samples, policy=POLICY)
    assert verdict.status is Status.REWIND
    assert "went back to 0" in verdict.reason


def test_rewind_is_reported_even_after_the_group_had_caught_up() -> None:
    # Burrow skips every rule once the lag was zero in the window; a reset still matters.
    samples = series([700, 700, 0], [700, 700, 700], active=False, every=1.0)
    assert evaluate_partition(samples, policy=POLICY).status is Status.REWIND


def test_stop_and_stall_wait_for_the_grace_period() -> None:
    quick = series([100] * 3, [150, 160, 170], active=False, every=2.0)  # 4 s of evidence
    assert evaluate_partition(quick, policy=POLICY).status is Status.UNKNOWN
    assert "judged after 10s" in evaluate_partition(quick, policy=POLICY).reason
    held = series([100] * 3, [150, 160, 170], active=True, every=2.0)
    assert evaluate_partition(held, policy=POLICY).status is not Status.STALL


def test_one_sample_is_not_enough_to_judge() -> None:
    verdict = evaluate_partition([Sample(1.0, 5, 500, False)], policy=POLICY)
    assert verdict.status is Status.UNKNOWN
    assert "needs 2 samples, have 1" in verdict.reason


def test_only_the_window_counts() -> None:
    # a rewind long ago, then a steady consumer: out of the window, out of mind
    old = series([500, 0], [600, 600], active=True, start=0.0)
    recent = series([10 + 40 * i for i in range(10)], [600 + 40 * i for i in range(10)],
                    active=True, start=100.0)
    assert evaluate_partition(old + recent, policy=POLICY).status is Status.WARN
    assert evaluate_partition(old + recent[:3], policy=POLICY).status is Status.REWIND


def test_no_committed_offset_and_unknown_end() -> None:
    assert evaluate_partition([Sample(1.0, None, 5)], policy=POLICY).status is Status.OK
    assert evaluate_partition([Sample(1.0, 3, None)], policy=POLICY).status is Status.ERR


# ---------------------------------------------------------------- Burrow users' complaints


def test_idle_topic_with_zero_lag_is_ok_not_stop() -> None:
    """Burrow #38, #128: a caught-up consumer on a topic nobody writes to stopped committing."""
    samples = series([4242] * 10, [4242] * 10, active=False, every=600.0)  # 90 minutes
    commits = commits_from_samples(samples)
    assert offsets_stopped(commits, samples[-1].time)  # Burrow's rule 3 alone would say STOP
    verdict = evaluate_partition(samples, policy=POLICY)
    assert verdict.status is Status.OK
    assert verdict.reason == "caught up"


def test_stopped_consumer_shows_current_lag_and_stops() -> None:
    """Burrow #126, #127: lag is end-now minus committed, not the lag frozen at the last commit."""
    samples = series([1000] * 12, [1000 + 100 * i for i in range(12)], active=False)
    # Burrow keeps the lag of each commit: the only commit here was made with lag 0
    assert [c.lag for c in commits_from_samples(samples)] == [0]
    verdict = evaluate_partition(samples, policy=POLICY)
    assert samples[-1].lag == 1100
    assert verdict.status is Status.STOP
    assert "lag is 1100" in verdict.reason
    # while the caught-up sample is still in the window, it is not STOP yet (Burrow #303)
    assert evaluate_partition(samples[:10], policy=POLICY).status is Status.OK


def test_allowed_lag_keeps_a_batch_consumer_ok() -> None:
    """Burrow #223, #697: a group may be allowed some lag before it is judged."""
    batchy = series([0, 100, 200, 300, 400], [150, 250, 350, 450, 550], active=True)
    assert evaluate_partition(batchy, policy=POLICY).status is Status.WARN
    verdict = evaluate_partition(batchy, policy=POLICY, allowed_lag=200)
    assert verdict.status is Status.OK
    assert "within allowed_lag 200" in verdict.reason
    # beyond the allowance the rules apply again, with "caught up" meaning "within it"
    assert evaluate_partition(batchy, policy=POLICY, allowed_lag=100).status is Status.WARN


def test_allowed_lag_regexes_match_the_whole_name_first_wins() -> None:
    rules = [(re.compile(r"batch-.*"), 5000), (re.compile(r"batch-nightly"), 1),
             (re.compile(r"notif"), 7)]
    assert allowed_lag_for("batch-nightly", rules) == 5000
    assert allowed_lag_for("notification-service", rules) == 0  # "notif" is not the whole name
    assert allowed_lag_for("other", rules, default=3) == 3


# ---------------------------------------------------------------- groups and invariants


def test_group_status_is_the_worst_partition() -> None:
    assert evaluate_group([Status.OK, Status.WARN, Status.STALL, Status.OK]) is Status.STALL
    assert evaluate_group([Status.REWIND, Status.STOP]) is Status.STOP
    assert evaluate_group([]) is Status.OK
    assert evaluate_group([Status.OK], error="describe: timed out") is Status.ERR


def test_partition_status_without_commits_is_ok() -> None:
    assert partition_status([], [], 10, 100.0).status is Status.OK


samples_strategy = st.lists(
    st.builds(
        Sample,
        time=st.floats(0, 1e6, allow_nan=False),
        committed=st.one_of(st.none(), st.integers(0, 10_000)),
        end=st.one_of(st.none(), st.integers(0, 10_000)),
        active=st.one_of(st.none(), st.booleans()),
    ),
    max_size=15,
)


@given(samples_strategy, st.integers(0, 500))
def test_any_window_gets_a_status_and_a_reason(samples: list[Sample], allowed: int) -> None:
    verdict = evaluate_partition(samples, policy=POLICY, allowed_lag=allowed)
    assert isinstance(verdict.status, Status)
    assert verdict.reason
    current = sorted(samples, key=lambda s: s.time)[-1] if samples else None
    if current is not None and current.lag is not None and current.lag <= allowed:
        assert verdict.status is Status.OK


def test_a_stopped_group_keeps_its_last_commit_however_many_samples_follow() -> None:
    """Burrow's window is the last N commits: sampling often must not hide a STOP."""
    small = StatusPolicy(window=4, min_samples=2, grace_seconds=1.0)
    samples = series([10] * 12, [11 + i for i in range(12)], active=False, every=0.3)
    verdict = evaluate_partition(samples, policy=small)
    assert verdict.status is Status.STOP
    assert "no commit for 3s" in verdict.reason


def test_stall_counts_how_long_the_offset_is_held_not_the_window_span() -> None:
    small = StatusPolicy(window=4, min_samples=2, grace_seconds=1.0)
    samples = series([10] * 8, [11 + i for i in range(8)], active=True, every=0.3)
    assert evaluate_partition(samples[:3], policy=small).status is Status.WARN  # held 0.6 s
    verdict = evaluate_partition(samples, policy=small)  # held 2.1 s, window spans 0.9 s
    assert verdict.status is Status.STALL
