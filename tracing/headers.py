"""Ids carried in record headers: correlation ids, trace contexts, event types.

Headers are written by every team's client library, so nothing here trusts
them: a value can be null, binary, invalid UTF-8 or malformed, and every
function returns None (or skips the value) instead of raising.

Trace contexts come in four conventions, tried in this order:
W3C `traceparent`/`tracestate` (parsed by OpenTelemetry's own
`TraceContextTextMapPropagator`, so lagdeck accepts exactly what the SDKs
accept), B3 single (`b3`), B3 multi (`X-B3-TraceId`, ...) and Jaeger's
`uber-trace-id`. Trace ids are normalised to 32 lowercase hex digits (64-bit
B3/Jaeger ids are left-padded with zeros, as OpenTelemetry's B3 propagator
does), so one trace id finds the same events whichever convention wrote them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from collectors.snapshots import Header

#: Longest id (in UTF-8 bytes) worth indexing or matching; longer values are payloads.
MAX_ID_BYTES = 256

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
B3_SINGLE = "b3"
B3_TRACE_ID = "x-b3-traceid"
B3_SPAN_ID = "x-b3-spanid"
B3_PARENT_SPAN_ID = "x-b3-parentspanid"
B3_SAMPLED = "x-b3-sampled"
B3_FLAGS = "x-b3-flags"
UBER_TRACE_ID = "uber-trace-id"
#: Lowercased names of the trace headers other than `traceparent`.
OTHER_TRACE_HEADERS = frozenset({B3_SINGLE, B3_TRACE_ID, UBER_TRACE_ID})

# OpenTelemetry warns through the stdlib logger on over-long values; without a
# handler those lines would reach stderr (and scribble over the TUI).
for _name in ("opentelemetry.trace.propagation.tracecontext", "opentelemetry.trace.span"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

#: header name (lowercased) -> values in record order
HeaderMap = Mapping[str, Sequence[bytes | None]]


def header_map(headers: Iterable[Header | tuple[str, bytes | None]]) -> dict[str, list]:
    """Lowercased header name -> every value, in order (duplicates are legal in Kafka)."""
    out: dict[str, list[bytes | None]] = {}
    for h in headers:
        key, value = (h.key, h.value) if isinstance(h, Header) else h
        if isinstance(key, bytes):
            key = key.decode("utf-8", errors="replace")
        if value is not None and not isinstance(value, bytes):
            value = str(value).encode("utf-8", errors="replace")
        out.setdefault(str(key).lower(), []).append(value)
    return out


def last(headers: HeaderMap, name: str) -> bytes | None:
    values = headers.get(name.lower())
    return values[-1] if values else None


def id_text(raw: bytes | None) -> str | None:
    """An id from raw bytes: ASCII-whitespace stripped, valid UTF-8, 1..MAX_ID_BYTES bytes."""
    if raw is None:
        return None
    raw = raw.strip()
    if not raw or len(raw) > MAX_ID_BYTES:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def normalise_query(text: str) -> str:
    """The query as ids are stored: the same ASCII whitespace strip as `id_text`."""
    return text.strip(" \t\n\r\x0b\x0c")


def correlation_ids(headers: HeaderMap, names: Sequence[str]) -> tuple[str, ...]:
    """Every valid value of every correlation header, in `names` order, deduplicated."""
    out: list[str] = []
    for name in dict.fromkeys(n.lower() for n in names):
        for raw in headers.get(name, ()):
            text = id_text(raw)
            if text is not None and text not in out:
                out.append(text)
    return tuple(out)


def correlation_id(headers: HeaderMap, names: Sequence[str]) -> str | None:
    """The correlation id to show: the last valid value of the first header in `names`."""
    for name in dict.fromkeys(n.lower() for n in names):
        for raw in reversed(headers.get(name, ())):
            text = id_text(raw)
            if text is not None:
                return text
    return None


@dataclass(frozen=True)
class TraceContext:
    """A trace position decoded from one header convention."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str | None  # 16 lowercase hex digits
    source: str  # "traceparent", "b3", "x-b3" or "uber-trace-id"
    parent_span_id: str | None = None
    sampled: bool | None = None
    tracestate: str | None = None


