"""Flows: every order at once — steps, latency to the next step, where orders stop,
duplicates and out-of-order events (`tracing.flows`, the same map as `lagdeck flows`).

Fetch in a worker (`source.flows()`, which reads only what the correlation
index lacks), post a typed `FlowsLoaded`, render on the main thread; while
the screen is on top the fetch repeats every few seconds (at least three
times as long as the last fetch took), rescheduled after each one finishes.
Enter on a step opens the orders stopped there (`FlowStepScreen`); enter on
an order opens its timeline. Every cell that comes from a record (topics,
event types, order ids) is a `rich.text.Text`, never markup.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import Worker

from console import keymap as km
from console.messages import FlowsLoaded
from console.palette import Command
from console.screens.base import BaseScreen
from console.widgets import format as fmt
from console.widgets.keyed_table import Column, KeyedTable, Row
from tracing.flows import FlowMap, FlowStep, Step, StoppedOrder

#: Seconds between refreshes while the screen is on top.
REFRESH_INTERVAL = 5.0


def step_key(step: Step) -> str:
    return repr((step.topic, step.event_type))


def render_step(value: tuple[str, str, bool, bool]) -> Text:
    topic, name, dead, terminal = value
    text = Text()
    text.append(name, style="bold red" if dead else "bold")
    text.append(f"  {topic}", style="dim")
    if dead:
        text.append("  dead letters", style="red")
    elif terminal:
        text.append("  end", style="green")
    return text


def render_ms(value: int | None) -> Text:
    if value is None:
        return Text("—", justify="right", style="dim")
    shown = fmt.seconds(value / 1000) if value >= 1000 else f"{value}ms"
    return Text(shown, justify="right")


def render_alarm(value: int) -> Text:
    return Text(f"{value:,}", justify="right", style="bold red" if value else "dim")


def render_warn(value: int) -> Text:
    return Text(f"{value:,}", justify="right", style="bold yellow" if value else "dim")


STEP_COLUMNS = (
    Column("step", "Step (event type · topic)", None, render_step),
    Column("orders", "Orders in", 10, fmt.render_count),
    Column("p95", "p95 to next", 12, render_ms),
    Column("stopped", "Stopped", 9, render_alarm),
    Column("oldest", "Oldest stop", 12, fmt.render_seconds),
    Column("dups", "Duplicates", 11, render_warn),
    Column("ooo", "Out of order", 13, render_warn),
)


def step_row(s: FlowStep) -> Row:
    return Row(step_key(s.step), (
        (s.step.topic, s.step.name, s.dead_letter, s.terminal), s.orders, s.p95_next_ms,
        s.stopped, s.oldest_stopped_seconds, s.duplicates, s.out_of_order))


def summary(flows: FlowMap) -> Text:
    text = Text()
    text.append(f"{flows.orders:,} orders", style="bold")
    text.append(f" · {flows.events:,} events in the last {fmt.seconds(flows.since_seconds)}")
    stopped = len(flows.stopped)
    if stopped:
        text.append(f" · {stopped:,} stopped", style="bold red")
        text.append(f" (latest event older than {fmt.seconds(flows.stuck_after_seconds)})",
                    style="dim")
    dups = sum(s.duplicates for s in flows.steps)
    late = sum(s.out_of_order for s in flows.steps)
    if dups:
        text.append(f" · {dups:,} duplicates", style="yellow")
    if late:
        text.append(f" · {late:,} out of order", style="yellow")
    if flows.generated_at_ms:
        text.append(f"\nrefreshed {fmt.clock(flows.generated_at_ms / 1000)}", style="dim")
        text.append(f" · read {flows.stats.scanned_records:,} new records", style="dim")
    for note in flows.notes:
        text.append(f"\n⚠ {note}", style="yellow")
    return text


def transitions_text(flows: FlowMap, step: Step) -> Text:
    """Where orders go from `step`, with latencies (shown under the table)."""
    text = Text()
    text.append("from ", style="dim")
    text.append(step.name, style="bold")
    text.append(f" ({step.topic})", style="dim")
    out = [t for t in flows.transitions if t.source == step]
    if not out:
        text.append(": no order goes on from here", style="dim")
    for t in out[:6]:
        text.append("\n  → ")
        text.append(t.target.name, style="bold")
        text.append(f" ({t.target.topic})", style="dim")
        text.append(f"  {t.count:,}×  p50 {render_ms(t.p50_ms).plain}  p95 "
                    f"{render_ms(t.p95_ms).plain}  p99 {render_ms(t.p99_ms).plain}  max "
                    f"{render_ms(t.max_ms).plain}")
    if len(out) > 6:
        text.append(f"\n  … {len(out) - 6} more", style="dim")
    return text


class _FlowsFetching(BaseScreen):
    """The worker half both flow screens share: fetch, post, reschedule while on top."""

    MODE = "flows"

    def __init__(self) -> None:
        super().__init__()
        self.flows: FlowMap | None = None
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if self.flows is not None:
            self._schedule(0.1)

    def on_screen_suspend(self) -> None:
        self._stop()

    def reload(self) -> None:
        self._stop()
        self._fetch()

    @work(thread=True, exclusive=True, exit_on_error=False, group="flows", name="flows")
    def _fetch(self) -> None:
        self.post_message(FlowsLoaded(self.lagdeck.source.flows()))

    def _schedule(self, delay: float) -> None:
        self._stop()
        if self.is_current:
            self._timer = self.set_timer(delay, self.reload)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def worker_failed(self, worker: Worker, line: str) -> bool:
        self.banner(f"✗ flows: {escape(line)}")
        self._schedule(REFRESH_INTERVAL * 2)
        return True

    def on_flows_loaded(self, message: FlowsLoaded) -> None:
        self.flows = message.flows
        self.banner(None)
        self.show_flows(message.flows)
        # a big flow takes a while to compute: never spend more than a quarter of the time on it
        self._schedule(max(REFRESH_INTERVAL, 3 * message.flows.stats.elapsed_seconds))

    @abstractmethod
    def show_flows(self, flows: FlowMap) -> None:
        """Render a fresh flow map (the step table, or one step's stopped orders)."""


class FlowsScreen(_FlowsFetching):
    TITLE_TEXT = "Flows"
    KEYS = km.FLOWS
    BINDINGS: ClassVar = km.bindings(km.FLOWS)

    def palette_commands(self) -> list[Command]:
        out: list[Command] = [("refresh flows", self.reload, "read the index again now")]
        if self.flows is None:
            return out
        for s in sorted(self.flows.steps, key=lambda s: -s.stopped):
            if s.stopped:
                out.append((f"stopped at: {s.step.name} ({s.step.topic})",
                            partial(self.open_step, s.step),
                            f"{s.stopped:,} orders, oldest {s.oldest_stopped_seconds or 0:.0f}s"))
        return out

    def body(self) -> ComposeResult:
        yield Static(Text("reading the flow of every order…", style="yellow"),
                     id="flows-summary", classes="header-line")
        yield KeyedTable(STEP_COLUMNS, id="flows-steps")
        yield Static("", id="flows-detail", classes="note")

    def on_mount(self) -> None:
        self.query_one("#flows-steps", KeyedTable).focus()
        super().on_mount()

    def show_flows(self, flows: FlowMap) -> None:
        with self.app.batch_update():
            self.query_one("#flows-summary", Static).update(summary(flows))
            self.query_one("#flows-steps", KeyedTable).sync([step_row(s) for s in flows.steps])
            self._show_detail()

    def current_step(self) -> FlowStep | None:
        if self.flows is None:
            return None
        key = self.query_one("#flows-steps", KeyedTable).current_key
        return next((s for s in self.flows.steps if step_key(s.step) == key), None)

    @on(KeyedTable.RowHighlighted, "#flows-steps")
    def _highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        s = self.current_step()
        self.query_one("#flows-detail", Static).update(
            transitions_text(self.flows, s.step) if s and self.flows else "")

    @on(KeyedTable.RowSelected, "#flows-steps")
    def _selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_open_step()

    def action_open_step(self) -> None:
        s = self.current_step()
        if s is not None:
            self.open_step(s.step)

    def open_step(self, step: Step) -> None:
        """The orders stopped at `step` (also from the command palette)."""
        if self.flows is not None:
            self.app.push_screen(FlowStepScreen(step, self.flows))


def render_order(value: str) -> Text:
    return Text(value, style="bold")


def render_last(value: tuple[str, int, int, str]) -> Text:
    topic, partition, offset, name = value
    text = Text(name)
    text.append(f"  {topic}[{partition}]@{offset}", style="dim")
    return text


STOPPED_COLUMNS = (
    Column("id", "Order", None, render_order),
    Column("age", "Stopped for", 12, fmt.render_seconds),
    Column("last", "Last event", None, render_last),
)


def stopped_row(s: StoppedOrder) -> Row:
    return Row(s.id, (s.id, s.age_seconds, (s.step.topic, s.partition, s.offset, s.step.name)))


class FlowStepScreen(_FlowsFetching):
    """The orders stopped at one step, oldest first; enter opens one's timeline."""

    TITLE_TEXT = "Stopped orders"
    KEYS = km.FLOW_STEP
    BINDINGS: ClassVar = km.bindings(km.FLOW_STEP)

    def __init__(self, step: Step, flows: FlowMap | None = None) -> None:
        super().__init__()
        self.step = step
        self.flows = flows
        self.SUBTITLE = step.name

    def body(self) -> ComposeResult:
        yield Static("", id="flowstep-summary", classes="header-line")
        yield KeyedTable(STOPPED_COLUMNS, id="flowstep-orders")

    def on_mount(self) -> None:
        self.query_one("#flowstep-orders", KeyedTable).focus()
        if self.flows is not None:
            self.show_flows(self.flows)
            self._schedule(REFRESH_INTERVAL)
        else:
            super().on_mount()

    def stopped(self) -> tuple[StoppedOrder, ...]:
        return self.flows.stopped_at((self.step,)) if self.flows else ()

    def show_flows(self, flows: FlowMap) -> None:
        stopped = self.stopped()
        head = Text()
        head.append(f"{len(stopped):,} orders stopped at ", style="bold")
        head.append(self.step.name, style="bold")
        head.append(f" ({self.step.topic})", style="dim")
        head.append(f": latest event older than {fmt.seconds(flows.stuck_after_seconds)}, "
                    "oldest first · enter opens the order's timeline", style="dim")
        with self.app.batch_update():
            self.query_one("#flowstep-summary", Static).update(head)
            self.query_one("#flowstep-orders", KeyedTable).sync(
                [stopped_row(s) for s in stopped])

    @on(KeyedTable.RowSelected, "#flowstep-orders")
    def _selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_open_order()

    def action_open_order(self) -> None:
        key = self.query_one("#flowstep-orders", KeyedTable).current_key
        if key:
            marks = {(m.topic, m.partition, m.offset): m.mark
                     for m in (self.flows.marks if self.flows else ()) if m.order == key}
            self.lagdeck.follow(key, marks)
