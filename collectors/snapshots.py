"""Immutable snapshots that flow one way: collectors -> tracing/dlq -> console.

These are the contracts between layers. Collectors build them; everything
else only reads them, so the TUI and the headless commands render the same
data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """Burrow-style status, ordered by severity (see `SEVERITY`)."""

    OK = "OK"
    #: not judged yet: too few samples, or too little time, to apply the rules
    UNKNOWN = "UNKNOWN"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"
    ERR = "ERR"

    @property
    def severity(self) -> int:
        return SEVERITY[self]


#: Worst wins when a group's status is folded from its partitions.
SEVERITY: dict[Status, int] = {
    Status.OK: 0,
    Status.UNKNOWN: 1,
    Status.WARN: 2,
    Status.REWIND: 3,
    Status.STALL: 4,
    Status.STOP: 5,
    Status.ERR: 6,
}


@dataclass(frozen=True)
class Header:
    key: str
    value: bytes | None


@dataclass(frozen=True)
class Record:
    """One Kafka record as read from the wire; bytes stay bytes until decoded."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()

    def header(self, name: str) -> bytes | None:
        """The last value of header `name` (case-insensitive), or None."""
        lowered = name.lower()
        for header in reversed(self.headers):
            if header.key.lower() == lowered:
                return header.value
        return None


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed_offset: int | None
    end_offset: int | None
    lag: int | None
    lag_seconds: float | None
    #: how lag_seconds was obtained: "exact", "interpolated", "extrapolated", "zero" or "unknown"
    lag_seconds_method: str
    status: Status
    error: str | None = None
    #: one line saying why `status` was given (which Burrow rule fired, or why none could)
    status_reason: str | None = None


def partition_lag(topic: str, partition: int, committed_offset: int | None,
                  end_offset: int | None, lag: int | None, lag_seconds: float | None,
                  lag_seconds_method: str, status: Status, error: str | None,
                  status_reason: str | None) -> PartitionLag:
    """`PartitionLag(...)` with every field given, built without the frozen `__init__`.

    A frozen dataclass's `__init__` sets each field through `object.__setattr__`
    (2.2 us for ten fields here); a refresh of 10,000 groups builds 100,000 of these.
    Filling the instance's `__dict__` at once, fields in their declared order (orjson
    writes them in that order), gives an equal object in 0.85 us.
    `tests/test_lag_evaluate.py` pins it to the dataclass's own constructor.
    """
    p = _new(PartitionLag)
    _set(p, "__dict__", {
        "topic": topic, "partition": partition, "committed_offset": committed_offset,
        "end_offset": end_offset, "lag": lag, "lag_seconds": lag_seconds,
        "lag_seconds_method": lag_seconds_method, "status": status, "error": error,
        "status_reason": status_reason,
    })
    return p


_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assignments: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    status: Status
    total_lag: int
    max_lag_seconds: float | None
    partitions: tuple[PartitionLag, ...] = ()
    #: None when the broker does not report members (Tansu), () when it reports none.
    members: tuple[Member, ...] | None = None
    error: str | None = None
    #: the reason of the partition that decided the group status (or the group error)
    status_reason: str | None = None
    #: lag (messages) tolerated per partition before any status but OK (config `[lag.allowed_lag]`)
    allowed_lag: int = 0


def group_lag(group: str, state: str, status: Status, total_lag: int,
              max_lag_seconds: float | None, partitions: tuple[PartitionLag, ...],
              members: tuple[Member, ...] | None, error: str | None,
              status_reason: str | None, allowed_lag: int) -> GroupLag:
    """`GroupLag(...)` with every field given, built as `partition_lag` builds its own."""
    g = _new(GroupLag)
    _set(g, "__dict__", {
        "group": group, "state": state, "status": status, "total_lag": total_lag,
        "max_lag_seconds": max_lag_seconds, "partitions": partitions, "members": members,
        "error": error, "status_reason": status_reason, "allowed_lag": allowed_lag,
    })
    return g


@dataclass(frozen=True)
class LagSnapshot:
    taken_at: float
    groups: tuple[GroupLag, ...] = ()
    errors: tuple[str, ...] = field(default_factory=tuple)
    #: groups the cluster listed before `--group` filtering (None when listing failed)
    groups_on_cluster: int | None = None
    #: how committed offsets were read: "batched" (OffsetFetch v8, many groups per request)
    #: or "per-group" (one request per group), and why
    offsets_via: str | None = None
    offsets_via_reason: str | None = None

    def group(self, name: str) -> GroupLag | None:
        return next((g for g in self.groups if g.group == name), None)
