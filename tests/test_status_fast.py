"""`evaluate_window` (the collector's status path) gives `evaluate_partition`'s verdicts.

Generated windows cover what the rules branch on: offsets that move, hold and
go back, unknown end offsets and committed offsets, members present, absent or
unknown, gaps in sampling, allowed lag, window and grace settings.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.status import (
    Sample,
    StatusPolicy,
    evaluate_current,
    evaluate_partition,
    evaluate_window,
)


@st.composite
def windows(draw: st.DrawFn) -> list[Sample]:
    n = draw(st.integers(0, 40))
    t = draw(st.floats(0, 1e6))
    committed = draw(st.integers(0, 50))
    end = committed + draw(st.integers(0, 30))
    out: list[Sample] = []
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 1.0, 5.0, 9.0, 30.0, 600.0]))
        committed = max(0, committed + draw(st.sampled_from([0, 0, 0, 1, 3, -2])))
        end = max(committed, end) + draw(st.sampled_from([0, 0, 1, 4]))
        out.append(Sample(
            t,
            None if draw(st.integers(0, 12)) == 0 else committed,
            None if draw(st.integers(0, 15)) == 0 else end,
            draw(st.sampled_from([None, True, False, False])),
        ))
    return out


@settings(max_examples=800, deadline=None)
@given(samples=windows(), window=st.integers(1, 12), min_samples=st.integers(1, 4),
       grace=st.sampled_from([0.0, 5.0, 10.0, 60.0]), allowed=st.sampled_from([0, 1, 5, 40]))
def test_same_verdict_as_the_reference(samples: list[Sample], window: int, min_samples: int,
                                       grace: float, allowed: int) -> None:
    policy = StatusPolicy(window=window, min_samples=min(window, min_samples),
                          grace_seconds=grace)
    expected = evaluate_partition(samples, policy=policy, allowed_lag=allowed)
    assert evaluate_window(samples, policy=policy, allowed_lag=allowed) == expected


def test_a_stopped_group_is_stop_on_both_paths() -> None:
    """A check that the generator reaches the STOP-from-samples branch at all."""
    samples = [Sample(float(t), 5, 20, False) for t in range(0, 60, 5)]
    verdict = evaluate_window(samples, allowed_lag=0)
    assert verdict == evaluate_partition(samples)
    assert verdict.status.value == "STOP" and "no member is active" in verdict.reason


@settings(max_examples=400, deadline=None)
@given(history=windows(), committed=st.integers(0, 60), lag=st.integers(-3, 40),
       active=st.sampled_from([None, True, False, False]), later=st.sampled_from([0.0, 1.0, 30.0]),
       window=st.integers(1, 12), min_samples=st.integers(1, 6),
       grace=st.sampled_from([0.0, 5.0, 10.0, 60.0]), allowed=st.sampled_from([-1, 0, 1, 5, 40]))
def test_the_collectors_call_gives_the_references_verdict(
        history: list[Sample], committed: int, lag: int, active: bool | None, later: float,
        window: int, min_samples: int, grace: float, allowed: int) -> None:
    """`evaluate_current` (history + the sample taken now, as the collector calls it),
    with any min_samples (even above the window) and a negative allowed lag too."""
    now = (history[-1].time if history else 0.0) + later
    policy = StatusPolicy(window=window, min_samples=min_samples, grace_seconds=grace)
    expected = evaluate_partition([*history, Sample(now, committed, committed + lag, active)],
                                  policy=policy, allowed_lag=allowed)
    status, reason = evaluate_current(history, now, committed, committed + lag, active,
                                      policy=policy, allowed_lag=allowed)
    assert (status, reason) == (expected.status, expected.reason)


@pytest.mark.parametrize("allowed", [0, 3])
def test_a_run_that_was_within_allowed_lag_is_not_stop_from_samples(allowed: int) -> None:
    """The STOP-from-samples boundary: lag exactly `allowed_lag` in the run counts as
    caught up (Burrow's rules decide), on both paths."""
    history = [Sample(float(t), 5, 5 + allowed, False) for t in range(0, 60, 5)]
    status, reason = evaluate_current(history, 60.0, 5, 20, False, allowed_lag=allowed)
    expected = evaluate_partition([*history, Sample(60.0, 5, 20, False)], allowed_lag=allowed)
    assert (status, reason) == (expected.status, expected.reason)
    assert "no member is active" not in reason
