"""`lagdeck watch` end to end: rules errors, and real lagging groups on the real broker.

The lagging groups are made the way other teams' services make them: a
kafka-python consumer reads part of a topic and commits; later it catches up.
The demo world's slow notification-service is watched by a long-running
`lagdeck watch` process that is stopped with SIGTERM and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collectors.alerts.sinks.otlp import LAG_METRIC, LAG_SECONDS_METRIC
from console.cli import main
from tests.conftest import create_topics, kp_producer, wait_until
from tests.test_otlp import OtlpReceiver
from tests.test_webhook import DOCUMENTED_KEYS, Receiver, closed_port_url

# ---------------------------------------------------------------------------- helpers


def consume_and_commit(bootstrap: str, group: str, topic: str, partitions: int = 1,
                       count: int | None = None) -> dict[int, int]:
    """Read `count` records per partition (None: up to the end) as `group`, then commit."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=200)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        targets = {tp: ends[tp] if count is None else min(count, ends[tp]) for tp in tps}
        for tp in tps:
            committed = consumer.committed(tp)
            consumer.seek(tp, committed or 0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            consumer.position(tp) < targets[tp] for tp in tps
        ):
            for tp, records in consumer.poll(timeout_ms=200).items():
                if records and records[-1].offset + 1 > targets[tp]:
                    consumer.seek(tp, targets[tp])
        offsets = {tp: OffsetAndMetadata(targets[tp], "", -1) for tp in tps}
        consumer.commit(offsets)
        return {tp.partition: targets[tp] for tp in tps}
    finally:
        consumer.close()


def make_lagging_group(bootstrap: str, names: Callable[[str], str], produced: int = 20,
                       consumed: int = 3) -> tuple[str, str]:
    topic, group = names("watch-orders"), names("watch-billing")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    for i in range(produced):
        producer.send(topic, key=f"o-{i}".encode(), value=b'{"event": "OrderPlaced"}')
        producer.flush()
    producer.close()
    assert consume_and_commit(bootstrap, group, topic, count=consumed) == {0: consumed}
    return topic, group


def write_rules(path: Path, group: str, *, max_lag: int, for_: str, sinks: str = "",
                severity: str = "critical") -> Path:
    path.write_text(
        f'[[rule]]\nname = "behind"\ngroup = "{group}"\nmax_lag = {max_lag}\n'
        f'for = "{for_}"\nseverity = "{severity}"\n\n{sinks}'
    )
    return path


def webhook_sink(url: str, retries: int = 0) -> str:
    return f'[[sink]]\ntype = "webhook"\nurl = "{url}"\ntimeout = "1s"\nretries = {retries}\n\n'


