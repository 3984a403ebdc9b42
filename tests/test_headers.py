"""Header decoding: correlation ids, W3C trace context (OpenTelemetry), B3, Jaeger, event type."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from collectors.snapshots import Header
from tracing.headers import (
    b3_multi_context,
    b3_single_context,
    correlation_id,
    correlation_ids,
    event_type_header,
    fast_traceparent,
    header_map,
    id_text,
    trace_context,
    trace_contexts,
    trace_id_forms,
    uber_context,
    w3c_context,
)
from tracing.settings import DEFAULT_CORRELATION_HEADERS

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{SPAN}-01"


def hm(*pairs: tuple[str, bytes | None]) -> dict:
    return header_map(Header(k, v) for k, v in pairs)


def otel_traceparent(trace_id: int, span_id: int, sampled: bool = True,
                     state: TraceState | None = None) -> dict[str, str]:
    """Headers written by OpenTelemetry's own propagator (the producer side)."""
    ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1 if sampled else 0),
        trace_state=state)))
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=ctx)
    return carrier


# -- correlation ids -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["correlation-id", "correlationId", "x-correlation-id",
                                  "X-Correlation-ID", "CORRELATION-ID", "X-CORRELATION-id"])
def test_every_default_correlation_header_is_found_case_insensitively(name: str) -> None:
    headers = hm((name, b"ord_8x92k"))
    assert correlation_id(headers, DEFAULT_CORRELATION_HEADERS) == "ord_8x92k"
    assert correlation_ids(headers, DEFAULT_CORRELATION_HEADERS) == ("ord_8x92k",)


def test_first_configured_name_wins_and_last_value_of_a_name_wins() -> None:
    headers = hm(("x-correlation-id", b"from-x"), ("correlation-id", b"first"),
                 ("correlation-id", b"second"))
    assert correlation_id(headers, DEFAULT_CORRELATION_HEADERS) == "second"
    assert set(correlation_ids(headers, DEFAULT_CORRELATION_HEADERS)) == {
        "first", "second", "from-x"}
    assert correlation_id(headers, ["x-correlation-id", "correlation-id"]) == "from-x"


def test_unusable_correlation_values_are_skipped_not_raised() -> None:
    headers = hm(("correlation-id", None), ("correlation-id", b"\xff\xfe"),
                 ("x-correlation-id", b"   "), ("correlationId", b"x" * 300),
                 ("X-Correlation-ID", b"  ord_1 \t"))
    # the last valid value of the first name that has one: only ord_1 qualifies
    assert correlation_id(headers, DEFAULT_CORRELATION_HEADERS) == "ord_1"
    assert correlation_ids(headers, DEFAULT_CORRELATION_HEADERS) == ("ord_1",)
    assert correlation_id(hm(("other", b"x")), DEFAULT_CORRELATION_HEADERS) is None


def test_id_text_rules() -> None:
    assert id_text(b" ord_1\n") == "ord_1"
    assert id_text("ördér".encode()) == "ördér"
    assert id_text(b"") is None
    assert id_text(None) is None
    assert id_text(b"\xc3") is None  # truncated UTF-8
    assert id_text(b"a" * 256) == "a" * 256
    assert id_text(b"a" * 257) is None


# -- W3C trace context ---------------------------------------------------------------


def test_traceparent_written_by_opentelemetry_round_trips() -> None:
    carrier = otel_traceparent(int(TRACE, 16), int(SPAN, 16),
                               state=TraceState([("vendor", "abc"), ("other", "1")]))
    headers = hm(*((k, v.encode()) for k, v in carrier.items()))
    ctx = w3c_context(headers)
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.source, ctx.sampled) == (TRACE, SPAN, "traceparent",
                                                                     True)
    assert ctx.tracestate == "vendor=abc,other=1"


def test_unsampled_and_future_version_traceparents() -> None:
    ctx = w3c_context(hm(("traceparent", f"00-{TRACE}-{SPAN}-00".encode())))
    assert ctx is not None and ctx.sampled is False
    # A future version may append fields after the flags (W3C spec, section 3.2.4).
    future = w3c_context(hm(("traceparent", f"01-{TRACE}-{SPAN}-01-what-ever".encode())))
    assert future is not None and future.trace_id == TRACE


@pytest.mark.parametrize("value", [
    b"",
    b"garbage",
    f"00-{'0' * 32}-{SPAN}-01".encode(),  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01".encode(),  # all-zero span id
    f"ff-{TRACE}-{SPAN}-01".encode(),  # forbidden version
    f"00-{TRACE.upper()}-{SPAN}-01".encode(),  # upper-case hex
    f"00-{TRACE[:-1]}-{SPAN}-01".encode(),  # short trace id
    f"00-{TRACE}-{SPAN}-01-extra".encode(),  # version 00 has exactly four fields
    f"0-{TRACE}-{SPAN}-01".encode(),
    b"\xff\xfe00-" + TRACE.encode(),
    ("00-" + TRACE + "-" + SPAN + "-01" + " " * 600).encode(),  # longer than 512
])
def test_malformed_traceparent_is_ignored(value: bytes) -> None:
    headers = hm(("traceparent", value))
    assert w3c_context(headers) is None
    assert fast_traceparent(value) is None
    assert trace_context(headers) is None


def test_null_traceparent_and_tracestate_garbage_do_not_raise() -> None:
    assert w3c_context(hm(("traceparent", None))) is None
    ctx = w3c_context(hm(("traceparent", TP.encode()), ("tracestate", b"\xff=\x00,,,=")))
    assert ctx is not None and ctx.trace_id == TRACE


