"""What an alert is: its key, its state in the book, the notices it causes.

Plain frozen data shared by evaluation (`evaluate.py`), the store
(`book.py`), the snapshot topic (published alert states), the sinks and both
faces. A firing alert is an `AlertState` in the `FIRING` phase (what `watch
--json` lists and the alerts screen shows); an `AlertEvent` is a transition
(firing or resolved) at one moment, the notice the sinks deliver.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from collectors.alerts.rules import Severity

#: Namespace of notice ids (uuid5), so a notice keeps its id however often it is sent.
_NOTICE_NS = uuid.UUID("6f1c2a52-8d1e-4b7c-9a0e-2f4d5c6b7a81")

Value = int | float | str | None


class Phase(StrEnum):
    PENDING = "pending"
    FIRING = "firing"


class EventKind(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, order=True)
class AlertKey:
    rule: str
    group: str
    #: None for a group-wide rule (no `topic` regex)
    topic: str | None = None
    #: the rule's definition hash (`rule_identity`): an edited rule is another rule
    rule_id: str = ""

    def __str__(self) -> str:
        where = f"{self.group} on {self.topic}" if self.topic is not None else self.group
        return f"{self.rule}: {where}"


@dataclass(frozen=True)
class AlertState:
    """One pending or firing alert. A firing one is what `watch --json` lists under
    `alerts` (`fired_at` falls back to `since` there)."""

    key: AlertKey
    phase: Phase
    severity: Severity
    #: when the condition started to hold (pending since)
    since: float
    #: the last evaluation that measured this key
    seen_at: float
    fired_at: float | None = None
    value: Value = None
    threshold: Value = None
    message: str = ""
    #: a firing alert whose conditions are clear: since when (it resolves after `resolve_for`)
    clear_since: float | None = None
    #: the rules source (file) that created it; only that source resolves it when the
    #: rule is gone from it
    source: str | None = None

    @property
    def rule(self) -> str:
        return self.key.rule

    @property
    def group(self) -> str:
        return self.key.group

    @property
    def topic(self) -> str | None:
        return self.key.topic


@dataclass(frozen=True)
class AlertEvent:
    """A notice for the sinks: an alert started firing or was resolved."""

    kind: EventKind
    rule: str
    group: str
    topic: str | None
    severity: Severity
    value: Value
    threshold: Value
    message: str
    #: when this happened
    at: float
    #: when the condition started to hold
    since: float
    rule_id: str = ""
    #: the cluster id (set by whoever knows it: `watch`); part of the notice id
    cluster: str = ""

    @property
    def key(self) -> AlertKey:
        return AlertKey(self.rule, self.group, self.topic, self.rule_id)


def notice_id(event: AlertEvent) -> str:
    """A stable id per notice: the same alert's same transition always gets the same id,
    so a receiver drops a notice delivered twice (delivery is at least once)."""
    topic = "" if event.topic is None else event.topic
    name = "\x1f".join((event.cluster, event.rule, event.rule_id, event.group, topic,
                        event.kind.value, repr(round(event.since, 6))))
    return str(uuid.uuid5(_NOTICE_NS, name))


@dataclass(frozen=True)
class AlertBook:
    """Every pending and firing alert; the state carried from one evaluation to the next."""

    states: tuple[AlertState, ...] = ()
    evaluated_at: float | None = None

    def get(self, key: AlertKey) -> AlertState | None:
        return next((s for s in self.states if s.key == key), None)

    @property
    def firing(self) -> tuple[AlertState, ...]:
        return tuple(s for s in self.states if s.phase is Phase.FIRING)

    @property
    def pending(self) -> tuple[AlertState, ...]:
        return tuple(s for s in self.states if s.phase is Phase.PENDING)

    @property
    def exit_code(self) -> int:
        """0 nothing firing, 1 a warning firing, 2 a critical firing."""
        return max((a.severity.exit_code for a in self.firing), default=0)
