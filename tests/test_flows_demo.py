"""The demo world produces every flow case, and the Flows screen shows them, on a real broker.

One embedded broker and one demo world (seed 7, a fast rate, loyalty stopping
after 4 s) for the module. The flows view must see orders stopped at the
dead-letter step and at `shop.PaymentCaptured` (loyalty stopped), the
compensation path, duplicates and out-of-order events; then Pilot drives the
screen: the step table, enter on the dead-letter step, enter on an order, its
timeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from collectors.config import ClusterConfig
from console.app import LagdeckApp
from console.data import KafkaSource
from console.demo import events as ev
from console.demo.world import DemoWorld
from console.embedded import EmbeddedBroker
from console.screens.flows import FlowsScreen, FlowStepScreen, step_key
from console.screens.timeline import TimelineScreen
from console.widgets.keyed_table import KeyedTable
from tests.tui_fixtures import until
from tracing.flowquery import flows_from_index
from tracing.flows import FlowMap, Step
from tracing.search import Tracer

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DLT = Step(ev.PAYMENTS_DLT, "InventoryReserved")
CAPTURED = Step(ev.PAYMENTS, "shop.PaymentCaptured")
STUCK_AFTER = 3.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("flows-demo")) as broker:
        world = DemoWorld(broker.cluster(), seed=7, rate=20.0, loyalty_stops_after=4.0)
        world.start()
        try:
            yield broker
        finally:
            world.stop()
            assert not broker.panicked(), f"Tansu panicked; see {broker.log_path}"


def every_case(flows: FlowMap) -> dict[str, bool]:
    by = {s.step: s for s in flows.steps}
    pairs = {(t.source, t.target) for t in flows.transitions}
    return {
        "stopped at the dead-letter step": DLT in by and by[DLT].stopped > 0,
        "stopped at PaymentCaptured": CAPTURED in by and by[CAPTURED].stopped > 0,
        "compensation": (Step(ev.PAYMENTS, "shop.PaymentFailed"),
                         Step(ev.INVENTORY, "StockReleased")) in pairs,
        "duplicates": by.get(CAPTURED) is not None and by[CAPTURED].duplicates > 0,
        "out of order": any(s.out_of_order for s in flows.steps),
    }


def test_the_demo_world_produces_every_flow_case(demo: EmbeddedBroker) -> None:
    cluster = ClusterConfig({"bootstrap.servers": demo.bootstrap})
    deadline = time.monotonic() + 90
    with Tracer(cluster) as tracer:
        while True:
            flows = flows_from_index(tracer, since_seconds=3600,
                                     stuck_after_seconds=STUCK_AFTER)
            cases = every_case(flows)
            if all(cases.values()) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    assert all(cases.values()), cases
    # the out-of-order events are the skewed inventory events, nothing else
    late = {s.step for s in flows.steps if s.out_of_order}
    assert late == {Step(ev.INVENTORY, "InventoryReserved")}, late
    # every duplicate at PaymentCaptured is an order the seed says was re-sent
    dup_orders = {m.order for m in flows.marks if m.mark == "duplicate"
                  and m.topic == ev.PAYMENTS}
    assert dup_orders and all(ev.payment_resent(7, o) for o in dup_orders)


async def test_flows_screen_on_the_demo_world(demo: EmbeddedBroker) -> None:
    source = KafkaSource(ClusterConfig({"bootstrap.servers": demo.bootstrap}), timeout=10.0,
                         stuck_after_seconds=STUCK_AFTER)
    app = LagdeckApp(source, poll_interval=30.0)
    async with app.run_test(size=(150, 40)) as pilot:
        await pilot.press("5")
        screen = app.screen
        assert isinstance(screen, FlowsScreen)
        table = screen.query_one("#flows-steps", KeyedTable)

        def dlt_stopped() -> bool:
            values = table.values(step_key(DLT))
            return values is not None and values[3] > 0

        await until(pilot, dlt_stopped, timeout=90, message="orders stopped at the DLT step")
        table.move_cursor(row=table.row_keys.index(step_key(DLT)))
        await pilot.press("enter")
        step_screen = app.screen
        assert isinstance(step_screen, FlowStepScreen)
        orders = step_screen.query_one("#flowstep-orders", KeyedTable)
        await until(pilot, lambda: orders.row_count > 0, message="the stopped orders")
        order = orders.current_key
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TimelineScreen)
                    and app.screen.timeline is not None
                    and app.screen.timeline.query == order, timeout=60,
                    message="the order's timeline")
        events = app.screen.timeline.events
        assert events[-1].topic == ev.PAYMENTS_DLT and events[-1].dead_letter is not None
        assert events[0].event_type == "OrderPlaced"
