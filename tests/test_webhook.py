"""The webhook sink against a real local HTTP server: body, retries, failures reported."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collectors.alerts.rules import Severity
from collectors.alerts.sinks import build_sinks
from collectors.alerts.sinks.webhook import WebhookSink, payload
from collectors.alerts.state import AlertEvent, EventKind
from tests.conftest import wait_until

DOCUMENTED_KEYS = {"source", "id", "cluster", "event", "rule", "group", "topic", "severity",
                   "value", "threshold", "message", "since", "at"}


class Receiver:
    """A webhook endpoint on 127.0.0.1:0 that records JSON bodies; `script` sets statuses."""

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        self.bodies: list[dict] = []
        #: every body posted, whatever the answer (a receiver that failed after reading it)
        self.all_bodies: list[dict] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.statuses = list(statuses or [])
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.requests.append((self.path, dict(self.headers)))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.all_bodies.append(json.loads(raw))
                    if status == 200:
                        outer.bodies.append(json.loads(raw))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/lag"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.bodies)


def closed_port_url() -> str:
    """A URL nothing listens on: bind a port, then close it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/secret-token-123"


def event(kind: EventKind = EventKind.FIRING, **kw) -> AlertEvent:
    base = dict(kind=kind, rule="notifications-behind", group="notification-service",
                topic="payments.events", severity=Severity.CRITICAL, value=1523, threshold=1000,
                message="notification-service on payments.events: lag 1523 messages, "
                        "threshold 1000 messages",
                at=1_746_100_830.0, since=1_746_100_800.0)
    base.update(kw)
    return AlertEvent(**base)


class Reports:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)


@pytest.fixture
def reports() -> Iterator[Reports]:
    yield Reports()


def test_payload_is_the_documented_json() -> None:
    body = payload(event())
    assert set(body) == DOCUMENTED_KEYS
    assert body["source"] == "lagdeck" and body["event"] == "firing"
    assert body["severity"] == "critical" and body["value"] == 1523
    assert body["since"] == "2025-05-01T12:00:00.000Z"
    assert body["at"] == "2025-05-01T12:00:30.000Z"
    assert json.loads(json.dumps(body)) == body


def test_notices_are_posted(reports: Reports) -> None:
    with Receiver() as rx:
        sink = WebhookSink(rx.url, headers={"X-Team": "payments"}, report=reports)
        sink.notify([event(), event(EventKind.RESOLVED, value=12, at=1_746_100_900.0)])
        wait_until(lambda: len(rx.received()) == 2, 10, message="two webhook posts")
        sink.close(5)
        first, second = rx.received()
        assert set(first) == DOCUMENTED_KEYS
        assert (first["event"], first["value"]) == ("firing", 1523)
        assert (second["event"], second["value"]) == ("resolved", 12)
        path, headers = rx.requests[0]
        assert path == "/hooks/lag"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Team"] == "payments"
    assert sink.delivered == 2 and sink.failed == 0
    assert reports.snapshot() == []


def test_retries_with_backoff_then_delivers(reports: Reports) -> None:
    with Receiver(statuses=[503, 429, 200]) as rx:
        sink = WebhookSink(rx.url, retries=3, backoff=0.01, report=reports)
        sink.notify([event()])
        wait_until(lambda: rx.received(), 10, message="the retried post")
        sink.close(5)
        assert len(rx.requests) == 3
    assert sink.delivered == 1 and reports.snapshot() == []


def test_rejected_notice_is_not_retried(reports: Reports) -> None:
    with Receiver(statuses=[400]) as rx:
        sink = WebhookSink(rx.url, retries=3, backoff=0.01, report=reports)
        sink.notify([event()])
        wait_until(reports.snapshot, 10, message="a failure report")
        sink.close(5)
        assert len(rx.requests) == 1
    (line,) = reports.snapshot()
    assert "HTTP 400" in line and "1 attempt" in line and "dropped from the outbox" in line
    assert sink.failed == 1 and sink.pending() == 0


def test_unreachable_webhook_is_reported_not_raised(reports: Reports) -> None:
    url = closed_port_url()
    sink = WebhookSink(url, timeout=1.0, retries=2, backoff=0.01, report=reports)
    sink.notify([event()])  # returns at once: delivery happens on the worker thread
    wait_until(reports.snapshot, 15, message="the unreachable-webhook report")
    sink.close(5)
    line, kept = reports.snapshot()
    assert kept.endswith("1 notice(s) kept in the outbox, sent on the next run")
    assert line.startswith("webhook http://127.0.0.1:")
    assert "not delivered after 3 attempt(s)" in line
    assert "notifications-behind" in line
    assert "secret-token-123" not in line  # the URL path is never shown
    assert sink.failed >= 1 and sink.delivered == 0  # close() tries once more
    assert sink.pending() == 1  # kept in the outbox for the next round or run


def test_close_gives_up_within_its_timeout(reports: Reports) -> None:
    """A receiver that never answers must not hold `close` past the timeout it was given."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts connections, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        sink = WebhookSink(url, timeout=0.5, retries=10, backoff=5.0, report=reports)
        sink.notify([event(), event(EventKind.RESOLVED)])
        done = threading.Event()
        closer = threading.Thread(target=lambda: (sink.close(0.5), done.set()), daemon=True)
        closer.start()
        wait_until(done.is_set, 15, message="close() to return")
    lines = reports.snapshot()
    assert any("2 notice(s) kept in the outbox" in line for line in lines), lines
    assert sink.delivered == 0 and sink.pending() == 2


def test_notices_after_close_are_kept_for_the_next_run(reports: Reports) -> None:
    url = closed_port_url()
    sink = WebhookSink(url, report=reports)
    sink.close(1)
    sink.notify([event()])
    assert sink.pending() == 1 and sink.delivered == 0
    # the next run's sink for the same URL finds it
    assert WebhookSink(url, report=reports).pending() == 1


def test_build_sinks_from_config(reports: Reports) -> None:
    from collectors.alerts.rules import parse_rules_text

    with Receiver() as rx:
        text = (f'[[rule]]\nname="r"\ngroup="g"\nmax_lag=1\n'
                f'[[sink]]\ntype="webhook"\nurl="{rx.url}"\ntimeout="2s"\nretries=1\n')
        (sink,) = build_sinks(parse_rules_text(text).sinks, reports)
        assert isinstance(sink, WebhookSink)
        assert sink.timeout == 2.0 and sink.retries == 1
        sink.notify([event()])
        wait_until(rx.received, 10, message="the post")
        sink.close(5)
