"""`lagdeck dlq list|show|redrive`: dead-letter topics.

The command line is a thin shell over `dlq.discovery`, `dlq.browse` and
`dlq.redrive`; the TUI calls the same functions. Redrive asks for
confirmation unless `--yes`, shows a progress bar on stderr (rich on a
terminal, a plain line every few seconds otherwise) and stops cleanly on
Ctrl-C with a summary of what was committed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from collectors.errors import UsageError
from collectors.redact import scrub
from collectors.timefmt import utc_seconds
from collectors.untrusted import line_field as _s
from collectors.untrusted import one_line
from console.argtypes import finite
from console.context import Context, print_json
from console.signals import stop_on_signals
from dlq.browse import DeadLetter, format_offsets, parse_offsets, read_page
from dlq.discovery import DlqTopicSummary, list_dead_letter_topics
from dlq.guard import ensure_writable
from dlq.redrive import (
    DEFAULT_BATCH,
    DEFAULT_MAX_ATTEMPTS,
    Redrive,
    RedriveAborted,
    RedriveProgress,
    RedriveResult,
)
from dlq.select import display_text
from tracing.frames import REGISTRY_FORMATS, PayloadDecoder

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="dead-letter topics: list, show, redrive")
    dsub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="dead-letter topics with depth and top errors")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=run_list)
    show = dsub.add_parser("show", help="decoded dead letters of a topic")
    show.add_argument("topic", metavar="TOPIC")
    show.add_argument("--limit", type=int, default=20, metavar="N")
    show.add_argument("--offset", metavar="P:O,...",
                      help="where to start, per partition, as the next-page hint prints it "
                      "(0:1,1:0,2:1); a bare N for a one-partition topic (default: the oldest)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_show)
    rd = dsub.add_parser("redrive", help="move dead letters back to their original topic")
    rd.add_argument("topic", metavar="TOPIC")
    rd.add_argument("--to", metavar="TOPIC", help="target topic instead of the original")
    rd.add_argument("--where", action="append", default=[], metavar="EXPR",
                    help="FIELD=VALUE or FIELD~TEXT (also != and !~); FIELD is error_class, "
                    "error_message, key, original_topic, original_group, header.NAME or "
                    "value.PATH (decoded payload); repeatable, all must hold")
    rd.add_argument("--rate", type=finite, metavar="N", help="records per second at most")
    rd.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS, metavar="N",
                    help="refuse records lagdeck already redrove N times "
                    f"(loop protection; default {DEFAULT_MAX_ATTEMPTS})")
    rd.add_argument("--group", metavar="NAME",
                    help="progress consumer group (default lagdeck-redrive.TOPIC, plus a hash "
                    "of --where and --to when given)")
    rd.add_argument("--again", action="store_true",
                    help="also move records an earlier redrive of this topic already moved "
                    "(recognised by their lagdeck-redrive-id on the target)")
    rd.add_argument("--force", action="store_true",
                    help="redrive records whose lagdeck-redrive-count header is malformed "
                    "(skipped by default: loop protection cannot judge them)")
    rd.add_argument("--batch-size", type=int, default=None, metavar="N",
                    help=f"records per transaction (default {DEFAULT_BATCH}, or a fifth of "
                    "--rate so progress is committed several times a second)")
    rd.add_argument("--dry-run", action="store_true",
                    help="count per target and show the first records; change nothing")
    rd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rd.add_argument("--json", action="store_true")
    rd.set_defaults(run=run_redrive)


# -- formatting ------------------------------------------------------------------------


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return utc_seconds(ms)



def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


# -- list -------------------------------------------------------------------------------


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    summaries = list_dead_letter_topics(ctx.config.cluster, options=ctx.settings.dlq)
    if args.json:
        print_json({"topics": [{
            "topic": s.topic, "depth": s.depth, "partitions": s.partitions,
            "oldest_ms": s.oldest_ms, "newest_ms": s.newest_ms,
            "top_errors": [{"error_class": e.error_class, "count": e.count}
                           for e in s.top_errors],
            "sampled": s.sampled, "matched_by": s.matched_by, "layouts": list(s.layouts),
        } for s in summaries]})
        return 0
    if not summaries:
        _out("no dead-letter topics found")
        return 0
    for line in list_lines(summaries):
        _out(line)
    return 0


def list_lines(summaries: list[DlqTopicSummary]) -> list[str]:
    """The `dlq list` table (topic names and error classes are data: escaped)."""
    out = []
    width = max(len("TOPIC"), *(len(_s(s.topic)) for s in summaries))
    out.append(f"{'TOPIC':<{width}}  {'DEPTH':>8}  {'OLDEST':<20}  {'NEWEST':<20}  TOP ERRORS")
    for s in summaries:
        errors = ", ".join(f"{_s(e.error_class)} ({e.count})" for e in s.top_errors) or "-"
        if s.sampled and s.sampled < s.depth:
            errors += f"  [newest {s.sampled}]"
        out.append(f"{_s(s.topic):<{width}}  {s.depth:>8}  {_when(s.oldest_ms):<20}  "
                   f"{_when(s.newest_ms):<20}  {errors}")
    return out


# -- show -------------------------------------------------------------------------------


def _payload_json(d: DeadLetter) -> dict[str, Any]:
    """`value`, `value_format` and, for Schema Registry frames, `schema_id` / `value_note`."""
    out = d.payload.to_json() if d.payload is not None else {}
    kp = d.key_payload
    if kp is not None:
        if kp.format in REGISTRY_FORMATS and not isinstance(kp.value, dict | list):
            out["key"] = kp.value
        out["key_format"] = kp.format
        if kp.schema_id is not None:
            out["key_schema_id"] = kp.schema_id
        if kp.note:
            out["key_note"] = kp.note
    return out


def _message_json(d: DeadLetter) -> dict[str, Any]:
    r, e = d.record, d.envelope
    return {
        "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp_ms,
        "key": display_text(r.key), "layout": e.layout,
        "original_topic": e.original_topic, "original_partition": e.original_partition,
        "original_offset": e.original_offset, "original_timestamp": e.original_timestamp_ms,
        "original_group": e.original_group, "error_class": e.error_class,
        "error_message": e.error_message, "attempts": e.attempts,
        "redrive_count": e.redrive_count, "problems": list(e.problems),
        "headers": [{"key": h.key, "value": display_text(h.value)} for h in r.headers],
        **_payload_json(d),
    }


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    start = None if args.offset is None else parse_offsets(args.offset)
    payloads = PayloadDecoder(ctx.registry)
    try:
        page = read_page(ctx.config.cluster, args.topic, start=start, limit=args.limit,
                         strict=True, payloads=payloads)
    finally:
        payloads.close()
    if args.json:
        print_json({"topic": page.topic, "depth": page.depth, "remaining": page.remaining,
                    "depth_exact": page.exact,
                    "next": None if page.next is None
                    else {str(p): o for p, o in page.next.positions},
                    "messages": [_message_json(d) for d in page.entries]})
        return 0
    if not page.entries:
        _out(f"{_s(page.topic)}: no dead letters from there (depth {page.depth})")
        return 0
    for d in page.entries:
        for line in record_lines(d):
            _out(line)
    shown = len(page.entries)
    tail = ""
    if page.next is not None:
        tail = f"; next page: --offset {format_offsets(page.next)}"
    about = "" if page.exact else "~"
    _out(f"-- {shown} shown, {about}{page.remaining} after these (depth {about}{page.depth})"
         f"{tail}")
    return 0


def record_lines(d: DeadLetter) -> list[str]:
    """One dead letter as `dlq show` prints it (every field from the record escaped)."""
    out: list[str] = []
    add = out.append
    r, e = d.record, d.envelope
    key = _s(display_text(r.key), none="None")
    add(f"{_s(r.topic)}[{r.partition}]@{r.offset}  {_when(r.timestamp_ms)}  key={key}")
    origin = _s(e.original_topic) or "?"
    if e.original_partition is not None:
        origin += f"[{e.original_partition}]"
    if e.original_offset is not None:
        origin += f"@{e.original_offset}"
    extra = f"  group {_s(e.original_group)}" if e.original_group else ""
    add(f"  from {origin}{extra}  ({e.layout})")
    if e.error_class or e.error_message:
        add(f"  error: {_s(e.error_class) or '?'}: {_s(e.error_message)}".rstrip())
    if e.attempts is not None or e.redrive_count:
        add(f"  attempts: {e.attempts if e.attempts is not None else '-'}"
             f"  redriven: {e.redrive_count or 0}")
    for problem in e.problems:
        add(f"  malformed: {_s(problem)}")
    if e.layout == "none":
        for h in r.headers:
            add(f"  header {_s(h.key)}: {_s(display_text(h.value), none='None')}")
    out += _payload_lines(d)
    return out


def _payload_lines(d: DeadLetter) -> list[str]:
    """The decoded value (format, schema, record name) and why it could not be, escaped."""
    p = d.payload
    if p is None:
        return []
    schema = f" schema {p.schema_id}" if p.schema_id is not None else ""
    name = f" {_s(p.record_name)}" if p.record_name else ""
    lines = [f"  value ({p.format}{schema}{name}): {one_line(p.text(400), 420)}"]
    if p.note:
        lines.append(f"  note: {_s(p.note)}")
    if d.key_payload is not None and d.key_payload.note:
        lines.append(f"  key note: {_s(d.key_payload.note)}")
    return lines


# -- redrive ----------------------------------------------------------------------------


class ProgressLine:
    """A progress bar on stderr: rich on a terminal, a plain line every few seconds otherwise.

    It is a plain callable taking `RedriveProgress`, the same contract the TUI uses.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._rich: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0.0

    def __enter__(self) -> ProgressLine:
        if self.enabled and self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            rich = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                            TimeRemainingColumn(), console=Console(stderr=True),
                            transient=True)
            rich.start()
            self._task = rich.add_task(self.label, total=None, counts="")
            self._rich = rich
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def __call__(self, p: RedriveProgress) -> None:
        if not self.enabled:
            return
        counts = f"redriven {p.redriven} skipped {p.skipped} failed {p.failed}"
        if p.dry_run:
            counts = f"selected {p.selected}"
        if self._rich is not None:
            if self._task is not None:
                self._rich.update(self._task, total=p.total, completed=p.scanned, counts=counts)
            return
        now = time.monotonic()
        if now - self._last < 2.0 and p.scanned < p.total:
            return
        self._last = now
        eta = f" eta {p.eta_s:.0f}s" if p.eta_s is not None and p.scanned < p.total else ""
        sys.stderr.write(f"{self.label}: {p.scanned}/{p.total} scanned, {counts}{eta}\n")
        sys.stderr.flush()


