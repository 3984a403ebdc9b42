"""Trace viewer links, and spans from a Jaeger query API (a local server answering like Jaeger)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collectors.config import Settings
from collectors.errors import ConfigError
from console.commands.trace import render
from tests.conftest import create_topics, kp_producer
from tracing.jaeger import fetch_spans, parse_trace
from tracing.search import find_timeline
from tracing.settings import TraceSettings, from_settings

TRACE = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN = "00f067aa0ba902b7"
CONSUMER_SPAN = "0b7ad6b716920333"


def jaeger_document(trace_id: str = TRACE) -> dict:
    """What `GET /api/traces/{id}` answers: ids without leading zeros, times in microseconds."""
    return {"data": [{
        "traceID": trace_id.lstrip("0"),
        "spans": [
            {"traceID": trace_id, "spanID": PRODUCER_SPAN.lstrip("0"),
             "operationName": "orders.events send", "references": [],
             "startTime": 1_700_000_000_000_000, "duration": 1500, "processID": "p1"},
            {"traceID": trace_id, "spanID": CONSUMER_SPAN.lstrip("0"),
             "operationName": "orders.events process",
             "references": [{"refType": "FOLLOWS_FROM", "traceID": trace_id,
                             "spanID": PRODUCER_SPAN.lstrip("0")}],
             "startTime": 1_700_000_000_002_000, "duration": 7250, "processID": "p2"},
            {"traceID": trace_id, "spanID": "abc", "operationName": "unrelated",
             "startTime": 1_700_000_000_003_000, "duration": 10, "processID": "p2"},
            "not a span",
            {"spanID": None},
        ],
        "processes": {"p1": {"serviceName": "order-service", "tags": []},
                      "p2": {"serviceName": "inventory-service", "tags": []}},
    }], "total": 0, "limit": 0, "offset": 0, "errors": None}


class _Jaeger(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path == f"/api/traces/{TRACE}":
            body, status = json.dumps(jaeger_document()).encode(), 200
        elif self.path.startswith("/api/traces/bad"):
            body, status = b"<html>not json</html>", 200
        elif self.path.startswith("/api/traces/boom"):
            body, status = b"internal error", 500
        else:
            body, status = b'{"data": null, "errors": [{"code": 404}]}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jaeger() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jaeger)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_parse_trace_normalises_ids_and_units() -> None:
    spans = parse_trace(jaeger_document())
    assert [(s.span_id, s.service, s.operation, s.duration_ms) for s in spans] == [
        (PRODUCER_SPAN, "order-service", "orders.events send", 1.5),
        (CONSUMER_SPAN, "inventory-service", "orders.events process", 7.25),
        ("0000000000000abc", "inventory-service", "unrelated", 0.01),
    ]
    assert spans[1].references == (PRODUCER_SPAN,)
    with pytest.raises(ValueError, match="not a Jaeger trace"):
        parse_trace({"something": "else"})


def test_fetch_spans_turns_every_failure_into_a_note(jaeger: str) -> None:
    got = fetch_spans(jaeger, [TRACE, "f" * 32, "bad" + "0" * 29, "boom" + "0" * 28])
    assert [s.service for s in got.spans[TRACE]] == ["order-service", "inventory-service",
                                                     "inventory-service"]
    assert len(got.spans) == 1
    assert any("not found in Jaeger" in n for n in got.notes)
    assert any("unreadable answer" in n for n in got.notes)
    assert any("HTTP 500" in n for n in got.notes)


def test_a_jaeger_that_is_down_is_a_note_not_a_failure() -> None:
    got = fetch_spans("http://127.0.0.1:1", [TRACE, "e" * 32], timeout=1)
    assert got.spans == {}
    assert len(got.notes) == 1 and "did not answer" in got.notes[0]  # gave up after one


def test_trace_url_template() -> None:
    settings = from_settings(Settings(data={"trace": {
        "trace_url": "https://jaeger.example/trace/{trace_id}?uiFind={span_id}"}}))
    assert settings.url_for(TRACE, PRODUCER_SPAN) == \
        f"https://jaeger.example/trace/{TRACE}?uiFind={PRODUCER_SPAN}"
    assert settings.url_for(None) is None
    assert TraceSettings().url_for(TRACE) is None
    for bad in ({"trace_url": "ftp://x/{trace_id}"}, {"trace_url": "http://x/{order}"},
                {"jaeger_url": 5}, {"jaeger_timeout": -1}, {"correlation_headers": [1]}):
        with pytest.raises(ConfigError):
            from_settings(Settings(data={"trace": bad}))


@pytest.mark.integration
def test_timeline_shows_spans_beside_events(bootstrap: str, cluster, names,
                                            jaeger: str) -> None:
    topic = names("spans")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    producer.send(topic, key=b"ord_j", value=b'{"event": "OrderPlaced"}',
                  headers=[("traceparent", f"00-{TRACE}-{PRODUCER_SPAN}-01".encode())])
    producer.send(topic, key=b"ord_j", value=b'{"event": "NoTrace"}')
    producer.flush(10)
    producer.close(timeout=5)
    settings = TraceSettings(trace_url="http://jaeger.example/trace/{trace_id}",
                             jaeger_url=jaeger)
    tl = find_timeline(cluster, "ord_j", topics_regex=f"^{topic}$", settings=settings)
    traced, untraced = tl.events
    assert [(s.service, s.duration_ms) for s in traced.spans] == [("order-service", 1.5),
                                                                  ("inventory-service", 7.25)]
    assert traced.trace_url == f"http://jaeger.example/trace/{TRACE}"
    assert untraced.spans == () and untraced.trace_url is None
    assert tl.notes == ()
    text = render(tl)
    assert "span order-service orders.events send 1.5 ms" in text
    assert "span inventory-service orders.events process 7.25 ms" in text
