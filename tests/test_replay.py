"""Replay (offset reset): plans are previews, --execute applies exactly them, active groups
are refused. Unit tests for the spec parsing, integration tests against the real broker."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import TopicPartition

from collectors.errors import InvalidValue, LagdeckError, UsageError
from collectors.kafka import consumer, producer
from console.cli import main
from dlq.replay import (
    PartitionReset,
    ResetSpec,
    committed_offsets,
    execute_reset,
    parse_datetime_ms,
    parse_duration_s,
    plan_reset,
)
from tests.conftest import FAST_GROUP, create_topics, wait_until

# -- pure ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT1H30M", 5400), ("P1D", 86400), ("PT0.5S", 0.5), ("1h30m", 5400), ("90s", 90),
    ("2d", 172800), ("15m", 900), ("500ms", 0.5), ("1w", 604800),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "h", "1x", "abc", "-1h", "1h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match=r"expected e\.g\. 15m"):
        parse_duration_s(text)


def test_datetimes() -> None:
    assert parse_datetime_ms("2024-01-02T03:04:05Z") == 1704164645000
    assert parse_datetime_ms("2024-01-02T03:04:05") == 1704164645000  # naive is UTC
    assert parse_datetime_ms("2024-01-02T04:04:05+01:00") == 1704164645000
    assert parse_datetime_ms("1704164645000") == 1704164645000
    with pytest.raises(UsageError, match="ISO 8601"):
        parse_datetime_ms("yesterday")


def test_spec_validation() -> None:
    with pytest.raises(UsageError):
        ResetSpec("rewind")
    with pytest.raises(UsageError):
        ResetSpec.to_offset(-1)
    with pytest.raises(UsageError):
        ResetSpec("shift")
    assert ResetSpec.shift_by(-5).describe() == "shift by -5"
    assert ResetSpec.to_datetime("2024-01-02T03:04:05Z").describe() == \
        "to 2024-01-02T03:04:05.000+00:00"


def test_partition_delta() -> None:
    assert PartitionReset(0, 10, 4, 0, 12).delta == 6
    assert PartitionReset(0, None, 4, 0, 12).delta == 8
    assert not PartitionReset(0, 4, 4, 0, 12).changes


# -- against the broker ----------------------------------------------------------------


def _topic_with_records(cluster, bootstrap, names, per_partition=(10, 10)) -> str:
    topic = names("replay")
    create_topics(bootstrap, topic, partitions=len(per_partition))
    p = producer(cluster, **{"batch.num.messages": 1})
    for part, n in enumerate(per_partition):
        for i in range(n):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    assert p.flush(15) == 0
    return topic


def _commit(cluster, group: str, topic: str, offsets: dict[int, int]) -> None:
    c = consumer(cluster, group=group)
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


@pytest.mark.integration
def test_dry_run_changes_nothing_and_execute_applies_exactly_the_plan(
        cluster, bootstrap, names, capsys) -> None:
    topic = _topic_with_records(cluster, bootstrap, names)
    group = names("billing")
    _commit(cluster, group, topic, {0: 8, 1: 9})

    assert main(["-b", bootstrap, "replay", group, "--topic", topic, "--shift-by", "-3",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["group"], doc["topic"], doc["dry_run"]) == (group, topic, True)
    shown = [{k: p[k] for k in ("partition", "current_offset", "new_offset")}
             for p in doc["partitions"]]
    assert shown == [{"partition": 0, "current_offset": 8, "new_offset": 5},
                     {"partition": 1, "current_offset": 9, "new_offset": 6}]
    assert committed_offsets(cluster, group, topic, 2) == {0: 8, 1: 9}  # nothing changed

    assert main(["-b", bootstrap, "replay", group, "--topic", topic, "--shift-by", "-3",
                 "--execute", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["dry_run"] is False and done["verified"] is True
    assert [{k: p[k] for k in ("partition", "current_offset", "new_offset")}
            for p in done["partitions"]] == shown
    assert done["committed_after"] == [{"partition": 0, "offset": 5},
                                       {"partition": 1, "offset": 6}]
    assert committed_offsets(cluster, group, topic, 2) == {0: 5, 1: 6}

    plan = plan_reset(cluster, group, topic, ResetSpec.earliest())
    assert [(p.current_offset, p.new_offset) for p in plan.partitions] == [(5, 0), (6, 0)]
    result = execute_reset(cluster, plan)
    assert result.verified and [p.partition for p in result.applied] == [0, 1]
    assert committed_offsets(cluster, group, topic, 2) == {0: 0, 1: 0}


@pytest.mark.integration
def test_plans_are_clamped_to_the_partition_range(cluster, bootstrap, names, capsys) -> None:
    topic = _topic_with_records(cluster, bootstrap, names, per_partition=(4, 6))
    group = names("clamp")
    _commit(cluster, group, topic, {0: 2})
    plan = plan_reset(cluster, group, topic, ResetSpec.to_offset(5))
    assert [(p.new_offset, p.note) for p in plan.partitions] == [
        (4, "5 clamped to high watermark 4"), (5, None)]
    shift = plan_reset(cluster, group, topic, ResetSpec.shift_by(-10))
    assert [(p.current_offset, p.new_offset) for p in shift.partitions] == [(2, 0), (None, None)]
    assert shift.partitions[1].note == "no committed offset to shift from; left unchanged"
    latest = plan_reset(cluster, group, topic, ResetSpec.latest())
    result = execute_reset(cluster, latest)
    assert committed_offsets(cluster, group, topic, 2) == {0: 4, 1: 6}
    assert dict(result.committed_after) == {0: 4, 1: 6}
    assert main(["-b", bootstrap, "replay", group, "--topic", topic, "--to-earliest"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "2 partition(s) would change; nothing changed" in out


@pytest.mark.integration
def test_active_group_is_refused_with_its_state(cluster, bootstrap, names, capsys) -> None:
    topic = _topic_with_records(cluster, bootstrap, names, per_partition=(5,))
    group = names("live")
    member = consumer(cluster, group=group, **FAST_GROUP)
    try:
        member.subscribe([topic])
        wait_until(lambda: member.poll(0.2) is not None or member.assignment(), timeout=30,
                   message="the consumer to join its group")
        member.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        plan = plan_reset(cluster, group, topic, ResetSpec.earliest())
        assert plan.group_state == "STABLE"
        with pytest.raises(LagdeckError, match=r"the group is STABLE \(it has active members\)"):
            execute_reset(cluster, plan)
        assert main(["-b", bootstrap, "replay", group, "--topic", topic, "--to-earliest",
                     "--execute"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"lagdeck: error: replay of group {group} refused: the group is "
                              "STABLE")
        assert "\n" not in err
        assert committed_offsets(cluster, group, topic, 1) == {0: 3}
    finally:
        member.close()


@pytest.mark.integration
def test_offsets_moved_since_the_plan_are_refused(cluster, bootstrap, names) -> None:
    topic = _topic_with_records(cluster, bootstrap, names, per_partition=(5,))
    group = names("moving")
    _commit(cluster, group, topic, {0: 2})
    plan = plan_reset(cluster, group, topic, ResetSpec.earliest())
    _commit(cluster, group, topic, {0: 4})  # the group's consumers ran in between
    with pytest.raises(LagdeckError, match=r"changed since the plan \(partition 0: 2 -> 4\)"):
        execute_reset(cluster, plan)
    assert committed_offsets(cluster, group, topic, 1) == {0: 4}


@pytest.mark.integration
def test_time_based_replay(cluster, bootstrap, names) -> None:
    """The broker resolves times by batch append time: three batches over two seconds."""
    topic = names("timed")
    create_topics(bootstrap, topic)
    p = producer(cluster, **{"batch.num.messages": 1})
    stamps = []
    for i in range(3):
        if stamps:  # the next append must fall in a later second than the previous one
            wait_until(lambda: time.time() * 1000 > stamps[-1] + 1100, timeout=5,
                       every=0.05, message="the clock to move on")
        stamps.append(int(time.time() * 1000))
        p.produce(topic, value=f"r{i}".encode(), partition=0)
        assert p.flush(10) == 0
    group = names("timed-group")
    _commit(cluster, group, topic, {0: 3})
    plan = plan_reset(cluster, group, topic, ResetSpec("datetime", stamps[1] - 300))
    assert [(p.current_offset, p.new_offset) for p in plan.partitions] == [(3, 1)]
    now = stamps[2] + 5_000
    by_duration = plan_reset(cluster, group, topic,
                             ResetSpec("duration", (now - stamps[2] + 300) / 1000), now_ms=now)
    assert by_duration.partitions[0].new_offset == 2
    result = execute_reset(cluster, plan)
    assert result.verified and committed_offsets(cluster, group, topic, 1) == {0: 1}


@pytest.mark.integration
def test_missing_topic_and_bad_flags(bootstrap, capsys) -> None:
    assert main(["-b", bootstrap, "replay", "g", "--topic", "no-such-topic-xyz",
                 "--to-earliest"]) == 1
    assert capsys.readouterr().err.strip() == \
        "lagdeck: error: topic 'no-such-topic-xyz' does not exist"
    assert main(["-b", bootstrap, "replay", "g", "--topic", "t", "--by-duration", "soon"]) == 2
    assert "duration 'soon'" in capsys.readouterr().err


# -- edges (issue 18) -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1969-12-31T23:59:59.999Z", "1900-01-01T00:00:00Z"])
def test_times_before_the_epoch_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match=rf"'{text}' is before 1970") as raised:
        ResetSpec.to_datetime(text)
    assert raised.value.field == "to_datetime"  # the CLI names it --to-datetime


@pytest.mark.parametrize("text", ["100000d", "P100000D", "99999999999999w"])
def test_durations_reaching_before_the_epoch_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="reaches back before 1970"):
        ResetSpec.by_duration(text)


@pytest.mark.integration
def test_future_time_plans_the_end_offsets(cluster, bootstrap, names, capsys) -> None:
    topic = _topic_with_records(cluster, bootstrap, names, per_partition=(4, 6, 0))
    group = names("future")
    _commit(cluster, group, topic, {0: 1, 1: 2})
    assert main(["-b", bootstrap, "replay", group, "--topic", topic,
                 "--to-datetime", "2030-01-01T00:00:00Z", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(p["current_offset"], p["new_offset"]) for p in doc["partitions"]] == [
        (1, 4), (2, 6), (None, 0)]
    assert doc["partitions"][0]["note"].startswith("after the newest record (")
    for argv in (["--to-datetime", "1900-01-01T00:00:00Z"], ["--by-duration", "100000d"],
                 ["--to-datetime", "1969-12-31T23:59:59.999Z"]):
        assert main(["-b", bootstrap, "replay", group, "--topic", topic, *argv]) == 2
        err = capsys.readouterr().err
        assert "before 1970-01-01" in err and "unreachable" not in err
    assert committed_offsets(cluster, group, topic, 3) == {0: 1, 1: 2, 2: None}


@pytest.mark.integration
def test_execute_on_a_missing_group_is_refused_unless_create(
        cluster, bootstrap, names, capsys) -> None:
    from collectors.kafka import admin

    topic = _topic_with_records(cluster, bootstrap, names, per_partition=(3,))
    typo = names("nosuchgroup")
    assert main(["-b", bootstrap, "replay", typo, "--topic", topic, "--to-earliest"]) == 0
    assert "does not exist: --execute would refuse" in capsys.readouterr().out
    assert main(["-b", bootstrap, "replay", typo, "--topic", topic, "--to-earliest",
                 "--execute"]) == 1
    err = capsys.readouterr().err
    assert f"consumer group '{typo}' does not exist" in err and "nothing was created" in err
    listed = admin(cluster).list_consumer_groups(request_timeout=10).result(timeout=15)
    assert typo not in {g.group_id for g in listed.valid}
    assert committed_offsets(cluster, typo, topic, 1) == {0: None}

    assert main(["-b", bootstrap, "replay", typo, "--topic", topic, "--to-earliest",
                 "--execute", "--create", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True
    assert committed_offsets(cluster, typo, topic, 1) == {0: 0}

    assert main(["-b", bootstrap, "replay", "", "--topic", topic, "--to-earliest"]) == 2
    assert capsys.readouterr().err.strip() == "lagdeck: error: replay: the GROUP argument is empty"
