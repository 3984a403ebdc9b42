"""Typed confirmation: the operator types the name of what they are about to change.

Used before every mutating action (redrive, replay). In read-only mode the
input is replaced by a refusal line, so the preview is still useful but the
action cannot be applied from the UI at all.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from collectors.untrusted import block, one_line
from console.widgets.inputs import LineInput


class TypedConfirm(Vertical):
    """`Type payments.events-dlt to confirm` + an input; posts `Confirmed` on a match."""

    DEFAULT_CSS = """
    TypedConfirm { height: auto; }
    TypedConfirm .prompt { margin-top: 1; }
    """

    class Confirmed(Message):
        pass

    def __init__(self, expected: str, what: str, *, refused: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.expected = expected
        self.what = what
        self.refused = refused

    def compose(self) -> ComposeResult:
        if self.refused:
            yield Static(Text(f"🔒 {block(self.refused)}"), classes="refusal")
            return
        prompt = Text.assemble(f"To {one_line(self.what)}, type ",
                               (one_line(self.expected), "bold reverse"),
                               " and press enter:")
        yield Static(prompt, classes="prompt")
        yield LineInput(placeholder=one_line(self.expected), id="confirm-input")

    def on_mount(self) -> None:
        self.call_after_refresh(self.focus_input)

    @property
    def matched(self) -> bool:
        if self.refused:
            return False
        typed = self.query_one("#confirm-input", Input).value.strip()
        # a name with control or invisible characters is shown escaped: accept that spelling
        return typed in (self.expected, one_line(self.expected))

    def focus_input(self) -> None:
        for box in self.query("#confirm-input"):
            box.focus()

    @on(Input.Submitted, "#confirm-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.matched:
            self.post_message(self.Confirmed())
        else:
            self.notify(f"type {self.expected!r} exactly to confirm", severity="warning")
