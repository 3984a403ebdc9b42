"""The one alert loop that `lagdeck watch` and the TUI both run, one lag snapshot at a time.

A step takes a `LagSnapshot`, evaluates the rules against the book
(`evaluate.py`, pure), hands the notices and the figures to the sinks, saves
the book and returns the `Evaluation` for the face to show. The faces differ
only in what they give the loop: `watch` a book on disk per cluster, locked
around load-evaluate-save so a cron `--once` and a long-running watch notify
once (`AlertLoop.persistent`), and its sinks; the TUI a book in memory and
no sinks (`AlertLoop.in_memory`). Printing, exit codes and signals stay with
the faces (console/commands/watch.py, console/data.py).

The same object steps the `cluster-unreachable` alert (`unreachable.py`) for
a round in which the cluster did not answer, so an outage is notified once
per outage to the same sinks.

Order inside a step, as docs/alerts.md promises: notices go into the sinks'
outboxes (on disk, before any delivery) and only then is the book saved;
a crash in between re-fires with the same notice id, which an outbox keeps
once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from collectors.alerts.book import AlertStore, MemoryStore, merge_book, split_book
from collectors.alerts.evaluate import Evaluation, evaluate
from collectors.alerts.rules import Rule
from collectors.alerts.sinks import Report, Sink, close_all, log_report
from collectors.alerts.state import AlertBook, AlertEvent, AlertState
from collectors.alerts.unreachable import Outage, OutageStore, step
from collectors.snapshots import LagSnapshot


class BookStore(Protocol):
    """Where a book lives between steps (`AlertStore` on disk, `MemoryStore`)."""

    def load(self) -> AlertBook: ...

    def locked(self) -> AbstractContextManager[None]: ...

    def save(self, book: AlertBook) -> None: ...


@dataclass(frozen=True)
class Share:
    """One watcher's share of the groups this round (`watch --publish`, a fleet).

    `owns` says which groups are this watcher's; `imported` maps a group just
    taken over to (published at, the alert states its previous owner
    published), see `collectors.alerts.book.split_book`.
    """

    owns: Callable[[str], bool]
    imported: Mapping[str, tuple[float, Iterable[AlertState]]] = field(default_factory=dict)


class AlertLoop:
    """Rules, where their book lives, and the sinks their notices go to."""

    def __init__(self, rules: Sequence[Rule], *, books: Callable[[str], BookStore],
                 source: str | None = None, sinks: Sequence[Sink] = (),
                 outages: OutageStore | None = None) -> None:
        self.rules = tuple(rules)
        #: the owner of the alerts these rules raise (see `evaluate`): the resolved rules
        #: file, `<config>`, or None in the TUI
        self.source = source
        self.sinks = list(sinks)
        self._books = books
        self._outages = outages
        #: outages of a loop without an `OutageStore` (cluster -> outage in progress)
        self._outages_here: dict[str, Outage] = {}

    @classmethod
    def persistent(cls, rules: Sequence[Rule], *, source: str | None,
                   sinks: Sequence[Sink] = ()) -> AlertLoop:
        """`watch`: one book file per cluster id under the state directory, the outage
        store beside it."""
        return cls(rules, books=lambda cluster: AlertStore(cluster=cluster), source=source,
                   sinks=sinks, outages=OutageStore())

    @classmethod
    def in_memory(cls, rules: Sequence[Rule], *, source: str | None = None) -> AlertLoop:
        """The TUI: one book in memory, no sinks, nothing on disk."""
        memory = MemoryStore()
        return cls(rules, books=lambda cluster: memory, source=source)

    def step(self, snapshot: LagSnapshot, *, cluster: str = "",
             share: Share | None = None) -> Evaluation:
        """Evaluate `snapshot`, deliver, save; the events carry `cluster` (part of the
        notice id). With a `share`, only the owned groups' states are judged; the
        others are saved back untouched."""
        store = self._books(cluster)
        with store.locked():
            book = store.load()
            others: tuple[AlertState, ...] = ()
            if share is not None:
                book, others = split_book(book, share.owns, share.imported, self.source)
            result = evaluate(self.rules, snapshot, book, source=self.source)
            result = dataclasses.replace(result, events=tuple(
                dataclasses.replace(e, cluster=cluster) for e in result.events))
            for sink in self.sinks:  # into the outboxes before the book says "sent"
                sink.observe(snapshot)
                sink.notify(result.events)
            for sink in self.sinks:
                sink.observe_alerts(result.book.states)
            store.save(merge_book(result.book, others))
        return result

    # -- the cluster-unreachable alert -------------------------------------------------

    def unreachable(self, cluster: str, detail: str = "") -> tuple[Outage,
                                                                   tuple[AlertEvent, ...]]:
        """A round in which `cluster` did not answer: the outage in progress and its
        notice (the first round of an outage only), already handed to the sinks."""
        outage, events = self._step_outage(cluster, False, detail)
        assert outage is not None  # an unreachable cluster is always in an outage
        self._send(events)
        return outage, events

    def reachable(self, cluster: str) -> tuple[AlertEvent, ...]:
        """A round in which `cluster` answered: the resolved notice of an outage that
        just ended (sent), else nothing."""
        _, events = self._step_outage(cluster, True)
        self._send(events)
        return events

    def _step_outage(self, cluster: str, reachable: bool,
                     detail: str = "") -> tuple[Outage | None, tuple[AlertEvent, ...]]:
        """Under the outage store's lock: one notice per outage even with a cron `--once`
        and a long-running watch on the same state."""
        if self._outages is None:
            outage, events = step(self._outages_here.get(cluster), cluster, reachable,
                                  time.time(), detail)
            self._outages_here.pop(cluster, None)
            if outage is not None:
                self._outages_here[cluster] = outage
            return outage, events
        with self._outages.locked():
            outage, events = step(self._outages.load(cluster), cluster, reachable,
                                  time.time(), detail)
            self._outages.save(cluster, outage)
        return outage, events

    def _send(self, events: Sequence[AlertEvent]) -> None:
        # with no events, each sink still gets the call: the webhook retries its outbox
        for sink in self.sinks:
            sink.notify(events)

    def close(self, timeout: float, report: Report = log_report) -> None:
        """Close every sink within `timeout` in total (`close_all`)."""
        close_all(self.sinks, timeout, report)
