"""`lagdeck flows`: the flow of all orders from the correlation index.

Prints the steps (topic, event type) in flow order with the orders that
reached each, how many stopped there and for how long, duplicates and
out-of-order events, then the transitions with p50/p95/p99/max latency.
`--step NAME` (an event type, or `TOPIC:EVENT_TYPE`) lists the orders
stopped there, oldest first, each ready for `lagdeck trace`. `--json` prints
the docs/contracts.md document. Exit code 0 when events were found, 1 when none were
or `--step` names no step.

Like `lagdeck trace`, it first reads and indexes what the index lacks of
the chosen topics within `--since`; rules in docs/flows.md.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys

from collectors.errors import NotFoundError, UsageError
from collectors.untrusted import encodable
from console.context import Context, print_json, scan_progress
from console.widgets import format as fmt
from tracing.flowquery import find_flows
from tracing.flows import FlowMap, Step, StoppedOrder
from tracing.search import parse_duration

#: Stopped orders listed in text mode (all of them with --json).
TEXT_LIMIT = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flows", help="the flow of all orders: steps, latencies, where they stop")
    p.add_argument("--since", default="1h", metavar="DURATION", help="how far back (default 1h)")
    p.add_argument("--topics", metavar="REGEX", help="topics to read (default: all non-internal)")
    p.add_argument("--stuck-after", default="5m", metavar="DURATION",
                   help="an order whose latest event is older than this has stopped "
                        "(default 5m)")
    p.add_argument("--step", metavar="NAME",
                   help="list the orders stopped at this step (event type or TOPIC:EVENT_TYPE)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(run=run)


def tune_memory() -> None:
    """Memory settings for a one-shot flow computation over big temporary arrays.

    By default every array above 128 KiB is its own mmap, returned on free and
    page-faulted in afresh by the next one: a third of the command's CPU time
    at a million events went to the kernel. The command is a short-lived
    process, so keeping freed heap costs nothing; elsewhere (the TUI) this is
    not called. A no-op off glibc.

    numpy also asks for transparent huge pages on big arrays; where the kernel
    compacts memory on demand for such requests (`defrag=madvise`, a common
    default) that cost more kernel time than it saved, so it is turned off.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]  # the same module, older path
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if callable(setter):
        setter(False)
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: heap for arrays up to 32 MiB
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep freed heap for reuse
    except (OSError, AttributeError):
        return


def run(args: argparse.Namespace, ctx: Context) -> int:
    since = parse_duration(args.since, "--since")
    stuck_after = parse_duration(args.stuck_after, "--stuck-after")
    if since <= 0:
        raise UsageError("--since must be longer than zero")
    if args.step is not None and not args.step.strip():
        raise UsageError("--step: the step name is empty")
    config = ctx.config
    progress = scan_progress()
    tune_memory()
    try:
        flows = find_flows(config.cluster, since_seconds=since, topics_regex=args.topics,
                           stuck_after_seconds=stuck_after,
                           settings=ctx.settings.trace, progress=progress)
    finally:
        if progress is not None:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    step = args.step.strip() if args.step else None
    chosen: tuple[Step, ...] = ()
    if step is not None:
        chosen = flows.find_steps(step)
        if not chosen and flows.steps:
            names = ", ".join(sorted({s.step.name for s in flows.steps})[:12])
            # the step list is what the operator needs to retype: not cut at 80
            raise NotFoundError(f"--step '{_safe(step)}': no such step in the last "
                                f"{fmt.seconds(since)} (steps: {_safe(names, 600)})")
    if args.json:
        print_json(flows.to_json(step=step))
    else:
        text = render(flows)
        if step is not None:
            text += "\n" + render_stopped(step, flows.stopped_at(chosen))
        _write(text)
    return 0 if flows.events else 1