def test_last_traceparent_wins() -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    headers = hm(("traceparent", TP.encode()), ("traceparent", f"00-{other}-{SPAN}-01".encode()))
    assert w3c_context(headers).trace_id == other


@pytest.mark.parametrize("value", [TP, f"  {TP}", f"{TP}\t", f"01-{TRACE}-{SPAN}-01-x",
                                   f"cc-{TRACE}-{SPAN}-03"])
def test_fast_traceparent_agrees_with_opentelemetry(value: str) -> None:
    ctx = w3c_context(hm(("traceparent", value.encode())))
    fast = fast_traceparent(value.encode())
    assert ctx is not None and fast == (ctx.trace_id.encode(), ctx.span_id.encode())


# -- B3 and Jaeger -------------------------------------------------------------------------


def test_b3_single_forms() -> None:
    full = b3_single_context(hm(("b3", f"{TRACE}-{SPAN}-1-{'a' * 16}".encode())))
    assert full is not None
    assert (full.trace_id, full.span_id, full.sampled, full.parent_span_id) == (
        TRACE, SPAN, True, "a" * 16)
    short = b3_single_context(hm(("b3", b"A3CE929D0E0E4736-00F067AA0BA902B7-d")))
    assert short is not None
    assert short.trace_id == "0" * 16 + "a3ce929d0e0e4736"  # 64-bit ids are padded
    assert short.sampled is True
    assert b3_single_context(hm(("b3", f"{TRACE}-{SPAN}".encode()))).sampled is None


@pytest.mark.parametrize("value", [b"0", b"1", b"d", b"", b"xyz-abc", f"{TRACE}-{SPAN}-9".encode(),
                                   f"{TRACE}-zz".encode(), f"{'0' * 32}-{SPAN}".encode(),
                                   f"{TRACE}-{SPAN}-1-bad".encode(), b"\xff\xfe-\x00"])
def test_b3_single_sampling_only_or_malformed_has_no_trace(value: bytes) -> None:
    assert b3_single_context(hm(("b3", value))) is None


def test_b3_multi() -> None:
    headers = hm(("X-B3-TraceId", TRACE.encode()), ("X-B3-SpanId", SPAN.encode()),
                 ("X-B3-ParentSpanId", b"a" * 16), ("X-B3-Sampled", b"0"))
    ctx = b3_multi_context(headers)
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.parent_span_id, ctx.sampled, ctx.source) == (
        TRACE, SPAN, "a" * 16, False, "x-b3")
    debug = b3_multi_context(hm(("x-b3-traceid", TRACE.encode()), ("x-b3-spanid", SPAN.encode()),
                                ("x-b3-flags", b"1")))
    assert debug is not None and debug.sampled is True
    assert b3_multi_context(hm(("X-B3-TraceId", TRACE.encode()))) is None  # no span id
    assert b3_multi_context(hm(("X-B3-TraceId", b"nothex"), ("X-B3-SpanId", SPAN.encode()))) \
        is None


def test_uber_trace_id() -> None:
    ctx = uber_context(hm(("uber-trace-id", b"5af7183fb1d4cf5f:6c4f4c9c4bd2b9b5:0:1")))
    assert ctx is not None
    assert ctx.trace_id == "0" * 16 + "5af7183fb1d4cf5f"
    assert (ctx.span_id, ctx.parent_span_id, ctx.sampled) == ("6c4f4c9c4bd2b9b5", None, True)
    encoded = uber_context(hm(("uber-trace-id", b"abc%3Adef%3A0%3A0")))
    assert encoded is not None and encoded.trace_id.endswith("abc") and encoded.sampled is False
    for bad in (b"abc:def:0", b"zz:def:0:1", b"abc:def:0:zz", b"0:def:0:1", b"\xff:\x00:0:1"):
        assert uber_context(hm(("uber-trace-id", bad))) is None


def test_w3c_wins_over_b3_and_all_are_listed() -> None:
    b3_trace = "0af7651916cd43dd8448eb211c80319c"
    headers = hm(("b3", f"{b3_trace}-{SPAN}-1".encode()), ("traceparent", TP.encode()),
                 ("uber-trace-id", b"abc:def:0:1"))
    assert trace_context(headers).trace_id == TRACE
    assert [c.source for c in trace_contexts(headers)] == ["traceparent", "b3", "uber-trace-id"]
    # an invalid traceparent falls through to the next convention
    headers = hm(("traceparent", b"junk"), ("b3", f"{b3_trace}-{SPAN}".encode()))
    assert trace_context(headers).trace_id == b3_trace


def test_query_forms_of_trace_ids() -> None:
    assert trace_id_forms(TRACE.upper()) == (TRACE,)
    assert trace_id_forms("a3ce929d0e0e4736") == ("0" * 16 + "a3ce929d0e0e4736",)
    assert trace_id_forms(TP) == (TRACE,)
    assert trace_id_forms(TRACE) == ()  # already the stored form
    assert trace_id_forms("ord_8x92k") == ()


def test_event_type_header() -> None:
    names = ("event-type", "ce_type")
    assert event_type_header(hm(("ce_type", b"com.shop.OrderPlaced")), names) == \
        "com.shop.OrderPlaced"
    assert event_type_header(hm(("ce_type", b"B"), ("Event-Type", b"A")), names) == "A"
    assert event_type_header(hm(("event-type", b"  "), ("ce_type", b"B")), names) == "B"
    assert event_type_header(hm(("event-type", b"\xff\xfeX")), names) == "\ufffd\ufffdX"
    assert event_type_header(hm(("event-type", None)), names) is None
