"""What every scan result says about its scan: the window it looked at, what it read.

A timeline (`tracing.timeline.Timeline`) and a flow map (`tracing.flows.FlowMap`)
both come from reading topics over a window; they share these fields and the
`stats` object of their JSON documents (docs/contracts.md), each adding the
one count that is its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReadStats:
    """What a scan read from Kafka; a result's own counts come from `counts`."""

    topics: int = 0
    partitions: int = 0
    scanned_records: int = 0
    elapsed_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """The result's own counts, named as in its JSON `stats` (between records and time)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """The `stats` object of a result's JSON document."""
        return {"topics": self.topics, "partitions": self.partitions,
                "scanned_records": self.scanned_records, **self.counts(),
                "elapsed_seconds": round(self.elapsed_seconds, 3)}


@dataclass(frozen=True, kw_only=True)
class ScanWindow:
    """The window a result was computed over, and what is worth telling the operator."""

    since_seconds: float | None = None
    stuck_after_seconds: float | None = None
    generated_at_ms: int | None = None
    #: degradations worth telling the operator (index rebuilt, Jaeger unreachable, ...)
    notes: tuple[str, ...] = ()
