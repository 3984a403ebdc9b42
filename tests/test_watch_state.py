"""Alerts you can trust unattended (issue 17), end to end on the real broker.

`watch --once` from cron: two rules files, or two clusters, sharing one state
directory never resolve each other's alerts; `for` holds across runs; a notice
that could not be delivered waits in the outbox and goes out once, with its
original times and id, when the webhook answers again; lagdeck's own redrive
groups are left alone; SIGTERM is bounded whatever the sink does; a stopped
consumer is STOP without commit timestamps.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from console.cli import main
from console.embedded import EmbeddedBroker
from tests.conftest import create_topics, kp_commit, kp_producer, wait_until
from tests.test_watch import Proc, consume_and_commit, make_lagging_group, watch_once, webhook_sink
from tests.test_webhook import Receiver

pytestmark = pytest.mark.integration


def rules_file(path: Path, *rules: str, sinks: str = "") -> Path:
    path.write_text("\n".join(f"[[rule]]\n{r}\n" for r in rules) + "\n" + sinks)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outbox_files(state: Path) -> list[Path]:
    return sorted((state / "outbox").glob("*/*.json"))


def test_two_rules_files_alternating_once_runs(
    bootstrap: str, names: Callable[[str], str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], isolated_state: Path,
) -> None:
    """Same rule name, other definition, in two files run in turn by cron; plus a `for`."""
    _, group = make_lagging_group(bootstrap, names, produced=20, consumed=3)  # lag 17
    with Receiver() as hook:
        sinks = webhook_sink(hook.url)
        a = rules_file(tmp_path / "a.toml",
                       f'name = "behind"\ngroup = "{group}"\nmax_lag = 5',
                       f'name = "slow"\ngroup = "{group}"\nmax_lag = 5\nfor = "5s"', sinks=sinks)
        b = rules_file(tmp_path / "b.toml", f'name = "behind"\ngroup = "{group}"\nmax_lag = 6',
                       sinks=sinks)
        runs: list[tuple[str, int, dict[str, Any]]] = []
        #: (evaluated_at, the slow rule's state) after each a.toml run, from the book (floats)
        a_books: list[tuple[float, dict[str, Any] | None]] = []
        slow_fired = False
        deadline = time.monotonic() + 60
        while not slow_fired or len(runs) < 4:  # cron's turns, a little faster
            which = a if len(runs) % 2 == 0 else b
            code, doc, err = watch_once(capsys, bootstrap, which)
            assert code == 1, err  # warnings firing (and never "nothing firing")
            runs.append((which.name, code, doc))
            if which is a:
                (path,) = (isolated_state / "alerts").glob("*.json")
                book = json.loads(path.read_text())
                slow = next((x for x in book["alerts"] if x["rule"] == "slow"), None)
                a_books.append((book["evaluated_at"], slow))
            slow_fired = slow_fired or any(e["rule"] == "slow" for e in doc["events"])
            assert time.monotonic() < deadline, "the for = 5s rule never fired"
            time.sleep(0.4)

        events = [(name, e["event"], e["rule"], e["threshold"])
                  for name, _, doc in runs for e in doc["events"]]
        assert events == [("a.toml", "firing", "behind", 5), ("b.toml", "firing", "behind", 6),
                          ("a.toml", "firing", "slow", 5)]
        # each run shows its own file's alerts firing, the other file's untouched
        for name, _, doc in runs:
            own = {(x["rule"], x["threshold"]) for x in doc["alerts"]}
            assert ("behind", 5 if name == "a.toml" else 6) in own

        # `for` held across the b.toml runs: the rule fired on the first a.toml run
        # evaluated at least 5 s after the breach began
        since = a_books[0][1]["since"]
        fired = next(i for i, (_, st) in enumerate(a_books) if st["phase"] == "firing")
        assert all(st["phase"] == "pending" and st["since"] == since and at - since < 5
                   for at, st in a_books[:fired])
        at, st = a_books[fired]
        assert st["since"] == since and st["fired_at"] == at and at - since >= 5

        bodies = hook.received()
        assert [(x["event"], x["rule"], x["threshold"]) for x in bodies] == [
            ("firing", "behind", 5), ("firing", "behind", 6), ("firing", "slow", 5)]
        assert len({x["id"] for x in bodies}) == 3


def test_one_rules_file_alternating_two_clusters(
    broker: EmbeddedBroker, names: Callable[[str], str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = names("billing")
    with EmbeddedBroker(log_dir=tmp_path) as second, Receiver() as hook:
        clusters = {}
        for b, suffix in ((broker, "eu"), (second, "us")):
            _, group = make_lagging_group(b.bootstrap, lambda p, s=suffix: f"{prefix}-{p}-{s}")
            clusters[b.bootstrap] = (b.cluster_id, group)
        rules = rules_file(tmp_path / "r.toml",
                           f'name = "behind"\ngroup = "{prefix}-.*"\nmax_lag = 5',
                           sinks=webhook_sink(hook.url))
        order = [broker.bootstrap, second.bootstrap] * 3
        for bootstrap in order:
            code, doc, err = watch_once(capsys, bootstrap, rules)
            assert code == 1, err
            assert [a["group"] for a in doc["alerts"]] == [clusters[bootstrap][1]]
        bodies = hook.received()
        assert sorted((x["event"], x["cluster"], x["group"]) for x in bodies) == sorted(
            ("firing", cid, group) for cid, group in clusters.values())
        assert broker.cluster_id != second.cluster_id


def test_webhook_down_for_one_run_then_up(
    bootstrap: str, names: Callable[[str], str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], isolated_state: Path,
) -> None:
    """Run 1: nothing listens. Run 2: the receiver answers 503 once (after reading the
    body), then 200. The firing notice arrives once accepted, with its original times,
    and the re-sent copy carries the same id."""
    _, group = make_lagging_group(bootstrap, names, produced=9, consumed=2)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/lag"
    rules = rules_file(tmp_path / "r.toml", f'name = "behind"\ngroup = "{group}"\nmax_lag = 3',
                       sinks=webhook_sink(url, retries=1))

    code, first, err = watch_once(capsys, bootstrap, rules)
    assert code == 1
    (fired,) = first["events"]
    assert "kept in the outbox" in err
    assert len(outbox_files(isolated_state)) == 1

    with Receiver(statuses=[503], port=port) as hook:
        code, second, err = watch_once(capsys, bootstrap, rules)
        assert code == 1 and second["events"] == [], err  # nothing new fires
    (body,) = hook.received()
    assert (body["event"], body["group"], body["id"]) == ("firing", group, fired["id"])
    assert body["since"][:19] == first["alerts"][0]["since"][:19]
    assert body["at"][:19] == fired["at"][:19]  # the time it fired, in run 1
    assert [b["id"] for b in hook.all_bodies] == [fired["id"], fired["id"]]  # re-sent: same id
    assert outbox_files(isolated_state) == []


def test_match_all_rule_leaves_redrive_groups_alone(
    bootstrap: str, names: Callable[[str], str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = names("dlt")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    for i in range(6):
        producer.send(topic, value=f"dead-{i}".encode())
        producer.flush()
    producer.close()
    redrive_group = f"lagdeck-redrive.{topic}"
    service_group = names("svc")
    kp_commit(bootstrap, redrive_group, {(topic, 0): 1})
    kp_commit(bootstrap, service_group, {(topic, 0): 1})
    rules = rules_file(tmp_path / "r.toml",
                       f'name = "all"\ngroup = ".*"\ntopic = "{topic}"\nmax_lag = 2',
                       f'name = "redrive"\ngroup = "lagdeck-redrive\\\\..*"\ntopic = "{topic}"\n'
                       'max_lag = 2')
    _, doc, err = watch_once(capsys, bootstrap, rules)
    fired = {(a["rule"], a["group"]) for a in doc["alerts"] if a["topic"] == topic}
    assert fired == {("all", service_group), ("redrive", redrive_group)}, err


def test_sigterm_with_a_sink_that_never_answers(
    bootstrap: str, names: Callable[[str], str], tmp_path: Path, isolated_state: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM ends watch within 3 s (a bound on a process, per the issue), the notice
    waits in the outbox, and the next run delivers it once the sink answers."""
    _, group = make_lagging_group(bootstrap, names, produced=6, consumed=1)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts connections, never answers
        port = listener.getsockname()[1]
        url = f"http://127.0.0.1:{port}/hooks/lag"
        sink = f'[[sink]]\ntype = "webhook"\nurl = "{url}"\ntimeout = "30s"\n'
        rules = rules_file(tmp_path / "r.toml",
                           f'name = "behind"\ngroup = "{group}"\nmax_lag = 2', sinks=sink)
        proc = Proc(["-b", bootstrap, "watch", "--rules", str(rules), "--interval", "0.5"],
                    isolated_state)
        try:
            wait_until(lambda: any("FIRING" in line for line in proc.out), 60,
                       message="the alert to fire")
            assert len(outbox_files(isolated_state)) == 1
            proc.proc.send_signal(signal.SIGTERM)
            proc.proc.wait(timeout=3)
        finally:
            proc.kill()
    assert "Traceback" not in "".join(proc.err)
    (kept,) = outbox_files(isolated_state)
    notice = json.loads(kept.read_text())

    with Receiver(port=port) as hook:
        code, doc, err = watch_once(capsys, bootstrap, rules)
        assert code == 1 and doc["events"] == [], err
    (body,) = hook.received()
    assert body == notice["body"]
    assert body["event"] == "firing" and body["group"] == group
    assert outbox_files(isolated_state) == []


