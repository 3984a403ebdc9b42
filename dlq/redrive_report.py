"""What a redrive reports: progress while it runs, the result after, the audit counts.

Shared by the CLI summary, the TUI dialog and the audit log; the counts come
from a `Tally` that holds committed batches only (planned ones in a dry run),
so a run that stops part way reports exactly what it moved.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlq.redrive_plan import Batch

ProgressCallback = Callable[["RedriveProgress"], None]


@dataclass(frozen=True)
class RedriveProgress:
    """A point-in-time count for progress bars (CLI and TUI share it)."""

    scanned: int
    total: int
    selected: int
    redriven: int
    skipped: int
    failed: int
    elapsed_s: float
    dry_run: bool = False

    @property
    def rate(self) -> float:
        """Records scanned per second so far."""
        return self.scanned / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.rate <= 0:
            return None
        return max(0.0, (self.total - self.scanned) / self.rate)


@dataclass(frozen=True)
class RedriveSample:
    """One of the first records of a run, as a dry run shows it."""

    partition: int
    offset: int
    key: str | None
    target: str | None
    error_class: str | None
    error_message: str | None
    action: str  # "redrive", "skip" or "fail"
    reason: str | None = None


@dataclass(frozen=True)
class RedriveResult:
    """What a redrive (or its dry run) did, for the CLI summary, the TUI and the audit log.

    `selected = redriven + skipped + failed` for committed work (a dry run
    reports `redriven = 0` and what it would move in `targets`); `unmatched`
    were read but not selected; `errors` name the records that stopped their
    partition; `group` is the progress group a rerun resumes from.
    """

    topic: str
    dry_run: bool
    selected: int
    redriven: int
    skipped: int
    failed: int
    scanned: int
    unmatched: int
    group: str
    targets: tuple[tuple[str, int], ...] = ()
    reasons: tuple[tuple[str, int], ...] = ()
    samples: tuple[RedriveSample, ...] = ()
    start_offsets: tuple[tuple[int, int], ...] = ()
    end_offsets: tuple[tuple[int, int], ...] = ()
    cancelled: bool = False
    elapsed_s: float = 0.0
    errors: tuple[str, ...] = ()
    selection: str = "all records"
    #: from the first record produced to the last commit: the time spent moving records
    moving_s: float = 0.0
    #: records waiting behind a failure that stopped their partition
    behind: int = 0
    #: records in the snapshotted range a cancel or a fence left unread
    not_reached: int = 0
    #: set when another redrive with the same progress group took over (fenced)
    fenced: str | None = None

    @property
    def rate(self) -> float:
        """Records redriven per second while moving (what `--rate` limits)."""
        return self.redriven / self.moving_s if self.moving_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The docs/contracts.md `dlq redrive` document plus detail keys."""
        return {
            "topic": self.topic, "dry_run": self.dry_run, "selected": self.selected,
            "redriven": self.redriven, "skipped": self.skipped, "failed": self.failed,
            "scanned": self.scanned, "unmatched": self.unmatched, "group": self.group,
            "selection": self.selection, "cancelled": self.cancelled,
            "targets": [{"topic": t, "count": n} for t, n in self.targets],
            "reasons": [{"reason": r, "count": n} for r, n in self.reasons],
            "samples": [s.__dict__ for s in self.samples],
            "elapsed_s": round(self.elapsed_s, 3), "rate": round(self.rate, 1),
            "moving_s": round(self.moving_s, 3),
            "errors": list(self.errors), "behind": self.behind,
            "not_reached": self.not_reached, "fenced": self.fenced,
        }


@dataclass
class Tally:
    """Counts of committed batches (planned ones in a dry run): what the result reports."""

    scanned: int = 0
    selected: int = 0
    redriven: int = 0
    skipped: int = 0
    failed: int = 0
    unmatched: int = 0
    targets: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    samples: list[RedriveSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_produce: float | None = None
    last_commit: float | None = None
    #: partition -> offset of the failure that stopped it
    stops: dict[int, int] = field(default_factory=dict)
    #: partition -> next offset to handle (committed, or planned in a dry run)
    positions: dict[int, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"scanned": self.scanned, "selected": self.selected, "redriven": self.redriven,
                "skipped": self.skipped, "failed": self.failed, "unmatched": self.unmatched}

    def add(self, batch: Batch, sample_limit: int, dry_run: bool) -> None:
        """Fold a committed (or, in a dry run, planned) batch into the tally."""
        redrives = sum(batch.targets.values())
        self.scanned += len(batch.decisions)
        self.unmatched += batch.unmatched
        self.selected += len(batch.decisions) - batch.unmatched
        self.skipped += batch.skipped
        self.failed += batch.failed
        if not dry_run:
            self.redriven += redrives
        self.targets.update(batch.targets)
        self.reasons.update(batch.reasons)
        self.stops.update(batch.stops)
        self.positions.update(batch.offsets)
        self.errors.extend(batch.errors)
        self.samples.extend(batch.samples[:max(0, sample_limit - len(self.samples))])


def reporter(progress: ProgressCallback | None, tally: Tally, total: int, started: float,
             dry_run: bool) -> Callable[[], None]:
    """A callable that sends the tally's counts to `progress` (a no-op without one)."""
    def report() -> None:
        if progress is None:
            return
        progress(RedriveProgress(
            scanned=tally.scanned, total=total, selected=tally.selected,
            redriven=tally.redriven, skipped=tally.skipped, failed=tally.failed,
            elapsed_s=time.monotonic() - started, dry_run=dry_run))
    return report


def audit_counts(result: RedriveResult) -> dict[str, int]:
    """The counts an audit entry records (committed batches only)."""
    return {"selected": result.selected, "redriven": result.redriven,
            "skipped": result.skipped, "failed": result.failed,
            "scanned": result.scanned, "unmatched": result.unmatched,
            "behind": result.behind, "not_reached": result.not_reached}
