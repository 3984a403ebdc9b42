"""Text input that follows the app's cursor-blink setting (off for snapshot tests).

Its value is shown as typed, except that control and invisible characters are
escaped (`collectors.untrusted`): ids followed from a record land in these boxes,
and Textual would write an ESC in a value straight to the terminal.
"""

from __future__ import annotations

from textual.widgets import Input

from collectors.untrusted import one_line


class LineInput(Input):
    def on_mount(self) -> None:
        if not getattr(self.app, "cursor_blink", True):
            self.cursor_blink = False

    def validate_value(self, value: str) -> str:
        return value if value.isprintable() else one_line(value)
