"""The audit log: one JSON line before and one after every mutating action.

The "before" line is written (and fsynced) before the cluster is touched, so
even a process killed mid-action leaves a trace of what it set out to do; the
"after" line, paired by `action_id`, says how it ended and with what counts.
Lines go to `audit.log` under the state directory. Secret-looking parameter
names are redacted and every line passes through `scrub()`, so a password can
never reach the file, even inside an error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.config import ClusterConfig
from collectors.paths import state_dir
from collectors.redact import REDACTED, is_secret_key, scrub
from collectors.timefmt import now_iso_utc
from collectors.untrusted import as_text, json_text

AUDIT_FILE = "audit.log"


def audit_path() -> Path:
    return state_dir() / AUDIT_FILE


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _clean(value: Any) -> Any:
    """JSON-safe copy with secret-named keys redacted and every string scrubbed."""
    if isinstance(value, Mapping):
        return {str(k): (REDACTED if is_secret_key(str(k)) else _clean(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, bytes):
        return scrub(as_text(value))
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def write_line(entry: Mapping[str, Any], path: Path | None = None) -> None:
    """Append one scrubbed JSON line; an exclusive lock keeps concurrent writers whole."""
    line = json_text(scrub(json.dumps(_clean(entry), ensure_ascii=False, sort_keys=True))) + "\n"
    target = path or audit_path()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_audit(path: Path | None = None) -> list[dict[str, Any]]:
    """Every audit entry, oldest first (for tests, the TUI and operators' scripts)."""
    target = path or audit_path()
    if not target.exists():
        return []
    out = []
    for line in target.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


@dataclass
class AuditedAction:
    """The open record of one action; fill `counts` and `outcome` before it closes."""

    action: str
    action_id: str
    parameters: Mapping[str, Any]
    cluster: Mapping[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None


def _base(cluster: ClusterConfig) -> dict[str, Any]:
    return {"bootstrap_servers": cluster.bootstrap_servers, "profile": cluster.profile}


@contextlib.contextmanager
def audited(cluster: ClusterConfig, action: str, parameters: Mapping[str, Any],
            path: Path | None = None) -> Iterator[AuditedAction]:
    """Write the "before" line, run the body, then write the "after" line however it ends.

    The body sets `.counts` and may set `.outcome` (default "ok"; "error" when
    it raises, with the one-line error; "interrupted" on Ctrl-C).
    """
    record = AuditedAction(action, uuid.uuid4().hex, dict(parameters), _base(cluster))
    common = {"action_id": record.action_id, "user": _user(), "host": socket.gethostname(),
              "cluster": record.cluster, "action": action, "parameters": record.parameters}
    write_line({"time": now_iso_utc(), "event": "before", **common}, path)
    started = time.monotonic()
    error: str | None = None
    outcome: str | None = None
    try:
        yield record
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except BaseException as exc:
        outcome = "error"
        error = str(exc) or type(exc).__name__
        raise
    finally:
        write_line({"time": now_iso_utc(), "event": "after", **common,
                    "counts": record.counts, "outcome": outcome or record.outcome or "ok",
                    "error": error, "duration_s": round(time.monotonic() - started, 3)}, path)
