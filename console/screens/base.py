"""What every full screen shares: the status bar on top, the footer below, `esc` back."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker

from collectors import untrusted
from console import keymap as km
from console.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from console.app import LagdeckApp


class BaseScreen(Screen):
    """A full screen of the console. Subclasses compose `body()` and draw in `show_lag()`."""

    TITLE_TEXT = ""
    #: which tab of the status bar this screen belongs to
    MODE = "overview"
    #: shown after the tab name (sub-screens such as one group)
    SUBTITLE = ""

    @property
    def lagdeck(self) -> LagdeckApp:
        return cast("LagdeckApp", self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.lagdeck.worker_state_changed(event)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.SUBTITLE, self.MODE, id="status-bar")
        yield Static("", id="banner", classes="banner hidden")
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def key(self, binding_id: str) -> str:
        """The key bound to `binding_id` now, as the footer shows it (hints follow the
        `[keymap]`, so a remapped key is never advertised under its old name)."""
        return km.display_key(self.app, binding_id, getattr(self.app, "keymap", {}))

    def on_screen_resume(self) -> None:
        self.show_lag()

    def show_lag(self) -> None:
        """Draw from `app.lag_view`; called on each poll while this screen is on top."""

    def banner(self, text: str | None, severity: str = "error") -> None:
        """A line under the status bar (errors, firing alerts); None hides it."""
        widget = self.query_one("#banner", Static)
        widget.set_classes(f"banner {severity}" + ("" if text else " hidden"))
        widget.update(Text(untrusted.block(text)) if text else "")  # errors carry names

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        elif self.app.current_mode != "overview":
            self.app.switch_mode("overview")
