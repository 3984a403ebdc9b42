"""`lagdeck trace ID`: the timeline of one order / correlation id / trace id.

Prints the order's events oldest first, one block per event: time, topic
and position, event type, then one mark per consumer group reading that
topic (processed, pending, dead-lettered) and STUCK where a group has left
it pending longer than `--stuck-after`. `--json` prints the docs/contracts.md
document instead. Exit code 0 when events were found, 1 when none were.

The timeline is printed as soon as it is known; after a scan the command
then completes the correlation index (decodes every record it read) before
exiting, so the next lookup of any id in that range needs no scan.
"""

from __future__ import annotations

import argparse
import sys

from collectors.errors import UsageError
from collectors.untrusted import encodable, one_line
from collectors.untrusted import line_field as _s
from console.context import Context, print_json, scan_progress
from tracing.search import find_timeline, parse_duration
from tracing.timeline import DEAD_LETTERED, PENDING, PROCESSED, Timeline, TimelineEvent


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="follow one order across topics and consumer groups")
    p.add_argument("id", metavar="ID", help="order id, correlation id or trace id")
    p.add_argument("--since", default="24h", metavar="DURATION", help="how far back (default 24h)")
    p.add_argument("--topics", metavar="REGEX", help="topics to scan (default: all non-internal)")
    p.add_argument("--stuck-after", default="5m", metavar="DURATION",
                   help="pending longer than this is stuck (default 5m)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    since = parse_duration(args.since, "--since")
    stuck_after = parse_duration(args.stuck_after, "--stuck-after")
    if since <= 0:
        raise UsageError("--since must be longer than zero")
    config = ctx.config
    settings = ctx.settings.trace
    progress = scan_progress()
    shown: list[Timeline] = []

    def show(timeline: Timeline) -> None:
        """Print as soon as the answer is known; the index is completed afterwards."""
        if progress is not None:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        _print(timeline, args.json)
        shown.append(timeline)

    try:
        timeline = find_timeline(config.cluster, args.id, since_seconds=since,
                                 topics_regex=args.topics, stuck_after_seconds=stuck_after,
                                 settings=settings, progress=progress, on_answer=show,
                                 registry=ctx.registry)
    finally:
        if progress is not None:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    if not shown:
        _print(timeline, args.json)
    if not timeline.complete:  # the broker went away during the scan: say so, exit 1
        cut = next((n for n in timeline.notes if n.startswith("scan cut short")),
                   "scan cut short")
        sys.stderr.write(f"lagdeck: error: trace of {args.id}: {cut}\n")
        return 1
    return 0 if timeline.events else 1


def _print(timeline: Timeline, as_json: bool) -> None:
    if as_json:
        print_json(timeline.to_json())
    else:
        marks = _marks(sys.stdout)
        text = render(timeline, marks=marks)
        if marks is ASCII_MARKS:  # e.g. LANG=C under cron: never die on an encoding error
            encoding = getattr(sys.stdout, "encoding", None) or "ascii"
            text = text.replace("│", "|").replace("·", "-")
            text = encodable(text, encoding)
        sys.stdout.write(text)
    sys.stdout.flush()


UNICODE_MARKS = {PROCESSED: "✓", PENDING: "…", DEAD_LETTERED: "✗"}
ASCII_MARKS = {PROCESSED: "+", PENDING: ".", DEAD_LETTERED: "x"}


def _marks(stream) -> dict[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "".join(UNICODE_MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return UNICODE_MARKS


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _event_lines(e: TimelineEvent, marks: dict[str, str], day: str | None) -> list[str]:
    stamp = e.timestamp or "no timestamp"
    date, _, clock = stamp.partition("T")
    when = clock.rstrip("Z") if clock and date == day else stamp.replace("T", " ").rstrip("Z")
    kind = _s(e.event_type) or "(no event type)"
    if e.redriven:
        kind = f"{kind} (redriven copy)"
    elif e.dead_letter is not None:
        kind = f"DEAD LETTER ({_s(e.event_type)})" if e.event_type else "DEAD LETTER"
    lines = [f"{when:<23}  {_s(e.topic)}[{e.partition}]@{e.offset}  {kind}"
             + ("  STUCK" if e.stuck else "")]
    ids = []
    if e.key is not None:
        ids.append(f"key {_s(e.key)}")
    if e.correlation_id and e.correlation_id != e.key:
        ids.append(f"correlation {_s(e.correlation_id)}")
    if e.trace_id:
        ids.append(f"trace {_s(e.trace_id)}")
    if ids:
        lines.append("│  " + " · ".join(ids))
    if e.consumers:
        lines.append("│  " + "   ".join(f"{marks[s]} {_s(g)} ({s})" for g, s in
                                        sorted(e.consumers.items())))
    else:
        lines.append("│  (no consumer group has committed offsets on this topic)")
    dl = e.dead_letter
    if dl is not None:
        origin = (f"{_s(dl.original_topic)}[{dl.original_partition}]@{dl.original_offset}"
                  if dl.original_topic else "unknown origin")
        group = f" by {_s(dl.original_group)}" if dl.original_group else ""
        was = "redriven by lagdeck; was dead-lettered " if e.redriven else ""
        lines.append(f"│  {was}from {origin}{group}: {_s(dl.error_class) or 'unknown error'}"
                     + (f": {_s(dl.error_message)}" if dl.error_message else ""))
    for span in e.spans:
        lines.append(f"│  span {_s(span.service)} {_s(span.operation)} {span.duration_ms:g} ms")
    if e.found_in:
        lines.append(f"│  id found in {_s(e.found_in)}")
    p = e.payload
    if p is not None and p.value is not None:
        schema = f" schema {p.schema_id}" if p.schema_id is not None else ""
        lines.append(f"│  value ({p.format}{schema}): {one_line(p.text(160), 180)}")
    if p is not None and p.note:
        lines.append(f"│  note: {_s(p.note)}")
    if e.trace_url:
        lines.append(f"│  {_s(e.trace_url)}")
    return lines


def render(timeline: Timeline, marks: dict[str, str] = UNICODE_MARKS) -> str:
    """The human timeline: a header line, then one block per event, oldest first."""
    n = len(timeline.events)
    stats = timeline.stats
    head = (f"{_s(timeline.query)}: {n} event{'s' if n != 1 else ''} in the last "
            f"{_duration(timeline.since_seconds)} (times UTC; stuck after "
            f"{_duration(timeline.stuck_after_seconds)})")
    out = [head, ""]
    day = None
    for e in timeline.events:
        out += _event_lines(e, marks, day)
        out.append("│")
        if e.timestamp:
            day = e.timestamp.partition("T")[0]
    if timeline.events:
        out.pop()
        stuck = len(timeline.stuck)
        legend = "   ".join(f"{m} {s}" for s, m in marks.items())
        out += ["", legend + (f"   ({stuck} stuck)" if stuck else "")]
    else:
        out.append(f"no events found ({stats.topics} topics, {stats.scanned_records:,} records "
                   "scanned, the rest from the correlation index)")
    for note in timeline.notes:
        out.append(f"note: {_s(note)}")
    return "\n".join(out) + "\n"
