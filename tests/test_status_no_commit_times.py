"""STOP without commit timestamps (issue 17): judged from samples, never from commit times.

Kafka's OffsetFetch carries no commit time, so a commit first seen after a gap in
sampling used to be dated "now" and a stopped consumer stayed OK for minutes.
"""

from __future__ import annotations

from collectors.snapshots import Status
from collectors.status import Sample, StatusPolicy, evaluate_partition, stopped_from_samples

GRACE = 10.0


def test_offset_seen_first_after_a_gap_is_not_assumed_fresh() -> None:
    """The demo's loyalty-service: progressing while sampled, then stopped during a gap."""
    before_gap = [Sample(t, 100 + t, 200 + t, active=True) for t in range(0, 50, 5)]
    after_gap = [Sample(t, 400, 817, active=False) for t in (650.0, 652.0, 661.0)]
    verdict = evaluate_partition([*before_gap, *after_gap],
                                 policy=StatusPolicy(grace_seconds=GRACE))
    assert verdict.status is Status.STOP, verdict
    assert "no commit for 11s of sampling (offset 400)" in verdict.reason
    assert "commit time unknown (committed during a 10m gap in sampling)" in verdict.reason


def test_fresh_history_two_samples_within_grace_then_one_after() -> None:
    within = [Sample(0.0, 5, 20, active=False), Sample(2.0, 5, 20, active=False)]
    assert stopped_from_samples(within, GRACE) is None
    assert evaluate_partition(within, policy=StatusPolicy(grace_seconds=GRACE)).status \
        is not Status.STOP
    after = [*within, Sample(10.5, 5, 20, active=False)]
    verdict = evaluate_partition(after, policy=StatusPolicy(grace_seconds=GRACE))
    assert verdict.status is Status.STOP
    assert "commit time unknown (already committed at the oldest sample lagdeck has)" \
        in verdict.reason


def test_no_stop_with_members_unknown_membership_or_no_lag() -> None:
    def run(active: bool | None, end: int = 20) -> list[Sample]:
        return [Sample(t, 5, end, active=active) for t in (0.0, 5.0, 11.0)]

    assert stopped_from_samples(run(True), GRACE) is None  # a live member holding: STALL's call
    assert stopped_from_samples(run(None), GRACE) is None
    assert stopped_from_samples(run(False, end=5), GRACE) is None  # caught up
    assert stopped_from_samples(run(False, end=7), GRACE, allowed_lag=2) is None
    assert stopped_from_samples(run(False), GRACE) is not None


def test_commit_seen_between_close_samples_has_a_bounded_age() -> None:
    samples = [Sample(0.0, 3, 20, active=False), Sample(2.0, 5, 20, active=False),
               Sample(13.0, 5, 20, active=False)]
    verdict = stopped_from_samples(samples, GRACE)
    assert verdict is not None and verdict.status is Status.STOP
    assert "committed between 11s and 13s ago" in verdict.reason
    assert "unknown" not in verdict.reason
