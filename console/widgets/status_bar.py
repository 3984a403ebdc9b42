"""The top line of every screen: where we are, which cluster, whether it answers.

The connection indicator is what tells an operator at 3 a.m. whether the
numbers below are live or stale: green when the last poll succeeded, yellow
while (re)connecting with the next retry time, and the READ-ONLY badge when
mutating actions are disabled.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from collectors.untrusted import one_line
from console.widgets.format import clock


@dataclass(frozen=True)
class Connection:
    """What the status bar shows about the cluster link."""

    state: str = "connecting"  # "connecting" | "connected" | "reconnecting"
    detail: str = ""
    last_ok: float | None = None
    retry_in: float | None = None


#: (mode, binding id, label) of the tab strip, in key order.
TABS = (
    ("overview", "app.overview", "Groups"),
    ("dead-letters", "app.dead_letters", "Dead letters"),
    ("timeline", "app.timeline", "Timeline"),
    ("alerts", "app.alerts", "Alerts"),
    ("flows", "app.flows", "Flows"),
)


class StatusBar(Static):
    """`lagdeck [1 Groups] 2 Dead letters … │ 127.0.0.1:9092 │ ● connected 14:03:22`.

    The tab strip names the screens with their keys (after remapping), so a new
    user sees where they are and how to get elsewhere without opening help.
    """

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    connection: reactive[Connection] = reactive(Connection, always_update=True)

    def __init__(self, title: str = "", mode: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.mode = mode

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._on_connection, init=True)

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection

    def render(self) -> Text:
        app = self.app
        text = Text()
        text.append("lagdeck ", style="bold")
        if getattr(app, "read_only", False):  # first, so a narrow terminal never hides it
            text.append(" READ-ONLY ", style="bold black on yellow")
            text.append(" ")
        keymap = getattr(app, "keymap", {})
        for mode, binding_id, label in TABS:
            key = keymap.get(binding_id, "12345"[[t[0] for t in TABS].index(mode)])
            current = mode == self.mode
            text.append(f" {key} {label} ", style="bold reverse" if current else "dim")
            if current and self.title:
                text.append(f"› {one_line(self.title, 80)} ", style="bold cyan")
        text.append(" │  ", style="dim")
        text.append(getattr(app, "cluster_label", ""), style="")
        text.append("  │  ", style="dim")
        c = self.connection
        if c.state == "connected":
            text.append("● connected", style="bold green")
            text.append(f"  {clock(c.last_ok)}", style="dim")
        elif c.state == "reconnecting":
            text.append("● reconnecting", style="bold yellow")
            if c.retry_in is not None:
                text.append(f" in {c.retry_in:.0f}s", style="yellow")
            if c.last_ok is not None:
                text.append(f"  (data from {clock(c.last_ok)})", style="dim")
        else:
            text.append("○ connecting…", style="yellow")
        return text
