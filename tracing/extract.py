"""Everything a record says about which order it belongs to, two ways.

`describe` is the reference: it decodes one `Record` with the header and
payload decoders into an `EventInfo`, and `index_keys` lists what the
correlation index files it under. `FastDecoder` computes both from the raw
key/value/headers of a confluent-kafka message at bulk-scan speed: it
parses `traceparent` with OpenTelemetry's grammar on bytes, avoids parsing
JSON when a regex shows the payload cannot add a new id, and only decodes
dead-letter headers when a header name hints at them. Property tests check
that the two agree on arbitrary bytes, so what the index answers is what a
full decode would say.

Ids are matched as UTF-8 bytes, so the index stores `bytes`; values that are
not valid UTF-8 may sit in the index but can never equal a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collectors.snapshots import Header, Record
from tracing.deadletter import DeadLetterEnvelope, decode_envelope
from tracing.headers import (
    MAX_ID_BYTES,
    OTHER_TRACE_HEADERS,
    TRACEPARENT,
    correlation_id,
    correlation_ids,
    event_type_header,
    fast_traceparent,
    header_map,
    id_text,
    trace_contexts,
)
from tracing.payload import (
    MAX_JSON_BYTES,
    display,
    event_type,
    key_occurrences,
    key_text,
    order_ids,
    parse_json,
)
from tracing.settings import TraceSettings


@dataclass(frozen=True)
class DeadLetterInfo:
    """Why a record on a dead-letter topic was dead-lettered, and where it came from."""

    layout: str
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_group: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    attempts: int | None = None
    problems: tuple[str, ...] = ()

    @classmethod
    def from_envelope(cls, env: DeadLetterEnvelope) -> DeadLetterInfo:
        message = env.error_message
        return cls(
            layout=env.layout,
            original_topic=env.original_topic,
            original_partition=env.original_partition,
            original_offset=env.original_offset,
            original_group=env.original_group,
            error_class=env.error_class,
            error_message=(display(message.encode("utf-8", "replace"), 300)
                           if message is not None else None),
            attempts=env.attempts,
            problems=env.problems,
        )

    @property
    def origin(self) -> tuple[str, int, int] | None:
        if self.original_topic is None or self.original_partition is None \
                or self.original_offset is None:
            return None
        return (self.original_topic, self.original_partition, self.original_offset)


def dead_letter_info(record: Record) -> DeadLetterInfo | None:
    env = decode_envelope(record)
    return DeadLetterInfo.from_envelope(env) if env.is_dead_letter else None


@dataclass(frozen=True)
class EventInfo:
    """One record as a timeline shows it (decoded from the record or from the index)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    event_type: str | None
    correlation_id: str | None
    trace_id: str | None
    span_id: str | None
    dead_letter: DeadLetterInfo | None = None

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def record_ids(record: Record, settings: TraceSettings) -> frozenset[str]:
    """Every id a record can be found by: correlation ids, key, payload order ids, trace ids."""
    headers = header_map(record.headers)
    ids = set(correlation_ids(headers, settings.correlation_headers))
    key = id_text(record.key)
    if key is not None:
        ids.add(key)
    ids.update(order_ids(parse_json(record.value), settings.order_id_paths))
    ids.update(ctx.trace_id for ctx in trace_contexts(headers))
    return frozenset(ids)


def reference_id(topic: str, partition: int, offset: int) -> bytes:
    """The index key under which dead letters pointing at a record are filed.

    Starts with a NUL byte, so no id typed by a user can collide with it.
    """
    return b"\x00dl\x00" + f"{topic}\x00{partition}\x00{offset}".encode("utf-8", "replace")


def index_keys(record: Record, settings: TraceSettings) -> frozenset[bytes]:
    """Everything the index files a record under: its ids and, for a dead letter, its origin."""
    keys = {i.encode("utf-8") for i in record_ids(record, settings)}
    info = dead_letter_info(record)
    if info is not None and info.origin is not None:
        keys.add(reference_id(*info.origin))
    return frozenset(keys)


def describe(record: Record, settings: TraceSettings) -> EventInfo:
    """The reference decoding of one record for a timeline; never raises on record content."""
    headers = header_map(record.headers)
    contexts = trace_contexts(headers)
    ctx = contexts[0] if contexts else None
    return EventInfo(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        key=key_text(record.key),
        event_type=(event_type_header(headers, settings.event_type_headers)
                    or event_type(parse_json(record.value), settings.event_type_paths)),
        correlation_id=correlation_id(headers, settings.correlation_headers),
        trace_id=ctx.trace_id if ctx else None,
        span_id=ctx.span_id if ctx else None,
        dead_letter=dead_letter_info(record),
    )