def _ctrl_c_sets(event: threading.Event) -> AbstractContextManager[None]:
    """Ctrl-C sets `event` (the redrive finishes its batch and stops) instead of raising;
    a second Ctrl-C gives up waiting (KeyboardInterrupt)."""
    return stop_on_signals(event, notice=lambda signum: "lagdeck: stopping after the "
                           "current batch (Ctrl-C again to abort)\n")


def _took(r: RedriveResult) -> str:
    moving = f", moving {r.moving_s:.1f}s at {r.rate:.0f}/s" if r.redriven else ""
    return f"in {r.elapsed_s:.1f}s{moving}"


def _print_result(r: RedriveResult, aborted: bool = False) -> None:
    if r.dry_run:
        _out(f"dry run: {r.selected} of {r.scanned} dead letters read in {_s(r.topic)} selected "
             f"({_s(r.selection)}); nothing changed")
        for target, n in r.targets:
            _out(f"  would redrive {n} to {_s(target)}")
        if r.skipped:
            _out(f"  would skip {r.skipped}")
        if r.failed:
            _out(f"  would fail {r.failed}, stopping its partition there")
        if r.behind:
            _out(f"  {r.behind} more wait behind that stop (not read; fix the cause and rerun)")
    else:
        if r.fenced:
            head = f"fenced after moving {r.redriven} dead letters (committed)"
        elif r.cancelled or aborted:
            head = f"stopped after moving {r.redriven} dead letters"
        else:
            head = f"redrove {r.redriven} of {r.selected} selected dead letters"
        _out(f"{head} from {_s(r.topic)}: selected {r.selected}, moved {r.redriven}, skipped "
             f"{r.skipped}, failed {r.failed}, not selected {r.unmatched} {_took(r)}")
        for target, n in r.targets:
            _out(f"  {n} -> {_s(target)}")
        if r.behind:
            _out(f"  {r.behind} left behind a record that cannot be delivered "
                 "(fix the cause and rerun)")
        if r.not_reached:
            _out(f"  {r.not_reached} not reached (a rerun resumes there)")
    for reason, n in r.reasons:
        _out(f"  {n} x {_s(reason)}")
    for err in r.errors[:5]:
        _out(f"  {_s(err)}")
    if r.samples and r.dry_run:
        _out("first records:")
        for s in r.samples:
            what = f"-> {_s(s.target)}" if s.action == "redrive" else \
                f"{s.action}: {_s(s.reason)}"
            _out(f"  [{s.partition}]@{s.offset} key={_s(s.key, none='None')} "
                 f"{_s(s.error_class) or '-'} {what}")
    done = not (r.dry_run or r.cancelled or r.failed or r.fenced or aborted)
    _out(f"progress group: {_s(r.group)}" + (" (a rerun moves nothing more)" if done else ""))


