"""The Flows screen driven with Pilot over hand-made flows (no broker): the step table,
enter on a step lists its stopped orders, enter on an order opens its timeline."""

from __future__ import annotations

import pytest

from console.app import LagdeckApp
from console.screens.flows import FlowsScreen, FlowStepScreen, step_key
from console.screens.timeline import TimelineScreen
from console.widgets.keyed_table import KeyedTable
from tests.tui_fixtures import DLT, FixedSource, until
from tracing.flows import Step

pytestmark = pytest.mark.anyio
SIZE = (140, 36)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_flows_screen_steps_then_stopped_orders_then_a_timeline():
    source = FixedSource()
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        assert isinstance(screen, FlowsScreen)
        table = screen.query_one("#flows-steps", KeyedTable)
        await until(pilot, lambda: table.row_count == 4, message="the step table", timeout=20)
        dead = Step(DLT, "InventoryReserved")
        values = dict(zip(["step", "orders", "p95", "stopped", "oldest", "dups", "ooo"],
                          table.values(step_key(dead)), strict=True))
        assert (values["orders"], values["stopped"]) == (2, 2)
        captured = table.values(step_key(Step("payments.events", "shop.PaymentCaptured")))
        assert captured[1] == 3 and captured[5] == 1  # 3 orders in, 1 duplicate
        assert table.row_keys[0] == step_key(Step("orders.events", "OrderPlaced"))
        # enter on the dead-letter step: its stopped orders, oldest first
        table.move_cursor(row=table.row_keys.index(step_key(dead)))
        await pilot.press("enter")
        step_screen = app.screen
        assert isinstance(step_screen, FlowStepScreen) and step_screen.step == dead
        orders = step_screen.query_one("#flowstep-orders", KeyedTable)
        await until(pilot, lambda: orders.row_count == 2, message="the stopped orders")
        assert orders.row_keys == ["ord_00002", "[bold]ord_[/]x"]  # markup shown as text
        age = orders.values("ord_00002")[1]
        assert age == pytest.approx(3600 - 2 * 60 - 0.8)
        # enter on an order: its timeline
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TimelineScreen)
                    and app.screen.timeline is not None, message="the order's timeline")
        assert source.lookups[-1] == "ord_00002"
        assert app.screen.timeline.query == "ord_00002"
        # back to flows: the stopped orders are still there
        await pilot.press("5")
        assert isinstance(app.screen, FlowStepScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, FlowsScreen)
        # an order with a re-sent event: its timeline flags the copy
        reserved = Step("inventory.events", "InventoryReserved")
        table.move_cursor(row=table.row_keys.index(step_key(reserved)))
        await pilot.press("enter")
        step_screen = app.screen
        orders = step_screen.query_one("#flowstep-orders", KeyedTable)
        await until(pilot, lambda: orders.row_keys == ["ord_00004"], message="ord_00004")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TimelineScreen)
                    and app.screen.timeline is not None
                    and app.screen.timeline.query == "ord_00004", message="its timeline")
        events = app.screen.query_one("#timeline-events", KeyedTable)
        await until(pilot, lambda: events.values("inventory.events[1]@101") is not None,
                    message="the timeline rows")
        assert events.values("inventory.events[1]@101")[3] == " DUP "
        assert events.values(events.row_keys[0])[3] == ""
