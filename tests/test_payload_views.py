"""Decoded payloads in the TUI's dead-letter pane and timeline detail, and `--where value.PATH`."""

from __future__ import annotations

import io

from rich.console import Console

from collectors.snapshots import Header, Record
from console.screens.dead_letters import detail
from console.screens.timeline import event_detail
from dlq.browse import DeadLetter
from dlq.select import parse_where
from tracing.deadletter import decode_envelope
from tracing.frames import AVRO, BINARY, Payload
from tracing.timeline import TimelineEvent


def _text(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(renderable)
    return out.getvalue()


AVRO_PAYLOAD = Payload({"order": {"orderId": "ord_7", "lines": ["a"]}, "note": "[/]\x1b[2J"},
                       AVRO, schema_id=12, record_name="OrderPlaced")


def _dead_letter(payload: Payload) -> DeadLetter:
    record = Record("orders.DLT", 0, 3, 1_700_000_000_000, b"ord_7", b"\x00\x00\x00\x00\x0c\x02",
                    (Header("kafka_dlt-original-topic", b"orders"),))
    return DeadLetter(record, decode_envelope(record), payload)


def test_dead_letter_pane_shows_the_decoded_payload_and_its_schema() -> None:
    text = _text(detail(_dead_letter(AVRO_PAYLOAD)))
    assert "payload  (avro, schema 12, OrderPlaced)" in text
    assert '"orderId": "ord_7"' in text
    assert "\x1b[2J" not in text  # record text never reaches the terminal raw
    raw = Payload("0x000000000c02", BINARY, schema_id=12, note="Schema Registry unreachable")
    shown = _text(detail(_dead_letter(raw)))
    assert "Schema Registry unreachable" in shown and "0x000000000c02" in shown


def test_timeline_detail_shows_the_value_and_where_the_id_was_found() -> None:
    e = TimelineEvent("orders", 0, 4, 1_700_000_000_000, None, "OrderPlaced", None, None, None,
                      payload=AVRO_PAYLOAD, found_in='payload field "order.orderId"')
    text = _text(event_detail(e))
    assert "found in" in text and 'payload field "order.orderId"' in text
    assert '"orderId":"ord_7"' in text and "avro · schema 12" in text
    doc = e.to_json()
    assert (doc["value_format"], doc["schema_id"], doc["found_in"]) == (
        "avro", 12, 'payload field "order.orderId"')


def test_where_value_path_reads_the_decoded_payload() -> None:
    record = _dead_letter(AVRO_PAYLOAD).record
    assert parse_where(["value.order.orderId=ord_7"]).matches(record, None, AVRO_PAYLOAD)
    assert parse_where(["value.order.orderId~ORD"]).matches(record, None, AVRO_PAYLOAD)
    assert not parse_where(["value.order.orderId=ord_8"]).matches(record, None, AVRO_PAYLOAD)
    assert parse_where(["value.order.lines=[\"a\"]"]).matches(record, None, AVRO_PAYLOAD)
    assert parse_where(["value.missing="]).matches(record, None, AVRO_PAYLOAD)
    assert not parse_where(["value.order.orderId=ord_7"]).matches(record, None, None)
    selector = parse_where(["value.order.orderId=ord_7", "key=ord_7"])
    assert selector.needs_payload and not selector.needs_envelope


def test_the_console_filter_line_takes_value_paths() -> None:
    from dlq.select import parse_filter

    assert parse_filter("value.order.orderId=ord_7 error_message~did not answer") == [
        "value.order.orderId=ord_7", "error_message~did not answer"]
