"""The alert book on disk: one JSON file per cluster, and its share in a watcher fleet.

`AlertStore` keeps the book between runs, so `for` works across processes
(`watch --once` from cron) and a notice is sent once even when a long-running
watch and a cron job share the state directory (`locked()` around
load-evaluate-save). `split_book` / `merge_book` carve out the groups one
watcher of a fleet owns this round (docs/shared-poller.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collectors.alerts.rules import Severity
from collectors.alerts.state import AlertBook, AlertKey, AlertState, Phase
from collectors.filelock import exclusive
from collectors.logs import get_logger
from collectors.paths import state_dir

_FORMAT = 2


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
                "rule_id": s.key.rule_id, "source": s.source,
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
                         None if item["topic"] is None else str(item["topic"]),
                         str(item.get("rule_id") or "")),
            phase=Phase(item["phase"]),
            severity=Severity(item["severity"]),
            since=float(item["since"]),
            seen_at=float(item["seen_at"]),
            fired_at=None if item["fired_at"] is None else float(item["fired_at"]),
            value=item["value"],
            threshold=item["threshold"],
            message=str(item["message"]),
            clear_since=None if item.get("clear_since") is None else float(item["clear_since"]),
            source=None if item.get("source") is None else str(item["source"]),
        ))
    evaluated = data.get("evaluated_at")
    return AlertBook(tuple(states), None if evaluated is None else float(evaluated))


def store_name(cluster: str) -> str:
    """A file name for one cluster's book: readable, and unique per cluster id."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", cluster)[:48].strip("._") or "cluster"
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:10]
    return f"{readable}-{digest}.json"


class AlertStore:
    """The alert book on disk, so `watch --once` from cron remembers pending-since times.

    One file per cluster (`alerts/<cluster id>-<hash>.json` under the state
    directory): two clusters never share a book. Writes are atomic (temp file
    + rename); an unreadable file is logged and treated as empty rather than
    stopping the watch.
    """

    def __init__(self, path: str | Path | None = None, *, cluster: str | None = None) -> None:
        if path is None:
            name = store_name(cluster) if cluster else "alerts.json"
            path = state_dir() / "alerts" / name
        self.path = Path(path)
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
        with exclusive(self.path):
            yield

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


class MemoryStore:
    """The book in memory (the TUI's): the same calls as `AlertStore`, nothing on disk."""

    def __init__(self) -> None:
        self.book = AlertBook()

    def load(self) -> AlertBook:
        return self.book

    @contextmanager
    def locked(self) -> Iterator[None]:
        yield

    def save(self, book: AlertBook) -> None:
        self.book = book


# ---------------------------------------------------------------------------- fleet shares


def split_book(book: AlertBook, owns: Callable[[str], bool],
               imported: Mapping[str, tuple[float, Iterable[AlertState]]] | None = None,
               source: str | None = None) -> tuple[AlertBook, tuple[AlertState, ...]]:
    """(the owned groups' book, everyone else's states, kept untouched).

    `imported` maps a group just taken over to (published at, its published alert
    states): they replace ours for that group unless ours are newer (this watcher
    owned it before and evaluated it after that snapshot). Imported states take
    `source` so the rules of this run own them.
    """
    mine = [s for s in book.states if owns(s.key.group)]
    others = tuple(s for s in book.states if not owns(s.key.group))
    for group, (published_at, states) in (imported or {}).items():
        ours = [s for s in mine if s.key.group == group]
        if ours and max(s.seen_at for s in ours) > published_at:
            continue
        mine = [s for s in mine if s.key.group != group]
        mine += [dataclasses.replace(s, source=source) for s in states]
    mine.sort(key=lambda s: s.key)
    return AlertBook(tuple(mine), book.evaluated_at), others


def merge_book(mine: AlertBook, others: Iterable[AlertState]) -> AlertBook:
    states = sorted((*mine.states, *others), key=lambda s: s.key)
    return AlertBook(tuple(states), mine.evaluated_at)
