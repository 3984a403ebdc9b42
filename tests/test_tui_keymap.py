"""Every binding of the console is in the keymap registry, dialogs included.

The dialogs' keys (help, jump, redrive, replay) used to be plain `Binding`s
outside `console.keymap`, so `[keymap] "help.close" = ...` was refused as an
unknown id. These tests remap them from the config and drive the dialogs
with Pilot over canned data (`FixedSource`, no broker).
"""

from __future__ import annotations

import pytest

from collectors.config import Settings
from collectors.errors import ConfigError
from console import keymap as km
from console.app import LagdeckApp
from console.screens.help import HelpScreen
from console.screens.jump import JumpScreen
from console.screens.overview import OverviewScreen
from tests.tui_fixtures import FixedSource

SIZE = (120, 34)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_every_dialog_binding_has_a_registered_id():
    for binding_id in ("help.close", "jump.close", "redrive.cancel", "replay.close",
                       "table.open"):
        assert binding_id in km.KNOWN_IDS
        assert km.load_keymap(Settings(data={"keymap": {binding_id: "f2"}})) == \
            {binding_id: "f2"}


def test_dialog_keys_are_checked_on_their_own_and_typos_refused():
    # the help dialog has one binding; app-wide keys do not count inside a dialog
    # (`q` closes the help instead of quitting), so restating the default is fine
    assert km.load_keymap(Settings(data={"keymap": {"help.close": "escape,q"}})) == \
        {"help.close": "escape,q"}
    with pytest.raises(ConfigError, match=r"unknown binding id 'help\.clsoe'"):
        km.load_keymap(Settings(data={"keymap": {"help.clsoe": "f2"}}))


async def test_remapped_dialog_keys_close_the_help_and_the_jump_box():
    settings = Settings(data={"keymap": {"help.close": "f2", "jump.close": "f3"}})
    app = LagdeckApp(FixedSource(settings=settings), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, HelpScreen), "escape no longer closes the help"
        await pilot.press("f2")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("colon")
        assert isinstance(app.screen, JumpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, JumpScreen), "escape no longer closes the jump box"
        await pilot.press("f3")
        assert isinstance(app.screen, OverviewScreen)


def test_the_tables_key_is_checked_against_every_screen():
    # restating defaults is never a clash (tables and screens both open rows with enter)
    assert km.load_keymap(Settings(data={"keymap": {"overview.open": "enter",
                                                    "table.open": "enter"}})) == \
        {"overview.open": "enter", "table.open": "enter"}
    # a focused table answers first: moving its key onto "tick a record" would hide it
    with pytest.raises(ConfigError, match=r"'space' is already bound to dlq\.select on the "
                                          r"Dead letters screen"):
        km.load_keymap(Settings(data={"keymap": {"table.open": "space"}}))


def test_the_remap_the_help_shows_is_one_the_config_accepts() -> None:
    # the help once suggested "dlq.redrive" = "ctrl+r", which the check refuses (refresh now)
    from console.screens.help import REMAP_EXAMPLE

    binding, key = REMAP_EXAMPLE
    assert km.keymap_problems({binding: key}) == []
    assert km.keymap_problems({binding: "ctrl+r"})  # the old example: refused
