"""Random bytes through every decoder: nothing escapes, and the fast paths equal the reference.

Keys, values and headers are arbitrary bytes, near-miss trace headers and
JSON documents built to hit the corners of the order-id and event-type
extraction (escapes, unicode, numbers, duplicates, nesting). Two promises
are checked on every example:

- no decoder raises;
- `FastDecoder` (what the correlation index is built with) gives exactly the
  ids and the timeline row that the reference `index_keys` / `describe` give.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.snapshots import Header, Record
from collectors.untrusted import display
from tracing.extract import (
    FastDecoder,
    describe,
    event_from_row,
    index_keys,
    valid_text_ids,
)
from tracing.headers import (
    b3_multi_context,
    b3_single_context,
    fast_traceparent,
    header_map,
    trace_contexts,
    trace_id_forms,
    uber_context,
    w3c_context,
)
from tracing.payload import key_text, order_ids, parse_json
from tracing.prefilter import RawBatch
from tracing.settings import TraceSettings

SETTINGS = TraceSettings()
DECODER = FastDecoder(SETTINGS)
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HEADER_NAMES = [
    "correlation-id", "correlationId", "CORRELATION-ID", "x-correlation-id", "X-Correlation-ID",
    "traceparent", "TraceParent", "tracestate", "b3", "X-B3-TraceId", "X-B3-SpanId",
    "X-B3-Sampled", "X-B3-Flags", "uber-trace-id", "event-type", "ce_type", "Event-Type",
    "kafka_dlt-original-topic", "kafka_dlt-original-partition", "kafka_dlt-original-offset",
    "kafka_dlt-original-consumer-group", "kafka_dlt-exception-fqcn",
    "kafka_dlt-exception-message", "kafka_original-topic", "retry_topic-attempts",
    "__connect.errors.topic", "__connect.errors.partition", "__connect.errors.offset",
    "__connect.errors.exception.class.name", "error-message", "x-original-topic",
    "original-offset", "original-partition", "content-type",
]

hexes = st.text("0123456789abcdefABCDEF", min_size=0, max_size=34)


@st.composite
def traceparents(draw: st.DrawFn) -> bytes:
    """Valid traceparents and near misses (case, lengths, zeros, versions, padding, tails)."""
    if draw(st.booleans()):
        trace_id = draw(st.sampled_from(["4bf92f3577b34da6a3ce929d0e0e4736",
                                         "0af7651916cd43dd8448eb211c80319c"]))
        return f"00-{trace_id}-{draw(st.sampled_from(['00f067aa0ba902b7', 'b7ad6b7169203331']))}" \
            f"-{draw(st.sampled_from(['01', '00']))}".encode()
    version = draw(st.sampled_from(["00", "01", "ff", "0", "000", "cc", "0g"]))
    trace_id = draw(st.one_of(st.just("4bf92f3577b34da6a3ce929d0e0e4736"), st.just("0" * 32),
                              hexes))
    span_id = draw(st.one_of(st.just("00f067aa0ba902b7"), st.just("0" * 16), hexes))
    flags = draw(st.sampled_from(["01", "00", "1", "zz", "ff"]))
    tail = draw(st.sampled_from(["", "-", "-x", "-tail-more", " ", "\t", "\n", " x"]))
    lead = draw(st.sampled_from(["", " ", "\t", "\u00a0", "\n"]))
    text = f"{lead}{version}-{trace_id}-{span_id}-{flags}{tail}"
    raw = text.encode("utf-8")
    if draw(st.booleans()):
        raw += draw(st.binary(max_size=4))
    return raw


@st.composite
def b3_values(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.one_of(hexes, st.sampled_from(["1", "0", "d", "true", "x"])),
                          min_size=1, max_size=5))
    return draw(st.sampled_from(["-", ":", "%3A"])).join(parts).encode()


ids = st.sampled_from(["ord_1", "ord_2", " ord_1 ", "ord_1\n", "", "é", "ord_\\1", "0", "-0",
                       "12345", "x" * 256, "x" * 257])

header_values = st.one_of(
    st.none(), st.binary(max_size=40), traceparents(), b3_values(),
    ids.map(lambda s: s.encode("utf-8")),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(
        lambda n: n.to_bytes(8, "big", signed=True)),
)

json_scalars = st.one_of(
    ids, st.text(max_size=12), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False), st.booleans(), st.none(),
)
json_keys = st.sampled_from(["orderId", "order_id", "data", "event", "type", "eventType",
                             "x", "orderId", "items"])
json_docs = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(json_keys, children, max_size=5)),
    max_leaves=12,
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["json", "json", "json", "dup", "binary", "none", "cut"]))
    if kind == "none":
        return None
    if kind == "binary":
        return draw(st.binary(max_size=200))
    doc = draw(st.dictionaries(json_keys, json_docs, max_size=6))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (",", " :\n ")])))
    if kind == "dup":  # duplicate keys: json.loads keeps the last one
        text = '{"orderId": "ord_1", ' + text[1:] if len(text) > 2 else text
    raw = text.encode("utf-8")
    if kind == "cut":
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return raw


topics = st.sampled_from(["t", "orders", "ördérs", "a\x00b"])


@st.composite
def dead_letter_headers(draw: st.DrawFn) -> list[tuple[str, bytes | None]]:
    """A Spring, Spring-retry, Connect or plain dead-letter header set (maybe damaged)."""
    topic = draw(topics).encode()
    partition = draw(st.integers(min_value=-1, max_value=2**31 - 1))
    offset = draw(st.integers(min_value=0, max_value=2**63 - 1))
    kind = draw(st.sampled_from(["spring", "retry", "connect", "plain"]))
    if kind in ("spring", "retry"):
        prefix = "kafka_dlt-" if kind == "spring" else "kafka_"
        out = [(prefix + "original-topic", topic),
               (prefix + "original-partition", partition.to_bytes(4, "big", signed=True)),
               (prefix + "original-offset", offset.to_bytes(8, "big", signed=True)),
               (prefix + "original-consumer-group", draw(ids).encode()),
               (prefix + "exception-fqcn", b"com.shop.BoomException"),
               (prefix + "exception-message", draw(st.binary(max_size=30)))]
    elif kind == "connect":
        out = [("__connect.errors.topic", topic),
               ("__connect.errors.partition", str(partition).encode()),
               ("__connect.errors.offset", str(offset).encode()),
               ("__connect.errors.connector.name", b"sink-1"),
               ("__connect.errors.exception.class.name", b"org.apache.kafka.DataException")]
    else:
        out = [("x-original-topic", topic), ("original-partition", str(partition).encode()),
               ("original-offset", str(offset).encode()), ("error-message", b"boom")]
    if draw(st.booleans()):  # damage one value
        i = draw(st.integers(min_value=0, max_value=len(out) - 1))
        out[i] = (out[i][0], draw(st.one_of(st.none(), st.binary(max_size=9))))
    return out


@st.composite
def headers_lists(draw: st.DrawFn) -> list[tuple[str, bytes | None]]:
    out = draw(st.lists(
        st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=12)),
                  header_values), max_size=8))
    if draw(st.booleans()):
        out.append(("traceparent", draw(traceparents())))
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        out += draw(dead_letter_headers())
    return draw(st.permutations(out))
keys = st.one_of(st.none(), st.binary(max_size=30), ids.map(lambda s: s.encode("utf-8")))


def record(key: bytes | None, value: bytes | None, headers: list) -> Record:
    return Record("t", 0, 7, 1_700_000_000_000, key, value,
                  tuple(Header(k, v) for k, v in headers))


@FAST
@given(keys, payloads(), headers_lists())
def test_fast_decoder_equals_the_reference(key, value, headers) -> None:
    r = record(key, value, headers)
    reference_keys = index_keys(r, SETTINGS)
    reference_event = describe(r, SETTINGS)
    fast_ids, row = DECODER.decode_record(r)
    assert valid_text_ids(fast_ids) == {k.decode("utf-8") for k in reference_keys}
    fast_event = event_from_row(r.topic, r.partition, row)
    assert fast_event == reference_event
    # payload order ids: the exact ones, maybe with a configured key's value from
    # elsewhere when it is already an id of the record (never fewer: the hop's
    # conflict check must see every order id)
    assert set(fast_event.order_ids) >= set(reference_event.order_ids)


@FAST
@given(st.binary(max_size=300), st.binary(max_size=300),
       st.lists(st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=80))),
                max_size=6))
def test_random_bytes_never_escape_any_decoder(key, value, headers) -> None:
    r = record(key, value, headers)
    info = describe(r, SETTINGS)
    fast_ids, row = DECODER.decode_record(r)
    assert valid_text_ids(fast_ids) == {k.decode("utf-8") for k in index_keys(r, SETTINGS)}
    assert event_from_row("t", 0, row) == info
    for text in (display(value), display(key), key_text(key) or ""):
        assert isinstance(text, str) and all(ch.isprintable() for ch in text)
        assert len(text) < 200
    order_ids(parse_json(value), SETTINGS.order_id_paths)


@FAST
@given(st.one_of(traceparents(), st.binary(max_size=80)))
def test_fast_traceparent_equals_opentelemetry(raw: bytes) -> None:
    ctx = w3c_context({"traceparent": [raw]})
    expected = (ctx.trace_id.encode(), ctx.span_id.encode()) if ctx else None
    assert fast_traceparent(raw) == expected


@FAST
@given(st.one_of(b3_values(), st.binary(max_size=80), traceparents()),
       st.one_of(b3_values(), st.binary(max_size=40), st.none()))
def test_malformed_b3_and_jaeger_values_never_raise(a: bytes, b: bytes | None) -> None:
    headers = header_map([("b3", a), ("X-B3-TraceId", a), ("X-B3-SpanId", b),
                          ("X-B3-Sampled", b), ("uber-trace-id", a), ("tracestate", b)])
    for decode in (b3_single_context, b3_multi_context, uber_context, w3c_context):
        ctx = decode(headers)
        if ctx is not None:
            assert len(ctx.trace_id) == 32 and int(ctx.trace_id, 16) != 0
    trace_contexts(headers)


@FAST
@given(st.text(max_size=80))
def test_query_forms_never_raise(text: str) -> None:
    for form in trace_id_forms(text):
        assert len(form) == 32 and int(form, 16) != 0


@FAST
@given(st.lists(st.tuples(keys, payloads(), headers_lists()), min_size=1, max_size=6),
       st.sampled_from(["ord_1", "4bf92f3577b34da6a3ce929d0e0e4736", "0"]))
def test_the_prefilter_never_misses_a_record_the_decoder_files_under_an_id(batch, noise) -> None:
    """Every id `FastDecoder` files a record under makes that record a candidate or irregular.

    This is what lets a cold lookup decode only candidates: it cannot miss an
    event the index (the full decoding) would find.
    """
    raw = RawBatch([k for k, _, _ in batch], [v for _, v, _ in batch],
                   [h or None for _, _, h in batch], DECODER)
    irregular = set(raw.irregular)
    for i, (key, value, headers) in enumerate(batch):
        ids, row = DECODER.decode(i, None, key, value, headers)
        for ident in ids:
            assert i in irregular or i in raw.candidates([ident])
        if row[7] is not None:  # a dead letter, filed under its origin too: always decoded
            assert i in irregular
    # the candidates of an id are never out of range, whatever the needle
    assert raw.candidates([noise.encode(), b"\x00", b"x" * 300]) <= set(range(len(batch)))
