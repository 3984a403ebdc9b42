"""One poller shared through a compacted topic, watchers that split the groups (issue 15).

Real `lagdeck watch --publish` processes on the real broker, each with its own
state directory (as on separate hosts); the snapshot topic is read back by an
independent tail in the test. Group counts are modest where the property does
not need more; the fleet test uses `FLEET_GROUPS` groups.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from collectors.snapshot_topic import decode
from tests.conftest import create_topics, wait_until
from tests.test_watch import Proc
from tests.test_webhook import Receiver

pytestmark = pytest.mark.integration

#: groups watched by the fleet of three (3,000 takes ~25 s more than 1,000 here)
FLEET_GROUPS = int(os.environ.get("LAGDECK_FLEET_GROUPS", "3000"))
HOT = 24
INTERVAL = 3.0
SESSION = 2.0


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1,
                         "linger.ms": 0})
    for p in range(partitions):
        for _ in range(per_partition):
            producer.produce(topic, b"x", partition=p)
    assert producer.flush(30) == 0


def commit_groups(bootstrap: str, offsets: dict[str, dict[tuple[str, int], int]]) -> None:
    """Commit offsets for many (empty) groups at once: alter_consumer_group_offsets
    creates them, many requests in flight."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    pending = []
    for group, tps in offsets.items():
        pending += admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p, o) for (t, p), o in tps.items()])],
            request_timeout=30).values()
        if len(pending) >= 300:
            for f in pending:
                f.result(timeout=60)
            pending = []
    for f in pending:
        f.result(timeout=60)


