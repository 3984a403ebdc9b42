"""Burrow's consumer status rules, as pure functions over a partition's window.

Burrow (linkedin/Burrow, `core/internal/evaluator/caching.go`) judges a
partition over its last N offset commits. The five rules are ported one to
one below (`lag_always_nonzero` ... `recent_lag_zero`) and checked against
Burrow's own vectors in `tests/test_burrow_vectors.py`.

lagdeck cannot see commits, only the committed offset each time it samples
(OffsetFetch carries no commit time), so `commits_from_samples` turns a
window of samples into Burrow's commit list:

- a sample whose committed offset differs from the previous one is a commit
  seen at the sample time;
- a sample with an unchanged offset counts as a (re-)commit of that offset
  only while the group has live members: the consumer holds the partition
  and does not move (Burrow's STALL). A group with no members commits
  nothing, so its window keeps the old commit time and ages into STOP.

What `partition_status` changes on top of Burrow, each fixing a complaint of
Burrow's users, and each kept compatible with Burrow's vectors:

- lag is always current: end offset now minus committed offset, so a consumer
  that stopped committing shows growing lag (Burrow #126, #127);
- zero current lag is OK whatever the commit history says: an idle topic whose
  consumer is caught up is not STOP (Burrow #38, #128);
- `allowed_lag` per group: lag up to that many messages counts as caught up
  (Burrow #223, #697); 0 is Burrow's behaviour;
- REWIND is reported even if the lag was zero earlier in the window (a reset
  after catching up is still a reset);
- STOP and STALL need `grace_seconds` of evidence and STALL/WARN need two
  commits, so a consumer is not judged between two of its commits.

Group status is the worst partition status (severity order of `Status`), or
ERR when the group itself could not be read: one stuck partition is what the
operator must see, as in Burrow.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from collectors.snapshots import SEVERITY, Status


@dataclass(frozen=True)
class Commit:
    """Burrow's `ConsumerOffset`: an offset committed at `timestamp` (seconds), lag then."""

    offset: int
    timestamp: float
    lag: int | None


class Sample(NamedTuple):
    """One observation of a group's partition, as kept in the lag history.

    An immutable named tuple rather than a frozen dataclass: the history builds
    one per stored row on its first read (500,000 for 100,000 partitions with five
    samples each), and a frozen dataclass's `__init__` (one `object.__setattr__`
    per field) took twice as long as a tuple's construction.
    """

    time: float
    committed: int | None
    end: int | None
    #: the group had live members at that time (None: unknown)
    active: bool | None = None

    @property
    def lag(self) -> int | None:
        if self.committed is None or self.end is None:
            return None
        behind = self.end - self.committed
        return behind if behind > 0 else 0  # not max(): called ~200k times per refresh


@dataclass(frozen=True)
class StatusPolicy:
    """How a window is judged; defaults are Burrow's (10 intervals) plus lagdeck's guards."""

    #: commits per partition the status is judged over (Burrow's `intervals`)
    window: int = 10
    #: fewer samples than this: UNKNOWN, "status needs N samples"
    min_samples: int = 2
    #: STOP needs this long since the last commit; STALL a window at least this long
    grace_seconds: float = 10.0


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


# ---------------------------------------------------------------- Burrow's rules


def lag_always_nonzero(commits: Sequence[Commit], allowed_lag: int = 0) -> bool:
    """Rule 1: the lag never dropped to zero (to `allowed_lag`) over the window."""
    return not any(c.lag is not None and c.lag <= allowed_lag for c in commits)


def offsets_rewind(commits: Sequence[Commit]) -> bool:
    """Rule 2: the committed offset went backwards from one commit to the next."""
    return any(b.offset < a.offset for a, b in itertools.pairwise(commits))


def offsets_stopped(commits: Sequence[Commit], now: float) -> bool:
    """Rule 3: the time since the last commit exceeds the span of the window."""
    first, last = commits[0].timestamp, commits[-1].timestamp
    return (now - last) > (last - first)


def offsets_stalled(commits: Sequence[Commit]) -> bool:
    """Rule 4: every commit in the window is the same offset."""
    return all(c.offset == commits[0].offset for c in commits)


def lag_not_decreasing(commits: Sequence[Commit]) -> bool:
    """Rule 5: the lag never went down between commits (unknown lags are skipped)."""
    last: int | None = None
    for c in commits:
        if c.lag is None:
            continue
        if last is not None and c.lag < last:
            return False
        last = c.lag
    return True


def recent_lag_zero(
    commits: Sequence[Commit], broker_offsets: Iterable[int], allowed_lag: int = 0
) -> bool:
    """Burrow #303: the last commit had caught up with some recent end offset."""
    last = commits[-1].offset
    return any(end - last <= allowed_lag for end in broker_offsets)


# ---------------------------------------------------------------- evaluation


