"""What the index stores per record for the flow map (pure, no broker)."""

from __future__ import annotations

from tracing.extract import FastDecoder
from tracing.flowfacts import DEAD_LETTER, FACT_COLUMNS, NORMAL, REDRIVEN, FlowFacts, text_hash
from tracing.settings import TraceSettings

SETTINGS = TraceSettings()


def fact(topic="t", key=b"k", value=b"{}", headers=()):
    decoder = FastDecoder(SETTINGS)
    _, row = decoder.decode(5, 1000, key, value, list(headers))
    facts = FlowFacts(SETTINGS)
    out = dict(zip(FACT_COLUMNS, facts.fact(topic, 5, 1000, key, value, list(headers), row),
                   strict=True))
    return out, facts.take_names()


def test_order_from_the_correlation_header_else_the_payload_else_none():
    got, names = fact(headers=[("correlation-id", b"ord-1"), ("event-type", b"Placed")])
    assert got["order"] == text_hash("ord-1") and names[got["order"]] == "ord-1"
    assert names[got["event_type"]] == "Placed"
    got, _ = fact(key=None, value=b'{"data": {"orderId": "ord-2"}, "type": "Shipped"}')
    assert got["order"] == text_hash("ord-2")
    got, names = fact(key=b"cus-9", value=b'{"event": "Seen"}')
    assert got["order"] == 0 and names[got["key"]] == "cus-9"


def test_identity_is_the_event_id_header_else_key_and_value():
    a, _ = fact(value=b"1", headers=[("ce_id", b"e-1")])
    b, _ = fact(value=b"2", headers=[("CE_ID", b"e-1")])
    assert a["dedup"] == b["dedup"]  # same id, different bytes: the same event
    c, _ = fact(key=b"k", value=b"same")
    d, _ = fact(key=b"k", value=b"same")
    e, _ = fact(key=b"k2", value=b"same")
    f, _ = fact(key=None, value=b"same")
    assert c["dedup"] == d["dedup"] and len({c["dedup"], e["dedup"], f["dedup"]}) == 3
    g, _ = fact(key=b"ab", value=b"c")
    h, _ = fact(key=b"a", value=b"bc")  # no ambiguity between key and value
    assert g["dedup"] != h["dedup"]


def test_kind_of_dead_letters_and_redriven_copies():
    spring = [("kafka_dlt-original-topic", b"orders"),
              ("kafka_dlt-original-partition", (0).to_bytes(4, "big")),
              ("kafka_dlt-original-offset", (7).to_bytes(8, "big")),
              ("kafka_dlt-exception-fqcn", b"x.Boom")]
    assert fact(topic="orders-dlt", headers=spring)[0]["kind"] == DEAD_LETTER
    assert fact(topic="orders", headers=spring)[0]["kind"] == REDRIVEN
    assert fact(topic="orders")[0]["kind"] == NORMAL