def _confirm(redrive: Redrive, json_out: bool) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("redrive changes topics: pass --yes to confirm when not running "
                         "interactively (or --dry-run to preview)")
    preview = redrive.plan()
    if not json_out:
        _print_result(preview)
    if preview.selected == 0:
        return True
    sys.stderr.write(f"Redrive {preview.selected} dead letters from {_s(redrive.topic)}? "
                     "Type 'yes' to proceed: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() == "yes"


def run_redrive(args: argparse.Namespace, ctx: Context) -> int:
    cluster = ctx.config.cluster
    payloads = PayloadDecoder(ctx.registry if any(w.strip().startswith("value.")
                                                  for w in args.where) else None)
    redrive = Redrive(cluster, args.topic, to=args.to, where=args.where, rate=args.rate,
                      max_attempts=args.max_attempts, group=args.group,
                      batch_size=args.batch_size, again=args.again, force=args.force,
                      payloads=payloads)
    if args.dry_run:
        with ProgressLine(f"scanning {_s(args.topic)}", enabled=not args.json) as bar:
            result = redrive.plan(progress=bar)
        if args.json:
            print_json(result.to_json())
        else:
            _print_result(result)
        _registry_note(payloads)
        # as the run would end: a dry run of records that would all fail (a topic that is
        # not a dead-letter topic, a deleted target) must not pass a script's check
        return 1 if result.failed else 0
    ensure_writable(cluster, f"redrive of {args.topic}")
    if not args.yes and not _confirm(redrive, args.json):
        sys.stderr.write("lagdeck: redrive not confirmed; nothing changed\n")
        return 1
    cancel = threading.Event()
    try:
        with _ctrl_c_sets(cancel), ProgressLine(f"redriving {_s(args.topic)}") as bar:
            result = redrive.run(progress=bar, cancel=cancel)
    except RedriveAborted as exc:
        # what was committed, on stdout as usual; the reason on stderr; exit 1
        if args.json:
            print_json({**exc.result.to_json(), "aborted": True, "error": str(exc)})
        else:
            _print_result(exc.result, aborted=True)
        raise
    if args.json:
        print_json(result.to_json())
    else:
        _print_result(result)
    _registry_note(payloads)
    if result.fenced:
        sys.stderr.write(f"lagdeck: error: {scrub(result.fenced)}\n")
        return 1
    if result.cancelled:
        return 130
    return 1 if result.failed else 0


def _registry_note(payloads: PayloadDecoder) -> None:
    """A registry that went down leaves `value.PATH` unmatched on framed records: say so."""
    if payloads.down:
        sys.stderr.write(f"lagdeck: note: {payloads.down}; value.PATH conditions did not match "
                         "registry-framed records\n")
    payloads.close()
