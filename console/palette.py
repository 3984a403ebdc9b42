"""Command palette (ctrl+p): the app's navigation plus the commands of the current screen.

Posting's pattern: the palette lists `(title, callback, help)` entries for
the screen it was opened from, so it shows the actions that make sense
there. The app and every screen declare what they offer by implementing
`palette_commands()` (`OffersCommands`); the providers here only list and
match them, never reach into a screen's attributes. Mutating commands are
left out or worded as previews in read-only mode (each screen decides).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from collectors.untrusted import one_line

#: (title, what it runs, help text)
Command = tuple[str, Callable[[], object], str]


@runtime_checkable
class OffersCommands(Protocol):
    """An app or screen with palette entries."""

    def palette_commands(self) -> list[Command]: ...


class _Commands(Provider):
    def commands(self) -> list[Command]:
        return []

    async def discover(self) -> Hits:
        for title, callback, help_text in self.commands():
            title = one_line(title, 200)
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self.commands():
            title = one_line(title, 200)  # group and topic names are data
            score = matcher.match(title)
            if score > 0:
                # `highlight` parses its argument as markup: only markup-free titles
                shown = Content(title) if "[" in title else matcher.highlight(title)
                yield Hit(score, shown, callback, text=title, help=help_text)


class GlobalCommands(_Commands):
    """What the app offers everywhere: navigation and one entry per known group."""

    def commands(self) -> list[Command]:
        app = self.app
        return app.palette_commands() if isinstance(app, OffersCommands) else []


class ScreenCommands(_Commands):
    """What the screen the palette was opened from offers."""

    def commands(self) -> list[Command]:
        screen = self.screen
        return screen.palette_commands() if isinstance(screen, OffersCommands) else []
