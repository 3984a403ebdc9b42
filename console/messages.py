"""Messages that carry snapshots from worker threads to the UI.

Workers never touch widgets: they post one of these and the handlers on the
main thread own every state change. Snapshot messages replace an older one of
the same kind still in the queue (Toolong's `can_replace`), so a slow UI draws
only the latest data instead of replaying every poll it missed.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from console.data import LagView


class LagUpdated(Message):
    """A new lag poll (with trends and alert states)."""

    def __init__(self, view: LagView) -> None:
        super().__init__()
        self.view = view

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LagUpdated)


class Loaded(Message):
    """A screen's own fetch finished: `what` names it, `data` is the snapshot."""

    def __init__(self, what: str, data: Any, token: object = None) -> None:
        super().__init__()
        self.what = what
        self.data = data
        self.token = token

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Loaded) and message.what == self.what


class Progress(Message):
    """Progress of a long mutating action (redrive): counters so far."""

    def __init__(self, done: int, total: int, detail: Any = None) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.detail = detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Progress)


class ClusterProbed(Message):
    """A liveness probe's answer (`collectors.liveness.Liveness`)."""

    def __init__(self, liveness: Any) -> None:
        super().__init__()
        self.liveness = liveness

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ClusterProbed)
