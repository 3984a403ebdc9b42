"""The byte prefilter stays exact with Schema Registry frames (Avro, Protobuf, JSON Schema).

Avro and Protobuf write strings as plain UTF-8, so a string id is in the raw
bytes and the substring search finds it; numbers are varints, so a frame
whose schema has a numeric field named like an order-id path is "irregular"
(always decoded). Records here are written by the real serializers against
the test registry, with ids drawn by hypothesis (unicode, spaces, digits).
"""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.registry import RegistryConfig
from collectors.snapshots import Header, Record
from tests.registry_server import RegistryServer
from tests.sr_fixtures import Writers, order_placed
from tracing.extract import FastDecoder, describe, event_from_row, index_keys, valid_text_ids
from tracing.frames import PayloadDecoder
from tracing.prefilter import RawBatch
from tracing.settings import TraceSettings

NUMERIC_AVRO = json.dumps({"type": "record", "name": "Refund", "fields": [
    {"name": "orderId", "type": "long"}, {"name": "reason", "type": "string"}]})
SETTINGS = TraceSettings(order_id_paths=("orderId", "order.orderId", "detail.order_id",
                                         "parcels"))
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world():
    with RegistryServer() as server:
        w = Writers(server.url)
        numeric = AvroSerializer(w.client, NUMERIC_AVRO)
        decoder = FastDecoder(SETTINGS, PayloadDecoder(RegistryConfig(server.url, timeout=2)))
        yield w, numeric, decoder
        w.close()


ids = st.one_of(st.sampled_from(["ord_1", " ord_1 ", "é-ü", "0", "12345", "x" * 300]),
                st.text(min_size=1, max_size=12))


@st.composite
def framed(draw, w, numeric):
    kind = draw(st.sampled_from(["avro", "avro-long", "proto", "json"]))
    ident = draw(ids)
    if kind == "avro":
        value = w.avro("pf", order_placed(ident, draw(ids)))
    elif kind == "avro-long":
        n = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
        value = numeric({"orderId": n, "reason": ident},
                        SerializationContext("pf", MessageField.VALUE))
    elif kind == "proto":
        value = w.proto("pf", shipment_id=draw(ids), order_id=ident,
                        parcels=draw(st.integers(min_value=0, max_value=2**40)))
    else:
        value = w.json("pf", {"orderId": ident, "amount": 1})
    if draw(st.booleans()):  # damaged frames must not break the promise either
        value = value[: draw(st.integers(min_value=0, max_value=len(value)))]
    key_kind = draw(st.sampled_from(["none", "text", "avro-string", "avro-long"]))
    if key_kind == "text":
        key = draw(ids).encode()
    elif key_kind == "avro-string":
        key = AvroSerializer(w.client, '"string"')(draw(ids), SerializationContext(
            "pf", MessageField.KEY))
    elif key_kind == "avro-long":
        key = AvroSerializer(w.client, '"long"')(draw(st.integers(
            min_value=-(2**63), max_value=2**63 - 1)), SerializationContext("pf-l",
                                                                             MessageField.KEY))
    else:
        key = None
    headers = draw(st.sampled_from([[], [("correlation-id", b"corr-1")],
                                    [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                                     b"00f067aa0ba902b7-01")]]))
    return key, value, headers


def test_the_prefilter_never_misses_a_registry_framed_record(world) -> None:
    w, numeric, decoder = world

    @FAST
    @given(st.data())
    def check(data) -> None:
        batch = data.draw(st.lists(framed(w, numeric), min_size=1, max_size=5))
        raw = RawBatch([k for k, _, _ in batch], [v for _, v, _ in batch],
                       [h or None for _, _, h in batch], decoder)
        irregular = set(raw.irregular)
        for i, (key, value, headers) in enumerate(batch):
            found, row = decoder.decode(i, None, key, value, headers)
            for ident in found:
                assert i in irregular or i in raw.candidates([ident]), (ident, value)
            record = Record("pf", 0, i, None, key, value,
                            tuple(Header(k, v) for k, v in headers))
            assert valid_text_ids(found) == {
                k.decode() for k in index_keys(record, SETTINGS, decoder.payloads)}
            assert event_from_row("pf", 0, row) == describe(record, SETTINGS, decoder.payloads)

    check()


def test_numeric_ids_are_irregular_and_string_ids_are_not(world) -> None:
    w, numeric, decoder = world
    long_id = numeric({"orderId": 4242, "reason": "r"},
                      SerializationContext("pf", MessageField.VALUE))
    string_id = w.avro("pf", order_placed("ord_str"))
    raw = RawBatch([None, None], [long_id, string_id], [None, None], decoder)
    assert raw.irregular == [0]
    ids, _ = decoder.decode(0, None, None, long_id, None)
    assert b"4242" in ids and b"4242" not in long_id  # a varint: not in the bytes
    assert raw.candidates([b"ord_str"]) == {1}


def test_registry_framed_keys_count_as_their_decoded_text(world) -> None:
    w, _, decoder = world
    text_key = AvroSerializer(w.client, '"string"')("ord_k", SerializationContext(
        "pf", MessageField.KEY))
    long_key = AvroSerializer(w.client, '"long"')(
        77, SerializationContext("pf-l", MessageField.KEY))
    ids, row = decoder.decode(0, None, text_key, b'{"event": "X"}', None)
    assert b"ord_k" in ids and row[2] == "ord_k"
    ids, row = decoder.decode(1, None, long_key, None, None)
    assert b"77" in ids and row[2] == "77"
    raw = RawBatch([text_key, long_key], [None, None], [None, None], decoder)
    assert raw.irregular == [1]  # a numeric key is not spelled out in its bytes
    assert 0 in raw.candidates([b"ord_k"])
