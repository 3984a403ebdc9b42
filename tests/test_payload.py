"""Payload decoding: order ids at JSON paths, event types, displayable previews of any bytes."""

from __future__ import annotations

import json

import pytest

from collectors.snapshots import Header, Record
from collectors.untrusted import display
from tracing.extract import FastDecoder, describe, event_from_row, index_keys
from tracing.payload import (
    MAX_JSON_BYTES,
    NOT_JSON,
    at_path,
    event_type,
    key_text,
    order_ids,
    parse_json,
)
from tracing.settings import DEFAULT_EVENT_TYPE_PATHS, DEFAULT_ORDER_ID_PATHS, TraceSettings

PATHS = DEFAULT_ORDER_ID_PATHS


def test_parse_json_accepts_only_strict_utf8_json() -> None:
    assert parse_json(b'{"orderId": "a"}') == {"orderId": "a"}
    assert parse_json(None) is NOT_JSON
    assert parse_json(b"not json") is NOT_JSON
    assert parse_json(b'{"a": "\xff"}') is NOT_JSON  # invalid UTF-8
    assert parse_json(b"[" * 100_000) is NOT_JSON  # nesting too deep for the parser
    assert parse_json(b'{"a":' + b" " * MAX_JSON_BYTES + b"1}") is NOT_JSON  # too big


def test_at_path() -> None:
    doc = {"data": {"orderId": "x", "items": [{"id": 1}, {"id": 2}]}}
    assert at_path(doc, "data.orderId") == "x"
    assert at_path(doc, "data.items.1.id") == 2
    assert at_path(doc, "data.items.9.id") is None
    assert at_path(doc, "data.orderId.more") is None
    assert at_path(doc, "missing") is None
    assert at_path([1, 2], "orderId") is None


def test_order_ids_from_default_paths() -> None:
    assert order_ids({"orderId": "a"}, PATHS) == ("a",)
    assert order_ids({"order_id": "b"}, PATHS) == ("b",)
    assert order_ids({"data": {"orderId": "c"}}, PATHS) == ("c",)
    assert order_ids({"orderId": "a", "data": {"orderId": "a"}}, PATHS) == ("a",)  # deduplicated
    assert order_ids({"orderId": 12345}, PATHS) == ("12345",)
    assert order_ids({"orderId": "  padded "}, PATHS) == ("padded",)


@pytest.mark.parametrize("value", [True, None, 1.5, {"x": 1}, ["a"], "", "   ", "x" * 300,
                                   10 ** 2000])
def test_values_that_are_not_ids(value: object) -> None:
    assert order_ids({"orderId": value}, PATHS) == ()


def test_order_ids_of_non_json_is_empty() -> None:
    assert order_ids(NOT_JSON, PATHS) == ()
    assert order_ids("just a string", PATHS) == ()


def test_event_type_from_payload_in_path_order() -> None:
    assert event_type({"event": "OrderPlaced", "type": "x"}, DEFAULT_EVENT_TYPE_PATHS) == \
        "OrderPlaced"
    assert event_type({"type": "  PaymentCaptured "}, DEFAULT_EVENT_TYPE_PATHS) == \
        "PaymentCaptured"
    assert event_type({"event": 5, "eventType": "Shipped"}, DEFAULT_EVENT_TYPE_PATHS) == "Shipped"
    assert event_type(NOT_JSON, DEFAULT_EVENT_TYPE_PATHS) is None


# -- displayable previews --------------------------------------------------------------------


def test_display_of_text_json_and_empties() -> None:
    assert display(None) == "(null)"
    assert display(b"") == "(empty)"
    assert display(b'{"orderId": "a"}') == '{"orderId": "a"}'
    assert display("ördér ✓".encode()) == "ördér ✓"


def test_display_escapes_control_characters_and_folds_lines() -> None:
    shown = display(b"bell\x07 esc\x1b[31m end")
    assert "\x07" not in shown and "\x1b" not in shown
    assert "\\x07" in shown and "\\x1b" in shown
    assert display(b"line one\nline two\r\n") == "line one line two"


def test_display_of_binary_and_invalid_utf8() -> None:
    shown = display(bytes(range(256)))
    assert shown.startswith("0x0001") and "256 bytes, binary" in shown
    assert display(b"\xff\xfe\xfd").startswith("0xfffefd")
    assert "binary" in display(b"ok then \xff in the middle of text")


def test_display_of_a_huge_value_is_short_and_says_the_size() -> None:
    value = json.dumps({"blob": "x" * 5_000_000}).encode()
    shown = display(value)
    assert len(shown) < 200
    assert f"({len(value)} bytes)" in shown


def test_display_cut_inside_a_multibyte_character_is_still_text() -> None:
    value = ("é" * 1000).encode()
    shown = display(value, limit=50)
    assert shown.startswith("é" * 50) and f"({len(value)} bytes)" in shown


def test_key_text() -> None:
    assert key_text(None) is None
    assert key_text(b"ord_1") == "ord_1"
    assert "binary" in key_text(b"\x00\x01\xff")


# -- one record, decoded both ways -----------------------------------------------------------


def rec(key: bytes | None, value: bytes | None, *headers: tuple[str, bytes | None]) -> Record:
    return Record("orders", 2, 41, 1_700_000_000_000, key, value,
                  tuple(Header(k, v) for k, v in headers))


def test_describe_reads_the_event_type_from_a_header_first() -> None:
    settings = TraceSettings()
    r = rec(b"ord_1", b'{"event": "FromPayload", "orderId": "ord_1"}',
            ("ce_type", b"shop.FromHeader"), ("correlation-id", b"corr_9"))
    info = describe(r, settings)
    assert info.event_type == "shop.FromHeader"
    assert info.correlation_id == "corr_9"
    assert info.key == "ord_1"
    assert index_keys(r, settings) == {b"ord_1", b"corr_9"}
    payload_only = describe(rec(None, b'{"type": "FromPayload", "data": {"orderId": "ord_2"}}'),
                            settings)
    assert payload_only.event_type == "FromPayload" and payload_only.key is None


def test_order_id_only_in_the_payload_is_indexed() -> None:
    settings = TraceSettings()
    r = rec(None, b'{"event": "Shipped", "order_id": "ord_3"}', ("traceparent", b"junk"))
    assert index_keys(r, settings) == {b"ord_3"}
    ids, row = FastDecoder(settings).decode_record(r)
    assert ids == {b"ord_3"}
    assert event_from_row(r.topic, r.partition, row) == describe(r, settings)


def test_configured_paths_and_headers() -> None:
    settings = TraceSettings(correlation_headers=("x-request-id",),
                             order_id_paths=("meta.order",), event_type_headers=("kind",),
                             event_type_paths=("meta.kind",))
    r = rec(b"k", b'{"meta": {"order": "o-77", "kind": "PayloadKind"}, "orderId": "ignored"}',
            ("X-Request-ID", b"req-1"), ("correlation-id", b"not-configured"))
    assert index_keys(r, settings) == {b"k", b"req-1", b"o-77"}
    info = describe(r, settings)
    assert (info.correlation_id, info.event_type) == ("req-1", "PayloadKind")
    ids, row = FastDecoder(settings).decode_record(r)
    assert ids == index_keys(r, settings)
    assert event_from_row(r.topic, r.partition, row) == info
