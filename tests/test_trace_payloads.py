"""`lagdeck trace` on data lagdeck did not write: registry frames, any names, shared traces.

Events are written by confluent-kafka's real serializers against the test
registry (tests/registry_server.py) and produced with kafka-python.
"""

from __future__ import annotations

import json

import pytest

from collectors.registry import RegistryConfig
from console.cli import main
from tests.conftest import create_topics, kp_producer
from tests.sr_fixtures import order_placed
from tracing.search import SHARED_ID_ORDERS, Tracer, find_timeline
from tracing.settings import TraceSettings

integration = pytest.mark.integration
TRACE_SHARED = "0af7651916cd43dd8448eb211c80319c"
TRACE_TWO = "5bf92f3577b34da6a3ce929d0e0e4736"


def traceparent(trace: str, span: str = "b7ad6b7169203331") -> bytes:
    return f"00-{trace}-{span}-01".encode()


@pytest.fixture
def framed_orders(bootstrap, names, writers) -> tuple[str, str]:
    """ord_av: an Avro OrderPlaced (id at order.orderId) and a Protobuf OrderShipped (id at
    detail.order_id), no headers and no key; a stranger order in the same topics."""
    orders, shipping = names("sr-orders"), names("sr-ship")
    create_topics(bootstrap, orders, shipping)
    p = kp_producer(bootstrap)
    p.send(orders, value=writers.avro(orders, order_placed("ord_av", "evt-1")))
    p.send(orders, value=writers.avro(orders, order_placed("ord_other", "evt-2")))
    p.send(shipping, value=writers.proto(shipping, shipment_id="shp-1", order_id="ord_av"))
    p.flush(10)
    p.close(timeout=5)
    return orders, shipping


@integration
def test_trace_finds_order_ids_nested_in_avro_and_protobuf(cluster, registry,
                                                          framed_orders) -> None:
    orders, shipping = framed_orders
    settings = TraceSettings(order_id_paths=("order.orderId", "detail.order_id"))
    config = RegistryConfig(registry.url, timeout=2)
    regex = f"^({orders}|{shipping})$"
    with Tracer(cluster, settings, registry=config) as tracer:
        cold = tracer.find("ord_av", topics_regex=regex)
        warm = tracer.find("ord_av", topics_regex=regex)  # from the index
    for tl in (cold, warm):
        got = [(e.topic, e.event_type, e.payload.format) for e in tl.events]
        # no header and no configured path names the type: the record name does
        assert got == [(orders, "OrderPlaced", "avro"), (shipping, "OrderShipped", "protobuf")]
        assert tl.events[0].payload.value["order"]["orderId"] == "ord_av"
        assert tl.events[1].payload.value["detail"]["order_id"] == "ord_av"
    assert warm.stats.scanned_records == 0 and warm.stats.indexed_hits == 2
    doc = cold.to_json()["events"][0]
    assert doc["value_format"] == "avro" and isinstance(doc["schema_id"], int)


@integration
def test_default_settings_find_the_id_anywhere_and_say_where(cluster, bootstrap, names,
                                                             registry, writers,
                                                             capsys) -> None:
    topic = names("anywhere")
    create_topics(bootstrap, topic)
    p = kp_producer(bootstrap)
    p.send(topic, value=writers.avro(topic, order_placed("ord_deep")))
    p.send(topic, value=b'{"meta": {"refs": ["x", "ord_hdr"]}}',
           headers=[("X-Saga-Id", b"nothing"), ("Saga-Ref", b"ord_hdr")])
    p.send(topic, value=b'{"meta": "ord_hdr-not-exact"}', headers=[("Saga-Ref", b"ord_hdr2")])
    p.flush(10)
    p.close(timeout=5)
    regex = f"^{topic}$"
    config = RegistryConfig(registry.url, timeout=2)
    with Tracer(cluster, registry=config) as tracer:
        deep = tracer.find("ord_deep", topics_regex=regex)  # cold: found during the scan
        header = tracer.find("ord_hdr", topics_regex=regex)  # warm: the index says nothing
    assert [e.offset for e in deep.events] == [0]
    assert deep.events[0].found_in == 'payload field "order.orderId"'
    assert any("'order.orderId' to [trace].order_id_paths" in n for n in deep.notes)
    assert [(e.offset, e.found_in) for e in header.events] == [(1, 'header "Saga-Ref"')]
    assert header.events[0].correlation_id == "ord_hdr"
    assert 'matched header "Saga-Ref" in 1 event: add \'Saga-Ref\' to ' \
           "[trace].correlation_headers to index it" in header.notes

    code = main(["-b", bootstrap, "--schema-registry", registry.url, "trace", "ord_deep",
                 "--topics", regex])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "id found in payload field \"order.orderId\"" in out
    assert "note: matched payload field" in out and "value (avro schema" in out


