"""Shared fixtures: isolated state/config, the real embedded broker, test clients.

Every test runs with its own `LAGDECK_STATE_DIR` and `LAGDECK_CONFIG`, so no
test reads the developer's real config or history. Broker tests use one Tansu
process per session (`broker`) and unique topic and group names (`names`).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from collectors.config import ClusterConfig
from console.embedded import EmbeddedBroker
from tests.faults.cluster import FaultyBroker

if TYPE_CHECKING:
    from tests.registry_server import RegistryServer
    from tests.sr_fixtures import Writers

#: Consumer settings that make group joins fast on Tansu (see docs/broker-notes.md).
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("LAGDECK_STATE_DIR", str(state))
    monkeypatch.setenv("LAGDECK_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.delenv("LAGDECK_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    # An explicit LAGDECK_CONFIG that does not exist is an error; tests that
    # want "no config" get an empty file.
    (tmp_path / "no-config.toml").write_text("")
    return state


@pytest.fixture(autouse=True)
def forgotten_secrets() -> Iterator[None]:
    """Secret values are remembered process-wide (`collectors.redact`), as in lagdeck
    itself; a test that configured a password like "error" made a later test's audit
    line read `"outcome": "[redacted]"` in the same worker. Each test starts with the
    secrets it found and leaves none of its own behind."""
    from collectors import redact

    with redact._lock:
        before = set(redact._known_secrets)
    yield
    with redact._lock:
        redact._known_secrets.clear()
        redact._known_secrets.update(before)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Tansu broker for the session, on a free loopback port."""
    log_dir = tmp_path_factory.mktemp("broker")
    os.environ.setdefault("LAGDECK_STATE_DIR", str(log_dir))
    with EmbeddedBroker(log_dir=log_dir) as b:
        yield b
        assert not b.panicked(), f"Tansu panicked during the session; see {b.log_path}"


@pytest.fixture
def cluster(broker: EmbeddedBroker) -> ClusterConfig:
    return broker.cluster()


@pytest.fixture
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


_counter = itertools.count()


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique names for topics and groups, so tests on one broker never collide."""
    run = uuid.uuid4().hex[:6]

    def make(prefix: str) -> str:
        return f"{prefix}-{run}-{next(_counter)}"

    return make


def create_topics(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    """Create topics explicitly (Tansu auto-creates with 4 partitions on metadata requests)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics],
        operation_timeout=10,
        request_timeout=10,
    )
    for future in futures.values():
        future.result(timeout=15)


def kp_producer(bootstrap: str, **extra):
    """A kafka-python producer: an independent client, as another team's service."""
    from kafka import KafkaProducer

    conf = {"bootstrap_servers": bootstrap, "linger_ms": 0, "batch_size": 1, "acks": 1}
    conf.update(extra)
    return KafkaProducer(**conf)


def kp_commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit offsets with kafka-python, as a service with manual assignment would
    (the group stays EMPTY)."""
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                         for (t, p), o in offsets.items()})
    finally:
        consumer.close()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, every: float = 0.1,
               message: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


# -- Schema Registry: one stand-in registry and confluent-kafka's real serializers per module


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    from tests.registry_server import RegistryServer  # serializers: imported when used

    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="module")
def writers(registry: RegistryServer) -> Iterator[Writers]:
    from tests.sr_fixtures import Writers

    w = Writers(registry.url)
    yield w
    w.close()


# -- fault injection: a broker that can be SIGKILLed and restarted, or reached through a proxy


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[FaultyBroker]:
    with FaultyBroker(tmp_path / "broker-logs") as broker:
        yield broker


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[FaultyBroker]:
    """The broker behind `tests/faults/proxy.py` (blackhole, cut, delay)."""
    with FaultyBroker(tmp_path / "broker-logs", proxy=True) as broker:
        yield broker
