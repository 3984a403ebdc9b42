"""Every screen of the console on hostile records: no exception, hostile text shown escaped.

`HostileSource` (tests/hostile.py) puts Rich markup, ANSI CSI/OSC sequences, BEL,
C1 controls, bidi overrides, zero-width characters, invalid UTF-8, newlines and
100 kB values into every field, group and topic name. Each screen is opened with
Pilot; what it shows is checked twice: the screenshot of the whole terminal (what
would be written to it) holds no control character, and every table cell and
panel, rendered to ANSI as a terminal gets it, holds none besides lagdeck's own
colours while the hostile text is there, escaped.
"""

from __future__ import annotations

import html
import io
import re

import pytest
from rich.console import Console
from rich.text import Text
from textual.widgets import DataTable, Input, Static

from collectors.untrusted import one_line
from console.app import LagdeckApp
from console.screens.alerts import AlertsScreen
from console.screens.dead_letters import DeadLettersScreen
from console.screens.group import GroupScreen
from console.screens.redrive import RedriveScreen
from console.screens.replay import ReplayScreen
from console.screens.timeline import TimelineScreen
from console.widgets.keyed_table import KeyedTable
from tests.hostile import BIDI, BIG, CSI, VISIBLE, HostileSource, unsafe_chars, without_styling
from tests.tui_fixtures import confirm_ready, until

pytestmark = pytest.mark.anyio
SIZE = (160, 50)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _ansi(renderable: object, width: int = 1000) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    console.print(renderable, soft_wrap=isinstance(renderable, Text))
    return console.file.getvalue()  # type: ignore[attr-defined]


def shown(screen) -> str:
    """Every table cell and panel of `screen` as a terminal would receive it, styling
    removed; fails when anything but lagdeck's own styling is a control character."""
    parts = []
    for table in screen.query(DataTable):
        for row_key in list(table.rows):
            for cell in table.get_row(row_key):
                assert isinstance(cell, Text), f"a {type(cell).__name__} cell: markup risk"
                parts.append(_ansi(cell))
    for static in screen.query(Static):
        content = static.content
        if isinstance(content, str):  # Textual would parse it as markup
            assert unsafe_chars(content) == [], content
            content = Text(content)
        parts.append(_ansi(content))
    out = without_styling("".join(parts))
    assert unsafe_chars(out) == [], f"control characters reached the terminal: {out[:300]!r}"
    return out


def screenshot_text(app) -> str:
    """The whole terminal as Textual composes it (public API: an SVG screenshot)."""
    svg = app.export_screenshot(simplify=True)
    assert unsafe_chars(svg, allow="\n") == [], "a control character is on the screen"
    text = html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")
    return text


def assert_escaped(text: str, *, where: str) -> None:
    for marker in VISIBLE:
        assert marker in text, f"{marker!r} not visible (escaped) on {where}"


async def test_groups_group_and_replay_dialog_show_hostile_names_escaped():
    source = HostileSource(members=True)
    world = source.world
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        table = app.screen.query_one("#groups", KeyedTable)
        await until(pilot, lambda: table.row_count == 2, message="the groups")
        assert world.group in table.row_keys  # the key stays the real name
        text = shown(app.screen)
        assert one_line(world.group)[:60] in text  # cut at the cell limit, with a mark
        assert_escaped(text, where="the groups screen")
        assert_escaped(screenshot_text(app), where="the groups screenshot")

        table.move_cursor(row=table.row_keys.index(world.group))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, GroupScreen), message="the group")
        await pilot.pause()
        text = shown(app.screen)
        assert_escaped(text, where="the group screen")
        assert "client[/]" in text and "\\x1b[2J" in text  # the members table too
        screenshot_text(app)

        await pilot.press("R")
        dialog = app.screen
        assert isinstance(dialog, ReplayScreen)
        dialog.preview()
        await until(pilot, lambda: dialog.stage == "preview", message="the plan")
        await confirm_ready(pilot)
        text = shown(dialog)
        assert one_line(world.group)[:60] in text and "note [/]" in text
        screenshot_text(app)
        # the typed confirmation accepts the name as shown (escaped), since the real one
        # cannot be typed
        dialog.query_one("#confirm-input", Input).value = one_line(world.group)
        await pilot.press("enter")
        await until(pilot, lambda: dialog.stage == "done", message="the reset")
        assert source.replayed and source.replayed[0].group == world.group
        shown(dialog)


