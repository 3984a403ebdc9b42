"""A persistent outbox of alert notices, one folder per sink, under the state directory.

The outbox pattern: a notice is written to disk *before* anyone tries to
deliver it and removed only once the sink accepted it, so a webhook that is
down, a crash, a SIGTERM or a `watch --once` that ends mid-retry loses
nothing: the next round, or the next run, sends what is left, with the times
it was created with. Delivery is therefore at least once; every notice
carries a stable `id` (`collectors.alerts.state.notice_id`) so a receiver can drop
one it already has.

Layout: `<state>/outbox/<sink key>/<created ns>-<id>.json`, where the sink
key is a hash of the sink's URL (tokens live in URLs: they never reach the
disk). Each file is written atomically (temp file + rename). Two watchers
sharing the state directory do not send the same entry at once: a sender
holds an exclusive `flock` on the entry while it delivers and removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere two watchers may both send an entry (receivers dedupe by id)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from collectors.alerts.rules import DEFAULT_EXPIRE
from collectors.logs import get_logger
from collectors.paths import state_dir

_log = get_logger("sinks.outbox")


def sink_key(kind: str, target: str) -> str:
    """A folder name for one sink: a hash, so the URL (and its token) is never on disk."""
    return f"{kind}-{hashlib.sha256(target.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Entry:
    """One notice waiting in the outbox."""

    id: str
    path: Path
    created_at: float
    expires_at: float
    body: dict[str, Any]


class Outbox:
    """The notices one sink still has to deliver (see the module docstring)."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.dir = (root if root is not None else state_dir() / "outbox") / key

    def put(self, notice_id: str, body: dict[str, Any], *, now: float | None = None,
            expire_after: float = DEFAULT_EXPIRE) -> bool:
        """Keep a notice until it is delivered; False if one with this id is already kept."""
        now = time.time() if now is None else now
        self.dir.mkdir(parents=True, exist_ok=True)
        if any(self.dir.glob(f"*-{notice_id}.json")):
            return False
        record = {"id": notice_id, "created_at": now, "expires_at": now + expire_after,
                  "body": body}
        fd, tmp = tempfile.mkstemp(prefix=".notice-", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / f"{time.time_ns():020d}-{notice_id}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def pending(self) -> list[Entry]:
        """Every kept notice, oldest first (a firing notice goes before its resolve)."""
        try:
            paths = sorted(p for p in self.dir.iterdir()
                           if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []
        entries = []
        for path in paths:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                entries.append(Entry(str(record["id"]), path, float(record["created_at"]),
                                     float(record["expires_at"]), dict(record["body"])))
            except FileNotFoundError:
                continue  # delivered by another watcher meanwhile
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("outbox: setting aside unreadable entry %s: %s", path, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name("." + path.name + ".bad"))
        return entries

    def __len__(self) -> int:
        return len(self.pending())

    @contextlib.contextmanager
    def claim(self, entry: Entry) -> Iterator[bool]:
        """Hold `entry` for delivery; yields False when another watcher holds it or it is gone."""
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
            try:
                still_there = os.stat(entry.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                still_there = False
            yield still_there
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def remove(entry: Entry) -> None:
        """The sink accepted it (or it expired): it leaves the outbox. Call while claimed."""
        entry.path.unlink(missing_ok=True)


def sweep_expired(root: Path | None = None, now: float | None = None) -> int:
    """Remove expired notices of every sink, also of sinks no longer configured (their
    folders are otherwise never looked at again). Returns how many were removed."""
    root = root if root is not None else state_dir() / "outbox"
    now = time.time() if now is None else now
    removed = 0
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return 0
    for folder in folders:
        box = Outbox(folder.name, root=root)
        for entry in box.pending():
            if entry.expires_at <= now:
                with box.claim(entry) as mine:
                    if mine:
                        box.remove(entry)
                        removed += 1
                        _log.warning("outbox: %s notice %s expired undelivered",
                                     folder.name, entry.id)
    return removed
