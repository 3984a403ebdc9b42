"""Domain errors name the value, each face names how it was typed.

collectors/, tracing/ and dlq/ raise `InvalidValue(field, problem)`; the
command line calls the value by its flag, a screen by its field, and neither
rewrites the other's text. No broker here (one closed port).
"""

from __future__ import annotations

import pytest

from collectors.errors import InvalidValue, UsageError
from console.app import LagdeckApp
from console.cli import main
from console.screens.dead_letters import DeadLettersScreen
from console.screens.replay import ReplayScreen
from console.wording import for_cli, for_tui
from dlq.redrive import Redrive
from dlq.replay import ResetSpec, parse_datetime_ms
from dlq.select import parse_filter, parse_where
from tests.tui_fixtures import FixedSource, until

SIZE = (120, 34)
CLOSED = "127.0.0.1:1"


def test_domain_errors_carry_the_field_not_a_flag() -> None:
    cases = [
        (lambda: parse_where(["colour=red"]), "where"),
        (lambda: ResetSpec.to_offset(-1), "to_offset"),
        (lambda: parse_datetime_ms("1900-01-01T00:00:00Z"), "to_datetime"),
        (lambda: Redrive(ClusterStub, "dlt", rate=0), "rate"),
        (lambda: Redrive(ClusterStub, "dlt", max_attempts=0), "max_attempts"),
        (lambda: Redrive(ClusterStub, "dlt", to="dlt"), "to"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidValue) as raised:
            call()
        assert raised.value.field == field
        assert "--" not in str(raised.value), str(raised.value)
        assert isinstance(raised.value, UsageError)  # exit code 2 on the command line


class ClusterStub:
    """Redrive checks its arguments before it touches the cluster."""


def test_each_face_adds_its_own_wording() -> None:
    with pytest.raises(InvalidValue) as raised:
        ResetSpec.to_offset(-1)
    assert for_cli(raised.value) == "--to-offset must be 0 or more, got -1"
    assert for_tui(raised.value, {"to_offset": "offset"}) == "offset must be 0 or more, got -1"
    assert for_tui(raised.value) == "to offset must be 0 or more, got -1"
    with pytest.raises(InvalidValue) as raised:
        parse_filter("bogus=1")
    assert for_cli(raised.value).startswith("--where 'bogus=1': unknown field 'bogus'")
    assert for_tui(raised.value, {"where": "filter"}).startswith("filter 'bogus=1': unknown")
    assert for_tui(raised.value, {"where": ""}).startswith("'bogus=1': unknown field")
    assert for_cli(UsageError("plain")) == for_tui(UsageError("plain")) == "plain"


@pytest.mark.parametrize(("argv", "line"), [
    (["dlq", "redrive", "dlt", "--dry-run", "--rate", "0"],
     "lagdeck: error: --rate must be positive, got 0"),
    (["dlq", "redrive", "dlt", "--dry-run", "--max-attempts", "0"],
     "lagdeck: error: --max-attempts must be at least 1, got 0"),
    (["dlq", "redrive", "dlt", "--dry-run", "--where", "colour=red"],
     "lagdeck: error: --where 'colour=red': unknown field 'colour'"),
    (["--schema-registry", "ftp://x", "dlq", "show", "t"],
     "lagdeck: error: --schema-registry: 'ftp://x' is not an http(s) URL"),
    (["watch", "--metrics-port", "99999"],
     "lagdeck: error: --metrics-port: port must be 0-65535, got 99999"),
    (["replay", "g", "--topic", "t", "--to-offset", "-3"],
     "lagdeck: error: --to-offset must be 0 or more, got -3"),
    (["replay", "g", "--topic", "t", "--to-datetime", "1900-01-01"],
     "lagdeck: error: --to-datetime '1900-01-01' is before 1970-01-01T00:00:00Z"),
])
def test_the_command_line_names_the_flag(capsys, argv: list[str], line: str) -> None:
    assert main(["-b", CLOSED, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1, err


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_replay_form_names_its_field() -> None:
    app = LagdeckApp(FixedSource(), poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        app.open_group("loyalty-service")
        await pilot.pause()
        await pilot.press("R")
        dialog = app.screen
        assert isinstance(dialog, ReplayScreen)
        for kind, value, shown in (("offset", "-1", "✗ offset must be 0 or more, got -1"),
                                   ("datetime", "1900-01-01", "✗ '1900-01-01' is before 1970")):
            dialog.query_one("#replay-kind").value = kind
            dialog.query_one("#replay-value").value = value
            dialog.preview()
            await pilot.pause()
            status = str(dialog.query_one("#replay-status").content)
            assert status.startswith(shown) and "--" not in status, status
            assert dialog.stage == "form"


@pytest.mark.anyio
async def test_the_dead_letter_filter_names_its_field() -> None:
    app = LagdeckApp(FixedSource(), poll_interval=3600)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, DeadLettersScreen)
        screen.set_filter("bogus=1")
        await until(pilot, lambda: bool(app.screen.query("Toast")), message="the toast", timeout=10)
        toasts = [str(t.render()) for t in app.screen.query("Toast")]
        assert any(t.startswith("filter 'bogus=1': unknown field 'bogus'") for t in toasts), \
            toasts
        assert screen.where == []
