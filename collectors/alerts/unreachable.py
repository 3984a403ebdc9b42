"""The `cluster-unreachable` alert: one firing notice per outage, one resolved notice after.

An unreachable cluster is not a lag alert (no group, no threshold): rules
cannot be evaluated at all, so it is its own alert, kept apart from the
alert book. The step is a pure function of the previous outage and the
probe's answer; `OutageStore` keeps the outage on disk (per cluster) so that
`watch --once` from cron also notifies once per outage, not once per run.
`watch` exits `UNKNOWN_EXIT` (3, the Nagios convention) while it lasts.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collectors.alerts.rules import Severity
from collectors.alerts.state import AlertEvent, EventKind
from collectors.filelock import exclusive
from collectors.logs import get_logger
from collectors.paths import state_dir

RULE = "cluster-unreachable"
#: Nagios UNKNOWN: the rules could not be evaluated.
UNKNOWN_EXIT = 3

_log = get_logger("alerts")


@dataclass(frozen=True)
class Outage:
    """An outage in progress: since when, and the last reason given."""

    cluster: str
    since: float
    message: str


def _event(kind: EventKind, outage: Outage, at: float, message: str) -> AlertEvent:
    return AlertEvent(kind=kind, rule=RULE, group=outage.cluster, topic=None,
                      severity=Severity.CRITICAL, value=None, threshold=None,
                      message=message, at=at, since=outage.since, cluster=outage.cluster)


def step(outage: Outage | None, cluster: str, reachable: bool, now: float,
         detail: str = "") -> tuple[Outage | None, tuple[AlertEvent, ...]]:
    """The outage after one probe, and the notices it causes (at most one)."""
    if not reachable:
        if outage is not None:
            return Outage(outage.cluster, outage.since, detail or outage.message), ()
        started = Outage(cluster, now, detail or f"cannot reach {cluster}")
        return started, (_event(EventKind.FIRING, started, now,
                                f"cluster {cluster} unreachable: {started.message}"),)
    if outage is None:
        return None, ()
    return None, (_event(EventKind.RESOLVED, outage, now,
                         f"cluster {cluster} reachable again after "
                         f"{max(0.0, now - outage.since):.0f}s"),)


class OutageStore:
    """The outage in progress per cluster, on disk (atomic writes; bad files are ignored)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else state_dir() / "outages.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock for a load-step-save, so two watchers notify once."""
        with exclusive(self.path):
            yield

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            _log.warning("ignoring unreadable outage state %s: %s", self.path, exc)
            return {}

    def load(self, cluster: str) -> Outage | None:
        raw = self._read().get(cluster)
        try:
            return Outage(cluster, float(raw["since"]), str(raw["message"])) if raw else None
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, cluster: str, outage: Outage | None) -> None:
        data = self._read()
        if outage is None:
            if cluster not in data:
                return
            data.pop(cluster)
        else:
            data[cluster] = {"since": outage.since, "message": outage.message}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".outages-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