@pytest.fixture
def shared_trace_orders(bootstrap, names) -> str:
    """Three orders whose events all carry one traceparent (a batch job in one span);
    every event names its order (key, correlation header or payload)."""
    topic = names("batch")
    create_topics(bootstrap, topic)
    p = kp_producer(bootstrap)
    tp = traceparent(TRACE_SHARED)
    for n in (1, 2, 3):
        oid = f"ord_b{n}".encode()
        p.send(topic, key=oid, value=b'{"event": "OrderPlaced"}',
               headers=[("correlation-id", oid), ("traceparent", tp)])
        p.send(topic, value=b'{"event": "PaymentCaptured", "orderId": "%s"}' % oid,
               headers=[("traceparent", tp)])
        p.send(topic, value=b'{"event": "Shipped"}',
               headers=[("correlation-id", oid), ("traceparent", tp)])
    # a trace shared by two orders (below the threshold): followed, but only events
    # without another order's id join
    two = traceparent(TRACE_TWO)
    p.send(topic, key=b"ord_b1", value=b'{"event": "Refunded"}',
           headers=[("correlation-id", b"ord_b1"), ("traceparent", two)])
    p.send(topic, value=b'{"event": "AuditLogged"}', headers=[("traceparent", two)])
    p.send(topic, value=b'{"event": "Refunded", "orderId": "ord_b2"}',
           headers=[("traceparent", two)])
    p.flush(10)
    p.close(timeout=5)
    return topic


@integration
def test_orders_sharing_one_trace_context_keep_their_own_events(bootstrap, cluster, capsys,
                                                                shared_trace_orders) -> None:
    topic = shared_trace_orders
    regex = f"^{topic}$"
    assert SHARED_ID_ORDERS <= 3
    code = main(["-b", bootstrap, "trace", "ord_b2", "--topics", regex, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    # its three events, its refund, and the id-less audit event of the two-order trace
    assert [e["offset"] for e in doc["events"]] == [3, 4, 5, 10, 11]
    assert any(f"trace id {TRACE_SHARED} is shared by events of 3 distinct orders" in n
               and "not followed" in n for n in doc["notes"])

    code = main(["-b", bootstrap, "trace", "ord_b1", "--topics", regex])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count(f"{topic}[0]@") == 5
    for offset in (0, 1, 2, 9, 10):  # its three, its refund, and the audit event of its trace
        assert f"{topic}[0]@{offset} " in out
    assert f"note: trace id {TRACE_SHARED} is shared by events of 3 distinct orders" in out
    assert "carry another order's id and were left out" in out

    tl = find_timeline(cluster, "ord_b3", topics_regex=regex)
    assert [e.offset for e in tl.events] == [6, 7, 8]


@integration
def test_trace_with_the_registry_hanging_pays_one_timeout(bootstrap, names, writers, capsys,
                                                          tmp_path, monkeypatch) -> None:
    from tests.registry_server import SilentServer

    config = tmp_path / "lagdeck.toml"  # the flag's URL, the file's timeout
    config.write_text('[schema_registry]\nurl = "http://127.0.0.1:9"\ntimeout = 1\n')
    monkeypatch.setenv("LAGDECK_CONFIG", str(config))
    topic = names("sr-hang")
    create_topics(bootstrap, topic)
    p = kp_producer(bootstrap)
    for n in range(4):
        p.send(topic, key=b"ord_h", value=writers.avro(topic, order_placed("ord_h", f"e{n}")),
               headers=[("correlation-id", b"ord_h")])
    p.flush(10)
    p.close(timeout=5)
    with SilentServer() as silent:
        code = main(["-b", bootstrap, "--schema-registry", silent.url, "trace", "ord_h",
                     "--topics", f"^{topic}$", "--json"])
        accepted = len(silent.accepted)
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert accepted == 1
    assert [e["offset"] for e in doc["events"]] == [0, 1, 2, 3]
    assert all(e["value_format"] == "binary" and "unreachable" in e["value_note"]
               for e in doc["events"])
    assert any("registry-framed values are shown raw" in n for n in doc["notes"])
