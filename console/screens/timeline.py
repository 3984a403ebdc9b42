"""Order timeline: type an order / correlation / trace id and follow it.

The events come from `tracing.search` in time order, each with a mark per
consumer group reading its topic (✓ processed, … pending, ✗ dead-lettered);
stuck events are highlighted, dead letters appear inline (enter opens the
record in the dead-letters screen, R opens its redrive), and the trace link
is shown when the `[trace]` section configures one. While the screen is on
top the lookup is repeated every few seconds (the correlation index makes
that cheap), so the marks move as the consumers catch up.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import Worker

from collectors.own_groups import REDRIVE_GROUP_PREFIX
from collectors.untrusted import one_line
from console import keymap as km
from console.messages import TimelineLoaded
from console.palette import Command
from console.screens.base import BaseScreen
from console.widgets import format as fmt
from console.widgets.inputs import LineInput
from console.widgets.keyed_table import Column, KeyedTable, Row
from tracing.timeline import DEAD_LETTERED, PENDING, PROCESSED, Timeline, TimelineEvent

#: Seconds between lookups while following an order.
FOLLOW_INTERVAL = 5.0

MARKS = {PROCESSED: ("✓", "green"), PENDING: ("…", "yellow"), DEAD_LETTERED: ("✗", "bold red")}


#: lagdeck's redrive progress groups: a ✓ from one means "redriven", not "processed".
REDRIVE_GROUP = REDRIVE_GROUP_PREFIX


def event_key(e: TimelineEvent) -> str:
    return f"{e.topic}[{e.partition}]@{e.offset}"


def render_time(value: tuple[int | None, bool]) -> Text:
    ms, stuck = value
    text = fmt.timestamp_ms(ms)[11:] if ms is not None else "—"
    return Text(text, style="bold red" if stuck else "")


def render_event(value: tuple[str, str | None, bool]) -> Text:
    kind, error, stuck = value
    kind = one_line(kind, fmt.CELL_LIMIT)
    if error == "":
        return Text(f"↻ {kind} (redriven)", style="bold cyan")
    if error is not None:
        return Text(f"✗ DEAD LETTER {one_line(error, fmt.CELL_LIMIT)}", style="bold red")
    return Text(kind, style="bold red" if stuck else "")


def render_marks(value: tuple[tuple[str, str], ...]) -> Text:
    text = Text()
    for i, (group, status) in enumerate(value):
        mark, style = MARKS.get(status, ("?", "dim"))
        if i:
            text.append("  ")
        if group.startswith(REDRIVE_GROUP):
            text.append("↻ redriven by lagdeck" if status == PROCESSED
                        else "… lagdeck redrive pending", style="cyan")
            continue
        text.append(f"{mark} ", style=style)
        text.append(one_line(group, 80), style=style if status != PROCESSED else "")
    return text or Text("no group commits on this topic", style="dim")


def render_flag(flag: str) -> Text:
    if flag in FLOW_FLAGS.values():
        return Text(flag, style="bold black on yellow")
    return Text(flag, style="bold white on red" if flag else "")


#: The consumer-group marks come right after the time: they are what the operator reads
#: first, and on a narrow terminal (a split pane, 80 columns) the table scrolls off to the
#: right, so the least needed column, the record's position, is last.
COLUMNS = (
    Column("time", "Time", 12, render_time),
    Column("consumers", "Consumer groups", None, render_marks),
    Column("event", "Event", None, render_event),
    Column("flag", "", 7, render_flag),  # STUCK, or DUP / LATE from the flows view
    Column("where", "Where (topic[partition]@offset)"),
)


#: Flags for events the flows view marked (`tracing.flows`): duplicate, out of order.
FLOW_FLAGS = {"duplicate": " DUP ", "out-of-order": " LATE "}


def event_row(e: TimelineEvent, marks: dict[tuple[str, int, int], str] | None = None) -> Row:
    error = None
    if e.redriven:
        error = ""  # shown as redriven
    elif e.dead_letter is not None:
        error = (e.dead_letter.error_class or "").rsplit(".", 1)[-1] or "(no error class)"
    group_marks = tuple(sorted(e.consumers.items()))
    return Row(event_key(e), ((e.timestamp_ms, e.stuck), group_marks,
                              (e.event_type or "(no event type)", error, e.stuck),
                              " STUCK " if e.stuck else
                              FLOW_FLAGS.get((marks or {}).get(e.position, ""), ""),
                              event_key(e)))


def summary(t: Timeline) -> Text:
    text = Text()
    text.append(one_line(t.query, 200), style="bold")
    if not t.events:
        text.append(": no events found", style="yellow")
        if t.since_seconds:
            text.append(f" in the last {fmt.seconds(t.since_seconds)}", style="yellow")
        return text
    dead = [e for e in t.events if e.dead_letter is not None and not e.redriven]
    redriven = [e for e in dead if any(g.startswith(REDRIVE_GROUP) and s == PROCESSED
                                       for g, s in e.consumers.items())]
    pending = {g for e in t.events for g, s in e.consumers.items()
               if s == PENDING and not g.startswith(REDRIVE_GROUP)}
    text.append(f" · {len(t.events)} events")
    if len(dead) > len(redriven):
        text.append(f" · {len(dead) - len(redriven)} dead-lettered", style="bold red")
    if redriven:
        text.append(f" · {len(redriven)} redriven", style="bold cyan")
    if t.stuck:
        text.append(f" · {len(t.stuck)} stuck", style="bold red")
    if pending:
        text.append(f" · pending in {one_line(', '.join(sorted(pending)), 400)}",
                    style="yellow")
    trace = next((e.trace_id for e in t.events if e.trace_id), None)
    if trace:
        text.append(f" · trace {one_line(trace, 200)}", style="dim")
    url = next((e.trace_url for e in t.events if e.trace_url), None)
    if url:
        text.append("\n")
        text.append(one_line(url), style=_link(url))
    for note in t.notes:
        text.append(f"\n⚠ {one_line(note)}", style="yellow")
    return text


def _link(url: str) -> Style:
    """A clickable link as a Style object: parsing `f"link {url}"` would choke on a
    space and pass an ESC in the URL to the terminal inside the OSC 8 sequence."""
    safe = one_line(url)
    return Style(underline=True, link=safe if safe.isascii() and " " not in safe else None)


def event_detail(e: TimelineEvent) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, min_width=11)
    grid.add_column(overflow="fold")  # long values whole, folded
    grid.add_row("event", fmt.data_block(f"{e.event_type or '(no event type)'} on "
                                         f"{event_key(e)} at {fmt.timestamp_ms(e.timestamp_ms)}"))
    ids = []
    if e.key is not None:
        ids.append(f"key {e.key}")
    if e.correlation_id:
        ids.append(f"correlation {e.correlation_id}")
    if e.trace_id:
        ids.append(f"trace {e.trace_id}")
    if ids:
        grid.add_row("ids", fmt.data_block(" · ".join(ids)))
    for group, status in sorted(e.consumers.items()):
        mark, style = MARKS.get(status, ("?", "dim"))
        extra = "  — stuck" if e.stuck and status == PENDING else ""
        grid.add_row(Text(mark, style=style),
                     Text(f"{one_line(group)}: {status}{extra}", style=style))
    dl = e.dead_letter
    if dl is not None and e.redriven:
        grid.add_row(Text("redriven", style="bold cyan"),
                     fmt.data_block(f"a copy of a dead letter put back on {e.topic} by "
                                    f"lagdeck's redrive (first failed with "
                                    f"{dl.error_class or '?'})"))
    elif dl is not None:
        origin = f"{dl.original_topic}[{dl.original_partition}]@{dl.original_offset}"
        grid.add_row(Text("dead letter", style="bold red"),
                     fmt.data_block(f"{dl.error_class or '?'}: {dl.error_message or ''}", "red"))
        grid.add_row("from", fmt.data_block(
            f"{origin} (group {dl.original_group or '?'}, "
            f"attempts {dl.attempts if dl.attempts is not None else '?'})"))
        grid.add_row("", Text("enter: open it in Dead letters · R: redrive it",
                              style="bold cyan"))
    if e.found_in:
        grid.add_row("found in", fmt.data_block(e.found_in, "yellow"))
    p = e.payload
    if p is not None and (p.value is not None or p.note):
        label = p.format + (f" · schema {p.schema_id}" if p.schema_id is not None else "")
        grid.add_row("value", fmt.data_block(p.text(600)))
        grid.add_row("", Text(label, style="dim"))
        if p.note:
            grid.add_row("", fmt.data_block(p.note, "yellow"))
    if e.trace_url:
        grid.add_row("trace", Text(one_line(e.trace_url), style=_link(e.trace_url)))
    return grid


class TimelineScreen(BaseScreen):
    TITLE_TEXT = "Order timeline"
    MODE = "timeline"
    KEYS = km.TIMELINE
    BINDINGS: ClassVar = km.bindings(km.TIMELINE)

    def __init__(self) -> None:
        super().__init__()
        self.query_text: str | None = None
        self.timeline: Timeline | None = None
        self.recent: list[str] = []
        self._follow_timer: Timer | None = None
        self._search_before_mount: str | None = None
        #: positions the flows view flagged (duplicate / out-of-order), shown in the flag column
        self.flow_marks: dict[tuple[str, int, int], str] = {}

    def body(self) -> ComposeResult:
        yield LineInput(placeholder="order id, correlation id or trace id — enter to follow",
                        id="timeline-query")
        yield Static(Text("Type an order id, correlation id or trace id and press enter. "
                          "Events appear in time order with a mark per consumer group: "
                          "✓ processed  … pending  ✗ dead-lettered.\nNo id at hand? In Dead "
                          f"letters ({self.key('app.dead_letters')}), put the cursor on a "
                          f"record and press {self.key('dlq.follow')}.",
                          style="dim"), id="timeline-info", classes="header-line")
        yield KeyedTable(COLUMNS, id="timeline-events")
        with VerticalScroll(id="timeline-detail"):
            yield Static("", id="timeline-detail-text")

    def on_mount(self) -> None:
        self.query_one("#timeline-query", Input).focus()
        if self._search_before_mount:
            query, self._search_before_mount = self._search_before_mount, None
            self.search(query)

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.query_text and self.timeline is not None:
            self._schedule(0.1)

    def on_screen_suspend(self) -> None:
        self._stop_follow()

    # -- searching -------------------------------------------------------

    def search(self, query: str) -> None:
        """Follow `query` (also used by `:trace ID` and the palette)."""
        query = query.strip()
        if not query:
            return
        if not self.is_mounted:  # first visit (e.g. `:trace ID`): run once built
            self._search_before_mount = query
            return
        box = self.query_one("#timeline-query", Input)
        if box.value != query:
            box.value = query
        if query != self.query_text:
            self.timeline = None
            self.query_one("#timeline-events", KeyedTable).clear_rows()
            self.query_one("#timeline-detail-text", Static).update("")
        self.query_text = query
        if query in self.recent:
            self.recent.remove(query)
        self.recent.append(query)
        self.query_one("#timeline-info", Static).update(
            Text(f"looking for {one_line(query, 200)} in every topic…", style="yellow"))
        self._stop_follow()
        self._lookup(query)
        self.query_one("#timeline-events", KeyedTable).focus()

    def reload(self) -> None:
        if self.query_text:
            self._stop_follow()
            self._lookup(self.query_text)

    @on(Input.Changed, "#timeline-query")
    def _typed(self, event: Input.Changed) -> None:
        # `/` is the search key everywhere; pressed in the (already focused) empty box it
        # means "search", not a slash in the id.
        if event.value == "/":
            event.input.value = ""

    @on(Input.Submitted, "#timeline-query")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        query = event.value
        if self.query_text and query == one_line(self.query_text):
            query = self.query_text  # the box shows an id from a record escaped
        self.search(query)

    @work(thread=True, exclusive=True, exit_on_error=False, group="timeline",
          name="order timeline")
    def _lookup(self, query: str) -> None:
        timeline = self.lagdeck.source.timeline(query)
        self.post_message(TimelineLoaded(timeline, query))

    def worker_failed(self, worker: Worker, line: str) -> bool:
        self.query_one("#timeline-info", Static).update(Text(f"✗ {one_line(line)}",
                                                             style="bold red"))
        if self.query_text:
            self._schedule(FOLLOW_INTERVAL * 2)
        return True

    def _schedule(self, delay: float) -> None:
        self._stop_follow()
        if self.is_current:
            self._follow_timer = self.set_timer(delay, self.reload)

    def _stop_follow(self) -> None:
        if self._follow_timer is not None:
            self._follow_timer.stop()
            self._follow_timer = None

    def on_timeline_loaded(self, message: TimelineLoaded) -> None:
        if message.query != self.query_text:
            return
        timeline = message.timeline
        self.timeline = timeline
        info = summary(timeline)
        info.append(f"\nfollowing: refreshed {fmt.clock(timeline.generated_at_ms / 1000)}"
                    if timeline.generated_at_ms else "\nfollowing", style="dim")
        info.append(f" · read {timeline.stats.scanned_records:,} records, "
                    f"{timeline.stats.indexed_hits:,} from the index", style="dim")
        with self.app.batch_update():
            self.query_one("#timeline-info", Static).update(info)
            self.query_one("#timeline-events", KeyedTable).sync(
                [event_row(e, self.flow_marks) for e in timeline.events])
            self._show_detail()
        self._schedule(FOLLOW_INTERVAL)

    # -- the event under the cursor --------------------------------------

    def current_event(self) -> TimelineEvent | None:
        if self.timeline is None:
            return None
        key = self.query_one("#timeline-events", KeyedTable).current_key
        return next((e for e in self.timeline.events if event_key(e) == key), None)

    @on(KeyedTable.RowHighlighted, "#timeline-events")
    def _highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        e = self.current_event()
        self.query_one("#timeline-detail-text", Static).update(
            event_detail(e) if e else "")

    @on(KeyedTable.RowSelected, "#timeline-events")
    def _selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_open_event()

    def action_open_event(self) -> None:
        e = self.current_event()
        if e is None:
            return
        if e.dead_letter is None or e.redriven:
            self.notify("not a dead letter: enter opens dead letters (✗ rows)", timeout=3)
            return
        self.lagdeck.show_dead_letters(e.topic, partition=e.partition, offset=e.offset)

    def action_redrive(self) -> None:
        e = self.current_event()
        if e is None or e.dead_letter is None or e.redriven:
            dead = [x for x in (self.timeline.events if self.timeline else ())
                    if x.dead_letter is not None and not x.redriven]
            if len(dead) != 1:
                self.notify("move the cursor to a dead letter (✗ row) to redrive it",
                            severity="warning")
                return
            e = dead[0]
        self.lagdeck.show_dead_letters(e.topic, partition=e.partition, offset=e.offset,
                                       redrive=True)

    def palette_commands(self) -> list[Command]:
        out: list[Command] = [("follow an order", self.action_search,
                               "order id, correlation id or trace id")]
        for query in self.recent[-10:]:
            out.append((f"follow: {query}", partial(self.search, query), "again"))
        return out

    def action_search(self) -> None:
        box = self.query_one("#timeline-query", Input)
        box.focus()

    def action_back(self) -> None:
        box = self.query_one("#timeline-query", Input)
        if box.has_focus and self.query_text:
            self.query_one("#timeline-events", KeyedTable).focus()
            return
        super().action_back()
