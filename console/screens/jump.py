"""`:` — k9s-style jump: type where to go and press enter.

    :overview  :groups          the consumer groups
    :group payment-service      one group
    :dlq [TOPIC]                dead letters (optionally one topic)
    :trace ORDER-ID             the timeline of an order / correlation / trace id
    :alerts                     firing, pending and resolved alerts
    :quit
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static

from console import keymap as km
from console.screens.base import console_app
from console.widgets.inputs import LineInput

WORDS = ("overview", "groups", "group ", "dlq ", "dead-letters", "trace ", "timeline ",
         "alerts", "flows", "quit")


def parse_jump(text: str) -> tuple[str, str]:
    """`(target, argument)` from what the operator typed; target "" when unknown."""
    word, _, arg = text.strip().lstrip(":").partition(" ")
    word, arg = word.lower(), arg.strip()
    aliases = {
        "overview": "overview", "groups": "overview", "lag": "overview", "o": "overview",
        "group": "group", "g": "group",
        "dlq": "dlq", "dead-letters": "dlq", "deadletters": "dlq", "d": "dlq",
        "trace": "trace", "timeline": "trace", "order": "trace", "t": "trace",
        "alerts": "alerts", "a": "alerts",
        "flows": "flows", "flow": "flows", "f": "flows",
        "quit": "quit", "q": "quit",
    }
    return aliases.get(word, ""), arg


class JumpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = km.bindings(km.JUMP)

    def compose(self) -> ComposeResult:
        with Vertical(id="jump-box", classes="dialog"):
            yield Static(":overview  :group NAME  :dlq [TOPIC]  :trace ID  :alerts  :quit",
                         classes="dim")
            yield LineInput(placeholder="jump to…", id="jump-input",
                        suggester=SuggestFromList(self._suggestions(), case_sensitive=False))

    def _suggestions(self) -> list[str]:
        out = list(WORDS)
        view = console_app(self.app).lag_view
        if view is not None:
            out += [f"group {g.group}" for g in view.snapshot.groups]
        return out

    @on(Input.Submitted, "#jump-input")
    def _go(self, event: Input.Submitted) -> None:
        target, arg = parse_jump(event.value)
        app = console_app(self.app)
        self.dismiss()  # always: an open jump box would swallow the keys that follow
        if not target:
            app.notify(f"unknown jump {event.value!r}: try :group NAME, :trace ID, :dlq, "
                       ":alerts", severity="warning")
            return
        if target == "overview":
            app.switch_mode("overview")
        elif target == "group":
            if arg:
                app.open_group(arg)
            else:
                app.switch_mode("overview")
        elif target == "dlq":
            app.show_dead_letters(arg or None)
        elif target == "trace":
            if arg:
                app.follow(arg)
            else:
                app.switch_mode("timeline")
        elif target == "alerts":
            app.switch_mode("alerts")
        elif target == "flows":
            app.switch_mode("flows")
        elif target == "quit":
            app.exit()
