"""`lagdeck watch` when the cluster goes away: `cluster-unreachable` is its own alert.

One firing notice per outage to every sink, however many rounds it lasts, and
one resolved notice when the cluster answers again; `watch --once` exits 3
(Nagios UNKNOWN) while no rule can be evaluated, and cron-style runs share
the outage through the state directory, so they notify once too. Real broker,
real faults (SIGKILL and restart on the same port; a blackholing proxy), a
real local webhook.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.cli import main
from tests.conftest import wait_until
from tests.faults.cluster import FaultyBroker
from tests.test_watch import Proc, webhook_sink
from tests.test_webhook import Receiver

pytestmark = pytest.mark.integration

RULE = "cluster-unreachable"


def rules_file(path: Path, *urls: str) -> Path:
    path.write_text('[[rule]]\nname = "behind"\ngroup = "billing-.*"\nmax_lag = 10\n\n'
                    + "".join(webhook_sink(u) for u in urls))
    return path


def unreachable_notices(hook: Receiver) -> list[str]:
    return [b["event"] for b in hook.received() if b["rule"] == RULE]


def test_killed_broker_fires_once_per_outage_to_every_sink_and_resolves(
        killable: FaultyBroker, tmp_path: Path, isolated_state: Path) -> None:
    with Receiver() as one, Receiver() as two:
        rules = rules_file(tmp_path / "rules.toml", one.url, two.url)
        proc = Proc(["-b", killable.bootstrap, "watch", "--rules", str(rules),
                     "--interval", "0.3", "--json"], isolated_state)
        try:
            wait_until(lambda: len(proc.out) >= 1, 60, message="a first evaluation")
            killable.kill()

            def unknown_rounds() -> int:
                docs = [json.loads(line) for line in list(proc.out)]
                return sum(1 for d in docs if any(a["rule"] == RULE for a in d["alerts"]))

            # several rounds of the same outage ...
            wait_until(lambda: unknown_rounds() >= 3, 90, message="three unreachable rounds")
            wait_until(lambda: unreachable_notices(one) and unreachable_notices(two), 30,
                       message="the firing notice")
            killable.restart()
            wait_until(lambda: "resolved" in unreachable_notices(one)
                       and "resolved" in unreachable_notices(two), 60,
                       message="the resolved notice")
            rounds_after = len(proc.out)
            wait_until(lambda: len(proc.out) >= rounds_after + 2, 30,
                       message="two rounds after recovery")
            code = proc.stop(15)
        finally:
            proc.kill()
        # ... and exactly one notice each way, to each sink
        assert unreachable_notices(one) == ["firing", "resolved"]
        assert unreachable_notices(two) == ["firing", "resolved"]
        firing = next(b for b in one.received() if b["rule"] == RULE)
    assert firing["severity"] == "critical" and firing["group"] == killable.bootstrap
    assert "Traceback" not in "".join(proc.err)
    assert code == 0, "".join(proc.err)
    docs = [json.loads(line) for line in proc.out]
    assert not any(a["rule"] == RULE for a in docs[-1]["alerts"]), "still unreachable at the end"


def test_once_exits_3_while_unreachable_and_notifies_once_across_cron_runs(
        proxied: FaultyBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Receiver() as hook:
        rules = rules_file(tmp_path / "rules.toml", hook.url)
        argv = ["-b", proxied.bootstrap, "watch", "--rules", str(rules), "--once", "--json"]
        assert main(argv) == 0
        capsys.readouterr()

        proxied.proxy.blackhole()
        for _ in range(2):  # two cron runs during one outage
            assert main(argv) == 3
            captured = capsys.readouterr()
            doc = json.loads(captured.out)
            assert [a["rule"] for a in doc["alerts"]] == [RULE]
            assert captured.err.startswith(
                f"lagdeck: error: cannot reach Kafka at {proxied.bootstrap}")
            assert captured.err.count("\n") == 1
        proxied.proxy.heal()
        assert main(argv) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["alerts"] == []
        wait_until(lambda: len(unreachable_notices(hook)) >= 2, 30, message="two notices")
        assert unreachable_notices(hook) == ["firing", "resolved"]
