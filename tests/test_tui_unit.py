"""Pure pieces of the console: formatting, parsing of what the operator types, and the
`lagdeck` entry point's one-line errors. No terminal, no broker (one closed port)."""

from __future__ import annotations

import pytest

from collectors.config import ClusterConfig, Settings
from collectors.errors import BrokerUnavailable, UsageError
from collectors.snapshots import Header, Record, Status
from console.cli import main
from console.data import KafkaSource
from console.embedded import free_port
from console.screens.jump import parse_jump
from console.screens.replay import spec_from_form
from console.widgets import format as fmt
from dlq.redrive import default_group
from dlq.select import parse_filter, parse_where, picked_selector
from tests.tui_fixtures import order_timeline
from tracing.follow import follow_id
from tracing.settings import from_settings as trace_settings


def test_seconds_read_like_an_operator_says_them():
    assert [fmt.seconds(v) for v in (None, 0, 0.25, 4.2, 42, 185, 7800, 200_000)] == \
        ["—", "0s", "250ms", "4.2s", "42s", "3m 05s", "2h 10m", "2d 07h"]
    assert fmt.count(None) == "—" and fmt.count(1234567) == "1,234,567"


def test_sparkline_starts_at_zero_and_keeps_small_lag_small():
    assert fmt.sparkline([]) == ""
    assert fmt.sparkline([2, 2, 2]) == "▂▂▂"  # two messages behind is not a full bar
    assert fmt.sparkline([0, 500, 1000]) == "▁▅█"
    assert len(fmt.sparkline(list(range(100)), width=16)) == 16


def test_status_badge_and_binary_values():
    assert fmt.status_badge(Status.STOP).plain.strip() == "STOP"
    assert fmt.status_badge("nonsense").plain == "nonsense"
    assert fmt.header_value(b"\x00\x00\x00\x07") == "0x00000007 (4 bytes)"
    assert fmt.header_value("ünïcode".encode()) == "ünïcode"
    assert fmt.printable(b"\xff\xfeab\n", 60) == "\\xff\\xfeab\\n"


def test_jump_words_and_aliases():
    assert parse_jump(":group payment-service") == ("group", "payment-service")
    assert parse_jump("trace ord_123") == ("trace", "ord_123")
    assert parse_jump("dlq") == ("dlq", "")
    assert parse_jump(":alerts") == ("alerts", "")
    assert parse_jump("frobnicate") == ("", "")


def test_dead_letter_filter_line_becomes_where_expressions():
    assert parse_filter("error_class~Timeout key~ord-1") == ["error_class~Timeout", "key~ord-1"]
    assert parse_filter("error_message~did not answer header.x-a=1") == \
        ["error_message~did not answer", "header.x-a=1"]
    with pytest.raises(UsageError, match="unknown field 'bogus'"):
        parse_filter("bogus=1")


def test_picked_records_select_exactly_those_positions():
    picked = frozenset({(0, 11), (1, 4)})
    selector = picked_selector(picked)
    record = Record("t", 0, 11, None, None, None)
    assert selector.matches(record, None)
    assert not selector.matches(Record("t", 0, 12, None, None, None), None)
    assert selector.conditions and not selector.needs_envelope
    assert "2 picked records" in selector.describe()
    # each picked set has its own progress group, never the topic-wide one
    other = picked_selector(frozenset({(0, 11)}))
    assert default_group("dlt", selector) != default_group("dlt", other)
    assert default_group("dlt", selector).startswith("lagdeck-redrive.dlt.picked-")


def test_progress_group_names_never_change() -> None:
    """A rerun resumes from its group: the names are a contract with existing clusters."""
    picked = picked_selector(frozenset({(0, 11), (1, 4)}))
    assert default_group("dlt", picked) == "lagdeck-redrive.dlt.picked-1724aedbb4"
    assert default_group("dlt", parse_where(["key=a"]), "out") == "lagdeck-redrive.dlt.9e8b84e4"
    assert default_group("dlt", parse_where([])) == "lagdeck-redrive.dlt"


def test_follow_id_prefers_the_correlation_header_then_the_key():
    with_header = Record("t", 0, 1, None, b"k-1", b"{}", (Header("X-Correlation-ID", b"ord_9"),))
    assert follow_id(with_header) == "ord_9"
    assert follow_id(Record("t", 0, 1, None, b"ord_7", b"{}")) == "ord_7"
    assert follow_id(Record("t", 0, 1, None, b"\xff\x00", b"{}")) is None
    # the [trace] section (parsed at start-up, where a broken one is refused) names the header
    named = trace_settings(Settings(data={"trace": {"correlation_headers": ["x-order"]}}))
    custom = Record("t", 0, 1, None, b"k-1", b"{}", (Header("x-order", b"ord_3"),))
    assert follow_id(custom, named) == "ord_3" and follow_id(with_header, named) == "k-1"


def test_replay_form_values():
    assert spec_from_form("earliest", "").kind == "earliest"
    assert spec_from_form("shift", "-100").value == -100
    assert spec_from_form("duration", "15m").value == 900
    with pytest.raises(UsageError):
        spec_from_form("offset", "twelve")
    with pytest.raises(UsageError):
        spec_from_form("datetime", "")


def test_a_redriven_copy_is_not_shown_as_a_new_dead_letter():
    events = order_timeline().events
    assert not any(e.redriven for e in events)  # the DLT record itself is a dead letter
    from dataclasses import replace

    copy = replace(events[2], topic="inventory.events", partition=1, offset=300)
    assert copy.redriven


def test_unreachable_cluster_is_one_typed_error():
    source = KafkaSource(ClusterConfig({"bootstrap.servers": f"127.0.0.1:{free_port()}"}),
                         timeout=2.0)
    try:
        with pytest.raises(BrokerUnavailable) as caught:
            source.poll_lag()
        assert "\n" not in str(caught.value)
    finally:
        source.close()


def test_lagdeck_without_a_cluster_or_with_a_bad_keymap_exits_2(tmp_path, monkeypatch, capsys):
    assert main([]) == 2
    assert "no cluster given" in capsys.readouterr().err
    config = tmp_path / "config.toml"
    config.write_text('[keymap]\n"dlq.redirve" = "ctrl+r"\n')
    monkeypatch.setenv("LAGDECK_CONFIG", str(config))
    assert main(["-b", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown binding id 'dlq.redirve'" in err


def test_rules_in_the_config_are_loaded_and_bad_ones_reported_not_fatal():
    good = Settings(data={"rule": [{"name": "r", "group": ".*", "max_lag": 10}]},
                    text='[[rule]]\nname = "r"\ngroup = ".*"\nmax_lag = 10\n')
    source = KafkaSource(ClusterConfig({"bootstrap.servers": "x:1"}), good)
    assert len(source.alerts.ruleset.rules) == 1 and source.alerts.error is None
    bad = Settings(data={"rule": [{"name": "r", "group": "("}]},
                   text='[[rule]]\nname = "r"\ngroup = "("\n')
    source = KafkaSource(ClusterConfig({"bootstrap.servers": "x:1"}), bad)
    assert source.alerts.error and "bad regex" in source.alerts.error
