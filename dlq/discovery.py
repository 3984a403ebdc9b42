"""Finding dead-letter topics: by name, and by what their records carry.

Names catch the conventions (Spring's ``.DLT``/``-dlt``, ``.dlq``, ...); content
catches the rest: the newest few records of every other topic are probed
for dead-letter headers. Records that lagdeck itself redrove carry the old
dead-letter headers too, so they do not make their (original) topic a DLQ.

Configurable in the ``[dlq]`` table of the config file (parsed by `dlq.options`, a light
module, since every command parses it at start-up)::

    [dlq]
    patterns = ["*-dlt", "*.DLT", "*.dlq", "*-dlq", "dlq-*", "*.deadletter"]  # replaces
    extra_patterns = ["*.errors"]   # added to the defaults
    content_scan = true             # probe other topics' newest records
    probe = 3                       # records per partition to probe
    sample = 500                    # newest records per topic behind top_errors
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collectors.config import ClusterConfig, Settings
from collectors.kafka import DEFAULT_TIMEOUT, consumer
from collectors.scan import READER_CONF, count_records, iter_bounded, to_record, watermarks
from collectors.snapshots import Header, Record
from collectors.topics import list_topics
from dlq.browse import EXACT_COUNT_LIMIT
from dlq.options import DEFAULT_PATTERNS, DiscoveryOptions
from tracing.deadletter import REDRIVE_ID_HEADER, decode_envelope


@dataclass(frozen=True)
class ErrorCount:
    error_class: str
    count: int


@dataclass(frozen=True)
class DlqTopicSummary:
    """One dead-letter topic at a glance.

    `depth` counts the data records (transaction markers excluded, found by
    reading) when `depth_exact`, else, beyond `EXACT_COUNT_LIMIT` offsets, the
    span between the watermarks; `top_errors` are counted over the newest `sampled`
    records; `matched_by` is "name" or "content".
    """

    topic: str
    depth: int
    partitions: int
    oldest_ms: int | None
    newest_ms: int | None
    top_errors: tuple[ErrorCount, ...]
    sampled: int
    matched_by: str
    layouts: tuple[str, ...] = ()
    depth_exact: bool = True


def matches_name(topic: str, patterns: Sequence[str] = DEFAULT_PATTERNS) -> bool:
    """Case-insensitive glob match of a topic name against dead-letter name patterns."""
    lowered = topic.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


def _is_dead_letter_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    if not headers:
        return None
    if any(k.lower() == REDRIVE_ID_HEADER for k, _ in headers):
        return None
    record = Record("", 0, 0, None, None, None, tuple(Header(str(k), v) for k, v in headers))
    envelope = decode_envelope(record)
    return envelope.layout if envelope.is_dead_letter else None


def list_dead_letter_topics(cluster: ClusterConfig, settings: Settings | None = None,
                            *, timeout: float = DEFAULT_TIMEOUT,
                            options: DiscoveryOptions | None = None) -> list[DlqTopicSummary]:
    """Every dead-letter topic with depth, oldest/newest record times and top error classes.

    Reads only the newest `sample` records of each DLQ and `probe` records per
    partition of other topics; never whole topics. `options` (the `[dlq]` section
    parsed at start-up) wins over `settings`.
    """
    opts = options or DiscoveryOptions.from_settings(settings)
    topics = list_topics(cluster, timeout=timeout)
    by_name = {t for t in topics if matches_name(t, opts.patterns)}
    others = [t for t in topics if t not in by_name] if opts.content_scan else []
    parts = [(t, p) for t in sorted(topics) if t in by_name or t in others
             for p in range(topics[t])]
    if not parts:
        return []
    client = consumer(cluster, **READER_CONF)
    try:
        marks = watermarks(cluster, parts, timeout, client)
        by_content = _probe(client, others, topics, marks, opts.probe, timeout)
        dlqs = sorted(by_name | set(by_content))
        newest = _tail(client, dlqs, topics, marks, opts.sample, timeout)
        oldest = _heads(client, dlqs, topics, marks, timeout)
        spans = {t: sum(hi - lo for (tt, _), (lo, hi) in marks.items() if tt == t) for t in dlqs}
        exact = [t for t in dlqs if spans[t] <= EXACT_COUNT_LIMIT]
        counted = count_records(client, {k: v for k, v in marks.items() if k[0] in exact},
                                timeout=timeout) if exact else {}
    finally:
        client.close()
    out = []
    for t in dlqs:
        stamps, classes, layouts = newest.get(t, ([], Counter(), set()))
        out.append(DlqTopicSummary(
            topic=t,
            depth=sum(len(v) for (tt, _), v in counted.items() if tt == t)
            if t in exact else spans[t],
            partitions=topics[t],
            oldest_ms=oldest.get(t),
            newest_ms=max(stamps) if stamps else None,
            top_errors=tuple(ErrorCount(c, n) for c, n in classes.most_common(opts.top)),
            sampled=sum(classes.values()),
            matched_by="name" if t in by_name else "content",
            layouts=tuple(sorted(layouts)),
            depth_exact=t in exact,
        ))
    return out


def _tail_ranges(topics_: Sequence[str], topics: Mapping[str, int],
                 marks: Mapping[tuple[str, int], tuple[int, int]], per_topic: int):
    starts, ends = {}, {}
    for t in topics_:
        n = max(1, -(-per_topic // topics[t]))
        for p in range(topics[t]):
            lo, hi = marks[(t, p)]
            starts[(t, p)], ends[(t, p)] = max(lo, hi - n), hi
    return starts, ends


def _probe(client, others, topics, marks, probe, timeout) -> set[str]:
    if not others or probe <= 0:
        return set()
    ends = {(t, p): marks[(t, p)][1] for t in others for p in range(topics[t])}
    starts = {k: max(marks[k][0], hi - probe) for k, hi in ends.items()}
    found: set[str] = set()
    for msgs in iter_bounded(client, ends, starts, idle_timeout=timeout):
        for msg in msgs:
            if msg.topic() not in found and _is_dead_letter_headers(msg.headers()):
                found.add(msg.topic())
    client.unassign()
    return found


def _tail(client, dlqs, topics, marks, sample, timeout):
    starts, ends = _tail_ranges(dlqs, topics, marks, sample)
    out: dict[str, tuple[list[int], Counter, set[str]]] = {
        t: ([], Counter(), set()) for t in dlqs}
    for msgs in iter_bounded(client, ends, starts, idle_timeout=timeout):
        for msg in msgs:
            stamps, classes, layouts = out[msg.topic()]
            ts_type, ts = msg.timestamp()
            if ts_type and ts >= 0:
                stamps.append(ts)
            envelope = decode_envelope(to_record(msg))
            classes[envelope.error_class or "(unknown)"] += 1
            layouts.add(envelope.layout)
    client.unassign()
    return out


def _heads(client, dlqs, topics, marks, timeout) -> dict[str, int]:
    starts, ends = {}, {}
    for t in dlqs:
        for p in range(topics[t]):
            lo, hi = marks[(t, p)]
            starts[(t, p)], ends[(t, p)] = lo, min(hi, lo + 1)
    oldest: dict[str, int] = {}
    for msgs in iter_bounded(client, ends, starts, idle_timeout=timeout):
        for msg in msgs:
            ts_type, ts = msg.timestamp()
            if ts_type and ts >= 0:
                oldest[msg.topic()] = min(ts, oldest.get(msg.topic(), ts))
    client.unassign()
    return oldest
