"""Alert notices as JSON POSTs, delivered from a background thread through the outbox.

`notify()` writes each notice to the sink's persistent outbox (`outbox.py`)
and wakes one worker thread, which posts the kept notices oldest first with
httpx (per-request timeout), retrying connection errors, timeouts,
408/425/429 and 5xx with capped exponential backoff (honouring a numeric
`Retry-After`). A notice leaves the outbox when the receiver accepts it (2xx)
or rejects it for good (other 4xx, reported); one that still fails stays and
is tried again on the next round or the next run, until it expires. The
collectors, `watch` and the TUI never wait for a webhook, and `close()` never
waits longer than it is told: what is not delivered by then stays on disk.
The URL is only ever shown as scheme://host:port (webhook paths often carry
the token).

Delivery is at least once: `id` is the same every time one notice is sent,
so receivers drop duplicates by it. Body of every POST (one notice per
request; `event` is "firing" or "resolved"; `since` and `at` are the times
of the alert, not of the delivery; `cluster` is the broker's cluster id):

    {"source": "lagdeck", "id": "0b6c...-...", "cluster": "lkc-123",
     "event": "firing", "rule": "notifications-behind",
     "group": "notification-service", "topic": null, "severity": "critical",
     "value": 1523, "threshold": 1000,
     "message": "notification-service: lag 1523 messages, threshold 1000 messages",
     "since": "2025-05-01T12:00:00.000Z", "at": "2025-05-01T12:00:30.000Z"}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from collectors.alerts.rules import safe_url
from collectors.alerts.sinks import Report, log_report
from collectors.alerts.sinks.outbox import DEFAULT_EXPIRE, Entry, Outbox, sink_key
from collectors.alerts.state import AlertEvent, AlertState, notice_id
from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.snapshots import LagSnapshot
from collectors.timefmt import iso_utc

_RETRY_STATUS = frozenset({408, 425, 429})
_log = get_logger("sinks.webhook")


def payload(event: AlertEvent) -> dict[str, Any]:
    """The documented JSON body for one notice."""
    return {
        "source": "lagdeck",
        "id": notice_id(event),
        "cluster": event.cluster or None,
        "event": event.kind.value,
        "rule": event.rule,
        "group": event.group,
        "topic": event.topic,
        "severity": event.severity.value,
        "value": event.value,
        "threshold": event.threshold,
        "message": event.message,
        "since": iso_utc(event.since),
        "at": iso_utc(event.at),
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
        outbox: Outbox | None = None,
        expire_after: float = DEFAULT_EXPIRE,
        retry_every: float = 10.0,
    ) -> None:
        self.url = url
        self.label = f"webhook {safe_url(url)}"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.expire_after = expire_after
        self.retry_every = max(retry_every, 0.05)
        self.outbox = outbox if outbox is not None else Outbox(sink_key("webhook", url))
        self._report = report
        self._client = httpx.Client(
            timeout=timeout,
            headers={"User-Agent": "lagdeck", **(headers or {})},
            follow_redirects=False,
        )
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._lock = threading.Lock()
        #: a run of failures is reported once, then once more when it ends
        self._failing = False
        self.delivered = 0
        self.failed = 0
        self.rejected = 0
        self._wake.set()  # notices left by an earlier run go out at once
        self._thread = threading.Thread(target=self._run, name="lagdeck-webhook", daemon=True)
        self._thread.start()

    # -- the Sink protocol ------------------------------------------------------------

    def observe(self, snapshot: LagSnapshot) -> None:
        """Webhooks carry notices only."""

    def observe_alerts(self, states: Iterable[AlertState]) -> None:
        """Webhooks carry notices only."""

    def notify(self, events: Sequence[AlertEvent]) -> None:
        """Keep each notice in the outbox (on disk, before any delivery), then wake the
        worker; with no events this retries what an earlier round left."""
        for event in events:
            body = payload(event)
            try:
                self.outbox.put(body["id"], body, expire_after=self.expire_after)
            except OSError as exc:
                self._count("failed")
                self._report(f"{self.label}: cannot keep the {body['event']} notice for "
                             f"{body['rule']}: {body['group']} in the outbox "
                             f"({self.outbox.dir}): {exc}; it is not sent")
        self._wake.set()

    def pending(self) -> int:
        """Notices kept in this sink's outbox, not yet accepted by the receiver."""
        return len(self.outbox)

    def close(self, timeout: float = 10.0) -> None:
        """Try what is kept once more within `timeout` seconds; what is left stays in the
        outbox for the next run. Never blocks longer than `timeout`."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake.set()
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive():
            # a receiver that does not answer: leave the worker (a daemon) to its request
            self._abort.set()
        else:
            self._client.close()
        left = self.pending()
        if left:
            self._report(f"{self.label}: {left} notice(s) kept in the outbox, "
                         "sent on the next run")

    # -- the worker ---------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _run(self) -> None:
        while not self._abort.is_set():
            self._wake.wait(self.retry_every)
            self._wake.clear()
            if self._abort.is_set():
                return
            try:
                self._send_pending()
            except Exception as exc:  # never let the worker die: later notices still go out
                _log.exception("webhook delivery crashed")
                self._report(f"{self.label}: delivery error: {self._clean(exc)}")
            if self._closing.is_set() and not self._wake.is_set():
                return

    def _send_pending(self) -> None:
        """Oldest first; stop at the first notice that cannot be delivered (keeps the order:
        a resolve never overtakes its firing notice)."""
        sent = 0
        for entry in self.outbox.pending():
            if self._abort.is_set():
                return
            with self.outbox.claim(entry) as mine:
                if not mine:
                    continue  # another watcher is sending it, or sent it
                if entry.expires_at <= time.time():
                    self.outbox.remove(entry)
                    self._report(f"{self.label}: {self._what(entry)} expired undelivered "
                                 f"(kept {_age(entry)})")
                    continue
                outcome = self._deliver(entry)
                if outcome == "retry":
                    return
                self.outbox.remove(entry)
                sent += outcome == "delivered"
        if sent and self._failing:
            self._failing = False
            self._report(f"{self.label}: delivering again ({sent} notice(s) from the outbox)")

    @staticmethod
    def _what(entry: Entry) -> str:
        body = entry.body
        return f"{body.get('event')} notice for {body.get('rule')}: {body.get('group')}"

    def _deliver(self, entry: Entry) -> str:
        """"delivered", "rejected" (the receiver refused it for good) or "retry"."""
        what = self._what(entry)
        error = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            if self._abort.is_set():
                break
            attempts += 1
            delay = min(self.backoff * 2**attempt, self.max_backoff)
            try:
                response = self._client.post(self.url, json=entry.body)
            except httpx.HTTPError as exc:
                error = self._clean(exc)
            else:
                if response.is_success:
                    self._count("delivered")
                    _log.info("%s: delivered %s id %s (HTTP %s)", self.label, what, entry.id,
                              response.status_code)
                    return "delivered"
                error = f"HTTP {response.status_code}"
                if response.status_code not in _RETRY_STATUS and response.status_code < 500:
                    self._count("rejected")
                    self._count("failed")
                    self._report(f"{self.label}: {what} rejected after {attempts} attempt(s): "
                                 f"{error}; dropped from the outbox")
                    return "rejected"
                delay = _retry_after(response, delay, self.max_backoff)
            _log.info("%s: %s failed (attempt %d): %s", self.label, what, attempts, error)
            if attempt < self.retries and self._abort.wait(delay):
                break
        self._count("failed")
        if not self._failing:
            self._failing = True
            self._report(f"{self.label}: {what} not delivered after {attempts} attempt(s): "
                         f"{error or 'stopped at exit'}; kept in the outbox and retried")
        return "retry"

    def _clean(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return scrub(text.replace(self.url, safe_url(self.url)))


def _age(entry: Entry) -> str:
    seconds = max(0.0, time.time() - entry.created_at)
    return f"{seconds / 3600:.1f}h" if seconds >= 3600 else f"{seconds:.0f}s"


def _retry_after(response: httpx.Response, default: float, cap: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        return default
