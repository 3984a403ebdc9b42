"""Alert evaluation over lag snapshots: pending -> firing -> resolved, as pure functions.

`evaluate(rules, snapshot, book)` returns the next `AlertBook` and the
notices to send. It holds no clock and does no I/O, so the TUI, `watch` and
cron runs of `watch --once` share it; the book is persisted between runs with
`AlertStore` (a small JSON file under the state directory) so that `for`
works across processes.

Semantics, per (rule, group) or, when the rule names a topic regex, per
(rule, group, topic):
- a rule *breaches* when any of its conditions holds: lag above `max_lag`,
  time lag above `max_lag_seconds`, status at or worse than `min_status`;
- a breach starts a *pending* alert; once it has held for `for` seconds the
  alert *fires* (one notice); a breach that goes away while pending is dropped
  silently;
- a firing alert stays firing, without new notices (de-duplicated), until
  every condition has been back under `threshold * (1 - hysteresis)` for
  `resolve_for` (default: the rule's `for`): lag hovering at the threshold,
  or dipping to zero between two bursts, therefore does not flap; then one
  *resolved* notice;
- unknown values (lag not measurable, a group that could not be read) never
  fire and never resolve: the state is held until the next good reading.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere two concurrent watchers may both send a notice
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from collectors.logs import get_logger
from collectors.paths import state_dir
from collectors.rules import Rule, Severity
from collectors.snapshots import GroupLag, LagSnapshot, PartitionLag, Status

#: A pending alert whose last sighting is older than this (and than 3x its `for`)
#: restarts its clock: the condition may have cleared while nobody looked.
PENDING_GAP = 900.0

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

    def __str__(self) -> str:
        where = f"{self.group} on {self.topic}" if self.topic is not None else self.group
        return f"{self.rule}: {where}"


@dataclass(frozen=True)
class Measurement:
    """What a rule looks at for one key."""

    lag: int | None
    lag_seconds: float | None
    status: Status


@dataclass(frozen=True)
class Condition:
    field: str  # "max_lag" | "max_lag_seconds" | "min_status"
    value: Value
    threshold: Value
    #: None when the value is unknown
    breached: bool | None
    #: still above the resolve level (threshold lowered by the hysteresis)
    hot: bool | None


@dataclass(frozen=True)
class AlertState:
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


@dataclass(frozen=True)
class Alert:
    """A firing alert, as `watch --json` shows it."""

    rule: str
    group: str
    topic: str | None
    severity: Severity
    value: Value
    threshold: Value
    message: str
    since: float
    fired_at: float


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

    @property
    def key(self) -> AlertKey:
        return AlertKey(self.rule, self.group, self.topic)


@dataclass(frozen=True)
class AlertBook:
    """Every pending and firing alert; the state carried from one evaluation to the next."""

    states: tuple[AlertState, ...] = ()
    evaluated_at: float | None = None

    def get(self, key: AlertKey) -> AlertState | None:
        return next((s for s in self.states if s.key == key), None)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(_alert(s) for s in self.states if s.phase is Phase.FIRING)

    @property
    def pending(self) -> tuple[AlertState, ...]:
        return tuple(s for s in self.states if s.phase is Phase.PENDING)

    @property
    def exit_code(self) -> int:
        """0 nothing firing, 1 a warning firing, 2 a critical firing."""
        return max((a.severity.exit_code for a in self.firing), default=0)


@dataclass(frozen=True)
class Evaluation:
    book: AlertBook
    events: tuple[AlertEvent, ...] = ()

    @property
    def firing(self) -> tuple[Alert, ...]:
        return self.book.firing

    @property
    def exit_code(self) -> int:
        return self.book.exit_code


# ---------------------------------------------------------------------------- measuring


def _worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


def measure_group(group: GroupLag) -> Measurement:
    known = [p.lag for p in group.partitions if p.lag is not None]
    unreadable = group.error is not None and not known
    return Measurement(
        lag=None if unreadable else group.total_lag,
        lag_seconds=group.max_lag_seconds,
        status=group.status,
    )


def measure_partitions(partitions: Sequence[PartitionLag]) -> Measurement:
    lags = [p.lag for p in partitions if p.lag is not None]
    seconds = [p.lag_seconds for p in partitions if p.lag_seconds is not None]
    return Measurement(
        lag=sum(lags) if lags else None,
        lag_seconds=max(seconds) if seconds else None,
        status=_worst(p.status for p in partitions),
    )


def observe(rule: Rule, snapshot: LagSnapshot) -> dict[AlertKey, Measurement]:
    """The keys `rule` covers in `snapshot`, each with its measurement."""
    out: dict[AlertKey, Measurement] = {}
    for group in snapshot.groups:
        if not rule.matches_group(group.group):
            continue
        if rule.topic is None:
            out[AlertKey(rule.name, group.group)] = measure_group(group)
            continue
        by_topic: dict[str, list[PartitionLag]] = {}
        for p in group.partitions:
            if rule.matches_topic(p.topic):
                by_topic.setdefault(p.topic, []).append(p)
        for topic, parts in by_topic.items():
            out[AlertKey(rule.name, group.group, topic)] = measure_partitions(parts)
    return out


def conditions(rule: Rule, m: Measurement) -> tuple[Condition, ...]:
    """The rule's configured conditions judged against one measurement."""
    keep = 1.0 - rule.hysteresis
    out: list[Condition] = []
    if rule.max_lag is not None:
        known = m.lag is not None
        out.append(Condition(
            "max_lag", m.lag, rule.max_lag,
            breached=m.lag > rule.max_lag if known else None,
            hot=m.lag > rule.max_lag * keep if known else None,
        ))
    if rule.max_lag_seconds is not None:
        known = m.lag_seconds is not None
        seconds = round(m.lag_seconds, 3) if m.lag_seconds is not None else None
        out.append(Condition(
            "max_lag_seconds", seconds, rule.max_lag_seconds,
            breached=m.lag_seconds > rule.max_lag_seconds if known else None,
            hot=m.lag_seconds > rule.max_lag_seconds * keep if known else None,
        ))
    if rule.min_status is not None:
        bad = m.status.severity >= rule.min_status.severity
        out.append(Condition("min_status", m.status.value, rule.min_status.value, bad, bad))
    return tuple(out)


