"""Overview: every consumer group with status, lag, lag in seconds and a trend.

Rows are keyed by group name and updated in place on each poll, so the
cursor stays on the group the operator is looking at. `/` filters (substring
or regex), `s` cycles the sort, `enter` opens the group.
"""

from __future__ import annotations

import re
import time
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, Static

from collectors.own_groups import REDRIVE_GROUP_PREFIX
from collectors.snapshots import GroupLag
from collectors.untrusted import one_line
from console import keymap as km
from console.palette import Command
from console.screens.base import BaseScreen
from console.widgets import format as fmt
from console.widgets.inputs import LineInput
from console.widgets.keyed_table import Column, KeyedTable, Row

SORTS = ("status", "lag", "seconds", "name")

def render_state(state: str) -> Text:
    if state == "error":
        return Text("error", style="bold red")
    if state.startswith("stale "):
        return Text(state, style="bold yellow")
    return Text(one_line(state, 12), style="dim" if state.upper() in ("EMPTY", "DEAD", "?") else "")


COLUMNS = (
    Column("status", "Status", 8, fmt.status_badge),
    Column("group", "Group"),
    Column("state", "State", 12, render_state),
    Column("lag", "Total lag", 11, fmt.render_count),
    Column("seconds", "Max lag (time)", 14, fmt.render_seconds),
    Column("trend", "Trend", 18, fmt.render_spark),
    Column("topics", "Topics"),
)


def sort_groups(groups: list[GroupLag], how: str) -> list[GroupLag]:
    """Worst first by default: the group that needs attention is on top."""
    if how == "lag":
        return sorted(groups, key=lambda g: (-g.total_lag, g.group))
    if how == "seconds":
        return sorted(groups, key=lambda g: (-(g.max_lag_seconds or 0.0), g.group))
    if how == "name":
        return sorted(groups, key=lambda g: g.group)
    return sorted(groups, key=lambda g: (-g.status.severity, -g.total_lag, g.group))


#: lagdeck's own redrive progress groups (one per redriven selection): bookkeeping,
#: hidden unless the filter asks for them.
OWN_GROUPS = REDRIVE_GROUP_PREFIX


def matches(pattern: str, group: str) -> bool:
    """Case-insensitive regex, or plain substring when the text is not a valid regex."""
    if not pattern:
        return True
    try:
        return re.search(pattern, group, re.IGNORECASE) is not None
    except re.error:
        return pattern.lower() in group.lower()


def group_row(g: GroupLag, trend: tuple[int, ...], stale_age: float | None = None) -> Row:
    """`stale_age`: the group's snapshot is that old (`--from-snapshots`): shown as STALE,
    never with a live status."""
    topics = sorted({p.topic for p in g.partitions})
    shown = ", ".join(topics[:3]) + (f" +{len(topics) - 3}" if len(topics) > 3 else "")
    state = "error" if g.error else (g.state or "?")
    status: object = g.status
    if stale_age is not None:
        status, state = "STALE", f"stale {fmt.seconds(stale_age)}"
    return Row(g.group, (status, g.group, state, g.total_lag, g.max_lag_seconds,
                         tuple(trend), shown))