class Tail:
    """Every record of the snapshot topic, in order, decoded: (group, publisher, taken_at,
    total_lag) or (group, None, None, None) for a tombstone."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 6) -> None:
        self.records: list[tuple[str, str | None, float | None, int | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-tail",
                                   "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                               for p in range(partitions)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = []
            for msg in self._consumer.consume(5000, timeout=0.2):
                if msg.error():
                    continue
                key = msg.key().decode()
                if msg.value() is None:
                    batch.append((key, None, None, None))
                    continue
                group, prov = decode(msg.value())
                batch.append((key, prov.published_by, prov.snapshot_at, group.total_lag))
            with self._lock:
                self.records += batch
        self._consumer.close()

    def snapshot(self) -> list[tuple[str, str | None, float | None, int | None]]:
        with self._lock:
            return list(self.records)

    def latest(self) -> dict[str, tuple[str | None, float | None]]:
        out: dict[str, tuple[str | None, float | None]] = {}
        for group, publisher, at, _lag in self.snapshot():
            if publisher is None:
                out.pop(group, None)
            else:
                out[group] = (publisher, at)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_three_watchers_split_the_groups_and_take_over_from_a_killed_one(
        bootstrap: str, names, tmp_path: Path) -> None:
    prefix = names("fleet")
    topic, snapshots = names("fleet-orders"), names("fleet-lag")
    create_topics(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, 2, 10)
    plain = {f"{prefix}-{i:04d}": {(topic, 0): i % 10, (topic, 1): 10}
             for i in range(FLEET_GROUPS - HOT)}
    hot = {f"{prefix}-hot-{i:02d}": {(topic, 0): 0, (topic, 1): 0} for i in range(HOT)}
    started = time.monotonic()
    commit_groups(bootstrap, {**plain, **hot})
    setup_seconds = time.monotonic() - started
    everyone = set(plain) | set(hot)

    watchers: list[Proc] = []
    tail = None
    with Receiver() as receiver:
        rules = tmp_path / "rules.toml"
        rules.write_text(f'[[rule]]\nname = "hot"\ngroup = "{prefix}-hot-.*"\nmax_lag = 1\n'
                         f'severity = "warning"\n\n[[sink]]\ntype = "webhook"\n'
                         f'url = "{receiver.url}"\n')
        try:
            for i in range(3):
                state = tmp_path / f"state-{i}"
                state.mkdir()
                watchers.append(Proc(["-b", bootstrap, "watch", "--rules", str(rules),
                                      "--publish", snapshots, "--group", f"^{prefix}-",
                                      "--interval", str(INTERVAL),
                                      "--session-timeout", str(SESSION)], state))
            tail = Tail(bootstrap, snapshots)

            # every group published, by three watchers
            def settled() -> bool:
                latest = tail.latest()
                return set(latest) == everyone and len({p for p, _ in latest.values()}) == 3

            wait_until(settled, timeout=90, every=0.5, message="three publishers, every group")
            # one window of two rounds after that: each group by exactly one watcher
            window_start = time.time() + INTERVAL
            wait_until(lambda: time.time() > window_start + 2 * INTERVAL + 1, timeout=30,
                       every=0.2, message="a window of two rounds")
            window = [(g, p) for g, p, at, _ in tail.snapshot()
                      if p is not None and at is not None
                      and window_start <= at <= window_start + 2 * INTERVAL]
            by_group: dict[str, set[str]] = defaultdict(set)
            for group, publisher in window:
                by_group[group].add(publisher)
            owned: dict[str, set[str]] = defaultdict(set)
            for group, publishers in by_group.items():
                for publisher in publishers:
                    owned[publisher].add(group)
            assert set(by_group) == everyone, "every group is polled in the window"
            assert all(len(p) == 1 for p in by_group.values()), \
                {g: p for g, p in by_group.items() if len(p) > 1}
            assert len(owned) == 3
            shares = list(owned.values())
            assert set().union(*shares) == everyone
            assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])

            # every hot group fired once, whoever owned it first
            wait_until(lambda: len([b for b in receiver.received()
                                    if b["event"] == "firing"]) >= HOT,
                       timeout=30, message="a firing notice per hot group")

            # SIGKILL the watcher owning the most hot groups
            victim_id = max(owned, key=lambda p: (len(owned[p] & set(hot)), p))
            victim_groups = owned[victim_id]
            assert owned[victim_id] & set(hot), "the victim owns some hot groups"
            pid = int(victim_id.rsplit(":", 1)[1])
            victim = next(w for w in watchers if w.proc.pid == pid)
            killed_at = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)

            def taken_over() -> bool:
                latest = tail.latest()
                return all(latest[g][0] != victim_id and latest[g][1] > killed_at
                           for g in victim_groups)

            budget = SESSION + 2 * INTERVAL
            # the condition is polled; the bound is the (session timeout + two
            # intervals) plus one more interval for a refresh on this loaded 2-core machine
            wait_until(taken_over, timeout=budget + INTERVAL + 5, every=0.2,
                       message=f"{len(victim_groups)} groups published by the others")
            handover = time.time() - killed_at
            survivors = {p for p, _ in tail.latest().values()}
            assert victim_id not in survivors and len(survivors) == 2

            # the new owners did not fire again; now resolve every hot group
            commit_groups(bootstrap, {g: {(topic, 0): 10, (topic, 1): 10} for g in hot})
            resolved_at = time.time()

            def all_resolved() -> bool:
                return {b["group"] for b in receiver.received()
                        if b["event"] == "resolved"} == set(hot)

            wait_until(all_resolved, timeout=30, message="a resolved notice per hot group")
            # one more round of every survivor after that, then count
            wait_until(lambda: all(any(p == s and at > resolved_at + INTERVAL
                                       for _, p, at, _ in tail.snapshot())
                                   for s in survivors), timeout=30, every=0.2,
                       message="a round after the resolves")
            bodies = receiver.received()
            firing = [b["group"] for b in bodies if b["event"] == "firing"]
            resolved = [b["group"] for b in bodies if b["event"] == "resolved"]
            assert sorted(firing) == sorted(hot), "one firing per hot group, none repeated"
            assert sorted(resolved) == sorted(hot), "one resolve per hot group, none lost"
            assert len({b["id"] for b in bodies}) == len(bodies)
            print(f"\n{len(everyone)} groups created in {setup_seconds:.1f}s; shares "
                  f"{sorted(len(s) for s in shares)}; victim owned {len(victim_groups)} "
                  f"groups ({len(owned[victim_id] & set(hot))} hot); taken over in "
                  f"{handover:.1f}s (session {SESSION:g}s + 2 x {INTERVAL:g}s = {budget:g}s)")
        finally:
            if tail is not None:
                tail.close()
            for w in watchers:
                if w.proc.poll() is None:
                    w.stop(signal.SIGTERM)
            for w in watchers:
                w.kill()
            err = "".join(line for w in watchers for line in w.err)
            assert "Traceback" not in err, err


# ---------------------------------------------------------------- viewers


class Stats:
    """librdkafka's own statistics of one client: requests sent, per type and in total."""

    def __init__(self) -> None:
        self.latest: dict = {}

    def __call__(self, raw: str) -> None:
        self.latest = json.loads(raw)

    def overrides(self) -> dict:
        return {"statistics.interval.ms": 100, "stats_cb": self}

    def requests(self) -> tuple[dict[str, int], int]:
        by_type: dict[str, int] = defaultdict(int)
        total = 0
        for broker in self.latest.get("brokers", {}).values():
            total += broker["tx"]
            for kind, n in (broker.get("req") or {}).items():
                by_type[kind] += n
        return dict(by_type), total