async def test_dead_letters_record_detail_and_redrive_dialog_show_hostile_text_escaped():
    source = HostileSource()
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, DeadLettersScreen)
        await until(pilot, lambda: screen.page is not None, message="the first page")
        records = screen.query_one("#dlq-records", KeyedTable)
        records.focus()
        texts = []
        for row in range(3):  # every record selected in turn: Spring, binary, no envelope
            records.move_cursor(row=row)
            await pilot.pause()
            texts.append(shown(screen))
            assert_escaped(texts[-1], where=f"dead letter {row}")
            assert_escaped(screenshot_text(app), where=f"the dead-letters screenshot {row}")
        assert "field [/data/orderId] missing" in texts[0]  # the Spring exception message
        # Detail panes are whole: the 100 kB header value is there to its last byte,
        # the table cells are cut with a visible mark.
        detail = screen.query_one("#dlq-detail-text", Static).content
        assert "B" * BIG in without_styling(_ansi(detail)).replace("\n", "").replace(" ", "")
        key_cell = records.get_row(records.row_keys[0])[3]
        assert key_cell.plain.endswith("…") and len(key_cell.plain) <= 14

        await pilot.press("space", "R")
        dialog = app.screen
        assert isinstance(dialog, RedriveScreen)
        await until(pilot, lambda: dialog.stage == "preview", message="the preview")
        await confirm_ready(pilot)
        text = shown(dialog)
        assert_escaped(text, where="the redrive preview")
        assert "reason [/]" in text
        screenshot_text(app)
        dialog.query_one("#confirm-input", Input).value = one_line(source.world.dlt_topic)
        await pilot.press("enter")
        await until(pilot, lambda: dialog.stage == "done", message="the redrive")
        assert "error [/]" in shown(dialog)


async def test_timeline_alerts_and_palette_show_hostile_text_escaped():
    source = HostileSource()
    app = LagdeckApp(source, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, TimelineScreen)
        screen.search(source.world.order)
        await until(pilot, lambda: screen.timeline is not None, message="the timeline")
        events = screen.query_one("#timeline-events", KeyedTable)
        for row in range(events.row_count):  # each event's detail, the dead letter last
            events.move_cursor(row=row)
            await pilot.pause()
            text = shown(screen)
            assert_escaped(text, where=f"timeline event {row}")
            screenshot_text(app)
        assert "field [/data/orderId] missing" in text and "note [/]" in text
        # an id followed from a record (`t` on a dead letter) lands in the query box
        screen.search(f"ord{CSI}{BIDI}")
        await until(pilot, lambda: screen.query_text == f"ord{CSI}{BIDI}", message="search")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screenshot_text(app)
        shown(screen)

        await pilot.press("4")
        assert isinstance(app.screen, AlertsScreen)
        await pilot.pause()
        text = shown(app.screen)
        assert "rule[/]" in text and "\\x1b[2J" in text and "\\u202e" in text
        screenshot_text(app)

        app.action_command_palette()
        await pilot.pause()
        await pilot.press(*"group: svc")
        await until(pilot, lambda: any("svc[bold]x" in str(o.prompt) for o in
                                       app.screen.query("OptionList").first().options),
                    message="the palette hit with the hostile group")
        screenshot_text(app)
        await pilot.press("escape")

        app.notify(f"toast {source.world.group}", title=source.world.dlt_topic)
        await pilot.pause()
        assert_escaped(screenshot_text(app), where="a toast")
