"""Alerts: firing, pending and recently resolved, from the rules in the config file.

The rules are evaluated by `collectors.alerts.loop.AlertLoop` on every lag poll
(in the poll worker), the same loop `lagdeck watch` runs, so the console and
cron agree on what fires.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Static

from collectors.untrusted import block, one_line
from console import keymap as km
from console.data import AlertsView
from console.palette import Command
from console.screens.base import BaseScreen
from console.widgets import format as fmt
from console.widgets.keyed_table import Column, KeyedTable, Row

STATE_STYLE = {
    "firing": "bold white on red",
    "pending": "bold black on yellow",
    "resolved": "bold green",
}


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "—" if v is None else one_line(str(v), 40)


def render_state(state: str) -> Text:
    return Text(f" {state.upper()} ", style=STATE_STYLE.get(state, ""))


def render_severity(value: tuple[str, bool]) -> Text:
    severity, resolved = value
    if resolved:
        return Text(severity, style="dim")
    return Text(severity, style="bold red" if severity == "critical" else "yellow")  # an enum


def render_value(v: object) -> Text:
    return Text(_value(v), justify="right")


def render_message(value: tuple[str, bool]) -> Text:
    message, resolved = value
    return Text(one_line(message, 400), style="dim" if resolved else "")


COLUMNS = (
    Column("state", "State", 10, render_state),
    Column("severity", "Severity", 9, render_severity),
    Column("rule", "Rule"),
    Column("group", "Group"),
    Column("topic", "Topic"),
    Column("value", "Value", 10, render_value),
    Column("threshold", "Threshold", 10, render_value),
    Column("since", "Since", 9, fmt.clock),
    Column("message", "Message", None, render_message),
)


def alert_rows(view: AlertsView) -> list[Row]:
    rows: list[Row] = []
    for s in sorted(view.states, key=lambda s: (s.phase.value != "firing",
                                                 s.severity.value != "critical", s.key)):
        key = f"{s.key.rule}|{s.key.group}|{s.key.topic or ''}|{s.phase.value}"
        rows.append(Row(key, (
            s.phase.value, (s.severity.value, False), s.key.rule, s.key.group,
            s.key.topic or "*", s.value, s.threshold,
            s.fired_at if s.fired_at is not None else s.since, (s.message, False),
        )))
    for e in view.resolved:
        key = f"{e.rule}|{e.group}|{e.topic or ''}|resolved|{e.at}"
        rows.append(Row(key, (
            "resolved", (e.severity.value, True), e.rule, e.group, e.topic or "*",
            e.value, e.threshold, e.at, (e.message, True),
        )))
    return rows


def alerts_summary(view: AlertsView | None) -> Text | None:
    """The one-line banner of the overview: what is firing, or None when all is quiet."""
    if view is None:
        return None
    if view.error:
        return Text(f"⚠ alert rules: {one_line(view.error)}", style="bold yellow")
    firing = [s for s in view.states if s.phase.value == "firing"]
    pending = [s for s in view.states if s.phase.value == "pending"]
    if not firing and not pending:
        return None
    text = Text()
    if firing:
        text.append(f"🔔 {len(firing)} firing: ", style="bold red")
        for i, s in enumerate(firing[:4]):
            if i:
                text.append(" · ")
            text.append(one_line(s.key.rule, 80), style="bold")
            text.append(f" ({s.severity.value}) {one_line(s.key.group, 80)}")
        if len(firing) > 4:
            text.append(f" · +{len(firing) - 4} more")
    if pending:
        text.append("   " if firing else "")
        text.append(f"{len(pending)} pending", style="yellow")
    text.append("   (4: alerts)", style="dim")
    return text


class AlertsScreen(BaseScreen):
    TITLE_TEXT = "Alerts"
    MODE = "alerts"
    KEYS = km.ALERTS
    BINDINGS: ClassVar = km.bindings(km.ALERTS)

    def body(self) -> ComposeResult:
        yield Static("", id="alerts-header", classes="header-line")
        yield KeyedTable(COLUMNS, id="alerts")

    def on_mount(self) -> None:
        self.query_one("#alerts", KeyedTable).focus()
        self.show_lag()

    def alert_groups(self) -> list[str]:
        view = self.lagdeck.lag_view
        if view is None or view.alerts is None:
            return []
        return sorted({s.key.group for s in view.alerts.states})

    def palette_commands(self) -> list[Command]:
        return [(f"alerts: open {group}", partial(self.lagdeck.open_group, group),
                 "the group's partitions") for group in self.alert_groups()]

    def show_lag(self) -> None:
        view = self.lagdeck.lag_view
        header = self.query_one("#alerts-header", Static)
        if view is None:
            header.update(Text("waiting for the first poll…"))
            return
        alerts = view.alerts
        if alerts is not None and alerts.error and not alerts.rules:
            header.update(Text.assemble(("The alert rules could not be loaded: ", "bold red"),
                                        block(alerts.error)))
            self.query_one("#alerts", KeyedTable).sync([])
            return
        if alerts is None or not alerts.rules:
            header.update(Text.assemble(
                ("No alert rules configured. ", "bold"),
                "Add [[rule]] tables to the config file "
                "(name, group regex, max_lag / max_lag_seconds / min_status, for, severity); "
                "the console evaluates them on every poll, as `lagdeck watch` does.",
            ))
            self.query_one("#alerts", KeyedTable).sync([])
            return
        firing = sum(1 for s in alerts.states if s.phase.value == "firing")
        pending = len(alerts.states) - firing
        text = Text()
        text.append(f"{alerts.rules} rules", style="bold")
        if alerts.source:
            text.append(f" from {one_line(alerts.source)}", style="dim")
        text.append("  ·  ")
        text.append(f"{firing} firing", style="bold red" if firing else "green")
        text.append(f"  ·  {pending} pending", style="yellow" if pending else "dim")
        text.append(f"  ·  {len(alerts.resolved)} resolved recently", style="dim")
        if alerts.error:
            text.append(f"\n⚠ {block(alerts.error)}", style="bold yellow")
        header.update(text)
        self.query_one("#alerts", KeyedTable).sync(alert_rows(alerts))

    def action_open_group(self) -> None:
        key = self.query_one("#alerts", KeyedTable).current_key
        if key:
            self.lagdeck.open_group(key.split("|")[1])

    @on(KeyedTable.RowSelected, "#alerts")
    def _selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_open_group()
