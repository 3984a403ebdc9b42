"""Lag collection against the real broker, with kafka-python playing the other teams' services.

Producers send one record per batch (`batch_size=1`): on Tansu, end offsets
are right only then (docs/broker-notes.md). Status windows are short here (grace
1 s, window 4 commits) so that a test judges a stopped consumer in seconds;
the rules are the same as with the defaults.

The last tests feed the collector a broker answer Tansu cannot give (Kafka
keeps a deleted topic's committed offsets; assignments without commits;
per-group errors) as a `BrokerView`, lagdeck's own record of what a broker
said, to check each is shown as such and never fails the refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from collectors.config import ClusterConfig
from collectors.history import LagHistory
from collectors.lag import (
    PARTITION_UNKNOWN,
    TOPIC_DELETED,
    BrokerView,
    GroupData,
    LagCollector,
    LagSettings,
    collect_lag,
)
from collectors.snapshots import GroupLag, Member, Status
from collectors.status import StatusPolicy
from tests.conftest import FAST_GROUP, create_topics, kp_commit, kp_producer, wait_until

integration = pytest.mark.integration

#: a short window; and room for exact reads, so a loaded test machine does not turn
#: an exact lag in seconds into an estimate (reads stop as soon as all are done)
QUICK = LagSettings(policy=StatusPolicy(window=4, min_samples=2, grace_seconds=1.0),
                    exact_budget_seconds=10.0)
KP_GROUP = {"session_timeout_ms": FAST_GROUP["session.timeout.ms"],
            "heartbeat_interval_ms": FAST_GROUP["heartbeat.interval.ms"]}


def produce(bootstrap: str, topic: str, count: int, *, partition: int = 0,
            timestamp_ms: Callable[[int], int] | None = None) -> None:
    producer = kp_producer(bootstrap)
    try:
        for i in range(count):
            producer.send(topic, value=f"v{i}".encode(), partition=partition,
                          timestamp_ms=timestamp_ms(i) if timestamp_ms else None)
        producer.flush(10)
    finally:
        producer.close(timeout=5)


def group_of(collector: LagCollector, name: str) -> GroupLag:
    snapshot = collector.refresh(f"^{name}$")
    group = snapshot.group(name)
    assert group is not None, f"{name} missing from {[g.group for g in snapshot.groups]}"
    return group


def snapshot_via(collector: LagCollector) -> str:
    return collector.offsets_via


@integration
def test_group_that_keeps_up_is_ok(bootstrap: str, cluster: ClusterConfig, names) -> None:
    from kafka import KafkaConsumer

    topic, group = names("keepup"), names("keepup-g")
    create_topics(bootstrap, topic)
    # A 6 s session: with 2 s, a loaded machine (the suite beside other work) missed
    # heartbeats, the member was evicted and rejoined in a loop, and nothing was consumed.
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)
    try:
        with LagCollector(cluster, LagHistory.in_memory(), lag_settings=QUICK) as collector:
            consumed = 0
            statuses = []
            for round_ in range(5):
                produce(bootstrap, topic, 3)

                def caught_up(target=(round_ + 1) * 3) -> bool:
                    nonlocal consumed
                    for records in consumer.poll(timeout_ms=200).values():
                        consumed += len(records)
                    return consumed >= target

                wait_until(caught_up, timeout=30, message="the consumer to read its records")
                consumer.commit()
                g = group_of(collector, group)
                statuses.append(g.status)
            assert g.state == "STABLE"
            # classic DescribeGroups (the batched path) gives Tansu's member ids only;
            # librdkafka's ConsumerGroupDescribe gets no members at all from it
            assert snapshot_via(collector) == "batched"
            assert g.members is not None and len(g.members) == 1
            assert g.members[0].member_id and g.members[0].assignments == ()
            assert g.total_lag == 0
            assert g.partitions[0].lag_seconds == 0.0
            assert g.partitions[0].lag_seconds_method == "zero"
            assert statuses == [Status.OK] * 5
    finally:
        consumer.close()


@integration
def test_group_that_stops_while_production_goes_on_becomes_stop(
    bootstrap: str, cluster: ClusterConfig, names
) -> None:
    topic, group = names("stopper"), names("stopper-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 10)
    kp_commit(bootstrap, group, {(topic, 0): 10})  # caught up, then gone (EMPTY group)
    with LagCollector(cluster, LagHistory.in_memory(), lag_settings=QUICK) as collector:
        assert group_of(collector, group).status is Status.OK
        seen: list[GroupLag] = []

        def stopped() -> bool:
            produce(bootstrap, topic, 2)
            g = group_of(collector, group)
            seen.append(g)
            return g.status in (Status.STOP, Status.STALL)

        wait_until(stopped, timeout=30, every=0.3, message="STOP or STALL")
    last = seen[-1]
    assert last.status is Status.STOP
    assert last.state == "EMPTY"
    # lag uses the end offset now, so it grows while the consumer is gone (Burrow #126/#127)
    assert last.total_lag == last.partitions[0].end_offset - 10 > seen[0].total_lag
    assert "no commit for" in last.status_reason


@integration
def test_live_consumer_that_stops_consuming_stalls(
    bootstrap: str, cluster: ClusterConfig, names
) -> None:
    from kafka import KafkaConsumer

    topic, group = names("staller"), names("staller-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 5)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False, **KP_GROUP)
    try:
        read = 0

        def consumed_five() -> bool:
            nonlocal read
            read += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
            return read >= 5

        wait_until(consumed_five, timeout=30, message="the first records")
        consumer.commit()
        # the consumer stays in the group (kafka-python heartbeats in the background)
        # but reads nothing more while the producers go on
        with LagCollector(cluster, LagHistory.in_memory(), lag_settings=QUICK) as collector:
            def stalled() -> GroupLag | None:
                produce(bootstrap, topic, 1)
                g = group_of(collector, group)
                return g if g.status is Status.STALL else None

            g = wait_until(stalled, timeout=30, every=0.3, message="STALL")
        assert g.state == "STABLE"
        assert g.partitions[0].committed_offset == 5
        assert "holds offset 5" in g.status_reason
    finally:
        consumer.close()


@integration
def test_offsets_reset_backwards_show_rewind(
    bootstrap: str, cluster: ClusterConfig, names
) -> None:
    topic, group = names("rewind"), names("rewind-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 10)
    kp_commit(bootstrap, group, {(topic, 0): 8})
    with LagCollector(cluster, LagHistory.in_memory(), lag_settings=QUICK) as collector:
        assert group_of(collector, group).partitions[0].committed_offset == 8
        kp_commit(bootstrap, group, {(topic, 0): 2})  # a replay to an earlier offset
        g = group_of(collector, group)
    assert g.status is Status.REWIND
    assert g.partitions[0].lag == 8
    assert "went back to 2" in g.partitions[0].status_reason


@integration
def test_lag_seconds_is_the_age_of_the_oldest_unconsumed_record(
    bootstrap: str, cluster: ClusterConfig, names
) -> None:
    topic, group, other = names("age"), names("age-g"), names("age-other")
    create_topics(bootstrap, topic)
    base = int(time.time() * 1000) - 10 * 60 * 1000  # ten minutes ago
    produce(bootstrap, topic, 10, timestamp_ms=lambda i: base + i * 30_000)
    kp_commit(bootstrap, group, {(topic, 0): 4})
    kp_commit(bootstrap, other, {(topic, 0): 7})
    with LagCollector(cluster, LagHistory.in_memory(), lag_settings=QUICK) as collector:
        snapshot = collector.refresh(f"^({group}|{other})$")
    for name, offset in ((group, 4), (other, 7)):
        p = snapshot.group(name).partitions[0]
        true_age = snapshot.taken_at - (base + offset * 30_000) / 1000
        assert p.lag == 10 - offset
        assert p.lag_seconds_method == "exact"
        assert abs(p.lag_seconds - true_age) < 2.0, (name, p.lag_seconds, true_age)
    assert snapshot.group(group).max_lag_seconds == snapshot.group(group).partitions[0].lag_seconds


@integration
def test_without_budget_lag_seconds_is_estimated_and_says_so(
    bootstrap: str, cluster: ClusterConfig, names
) -> None:
    topic, group = names("estimate"), names("estimate-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 5)
    kp_commit(bootstrap, group, {(topic, 0): 5})
    no_reads = LagSettings(policy=QUICK.policy, exact_budget_seconds=0.0)
    with LagCollector(cluster, LagHistory.in_memory(), lag_settings=no_reads) as collector:
        assert group_of(collector, group).partitions[0].lag_seconds_method == "zero"
        first_end_seen = time.time()
        produce(bootstrap, topic, 5)
        p = group_of(collector, group).partitions[0]
    # record 5 appeared between the two refreshes: interpolated between them, never exact
    assert p.lag == 5
    assert p.lag_seconds_method == "interpolated"
    assert 0.0 <= p.lag_seconds <= time.time() - first_end_seen + 1.0


@integration
def test_deleted_topic_is_shown_not_a_crash(
    bootstrap: str, cluster: ClusterConfig, names, tmp_path
) -> None:
    from kafka.admin import KafkaAdminClient

    kept, doomed = names("kept"), names("doomed")
    both, only = names("both-g"), names("only-g")
    create_topics(bootstrap, kept, doomed)
    produce(bootstrap, kept, 3)
    produce(bootstrap, doomed, 3)
    kp_commit(bootstrap, both, {(kept, 0): 3, (doomed, 0): 1})
    kp_commit(bootstrap, only, {(doomed, 0): 2})
    regex = f"^({both}|{only})$"
    with LagHistory(tmp_path / "history.db") as history:
        with LagCollector(cluster, history, lag_settings=QUICK) as collector:
            before = collector.refresh(regex)
            assert {g.group for g in before.groups} == {both, only}
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([doomed], timeout_ms=10_000)
        finally:
            admin.close()
        # a new process (a later `lagdeck lag`) sharing the history file
        after = collect_lag(cluster, regex, history=history)
    g = after.group(both)
    deleted = [p for p in g.partitions if p.topic == doomed]
    assert [p.error for p in deleted] == [TOPIC_DELETED]
    assert deleted[0].committed_offset == 1  # the last offset the history knew
    assert g.status is Status.ERR
    assert [p.lag for p in g.partitions if p.topic == kept] == [0]
    ghost = after.group(only)  # Tansu forgot this group with its topic; the history did not
    assert ghost is not None
    assert [(p.topic, p.error) for p in ghost.partitions] == [(doomed, TOPIC_DELETED)]


@integration
def test_one_refresh_covers_many_groups_and_reuses_its_clients(
    bootstrap: str, cluster: ClusterConfig, names
) -> None:
    topics = [names("many") for _ in range(3)]
    create_topics(bootstrap, *topics, partitions=2)
    for t in topics:
        for p in range(2):
            produce(bootstrap, t, 6, partition=p)
    groups = {names("many-g"): (topics[i % 3], i % 7) for i in range(30)}
    for g, (t, offset) in groups.items():
        kp_commit(bootstrap, g, {(t, 0): offset, (t, 1): 6})
    prefix = next(iter(groups)).rsplit("-", 1)[0]
    with LagCollector(cluster, LagHistory.in_memory(), lag_settings=QUICK) as collector:
        first = collector.refresh(f"^{prefix}")
        reads = collector.last_stats["exact_reads"]
        second = collector.refresh(f"^{prefix}")
        assert collector.last_stats["exact_reads"] == 0  # record times are cached
    assert len(first.groups) == len(second.groups) == 30
    for snapshot in (first, second):
        for g in snapshot.groups:
            t, offset = groups[g.group]
            assert [(p.topic, p.partition, p.lag) for p in g.partitions] == [
                (t, 0, 6 - offset), (t, 1, 0)]
            assert g.total_lag == 6 - offset
    lagging = {(t, o) for t, o in groups.values() if o < 6}
    assert reads == len(lagging)  # one read per distinct (partition, offset)
    assert all(p.lag_seconds_method in ("exact", "zero")
               for g in second.groups for p in g.partitions)


@integration
def test_history_feeds_the_sparkline_across_collectors(
    bootstrap: str, cluster: ClusterConfig, names, tmp_path
) -> None:
    topic, group = names("trend"), names("trend-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 4)
    kp_commit(bootstrap, group, {(topic, 0): 1})
    path = tmp_path / "history.db"
    for _ in range(3):
        with LagHistory(path) as history:
            collect_lag(cluster, f"^{group}$", history=history)
            produce(bootstrap, topic, 1)
    with LagHistory(path) as history:
        trend = history.group_trend(group)
    assert [lag for _, lag in trend] == [3, 4, 5]


# ---------------------------------------------------------------- what Tansu cannot show


def kafka_view() -> BrokerView:
    """Kafka's answers that Tansu never gives, as a broker view."""
    return BrokerView(
        taken_at=time.time(),
        groups=(
            # Kafka keeps offsets of a deleted topic; partition 9 of a 3-partition topic
            GroupData("leftover", "EMPTY", (), {("gone", 0): 12, ("orders", 9): 4,
                                                  ("orders", 0): 30}),
            # a live member assigned a partition it never committed
            GroupData("fresh", "STABLE",
                      (Member("m-1", "svc", "/10.0.0.1", (("orders", 1),)),),
                      {("orders", 1): None}),
            # OffsetFetch failed for one partition, and a group whose describe failed
            GroupData("picky", "STABLE", None, {("orders", 2): None},
                      partition_errors={("orders", 2): "UNSTABLE_OFFSET_COMMIT: try again"}),
            GroupData("broken", "UNKNOWN", None, {}, error="describe: timed out"),
        ),
        topics={"orders": 3},
        ends={("orders", 0): 40, ("orders", 1): 7, ("orders", 2): 3},
        end_errors={},
        listed=4,
    )


