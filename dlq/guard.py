"""The read-only guard every mutating path calls before it touches the cluster.

One function, called by the CLI, the TUI and the library entry points
themselves (`Redrive.run`, `execute_reset`), so a new caller cannot forget
it: read-only mode is a property of the cluster config (`--read-only` or a
profile's `read_only = true`), not of the screen the operator is on.
"""

from __future__ import annotations

from collectors.config import ClusterConfig
from collectors.errors import ReadOnlyError


def ensure_writable(cluster: ClusterConfig, action: str) -> None:
    """Raise `ReadOnlyError` (one line naming `action` and why) when `cluster` is read-only."""
    if not cluster.read_only:
        return
    if cluster.profile:
        why = f"--read-only was given or profile {cluster.profile!r} has read_only = true"
    else:
        why = "--read-only was given"
    raise ReadOnlyError(f"{action} refused: read-only mode ({why}); nothing was changed")


def is_writable(cluster: ClusterConfig) -> bool:
    """For UIs that grey out mutating actions instead of failing on them."""
    return not cluster.read_only