def settle_stats(poll, stats: Stats) -> None:
    """Serve callbacks until a statistics round after the work was seen."""
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        poll(0.05)
    assert stats.latest, "no statistics received"


GROUP_CALLS = ("OffsetFetch", "DescribeGroups", "JoinGroup", "SyncGroup", "Heartbeat",
               "OffsetCommit", "LeaveGroup", "ListGroups", "ConsumerGroupDescribe",
               "ConsumerGroupHeartbeat")


@pytest.fixture
def published(bootstrap: str, cluster, names) -> dict:
    """40 groups at assorted offsets, published once by `watch --publish --once`."""
    from console.cli import main

    prefix, topic, snapshots = names("view"), names("view-orders"), names("view-lag")
    create_topics(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, 2, 12)
    groups = {f"{prefix}-{i:02d}": {(topic, 0): i % 12, (topic, 1): (i * 5) % 13}
              for i in range(40)}
    commit_groups(bootstrap, groups)
    code = main(["-b", bootstrap, "watch", "--publish", snapshots, "--group", f"^{prefix}-",
                 "--once", "--session-timeout", "2", "--interval", "2"])
    assert code == 0
    return {"prefix": prefix, "topic": topic, "snapshots": snapshots, "groups": groups}


def lag_table(groups) -> dict[tuple[str, str, int], tuple]:
    return {(g.group, p.topic, p.partition): (p.committed_offset, p.end_offset, p.lag)
            for g in groups for p in g.partitions}


