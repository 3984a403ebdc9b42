"""Which id to follow a record's order by (from a dead letter to its timeline)."""

from __future__ import annotations

from collectors.snapshots import Record
from tracing.headers import correlation_id, header_map, id_text
from tracing.settings import TraceSettings


def follow_id(record: Record, settings: TraceSettings | None = None) -> str | None:
    """The record's correlation header (the names of the `[trace]` section, parsed and
    checked once at start-up), else its key when that is a printable id; None when it
    has neither. The same names the timeline uses, so both follow the same id."""
    names = (settings or TraceSettings()).correlation_headers
    found = correlation_id(header_map(record.headers), names)
    return found or id_text(record.key)
