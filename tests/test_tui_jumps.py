"""Jumps and hints in the console (Pilot, canned data): a jump to a missing topic says so
and leaves the screen usable, an unknown jump closes the box, hints follow the keymap."""

from __future__ import annotations

import pytest
from textual.binding import Binding
from textual.widgets import Static

from collectors.config import Settings
from collectors.errors import NotFoundError
from console.app import LagdeckApp
from console.screens.dead_letters import DeadLettersScreen
from console.screens.jump import JumpScreen
from console.screens.overview import OverviewScreen
from tests.tui_fixtures import DLT, FixedSource, until

SIZE = (120, 34)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TopicsThatExist(FixedSource):
    """Canned pages for the canned DLQ; any other topic does not exist, as on a broker."""

    def dead_letter_page(self, topic, start, *, where=(), limit=50):
        if topic != DLT:
            raise NotFoundError(f"topic {topic!r} does not exist")
        return super().dead_letter_page(topic, start, where=where, limit=limit)


def _text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


async def test_jump_to_a_missing_topic_says_so_and_leaves_the_screen_usable():
    app = LagdeckApp(TopicsThatExist(), poll_interval=3600, start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, DeadLettersScreen)
        await until(pilot, lambda: screen.page is not None, message="the first page")
        screen.query_one("#dlq-records").focus()
        await pilot.pause()
        assert "no record selected" not in _text(screen, "#dlq-detail-text")
        await pilot.press("colon", *"dlq nosuch", "enter")
        await until(pilot, lambda: "does not exist" in _text(screen, "#dlq-page-info"),
                    message="the missing topic to be reported")
        assert "reading" not in _text(screen, "#dlq-page-info")
        assert "'nosuch' does not exist" in _text(screen, "#dlq-page-info")
        assert screen.page is None and "no record selected" in _text(screen, "#dlq-detail-text")
        # still usable: the real topic opens again
        screen.open_topic(DLT)
        await until(pilot, lambda: screen.page is not None, message="the topic to reopen")


async def test_an_unknown_jump_closes_the_box_and_keys_work_again():
    app = LagdeckApp(FixedSource(), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("colon")
        assert isinstance(app.screen, JumpScreen)
        await pilot.press(*"nosuch", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, JumpScreen)
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("2")  # not swallowed by a jump box left open
        await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen),
                    message="the dead-letters screen")


async def test_dead_letters_hint_follows_the_keymap():
    settings = Settings(data={"keymap": {"dlq.redrive": "ctrl+e", "dlq.select": "x",
                                         "dlq.follow": "f"}})
    app = LagdeckApp(FixedSource(settings=settings), poll_interval=3600,
                     start_mode="dead-letters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.page is not None, message="the first page")
        hint = _text(screen, "#dlq-page-info")
        redrive = app.get_key_display(Binding("ctrl+e", ""))
        assert f"x ticks a record, {redrive} redrives, f follows its order" in hint, hint
        assert "space" not in hint and " R " not in hint
        screen.query_one("#dlq-records").focus()
        await pilot.press("x")  # the remapped key ticks, and the hint says how to redrive
        await until(pilot, lambda: screen.selected, message="a ticked record")
        assert f"{redrive} redrive them" in _text(screen, "#dlq-page-info")
