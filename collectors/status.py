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

import functools
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

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

    Same rules, same verdicts and reasons (tests/test_status_fast.py checks it against
    `evaluate_partition` on generated windows); the work is `evaluate_current`'s.
    """
    if not samples:
        return Verdict(Status.OK, "no samples")
    current = samples[-1]
    committed = current.committed
    if committed is None:
        return Verdict(Status.OK, "no committed offset")
    if current.end is None:
        return Verdict(Status.ERR, "end offset unknown")
    status, reason = evaluate_current(samples[:-1], current.time, committed, current.end,
                                      current.active, policy=policy, allowed_lag=allowed_lag)
    return Verdict(status, reason)


def evaluate_current(
    history: Sequence[Sample],
    now: float,
    committed: int,
    end: int,
    active: bool | None,
    policy: StatusPolicy = StatusPolicy(),
    allowed_lag: int = 0,
) -> tuple[Status, str]:
    """`evaluate_window([*history, Sample(now, committed, end, active)])`, as (status, reason).

    The collector judges every partition of every refresh (100,000 at 10,000 groups)
    against the window the history holds plus the sample taken now; this does it
    without building that window, a `Verdict` or Burrow's `Commit`s:

    - one walk back from the newest sample finds the run at the current offset (how
      long it is held) and whether the STOP-from-samples evidence holds over it;
    - only when that rule does not decide, one more walk collects the newest
      `window` commits and every Burrow rule over them at once.

    `history` is in time order; `committed` and `end` are known (the collector gives
    unknown ones their own verdicts before this).
    """
    lag = end - committed
    if lag < 0:
        lag = 0
    if lag <= allowed_lag:
        if lag == 0:
            return Status.OK, "caught up"
        return Status.OK, f"lag {lag} within allowed_lag {allowed_lag}"
    window = policy.window if policy.window > 1 else 1
    # the run of samples at the current offset (samples with no committed offset are
    # skipped, as `evaluate_partition` drops them), newest first
    held = 1  # the current sample
    since = now
    stop = active is False  # every sample of the run inactive and lagging so far
    before: float | None = None  # the time of the newest sample before the run
    # lagging above allowed_lag: max(0, x) > a is x > a for a >= 0 (else: any lag)
    ceiling = committed + allowed_lag if allowed_lag >= 0 else -math.inf
    for t, c, e, a in reversed(history):
        if c is None:
            continue
        if c != committed:
            before = t
            break
        held += 1
        since = t
        if stop and (a is not False or e is None or e <= ceiling):
            stop = False
    known = held if before is None else held + 1  # samples with an offset, at least
    needed = policy.min_samples
    if known < needed or window < needed:
        have = min(window, 1 + sum(1 for s in history if s[1] is not None))
        if have < needed:
            return Status.UNKNOWN, (f"lag {lag}; status needs {needed} samples, have {have} "
                                    "(run again or use --samples)")
    grace = policy.grace_seconds
    if stop:
        span = now - since
        if span > grace:
            words, when = _stop_words(now, since, before, grace)
            return Status.STOP, (f"no commit for {words} of sampling (offset {committed}) "
                                 f"while lag is {lag} and no member is active; {when}")
    return _burrow(history, now, committed, end, active, lag, now - since, window,
                   allowed_lag, grace)


def _burrow(history: Sequence[Sample], now: float, committed: int, end: int,
            active: bool | None, lag: int, held_seconds: float, window: int,
            allowed_lag: int, grace: float) -> tuple[Status, str]:
    """`partition_status` over the newest `window` commits (`commits_from_samples`) of
    the samples, in one walk from the newest: every rule folded as the commits come."""
    # the samples with a committed offset (so `int`), then the current one
    ordered = cast("list[tuple[float, int, int | None, bool | None]]",
                   [s for s in history if s[1] is not None])
    ordered.append((now, committed, end, active))
    i = len(ordered) - 1
    count = 0  # commits collected
    visited = 0  # samples walked (the newest `window` of them give "recent" end offsets)
    min_end: int | None = None
    newest = oldest = committed  # offsets of the newest and the oldest commit so far
    newest_time = oldest_time = now
    newer = committed  # offset of the commit after (newer than) the one being looked at
    back: int | None = None  # the first offset (in time order) that went back
    nonzero = True  # Burrow's lag_always_nonzero
    stalled = True  # every commit at the same offset
    not_decreasing = True
    newer_lag: int | None = None  # the known lag of the nearest newer commit
    while i >= 0 and count < window:
        t, offset, e, a = ordered[i]
        if visited < window:
            visited += 1
            if e is not None and (min_end is None or e < min_end):
                min_end = e
        # Burrow's commits from samples: a new offset, or the same one while members hold it
        if i == 0 or a or offset != ordered[i - 1][1]:
            if count == 0:
                newest, newest_time = offset, t
            else:
                if newer < offset:
                    back = newer
                if offset != newer:
                    stalled = False
            newer = oldest = offset
            oldest_time = t
            if e is not None:
                commit_lag = e - offset if e > offset else 0
                if commit_lag <= allowed_lag:
                    nonzero = False
                if newer_lag is not None and commit_lag > newer_lag:
                    not_decreasing = False
                newer_lag = commit_lag
            count += 1
        i -= 1
    silence = now - newest_time
    if (
        silence > newest_time - oldest_time
        and silence >= grace
        and not (min_end is not None and min_end - newest <= allowed_lag)
    ):
        return Status.STOP, (f"no commit for {_span(silence)} (offset {newest}) while lag is "
                             f"{lag}")
    if back is not None:
        return Status.REWIND, f"committed offset went back to {back}"
    if nonzero and count >= 2:
        span = newest_time - oldest_time
        held = max(span, held_seconds)
        if stalled and held >= grace:
            return Status.STALL, (f"consumer holds offset {newest} for {_span(held)} with lag "
                                  f"{lag}")
        if not_decreasing:
            return Status.WARN, f"lag not decreasing over {count} commits (now {lag})"
    if not nonzero:
        return Status.OK, f"lag {lag}; caught up earlier in the window"
    if silence > 0 and newest == oldest:
        return Status.UNKNOWN, (f"lag {lag}; no commit for {_span(silence)} "
                                f"(judged after {_span(grace)})")
    return Status.OK, f"lag {lag}; consumer progressing"


@functools.lru_cache(maxsize=1024)
def _stop_words(now: float, first: float, before: float | None,
                grace_seconds: float) -> tuple[str, str]:
    """How long a STOP run is held, and what is known of when its commit was made.

    Cached: the collector samples every partition at the same times, so thousands
    of stopped partitions share these words."""
    span = now - first
    if before is None:
        when = "commit time unknown (already committed at the oldest sample lagdeck has)"
    elif first - before > grace_seconds:
        when = f"commit time unknown (committed during a {_span(first - before)} gap in sampling)"
    else:
        when = f"committed between {_span(span)} and {_span(now - before)} ago"
    return _span(span), when


def _stopped_verdict(ordered: Sequence[Sample], held: int,
                     grace_seconds: float) -> Verdict | None:
    """The end of `stopped_from_samples`, once its run (`held` newest samples at the
    current offset, none active, all lagging) is known."""
    current = ordered[-1]
    first = ordered[-held]
    if current.time - first.time <= grace_seconds:
        return None
    before = ordered[-held - 1] if held < len(ordered) else None
    words, when = _stop_words(current.time, first.time,
                              None if before is None else before.time, grace_seconds)
    return Verdict(
        Status.STOP,
        f"no commit for {words} of sampling (offset {current.committed}) while lag is "
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
