"""Batched committed-offset reads (OffsetFetch v8, KIP-709) against the per-group path.

On the real broker: both paths give the same lag; errors injected on the wire
(tests/fault_proxy.py) stay on their group; the per-group fallback is taken
and reported for a setting kafka-python cannot express. The settings mapping
is tested as a plain function.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket

import pytest

from collectors.batched_groups import (
    MAX_IN_FLIGHT,
    WINDOW,
    BatchedGroupReader,
    BatchedRead,
    BatchedUnavailable,
    client_settings,
)
from collectors.config import ClusterConfig
from collectors.history import LagHistory
from collectors.lag import LagCollector
from collectors.snapshots import LagSnapshot, Status
from console.cli import main
from tests.conftest import create_topics, kp_commit, kp_producer
from tests.fault_proxy import FaultProxy, Faults

integration = pytest.mark.integration

GROUP_AUTHORIZATION_FAILED = 30
NOT_COORDINATOR = 16
UNKNOWN_TOPIC_OR_PARTITION = 3


def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = kp_producer(bootstrap)
    for partition, count in per_partition.items():
        for i in range(count):
            producer.send(topic, value=f"v{i}".encode(), partition=partition)
    producer.flush(10)
    producer.close(timeout=5)


def numbers(snapshot: LagSnapshot) -> dict[str, tuple]:
    """What both paths must agree on: per group, state, total and every partition's lag."""
    return {g.group: (g.state, g.total_lag, g.error, tuple(
        (p.topic, p.partition, p.committed_offset, p.end_offset, p.lag, p.error)
        for p in g.partitions)) for g in snapshot.groups}


@pytest.fixture
def world(bootstrap: str, names) -> dict[str, str]:
    """Two topics, three groups: lagging on several partitions, caught up, on two topics."""
    a, b = names("batched-a"), names("batched-b")
    create_topics(bootstrap, a, partitions=3)
    create_topics(bootstrap, b)
    produce(bootstrap, a, {0: 6, 1: 4, 2: 2})
    produce(bootstrap, b, {0: 5})
    groups = {"lagging": names("batched-lagging"), "caught": names("batched-caught"),
              "both": names("batched-both")}
    kp_commit(bootstrap, groups["lagging"], {(a, 0): 1, (a, 1): 4, (a, 2): 0})
    kp_commit(bootstrap, groups["caught"], {(a, 0): 6, (a, 1): 4, (a, 2): 2})
    kp_commit(bootstrap, groups["both"], {(a, 2): 1, (b, 0): 2})
    return {"a": a, "b": b, **groups}


def regex(world: dict[str, str]) -> str:
    return "^(" + "|".join(world[k] for k in ("lagging", "caught", "both")) + ")$"


@integration
def test_batched_and_per_group_paths_give_identical_lag(cluster: ClusterConfig,
                                                        world: dict[str, str]) -> None:
    with LagCollector(cluster, LagHistory.in_memory()) as batched, \
            LagCollector(cluster, LagHistory.in_memory(), offsets_via="per-group") as per_group:
        by_batch = batched.refresh(regex(world))
        by_group = per_group.refresh(regex(world))
        requests = batched.batched_requests
    assert by_batch.offsets_via == "batched"
    assert "OffsetFetch v8" in (by_batch.offsets_via_reason or "")
    assert by_group.offsets_via == "per-group"
    assert numbers(by_batch) == numbers(by_group)
    a, b = world["a"], world["b"]
    assert numbers(by_batch)[world["lagging"]] == ("EMPTY", 7, None, (
        (a, 0, 1, 6, 5, None), (a, 1, 4, 4, 0, None), (a, 2, 0, 2, 2, None)))
    assert numbers(by_batch)[world["both"]][1:] == (4, None, (
        (a, 2, 1, 2, 1, None), (b, 0, 2, 5, 3, None)))
    assert numbers(by_batch)[world["caught"]][1] == 0
    # three groups, one coordinator: one OffsetFetch and one DescribeGroups
    assert requests["OffsetFetch"] == 1 and requests["DescribeGroups"] == 1