class _ListGetter(Getter[Mapping[str, list[str]]]):
    def get(self, carrier: Mapping[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: Mapping[str, list[str]]) -> list[str]:
        return list(carrier)


_PROPAGATOR = TraceContextTextMapPropagator()
_GETTER = _ListGetter()


def w3c_context(headers: HeaderMap) -> TraceContext | None:
    """`traceparent` (last value) and `tracestate` through OpenTelemetry's propagator."""
    raw = last(headers, TRACEPARENT)
    if raw is None:
        return None
    carrier = {TRACEPARENT: [raw.decode("utf-8", errors="replace")]}
    states = [v.decode("utf-8", errors="replace") for v in headers.get(TRACESTATE, ()) if v]
    if states:
        carrier[TRACESTATE] = states
    try:
        ctx = _PROPAGATOR.extract(carrier, getter=_GETTER)
        span_context = trace.get_current_span(ctx).get_span_context()
    except Exception:  # the propagator is defensive; this guards the rest of the scan anyway
        return None
    if not span_context.is_valid:
        return None
    state = span_context.trace_state.to_header() if span_context.trace_state else ""
    return TraceContext(
        trace_id=trace.format_trace_id(span_context.trace_id),
        span_id=trace.format_span_id(span_context.span_id),
        source=TRACEPARENT,
        sampled=span_context.trace_flags.sampled,
        tracestate=state or None,
    )


#: The exact grammar OpenTelemetry applies, on bytes (see `fast_traceparent_trace_id`).
_TRACEPARENT_RE = re.compile(
    rb"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_HEX_DASH = b"0123456789abcdef-"


def fast_traceparent(raw: bytes) -> tuple[bytes, bytes] | None:
    """(trace id, span id) of a `traceparent` value, identical to `w3c_context`, ~20x faster.

    The bulk scan calls this for every record. For ASCII values it applies
    OpenTelemetry's own regex and rules; anything else goes through the
    propagator itself, so the two can never disagree (a property test checks it).
    """
    if (len(raw) == 55 and raw[2] == 45 and raw[35] == 45 and raw[52] == 45
            and not raw.translate(None, _HEX_DASH) and raw.count(b"-") == 3):
        # The common shape: version-traceid-spanid-flags, nothing around it.
        trace_id, span_id = raw[3:35], raw[36:52]
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN or raw[:2] == b"ff":
            return None
        return trace_id, span_id
    if len(raw) > 512 or not raw.isascii():
        ctx = w3c_context({TRACEPARENT: [raw]})
        return (ctx.trace_id.encode(), (ctx.span_id or "").encode()) if ctx else None
    m = _TRACEPARENT_RE.match(raw)
    if m is None:
        return None
    version, trace_id, span_id, _, rest = m.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN or version == b"ff":
        return None
    if version == b"00" and rest:
        return None
    return trace_id, span_id


_HEX = re.compile(r"[0-9a-fA-F]+")


def _hex_id(text: str, sizes: tuple[int, ...], width: int) -> str | None:
    """Lowercase hex of one of `sizes` digits, left-padded to `width`; None if zero or invalid."""
    if len(text) not in sizes or not _HEX.fullmatch(text):
        return None
    value = text.lower().zfill(width)
    return None if set(value) == {"0"} else value


def _sampled(text: str | None) -> bool | None:
    if text is None:
        return None
    return {"1": True, "d": True, "true": True, "0": False, "false": False}.get(text.lower())


def b3_single_context(headers: HeaderMap) -> TraceContext | None:
    """`b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`; a bare sampling flag has no id."""
    text = _ascii(last(headers, B3_SINGLE)) or ""
    parts = text.split("-")
    if len(parts) < 2 or len(parts) > 4:
        return None
    trace_id = _hex_id(parts[0], (16, 32), 32)
    span_id = _hex_id(parts[1], (16,), 16)
    if trace_id is None or span_id is None:
        return None
    sampled = None
    if len(parts) >= 3:
        sampled = _sampled(parts[2])
        if sampled is None:
            return None
    parent = None
    if len(parts) == 4:
        parent = _hex_id(parts[3], (16,), 16)
        if parent is None:
            return None
    return TraceContext(trace_id, span_id, B3_SINGLE, parent, sampled)


def _ascii(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("ascii", errors="replace").strip()
    return text or None


def b3_multi_context(headers: HeaderMap) -> TraceContext | None:
    """`X-B3-TraceId` / `X-B3-SpanId` / `X-B3-ParentSpanId` / `X-B3-Sampled` / `X-B3-Flags`."""
    trace_text = _ascii(last(headers, B3_TRACE_ID))
    span_text = _ascii(last(headers, B3_SPAN_ID))
    if trace_text is None or span_text is None:
        return None
    trace_id = _hex_id(trace_text, (16, 32), 32)
    span_id = _hex_id(span_text, (16,), 16)
    if trace_id is None or span_id is None:
        return None
    parent_text = _ascii(last(headers, B3_PARENT_SPAN_ID))
    parent = _hex_id(parent_text, (16,), 16) if parent_text else None
    sampled = _sampled(_ascii(last(headers, B3_SAMPLED)) or "")
    if _ascii(last(headers, B3_FLAGS)) == "1":
        sampled = True
    return TraceContext(trace_id, span_id, "x-b3", parent, sampled)


def uber_context(headers: HeaderMap) -> TraceContext | None:
    """Jaeger's `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` (maybe %-encoded)."""
    text = _ascii(last(headers, UBER_TRACE_ID))
    if text is None:
        return None
    parts = unquote(text).split(":")
    if len(parts) != 4:
        return None
    trace_id = _hex_id(parts[0], tuple(range(1, 33)), 32)
    span_id = _hex_id(parts[1], tuple(range(1, 17)), 16)
    if trace_id is None or span_id is None:
        return None
    parent = _hex_id(parts[2], tuple(range(1, 17)), 16)
    try:
        flags = int(parts[3], 16)
    except ValueError:
        return None
    return TraceContext(trace_id, span_id, UBER_TRACE_ID, parent, bool(flags & 1))


_DECODERS = (w3c_context, b3_single_context, b3_multi_context, uber_context)


def trace_contexts(headers: HeaderMap) -> tuple[TraceContext, ...]:
    """Every valid trace context in the headers, W3C first."""
    return tuple(ctx for decode in _DECODERS if (ctx := decode(headers)) is not None)


def trace_context(headers: HeaderMap) -> TraceContext | None:
    """The trace context to show: W3C, else B3 single, else B3 multi, else Jaeger."""
    for decode in _DECODERS:
        ctx = decode(headers)
        if ctx is not None:
            return ctx
    return None


def trace_id_forms(text: str) -> tuple[str, ...]:
    """Trace ids a query may stand for: hex ids normalised, or the id inside a trace header.

    `4BF92F...` finds `4bf92f...`, a 16-digit id finds its zero-padded
    form, and a pasted `traceparent`, `b3` or `uber-trace-id` value finds its trace id.
    """
    forms: list[str] = []
    text = text.strip()
    for size in (16, 32):
        if len(text) == size and (hex_id := _hex_id(text, (size,), 32)):
            forms.append(hex_id)
    raw = text.encode("utf-8", errors="replace")
    for name in (TRACEPARENT, B3_SINGLE, UBER_TRACE_ID):
        ctx = trace_context({name: [raw]})
        if ctx is not None:
            forms.append(ctx.trace_id)
    return tuple(dict.fromkeys(f for f in forms if f != text))


def event_type_header(headers: HeaderMap, names: Sequence[str]) -> str | None:
    """The event type from the first of `names` present (`event-type`, CloudEvents `ce_type`)."""
    for name in names:
        text = header_text(last(headers, name))
        if text:
            return text
    return None


def header_text(raw: bytes | None, limit: int = 200) -> str | None:
    """A header value naming something (an event type): UTF-8 with bad bytes as U+FFFD,
    stripped, cut to `limit` characters; None when absent or blank."""
    text = raw.decode("utf-8", errors="replace").strip() if raw else ""
    return text[:limit] if text else None
