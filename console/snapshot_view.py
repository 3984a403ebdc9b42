"""Lag read from the snapshot topic, as `lag`, `watch` and the TUI show it.

The figures are the publisher's; what the viewer adds is how old they are,
who published them, and whether they are stale (older than
`STALE_INTERVALS` of the publisher's interval): a stale group is shown as
STALE, never as live.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from collectors.config import ClusterConfig
from collectors.lag import compile_group_regex
from collectors.snapshot_topic import PublishedLag, SnapshotReader
from collectors.snapshots import LagSnapshot
from collectors.timefmt import iso_utc
from console.context import to_jsonable


def filtered(published: PublishedLag, group_regex: str | None) -> PublishedLag:
    """Only the groups matching `group_regex` (searched, like `lag --group`)."""
    regex = compile_group_regex(group_regex)
    if regex is None:
        return published
    groups = tuple(g for g in published.snapshot.groups if regex.search(g.group))
    names = {g.group for g in groups}
    return dataclasses.replace(
        published, snapshot=dataclasses.replace(published.snapshot, groups=groups),
        provenance={g: p for g, p in published.provenance.items() if g in names})


def read_published(cluster: ClusterConfig, topic: str, group_regex: str | None = None, *,
                   timeout: float = 10.0) -> PublishedLag:
    compile_group_regex(group_regex)
    reader = SnapshotReader(cluster, topic, timeout=timeout)
    try:
        return filtered(reader.read(), group_regex)
    finally:
        reader.close()


def stale_ages(published: PublishedLag, now: float | None = None) -> dict[str, float]:
    """group -> age in seconds, for the stale groups only."""
    now = time.time() if now is None else now
    return {g: p.age(now) for g, p in published.provenance.items() if p.stale(now)}


def fresh_only(published: PublishedLag, now: float | None = None) -> LagSnapshot:
    """The snapshot without its stale groups, which `watch` must not judge as live: their
    absence is reported as an error, so alerts on them are held, not resolved."""
    stale = stale_ages(published, now)
    snapshot = published.snapshot
    if not stale:
        return snapshot
    groups = tuple(g for g in snapshot.groups if g.group not in stale)
    errors = (*snapshot.errors,
              f"{len(stale)} group snapshot(s) on {published.topic} are stale (older than a "
              f"few publisher intervals): {', '.join(sorted(stale)[:5])}"
              + (" ..." if len(stale) > 5 else ""))
    return dataclasses.replace(snapshot, groups=groups, errors=errors)


def published_document(published: PublishedLag, now: float | None = None) -> dict[str, Any]:
    """`lag --json` from snapshots: each group adds `snapshot_at`, `published_by`,
    `age_seconds` and `stale`; the top level says `"offsets_via": "snapshots"`."""
    now = time.time() if now is None else now
    doc = to_jsonable(published.snapshot)
    for group in doc["groups"]:
        p = published.provenance.get(group["group"])
        if p is None:
            continue
        group.update(snapshot_at=iso_utc(p.snapshot_at), published_by=p.published_by,
                     age_seconds=round(p.age(now), 3), stale=p.stale(now))
    doc["offsets_via"] = "snapshots"
    doc["offsets_via_reason"] = f"read from the lag snapshots on {published.topic}"
    doc["snapshot_topic"] = published.topic
    return doc

