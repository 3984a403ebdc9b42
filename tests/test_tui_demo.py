"""The console against the demo world on a real (embedded Tansu) broker, driven with Pilot.

What the issue asks to see: the overview lists the demo's groups with the
stopped one flagged; following an order shows its events and marks; a
redrive from the dead-letters screen moves the ticked records (checked from
outside with kafka-python) and is refused in read-only mode; a replay
preview shows the plan and changes nothing until confirmed.

One broker and one demo world for the module (its topic and group names are
fixed, so it gets a broker of its own rather than the session one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collectors.config import ClusterConfig
from collectors.snapshots import Status
from console.app import LagdeckApp
from console.data import KafkaSource
from console.demo import events as ev
from console.demo.world import DemoWorld
from console.embedded import EmbeddedBroker
from console.screens.dead_letters import DeadLettersScreen
from console.screens.group import GroupScreen
from console.screens.redrive import RedriveScreen
from console.screens.replay import ReplayScreen
from console.screens.timeline import TimelineScreen
from console.widgets.keyed_table import KeyedTable
from tests.conftest import wait_until
from tests.tui_fixtures import confirm_ready, until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SIZE = (140, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, DemoWorld]]:
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("demo-broker")) as broker:
        world = DemoWorld(broker.cluster(), seed=7, rate=5.0, loyalty_stops_after=10.0)
        world.start()
        try:
            yield broker, world
        finally:
            world.stop()
            assert not broker.panicked(), f"Tansu panicked; see {broker.log_path}"


def source(broker: EmbeddedBroker, *, read_only: bool = False) -> KafkaSource:
    cluster = ClusterConfig({"bootstrap.servers": broker.bootstrap}, read_only=read_only)
    return KafkaSource(cluster, timeout=10.0, stuck_after_seconds=15.0)


def dead_letters_outside(bootstrap: str, count: int) -> list:
    """The first `count` records of the DLT, read with kafka-python (independent client)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=2000)
    consumer.assign([TopicPartition(ev.PAYMENTS_DLT, 0)])
    consumer.seek_to_beginning()
    out = [msg for _, msg in zip(range(count), consumer, strict=False)]
    consumer.close()
    return out


