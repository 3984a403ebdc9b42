"""Links to a trace viewer, and the spans of a trace from Jaeger's query API.

`trace_url` in `[trace]` is a template (`http://jaeger:16686/trace/{trace_id}`)
turned into one link per event. When `jaeger_url` is set, the spans of each
trace are fetched from `GET {jaeger_url}/api/traces/{trace_id}` with httpx,
so the timeline shows which services handled an event and for how long. The
trace backend is optional: when it is down or answers nonsense the timeline
is still returned, with one note saying why the spans are missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collectors.logs import get_logger
from collectors.redact import scrub
from tracing.timeline import SpanInfo

if TYPE_CHECKING:
    import httpx

_log = get_logger("trace.jaeger")


@dataclass(frozen=True)
class SpanFetch:
    """Spans per trace id, and one note per trace that could not be fetched."""

    spans: dict[str, tuple[SpanInfo, ...]]
    notes: tuple[str, ...] = ()


def _hex(value: Any, width: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return format(int(value, 16), f"0{width}x")
    except ValueError:
        return None


def parse_trace(document: Any) -> tuple[SpanInfo, ...]:
    """Spans of a Jaeger `/api/traces/{id}` answer (`{"data": [{"spans", "processes"}]}`).

    Jaeger writes ids without leading zeros and times in microseconds;
    malformed spans are skipped, never raised.
    """
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError("not a Jaeger trace document (no 'data' list)")
    out: list[SpanInfo] = []
    for trace in document["data"]:
        if not isinstance(trace, dict):
            continue
        processes = trace.get("processes")
        if not isinstance(processes, dict):
            processes = {}
        for span in trace.get("spans") or ():
            if not isinstance(span, dict):
                continue
            span_id = _hex(span.get("spanID"), 16)
            if span_id is None:
                continue
            process = processes.get(span.get("processID"), {}) or span.get("process") or {}
            service = process.get("serviceName") if isinstance(process, dict) else None
            duration = span.get("duration")
            start = span.get("startTime")
            refs = tuple(
                ref_id for ref in (span.get("references") or ())
                if isinstance(ref, dict) and (ref_id := _hex(ref.get("spanID"), 16))
            )
            out.append(SpanInfo(
                span_id=span_id,
                service=str(service) if service else "?",
                operation=str(span.get("operationName") or "?"),
                duration_ms=round(duration / 1000, 3) if isinstance(duration, int | float)
                else 0.0,
                start_ms=start / 1000 if isinstance(start, int | float) else None,
                references=refs,
            ))
    return tuple(sorted(out, key=lambda s: (s.start_ms is None, s.start_ms or 0)))


def fetch_spans(base_url: str, trace_ids: Iterable[str], *, timeout: float = 3.0,
                client: httpx.Client | None = None) -> SpanFetch:
    """Fetch every trace; a failure becomes a note, and stops further requests to a dead server."""
    # Imported here: httpx pulls in its own CLI (click, rich) on import, a few hundred
    # ms that every `trace` and `flows` would pay without a Jaeger URL configured.
    import httpx

    spans: dict[str, tuple[SpanInfo, ...]] = {}
    notes: list[str] = []
    own = client is None
    http = client if client is not None else httpx.Client(timeout=timeout)
    try:
        for trace_id in dict.fromkeys(trace_ids):
            url = f"{base_url.rstrip('/')}/api/traces/{trace_id}"
            try:
                response = http.get(url, timeout=timeout)
            except httpx.HTTPError as exc:
                note = f"trace spans unavailable: {base_url} did not answer ({type(exc).__name__})"
                _log.info("%s: %s", note, scrub(str(exc)))
                notes.append(note)
                break
            if response.status_code == 404:
                notes.append(f"trace {trace_id} not found in Jaeger")
                continue
            if response.status_code != 200:
                notes.append(f"trace {trace_id}: Jaeger answered HTTP {response.status_code}")
                continue
            try:
                spans[trace_id] = parse_trace(response.json())
            except ValueError as exc:
                notes.append(f"trace {trace_id}: unreadable answer from Jaeger ({exc})")
    finally:
        if own:
            http.close()
    return SpanFetch(spans, tuple(notes))
