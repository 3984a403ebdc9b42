"""The top line of every screen: where we are, which cluster, whether it answers.

The connection indicator is what tells an operator at 3 a.m. whether the
numbers below are live or stale: green when the last poll succeeded, red
"unreachable" with the age of the data still shown when the liveness probe
gets no answer, yellow while (re)connecting with the next retry time, and the
READ-ONLY badge when mutating actions are disabled.

On a narrow terminal (a split pane on call) the tab strip shrinks to its keys
and the cluster label is shortened first: the connection state is never cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rich.text import Text
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Static

from collectors.untrusted import one_line
from console.widgets.format import clock, seconds


@dataclass(frozen=True)
class Connection:
    """What the status bar shows about the cluster link."""

    #: "connecting" | "connected" | "reconnecting" (a refresh failed, the cluster
    #: answers) | "unreachable" (the probe gets no answer) | "recovering" (it answers
    #: again; live once a complete refresh succeeds)
    state: str = "connecting"
    detail: str = ""
    last_ok: float | None = None
    retry_in: float | None = None
    #: when the outage was noticed (epoch seconds)
    since: float | None = None

    @property
    def live(self) -> bool:
        return self.state == "connected"


def connection_text(c: Connection, now: float | None = None) -> Text:
    """The connection indicator alone (pure: `now` is the clock)."""
    now = time.time() if now is None else now
    text = Text()
    age = (f"data {seconds(max(0.0, now - c.last_ok))} old" if c.last_ok is not None
           else "no data yet")
    if c.state == "connected":
        text.append("● connected", style="bold green")
        text.append(f"  {clock(c.last_ok)}", style="dim")
    elif c.state == "unreachable":
        text.append("✕ unreachable", style="bold red")
        text.append(f" · {age}", style="red")
        if c.retry_in is not None:
            text.append(f" · retry {c.retry_in:.0f}s", style="dim")
    elif c.state == "recovering":
        text.append("◐ reconnecting…", style="bold yellow")
        text.append(f" · {age}", style="yellow")
    elif c.state == "reconnecting":
        text.append("● reconnecting", style="bold yellow")
        if c.retry_in is not None:
            text.append(f" in {c.retry_in:.0f}s", style="yellow")
        if c.last_ok is not None:
            text.append(f"  (data from {clock(c.last_ok)})", style="dim")
    else:
        text.append("○ connecting…", style="yellow")
    return text


#: (mode, binding id, label) of the tab strip, in key order.
TABS = (
    ("overview", "app.overview", "Groups"),
    ("dead-letters", "app.dead_letters", "Dead letters"),
    ("timeline", "app.timeline", "Timeline"),
    ("alerts", "app.alerts", "Alerts"),
    ("flows", "app.flows", "Flows"),
)


@runtime_checkable
class Identity(Protocol):
    """What the status bar shows of the app it runs in (`LagdeckApp` has it; any other
    host app, e.g. a test harness, gets a bar without a label)."""

    @property
    def cluster_label(self) -> str: ...

    @property
    def read_only(self) -> bool: ...

    @property
    def keymap(self) -> dict[str, str]: ...


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
        self._ticker: Timer | None = None

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._on_connection, init=True)
        self._ticker = self.set_interval(1.0, self._tick, name="data age")

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection

    def on_unmount(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def _tick(self) -> None:
        if not self.connection.live:  # the data's age grows while the cluster is away
            self.refresh()

    def render(self) -> Text:
        app = self.app if isinstance(self.app, Identity) else None
        head = Text()
        head.append("lagdeck ", style="bold")
        if app is not None and app.read_only:  # first, so a narrow terminal never hides it
            head.append(" READ-ONLY ", style="bold black on yellow")
            head.append(" ")
        state = connection_text(self.connection)
        label = app.cluster_label if app is not None else ""
        room = self.size.width - 2 if self.size.width else 10**6
        # narrower and narrower: other tabs' names go, then the cluster label is cut,
        # then the sub-screen title; the connection state always stays
        for compact, titled in ((False, True), (True, True), (True, False)):
            tabs = self._tabs(compact, titled)
            fixed = head.cell_len + tabs.cell_len + 4 + 5 + state.cell_len
            if fixed + len(label) <= room:
                break
            if fixed + min(len(label), 12) <= room:
                break
        keep = max(0, room - fixed)
        if keep < len(label):
            label = label[:keep - 1] + "…" if keep > 0 else ""
        text = Text()
        text.append_text(head)
        text.append_text(tabs)
        text.append(" │  ", style="dim")
        text.append(label, style="")
        text.append("  │  ", style="dim")
        text.append_text(state)
        return text

    def _tabs(self, compact: bool, titled: bool = True) -> Text:
        """The tab strip; compact: only the current tab keeps its name."""
        text = Text()
        keymap = self.app.keymap if isinstance(self.app, Identity) else {}
        for mode, binding_id, label in TABS:
            key = keymap.get(binding_id, "12345"[[t[0] for t in TABS].index(mode)])
            current = mode == self.mode
            if compact and not current:
                text.append(f" {key} ", style="dim")
                continue
            text.append(f" {key} {label} ", style="bold reverse" if current else "dim")
            if current and self.title and titled:
                text.append(f"› {one_line(self.title, 80)} ", style="bold cyan")
        return text
