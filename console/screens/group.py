"""One consumer group: partitions (committed, end, lag, lag in seconds, method, status),
members and their assignments where the broker reports them, and replay.

Replay opens a modal that previews the offset reset as a dry run and applies
it only after the operator types the group name; in read-only mode the
preview still works (it changes nothing) and applying is disabled.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from collectors.snapshots import GroupLag, PartitionLag
from collectors.untrusted import one_line
from console import keymap as km
from console.palette import Command
from console.screens.base import BaseScreen
from console.widgets import format as fmt
from console.widgets.keyed_table import Column, KeyedTable, Row
from console.widgets.status_bar import StatusBar


def render_status(value: tuple[str, str | None]) -> Text:
    status, error = value
    if error:
        return Text(" ERR  ", style="bold white on dark_red")
    return fmt.status_badge(status)


PARTITION_COLUMNS = (
    Column("where", "Partition"),
    Column("committed", "Committed", 11, fmt.render_count),
    Column("end", "End", 11, fmt.render_count),
    Column("lag", "Lag", 9, fmt.render_count),
    Column("seconds", "Lag (time)", 11, fmt.render_seconds),
    Column("method", "Time method", 13, fmt.render_dim),
    Column("status", "Status", 8, render_status),
)

MEMBER_COLUMNS = (
    Column("member", "Member"),
    Column("client", "Client id"),
    Column("host", "Host"),
    Column("assigned", "Assigned partitions"),
)

METHOD_HELP = {
    "exact": "exact",
    "interpolated": "interpolated",
    "extrapolated": "extrapolated",
    "zero": "caught up",
    "unknown": "unknown",
}


def partition_row(p: PartitionLag) -> Row:
    where = f"{p.topic}[{p.partition}]"
    method = METHOD_HELP.get(p.lag_seconds_method, p.lag_seconds_method)
    return Row(where, (where, p.committed_offset, p.end_offset, p.lag, p.lag_seconds, method,
                       (p.status.value, p.error)))


def group_header(g: GroupLag) -> Text:
    text = Text()
    text.append(one_line(g.group), style="bold")
    text.append("  ")
    text.append_text(fmt.status_badge(g.status))
    text.append(f"  state {one_line(g.state) or '?'}", style="")
    text.append(f"  ·  total lag {fmt.count(g.total_lag)}")
    text.append(f"  ·  max lag {fmt.seconds(g.max_lag_seconds)}")
    topics = sorted({p.topic for p in g.partitions})
    text.append(f"  ·  {len(g.partitions)} partitions of "
                f"{one_line(', '.join(topics), 2000) or 'no topics'}",
                style="dim")
    if g.error:
        text.append(f"\n⚠ {one_line(g.error)}", style="bold red")
    return text


class GroupScreen(BaseScreen):
    TITLE_TEXT = "Group"
    MODE = "overview"
    KEYS = km.GROUP
    BINDINGS: ClassVar = km.bindings(km.GROUP)

    def __init__(self, group: str) -> None:
        super().__init__()
        self.group = group

    def body(self) -> ComposeResult:
        yield Static("", id="group-header", classes="header-line")
        yield KeyedTable(PARTITION_COLUMNS, id="partitions")
        with Horizontal(id="members-title", classes="section-title"):
            yield Static("Members", classes="title")
        yield Static("", id="members-note", classes="note hidden")
        yield KeyedTable(MEMBER_COLUMNS, id="members", zebra_stripes=False)

    def on_mount(self) -> None:
        self.query_one("#status-bar", StatusBar).title = self.group
        self.query_one("#partitions", KeyedTable).focus()
        self.show_lag()

    def current(self) -> GroupLag | None:
        view = self.lagdeck.lag_view
        return view.snapshot.group(self.group) if view else None

    def show_lag(self) -> None:
        g = self.current()
        header = self.query_one("#group-header", Static)
        if g is None:
            header.update(Text(f"{one_line(self.group)}: not in the latest poll (deleted, or no "
                               "committed offsets yet)", style="yellow"))
            return
        with self.app.batch_update():
            header.update(group_header(g))
            self.query_one("#partitions", KeyedTable).sync(
                [partition_row(p) for p in sorted(g.partitions,
                                                  key=lambda p: (p.topic, p.partition))]
            )
            self._members(g)
        self.query_one("#status-bar").refresh()

    def _members(self, g: GroupLag) -> None:
        note = self.query_one("#members-note", Static)
        table = self.query_one("#members", KeyedTable)
        if g.members is None:
            note.update("members and assignments: not reported by this broker "
                        "(DescribeGroups returned no member list)")
        elif not g.members:
            note.update(fmt.data(f"no active members (group state {g.state or '?'})", None))
        note.set_class(bool(g.members), "hidden")
        table.set_class(not g.members, "hidden")
        rows = []
        for m in g.members or ():
            assigned = ", ".join(f"{t}[{p}]" for t, p in m.assignments) or "—"
            rows.append(Row(m.member_id, (m.member_id, m.client_id, m.host, assigned)))
        table.sync(rows)

    def palette_commands(self) -> list[Command]:
        title = "replay: preview an offset reset" if self.lagdeck.read_only else \
            "replay: reset offsets (preview first)"
        return [(title, self.action_replay,
                 "earliest, latest, a time, an offset or a shift; dry run before anything")]

    def action_replay(self) -> None:
        from console.screens.replay import ReplayScreen

        g = self.current()
        topics = sorted({p.topic for p in g.partitions}) if g else []
        if not topics:
            self.notify(f"{self.group} has no committed offsets to reset", severity="warning")
            return
        table = self.query_one("#partitions", KeyedTable)
        key = table.current_key
        topic = key.rsplit("[", 1)[0] if key else topics[0]
        self.app.push_screen(ReplayScreen(self.group, topics, topic))
