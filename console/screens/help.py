"""`?`: the keys of the screen you are on and the ones that work everywhere.

Keys are shown as currently bound, after any `[keymap]` remapping, so the
help never lies about a key the operator moved.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from console import keymap as km
from console.screens.base import BaseScreen, console_app

CONVENTIONS = (
    ("/", "filter the table you are on (groups: substring or regex; dead letters: "
          "error_class=X, key~text, header.NAME=V)"),
    ("esc", "back: close a dialog, clear a filter, or leave a screen"),
    (":", "jump: ':group NAME', ':trace ORDER-ID', ':dlq TOPIC', ':alerts', ':overview'"),
    ("ctrl+p", "command palette: every action of this screen, searchable"),
    ("enter", "open the row under the cursor"),
)

MUTATING = {"group.replay", "dlq.redrive", "timeline.redrive"}
#: the remap the help shows as an example; it must be one the config check accepts
#: (ctrl+r was refused: it is "refresh now" on every screen)
REMAP_EXAMPLE = ("dlq.redrive", "f2")


def key_text(app, key: km.Key, keymap: dict[str, str]) -> str:
    if key.id in keymap:
        return app.get_key_display(Binding(keymap[key.id].split(",")[0], ""))
    return key.key_display or app.get_key_display(Binding(key.key, ""))


class HelpScreen(ModalScreen[None]):
    """A modal over the current screen; any of `esc`, `q`, `?` closes it."""

    BINDINGS: ClassVar = km.bindings(km.HELP)

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(self._render_help(), id="help-text")

    def _render_help(self) -> Table:
        app = console_app(self.app)
        keymap = app.keymap
        read_only = app.read_only
        outer = Table.grid(padding=(0, 0))
        under = self.under if isinstance(self.under, BaseScreen) else None
        title = (under.TITLE_TEXT if under else "") or type(self.under).__name__
        outer.add_row(Text(f"Keys — {title}", style="bold"))
        outer.add_row(self._keys_table(under.KEYS if under else (), keymap, read_only))
        outer.add_row(Text("\nEverywhere", style="bold"))
        outer.add_row(self._keys_table(km.APP, keymap, read_only))
        outer.add_row(Text("\nConventions", style="bold"))
        conv = Table.grid(padding=(0, 2))
        for key, text in CONVENTIONS:
            conv.add_row(Text(key, style="bold cyan"), text)
        outer.add_row(conv)
        if read_only:
            outer.add_row(Text("\nREAD-ONLY mode: redrive and replay show their preview "
                               "but cannot be applied.", style="bold yellow"))
        binding, key = REMAP_EXAMPLE
        where = f"the [keymap] section of the config file, e.g.  \"{binding}\" = \"{key}\""
        outer.add_row(Text(f"\nRemap any key by its id in {where}", style="dim"))
        outer.add_row(Text("esc closes this help", style="dim"))
        return outer

    def rows(self, keys: tuple[km.Key, ...]) -> list[tuple[str, str, str]]:
        """(key as bound now, what it does, binding id) for `keys`."""
        app = console_app(self.app)
        keymap, read_only = app.keymap, app.read_only
        out = []
        for key in keys:
            label = key.description.rstrip("…")
            if read_only and key.id in MUTATING:
                label += " (preview only: read-only)"
            out.append((key_text(self.app, key, keymap), label, key.id))
        return out

    def _keys_table(self, keys: tuple[km.Key, ...], keymap: dict[str, str],
                    read_only: bool) -> Table:
        table = Table.grid(padding=(0, 2))
        for key, label, binding_id in self.rows(keys):
            table.add_row(Text(key, style="bold cyan"), label, Text(binding_id, style="dim"))
        return table
