"""Dead letters: topics with depth and top errors; paged records with the decoded
envelope, headers and pretty-printed payload; filter; redrive.

Topics are found by `dlq.discovery` (names and content); records come a page
at a time from `dlq.browse.read_page` (never the whole topic). `space` ticks
records, `a` ticks the page; `R` redrives the ticked records, or, with none
ticked and a filter set, every record matching the filter, always through the
preview-and-confirm dialog.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, ClassVar

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import Worker

from collectors import untrusted
from collectors.errors import UsageError
from console import keymap as km
from console.data import DlqPageView
from console.messages import DeadLetterPageLoaded, DeadLetterTopicsLoaded
from console.palette import Command
from console.screens.base import BaseScreen
from console.widgets import format as fmt
from console.widgets.inputs import LineInput
from console.widgets.keyed_table import Column, KeyedTable, Row
from console.wording import for_tui
from dlq.browse import DeadLetter, PageCursor, RecordAt
from dlq.discovery import DlqTopicSummary
from dlq.select import parse_filter
from tracing.follow import follow_id
from tracing.frames import REGISTRY_FORMATS

PAGE_SIZE = 50
#: Seconds between refreshes of the topic list while the screen is shown.
TOPICS_INTERVAL = 15.0


def _errors_cell(errors: tuple[tuple[str, int], ...]) -> str:
    return "  ".join(f"{cls.rsplit('.', 1)[-1]} ×{n}" for cls, n in errors[:3]) or "—"


TOPIC_COLUMNS = (
    Column("topic", "Dead-letter topic"),
    Column("depth", "Depth", 9, fmt.render_count),
    Column("newest", "Newest", 20, lambda ms: fmt.timestamp_ms(ms)[:19]),
    Column("errors", "Top errors (newest records)", None, _errors_cell),
)


def _mark(selected: bool) -> Text:
    return Text("✓", style="bold green") if selected else Text(" ")


RECORD_COLUMNS = (
    Column("sel", " ", 1, _mark),
    Column("where", "Part@offset", 12),
    Column("time", "Time", 19, lambda ms: fmt.timestamp_ms(ms)[:19]),
    Column("key", "Key", 14),
    Column("error", "Error"),
    Column("origin", "From"),
    Column("attempts", "Tries", 5, fmt.render_count),
)


def topic_row(t: DlqTopicSummary) -> Row:
    errors = tuple((e.error_class, e.count) for e in t.top_errors)
    return Row(t.topic, (t.topic, t.depth, t.newest_ms, errors))


def record_key(dl: DeadLetter) -> str:
    return f"{dl.record.partition}@{dl.record.offset}"


def record_row(dl: DeadLetter, selected: bool) -> Row:
    e, r = dl.envelope, dl.record
    origin = e.original_topic or "?"
    if e.original_partition is not None:
        origin += f"[{e.original_partition}]"
    if e.original_offset is not None:
        origin += f"@{e.original_offset}"
    error = (e.error_class or "(no error header)").rsplit(".", 1)[-1]
    return Row(record_key(dl), (selected, record_key(dl), r.timestamp_ms,
                                fmt.printable(r.key, 14), error, origin, e.attempts))


def pretty_payload(value: bytes | None) -> Any:
    """JSON pretty-printed and highlighted; text as is; binary escaped."""
    if value is None:
        return Text("∅ (null value: a tombstone)", style="dim")
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return fmt.data_block(value)
    return Syntax(untrusted.escape(json.dumps(doc, indent=2, ensure_ascii=False), newlines=True),
                  "json", theme="ansi_dark", word_wrap=True, background_color="default")


def decoded_payload(dl: DeadLetter) -> list[Any]:
    """The payload as decoded (JSON, or Avro / Protobuf / JSON Schema with a registry):
    a heading saying the format and schema, the document, and the note when it could
    not be decoded."""
    p = dl.payload
    if p is None or (p.format not in REGISTRY_FORMATS and not p.note):
        return [Text("\npayload", style="bold"), pretty_payload(dl.record.value)]
    head = Text("\npayload", style="bold")
    label = p.format + (f", schema {p.schema_id}" if p.schema_id is not None else "")
    label += f", {p.record_name}" if p.record_name else ""
    head.append(f"  ({label})", style="dim")
    parts: list[Any] = [head]
    if p.note:
        parts.append(Text(fmt.printable(p.note, 300), style="yellow"))
    if isinstance(p.value, dict | list):
        parts.append(Syntax(json.dumps(p.value, indent=2, ensure_ascii=False), "json",
                            theme="ansi_dark", word_wrap=True, background_color="default"))
    elif p.value is None:
        parts.append(Text("∅ (null value: a tombstone)", style="dim"))
    else:
        parts.append(Text(fmt.printable(str(p.value), 4000)))
    return parts


def detail(dl: DeadLetter) -> Group:
    e, r = dl.envelope, dl.record
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True, min_width=8)
    facts.add_column(overflow="fold")  # long values whole, folded

    def fact(name: str, value: object) -> None:
        if value is not None and value != "":
            facts.add_row(name, fmt.data_block(str(value)))

    fact("error", e.error_class)
    fact("message", e.error_message)
    origin = e.original_topic
    if origin and e.original_partition is not None:
        origin += f"[{e.original_partition}]"
    if origin and e.original_offset is not None:
        origin += f" @ {e.original_offset}"
    fact("from", origin)
    fact("group", e.original_group)
    fact("attempts", e.attempts)
    fact("redriven", f"{e.redrive_count} time(s)" if e.redrive_count else None)
    fact("layout", e.layout)
    fact("record", f"{r.topic}[{r.partition}] @ {r.offset}  {fmt.timestamp_ms(r.timestamp_ms)}")
    fact("key", untrusted.one_line(r.key) if r.key is not None else None)
    for problem in e.problems:
        facts.add_row(Text("problem", style="bold yellow"), fmt.data_block(problem, "yellow"))
    headers = Table.grid(padding=(0, 1))
    headers.add_column(style="cyan")
    headers.add_column()
    for h in r.headers:
        if h.key.endswith("stacktrace"):
            continue
        headers.add_row(fmt.data(h.key, None),
                        Text(fmt.header_value(h.value), overflow="fold"))  # whole, folded
    parts: list[Any] = [facts, Text("\nheaders", style="bold"), headers,
                        *decoded_payload(dl)]
    if e.stack_trace:
        first = "\n".join(e.stack_trace.splitlines()[:6])
        parts += [Text("\nstack trace (first lines)", style="bold"),
                  fmt.data_block(first, "dim")]
    return Group(*parts)


class DeadLettersScreen(BaseScreen):
    TITLE_TEXT = "Dead letters"
    MODE = "dead-letters"
    KEYS = km.DEAD_LETTERS
    BINDINGS: ClassVar = km.bindings(km.DEAD_LETTERS)

    def __init__(self) -> None:
        super().__init__()
        self.topic: str | None = None
        self.topics: list[DlqTopicSummary] = []
        self.page: DlqPageView | None = None
        self.history: list[PageCursor | RecordAt | None] = []
        self.cursor: PageCursor | RecordAt | None = None
        self.where: list[str] = []
        self.filter_text = ""
        self.selected: set[tuple[int, int]] = set()
        self._pending_goto: tuple[int, int, bool] | None = None
        self._topics_timer: Timer | None = None
        self._goto_before_mount: tuple[str, int | None, int | None, bool] | None = None

    def body(self) -> ComposeResult:
        yield KeyedTable(TOPIC_COLUMNS, id="dlq-topics", zebra_stripes=False)
        yield LineInput(placeholder="filter: error_class~Timeout  key~ord-  header.NAME=V  "
                                "value.PATH=V  (enter applies, esc clears)", id="dlq-filter",
                    classes="hidden")
        yield Static("Looking for dead-letter topics…", id="dlq-page-info", classes="summary")
        with Horizontal(id="dlq-main"):
            yield KeyedTable(RECORD_COLUMNS, id="dlq-records")
            with VerticalScroll(id="dlq-detail"):
                yield Static("", id="dlq-detail-text")

    def on_mount(self) -> None:
        self.query_one("#dlq-topics", KeyedTable).focus()
        self.load_topics()
        if self._goto_before_mount is not None:
            topic, partition, offset, redrive = self._goto_before_mount
            self._goto_before_mount = None
            self.goto(topic, partition=partition, offset=offset, redrive=redrive)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self._schedule_topics()

    def on_screen_suspend(self) -> None:
        if self._topics_timer is not None:
            self._topics_timer.stop()
            self._topics_timer = None

    def _schedule_topics(self) -> None:
        if self._topics_timer is not None:
            self._topics_timer.stop()
        self._topics_timer = self.set_timer(TOPICS_INTERVAL, self.load_topics)

    def reload(self) -> None:
        """ctrl+r: topics and the current page again."""
        self.load_topics()
        if self.topic:
            self.load_page(self.cursor)

    def palette_commands(self) -> list[Command]:
        out: list[Command] = []
        for t in self.topics:
            out.append((f"dead letters: browse {t.topic}", partial(self.open_topic, t.topic),
                        "page through its records"))
        out += [
            ("select all on this page", self.action_select_all, "for redrive"),
            ("filter dead letters", self.action_filter,
             "error_class=X, error_message~text, key~text, header.NAME=V"),
            ("next page", partial(self.action_page, 1), ""),
            ("previous page", partial(self.action_page, -1), ""),
        ]
        title = "redrive: preview (read-only)" if self.lagdeck.read_only else \
            "redrive: the selection or the filter"
        out.append((title, self.action_redrive,
                    "move dead letters back to their original topic, with a preview"))
        return out

    # -- workers ---------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="dlq-topics",
          name="dead-letter topics")
    def load_topics(self) -> None:
        topics = self.lagdeck.source.dead_letter_topics()
        self.post_message(DeadLetterTopicsLoaded(tuple(topics)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="dlq-page",
          name="dead-letter page")
    def _fetch_page(self, topic: str, cursor: PageCursor | RecordAt | None,
                    where: tuple[str, ...]) -> None:
        page = self.lagdeck.source.dead_letter_page(topic, cursor, where=where,
                                                    limit=PAGE_SIZE)
        self.post_message(DeadLetterPageLoaded(page, topic, where))

    def load_page(self, cursor: PageCursor | RecordAt | None) -> None:
        if self.topic is None:
            return
        self.cursor = cursor
        self.query_one("#dlq-page-info", Static).update(fmt.data(f"{self.topic}: reading…"))
        self._fetch_page(self.topic, cursor, tuple(self.where))

    def worker_failed(self, worker: Worker, line: str) -> bool:
        if worker.group == "dlq-topics":
            self._schedule_topics()
        elif worker.group == "dlq-page":
            # say what went wrong where "reading…" was, and show nothing stale
            self.page = None
            self.selected.clear()
            self.query_one("#dlq-records", KeyedTable).clear_rows()
            self._show_detail()
            self.query_one("#dlq-page-info", Static).update(Text(f"⚠ {line}", style="red"))
        self.banner(f"⚠ {line}", "error")
        return True

    def on_dead_letter_topics_loaded(self, message: DeadLetterTopicsLoaded) -> None:
        self._show_topics(message.topics)

    def on_dead_letter_page_loaded(self, message: DeadLetterPageLoaded) -> None:
        if (message.topic, message.where) == (self.topic, tuple(self.where)):
            self._show_page(message.page)

    def _show_topics(self, topics: tuple[DlqTopicSummary, ...]) -> None:
        self.topics = list(topics)
        self.banner(None)
        if self.is_current:
            self._schedule_topics()
        table = self.query_one("#dlq-topics", KeyedTable)
        table.sync([topic_row(t) for t in topics])
        if not topics:
            self.query_one("#dlq-page-info", Static).update(
                "No dead-letter topics found (by name: *-dlt, *.DLT, *.dlq, …, or by "
                "dead-letter headers in their records).")
            return
        if self.topic is None:
            self.open_topic(topics[0].topic, focus=self.query_one("#dlq-topics").has_focus)
            return
        # New dead letters arrived and the last page is shown: bring them in (keyed
        # update, so the cursor and ticks stay where they are).
        current = next((t for t in topics if t.topic == self.topic), None)
        page = self.page
        if current is not None and page is not None and page.topic == self.topic \
                and page.next is None and current.depth != page.depth \
                and len(page.entries) < PAGE_SIZE:
            self.load_page(self.cursor)

    def _show_page(self, page: DlqPageView) -> None:
        self.page = page
        self.banner(None)
        table = self.query_one("#dlq-records", KeyedTable)
        with self.app.batch_update():
            table.sync([record_row(dl, (dl.record.partition, dl.record.offset) in self.selected)
                        for dl in page.entries])
            self._page_info()
        if self._pending_goto is not None:
            partition, offset, redrive = self._pending_goto
            self._pending_goto = None
            key = f"{partition}@{offset}"
            if key in table.row_keys:
                table.move_cursor(row=table.row_keys.index(key))
                table.focus()
                if redrive:
                    self.selected = {(partition, offset)}
                    self._refresh_marks()
                    self.action_redrive()
            else:
                self.notify(f"{self.topic} has no record {key} any more (already redriven "
                            "or expired)", severity="warning")
        self._show_detail()

    def _page_info(self) -> None:
        page = self.page
        info = Text()
        if page is None or self.topic is None:
            self.query_one("#dlq-page-info", Static).update(info)
            return
        info.append(untrusted.one_line(self.topic), style="bold")
        shown = len(page.entries)
        info.append(f" · page {len(self.history) + 1}: {shown} record"
                    f"{'s' if shown != 1 else ''} of {page.depth:,}")
        if self.where:
            info.append(f" · filter {untrusted.one_line(' '.join(self.where))} "
                        f"({page.scanned:,} read)",
                        style="yellow")
        if page.next is not None:
            info.append(f" · {page.remaining:,} more: {self.key('dlq.next_page')}", style="dim")
        if self.history:
            info.append(f" · {self.key('dlq.prev_page')} back", style="dim")
        redrive = self.key("dlq.redrive")
        if self.selected:
            info.append(f" · {len(self.selected)} ticked", style="bold green")
            info.append(f" · {redrive} redrive them", style="dim")
        elif self.where:
            info.append(f" · {redrive} redrives the filter", style="dim")
        else:
            info.append(f" · {self.key('dlq.select')} ticks a record, {redrive} redrives, "
                        f"{self.key('dlq.follow')} follows its order", style="dim")
        self.query_one("#dlq-page-info", Static).update(info)

    # -- topic and record selection --------------------------------------

    def open_topic(self, topic: str, *, focus: bool = True) -> None:
        if topic != self.topic:
            self.topic = topic
            self.selected.clear()
            self.history.clear()
            self.page = None
            self.query_one("#dlq-records", KeyedTable).clear_rows()
            self._show_detail()
            self.load_page(None)
        if focus:
            self.query_one("#dlq-records", KeyedTable).focus()

    def goto(self, topic: str, *, partition: int | None = None, offset: int | None = None,
             redrive: bool = False) -> None:
        """Show `topic` at one record (from the timeline), optionally opening its redrive."""
        if not self.is_mounted:  # first visit: the screen is still being built
            self._goto_before_mount = (topic, partition, offset, redrive)
            return
        self.where, self.filter_text = [], ""
        self.query_one("#dlq-filter", Input).value = ""
        self.query_one("#dlq-filter", Input).add_class("hidden")
        self.topic = topic
        self.selected.clear()
        self.history.clear()
        self.page = None
        self.query_one("#dlq-records", KeyedTable).clear_rows()
        self._show_detail()
        cursor: RecordAt | None = None
        if partition is not None and offset is not None:
            self._pending_goto = (partition, offset, redrive)
            cursor = RecordAt(partition, offset)  # the record opens the page
        self.load_page(cursor)
        self.query_one("#dlq-records", KeyedTable).focus()

    @on(KeyedTable.RowSelected, "#dlq-topics")
    def _topic_chosen(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.open_topic(event.row_key.value)

    @on(KeyedTable.RowSelected, "#dlq-records")
    def _record_chosen(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.query_one("#dlq-detail").focus()

    @on(KeyedTable.RowHighlighted, "#dlq-records")
    def _record_highlighted(self) -> None:
        self._show_detail()

    def current_record(self) -> DeadLetter | None:
        if self.page is None:
            return None
        key = self.query_one("#dlq-records", KeyedTable).current_key
        return next((dl for dl in self.page.entries if record_key(dl) == key), None)

    def _show_detail(self) -> None:
        dl = self.current_record()
        text = self.query_one("#dlq-detail-text", Static)
        text.update(detail(dl) if dl else Text("no record selected", style="dim"))

    def _refresh_marks(self) -> None:
        if self.page is None:
            return
        self.query_one("#dlq-records", KeyedTable).sync(
            [record_row(dl, (dl.record.partition, dl.record.offset) in self.selected)
             for dl in self.page.entries])
        self._page_info()

    # -- actions ---------------------------------------------------------

    def action_toggle_select(self) -> None:
        dl = self.current_record()
        if dl is None:
            return
        key = (dl.record.partition, dl.record.offset)
        self.selected.symmetric_difference_update({key})
        self._refresh_marks()
        table = self.query_one("#dlq-records", KeyedTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_select_all(self) -> None:
        if self.page is None:
            return
        keys = {(dl.record.partition, dl.record.offset) for dl in self.page.entries}
        if keys <= self.selected:
            self.selected -= keys
        else:
            self.selected |= keys
        self._refresh_marks()

    def action_page(self, step: int) -> None:
        if self.page is None or self.topic is None:
            return
        if step > 0:
            if self.page.next is None:
                self.notify("last page", timeout=2)
                return
            self.history.append(self.cursor)
            self.load_page(self.page.next)
        else:
            if not self.history:
                self.notify("first page", timeout=2)
                return
            self.load_page(self.history.pop())

    def action_switch_pane(self) -> None:
        topics = self.query_one("#dlq-topics", KeyedTable)
        records = self.query_one("#dlq-records", KeyedTable)
        (records if topics.has_focus else topics).focus()

    def action_filter(self) -> None:
        box = self.query_one("#dlq-filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Submitted, "#dlq-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_filter(event.value)

    def set_filter(self, text: str) -> None:
        try:
            where = parse_filter(text) if text.strip() else []
        except UsageError as exc:
            self.notify(for_tui(exc, {"where": "filter"}), severity="error", timeout=6)
            return
        self.where, self.filter_text = where, text.strip()
        box = self.query_one("#dlq-filter", Input)
        box.value = text
        box.set_class(not where, "hidden")
        self.selected.clear()
        self.history.clear()
        self.query_one("#dlq-records", KeyedTable).clear_rows()
        self.load_page(None)
        self.query_one("#dlq-records", KeyedTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#dlq-filter", Input)
        if self.where or not box.has_class("hidden"):
            box.value = ""
            if self.where:
                self.set_filter("")
            box.add_class("hidden")
            self.query_one("#dlq-records", KeyedTable).focus()
            return
        if self.selected:
            self.selected.clear()
            self._refresh_marks()
            return
        super().action_back()

    def action_follow(self) -> None:
        """Open the order of the record under the cursor in the timeline."""
        dl = self.current_record()
        if dl is None:
            return
        ident = follow_id(dl.record, self.lagdeck.settings.trace)
        if not ident:
            self.notify("this record has no correlation id or printable key to follow",
                        severity="warning")
            return
        self.lagdeck.follow(ident)

    def action_redrive(self) -> None:
        from console.screens.redrive import RedriveScreen

        if self.topic is None:
            self.notify("no dead-letter topic open", severity="warning")
            return
        if self.selected:
            picked = frozenset(self.selected)
            what = f"{len(picked)} ticked record{'s' if len(picked) != 1 else ''}: " + \
                ", ".join(f"{p}@{o}" for p, o in sorted(picked)[:6]) + \
                (" …" if len(picked) > 6 else "")
            screen = RedriveScreen(self.topic, picked=picked, what=what)
        elif self.where:
            screen = RedriveScreen(self.topic, where=list(self.where),
                                   what=f"every record matching {' '.join(self.where)}")
        else:
            dl = self.current_record()
            if dl is None:
                self.notify(f"tick records with {self.key('dlq.select')}, or set a filter "
                            f"with {self.key('dlq.filter')}", severity="warning")
                return
            picked = frozenset({(dl.record.partition, dl.record.offset)})
            screen = RedriveScreen(self.topic, picked=picked,
                                   what=f"the record under the cursor: {record_key(dl)}")
        self.app.push_screen(screen, self._redrive_done)

    def _redrive_done(self, result: Any) -> None:
        if result is not None and result.redriven:
            self.selected.clear()
            self.notify(f"redriven {result.redriven} record"
                        f"{'s' if result.redriven != 1 else ''} from {result.topic}",
                        title="redrive")
        self.reload()
