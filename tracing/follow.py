"""Which id to follow a record's order by (from a dead letter to its timeline)."""

from __future__ import annotations

from collectors.config import Settings
from collectors.snapshots import Record
from tracing.headers import correlation_id, header_map, id_text
from tracing.settings import from_settings


def follow_id(record: Record, settings: Settings | None = None) -> str | None:
    """The record's correlation header (the names of the `[trace]` section), else its
    key when that is a printable id; None when it has neither.

    A bad `[trace]` section raises its `ConfigError`: following by the default
    header names instead would silently pick another id than the timeline uses.
    """
    names = from_settings(settings).correlation_headers
    found = correlation_id(header_map(record.headers), names)
    return found or id_text(record.key)