def test_second_ctrl_c_exits_at_once(bootstrap: str, names: Callable[[str], str],
                                     tmp_path: Path, isolated_state: Path) -> None:
    _, group = make_lagging_group(bootstrap, names, produced=6, consumed=1)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/lag"
        rules = rules_file(tmp_path / "r.toml",
                           f'name = "behind"\ngroup = "{group}"\nmax_lag = 2',
                           sinks=f'[[sink]]\ntype = "webhook"\nurl = "{url}"\ntimeout = "30s"\n')
        proc = Proc(["-b", bootstrap, "watch", "--rules", str(rules), "--interval", "0.5"],
                    isolated_state)
        try:
            wait_until(lambda: any("FIRING" in line for line in proc.out), 60,
                       message="the alert to fire")
            proc.proc.send_signal(signal.SIGINT)
            wait_until(lambda: any("Ctrl-C again" in line for line in proc.err), 5,
                       every=0.01, message="the stopping line")
            proc.proc.send_signal(signal.SIGINT)
            code = proc.proc.wait(timeout=3)
        finally:
            proc.kill()
    assert code == 130  # the immediate exit, not the end of a bounded close (exit 1)
    assert "interrupted again: exiting now" in "".join(proc.err)
    assert len(outbox_files(isolated_state)) == 1