def _describe(key: AlertKey, cond: Condition, *, resolved: bool = False) -> str:
    where = f"{key.group} on {key.topic}" if key.topic is not None else key.group
    if cond.field == "max_lag":
        what = f"lag {cond.value} messages"
        limit = f"{cond.threshold} messages"
    elif cond.field == "max_lag_seconds":
        what = f"lag {_seconds(cond.value)}" if cond.value is not None else "lag unknown"
        limit = _seconds(cond.threshold)
    else:
        what = f"status {cond.value}"
        limit = f"{cond.threshold} or worse"
    if resolved:
        return f"{where}: resolved, {what} (threshold {limit})"
    return f"{where}: {what}, threshold {limit}"


def _seconds(value: Value) -> str:
    return f"{round(float(value), 2):g}s" if isinstance(value, int | float) else str(value)


def _pick(conds: Sequence[Condition], attr: str) -> Condition | None:
    """The first condition with `attr` true, else the first with a known value."""
    hit = next((c for c in conds if getattr(c, attr)), None)
    return hit or next((c for c in conds if c.breached is not None), None)


# ---------------------------------------------------------------------------- evaluating


def evaluate(
    rules: Sequence[Rule],
    snapshot: LagSnapshot,
    book: AlertBook | None = None,
    now: float | None = None,
    *,
    pending_gap: float = PENDING_GAP,
) -> Evaluation:
    """One evaluation step; `now` defaults to the snapshot's time."""
    book = book or AlertBook()
    now = snapshot.taken_at if now is None else now
    by_name = {r.name: r for r in rules}
    previous = {s.key: s for s in book.states}
    states: list[AlertState] = []
    events: list[AlertEvent] = []

    for rule in rules:
        for key, m in observe(rule, snapshot).items():
            state = previous.pop(key, None)
            conds = conditions(rule, m)
            if state is not None and state.phase is Phase.FIRING:
                _judge_firing(rule, key, state, conds, now, states, events)
            else:
                _judge_quiet(rule, key, state, conds, now, pending_gap, states, events)

    partial = bool(snapshot.errors)
    errored = {g.group for g in snapshot.groups if g.error is not None}
    for key, state in previous.items():
        rule = by_name.get(key.rule)
        if rule is not None and (partial or key.group in errored):
            states.append(state)  # could not look: hold
            continue
        if state.phase is Phase.FIRING:
            reason = "rule no longer configured" if rule is None else "no longer reported"
            where = f"{key.group} on {key.topic}" if key.topic is not None else key.group
            events.append(_event(EventKind.RESOLVED, state, now, f"{where}: resolved, {reason}"))

    states.sort(key=lambda s: s.key)
    return Evaluation(AlertBook(tuple(states), now), tuple(events))