def watch_once(capsys: pytest.CaptureFixture[str], bootstrap: str, rules: Path,
               json_out: bool = True) -> tuple[int, Any, str]:
    argv = ["-b", bootstrap, "watch", "--rules", str(rules), "--once"]
    code = main([*argv, "--json"] if json_out else argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if json_out else captured.out, captured.err


class Proc:
    """`lagdeck watch` as its own process, with stdout and stderr collected by threads."""

    def __init__(self, argv: list[str], state: Path) -> None:
        env = {**os.environ, "LAGDECK_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console.cli", *argv], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---------------------------------------------------------------------------- rules errors


@pytest.mark.parametrize(
    ("body", "line", "field", "fragment"),
    [
        ('name = "r"\ngroup = "g"\nmax_lag = 5\nfor = "2s"\nseverty = "critical"\n', 6,
         "severty", "unknown field (did you mean 'severity'?)"),
        ('name = "r"\ngroup = "g"\nmax_lag = 5\ndelay = "2s"\n', 5, "delay", "unknown field"),
        ('name = "r"\ngroup = "notification-(.*"\nmax_lag = 5\n', 3, "group", "bad regex"),
        ('name = "r"\ngroup = "g"\nmax_lag = 5\nfor = "2 minutes"\n', 5, "for", "bad duration"),
    ],
    ids=["typo", "unknown-key", "bad-regex", "bad-duration"],
)
def test_bad_rules_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           body: str, line: int, field: str,
                                           fragment: str) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]]\n" + body)
    code = main(["-b", "127.0.0.1:1", "watch", "--rules", str(rules), "--once"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith(f"lagdeck: error: {rules}:{line}: rule 'r': field '{field}': ")
    assert fragment in err


def test_bad_rule_in_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[profiles.local]\nbootstrap_servers = "127.0.0.1:1"\n\n'
                      '[[rule]]\nname = "c"\ngroup = "g"\nmin_status = "STALLED"\n')
    monkeypatch.setenv("LAGDECK_CONFIG", str(config))
    assert main(["--profile", "local", "watch", "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lagdeck: error: {config}:7: rule 'c': field 'min_status': ")
    assert "did you mean 'STALL'" in err


def test_no_rules_and_bad_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-b", "127.0.0.1:1", "watch", "--once"]) == 2
    assert "no alert rules" in capsys.readouterr().err
    rules = write_rules(tmp_path / "r.toml", "g", max_lag=1, for_="0s")
    assert main(["-b", "127.0.0.1:1", "watch", "--rules", str(rules), "--interval", "0"]) == 2
    assert "--interval must be more than 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------- on the broker


@pytest.mark.integration
def test_fires_after_for_and_resolves_when_the_group_catches_up(
    bootstrap: str, names: Callable[[str], str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], isolated_state: Path,
) -> None:
    topic, group = make_lagging_group(bootstrap, names, produced=20, consumed=3)
    with Receiver() as hook, OtlpReceiver() as otlp:
        sinks = webhook_sink(hook.url) + f'[[sink]]\ntype = "otlp"\nendpoint = "{otlp.endpoint}"\n'
        rules = write_rules(tmp_path / "rules.toml", group, max_lag=5, for_="2s", sinks=sinks)

        # first look: the breach is pending, nothing fires yet
        code, doc, err = watch_once(capsys, bootstrap, rules)
        assert (code, doc["alerts"], doc["events"]) == (0, [], []), err
        (pending,) = doc["pending"]
        assert (pending["group"], pending["value"], pending["threshold"]) == (group, 17, 5)
        assert len(list((isolated_state / "alerts").glob("*.json"))) == 1  # one cluster

        # later cron-style runs remember when it started and fire once `for` has passed
        runs: list[tuple[int, Any]] = []

        def fired() -> bool:
            code, doc, _ = watch_once(capsys, bootstrap, rules)
            runs.append((code, doc))
            return code == 2

        wait_until(fired, 30, every=0.3, message="the rule to fire")
        code, doc = runs[-1]
        (alert,) = doc["alerts"]
        assert {k: alert[k] for k in ("rule", "group", "topic", "severity", "value",
                                      "threshold")} == {
            "rule": "behind", "group": group, "topic": None, "severity": "critical",
            "value": 17, "threshold": 5}
        assert "lag 17 messages" in alert["message"]
        assert [e["event"] for e in doc["events"]] == ["firing"]
        assert alert["since"] == pending["since"]
        assert all(c == 0 and not d["alerts"] for c, d in runs[:-1])

        # the webhook got the documented JSON, exactly once
        (body,) = hook.received()
        assert set(body) == DOCUMENTED_KEYS
        assert (body["event"], body["rule"], body["group"], body["value"]) == (
            "firing", "behind", group, 17)

        # the OTLP receiver decoded the gauges for the group's partition
        assert otlp.latest(LAG_METRIC)[(group, topic, 0)] == 17
        seconds = otlp.latest(LAG_SECONDS_METRIC)
        if (group, topic, 0) in seconds:  # present whenever the time lag could be measured
            assert seconds[(group, topic, 0)] >= 0
        assert any(name == "lagdeck.alert.firing" and attrs["group"] == group
                   for _, attrs, name, _ in otlp.log_records())

        # still firing: no second notice (de-duplicated), exit code still critical
        code, doc, _ = watch_once(capsys, bootstrap, rules)
        assert code == 2 and doc["events"] == [] and len(hook.received()) == 1

        # the group catches up: after `resolve_for` (= `for`) clear, one resolve notice, exit 0
        assert consume_and_commit(bootstrap, group, topic) == {0: 20}
        runs.clear()
        wait_until(lambda: not fired(), 30, every=0.3, message="the alert to resolve")
        code, doc = runs[-1]
        assert code == 0 and doc["alerts"] == []
        assert [(e["event"], e["value"]) for e in doc["events"]] == [("resolved", 0)]
        # until then it stayed firing, quietly, while its lag was already zero
        assert all(c == 2 and not d["events"] and d["alerts"][0]["value"] == 0
                   for c, d in runs[:-1])
        first, resolved = hook.received()
        assert (resolved["event"], resolved["value"], resolved["since"]) == (
            "resolved", 0, first["since"])
        assert otlp.latest(LAG_METRIC)[(group, topic, 0)] == 0
        assert any(name == "lagdeck.alert.resolved" for _, _, name, _ in otlp.log_records())


@pytest.mark.integration
def test_text_output_and_warning_exit_code(bootstrap: str, names: Callable[[str], str],
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, group = make_lagging_group(bootstrap, names, produced=8, consumed=2)
    rules = write_rules(tmp_path / "rules.toml", group, max_lag=1, for_="0s",
                        severity="warning")
    with rules.open("a") as fh:  # a second rule whose regex has a typo
        fh.write('\n[[rule]]\nname = "typo"\ngroup = "bilings-.*"\nmax_lag = 1\n')
    code, out, err = watch_once(capsys, bootstrap, rules, json_out=False)
    assert code == 1
    assert f"FIRING [warning] behind: {group}: lag 6 messages, threshold 1 messages" in out
    assert "1 alert(s) firing" in out
    assert f"lagdeck: warning: rule 'typo' ({rules}:9): no consumer group matches" in err


def test_broker_down_with_once_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rules = write_rules(tmp_path / "rules.toml", "g", max_lag=1, for_="0s")
    address = closed_port_url().split("/")[2]
    code = main(["-b", address, "watch", "--rules", str(rules), "--once"])
    err = capsys.readouterr().err
    assert code == 3  # Nagios UNKNOWN: no rule could be evaluated
    assert err.startswith(f"lagdeck: error: cannot reach Kafka at {address}")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.integration
def test_watch_the_demo_world_until_sigterm(bootstrap: str, cluster, tmp_path: Path,
                                            isolated_state: Path) -> None:
    """The slow notification-service fires, catches up and resolves; a dead webhook is
    reported while watch keeps running; SIGTERM stops it cleanly."""
    from console.demo import events as ev
    from console.demo.world import DemoWorld

    dead = closed_port_url()
    with Receiver() as hook:
        sinks = webhook_sink(hook.url) + webhook_sink(dead)
        rules = write_rules(tmp_path / "rules.toml", ev.NOTIFICATION_GROUP, max_lag=3,
                            for_="1s", sinks=sinks)
        world = DemoWorld(cluster, seed=7, rate=8.0).start()
        proc = Proc(["-b", bootstrap, "watch", "--rules", str(rules), "--interval", "0.5"],
                    isolated_state)
        try:
            wait_until(lambda: [b for b in hook.received() if b["event"] == "firing"], 60,
                       message="notification-service to fire")
            firing = hook.received()[0]
            assert firing["group"] == ev.NOTIFICATION_GROUP and firing["value"] > 3

            # the dead webhook is reported on stderr, and watch carries on evaluating
            wait_until(lambda: any("not delivered" in line for line in proc.err), 30,
                       message="the dead webhook to be reported")
            assert proc.proc.poll() is None
            (state,) = (isolated_state / "alerts").glob("*.json")
            seen = json.loads(state.read_text())["evaluated_at"]
            wait_until(lambda: json.loads(state.read_text())["evaluated_at"] > seen, 30,
                       message="another evaluation after the failure")

            # the group catches up: stop the world, then notification-service commits the end
            world.stop()
            consume_and_commit(bootstrap, ev.NOTIFICATION_GROUP, ev.PAYMENTS,
                               partitions=ev.TOPICS[ev.PAYMENTS])
            wait_until(lambda: [b for b in hook.received() if b["event"] == "resolved"], 60,
                       message="notification-service to resolve")
            assert [b["event"] for b in hook.received()] == ["firing", "resolved"]

            code = proc.stop(signal.SIGTERM)
        finally:
            world.stop()
            proc.kill()
    out, err = "".join(proc.out), "".join(proc.err)
    assert code == 0, err  # clean stop, nothing firing any more
    assert "Traceback" not in err
    assert f"FIRING [critical] behind: {ev.NOTIFICATION_GROUP}" in out
    assert f"RESOLVED [critical] behind: {ev.NOTIFICATION_GROUP}: resolved" in out
    assert "webhook http://127.0.0.1:" in err and dead.split("/hooks")[1] not in err


@pytest.mark.integration
def test_ctrl_c_stops_json_watch_with_the_alert_level(bootstrap: str,
                                                      names: Callable[[str], str],
                                                      tmp_path: Path,
                                                      isolated_state: Path) -> None:
    _, group = make_lagging_group(bootstrap, names, produced=6, consumed=1)
    rules = write_rules(tmp_path / "rules.toml", group, max_lag=2, for_="0s")
    proc = Proc(["-b", bootstrap, "watch", "--rules", str(rules), "--interval", "0.3",
                 "--json"], isolated_state)
    try:
        wait_until(lambda: len(proc.out) >= 2, 60, message="two evaluations")
        code = proc.stop(signal.SIGINT)
    finally:
        proc.kill()
    docs = [json.loads(line) for line in proc.out]  # one JSON document per line
    assert code == 2, "".join(proc.err)
    assert "Traceback" not in "".join(proc.err)
    assert [e["event"] for e in docs[0]["events"]] == ["firing"]
    assert all(d["alerts"][0]["value"] == 5 for d in docs)
    assert all(d["events"] == [] for d in docs[1:])  # de-duplicated
