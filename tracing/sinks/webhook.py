"""Alert notices as JSON POSTs, delivered from a background thread.

`notify()` only enqueues; one worker thread posts with httpx (per-request
timeout), retrying connection errors, timeouts, 408/425/429 and 5xx with
capped exponential backoff (honouring a numeric `Retry-After`). A notice that
still fails is reported in one line and dropped: the collectors, `watch` and
the TUI never wait for a webhook. The URL is only ever shown as
scheme://host:port, because webhook paths often carry the token.

Body of every POST (one notice per request; `event` is "firing" or "resolved"):

    {"source": "lagdeck", "event": "firing", "rule": "notifications-behind",
     "group": "notification-service", "topic": null, "severity": "critical",
     "value": 1523, "threshold": 1000,
     "message": "notification-service: lag 1523 messages, threshold 1000 messages",
     "since": "2025-05-01T12:00:00.000Z", "at": "2025-05-01T12:00:30.000Z"}
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from collectors.alerts import AlertEvent
from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.rules import safe_url
from collectors.snapshots import LagSnapshot
from tracing.sinks import Report, log_report

_RETRY_STATUS = frozenset({408, 425, 429})
_log = get_logger("sinks.webhook")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def payload(event: AlertEvent) -> dict[str, Any]:
    """The documented JSON body for one notice."""
    return {
        "source": "lagdeck",
        "event": event.kind.value,
        "rule": event.rule,
        "group": event.group,
        "topic": event.topic,
        "severity": event.severity.value,
        "value": event.value,
        "threshold": event.threshold,
        "message": event.message,
        "since": iso(event.since),
        "at": iso(event.at),
    }


class WebhookSink:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        headers: Mapping[str, str] | None = None,
        report: Report = log_report,
        queue_size: int = 1000,
    ) -> None:
        self.url = url
        self.label = f"webhook {safe_url(url)}"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._report = report
        self._client = httpx.Client(
            timeout=timeout,
            headers={"User-Agent": "lagdeck", **(headers or {})},
            follow_redirects=False,
        )
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._abort = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="lagdeck-webhook", daemon=True)
        self._thread.start()

    # -- the Sink protocol ------------------------------------------------------------

    def observe(self, snapshot: LagSnapshot) -> None:
        """Webhooks carry notices only."""

    def notify(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            if self._closed:
                self._count("dropped")
                continue
            try:
                self._queue.put_nowait(payload(event))
            except queue.Full:
                self._count("dropped")
                self._report(f"{self.label}: queue full, dropped the {event.kind.value} notice "
                             f"for {event.key}")

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued within `timeout` seconds, then give up on the rest."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(timeout, 0.01))
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self.timeout + 1.0)
        left = self._drain()
        if left:
            self._report(f"{self.label}: {left} notice(s) not delivered before exit")
        self._client.close()

    # -- the worker ---------------------------------------------------------------------

    def _drain(self) -> int:
        left = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            if item is not None:
                left += 1
                self._count("dropped")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _run(self) -> None:
        while not self._abort.is_set():
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            try:
                self._deliver(item)
            except Exception as exc:  # never let the worker die: later notices still go out
                _log.exception("webhook delivery crashed")
                self._count("failed")
                self._report(f"{self.label}: delivery error: {self._clean(exc)}")

    def _deliver(self, body: dict[str, Any]) -> None:
        what = f"{body['event']} notice for {body['rule']}: {body['group']}"
        error = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            if self._abort.is_set():
                break
            attempts += 1
            delay = min(self.backoff * 2**attempt, self.max_backoff)
            try:
                response = self._client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                error = self._clean(exc)
            else:
                if response.is_success:
                    self._count("delivered")
                    _log.info("%s: delivered %s (HTTP %s)", self.label, what,
                              response.status_code)
                    return
                error = f"HTTP {response.status_code}"
                if response.status_code not in _RETRY_STATUS and response.status_code < 500:
                    break  # the receiver rejected it: retrying will not help
                delay = _retry_after(response, delay, self.max_backoff)
            _log.info("%s: %s failed (attempt %d): %s", self.label, what, attempts, error)
            if attempt < self.retries and self._abort.wait(delay):
                break
        self._count("failed")
        self._report(f"{self.label}: {what} not delivered after {attempts} attempt(s): "
                     f"{error or 'aborted at exit'}")

    def _clean(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return scrub(text.replace(self.url, safe_url(self.url)))


def _retry_after(response: httpx.Response, default: float, cap: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        return default
