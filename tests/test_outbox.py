"""The persistent outbox of notices (issue 17): order, dedup by id, expiry, two senders."""

from __future__ import annotations

from pathlib import Path

from collectors.alerts.rules import parse_rules_text
from collectors.alerts.sinks.outbox import Outbox, sweep_expired
from collectors.alerts.sinks.webhook import WebhookSink
from collectors.alerts.state import EventKind
from tests.conftest import wait_until
from tests.test_webhook import Receiver, Reports, closed_port_url, event


def test_put_keeps_one_copy_per_id_oldest_first(tmp_path: Path) -> None:
    box = Outbox("webhook-x", root=tmp_path)
    assert box.put("id-1", {"n": 1}) and box.put("id-2", {"n": 2})
    assert not box.put("id-1", {"n": 1})  # the same notice again: kept once
    assert [e.body["n"] for e in box.pending()] == [1, 2]


def test_an_entry_is_sent_by_one_holder_at_a_time(tmp_path: Path) -> None:
    box = Outbox("webhook-x", root=tmp_path)
    box.put("id-1", {})
    (entry,) = box.pending()
    with box.claim(entry) as first:
        with Outbox("webhook-x", root=tmp_path).claim(entry) as second:
            assert first and not second
        box.remove(entry)
    with box.claim(entry) as again:
        assert not again  # gone: a sender that listed it earlier must not send it
    assert box.pending() == []


def test_unreadable_entry_is_set_aside(tmp_path: Path) -> None:
    box = Outbox("webhook-x", root=tmp_path)
    box.put("id-1", {"n": 1})
    (box.dir / "00000000000000000001-broken.json").write_text("{not json")
    assert [e.body for e in box.pending()] == [{"n": 1}]
    assert list(box.dir.glob(".*.bad"))


def test_firing_then_resolve_kept_while_down_go_out_in_order() -> None:
    reports = Reports()
    with Receiver() as rx:
        port = rx.server.server_port
    url = f"http://127.0.0.1:{port}/hooks/lag"
    down = WebhookSink(url, timeout=0.5, retries=0, report=reports)
    down.notify([event(), event(EventKind.RESOLVED, value=0, at=1_746_100_900.0)])
    down.close(3)
    assert down.pending() == 2
    with Receiver(port=port) as rx:
        up = WebhookSink(url, retries=0, report=reports)
        wait_until(lambda: len(rx.received()) == 2, 10, message="the kept notices")
        up.close(3)
    assert [b["event"] for b in rx.received()] == ["firing", "resolved"]
    assert up.pending() == 0


def test_expired_notices_are_dropped_and_said() -> None:
    reports = Reports()
    sink = WebhookSink(closed_port_url(), retries=0, timeout=0.5, expire_after=0.2,
                       retry_every=0.1, report=reports)
    sink.notify([event()])
    wait_until(lambda: sink.pending() == 0, 10, message="the notice to expire")
    sink.close(1)
    assert any("expired undelivered" in line for line in reports.snapshot())


def test_expire_is_a_sink_setting() -> None:
    text = ('[[rule]]\nname="r"\ngroup="g"\nmax_lag=1\n'
            '[[sink]]\ntype="webhook"\nurl="http://127.0.0.1:9/h"\nexpire="2h"\n')
    (sink,) = parse_rules_text(text).sinks
    assert sink.expire == 7200.0


def test_sweep_removes_expired_notices_of_any_sink(tmp_path: Path) -> None:
    gone = Outbox("webhook-no-longer-configured", root=tmp_path)
    gone.put("old", {}, now=1000.0, expire_after=10.0)
    gone.put("fresh", {}, expire_after=3600.0)
    assert sweep_expired(tmp_path) == 1
    assert [e.id for e in gone.pending()] == ["fresh"]
    assert sweep_expired(tmp_path / "missing") == 0
