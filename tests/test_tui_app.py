"""The console driven with Pilot over hand-made data: keys, workers, dialogs.

No broker here (see test_tui_demo.py for the real one): `FixedSource` returns
canned snapshots, so these tests are about the UI: a key is handled while a
collector call is blocked, keys can be remapped, refreshes keep the cursor,
a lost cluster shows up as a reconnecting indicator, redrive and replay go
through preview and typed confirmation, and read-only mode refuses them.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from collectors.config import ClusterConfig, Settings
from collectors.errors import BrokerUnavailable
from console import keymap as km
from console.app import LagdeckApp
from console.screens.dead_letters import DeadLettersScreen
from console.screens.group import GroupScreen
from console.screens.help import HelpScreen
from console.screens.redrive import RedriveScreen
from console.screens.replay import ReplayScreen
from console.widgets.keyed_table import KeyedTable
from tests.tui_fixtures import DLT, FixedSource, confirm_ready, demo_snapshot, until

SIZE = (120, 34)

# anyio's pytest plugin (installed with httpx) runs the async tests on asyncio.
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_only_source(**kw) -> FixedSource:
    return FixedSource(cluster=ClusterConfig({"bootstrap.servers": "kafka-1.prod:9092"},
                                             read_only=True), **kw)


async def test_keys_are_handled_while_a_collector_call_is_blocked():
    source = FixedSource(gate=threading.Event())
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        # The lag poll is now stuck inside the collector call.
        await until(pilot, source.entered.is_set, message="the poll to start")
        assert app.lag_view is None
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen), "help did not open while the poll was blocked"
        await pilot.press("escape")
        await pilot.press("2")
        assert isinstance(app.screen, DeadLettersScreen)
        await pilot.press("1")
        assert app.lag_view is None, "the blocked poll should still be running"
        source.gate.set()
        await until(pilot, lambda: app.lag_view is not None, message="the poll to finish")
        table = app.screen.query_one("#groups", KeyedTable)
        await until(pilot, lambda: table.row_count == 5, message="groups to be drawn")


async def test_keymap_from_config_remaps_binding_ids():
    settings = Settings(data={"keymap": {"app.help": "f1", "overview.sort": "o"}})
    app = LagdeckApp(FixedSource(settings=settings), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen), "the old key still opens help"
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows(km.APP)
        assert ("f1", "Help", "app.help") in rows
        assert ("s", "Sort", "overview.sort") not in app.screen.rows(km.OVERVIEW)
        assert ("o", "Sort", "overview.sort") in app.screen.rows(km.OVERVIEW)
        await pilot.press("escape")
        await pilot.press("o")
        assert app.screen.sort == "lag"


def test_unknown_keymap_id_is_a_config_error():
    from collectors.errors import ConfigError
    from console.keymap import load_keymap

    with pytest.raises(ConfigError, match=r"unknown binding id 'dlq\.redirve'"):
        load_keymap(Settings(data={"keymap": {"dlq.redirve": "ctrl+r"}}))
    assert load_keymap(Settings(data={"keymap": {"dlq.redrive": "ctrl+e"}})) == \
        {"dlq.redrive": "ctrl+e"}


async def test_refresh_updates_rows_in_place_and_keeps_the_cursor():
    source = FixedSource()
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        table = app.screen.query_one("#groups", KeyedTable)
        await pilot.press("down")
        chosen = table.current_key
        assert chosen == "notification-service"
        # The next poll: payment-service's lag jumps above notification-service's.
        snap = demo_snapshot(taken_at=demo_snapshot().taken_at + 5)
        groups = tuple(g if g.group != "payment-service" else
                       type(g)(**{**g.__dict__, "total_lag": 5000})
                       for g in snap.groups)
        source.snapshot = type(snap)(snap.taken_at, groups)
        app.screen.sort = "lag"
        app.action_refresh()
        await app.workers.wait_for_complete()
        await until(pilot, lambda: table.row_keys[0] == "payment-service",
                    message="rows re-ordered by lag")
        assert table.current_key == chosen, "the cursor moved to another group"
        assert table.row_count == 5


async def test_lost_cluster_shows_reconnecting_with_backoff_then_recovers():
    source = FixedSource(fail_with=BrokerUnavailable("cannot reach kafka-1.prod:9092"))
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "reconnecting",
                    message="the reconnecting indicator")
        assert app.connection.retry_in == 2.0
        assert "cannot reach" in app.connection.detail
        bar = str(app.screen.query_one("#status-bar").render())
        assert "reconnecting in 2s" in bar
        source.fail_with = None
        app.action_refresh()
        await until(pilot, lambda: app.connection.state == "connected",
                    message="the connection to come back")


async def test_jump_opens_a_group_and_esc_goes_back():
    app = LagdeckApp(FixedSource(), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("colon", *"group loyalty-service", "enter")
        assert isinstance(app.screen, GroupScreen)
        assert app.screen.group == "loyalty-service"
        table = app.screen.query_one("#partitions", KeyedTable)
        assert table.row_keys == [f"payments.events[{i}]" for i in range(3)]
        await pilot.press("escape")
        assert not isinstance(app.screen, GroupScreen)


async def test_overview_filter_narrows_and_esc_clears():
    app = LagdeckApp(FixedSource(), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        table = app.screen.query_one("#groups", KeyedTable)
        await pilot.press("slash", *"^(loyalty|notif)", "enter")
        assert sorted(table.row_keys) == ["loyalty-service", "notification-service"]
        await pilot.press("escape")
        assert table.row_count == 5


async def test_redrive_needs_the_typed_topic_then_moves_the_ticked_records():
    source = FixedSource()
    app = LagdeckApp(source, poll_interval=3600, start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.page is not None, message="the first page")
        screen.query_one("#dlq-records").focus()
        await pilot.press("space", "space", "R")
        assert isinstance(app.screen, RedriveScreen)
        dialog = app.screen
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        assert source.redriven == [], "the preview changed something"
        await confirm_ready(pilot)
        await pilot.press(*"payments", "enter")  # wrong name: refused
        assert dialog.stage == "preview" and source.redriven == []
        await confirm_ready(pilot)
        await pilot.press(*".events-dlt", "enter")
        await until(pilot, lambda: dialog.stage == "done", message="the redrive")
        assert [e.record.offset for e in source.redriven] == [10, 11]
        assert dialog.result.redriven == 2
        await pilot.press("escape")
        assert isinstance(app.screen, DeadLettersScreen)
        assert app.screen.selected == set()


async def test_redrive_can_be_cancelled_while_running():
    source = FixedSource()
    app = LagdeckApp(source, poll_interval=3600, start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.page is not None, message="the first page")
        screen.query_one("#dlq-records").focus()
        await pilot.press("a", "R")
        dialog = app.screen
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        source.gate = threading.Event()
        await confirm_ready(pilot)
        await pilot.press(*DLT, "enter")
        await until(pilot, source.entered.is_set, message="the redrive to start")
        await pilot.press("escape")  # cancel, while the worker is blocked
        assert dialog.cancel_event.is_set()
        assert isinstance(app.screen, RedriveScreen), "cancel must not hide a running redrive"
        source.gate.set()
        await until(pilot, lambda: dialog.stage == "done", message="the cancelled redrive")
        assert dialog.result.cancelled


async def test_read_only_redrive_shows_the_preview_and_refuses_to_apply():
    source = read_only_source()
    app = LagdeckApp(source, poll_interval=3600, start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.page is not None, message="the first page")
        assert "READ-ONLY" in str(screen.query_one("#status-bar").render())
        screen.query_one("#dlq-records").focus()
        await pilot.press("space", "R")
        dialog = app.screen
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        assert "read-only mode" in str(dialog.query_one(".refusal").render())
        assert not dialog.query("#confirm-input")
        assert dialog.query_one("#redrive-go").has_class("hidden")
        # Even driven past the UI, the worker refuses (the guard is in the worker too).
        dialog.run_redrive(dry_run=False)
        await until(pilot, lambda: dialog.stage == "failed", message="the refusal")
        assert "refused: read-only mode" in str(dialog.query_one("#redrive-status").render())
        assert source.redriven == []


async def test_replay_previews_then_applies_only_after_typing_the_group():
    source = FixedSource()
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        app.open_group("loyalty-service")
        await pilot.pause()
        await pilot.press("R")
        dialog = app.screen
        assert isinstance(dialog, ReplayScreen)
        dialog.preview()
        await until(pilot, lambda: dialog.stage == "preview", message="the plan")
        plan = dialog.query_one("#replay-plan", KeyedTable)
        assert plan.row_count == 3
        assert source.replayed == []
        await confirm_ready(pilot)
        await pilot.press(*"loyalty-service", "enter")
        await until(pilot, lambda: dialog.stage == "done", message="the reset")
        assert [p.partition for p in source.replayed[0].changes] == [0, 1, 2]


async def test_read_only_replay_has_no_apply():
    app = LagdeckApp(read_only_source(), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        app.open_group("loyalty-service")
        await pilot.pause()
        await pilot.press("R")
        dialog = app.screen
        dialog.preview()
        await until(pilot, lambda: dialog.stage == "preview", message="the plan")
        assert dialog.query(".refusal")
        assert dialog.query_one("#replay-apply").has_class("hidden")


async def test_palette_offers_the_screen_commands():
    app = LagdeckApp(FixedSource(), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        app.action_command_palette()
        await pilot.pause()
        await pilot.press(*"group: loyalty")
        await asyncio.sleep(0)  # let the palette search run
        await until(pilot, lambda: "loyalty-service" in str(
            [str(o.prompt) for o in app.screen.query("OptionList").first().options]),
            message="the palette hit")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, GroupScreen), message="the group")


async def test_timeline_dead_letter_jumps_to_its_record_and_redrive():
    source = FixedSource()
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("3", "slash", *"ord_00001", "enter")  # `/` in the empty box: ignored
        screen = app.screen
        await until(pilot, lambda: screen.timeline is not None, message="the timeline")
        assert source.lookups[0] == "ord_00001"
        table = screen.query_one("#timeline-events", KeyedTable)
        assert len(table.row_keys) == 4
        stuck = table.values(table.row_keys[3])
        assert stuck[3].strip() == "STUCK"
        await pilot.press("down", "down", "R")  # the dead letter row, then redrive
        await until(pilot, lambda: isinstance(app.screen, RedriveScreen),
                    message="the redrive dialog for that record")
        dialog = app.screen
        assert dialog.topic == DLT and dialog.picked == frozenset({(0, 11)})
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        await pilot.press("escape")
        assert isinstance(app.screen, DeadLettersScreen)
        assert app.screen.current_record().record.offset == 11