def redrive_ids(bootstrap: str) -> set[str]:
    """`lagdeck-redrive-id` of every record now in inventory.events (kafka-python)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    tps = [TopicPartition(ev.INVENTORY, p) for p in range(ev.TOPICS[ev.INVENTORY])]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(tps)  # the topic keeps growing: read up to here
    ids: set[str] = set()
    for msg in consumer:
        ids |= {value.decode() for key, value in msg.headers if key == "lagdeck-redrive-id"}
        if all(consumer.position(tp) >= ends[tp] for tp in tps):
            break
    consumer.close()
    return ids


async def test_overview_lists_the_demo_groups_and_flags_the_stopped_one(demo):
    broker, _ = demo
    app = LagdeckApp(source(broker), poll_interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#groups", KeyedTable)

        def stopped_flagged() -> bool:
            values = table.values("loyalty-service")
            return values is not None and values[0] in (Status.STOP, Status.STALL)

        await until(pilot, lambda: set(ev.GROUPS) <= set(table.row_keys),
                    message=f"every demo group in the overview ({app.connection})")
        await until(pilot, stopped_flagged, timeout=90, message="loyalty-service flagged")
        # Worst first: the stopped consumer is the first row, and named in the summary.
        assert table.row_keys[0] == "loyalty-service"
        summary = str(app.screen.query_one("#summary").render())
        assert "needs attention: loyalty-service" in summary
        others = {g: table.values(g)[0] for g in ev.GROUPS if g != "loyalty-service"}
        assert all(s.severity < Status.STALL.severity for s in others.values()), others


async def test_following_an_order_shows_its_events_and_marks(demo):
    broker, _ = demo
    wait_until(lambda: dead_letters_outside(broker.bootstrap, 1), 60, message="a dead letter")
    order = dead_letters_outside(broker.bootstrap, 1)[0].key.decode()
    app = LagdeckApp(source(broker), poll_interval=30.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, TimelineScreen)
        await pilot.press(*order, "enter")
        await until(pilot, lambda: screen.timeline is not None and len(screen.timeline.events)
                    >= 3, message="the order's events")
        events = screen.timeline.events
        table = screen.query_one("#timeline-events", KeyedTable)
        placed = events[0]
        assert (placed.topic, placed.event_type) == (ev.ORDERS, "OrderPlaced")
        assert placed.consumers.get(ev.INVENTORY_GROUP) == "processed"
        assert dict(table.values(table.row_keys[0])[1])[ev.INVENTORY_GROUP] == "processed"
        # The payment attempt was dead-lettered: its mark, and the dead letter inline.
        attempt = next(e for e in events if e.topic == ev.INVENTORY)
        assert attempt.consumers.get(ev.PAYMENT_GROUP) == "dead-lettered"
        dead = [e for e in events if e.topic == ev.PAYMENTS_DLT]
        assert dead and dead[0].dead_letter is not None
        row = table.values(f"{ev.PAYMENTS_DLT}[0]@{dead[0].offset}")
        assert row is not None and row[2][1] is not None  # shown as a dead letter
        # enter on the dead letter opens it in the dead-letters screen.
        table.move_cursor(row=table.row_keys.index(f"{ev.PAYMENTS_DLT}[0]@{dead[0].offset}"))
        await pilot.press("enter")
        dlq = app.screen
        assert isinstance(dlq, DeadLettersScreen)
        await until(pilot, lambda: dlq.current_record() is not None
                    and dlq.current_record().record.offset == dead[0].offset,
                    message="the dead letter under the cursor")


async def test_redrive_from_dead_letters_moves_the_ticked_records(demo):
    broker, _ = demo
    wait_until(lambda: len(dead_letters_outside(broker.bootstrap, 3)) >= 3, 90,
               message="three dead letters")
    app = LagdeckApp(source(broker), poll_interval=30.0, start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.page is not None and len(screen.page.entries) >= 3,
                    message="a page of dead letters")
        records = screen.query_one("#dlq-records", KeyedTable)
        records.focus()
        records.move_cursor(row=1)
        await pilot.press("space", "space")  # tick the 2nd and 3rd records
        picked = sorted(screen.selected)
        assert len(picked) == 2
        before = redrive_ids(broker.bootstrap)
        await pilot.press("R")
        dialog = app.screen
        assert isinstance(dialog, RedriveScreen)
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        assert dialog.plan.selected == 2
        assert redrive_ids(broker.bootstrap) == before, "the preview moved records"
        await confirm_ready(pilot)
        await pilot.press(*ev.PAYMENTS_DLT, "enter")
        await until(pilot, lambda: dialog.stage == "done", message="the redrive")
        assert dialog.result.redriven == 2
    moved = redrive_ids(broker.bootstrap) - before
    assert moved == {f"{ev.PAYMENTS_DLT}/{p}/{o}" for p, o in picked}


async def test_redrive_is_refused_in_read_only_mode(demo):
    broker, _ = demo
    app = LagdeckApp(source(broker, read_only=True), poll_interval=30.0,
                     start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.page is not None and len(screen.page.entries) >= 5,
                    message="a page of dead letters", timeout=90)
        records = screen.query_one("#dlq-records", KeyedTable)
        records.focus()
        records.move_cursor(row=4)
        await pilot.press("space")
        (p, o), = screen.selected
        await pilot.press("R")
        dialog = app.screen
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        assert "read-only mode" in str(dialog.query_one(".refusal").render())
        assert dialog.query_one("#redrive-go").has_class("hidden")
        dialog.run_redrive(dry_run=False)  # past the UI: the worker's guard refuses too
        await until(pilot, lambda: dialog.stage == "failed", message="the refusal")
    assert f"{ev.PAYMENTS_DLT}/{p}/{o}" not in redrive_ids(broker.bootstrap)


async def test_replay_preview_changes_nothing_until_confirmed(demo):
    from kafka import KafkaAdminClient

    broker, _ = demo
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)

    def committed() -> dict[int, int]:
        offsets = admin.list_group_offsets(ev.LOYALTY_GROUP)[ev.LOYALTY_GROUP]
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == ev.PAYMENTS}

    wait_until(lambda: committed(), 60, message="loyalty-service commits")
    app = LagdeckApp(source(broker), poll_interval=1.0)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.lag_view is not None
                        and app.lag_view.snapshot.group(ev.LOYALTY_GROUP) is not None,
                        message="loyalty-service in the poll")
            app.open_group(ev.LOYALTY_GROUP)
            await pilot.pause()
            assert isinstance(app.screen, GroupScreen)
            await pilot.press("R")
            dialog = app.screen
            assert isinstance(dialog, ReplayScreen)
            before = committed()
            dialog.preview()  # earliest, the default choice
            await until(pilot, lambda: dialog.stage == "preview", message="the plan")
            plan = dialog.plan
            assert [p.new_offset for p in plan.partitions] == [p.low for p in plan.partitions]
            assert dialog.query_one("#replay-plan", KeyedTable).row_count == \
                ev.TOPICS[ev.PAYMENTS]
            assert committed() == before, "the preview changed offsets"
            await confirm_ready(pilot)
            await pilot.press(*ev.LOYALTY_GROUP, "enter")
            await until(pilot, lambda: dialog.stage in ("done", "preview-failed"),
                        message="the reset")
            assert dialog.stage == "done", dialog.query_one("#replay-status").render()
        after = committed()
        assert after == {p.partition: p.new_offset for p in plan.partitions}
    finally:
        admin.close()
