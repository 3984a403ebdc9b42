"""Pure parts of the shared poller: record format, ownership, staleness, alert handover."""

from __future__ import annotations

import json
import zlib

import pytest

from collectors.alerts.book import merge_book, split_book
from collectors.alerts.rules import Severity
from collectors.alerts.sinks.prometheus import alert_states_by_group, parse_listen
from collectors.alerts.state import AlertBook, AlertKey, AlertState, Phase
from collectors.errors import UsageError
from collectors.shared_watch import owner_predicate
from collectors.snapshot_topic import (
    DEFAULT_TOPIC,
    Provenance,
    check_topic_name,
    decode,
    encode,
    snapshots_setting,
)
from collectors.snapshots import GroupLag, PartitionLag, Status
from collectors.watch_group import group_partition, watch_group_id
from console.cli import _bare_optional


def group(name: str = "billing", lag: int = 7) -> GroupLag:
    return GroupLag(
        group=name, state="EMPTY", status=Status.STOP, total_lag=lag, max_lag_seconds=12.5,
        partitions=(PartitionLag("orders", 0, 3, 3 + lag, lag, 12.5, "exact", Status.STOP,
                                 status_reason="no commit"),),
        members=None, status_reason="no commit", allowed_lag=5)


def state(group_name: str, phase: Phase = Phase.FIRING, seen_at: float = 100.0,
          since: float = 50.0) -> AlertState:
    return AlertState(key=AlertKey("behind", group_name, None, "r1"), phase=phase,
                      severity=Severity.WARNING, since=since, seen_at=seen_at,
                      fired_at=since if phase is Phase.FIRING else None, value=7,
                      threshold=1, message="lag 7", source="/a/rules.toml")


def test_a_record_round_trips_with_its_alerts_and_provenance() -> None:
    raw = encode(group(), taken_at=1_700_000_000.25, published_by="host-a:12",
                 interval=10.0, refresh_seconds=0.4, alerts=[state("billing")],
                 cluster="c1")
    doc = json.loads(raw)
    assert doc["snapshot_at"] == "2023-11-14T22:13:20.250Z"
    assert doc["status"] == "STOP" and doc["partitions"][0]["status"] == "STOP"
    decoded, provenance = decode(raw)
    assert decoded == group()
    assert provenance.published_by == "host-a:12" and provenance.interval == 10.0
    assert provenance.alerts == (state("billing"),)


@pytest.mark.parametrize("value", [b"{}", b"[]", b"not json", b'{"format": 1}',
                                   b'{"format": 1, "status": "BAD", "taken_at": 1}'])
def test_foreign_records_are_rejected_not_crashing(value: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode(value)


def test_staleness_counts_publisher_intervals_and_caps_them() -> None:
    p = Provenance(snapshot_at=1000.0, published_by="a:1", interval=10.0)
    assert not p.stale(now=1030.0) and p.stale(now=1030.1)
    forever = Provenance(snapshot_at=1000.0, published_by="a:1", interval=1e12)
    assert forever.stale(now=1000.0 + 3 * 3600 + 1)


def test_ownership_is_a_stable_hash_not_pythons_salted_one() -> None:
    # the same on every host and every run (Python's hash() of a str is salted)
    assert group_partition("billing", 12) == zlib.crc32(b"billing") % 12 == 6
    owns = owner_predicate(frozenset({6}), 12)
    assert owns("billing")
    assert not owns("orders")  # crc32 % 12 == 2
    spread = {group_partition(f"g-{i}", 12) for i in range(200)}
    assert spread == set(range(12))
    assert watch_group_id("lagdeck embedded/1") == "lagdeck-watch.lagdeck_embedded_1"
    assert watch_group_id("c", DEFAULT_TOPIC) == "lagdeck-watch.c"
    assert watch_group_id("c", "team-b.lag") == "lagdeck-watch.c.team-b.lag"


def test_taking_over_adopts_published_alert_states_unless_ours_are_newer() -> None:
    book = AlertBook((state("mine", seen_at=300.0), state("taken", seen_at=10.0),
                      state("kept", seen_at=300.0), state("other")), evaluated_at=300.0)
    owns = lambda g: g in ("mine", "taken", "kept")  # noqa: E731
    published = {"taken": (200.0, (state("taken", seen_at=200.0, since=42.0),)),
                 "kept": (200.0, (state("kept", seen_at=200.0, since=1.0),))}
    mine, others = split_book(book, owns, published, source="/b/rules.toml")
    by_group = {s.key.group: s for s in mine.states}
    assert set(by_group) == {"mine", "taken", "kept"}
    assert by_group["taken"].since == 42.0 and by_group["taken"].source == "/b/rules.toml"
    assert by_group["kept"].since == 50.0, "our newer state wins"
    assert [s.key.group for s in others] == ["other"]
    assert {s.key.group for s in merge_book(mine, others).states} == {
        "mine", "taken", "kept", "other"}


def test_settings_and_flags() -> None:
    data = {"profiles": {"a": {"snapshots": True}, "b": {"snapshots": "team.lag"},
                         "c": {}, "d": {"snapshots": 3}}}
    assert snapshots_setting(data, "a") == DEFAULT_TOPIC
    assert snapshots_setting(data, "b") == "team.lag"
    assert snapshots_setting(data, "c") is None and snapshots_setting(data, None) is None
    with pytest.raises(UsageError):
        snapshots_setting(data, "d")
    with pytest.raises(UsageError):
        check_topic_name("bad topic\x1b[2J")
    assert parse_listen("9308") == ("127.0.0.1", 9308)
    assert parse_listen("0.0.0.0:9308") == ("0.0.0.0", 9308)
    with pytest.raises(UsageError):
        parse_listen("99999")
    assert _bare_optional(["--from-snapshots", "lag"], "--from-snapshots", "T",
                          ["lag"]) == ["--from-snapshots=T", "lag"]
    assert _bare_optional(["--from-snapshots", "x", "lag"], "--from-snapshots", "T",
                          ["lag"]) == ["--from-snapshots", "x", "lag"]
    states = [state("a", Phase.PENDING), state("a"), state("b", Phase.PENDING)]
    assert alert_states_by_group(states) == {"a": "firing", "b": "pending"}
