"""Text input that follows the app's cursor-blink setting (off for snapshot tests)."""

from __future__ import annotations

from textual.widgets import Input


class LineInput(Input):
    def on_mount(self) -> None:
        if not getattr(self.app, "cursor_blink", True):
            self.cursor_blink = False
