"""The audit log: a JSON line before and after every mutating action, never a secret."""

from __future__ import annotations

import json

import pytest

from collectors.config import ClusterConfig, resolve
from collectors.errors import LagdeckError
from collectors.paths import state_dir
from console.cli import main
from dlq.audit import audit_path, audited, read_audit
from dlq.replay import ResetSpec, execute_reset, plan_reset
from tests.conftest import create_topics
from tests.test_dlq_support import produce, spring_dead_letters

SECRET = "hunter2-very-secret"


def test_before_and_after_lines_pair_up() -> None:
    cluster = ClusterConfig({"bootstrap.servers": "kafka:9092"}, profile="prod")
    with audited(cluster, "dlq.redrive", {"topic": "orders.DLT", "rate": 5.0}) as action:
        assert [e["event"] for e in read_audit()] == ["before"]  # written before the work
        action.counts = {"redriven": 3}
    before, after = read_audit()
    assert audit_path() == state_dir() / "audit.log"
    assert before["action_id"] == after["action_id"]
    for entry in (before, after):
        assert entry["action"] == "dlq.redrive"
        assert entry["cluster"] == {"bootstrap_servers": "kafka:9092", "profile": "prod"}
        assert entry["parameters"] == {"topic": "orders.DLT", "rate": 5.0}
        assert entry["user"] and entry["host"] and entry["time"].endswith("+00:00")
    assert (after["outcome"], after["counts"], after["error"]) == ("ok", {"redriven": 3}, None)
    assert after["duration_s"] >= 0


def test_failures_are_recorded_and_reraised() -> None:
    cluster = ClusterConfig({"bootstrap.servers": "kafka:9092"})
    with pytest.raises(LagdeckError), audited(cluster, "replay.execute", {"group": "g"}):
        raise LagdeckError("group is STABLE")
    after = read_audit()[-1]
    assert (after["event"], after["outcome"], after["error"]) == ("after", "error",
                                                                  "group is STABLE")


def test_secrets_never_reach_the_file() -> None:
    config = resolve(bootstrap_servers="kafka:9092",
                     overrides=[f"sasl.password={SECRET}", "sasl.username=ops"])
    params = {"sasl.password": SECRET, "where": f"header.auth={SECRET}",
              "nested": {"api_key": "abc123", "note": f"x{SECRET}y"}}
    with pytest.raises(LagdeckError), audited(config.cluster, "dlq.redrive", params):
        raise LagdeckError(f"broker said: bad password {SECRET}")
    text = audit_path().read_text()
    assert SECRET not in text and "abc123" not in text
    before, after = read_audit()
    assert before["parameters"]["sasl.password"] == "[redacted]"
    assert before["parameters"]["nested"]["api_key"] == "[redacted]"
    assert before["parameters"]["where"] == "header.auth=[redacted]"
    assert after["error"] == "broker said: bad password [redacted]"


@pytest.mark.integration
def test_redrive_and_replay_are_audited(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("audited") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 4))
    assert main(["-b", bootstrap, "-X", f"sasl.password={SECRET}", "dlq", "redrive", dlq,
                 "--yes", "--json"]) == 0
    plan = plan_reset(cluster, f"lagdeck-redrive.{dlq}", dlq, ResetSpec.earliest())
    execute_reset(cluster, plan)
    entries = read_audit()
    assert [(e["action"], e["event"]) for e in entries] == [
        ("dlq.redrive", "before"), ("dlq.redrive", "after"),
        ("replay.execute", "before"), ("replay.execute", "after")]
    redrive_after = entries[1]
    assert redrive_after["counts"]["redriven"] == 4 and redrive_after["outcome"] == "ok"
    assert redrive_after["parameters"]["topic"] == dlq
    replay_before, replay_after = entries[2:]
    assert replay_before["parameters"]["partitions"] == [{"partition": 0, "from": 4, "to": 0}]
    assert replay_after["counts"] == {"partitions_changed": 1, "partitions_planned": 1}
    assert SECRET not in audit_path().read_text()
    # dry runs change nothing and are not audited
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run", "--json"]) == 0
    assert len(read_audit()) == 4
    assert json.loads(audit_path().read_text().splitlines()[0])["event"] == "before"
