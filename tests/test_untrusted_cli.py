"""The CLI on hostile records, over the wire: `dlq show`, `dlq list`, `trace`, `lag`,
`watch` (and `dlq redrive`, with the audit log and the log file it writes) print no
control character that came from a record, a topic name or a group name.

The records are produced by kafka-python (tests/hostile.py) into topics whose names,
and under a consumer group whose name, are hostile too; each command runs as the
operator would run it, in a subprocess, and its output is captured as bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile import HOSTILE, VISIBLE, HostileWorld, unsafe_chars, write_hostile

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(broker) -> HostileWorld:
    w = HostileWorld()
    write_hostile(broker.bootstrap, w)
    return w


def lagdeck(bootstrap: str, *argv: str, runner: tuple[str, ...] = ("console.cli",)
            ) -> tuple[int, str, str]:
    """Run the command; stdout and stderr must be valid UTF-8 and free of control chars."""
    proc = subprocess.run([sys.executable, "-m", *runner, "-b", bootstrap, *argv],
                          capture_output=True, timeout=120, cwd=ROOT)
    out = proc.stdout.decode("utf-8")  # strict: raises on invalid UTF-8
    err = proc.stderr.decode("utf-8")
    assert unsafe_chars(out) == [], f"control characters on stdout: {out[:400]!r}"
    assert unsafe_chars(err) == [], f"control characters on stderr: {err[:400]!r}"
    return proc.returncode, out, err


def visible(text: str) -> bool:
    return all(marker in text for marker in VISIBLE)


def test_dlq_show_and_list_print_hostile_fields_escaped(bootstrap, world):
    code, out, err = lagdeck(bootstrap, "dlq", "show", world.dlt_topic, "--limit", "10")
    assert code == 0, err
    assert visible(out), out[:2000]
    assert "field [/data/orderId] missing" in out  # the Spring exception message
    assert f"key=0x{b'dl0'.hex()}" in out  # keys that are not printable UTF-8: hex
    assert out.count("\n  header x-evil") == 1  # the record without an envelope
    assert "…" in out  # the 100 kB header value is cut with a mark
    assert max(len(line) for line in out.splitlines()) < 3000

    code, out, err = lagdeck(bootstrap, "dlq", "list")
    assert code == 0, err
    line = next(line for line in out.splitlines() if world.run + "-dlt" in line)
    assert "payments[i]\\x1b]0;pwned\\x07\\u202e" in line and "\\u200b" in line


def test_dlq_show_json_keeps_the_meaning_and_is_valid_utf8(bootstrap, world):
    code, out, err = lagdeck(bootstrap, "dlq", "show", world.dlt_topic, "--json")
    assert code == 0, err
    doc = json.loads(out)
    messages = doc["messages"]
    assert len(messages) == 3
    assert HOSTILE in messages[0]["error_message"]  # the same text, JSON-escaped on the wire
    assert messages[0]["original_group"] == world.group
    assert doc["topic"] == world.dlt_topic


def test_trace_prints_the_hostile_order_escaped(bootstrap, world):
    code, out, err = lagdeck(bootstrap, "trace", world.order, "--topics", f".*{world.run}.*")
    assert code == 0, err + out
    assert "DEAD LETTER" in out and visible(out), out[:2000]
    assert "field [/data/orderId] missing" in out


def test_lag_and_watch_print_names_as_the_broker_reports_them(bootstrap, world, tmp_path: Path):
    """Tansu answers %-encoded names (see tests/hostile_cli.py): nothing raw gets through."""
    code, out, err = lagdeck(bootstrap, "lag", "--group", world.group_regex)
    assert code == 0, err
    assert world.plain_group in out and "svc%5Bbold%5D" in out
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname = "behind"\ngroup = "[\\\\s\\\\S]*{world.run}"\n'
                     'max_lag = 0\nseverity = "critical"\n')
    code, out, err = lagdeck(bootstrap, "watch", "--once", "--rules", str(rules))
    assert code in (0, 2), err + out


def test_lag_prints_hostile_group_and_topic_names_escaped(bootstrap, world):
    code, out, err = lagdeck(bootstrap, "lag", "--group", world.group_regex,
                             runner=("tests.hostile_cli", world.run))
    assert code == 0, err
    assert "svc[bold]x[link=evil]\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\u202e" in out, out
    assert "\\n" + world.run in out  # the newline in the group name stays on its line
    assert "orders[bold]x[link=evil]\\x1b[2J\\x1b[H\\u202e\\u200b" in out  # partitions
    assert "client[/]" in out and "why [/]" in out and visible(out)
    assert "snapshot error [/]" in err  # the warnings on stderr too


def test_watch_prints_alerts_on_a_hostile_group_escaped(bootstrap, world, tmp_path: Path):
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname = "behind"\ngroup = "[\\\\s\\\\S]*{world.run}"\n'
                     'max_lag = 0\nseverity = "critical"\n')
    code, out, err = lagdeck(bootstrap, "watch", "--once", "--rules", str(rules),
                             runner=("tests.hostile_cli", world.run))
    assert code == 2, err + out
    assert "FIRING" in out and "svc[bold]x[link=evil]\\x1b[2J" in out, out
    assert "\\u202e" in out and "\\u200b" in out


def test_redrive_audit_log_and_log_file_stay_free_of_control_chars(
        bootstrap, world, isolated_state: Path):
    # (the default progress group, lagdeck-redrive.TOPIC, is refused by librdkafka for
    # this topic name: "group id is not safe")
    code, out, err = lagdeck(bootstrap, "dlq", "redrive", world.dlt_topic, "--where",
                             "error_class~evil", "--group", f"lagdeck-redrive-{world.run}",
                             "--yes")
    assert code == 0, err + out
    assert "redrove 2 of 2" in out and "payments[i]\\x1b]0;pwned\\x07" in out
    audit = (isolated_state / "audit.log").read_bytes().decode("utf-8")
    assert unsafe_chars(audit) == []
    entries = [json.loads(line) for line in audit.splitlines()]
    assert entries and entries[0]["parameters"]["topic"] == world.dlt_topic  # same meaning
    log = (isolated_state / "lagdeck.log").read_bytes().decode("utf-8")
    assert unsafe_chars(log) == []


def test_console_over_the_wire_shows_the_hostile_dead_letters_escaped(broker, world):
    """The same records read back by the console's own Kafka source (real browse,
    decode and timeline over the wire), not the hand-made `HostileSource`."""
    import asyncio

    from collectors.config import ClusterConfig
    from console.app import LagdeckApp
    from console.data import KafkaSource
    from console.screens.dead_letters import DeadLettersScreen
    from console.widgets.keyed_table import KeyedTable
    from tests.test_untrusted_tui import assert_escaped, screenshot_text, shown
    from tests.tui_fixtures import until

    async def run() -> None:
        source = KafkaSource(ClusterConfig({"bootstrap.servers": broker.bootstrap}),
                             timeout=10.0)
        app = LagdeckApp(source, poll_interval=3600)
        async with app.run_test(size=(160, 50)) as pilot:
            await app.workers.wait_for_complete()
            app.show_dead_letters(world.dlt_topic, partition=0, offset=0)
            await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen)
                        and app.screen.page is not None
                        and app.screen.page.topic == world.dlt_topic, message="the page")
            screen = app.screen
            records = screen.query_one("#dlq-records", KeyedTable)
            await until(pilot, lambda: records.row_count >= 1, message="the records")
            await pilot.pause()
            text = shown(screen)
            assert_escaped(text, where="dead letters read from the broker")
            assert "field [/data/orderId] missing" in text
            screenshot_text(app)
            app.follow(world.order)
            await until(pilot, lambda: getattr(app.screen, "timeline", None) is not None
                        and bool(app.screen.timeline.events), timeout=60,
                        message="the order's timeline")
            assert_escaped(shown(app.screen), where="the timeline read from the broker")
            screenshot_text(app)

    asyncio.run(run())