def _write(text: str) -> None:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):  # e.g. LANG=C under cron
        text = text.replace("→", "->").replace("—", "-").replace("…", "...")
        text = encodable(text, encoding)
    sys.stdout.write(text)
    sys.stdout.flush()


def _safe(text: str, limit: int = 80) -> str:
    """Record-derived text made harmless for a terminal (no escape sequences)."""
    return fmt.printable(text, limit)


def _ms(value: int | None) -> str:
    if value is None:
        return "—"
    return fmt.seconds(value / 1000) if value >= 1000 else f"{value}ms"


def step_label(step: Step) -> str:
    return f"{_safe(step.topic, 60)}  {_safe(step.name, 60)}"


def render(flows: FlowMap) -> str:
    """Steps, then transitions, as aligned text."""
    head = (f"flows over the last {fmt.seconds(flows.since_seconds)}: {flows.orders:,} orders, "
            f"{flows.events:,} events (stopped: latest event older than "
            f"{fmt.seconds(flows.stuck_after_seconds)})")
    out = [head, ""]
    if not flows.steps:
        out.append(f"no events found ({flows.stats.topics} topics, "
                   f"{flows.stats.scanned_records:,} records scanned, the rest from the "
                   "correlation index)")
    else:
        labels = [step_label(s.step) for s in flows.steps]
        width = max(len("STEP"), *(len(label) for label in labels))
        out.append(f"{'STEP':<{width}}  {'ORDERS':>8}  {'STOPPED':>8}  {'OLDEST':>8}  "
                   f"{'DUP':>5}  {'OOO':>5}  {'P95 NEXT':>9}")
        for s, label in zip(flows.steps, labels, strict=True):
            kind = " (dead letters)" if s.dead_letter else (" (end)" if s.terminal else "")
            out.append(f"{label:<{width}}  {s.orders:>8,}  {s.stopped:>8,}  "
                       f"{fmt.seconds(s.oldest_stopped_seconds):>8}  {s.duplicates:>5,}  "
                       f"{s.out_of_order:>5,}  {_ms(s.p95_next_ms):>9}{kind}")
        out += ["", "TRANSITIONS"]
        pairs = [f"{_safe(t.source.label(), 70)} → {_safe(t.target.label(), 70)}"
                 for t in flows.transitions]
        width = max([len("FROM → TO"), *(len(p) for p in pairs)])
        out.append(f"{'FROM → TO':<{width}}  {'COUNT':>8}  {'P50':>7}  {'P95':>7}  "
                   f"{'P99':>7}  {'MAX':>7}")
        for t, pair in zip(flows.transitions, pairs, strict=True):
            out.append(f"{pair:<{width}}  {t.count:>8,}  {_ms(t.p50_ms):>7}  "
                       f"{_ms(t.p95_ms):>7}  {_ms(t.p99_ms):>7}  {_ms(t.max_ms):>7}")
    for note in flows.notes:
        out.append(f"note: {_safe(note, 300)}")
    return "\n".join(out) + "\n"


def render_stopped(step: str, stopped: tuple[StoppedOrder, ...]) -> str:
    out = [f"STOPPED AT {_safe(step)}: {len(stopped):,} orders (oldest first; open one with "
           "`lagdeck trace ID`)"]
    if stopped:
        ids = [_safe(s.id, 60) for s in stopped[:TEXT_LIMIT]]
        width = max(len("ID"), *(len(i) for i in ids))
        out.append(f"{'ID':<{width}}  {'AGE':>8}  LAST EVENT")
        for s, ident in zip(stopped, ids, strict=False):
            out.append(f"{ident:<{width}}  {fmt.seconds(s.age_seconds):>8}  "
                       f"{_safe(s.step.topic, 60)}[{s.partition}]@{s.offset}  "
                       f"{_safe(s.step.name, 60)}")
        if len(stopped) > TEXT_LIMIT:
            out.append(f"… and {len(stopped) - TEXT_LIMIT:,} more (--json lists every one)")
    return "\n".join(out) + "\n"