@integration
def test_parts_judged_as_they_land_give_what_one_whole_read_gives(
        cluster: ClusterConfig, world: dict[str, str]) -> None:
    """`refresh` judges each part of the batched read as it lands (`LagCollector._fetch`):
    one group per part here, so every group is its own part; the snapshot is the one
    judged from the whole read at once (`fetch` then `evaluate`)."""
    judged: list[list[str]] = []

    class Counting(LagCollector):
        def _judge(self, groups, ends, now):  # type: ignore[no-untyped-def]
            judged.append([d.group for d in groups])
            return super()._judge(groups, ends, now)

    with Counting(cluster, LagHistory.in_memory()) as parts, \
            LagCollector(cluster, LagHistory.in_memory()) as whole:
        parts.batched_chunk = 1
        by_parts = parts.refresh(regex(world))
        by_whole = whole.evaluate(whole.fetch(re.compile(regex(world))))
    assert sorted(len(groups) for groups in judged) == [1, 1, 1]  # three parts of one group

    def timeless(snapshot: LagSnapshot) -> list:  # lag in seconds runs with the clock
        return [dataclasses.replace(g, max_lag_seconds=None, partitions=tuple(
            dataclasses.replace(p, lag_seconds=None) for p in g.partitions))
            for g in snapshot.groups]

    assert timeless(by_parts) == timeless(by_whole)  # statuses and reasons included


@integration
@pytest.mark.parametrize("chunk", [1000, 1])
def test_an_error_on_one_group_leaves_the_others_right(broker, cluster: ClusterConfig,
                                                       world: dict[str, str], names,
                                                       chunk: int) -> None:
    denied, moved = names("batched-denied"), names("batched-moved")
    a = world["a"]
    kp_commit(broker.bootstrap, denied, {(a, 0): 2})
    kp_commit(broker.bootstrap, moved, {(a, 0): 3})
    faults = Faults(
        offsets={denied: GROUP_AUTHORIZATION_FAILED},
        describe={denied: GROUP_AUTHORIZATION_FAILED},
        partition={world["both"]: (2, UNKNOWN_TOPIC_OR_PARTITION)},
        once={moved: NOT_COORDINATOR},
    )
    with LagCollector(cluster, LagHistory.in_memory()) as direct:
        expected = numbers(direct.refresh(regex(world)))
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    wanted = f"^({world['lagging']}|{world['caught']}|{world['both']}|{denied}|{moved})$"
    with FaultProxy(port, faults) as proxy, LagCollector(
            ClusterConfig({"bootstrap.servers": proxy.bootstrap}),
            LagHistory.in_memory()) as collector:
        collector.batched_chunk = chunk  # 1: a part per group, the moved one read again
        snapshot = collector.refresh(wanted)
        requests = dict(collector.batched_requests)
    assert snapshot.offsets_via == "batched"
    got = numbers(snapshot)
    # untouched groups: exactly what the broker says without the proxy
    assert got[world["lagging"]] == expected[world["lagging"]]
    assert got[world["caught"]] == expected[world["caught"]]
    # the unauthorized group carries its error and status ERR, nothing else is lost
    bad = snapshot.group(denied)
    assert bad is not None and bad.status is Status.ERR
    assert "GROUP_AUTHORIZATION_FAILED" in (bad.error or "")
    assert "committed offsets:" in bad.error and "describe:" in bad.error
    # a partition error stays on that partition
    both = {(p.topic, p.partition): p for p in snapshot.group(world["both"]).partitions}
    assert both[(a, 2)].status is Status.ERR
    assert "UNKNOWN_TOPIC_OR_PARTITION" in (both[(a, 2)].error or "")
    assert (both[(world["b"], 0)].committed_offset, both[(world["b"], 0)].lag) == (2, 3)
    # the group whose coordinator "moved" was looked up and asked again: right numbers
    assert moved in faults.seen_once
    assert numbers(snapshot)[moved] == ("EMPTY", 3, None, ((a, 0, 3, 6, 3, None),))
    asked = 5 if chunk == 1 else 1  # requests of the first ask: a group each, or one
    assert requests["OffsetFetch"] == asked + 1 and requests["FindCoordinator"] == asked + 1
    assert faults.offset_fetches[0] == 5 // asked  # groups in the first request


