"""Pure parts of outage handling: backoff, `[outage]` settings, the cluster-unreachable
alert's steps, and how the status bar words each connection state."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.alerts.state import EventKind
from collectors.alerts.unreachable import RULE, OutageStore, step
from collectors.config import Settings
from collectors.errors import ConfigError
from collectors.liveness import OutageSettings, backoff
from console.widgets.status_bar import Connection, connection_text


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, base=1.0, cap=4.0) for n in range(1, 7)] == [1, 2, 4, 4, 4, 4]
    assert backoff(10_000, base=0.5, cap=4.0) == 4.0


def test_outage_settings_defaults_keep_detection_within_show_after() -> None:
    s = OutageSettings()
    assert (s.show_after, s.reconnect_max) == (5.0, 4.0)
    assert s.probe_interval + s.probe_timeout < s.show_after


@pytest.mark.parametrize(("section", "fragment"), [
    ({"show_after": "soon"}, "must be a duration"),
    ({"show_after": "20m"}, "must be from 500ms to 10m"),
    ({"reconnect": "4s"}, "unknown key 'reconnect'"),
])
def test_outage_settings_errors_name_the_key(section: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        OutageSettings.from_settings(Settings(Path("lagdeck.toml"), "", {"outage": section}))


def test_outage_settings_parse_durations() -> None:
    s = OutageSettings.from_settings(Settings(None, "", {"outage": {
        "show_after": "2s", "reconnect_max": 3}}))
    assert (s.show_after, s.reconnect_max) == (2.0, 3.0)


def test_one_firing_notice_per_outage_then_one_resolved() -> None:
    outage, events = step(None, "k:9092", False, 100.0, "no answer within 2s")
    assert [(e.kind, e.rule) for e in events] == [(EventKind.FIRING, RULE)]
    assert events[0].group == "k:9092" and "no answer" in events[0].message
    for t in (110.0, 120.0):
        outage, events = step(outage, "k:9092", False, t, "no answer within 2s")
        assert events == ()
    assert outage is not None and outage.since == 100.0
    outage, events = step(outage, "k:9092", True, 130.0)
    assert outage is None and [e.kind for e in events] == [EventKind.RESOLVED]
    assert events[0].since == 100.0 and "after 30s" in events[0].message
    assert step(None, "k:9092", True, 140.0) == (None, ())


def test_outage_store_round_trip_per_cluster(tmp_path: Path) -> None:
    store = OutageStore(tmp_path / "outages.json")
    outage, _ = step(None, "a:1", False, 5.0, "down")
    store.save("a:1", outage)
    assert store.load("a:1") == outage and store.load("b:1") is None
    store.save("a:1", None)
    assert store.load("a:1") is None
    (tmp_path / "outages.json").write_text("{not json")
    assert store.load("a:1") is None  # a broken file is ignored, not fatal


def test_status_bar_never_calls_stale_data_live() -> None:
    live = connection_text(Connection("connected", last_ok=1000.0), now=1001.0).plain
    assert live.startswith("● connected")
    down = connection_text(Connection("unreachable", last_ok=1000.0, retry_in=4.0),
                           now=1035.0).plain
    assert down == "✕ unreachable · data 35s old · retry 4s"
    assert "connected" not in down
    back = connection_text(Connection("recovering", last_ok=1000.0), now=1040.0).plain
    assert back == "◐ reconnecting… · data 40s old"
    assert "no data yet" in connection_text(Connection("unreachable"), now=5.0).plain