class OverviewScreen(BaseScreen):
    TITLE_TEXT = "Consumer groups"
    MODE = "overview"
    KEYS = km.OVERVIEW
    BINDINGS: ClassVar = km.bindings(km.OVERVIEW)

    def __init__(self) -> None:
        super().__init__()
        self.sort = "status"
        self.filter_text = ""

    def body(self) -> ComposeResult:
        yield Static("", id="alerts-line", classes="alerts hidden")
        yield LineInput(placeholder="filter groups (substring or regex); enter applies, "
                                "esc clears", id="filter", classes="hidden")
        yield KeyedTable(COLUMNS, id="groups")
        yield Static("waiting for the first poll…", id="summary", classes="summary")

    def on_mount(self) -> None:
        self.query_one("#groups", KeyedTable).focus()
        self.show_lag()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#groups", KeyedTable)

    def visible_groups(self) -> list[GroupLag]:
        view = self.lagdeck.lag_view
        if view is None:
            return []
        show_own = "lagdeck" in self.filter_text.lower()
        groups = [g for g in view.snapshot.groups if matches(self.filter_text, g.group)
                  and (show_own or not g.group.startswith(OWN_GROUPS))]
        return sort_groups(groups, self.sort)

    def show_lag(self) -> None:
        view = self.lagdeck.lag_view
        if view is None:
            return
        groups = self.visible_groups()
        now = time.time()
        provenance = view.provenance or {}
        stale = {name: p.age(now) for name, p in provenance.items() if p.stale(now)}
        with self.app.batch_update():
            self.table.sync([group_row(g, view.trends.get(g.group, ()), stale.get(g.group))
                             for g in groups])
            self._summary(len(groups), len(view.snapshot.groups))
            self._alerts_line()
            errors = "; ".join(view.snapshot.errors)
            self.banner(f"⚠ {errors}" if errors else None, "warning")

    def _summary(self, shown: int, total: int) -> None:
        view = self.lagdeck.lag_view
        assert view is not None
        own = sum(1 for g in view.snapshot.groups if g.group.startswith(OWN_GROUPS))
        bad = [g for g in view.snapshot.groups
               if g.status.severity >= 3 and not g.group.startswith(OWN_GROUPS)]
        text = Text()
        text.append(f"{total - own} groups", style="bold")
        if self.filter_text:
            text.append(f" ({shown} shown, filter {one_line(repr(self.filter_text))})",
                        style="yellow")
        if own and "lagdeck" not in self.filter_text.lower():
            text.append(f" (+{own} lagdeck redrive progress groups hidden: /lagdeck shows them)",
                        style="dim")
        if bad:
            text.append("  ·  needs attention: ", style="dim")
            for i, g in enumerate(sorted(bad, key=lambda g: -g.status.severity)):
                if i:
                    text.append(", ")
                text.append(one_line(g.group, fmt.CELL_LIMIT), style="bold red")
                text.append(f" {g.status.value}", style="red")
        text.append(f"  ·  sorted by {self.sort}", style="dim")
        if view.provenance is None:
            text.append(f"  ·  polled {fmt.clock(view.snapshot.taken_at)}", style="dim")
        else:
            self._provenance(text)
        self.query_one("#summary", Static).update(text)

    def _provenance(self, text: Text) -> None:
        """Where the figures come from when read from the snapshot topic: age, publisher."""
        view = self.lagdeck.lag_view
        assert view is not None and view.provenance is not None
        now = time.time()
        ages = [p.age(now) for p in view.provenance.values()]
        publishers = sorted({p.published_by for p in view.provenance.values()})
        text.append(f"  ·  snapshots {view.snapshot_topic}", style="dim")
        if not ages:
            text.append(" (none published yet)", style="yellow")
            return
        text.append(f", {fmt.seconds(min(ages))}-{fmt.seconds(max(ages))} old, by ",
                    style="dim")
        text.append(", ".join(one_line(p, fmt.CELL_LIMIT) for p in publishers[:3])
                    + (f" +{len(publishers) - 3}" if len(publishers) > 3 else ""))
        stale = sum(1 for p in view.provenance.values() if p.stale(now))
        if stale:
            text.append(f"  ·  {stale} STALE (no fresh snapshot for a few intervals)",
                        style="bold yellow")

    def _alerts_line(self) -> None:
        from console.screens.alerts import alerts_summary

        view = self.lagdeck.lag_view
        line = self.query_one("#alerts-line", Static)
        text = alerts_summary(view.alerts if view else None)
        line.set_class(text is None, "hidden")
        line.update(text or "")

    # -- actions ---------------------------------------------------------

    def action_open_group(self) -> None:
        key = self.table.current_key
        if key:
            self.lagdeck.open_group(key)

    @on(KeyedTable.RowSelected, "#groups")
    def _row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.lagdeck.open_group(event.row_key.value)

    def palette_commands(self) -> list[Command]:
        out: list[Command] = []
        for how in SORTS:
            out.append((f"sort groups by {how}", partial(self.sort_by, how),
                        "worst first" if how == "status" else f"order the table by {how}"))
        out.append(("filter groups", self.action_filter, "substring or regex on the name"))
        if self.filter_text:
            out.append(("clear the filter", self.action_clear_filter, "show every group"))
        return out

    def sort_by(self, how: str) -> None:
        self.sort = how
        self.show_lag()

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.show_lag()
        self.notify(f"sorted by {self.sort}", timeout=2)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        box = self.query_one("#filter", Input)
        if box.value != text:
            box.value = text
        box.set_class(not self.filter_text, "hidden")
        self.show_lag()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.show_lag()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.set_filter(event.value)
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if self.filter_text or not box.has_class("hidden"):
            self.set_filter("")
            box.add_class("hidden")
            self.table.focus()