@integration
def test_fallback_for_a_setting_kafka_python_cannot_express(capsys, cluster: ClusterConfig,
                                                            world: dict[str, str]) -> None:
    # a real librdkafka property, harmless on loopback, that kafka-python has no name for
    odd = ClusterConfig({**cluster.properties, "broker.address.family": "v4"})
    with LagCollector(odd, LagHistory.in_memory()) as collector:
        snapshot = collector.refresh(regex(world))
    assert snapshot.offsets_via == "per-group"
    assert snapshot.offsets_via_reason == "broker.address.family is not mapped to kafka-python"
    with LagCollector(cluster, LagHistory.in_memory()) as collector:
        assert numbers(snapshot) == numbers(collector.refresh(regex(world)))

    code = main(["-b", cluster.bootstrap_servers, "-X", "broker.address.family=v4", "lag",
                 "--group", regex(world), "--json", "--samples", "1"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    assert (doc["offsets_via"], doc["offsets_via_reason"]) == (
        "per-group", "broker.address.family is not mapped to kafka-python")


# ---------------------------------------------------------------- more requests than fit in flight

#: groups of the in-flight tests: with chunk=1 a step sends 2 requests per group, far more
#: than kafka-python's 64 in flight per connection
MANY = 150


@pytest.fixture
def many(bootstrap: str, names) -> dict:
    """MANY groups on one two-partition topic, each with its own committed offsets,
    committed by kafka-python's admin client (an independent client, one request each)."""
    from kafka import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata, TopicPartition

    topic, base = names("inflight"), names("inflight-g")
    create_topics(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, {0: 9, 1: 7})
    groups = [f"{base}-{i:03d}" for i in range(MANY)]
    expected = {g: {(topic, 0): i % 10, (topic, 1): (3 * i) % 8} for i, g in enumerate(groups)}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for g, offsets in expected.items():
            answer = admin.alter_group_offsets(
                g, {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                    for (t, p), o in offsets.items()})
            assert all(e.errno == 0 for e in answer.values()), answer
    finally:
        admin.close()
    return {"topic": topic, "groups": groups, "expected": expected,
            "regex": f"^{re.escape(base)}-"}


def committed(read: BatchedRead) -> dict[str, dict]:
    return {g: dict(r.committed) for g, r in read.groups.items()}


def per_group_committed(cluster: ClusterConfig, regex: str) -> dict[str, dict]:
    with LagCollector(cluster, LagHistory.in_memory(), offsets_via="per-group") as collector:
        snapshot = collector.refresh(regex)
    assert snapshot.offsets_via == "per-group"
    return {g.group: {(p.topic, p.partition): p.committed_offset for p in g.partitions}
            for g in snapshot.groups}


@integration
def test_more_requests_than_fit_in_flight_all_come_back_right(cluster: ClusterConfig,
                                                              many: dict) -> None:
    groups, expected = many["groups"], many["expected"]
    # the premise: each step has more requests than kafka-python lets a connection hold
    assert 2 * MANY > MAX_IN_FLIGHT > WINDOW
    with BatchedGroupReader(cluster, chunk=1) as reader:
        first = reader.read(groups)  # coordinators looked up: a new connection to the coordinator
        second = reader.read(groups)  # coordinators cached: the connection is open and ready
    for read in (first, second):
        assert {g: r.errors for g, r in read.groups.items() if r.errors} == {}
        assert committed(read) == expected
        assert {g: r.state for g, r in read.groups.items()} == dict.fromkeys(groups, "EMPTY")
        # one OffsetFetch and one DescribeGroups per group: the step is far past the window
        assert (read.requests["OffsetFetch"], read.requests["DescribeGroups"]) == (MANY, MANY)
    assert first.requests["FindCoordinator"] == MANY  # chunk=1: one key per request too
    assert "FindCoordinator" not in second.requests
    assert per_group_committed(cluster, many["regex"]) == expected


@integration
def test_pre_v4_find_coordinator_sends_one_request_per_group_through_the_window(
        cluster: ClusterConfig, many: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # only the choice of path is forced: the broker answers the FindCoordinator v3
    # requests (one key each) and everything after, as a pre-Kafka-3.0 broker would
    monkeypatch.setattr(BatchedGroupReader, "_find_coordinator_version",
                        staticmethod(lambda manager: 3))
    with BatchedGroupReader(cluster) as reader:
        read = reader.read(many["groups"])
    assert {g: r.errors for g, r in read.groups.items() if r.errors} == {}
    assert committed(read) == many["expected"]
    assert dict(read.requests) == {"FindCoordinator": MANY, "OffsetFetch": 1, "DescribeGroups": 1}


@integration
def test_a_coordinator_that_cannot_be_reached_fails_only_its_groups(
        broker, cluster: ClusterConfig, many: dict) -> None:
    groups, expected = many["groups"], many["expected"]
    # a third of the groups is said to live on a node where nothing listens
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    stranded = groups[::3]
    assert 2 * len(stranded) > WINDOW  # the premise: more requests for it than one window
    faults = Faults(elsewhere=dict.fromkeys(stranded, (4242, dead_port)))
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    with FaultProxy(port, faults) as proxy, BatchedGroupReader(
            ClusterConfig({"bootstrap.servers": proxy.bootstrap}), timeout=5, chunk=1) as reader:
        read = reader.read(groups)
        faults.elsewhere.clear()  # the stranded groups' coordinator is the broker again
        again = reader.read(groups)
    for g in stranded:
        errors = read.groups[g].errors
        assert errors and all(e.startswith(("committed offsets: ", "describe: ")) for e in errors)
        assert "KafkaConnectionError" in " ".join(errors), errors
        assert read.groups[g].committed == {}
    served = [g for g in groups if g not in set(stranded)]
    assert {g: read.groups[g].errors for g in served if read.groups[g].errors} == {}
    assert {g: dict(read.groups[g].committed) for g in served} == {g: expected[g] for g in served}
    # the next read looks the failed groups' coordinators up again, and finds them
    assert again.requests["FindCoordinator"] == len(stranded)
    assert {g: r.errors for g, r in again.groups.items() if r.errors} == {}
    assert committed(again) == expected


@integration
def test_a_group_id_kafka_cannot_carry_fails_only_itself(cluster: ClusterConfig,
                                                         world: dict[str, str]) -> None:
    # a lone surrogate cannot be encoded as UTF-8: kafka-python raises while encoding it,
    # and on a connection still being opened the requests buffered after it never go out
    odd, huge = "odd-\udcff", "g" * 40_000
    good = [world["lagging"], world["caught"], world["both"]]
    with BatchedGroupReader(cluster, chunk=1) as reader:
        read = reader.read([good[0], odd, good[1], huge, good[2]])
    assert list(read.groups) == [good[0], odd, good[1], huge, good[2]]
    assert read.groups[odd].errors == ("group id: not valid UTF-8; not asked",)
    assert read.groups[huge].errors == (
        "group id: 40000 bytes, longer than a Kafka string; not asked",)
    assert {g: read.groups[g].errors for g in good} == dict.fromkeys(good, ())
    a = world["a"]
    assert dict(read.groups[world["lagging"]].committed) == {(a, 0): 1, (a, 1): 4, (a, 2): 0}
    assert read.requests["OffsetFetch"] == 3


@integration
@pytest.mark.timeout(60)
def test_a_request_kafka_python_never_answers_cannot_hang_the_read(
        cluster: ClusterConfig, world: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # let a name through that kafka-python cannot encode: buffered for the connection
    # being opened, it makes kafka-python lose the requests buffered with it (their
    # futures never resolve); the read must still end, with every group accounted for
    import collectors.batched_groups as batched

    monkeypatch.setattr(batched, "_unsendable", lambda group: None)
    odd = "odd-\udcff"
    asked = [world["lagging"], odd, world["caught"]]
    with BatchedGroupReader(cluster, timeout=1, chunk=1) as reader:
        read = reader.read(asked)
    assert list(read.groups) == asked
    assert read.groups[odd].errors
    assert any("no answer within 1 s" in e for r in read.groups.values() for e in r.errors)


# ---------------------------------------------------------------- settings mapping


def settings(**props: str) -> dict:
    return client_settings(ClusterConfig({"bootstrap.servers": "k1:9093", **props}))


def test_plaintext_and_ssl_map_one_to_one() -> None:
    assert settings()["security_protocol"] == "PLAINTEXT"
    ssl = settings(**{"security.protocol": "ssl", "ssl.ca.location": "/ca.pem",
                      "ssl.certificate.location": "/me.pem", "ssl.key.location": "/me.key",
                      "ssl.key.password": "s3cret",
                      "ssl.endpoint.identification.algorithm": "none"})
    assert ssl == {"bootstrap_servers": "k1:9093", "security_protocol": "SSL",
                   "ssl_cafile": "/ca.pem", "ssl_certfile": "/me.pem", "ssl_keyfile": "/me.key",
                   "ssl_password": "s3cret", "ssl_check_hostname": False}


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "sasl_ssl"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plain_and_scram_map(protocol: str, mechanism: str) -> None:
    out = settings(**{"security.protocol": protocol, "sasl.mechanisms": mechanism,
                      "sasl.username": "svc", "sasl.password": "pw"})
    assert (out["security_protocol"], out["sasl_mechanism"]) == (protocol.upper(), mechanism)
    assert (out["sasl_plain_username"], out["sasl_plain_password"]) == ("svc", "pw")
    assert out["ssl_check_hostname"] is True


@pytest.mark.parametrize(("props", "named"), [
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI"}, "GSSAPI"),
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER",
      "sasl.oauthbearer.client.secret": "hush"}, "OAUTHBEARER"),
    ({"security.protocol": "SSL", "ssl.key.pem": "-----BEGIN hush"}, "ssl.key.pem"),
    ({"security.protocol": "SSL", "ssl.ca.location": "probe"}, "probe"),
    ({"security.protocol": "ssl", "enable.ssl.certificate.verification": "false"},
     "enable.ssl.certificate.verification"),
])
def test_what_kafka_python_cannot_express_falls_back(props: dict, named: str) -> None:
    with pytest.raises(BatchedUnavailable) as caught:
        settings(**props)
    assert named in str(caught.value)
    assert "hush" not in str(caught.value)


LIST_OFFSETS = 2


@integration
def test_end_offsets_that_hang_cost_one_timeout_not_one_per_part(
        broker, cluster: ClusterConfig, world: dict[str, str]) -> None:
    """A partition leader that never answers ListOffsets: every partition says its end
    offset is unknown (librdkafka answers a timed-out ListOffsets with offset -1001,
    which once made every such group look caught up, OK); the first part that asks
    waits its timeout, later parts do not ask those partitions again (a refresh of ten
    parts must not wait ten timeouts)."""
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    seen = {}
    for chunk in (1000, 1):  # one part; then a part per group (three)
        faults = Faults(swallow={LIST_OFFSETS})
        with FaultProxy(port, faults) as proxy, LagCollector(
                ClusterConfig({"bootstrap.servers": proxy.bootstrap}),
                LagHistory.in_memory(), timeout=1.0) as collector:
            collector.batched_chunk = chunk
            snapshot = collector.refresh(regex(world))
        seen[chunk] = faults.seen[LIST_OFFSETS]
        assert len(snapshot.groups) == 3
        for g in snapshot.groups:
            assert g.status is Status.ERR
            assert all("end offset unknown" in (p.error or "") for p in g.partitions), g
            assert g.total_lag == 0 and g.status_reason != "caught up"
    # parts: "both" asks a2 and b0, "caught" asks a0 and a1 (a2 failed already),
    # "lagging" asks nothing; asking every part's partitions would be three calls
    assert 0 < seen[1] <= 2 * seen[1000], seen
