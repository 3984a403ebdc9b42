"""Messages that carry snapshots from worker threads to the UI: one class per result.

Workers never touch widgets: they post one of these and the `on_<message>`
handlers on the main thread own every state change (Harlequin's typed result
messages). Each message carries a frozen snapshot, so a handler can keep it
without copying. Snapshot messages replace an older one of the same kind
still in the queue (Toolong's `can_replace`), so a slow UI draws only the
latest data instead of replaying every poll it missed; results of mutating
actions (a redrive or replay that ran) are never replaced.
"""

from __future__ import annotations

from textual.message import Message

from collectors.liveness import Liveness
from console.data import DlqPageView, LagView
from dlq.discovery import DlqTopicSummary
from dlq.redrive import RedriveProgress, RedriveResult
from dlq.replay import ReplayPlan, ReplayResult
from tracing.flows import FlowMap
from tracing.timeline import Timeline


class _Latest(Message):
    """A snapshot: a newer one of the same class replaces it while it waits in the queue."""

    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


class LagUpdated(_Latest):
    """A new lag poll (with trends and alert states)."""

    def __init__(self, view: LagView) -> None:
        super().__init__()
        self.view = view


class ClusterProbed(_Latest):
    """A liveness probe's answer."""

    def __init__(self, liveness: Liveness) -> None:
        super().__init__()
        self.liveness = liveness


class DeadLetterTopicsLoaded(_Latest):
    """The dead-letter topics with depth and top errors."""

    def __init__(self, topics: tuple[DlqTopicSummary, ...]) -> None:
        super().__init__()
        self.topics = topics


class DeadLetterPageLoaded(_Latest):
    """One page of a dead-letter topic, read for `topic` with the filter `where`
    (the screen drops a page read for a topic or filter it no longer shows)."""

    def __init__(self, page: DlqPageView, topic: str, where: tuple[str, ...]) -> None:
        super().__init__()
        self.page = page
        self.topic = topic
        self.where = where


class TimelineLoaded(_Latest):
    """One order's timeline, looked up for `query`."""

    def __init__(self, timeline: Timeline, query: str) -> None:
        super().__init__()
        self.timeline = timeline
        self.query = query


class FlowsLoaded(_Latest):
    """The flow of all orders."""

    def __init__(self, flows: FlowMap) -> None:
        super().__init__()
        self.flows = flows


class RedriveProgressed(_Latest):
    """Counters of a redrive (or its preview) so far."""

    def __init__(self, progress: RedriveProgress) -> None:
        super().__init__()
        self.progress = progress


class RedrivePlanned(Message):
    """A redrive preview (dry run): what would move."""

    def __init__(self, result: RedriveResult) -> None:
        super().__init__()
        self.result = result


class RedriveDone(Message):
    """A redrive that ran: what moved."""

    def __init__(self, result: RedriveResult) -> None:
        super().__init__()
        self.result = result


class ReplayPlanned(Message):
    """An offset-reset preview (dry run)."""

    def __init__(self, plan: ReplayPlan) -> None:
        super().__init__()
        self.plan = plan


class ReplayDone(Message):
    """An offset reset that ran."""

    def __init__(self, result: ReplayResult) -> None:
        super().__init__()
        self.result = result