def test_every_kind_of_trouble_is_shown_on_its_partition_or_group() -> None:
    nowhere = ClusterConfig({"bootstrap.servers": "127.0.0.1:1"})
    no_reads = LagSettings(exact_budget_seconds=0.0)
    with LagCollector(nowhere, lag_settings=no_reads) as collector:
        snapshot = collector.evaluate(kafka_view())
    leftover = {(p.topic, p.partition): p for p in snapshot.group("leftover").partitions}
    assert leftover[("gone", 0)].error == TOPIC_DELETED
    assert leftover[("gone", 0)].committed_offset == 12
    assert leftover[("orders", 9)].error == PARTITION_UNKNOWN
    assert leftover[("orders", 0)].lag == 10
    assert leftover[("orders", 0)].lag_seconds_method == "unknown"  # no history, no reads
    assert snapshot.group("leftover").status is Status.ERR
    assert snapshot.group("leftover").total_lag == 10

    fresh = snapshot.group("fresh")
    assert fresh.members[0].assignments == (("orders", 1),)
    assert [(p.committed_offset, p.lag, p.status, p.status_reason) for p in fresh.partitions] \
        == [(None, None, Status.OK, "no committed offset")]
    assert fresh.status is Status.OK

    picky = snapshot.group("picky").partitions[0]
    assert picky.status is Status.ERR and "UNSTABLE_OFFSET_COMMIT" in picky.error

    broken = snapshot.group("broken")
    assert broken.status is Status.ERR and broken.error == "describe: timed out"
    assert snapshot.groups_on_cluster == 4
