"""Pictures of every screen at a fixed terminal size with deterministic data.

`FixedSource` gives hand-made snapshots (fixed clock: 2024-05-01 10:00:00
UTC), the time zone is pinned to UTC, the input cursor does not blink, and
each picture is taken once the screen's workers have finished. Update the
pictures after an intended change with `pytest --snapshot-update` and review
the SVGs in `tests/__snapshots__/`.
"""

from __future__ import annotations

import time

import pytest

from collectors.config import ClusterConfig
from console.app import LagdeckApp
from tests.tui_fixtures import FixedSource

SIZE = (120, 34)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(start_mode: str | None = None, **source_kw) -> LagdeckApp:
    return LagdeckApp(FixedSource(**source_kw), poll_interval=3600, start_mode=start_mode,
                      cursor_blink=False)


async def settle(pilot) -> None:
    """Wait for every worker (lag poll, pages, previews) and the resulting redraws."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def test_overview(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


def test_overview_read_only_filtered(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("slash", *"service$", "enter", "s")
        await settle(pilot)

    app = make_app(cluster=ClusterConfig({"bootstrap.servers": "kafka-1.prod:9092"},
                                         profile="prod", read_only=True))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_group_with_members(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)

    assert snap_compare(make_app(members=True), terminal_size=SIZE, run_before=run_before)


def test_replay_preview(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("enter", "R")
        await pilot.click("#replay-preview")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_dead_letters(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#dlq-records").focus()
        await pilot.press("down", "space")
        await settle(pilot)

    assert snap_compare(make_app("dead-letters"), terminal_size=SIZE, run_before=run_before)


def test_redrive_preview(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#dlq-records").focus()
        await pilot.press("space", "space", "R")
        await settle(pilot)

    assert snap_compare(make_app("dead-letters"), terminal_size=SIZE, run_before=run_before)


def test_timeline(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("3", *"ord_00001", "enter")
        await settle(pilot)
        await pilot.press("down", "down")  # the dead letter, with its detail below
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_alerts(snap_compare):
    assert snap_compare(make_app("alerts"), terminal_size=SIZE, run_before=settle)


def test_help(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


# -- a split pane on call: 80x24 ---------------------------------------------------------
NARROW = (80, 24)


def test_overview_at_80x24_keeps_the_connection_state(snap_compare):
    """The header abbreviates the tabs and the cluster label, never the connection state."""
    app = make_app(cluster=ClusterConfig({"bootstrap.servers": "kafka-1.prod.example:9092"},
                                         profile="prod", read_only=True))
    assert snap_compare(app, terminal_size=NARROW, run_before=settle)


def test_group_at_80x24_keeps_the_connection_state(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=NARROW, run_before=run_before)


def test_timeline_at_80x24_keeps_the_consumer_group_marks(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("3", *"ord_00001", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=NARROW, run_before=run_before)
