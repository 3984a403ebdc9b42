"""Alert evaluation over lag snapshots: pending -> firing -> resolved, as pure functions.

`evaluate(rules, snapshot, book)` returns the next `AlertBook` and the
notices to send. It holds no clock and does no I/O, so the TUI, `watch` and
cron runs of `watch --once` share it (through `collectors.alerts.loop`); the
book is persisted between runs with `collectors.alerts.book.AlertStore` (a
small JSON file under the state directory) so that `for` works across
processes.

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

Whose alert is it (docs/alerts.md): a state belongs to one rule identity
(name plus a hash of the definition) and remembers the rules source that
created it; the store keeps one book per cluster id. An evaluation only
touches the states of its own rules and its own source, so two rules files,
or two clusters, sharing a state directory never resolve each other's
alerts. lagdeck's own groups (`lagdeck-redrive.*`) are left out unless a
rule's group regex names them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from collectors.alerts.rules import Rule
from collectors.alerts.state import (
    AlertBook,
    AlertEvent,
    AlertKey,
    AlertState,
    EventKind,
    Phase,
    Value,
)
from collectors.own_groups import OWN_GROUP_PREFIXES, is_own_group
from collectors.snapshots import GroupLag, LagSnapshot, PartitionLag, Status

# lagdeck's own groups (redrive progress, `collectors.own_groups`) are not alerted on
# unless a rule's group regex spells the prefix out (`names_own_groups`).
#: States of another rules source not evaluated for this long are forgotten (a file
#: that moved or stopped being run), so the book does not grow without bound.
FOREIGN_EXPIRY = 7 * 86400.0
#: A pending alert whose last sighting is older than this (and than 3x its `for`)
#: restarts its clock: the condition may have cleared while nobody looked.
PENDING_GAP = 900.0


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
class Evaluation:
    book: AlertBook
    events: tuple[AlertEvent, ...] = ()
    #: the rule ids evaluated (None: every alert in the book). The book also carries the
    #: alerts of other rules files, untouched; they are not this run's to report: a cron
    #: job of b.toml must not list a.toml's alerts (with a.toml's last values) nor exit 2
    #: for a critical rule it does not have
    rule_ids: frozenset[str] | None = None

    @property
    def firing(self) -> tuple[AlertState, ...]:
        return tuple(s for s in self.book.firing
                     if self.rule_ids is None or s.key.rule_id in self.rule_ids)

    @property
    def pending(self) -> tuple[AlertState, ...]:
        return tuple(s for s in self.book.pending
                     if self.rule_ids is None or s.key.rule_id in self.rule_ids)

    @property
    def exit_code(self) -> int:
        """0 nothing firing, 1 a warning firing, 2 a critical firing (of this run's rules)."""
        return max((a.severity.exit_code for a in self.firing), default=0)


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


def rule_identity(rule: Rule) -> str:
    """A short hash of what the rule is (everything but where it is written)."""
    definition = {
        "name": rule.name, "group": rule.group.pattern,
        "topic": rule.topic.pattern if rule.topic is not None else None,
        "max_lag": rule.max_lag, "max_lag_seconds": rule.max_lag_seconds,
        "min_status": rule.min_status.value if rule.min_status is not None else None,
        "for": rule.for_seconds, "severity": rule.severity.value,
        "hysteresis": rule.hysteresis, "resolve_for": rule.resolve_for_seconds,
    }
    text = json.dumps(definition, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def names_own_groups(rule: Rule) -> bool:
    """The rule's group regex spells out a lagdeck prefix (escaped or not)."""
    text = rule.group.pattern.replace("\\", "")
    return any(p.rstrip(".") in text for p in OWN_GROUP_PREFIXES)


def observe(rule: Rule, snapshot: LagSnapshot) -> dict[AlertKey, Measurement]:
    """The keys `rule` covers in `snapshot`, each with its measurement.

    lagdeck's own groups are left out unless the rule names them (`names_own_groups`).
    """
    out: dict[AlertKey, Measurement] = {}
    rid = rule_identity(rule)
    own_ok = names_own_groups(rule)
    for group in snapshot.groups:
        if not rule.matches_group(group.group):
            continue
        if is_own_group(group.group) and not own_ok:
            continue
        if rule.topic is None:
            out[AlertKey(rule.name, group.group, None, rid)] = measure_group(group)
            continue
        by_topic: dict[str, list[PartitionLag]] = {}
        for p in group.partitions:
            if rule.matches_topic(p.topic):
                by_topic.setdefault(p.topic, []).append(p)
        for topic, parts in by_topic.items():
            out[AlertKey(rule.name, group.group, topic, rid)] = measure_partitions(parts)
    return out


def conditions(rule: Rule, m: Measurement) -> tuple[Condition, ...]:
    """The rule's configured conditions judged against one measurement."""
    keep = 1.0 - rule.hysteresis
    out: list[Condition] = []
    if rule.max_lag is not None:
        out.append(Condition(
            "max_lag", m.lag, rule.max_lag,
            breached=m.lag > rule.max_lag if m.lag is not None else None,
            hot=m.lag > rule.max_lag * keep if m.lag is not None else None,
        ))
    if rule.max_lag_seconds is not None:
        seconds = round(m.lag_seconds, 3) if m.lag_seconds is not None else None
        out.append(Condition(
            "max_lag_seconds", seconds, rule.max_lag_seconds,
            breached=m.lag_seconds > rule.max_lag_seconds if m.lag_seconds is not None else None,
            hot=m.lag_seconds > rule.max_lag_seconds * keep if m.lag_seconds is not None else None,
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
    source: str | None = None,
) -> Evaluation:
    """One evaluation step; `now` defaults to the snapshot's time.

    `source` names the rules file being evaluated: states of rules that are not
    in `rules` are left alone unless `source` created them (then the rule was
    removed or edited there, and its firing alerts resolve once).
    """
    book = book or AlertBook()
    now = snapshot.taken_at if now is None else now
    configured = {rule_identity(r) for r in rules}
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
                _judge_quiet(rule, key, state, conds, now, pending_gap, states, events,
                             source)

    partial = bool(snapshot.errors)
    errored = {g.group for g in snapshot.groups if g.error is not None}
    for key, state in previous.items():
        ours = key.rule_id in configured
        if not ours and state.source != source:
            if now - state.seen_at < FOREIGN_EXPIRY:
                states.append(state)  # another rules file's alert: not ours to judge
            continue
        if ours and (partial or key.group in errored):
            states.append(state)  # could not look: hold
            continue
        if state.phase is Phase.FIRING:
            reason = ("no longer reported" if ours
                      else "rule no longer configured (removed or edited)")
            where = f"{key.group} on {key.topic}" if key.topic is not None else key.group
            events.append(_event(EventKind.RESOLVED, state, now, f"{where}: resolved, {reason}"))

    states.sort(key=lambda s: s.key)
    return Evaluation(AlertBook(tuple(states), now), tuple(events), frozenset(configured))


def _judge_quiet(rule: Rule, key: AlertKey, state: AlertState | None,
                 conds: Sequence[Condition], now: float, pending_gap: float,
                 states: list[AlertState], events: list[AlertEvent],
                 source: str | None) -> None:
    breach = next((c for c in conds if c.breached), None)
    if breach is None:
        return  # not breaching: no alert (a pending one is dropped without a notice)
    since = now
    if state is not None and now - state.seen_at <= max(pending_gap, 3 * rule.for_seconds):
        since = min(state.since, now)
    new = AlertState(
        key=key, phase=Phase.PENDING, severity=rule.severity, since=since, seen_at=now,
        value=breach.value, threshold=breach.threshold, message=_describe(key, breach),
        source=state.source if state is not None else source,
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
        message=message, at=now, since=state.since, rule_id=state.key.rule_id,
    )
