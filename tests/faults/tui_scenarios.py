"""The console against a broker that dies or stops answering, then comes back (Pilot).

Run by tests/test_outage_tui.py, each scenario in its own pytest process: when
a connection drops under a coordinator request, librdkafka 2.16 can abort the
whole process (confluentinc/librdkafka#4605), and that must not take the
rest of the suite with it.

Real broker, real faults: SIGKILL of Tansu and a restart on the same port, and
a TCP proxy that blackholes every connection. The console must say
"unreachable" (never "connected") while the cluster is away, keep the last
good data with its age, and turn live again only after a complete refresh
that finished after the cluster answered. How fast is for bench/outage.py;
these tests only wait (with generous limits) for the states to appear.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.history import LagHistory
from collectors.lag import cluster_key
from console.app import LagdeckApp
from console.data import KafkaSource
from tests.conftest import create_topics, kp_commit, kp_producer
from tests.faults.cluster import FaultyBroker
from tests.tui_fixtures import until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SIZE = (120, 34)
TOPIC, GROUP = "outage.orders", "outage-service"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[FaultyBroker]:
    with FaultyBroker(tmp_path) as broker:
        yield broker


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[FaultyBroker]:
    with FaultyBroker(tmp_path, proxy=True) as broker:
        yield broker


def seed(bootstrap: str, records: int = 5, committed: int = 2) -> None:
    """A topic with records and a group with a committed offset (lag = records - committed)."""
    create_topics(bootstrap, TOPIC)
    producer = kp_producer(bootstrap)
    for i in range(records):
        producer.send(TOPIC, f"order-{i}".encode(), partition=0).get(timeout=10)
    producer.close()
    kp_commit(bootstrap, GROUP, {(TOPIC, 0): committed})


def bar_text(app: LagdeckApp) -> str:
    return str(app.screen.query_one("#status-bar").render())


async def wait_live_with_group(pilot, app: LagdeckApp, after: float = 0.0) -> None:
    def ready() -> bool:
        view = app.lag_view
        return (app.connection.state == "connected" and view is not None
                and view.snapshot.taken_at >= after
                and any(g.group == GROUP for g in view.snapshot.groups))

    await until(pilot, ready, timeout=60, message="live data with the group")


async def test_killed_broker_shows_unreachable_with_stale_data_then_recovers(killable):
    seed(killable.bootstrap)
    app = LagdeckApp(KafkaSource(killable.cluster(), timeout=5.0), poll_interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_live_with_group(pilot, app)
        good = app.lag_view.snapshot.taken_at

        killable.kill()
        await until(pilot, lambda: app.connection.state == "unreachable", timeout=30,
                    message="the outage to show")
        assert app.lag_view is not None and app.lag_view.snapshot.taken_at == good, \
            "the last good data must stay on screen"
        bar = bar_text(app)
        assert "unreachable" in bar and " old" in bar and "connected" not in bar
        assert app.connection.last_ok == good
        assert app.outage_since is not None

        killable.restart()  # in-memory storage: recreate what the screen shows
        back = time.time()
        seed(killable.bootstrap)
        await wait_live_with_group(pilot, app, after=back)
        assert app.outage_since is None
        assert "● connected" in bar_text(app)


async def test_blackholed_broker_shows_unreachable_then_recovers(proxied):
    """A partition (connections accepted, nothing answered): the poll in flight hangs,
    the probe tells. No history sample is invented for the outage: status after it is
    judged from real samples only."""
    seed(proxied.bootstrap)
    source = KafkaSource(proxied.cluster(), timeout=5.0)
    app = LagdeckApp(source, poll_interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_live_with_group(pilot, app)
        # a second sample, so the group has a judged window before the outage
        first = app.lag_view.snapshot.taken_at
        await until(pilot, lambda: app.lag_view.snapshot.taken_at > first, timeout=30,
                    message="a second poll")

        proxied.proxy.blackhole()
        cut_at = time.time()
        await until(pilot, lambda: app.connection.state == "unreachable", timeout=30,
                    message="the outage to show")
        assert "unreachable" in bar_text(app)
        assert "no answer" in app.connection.detail
        # stays unreachable (never "connected") while the blackhole lasts, backing off
        await until(pilot, lambda: app.connection.retry_in is not None
                    and app.connection.retry_in >= 2 * app.outage.probe_interval, timeout=30,
                    message="a second unanswered probe")
        assert app.connection.state == "unreachable"
        healed_at = time.time()
        proxied.proxy.heal()
        await wait_live_with_group(pilot, app, after=healed_at)

    history = LagHistory()
    try:
        window = history.windows(cluster_key(proxied.cluster()), [(GROUP, TOPIC, 0)], 50)
        times = [s.time for s in window.get((GROUP, TOPIC, 0), [])]
    finally:
        history.close()
    assert times, "the history kept no samples"
    invented = [t for t in times if cut_at + 1.0 < t < healed_at]
    assert not invented, f"samples recorded while the cluster was away: {invented}"


async def test_demo_says_when_its_embedded_broker_dies(killable):
    """`lagdeck demo` runs the console with the broker's `check` as its watchdog."""
    app = LagdeckApp(KafkaSource(killable.cluster(), timeout=5.0), poll_interval=1.0,
                     watchdog=killable.broker.check)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "connected", timeout=60,
                    message="the first poll")
        assert app.watchdog_error is None
        killable.kill()
        await until(pilot, lambda: app.watchdog_error is not None, timeout=30,
                    message="the demo to notice")
        assert "killed by signal 9 (SIGKILL)" in app.watchdog_error
        assert str(killable.log_path) in app.watchdog_error
