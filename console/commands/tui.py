"""`lagdeck` with no command (or `lagdeck tui`): the Textual console."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet

run = not_yet("the TUI")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the console (the default without a command)")
    p.set_defaults(run=run)