def partition_status(
    commits: Sequence[Commit],
    broker_offsets: Sequence[int],
    current_lag: int,
    now: float,
    *,
    allowed_lag: int = 0,
    grace_seconds: float = StatusPolicy.grace_seconds,
    held_seconds: float | None = None,
) -> Verdict:
    """Burrow's `calculatePartitionStatus` with lagdeck's fixes (see the module docstring).

    `held_seconds`: how long the current offset has been committed, when the
    history knows more than the window (default: the window's span).
    """
    if current_lag <= allowed_lag:
        if current_lag == 0:
            return Verdict(Status.OK, "caught up")
        return Verdict(Status.OK, f"lag {current_lag} within allowed_lag {allowed_lag}")
    if not commits:
        return Verdict(Status.OK, "no commits in the window")
    last = commits[-1]
    silence = now - last.timestamp
    if (
        offsets_stopped(commits, now)
        and silence >= grace_seconds
        and not recent_lag_zero(commits, broker_offsets, allowed_lag)
    ):
        return Verdict(
            Status.STOP,
            f"no commit for {_span(silence)} (offset {last.offset}) while lag is {current_lag}",
        )
    if offsets_rewind(commits):
        back = next(b for a, b in itertools.pairwise(commits) if b.offset < a.offset)
        return Verdict(Status.REWIND, f"committed offset went back to {back.offset}")
    if lag_always_nonzero(commits, allowed_lag) and len(commits) >= 2:
        span = last.timestamp - commits[0].timestamp
        held = span if held_seconds is None else max(span, held_seconds)
        if offsets_stalled(commits) and held >= grace_seconds:
            return Verdict(
                Status.STALL,
                f"consumer holds offset {last.offset} for {_span(held)} with lag {current_lag}",
            )
        if lag_not_decreasing(commits):
            return Verdict(
                Status.WARN,
                f"lag not decreasing over {len(commits)} commits (now {current_lag})",
            )
    if not lag_always_nonzero(commits, allowed_lag):
        return Verdict(Status.OK, f"lag {current_lag}; caught up earlier in the window")
    if silence > 0 and last.offset == commits[0].offset:
        return Verdict(Status.UNKNOWN, f"lag {current_lag}; no commit for {_span(silence)} "
                                       f"(judged after {_span(grace_seconds)})")
    return Verdict(Status.OK, f"lag {current_lag}; consumer progressing")


def commits_from_samples(samples: Sequence[Sample]) -> list[Commit]:
    """Burrow's commit list from lagdeck's samples (see the module docstring)."""
    commits: list[Commit] = []
    previous: int | None = None
    for s in samples:
        if s.committed is None:
            continue
        if previous is None or s.committed != previous or s.active:
            commits.append(Commit(s.committed, s.time, s.lag))
        previous = s.committed
    return commits


def evaluate_partition(
    samples: Sequence[Sample],
    *,
    now: float | None = None,
    policy: StatusPolicy = StatusPolicy(),
    allowed_lag: int = 0,
) -> Verdict:
    """Status of one partition from its recent samples (newest = current).

    Like Burrow, the rules look at the last `policy.window` commits, not samples:
    a group that stopped committing keeps its last commit, and its time, in the
    window however many samples were taken since. So pass the history you have
    (the collector passes about 30 samples); only the newest `window` samples'
    end offsets count for "caught up recently".
    """
    if not samples:
        return Verdict(Status.OK, "no samples")
    by_time = sorted(samples, key=lambda s: s.time)
    current = by_time[-1]
    if current.committed is None:
        return Verdict(Status.OK, "no committed offset")
    if current.lag is None:
        return Verdict(Status.ERR, "end offset unknown")
    lag = current.lag
    if lag <= allowed_lag:
        return partition_status([], [], lag, current.time, allowed_lag=allowed_lag)
    ordered = [s for s in by_time if s.committed is not None]
    recent = ordered[-max(1, policy.window):]
    if len(recent) < policy.min_samples:
        return Verdict(
            Status.UNKNOWN,
            f"lag {lag}; status needs {policy.min_samples} samples, have {len(recent)} "
            "(run again or use --samples)",
        )
    commits = commits_from_samples(ordered)[-max(1, policy.window):]
    ends = [s.end for s in recent if s.end is not None]
    since = current.time
    for s in reversed(ordered):
        if s.committed != current.committed:
            break
        since = s.time
    stopped = stopped_from_samples(ordered, policy.grace_seconds, allowed_lag)
    if stopped is not None:
        return stopped
    return partition_status(
        commits, ends, lag, current.time if now is None else now,
        allowed_lag=allowed_lag, grace_seconds=policy.grace_seconds,
        held_seconds=current.time - since,
    )