def test_a_viewer_shows_the_polled_lag_without_asking_any_group_coordinator(
        cluster, published: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from collectors.lag import LagCollector
    from collectors.snapshot_topic import SnapshotReader
    from console.cli import main

    with LagCollector(cluster) as collector:
        direct = collector.refresh(f"^{published['prefix']}-")
    stats = Stats()
    reader = SnapshotReader(cluster, published["snapshots"], client_overrides=stats.overrides())
    try:
        view = reader.read()
        settle_stats(reader.poll, stats)
    finally:
        reader.close()
    assert lag_table(view.snapshot.groups) == lag_table(direct.groups)
    assert len(view.snapshot.groups) == 40
    by_type, total = stats.requests()
    assert by_type.get("Fetch", 0) >= 1 and by_type.get("ListOffsets", 0) >= 1
    assert {k: by_type[k] for k in GROUP_CALLS if by_type.get(k)} == {}
    assert total == sum(by_type.values()), "every request sent is itemised by type"

    # the same counter does see an OffsetFetch when a client sends one
    control_stats = Stats()
    control = Consumer({"bootstrap.servers": cluster.bootstrap_servers,
                        "group.id": f"{published['prefix']}-00", **control_stats.overrides()})
    try:
        control.committed([TopicPartition(published["topic"], 0)], timeout=10)
        settle_stats(control.poll, control_stats)
    finally:
        control.close()
    assert control_stats.requests()[0].get("OffsetFetch", 0) >= 1

    # the CLI: the same figures, with where they came from
    capsys.readouterr()
    assert main(["-b", cluster.bootstrap_servers, "--from-snapshots", published["snapshots"],
                 "lag", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["offsets_via"] == "snapshots"
    assert {(g["group"], p["topic"], p["partition"]): (p["committed_offset"], p["end_offset"],
                                                        p["lag"])
            for g in doc["groups"] for p in g["partitions"]} == lag_table(direct.groups)
    for g in doc["groups"]:
        assert g["snapshot_at"].endswith("Z") and g["published_by"].count(":") == 1
        assert g["stale"] is False


def test_stale_snapshots_are_shown_as_stale_and_deleted_groups_disappear(
        bootstrap: str, cluster, published: dict, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import dataclasses

    from collectors.snapshot_topic import SnapshotPublisher, read_snapshots
    from console.cli import main

    snapshots, prefix = published["snapshots"], published["prefix"]
    # a publisher that stopped two minutes ago left this snapshot of one group
    first = read_snapshots(cluster, snapshots)
    old = dataclasses.replace(first.snapshot, taken_at=time.time() - 120,
                              groups=first.snapshot.groups[:1])
    stale_group = old.groups[0].group
    publisher = SnapshotPublisher(cluster, snapshots, interval=2.0, published_by="gone:1")
    try:
        publisher.publish(old, owns=lambda g: False)
    finally:
        publisher.close()

    capsys.readouterr()
    assert main(["-b", bootstrap, "--from-snapshots", snapshots, "lag", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    stale = {g["group"]: g for g in doc["groups"] if g["stale"]}
    assert list(stale) == [stale_group]
    assert stale[stale_group]["published_by"] == "gone:1"
    assert stale[stale_group]["age_seconds"] >= 120
    assert main(["-b", bootstrap, "--from-snapshots", snapshots, "lag"]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith(stale_group + " "))
    assert " STALE " in row and "snapshot 2m" in row
    assert "1 STALE" in text

    # watch --once from snapshots judges only fresh groups: the stale one is held
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname = "any"\ngroup = "{prefix}-.*"\nmax_lag = 100000\n')
    assert main(["-b", bootstrap, "--from-snapshots", snapshots, "watch", "--rules",
                 str(rules), "--once"]) == 0
    captured = capsys.readouterr()
    assert "39 group(s) checked" in captured.out
    assert "stale" in captured.err and stale_group in captured.err

    # a group deleted on the cluster gets a tombstone from the next publishing round
    gone = f"{prefix}-07"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_consumer_groups([gone], request_timeout=10)[gone].result(timeout=15)
    assert main(["-b", bootstrap, "watch", "--publish", snapshots, "--group", f"^{prefix}-",
                 "--once", "--session-timeout", "2"]) == 0
    after = read_snapshots(cluster, snapshots)
    assert gone not in after.provenance
    assert len(after.snapshot.groups) == 39
    tail = Tail(bootstrap, snapshots)
    try:
        wait_until(lambda: (gone, None, None, None) in tail.snapshot(), timeout=15,
                   message="a tombstone for the deleted group")
    finally:
        tail.close()


# ---------------------------------------------------------------- Prometheus


def test_metrics_port_serves_every_group_for_prometheus(
        bootstrap: str, names, tmp_path: Path) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families


    prefix, topic = names("prom"), names("prom-orders")
    create_topics(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, 2, 8)
    groups = {f"{prefix}-{i:02d}": {(topic, 0): i, (topic, 1): 8} for i in range(6)}
    commit_groups(bootstrap, groups)
    rules = tmp_path / "rules.toml"
    # the rule names one group; the exporter exports all six
    rules.write_text(f'[[rule]]\nname = "behind"\ngroup = "{prefix}-00"\nmax_lag = 4\n')
    state = tmp_path / "watcher-state"
    state.mkdir()
    # port 0: the system picks one and watch says which on stderr
    proc = Proc(["-b", bootstrap, "watch", "--rules", str(rules), "--group", f"^{prefix}-",
                 "--metrics-port", "127.0.0.1:0", "--interval", "1"], state)
    try:
        def served() -> int | None:
            for line in proc.err:
                if line.startswith("lagdeck: serving metrics at http://127.0.0.1:"):
                    return int(line.rsplit(":", 1)[1].split("/", 1)[0])
            return None

        port = wait_until(served, timeout=30, every=0.2, message="the chosen metrics port")
        def scrape() -> dict:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return {}
            families = {f.name: f for f in text_string_to_metric_families(text)}
            lag = families.get("lagdeck_consumer_lag")
            if lag is None or len(lag.samples) < 12:
                return {}
            return families

        families = wait_until(scrape, timeout=30, every=0.3, message="12 lag series")
        samples = families["lagdeck_consumer_lag"].samples
        by_key = {(s.labels["group"], s.labels["topic"], int(s.labels["partition"])): s
                  for s in samples}
        assert set(by_key) == {(g, t, p) for g, tps in groups.items() for t, p in tps}
        for (group, t, p), sample in by_key.items():
            assert sample.value == 8 - groups[group][(t, p)]
            assert sample.labels["status"] in ("OK", "UNKNOWN", "WARN", "STOP", "STALL", "REWIND")
            assert sample.labels["alert_state"] == ("firing" if group == f"{prefix}-00"
                                                    else "ok")
        seconds = families["lagdeck_consumer_lag_seconds"].samples
        assert {s.labels["group"] for s in seconds} <= set(groups)
    finally:
        code = proc.stop(signal.SIGTERM)
        proc.kill()
    assert code == 1, "".join(proc.err)  # the warning rule was firing
    assert "Traceback" not in "".join(proc.err)


# ---------------------------------------------------------------- the console


def test_console_shows_snapshot_age_publisher_and_stale_groups(
        cluster, published: dict) -> None:
    import asyncio
    import dataclasses

    from textual.widgets import Static

    from collectors.snapshot_topic import SnapshotPublisher, read_snapshots
    from console.app import LagdeckApp
    from console.snapshot_source import SnapshotSource
    from console.widgets.keyed_table import KeyedTable

    first = read_snapshots(cluster, published["snapshots"])
    old = dataclasses.replace(first.snapshot, taken_at=time.time() - 300,
                              groups=first.snapshot.groups[:2])
    stale = {g.group for g in old.groups}
    publisher = SnapshotPublisher(cluster, published["snapshots"], interval=5.0,
                                  published_by="old-host:42")
    try:
        publisher.publish(old, owns=lambda g: False)
    finally:
        publisher.close()

    async def drive() -> tuple[dict, str]:
        source = SnapshotSource(cluster, topic=published["snapshots"])
        app = LagdeckApp(source, poll_interval=3600, cursor_blink=False)
        async with app.run_test(size=(160, 50)):
            await app.workers.wait_for_complete()
            table = app.screen.query_one("#groups", KeyedTable)
            rows = {key: table.values(key) for key in table.row_keys}
            summary = str(app.screen.query_one("#summary", Static).render())
        return rows, summary

    rows, summary = asyncio.run(drive())
    assert set(rows) == set(published["groups"])
    for group, values in rows.items():
        if group in stale:
            assert values[0] == "STALE" and values[2].startswith("stale 5m")
        else:
            assert values[0] != "STALE" and not values[2].startswith("stale")
    assert f"snapshots {published['snapshots']}" in summary
    assert "old-host:42" in summary and "2 STALE" in summary
