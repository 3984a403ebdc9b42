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

With a `PayloadDecoder` that has a Schema Registry, Avro / Protobuf / JSON
Schema frames are decoded with the registry's schemas: order ids and event
types are read at the same paths as in JSON, the record name is the event
type when nothing else gives one, and a framed key counts as its decoded
text. Without one, frames give no payload ids (as any binary value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.snapshots import Header, Record
from tracing.deadletter import DeadLetterInfo, decode_envelope
from tracing.frames import (
    JSON_SCHEMA,
    KEY_SCHEMA_HEADER,
    NOT_DECODED,
    PROTOBUF,
    REGISTRY_FORMATS,
    VALUE_SCHEMA_HEADER,
    Payload,
    PayloadDecoder,
    schema_header,
)
from tracing.headers import (
    MAX_ID_BYTES,
    OTHER_TRACE_HEADERS,
    TRACEPARENT,
    correlation_id,
    correlation_ids,
    event_type_header,
    fast_traceparent,
    header_map,
    header_text,
    id_text,
    trace_contexts,
)
from tracing.payload import (
    MAX_JSON_BYTES,
    NOT_JSON,
    event_type,
    key_occurrences,
    key_text,
    order_ids,
    parse_json,
)
from tracing.settings import TraceSettings


def dead_letter_info(record: Record) -> DeadLetterInfo | None:
    env = decode_envelope(record)
    return DeadLetterInfo.from_envelope(env) if env.is_dead_letter else None


#: Values up to this size are kept in the index (shown decoded in timelines).
MAX_KEPT_VALUE = 8192


@dataclass(frozen=True)
class EventInfo:
    """One record as a timeline shows it (decoded from the record or from the index).

    `order_ids` are the ids found at the order-id paths of the payload (what
    makes an event another order's); `value` is the raw value when it is at
    most `MAX_KEPT_VALUE` bytes, else its size; `value_header` the schema
    header of a header-framed value.
    """

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
    #: exact from `describe`; from the index a superset (see `FastDecoder._payload`)
    order_ids: tuple[str, ...] = field(default=(), compare=False)
    value: bytes | int | None = field(default=None, repr=False)
    value_header: bytes | None = field(default=None, repr=False)
    #: the value decoded, filled in for a timeline (not from the row)
    payload: Payload | None = field(default=None, compare=False, repr=False)
    #: where the id was found when not under a configured name (`where_found`)
    found_in: str | None = field(default=None, compare=False)

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def kept_value(value: bytes | None) -> bytes | int | None:
    """What the index keeps of a value: the bytes when small, else the size."""
    if value is None or len(value) <= MAX_KEPT_VALUE:
        return value
    return len(value)


def _framed(value: bytes | None, headers, payloads: PayloadDecoder | None) -> bool:
    if not value:
        return False
    return payloads is not None and payloads.configured and (
        value[0] == 0 or schema_header(headers, False) is not None)


def payload_document(value: bytes | None, headers, payloads: PayloadDecoder | None):
    """(document, record name) of a value: a decoded registry frame, or parsed JSON."""
    if _framed(value, headers, payloads):
        assert payloads is not None
        p = payloads.decode(value, headers, raw=True)
        doc = p.document
        return (NOT_JSON if doc is NOT_DECODED else doc), p.record_name
    return parse_json(value), None


def key_parts(key: bytes | None, headers, payloads: PayloadDecoder | None
              ) -> tuple[str | None, bytes | None]:
    """(shown key, id bytes) of a key; a registry-framed key counts as its decoded text."""
    if key and key[0] == 0 and payloads is not None and payloads.configured:
        p = payloads.decode(key, headers, is_key=True)
        if p.format in REGISTRY_FORMATS and isinstance(p.value, str | int) \
                and not isinstance(p.value, bool):
            raw = str(p.value).encode("utf-8", errors="surrogatepass")
            return key_text(raw), raw
    return key_text(key), key


def record_ids(record: Record, settings: TraceSettings,
               payloads: PayloadDecoder | None = None) -> frozenset[str]:
    """Every id a record can be found by: correlation ids, key, payload order ids, trace ids."""
    headers = header_map(record.headers)
    pairs = [(h.key, h.value) for h in record.headers]
    ids = set(correlation_ids(headers, settings.correlation_headers))
    key = id_text(key_parts(record.key, pairs, payloads)[1])
    if key is not None:
        ids.add(key)
    doc, _ = payload_document(record.value, pairs, payloads)
    ids.update(order_ids(doc, settings.order_id_paths))
    ids.update(ctx.trace_id for ctx in trace_contexts(headers))
    return frozenset(ids)


def reference_id(topic: str, partition: int, offset: int) -> bytes:
    """The index key under which dead letters pointing at a record are filed.

    Starts with a NUL byte, so no id typed by a user can collide with it.
    """
    return b"\x00dl\x00" + f"{topic}\x00{partition}\x00{offset}".encode("utf-8", "replace")


def index_keys(record: Record, settings: TraceSettings,
               payloads: PayloadDecoder | None = None) -> frozenset[bytes]:
    """Everything the index files a record under: its ids and, for a dead letter, its origin."""
    keys = {i.encode("utf-8") for i in record_ids(record, settings, payloads)}
    info = dead_letter_info(record)
    if info is not None and info.origin is not None:
        keys.add(reference_id(*info.origin))
    return frozenset(keys)


def describe(record: Record, settings: TraceSettings,
             payloads: PayloadDecoder | None = None) -> EventInfo:
    """The reference decoding of one record for a timeline; never raises on record content."""
    headers = header_map(record.headers)
    pairs = [(h.key, h.value) for h in record.headers]
    contexts = trace_contexts(headers)
    ctx = contexts[0] if contexts else None
    doc, record_name = payload_document(record.value, pairs, payloads)
    return EventInfo(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        key=key_parts(record.key, pairs, payloads)[0],
        event_type=(event_type_header(headers, settings.event_type_headers)
                    or event_type(doc, settings.event_type_paths) or record_name),
        correlation_id=correlation_id(headers, settings.correlation_headers),
        trace_id=ctx.trace_id if ctx else None,
        span_id=ctx.span_id if ctx else None,
        dead_letter=dead_letter_info(record),
        order_ids=order_ids(doc, settings.order_id_paths),
        value=kept_value(record.value),
        value_header=(schema_header(pairs, False)
                      if _framed(record.value, pairs, payloads) else None),
    )


_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
# A header name's category is an int: the kind in bits 0-2, a dead-letter hint in
# bit 3 and, for correlation and event-type headers, the configured rank above.
_IGNORED, _CORRELATION, _TRACEPARENT, _OTHER_TRACE, _EVENT_TYPE = range(5)
_DEAD_LETTER = 8  # the name hints at a dead-letter layout
#: Substrings of header names every dead-letter layout uses somewhere (see tracing.deadletter).
_DEAD_LETTER_HINTS = ("topic", "error", "exception", "kafka_", "__connect")

#: A record as the index keeps it: marshal-friendly primitives only.
#: (offset, timestamp_ms, key, event_type, correlation_id, trace_id, span_id, dead_letter,
#:  order_ids, value, value_header); rows of 8 (older indexes) are read too.
Row = tuple
_SCHEMA_HEADERS = (KEY_SCHEMA_HEADER, VALUE_SCHEMA_HEADER)


class FastDecoder:
    """`index_keys` and `describe` for the bulk scan, from raw message parts.

    Header names are classified once (they repeat across records). When the
    event type comes from a header, the payload is parsed as JSON only if a
    configured order-id key in it holds a value that is not already one of
    the record's ids (or the text escapes characters the search cannot see
    through); in the common case (order id in the key or a correlation
    header *and* in the payload) no JSON is parsed at all.
    """

    def __init__(self, settings: TraceSettings, payloads: PayloadDecoder | None = None) -> None:
        self.settings = settings
        self.payloads = payloads if payloads is not None and payloads.configured else None
        self.correlation_rank: dict[str, int] = {}
        for name in settings.correlation_headers:
            self.correlation_rank.setdefault(name.lower(), len(self.correlation_rank))
        self.event_type_rank: dict[str, int] = {}
        for name in settings.event_type_headers:
            self.event_type_rank.setdefault(name.lower(), len(self.event_type_rank))
        self.paths = settings.order_id_paths
        leaves = [p.rsplit(".", 1)[-1] for p in self.paths]
        self.leaves = frozenset(leaves)
        self.any_paths = bool(leaves)
        #: a leaf the regex cannot find (a list index): always parse JSON payloads
        self.always_parse = any(not _SIMPLE_KEY.fullmatch(leaf) for leaf in leaves)
        simple = sorted({leaf for leaf in leaves if _SIMPLE_KEY.fullmatch(leaf)})
        self.leaf_tokens = tuple((leaf.encode(), b'"' + leaf.encode() + b'"') for leaf in simple)
        self.event_type_paths = settings.event_type_paths
        #: header name as written -> what it carries (names repeat across records)
        self._names: dict[str, int] = {}
        #: (5-byte frame prefix, is key) -> "no" / "yes" / "each" (see `irregular_frames`)
        self._prefix_cache: dict[tuple[bytes, bool], str] = {}

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
        """Whether a header may give ids not spelled out in it (B3/Jaeger, dead letters,
        a schema id header that makes the payload a registry frame)."""
        if self.payloads is not None and name in _SCHEMA_HEADERS:
            return True
        cat = self._names.get(name)
        if cat is None:
            cat = self._category(name)
        return bool(cat & _DEAD_LETTER) or cat & 7 == _OTHER_TRACE

    def irregular_frames(self, keys: Sequence[bytes | None], values: Sequence[bytes | None],
                         headers: Sequence) -> set[int]:
        """Indices of a batch's records for which `irregular_frame` holds.

        Judged by the few distinct 5-byte frame prefixes (one per schema) of
        the batch, so a batch of a million Avro records costs a set
        comprehension, not a decode each; Protobuf prefixes are judged per record.
        """
        out: set[int] = set()
        if self.payloads is None:
            return out
        cache = self._prefix_cache
        for pieces, is_key in ((values, False), (keys, True)):
            heads = {v[:5] for v in pieces if v and v[0] == 0}
            if not heads:
                continue
            flagged = {}
            for head in heads:
                verdict = cache.get((head, is_key))
                if verdict is None:
                    info = self.payloads.prefix_info(head)
                    fmt, numeric = info if info is not None else (None, frozenset())
                    if fmt == PROTOBUF:
                        verdict = "each"
                    elif numeric and (("" in numeric) if is_key
                                      else not numeric.isdisjoint(self.leaves)):
                        verdict = "yes"
                    elif fmt == JSON_SCHEMA and not is_key:
                        verdict = "escapes"  # JSON text: irregular when it has escapes
                    else:
                        verdict = "no"
                    if len(cache) < 10_000:
                        cache[(head, is_key)] = verdict
                if verdict != "no":
                    flagged[head] = verdict
            if not flagged:
                continue
            for i, v in enumerate(pieces):
                verdict = flagged.get(v[:5]) if v else None
                if verdict is None or not v:
                    continue
                if verdict == "yes" or (verdict == "escapes" and b"\\" in v) or (
                        verdict == "each" and (
                            self.irregular_frame(v, None, headers[i]) if is_key
                            else self.irregular_frame(None, v, headers[i]))):
                    out.add(i)
        return out

    def irregular_frame(self, key: bytes | None, value: bytes | None, headers) -> bool:
        """Whether a registry frame may give an id not spelled out in its bytes.

        Avro and Protobuf strings are written as UTF-8, so a string id is in
        the raw bytes; numbers are varints. A frame whose schema has a numeric
        field named like an order-id path's last part (or a numeric key) is
        always decoded. A frame whose schema cannot be had gives no ids.
        """
        if self.payloads is None:
            return False
        if value and (value[0] == 0 or schema_header(headers, False) is not None):
            numeric = self.payloads.numeric_fields(value, headers)
            if numeric and not numeric.isdisjoint(self.leaves):
                return True
        if key and key[0] == 0:
            numeric = self.payloads.numeric_fields(key, headers, is_key=True)
            if numeric is not None and "" in numeric:
                return True
        return False

    def decode(self, offset: int, timestamp_ms: int | None, key: bytes | None,
               value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None
               ) -> tuple[set[bytes], Row]:
        """(index keys, row) of one record; see `index_keys` and `describe`."""
        ids: set[bytes] = set()
        shown_key: str | None = None
        if key is not None:
            k: bytes | None = key
            if self.payloads is not None and key and key[0] == 0:
                shown_key, k = key_parts(key, headers, self.payloads)
            if k is not None:
                k = k.strip()
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
                parsed = fast_traceparent(traceparent)
                if parsed is not None:
                    trace, span = parsed
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
                    etype = header_text(etype_found[rank])
                    if etype is not None:
                        break
            if dead_hint:
                info = dead_letter_info(Record("", 0, 0, None, key, value, tuple(
                    Header(str(n), v) for n, v in headers)))
                if info is not None:
                    dead = info.row()
                    if info.origin is not None:
                        ids.add(reference_id(*info.origin))
        found: tuple[str, ...] = ()
        value_header = None
        if value:
            if self.payloads is not None and (
                    value[0] == 0 or (headers and schema_header(headers, False) is not None)):
                # A registry frame: decoded with its schema (cached by id).
                value_header = schema_header(headers, False) if headers else None
                p = self.payloads.decode(value, headers, raw=True)
                doc = p.document
                if doc is not NOT_DECODED:
                    if etype is None:
                        etype = event_type(doc, self.event_type_paths) or p.record_name
                    found = order_ids(doc, self.paths)
            elif etype is None and self.event_type_paths:
                # The type is in the payload: one parse gives it and the order ids
                # (cheaper than scanning the text twice).
                doc = parse_json(value)
                etype = event_type(doc, self.event_type_paths)
                found = order_ids(doc, self.paths)
            elif self.any_paths:
                found = self._payload(value, ids)
            if found:
                ids.update(i.encode("utf-8") for i in found)
        row_key: bytes | str | None = key
        if shown_key is not None:
            row_key = shown_key
        elif key is not None and len(key) > MAX_ID_BYTES:
            row_key = key_text(key)  # shown, never matched: keep the preview, not the bytes
        return ids, (offset, timestamp_ms, row_key, etype, correlation, trace, span, dead, found,
                     kept_value(value), value_header)

    def _payload(self, value: bytes, ids: set[bytes]) -> tuple[str, ...]:
        """The payload's order ids, parsing JSON only if it could add a new id.

        Without `\\u` escapes every configured key is spelled out, so every
        candidate is seen; when all of them are already ids of the record
        (the common case: the order id in the key or a header *and* in the
        payload), they are returned without parsing. They may then include a
        configured key's value from elsewhere in the document: a superset of
        the exact payload ids (see `EventInfo.order_ids`).
        """
        if len(value) > MAX_JSON_BYTES:
            return ()
        if not self.always_parse and b"\\u" not in value:
            seen: list[bytes] = []
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
                seen.append(candidate)
            else:
                return tuple(dict.fromkeys(c.decode("utf-8", "replace") for c in seen))
        return order_ids(parse_json(value), self.paths)

    def decode_record(self, record: Record) -> tuple[set[bytes], Row]:
        return self.decode(record.offset, record.timestamp_ms, record.key, record.value,
                           [(h.key, h.value) for h in record.headers])


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def event_from_row(topic: str, partition: int, row: Row) -> EventInfo:
    """The `EventInfo` of a row kept by the index (equal to `describe` of the record)."""
    offset, ts, key, etype, corr, trace, span, dead = row[:8]
    found, value, value_header = row[8:11] if len(row) >= 11 else ((), None, None)
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
        order_ids=tuple(found),
        value=value,
        value_header=value_header,
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


def _string_path(doc: object, wanted: str, path: str = "", depth: int = 0) -> str | None:
    """The dotted path of the first string equal to `wanted` (stripped) in a document."""
    if depth > 32:
        return None
    if isinstance(doc, str):
        return path if doc.strip() == wanted else None
    items: Iterable[tuple[Any, Any]]
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return None
    for k, v in items:
        found = _string_path(v, wanted, f"{path}.{k}" if path else str(k), depth + 1)
        if found is not None:
            return found
    return None


def where_found(query: str, value: bytes | None, headers,
                payloads: PayloadDecoder | None = None) -> str | None:
    """Where a record carries `query` outside the configured names, or None.

    `header "NAME"` for a header whose whole value is the id, `payload field
    "PATH"` for a string field of the decoded payload (JSON or a registry
    frame) at any depth. Only strings: a numeric id is matched at the
    configured `order_id_paths` only.
    """
    wanted = query.strip()
    raw = wanted.encode("utf-8", errors="surrogatepass")
    for name, v in headers or ():
        if v is not None and v.strip() == raw:
            return f'header "{name}"'
    if not value:
        return None
    doc, _ = payload_document(value, headers, payloads)
    if doc is NOT_JSON:
        return None
    path = _string_path(doc, wanted)
    return None if path is None else f'payload field "{path}"'