def evaluate_window(
    samples: Sequence[Sample],
    *,
    policy: StatusPolicy = StatusPolicy(),
    allowed_lag: int = 0,
) -> Verdict:
    """`evaluate_partition` for samples already in time order, with less work per call.

    The collector judges every lagging partition of every refresh (10,000 at
    1,000 groups) over windows that come out of the history sorted. Same rules,
    same verdicts and reasons (tests/test_status_fast.py checks it against
    `evaluate_partition` on generated windows); what it skips: sorting twice,
    recomputing each sample's lag, and building commits for samples older than
    the `window` newest commits, or at all when the STOP-from-samples rule decides.
    """
    if not samples:
        return Verdict(Status.OK, "no samples")
    current = samples[-1]
    committed = current.committed
    if committed is None:
        return Verdict(Status.OK, "no committed offset")
    if current.end is None:
        return Verdict(Status.ERR, "end offset unknown")
    lag = current.end - committed
    if lag < 0:
        lag = 0
    if lag <= allowed_lag:
        return partition_status([], [], lag, current.time, allowed_lag=allowed_lag)
    ordered = [s for s in samples if s.committed is not None]
    window = max(1, policy.window)
    recent = ordered[-window:]
    if len(recent) < policy.min_samples:
        return Verdict(
            Status.UNKNOWN,
            f"lag {lag}; status needs {policy.min_samples} samples, have {len(recent)} "
            "(run again or use --samples)",
        )
    # the run of samples at the current offset (STOP from samples, and how long it is held)
    n = len(ordered)
    held = 1
    while held < n and ordered[n - 1 - held].committed == committed:
        held += 1
    run = ordered[n - held:]
    since = run[0].time
    stopped = None
    if all(s.active is False for s in run):
        # every lag known and above allowed_lag; max(0, x) > a is x > a for a >= 0
        if allowed_lag >= 0:
            lagging = all(s.end is not None and s.end - committed > allowed_lag for s in run)
        else:
            lagging = all(s.end is not None for s in run)
        if lagging:
            stopped = _stopped_verdict(ordered, held, policy.grace_seconds)
    if stopped is not None:
        return stopped
    # Burrow's commits, newest first until `window` of them, then put back in order
    commits: list[Commit] = []
    i = n - 1
    while i >= 0 and len(commits) < window:
        s = ordered[i]
        offset = s.committed  # never None in `ordered`; the check is for the type checker
        if offset is not None and (i == 0 or offset != ordered[i - 1].committed or s.active):
            commits.append(Commit(offset, s.time, s.lag))
        i -= 1
    commits.reverse()
    ends = [s.end for s in recent if s.end is not None]
    return partition_status(
        commits, ends, lag, current.time,
        allowed_lag=allowed_lag, grace_seconds=policy.grace_seconds,
        held_seconds=current.time - since,
    )


def _stopped_verdict(ordered: Sequence[Sample], held: int,
                     grace_seconds: float) -> Verdict | None:
    """The end of `stopped_from_samples`, once its run (`held` newest samples at the
    current offset, none active, all lagging) is known."""
    current = ordered[-1]
    first = ordered[-held]
    span = current.time - first.time
    if span <= grace_seconds:
        return None
    before = ordered[-held - 1] if held < len(ordered) else None
    if before is None:
        when = "commit time unknown (already committed at the oldest sample lagdeck has)"
    elif first.time - before.time > grace_seconds:
        when = (f"commit time unknown (committed during a {_span(first.time - before.time)} "
                "gap in sampling)")
    else:
        when = f"committed between {_span(span)} and {_span(current.time - before.time)} ago"
    return Verdict(
        Status.STOP,
        f"no commit for {_span(span)} of sampling (offset {current.committed}) while lag is "
        f"{current.lag} and no member is active; {when}",
    )


def stopped_from_samples(
    samples: Sequence[Sample], grace_seconds: float, allowed_lag: int = 0
) -> Verdict | None:
    """STOP judged from what lagdeck saw, never from when a commit was made.

    Kafka's admin API gives no commit times, so a commit first seen at the
    start of the history or after a gap in sampling may be hours old; dating
    it "now" kept a stopped consumer OK until the window aged out (minutes).
    Instead: the committed offset did not move across samples spanning more
    than `grace_seconds`, the lag stayed above `allowed_lag`, and the group had no
    active members in any of those samples: STOP, whatever the times say.
    Returns None when that evidence is not there (the Burrow rules decide).
    """
    ordered = sorted((s for s in samples if s.committed is not None), key=lambda s: s.time)
    if not ordered:
        return None
    current = ordered[-1]
    if current.lag is None or current.lag <= allowed_lag:
        return None
    held = 0
    for s in reversed(ordered):
        if s.committed != current.committed:
            break
        held += 1
    run = ordered[-held:]
    if any(s.active is not False for s in run):
        return None  # members (STALL is Burrow's call) or unknown membership: no verdict
    if any(s.lag is None or s.lag <= allowed_lag for s in run):
        return None  # it had caught up with this offset: Burrow's "recent lag zero" decides
    return _stopped_verdict(ordered, held, grace_seconds)


def evaluate_group(statuses: Iterable[Status], error: str | None = None) -> Status:
    """Worst partition status; ERR when the group itself could not be read."""
    if error is not None:
        return Status.ERR
    return max(statuses, key=SEVERITY.__getitem__, default=Status.OK)


def allowed_lag_for(
    group: str, rules: Sequence[tuple[re.Pattern[str], int]], default: int = 0
) -> int:
    """The first `[lag.allowed_lag]` entry whose regex matches the whole group name."""
    for pattern, allowed in rules:
        if pattern.fullmatch(group):
            return allowed
    return default


def _span(seconds: float) -> str:
    if seconds < 0:
        seconds = 0.0
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