def _judge_quiet(rule: Rule, key: AlertKey, state: AlertState | None,
                 conds: Sequence[Condition], now: float, pending_gap: float,
                 states: list[AlertState], events: list[AlertEvent]) -> None:
    breach = next((c for c in conds if c.breached), None)
    if breach is None:
        return  # not breaching: no alert (a pending one is dropped without a notice)
    since = now
    if state is not None and now - state.seen_at <= max(pending_gap, 3 * rule.for_seconds):
        since = min(state.since, now)
    new = AlertState(
        key=key, phase=Phase.PENDING, severity=rule.severity, since=since, seen_at=now,
        value=breach.value, threshold=breach.threshold, message=_describe(key, breach),
    )
    if now - since >= rule.for_seconds:
        new = replace(new, phase=Phase.FIRING, fired_at=now)
        events.append(_event(EventKind.FIRING, new, now, new.message))
    states.append(new)


def _judge_firing(rule: Rule, key: AlertKey, state: AlertState,
                  conds: Sequence[Condition], now: float,
                  states: list[AlertState], events: list[AlertEvent]) -> None:
    hot = _pick(conds, "hot")
    if hot is None:
        states.append(replace(state, seen_at=now))  # nothing measurable: hold
        return
    current = replace(state, seen_at=now, severity=rule.severity, value=hot.value,
                      threshold=hot.threshold, message=_describe(key, hot))
    if hot.hot:
        states.append(replace(current, clear_since=None))
        return
    clear_since = state.clear_since if state.clear_since is not None else now
    if now - clear_since < rule.resolve_after:
        states.append(replace(current, clear_since=clear_since))  # clear, not for long enough
        return
    events.append(_event(EventKind.RESOLVED, current, now,
                         _describe(key, hot, resolved=True)))


def _event(kind: EventKind, state: AlertState, now: float, message: str) -> AlertEvent:
    return AlertEvent(
        kind=kind, rule=state.key.rule, group=state.key.group, topic=state.key.topic,
        severity=state.severity, value=state.value, threshold=state.threshold,
        message=message, at=now, since=state.since,
    )


def _alert(state: AlertState) -> Alert:
    return Alert(
        rule=state.key.rule, group=state.key.group, topic=state.key.topic,
        severity=state.severity, value=state.value, threshold=state.threshold,
        message=state.message, since=state.since,
        fired_at=state.fired_at if state.fired_at is not None else state.since,
    )


# ---------------------------------------------------------------------------- persistence

_FORMAT = 1


def book_to_dict(book: AlertBook) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "evaluated_at": book.evaluated_at,
        "alerts": [
            {
                "rule": s.key.rule, "group": s.key.group, "topic": s.key.topic,
                "phase": s.phase.value, "severity": s.severity.value, "since": s.since,
                "seen_at": s.seen_at, "fired_at": s.fired_at, "value": s.value,
                "threshold": s.threshold, "message": s.message, "clear_since": s.clear_since,
            }
            for s in book.states
        ],
    }


def book_from_dict(data: Mapping[str, Any]) -> AlertBook:
    """Raises ValueError/KeyError/TypeError on a malformed document."""
    if data.get("format") != _FORMAT:
        raise ValueError(f"unknown alert state format {data.get('format')!r}")
    states = []
    for item in data["alerts"]:
        states.append(AlertState(
            key=AlertKey(str(item["rule"]), str(item["group"]),
                         None if item["topic"] is None else str(item["topic"])),
            phase=Phase(item["phase"]),
            severity=Severity(item["severity"]),
            since=float(item["since"]),
            seen_at=float(item["seen_at"]),
            fired_at=None if item["fired_at"] is None else float(item["fired_at"]),
            value=item["value"],
            threshold=item["threshold"],
            message=str(item["message"]),
            clear_since=None if item.get("clear_since") is None else float(item["clear_since"]),
        ))
    evaluated = data.get("evaluated_at")
    return AlertBook(tuple(states), None if evaluated is None else float(evaluated))


class AlertStore:
    """The alert book on disk, so `watch --once` from cron remembers pending-since times.

    Writes are atomic (temp file + rename); an unreadable file is logged and
    treated as empty rather than stopping the watch.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else state_dir() / "alerts.json"
        self._log = get_logger("alerts")

    def load(self) -> AlertBook:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return AlertBook()
        except OSError as exc:
            self._log.warning("cannot read alert state %s: %s", self.path, exc)
            return AlertBook()
        try:
            return book_from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._log.warning("ignoring malformed alert state %s: %s", self.path, exc)
            return AlertBook()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock for a load-evaluate-save, so two watchers do not double-notify."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def save(self, book: AlertBook) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".alerts-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(book_to_dict(book), fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