def test_consumer_stopped_before_lagdeck_first_looks_is_stop(
    bootstrap: str, names: Callable[[str], str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's case is a consumer stopped 3 minutes before lagdeck first looks. What
    lagdeck can know is the same whether it stopped 3 minutes or 3 seconds before: the
    offset does not move across samples and no member is active. So the grace period is
    set to 2 s (`[lag] grace`, configurable) and the test takes seconds: a fresh state
    directory, 2 samples within the grace period, then one after it."""
    config = tmp_path / "config.toml"
    config.write_text('[lag]\ngrace = "2s"\n')
    monkeypatch.setenv("LAGDECK_CONFIG", str(config))
    topic = names("loyalty-in")
    group = names("loyalty-service")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    for i in range(12):
        producer.send(topic, value=f"points-{i}".encode())
        producer.flush()
    producer.close()
    assert consume_and_commit(bootstrap, group, topic, count=5) == {0: 5}  # then stopped

    first_sample = time.time()
    assert main(["-b", bootstrap, "lag", "--group", f"^{group}$", "--samples", "2",
                 "--interval", "0.3", "--json"]) == 0
    (early,) = json.loads(capsys.readouterr().out)["groups"]
    assert early["status"] != "STOP"  # 2 samples within grace: not enough evidence yet

    time.sleep(max(0.0, first_sample + 2.2 - time.time()))  # real time must pass the grace
    assert main(["-b", bootstrap, "lag", "--group", f"^{group}$", "--json"]) == 0
    (late,) = json.loads(capsys.readouterr().out)["groups"]
    assert (late["status"], late["total_lag"]) == ("STOP", 7)
    main(["-b", bootstrap, "lag", "-v", "--group", f"^{group}$"])
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if topic in line]  # the partition row
    assert "STOP" in row and "commit time unknown" in row and " OK " not in row