_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
# A header name's category is an int: the kind in bits 0-2, a dead-letter hint in
# bit 3 and, for correlation and event-type headers, the configured rank above.
_IGNORED, _CORRELATION, _TRACEPARENT, _OTHER_TRACE, _EVENT_TYPE = range(5)
_DEAD_LETTER = 8  # the name hints at a dead-letter layout
#: Substrings of header names every dead-letter layout uses somewhere (see tracing.deadletter).
_DEAD_LETTER_HINTS = ("topic", "error", "exception", "kafka_", "__connect")

#: A record as the index keeps it: marshal-friendly primitives only.
#: (offset, timestamp_ms, key, event_type, correlation_id, trace_id, span_id, dead_letter)
Row = tuple


class FastDecoder:
    """`index_keys` and `describe` for the bulk scan, from raw message parts.

    Header names are classified once (they repeat across records). When the
    event type comes from a header, the payload is parsed as JSON only if a
    configured order-id key in it holds a value that is not already one of
    the record's ids (or the text escapes characters the search cannot see
    through); in the common case (order id in the key or a correlation
    header *and* in the payload) no JSON is parsed at all.
    """

    def __init__(self, settings: TraceSettings) -> None:
        self.settings = settings
        self.correlation_rank = {}
        for name in settings.correlation_headers:
            self.correlation_rank.setdefault(name.lower(), len(self.correlation_rank))
        self.event_type_rank = {}
        for name in settings.event_type_headers:
            self.event_type_rank.setdefault(name.lower(), len(self.event_type_rank))
        self.paths = settings.order_id_paths
        leaves = [p.rsplit(".", 1)[-1] for p in self.paths]
        self.any_paths = bool(leaves)
        #: a leaf the regex cannot find (a list index): always parse JSON payloads
        self.always_parse = any(not _SIMPLE_KEY.fullmatch(leaf) for leaf in leaves)
        simple = sorted({leaf for leaf in leaves if _SIMPLE_KEY.fullmatch(leaf)})
        self.leaf_tokens = tuple((leaf.encode(), b'"' + leaf.encode() + b'"') for leaf in simple)
        self.event_type_paths = settings.event_type_paths
        #: header name as written -> what it carries (names repeat across records)
        self._names: dict[str, int] = {}

    def _category(self, name: str) -> int:
        lowered = name.lower()
        if lowered in self.correlation_rank:
            cat = _CORRELATION
        elif lowered == TRACEPARENT:
            cat = _TRACEPARENT
        elif lowered in OTHER_TRACE_HEADERS:
            cat = _OTHER_TRACE
        elif lowered in self.event_type_rank:
            cat = _EVENT_TYPE
        else:
            cat = _IGNORED
        if any(hint in lowered for hint in _DEAD_LETTER_HINTS):
            cat |= _DEAD_LETTER
        if cat & 7 == _CORRELATION:
            cat |= self.correlation_rank[lowered] << 4
        elif cat & 7 == _EVENT_TYPE:
            cat |= self.event_type_rank[lowered] << 4
        if len(self._names) < 10_000:  # a hostile topic cannot grow this without bound
            self._names[name] = cat
        return cat

    def irregular_header(self, name: str) -> bool:
        """Whether a header may give ids not spelled out in it (B3/Jaeger, dead letters)."""
        cat = self._names.get(name)
        if cat is None:
            cat = self._category(name)
        return bool(cat & _DEAD_LETTER) or cat & 7 == _OTHER_TRACE

    def decode(self, offset: int, timestamp_ms: int | None, key: bytes | None,
               value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None
               ) -> tuple[set[bytes], Row]:
        """(index keys, row) of one record; see `index_keys` and `describe`."""
        ids: set[bytes] = set()
        if key is not None:
            k = key.strip()
            if k and len(k) <= MAX_ID_BYTES:
                ids.add(k)
        trace = span = correlation = etype = dead = None
        if headers:
            traceparent = None
            others = dead_hint = False
            corr_found: list[tuple[int, int, bytes]] | None = None
            etype_found: dict[int, bytes | None] | None = None
            names = self._names
            for name, raw in headers:
                cat = names.get(name)
                if cat is None:
                    cat = self._category(name)
                if cat == _IGNORED:
                    continue
                if cat & _DEAD_LETTER:
                    dead_hint = True
                kind = cat & 7
                if kind == _CORRELATION:
                    if raw is not None:
                        v = raw.strip()
                        if v and len(v) <= MAX_ID_BYTES:
                            ids.add(v)
                            if corr_found is None:
                                corr_found = []
                            corr_found.append((cat >> 4, -len(corr_found), v))
                elif kind == _TRACEPARENT:
                    traceparent = raw
                elif kind == _EVENT_TYPE:
                    if etype_found is None:
                        etype_found = {}
                    etype_found[cat >> 4] = raw
                elif kind == _OTHER_TRACE:
                    others = True
            if traceparent is not None:
                found = fast_traceparent(traceparent)
                if found is not None:
                    trace, span = found
                    ids.add(trace)
            if others:
                contexts = trace_contexts(header_map(headers))
                for ctx in contexts:
                    ids.add(ctx.trace_id.encode())
                if contexts and trace is None:
                    trace = contexts[0].trace_id.encode()
                    span = (contexts[0].span_id or "").encode() or None
            if corr_found is not None:
                if len(corr_found) == 1:  # checked for UTF-8 when shown, like the reference
                    correlation = corr_found[0][2]
                else:
                    for _, _, v in sorted(corr_found):
                        if id_text(v) is not None:
                            correlation = v
                            break
            if etype_found is not None:
                for rank in sorted(etype_found):
                    raw = etype_found[rank]
                    text = raw.decode("utf-8", errors="replace").strip() if raw else ""
                    if text:
                        etype = text[:200]
                        break
            if dead_hint:
                info = dead_letter_info(Record("", 0, 0, None, key, value, tuple(
                    Header(str(n), v) for n, v in headers)))
                if info is not None:
                    dead = (info.layout, info.original_topic, info.original_partition,
                            info.original_offset, info.original_group, info.error_class,
                            info.error_message, info.attempts, info.problems)
                    if info.origin is not None:
                        ids.add(reference_id(*info.origin))
        if value:
            if etype is None and self.event_type_paths:
                # The type is in the payload: one parse gives it and the order ids
                # (cheaper than scanning the text twice).
                doc = parse_json(value)
                etype = event_type(doc, self.event_type_paths)
                ids.update(i.encode("utf-8") for i in order_ids(doc, self.paths))
            elif self.any_paths:
                self._payload(value, ids)
        if key is not None and len(key) > MAX_ID_BYTES:
            key = key_text(key)  # shown, never matched: keep the preview, not the bytes
        return ids, (offset, timestamp_ms, key, etype, correlation, trace, span, dead)

    def _payload(self, value: bytes, ids: set[bytes]) -> None:
        """Add the payload's order ids, parsing JSON only if it could add a new one."""
        if len(value) > MAX_JSON_BYTES:
            return
        if not self.always_parse and b"\\u" not in value:
            # Without \u escapes every configured key is spelled out, so every
            # candidate is seen; only a value not already known needs the parser.
            for _, _, m in key_occurrences(value, self.leaf_tokens):
                text, number = m.groups()
                if number is not None:
                    try:  # JSON `-0` is the id "0"; a huge number is refused by int()
                        candidate = str(int(number)).encode()
                    except ValueError:
                        break
                elif text is not None:
                    candidate = text.strip()
                    if not candidate or len(candidate) > MAX_ID_BYTES:
                        if b"\\" in text:  # escapes may shrink it below the limit
                            break
                        continue
                else:
                    continue  # not a string or an integer: never an id
                if b"\\" in candidate or candidate not in ids:
                    break
            else:
                return
        for found in order_ids(parse_json(value), self.paths):
            ids.add(found.encode("utf-8"))

    def decode_record(self, record: Record) -> tuple[set[bytes], Row]:
        return self.decode(record.offset, record.timestamp_ms, record.key, record.value,
                           [(h.key, h.value) for h in record.headers])


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def event_from_row(topic: str, partition: int, row: Row) -> EventInfo:
    """The `EventInfo` of a row kept by the index (equal to `describe` of the record)."""
    offset, ts, key, etype, corr, trace, span, dead = row
    return EventInfo(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=ts,
        key=key_text(key) if isinstance(key, bytes) else key,
        event_type=etype,
        correlation_id=id_text(corr),
        trace_id=_text(trace),
        span_id=_text(span) or None,
        dead_letter=DeadLetterInfo(*dead) if dead is not None else None,
    )


def valid_text_ids(ids: Iterable[bytes]) -> set[str]:
    """The members of a `FastDecoder` id set a query could match (valid UTF-8), as text."""
    out = set()
    for raw in ids:
        try:
            out.add(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out
