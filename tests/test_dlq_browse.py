"""Browsing and discovery against the real broker, with dead letters written by kafka-python."""

from __future__ import annotations

import json

import pytest

from console.cli import main
from dlq.browse import read_page
from dlq.discovery import list_dead_letter_topics, matches_name
from tests.conftest import create_topics
from tests.test_dlq_support import connect_headers, produce, spring_headers

pytestmark = pytest.mark.integration


def test_spring_and_connect_dead_letters_decode_exactly(cluster, bootstrap, names) -> None:
    dlq = names("payments") + ".DLT"
    create_topics(bootstrap, dlq)
    produce(bootstrap, dlq, [
        (b"order-1", b"{}", spring_headers("payments.events", 2, 123456789012, 1_700_000_000_001,
                                           "payment-service", "java.lang.IllegalStateException",
                                           "card declined")),
        (b"order-2", b"\xff\x00binary",
         connect_headers("payments.events", 1, 77, "jdbc-sink",
                         "org.apache.kafka.connect.errors.DataException", "bad json")),
        (None, b"plain", [("retry-count", b"7")]),
    ])
    page = read_page(cluster, dlq, limit=10)
    assert [d.record.offset for d in page.entries] == [0, 1, 2]
    spring, connect, plain = (d.envelope for d in page.entries)
    assert (spring.layout, spring.original_topic, spring.original_partition,
            spring.original_offset, spring.original_timestamp_ms, spring.original_group,
            spring.error_class, spring.error_message) == (
        "spring", "payments.events", 2, 123456789012, 1_700_000_000_001, "payment-service",
        "java.lang.IllegalStateException", "card declined")
    assert spring.stack_trace.startswith("java.lang.IllegalStateException: card declined")
    assert spring.problems == ()
    assert (connect.layout, connect.original_topic, connect.original_partition,
            connect.original_offset, connect.original_group, connect.error_class,
            connect.error_message) == (
        "connect", "payments.events", 1, 77, "connect-jdbc-sink",
        "org.apache.kafka.connect.errors.DataException", "bad json")
    assert page.entries[1].record.value == b"\xff\x00binary"
    assert (plain.layout, plain.is_dead_letter) == ("none", False)
    assert [h.key for h in page.entries[2].record.headers] == ["retry-count"]
    assert page.next is None and page.remaining == 0 and page.depth == 3


def test_pages_cover_the_topic_once_in_order(cluster, bootstrap, names) -> None:
    dlq = names("orders") + "-dlq"
    create_topics(bootstrap, dlq, partitions=2)
    for p in range(2):
        produce(bootstrap, dlq, [
            (f"k{p}-{i}".encode(), b"v",
             spring_headers("orders", p, i, 0, "g", "E", f"m{i}")) for i in range(5)],
            partition=p)
    seen = []
    page = read_page(cluster, dlq, limit=3)
    pages = 1
    while True:
        assert len(page.entries) <= 3
        seen.extend((d.record.partition, d.record.offset) for d in page.entries)
        if page.next is None:
            break
        page = read_page(cluster, dlq, start=page.next, limit=3)
        pages += 1
    assert sorted(seen) == [(p, o) for p in range(2) for o in range(5)]
    assert len(seen) == len(set(seen)) and pages == 4
    # each partition's own order is kept
    for p in range(2):
        offsets = [o for pp, o in seen if pp == p]
        assert offsets == sorted(offsets)


def test_malformed_headers_are_shown_not_raised(cluster, bootstrap, names, capsys) -> None:
    dlq = names("bad") + ".dlq"
    create_topics(bootstrap, dlq)
    produce(bootstrap, dlq, [(b"\xfe\xff", b"v", [
        ("kafka_dlt-original-topic", b"orders"),
        ("kafka_dlt-original-partition", b"\x00\x01"),
        ("kafka_dlt-exception-message", b"bad \xc3\x28 utf8"),
    ])])
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (msg,) = doc["messages"]
    assert msg["key"] == "0xfeff"
    assert msg["original_partition"] is None
    assert any("expected a 4-byte big-endian int, got 2 bytes" in p for p in msg["problems"])
    assert any("invalid UTF-8" in p for p in msg["problems"])
    assert {"key": "kafka_dlt-original-partition", "value": "0x0001"} in msg["headers"]
    assert main(["-b", bootstrap, "dlq", "show", dlq]) == 0
    text = capsys.readouterr().out
    assert "malformed: kafka_dlt-original-partition" in text and "from orders" in text


def test_show_missing_topic_is_one_line(bootstrap, capsys) -> None:
    assert main(["-b", bootstrap, "dlq", "show", "no-such-topic-xyz.DLT"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "lagdeck: error: topic 'no-such-topic-xyz.DLT' does not exist"


def test_list_finds_by_name_and_by_content(cluster, bootstrap, names, capsys) -> None:
    by_name = names("inventory") + ".DLT"
    by_content = names("failed-things")
    ordinary = names("orders-events")
    create_topics(bootstrap, by_name, by_content, ordinary)
    produce(bootstrap, by_name, [
        (b"k", b"v", spring_headers("inventory", 0, i, 0, "inv", cls, "m"))
        for i, cls in enumerate(["A", "B", "A", "A"])])
    produce(bootstrap, by_content, [
        (b"k", b"v", connect_headers("orders", 0, 1, "sink", "X", "m"))])
    produce(bootstrap, ordinary, [(b"k", b"v", [("traceparent", b"00-1-2-01")])])
    found = {s.topic: s for s in list_dead_letter_topics(cluster)}
    assert ordinary not in found
    s = found[by_name]
    assert (s.depth, s.matched_by, s.sampled) == (4, "name", 4)
    assert [(e.error_class, e.count) for e in s.top_errors] == [("A", 3), ("B", 1)]
    assert s.oldest_ms is not None and s.newest_ms >= s.oldest_ms
    assert found[by_content].matched_by == "content"
    assert found[by_content].layouts == ("connect",)

    assert main(["-b", bootstrap, "dlq", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = next(t for t in doc["topics"] if t["topic"] == by_name)
    assert row["depth"] == 4
    assert row["top_errors"] == [{"error_class": "A", "count": 3},
                                 {"error_class": "B", "count": 1}]


def test_name_patterns() -> None:
    for name in ("payments.events-dlt", "orders.DLT", "x.dlq", "x-dlq", "dlq-x", "a.deadletter",
                 "ORDERS-DLT"):
        assert matches_name(name), name
    for name in ("orders", "dltx", "orders.dl"):
        assert not matches_name(name), name
