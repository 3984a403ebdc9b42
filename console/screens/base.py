"""What every full screen shares: the status bar on top, the footer below, `esc` back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker

from collectors import untrusted
from console import keymap as km
from console.palette import Command, ScreenCommands
from console.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from console.app import LagdeckApp


def console_app(app: App[Any]) -> LagdeckApp:
    """`app` as the console it is: screens reach the app's navigation (`open_group`,
    `follow`, `show_dead_letters`) and data (`lag_view`, `source`) through this, typed."""
    from console.app import LagdeckApp  # the app imports every screen

    if not isinstance(app, LagdeckApp):
        raise TypeError(f"the lagdeck screens run inside LagdeckApp, not {type(app).__name__}")
    return app


@runtime_checkable
class ReportsWorkerErrors(Protocol):
    """A screen that shows its workers' failures itself (a banner, a line in a dialog)
    instead of the app's toast; True means handled."""

    def worker_failed(self, worker: Worker[Any], line: str) -> bool: ...


class BaseScreen(Screen[None]):
    """A full screen of the console. Subclasses compose `body()` and draw in `show_lag()`.

    What the app may ask of any screen is declared here, not looked up by name:
    `show_lag()` (a new lag poll arrived), `reload()` (refresh the screen's own
    data now: ctrl+r, or the cluster answers again) and `palette_commands()`.
    """

    TITLE_TEXT = ""
    #: which tab of the status bar this screen belongs to
    MODE = "overview"
    #: shown after the tab name (sub-screens such as one group)
    SUBTITLE = ""
    #: the screen's own bindings, listed by the help screen
    KEYS: tuple[km.Key, ...] = ()
    COMMANDS: ClassVar = {ScreenCommands}

    @property
    def lagdeck(self) -> LagdeckApp:
        return console_app(self.app)

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
        return km.display_key(self.app, binding_id, self.lagdeck.keymap)

    def on_screen_resume(self) -> None:
        self.show_lag()

    def show_lag(self) -> None:
        """Draw from `app.lag_view`; called on each poll while this screen is on top."""

    def reload(self) -> None:
        """Fetch this screen's own data again now (screens drawn from the lag poll alone
        have none: the app polls lag itself)."""

    def palette_commands(self) -> list[Command]:
        """The palette entries of this screen (ctrl+p), besides the app-wide ones."""
        return []

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
