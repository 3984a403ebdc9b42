"""Headless commands when the broker goes away: one clear line, a non-zero exit, no hang.

- `lag`, `dlq show` and `trace` against a blackholed cluster (connections
  accepted, nothing answered) fail with one `lagdeck: error:` line, exit 1.
- A replay whose broker goes away between preview and execute refuses, says
  nothing was changed, and the audit log claims nothing.
- A `trace` whose broker dies during the cold scan says the scan was cut
  short, reports `"complete": false`, exits 1, and the correlation index does
  not claim the partition it could not finish.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.errors import BrokerUnavailable
from collectors.kafka import producer
from dlq.audit import read_audit
from dlq.replay import ResetSpec, committed_offsets, execute_reset, plan_reset
from tests.conftest import create_topics, kp_commit, wait_until
from tests.faults.cluster import FaultyBroker
from tracing.index import CorrelationIndex, index_path
from tracing.settings import from_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent


def test_commands_fail_with_one_line_when_the_cluster_does_not_answer(
        proxied: FaultyBroker) -> None:
    create_topics(proxied.bootstrap, "orders.events-dlt")
    proxied.proxy.blackhole()
    commands = (["lag"], ["dlq", "show", "orders.events-dlt"], ["trace", "ord-1"])
    procs = [subprocess.Popen([sys.executable, "-m", "console.cli", "-b", proxied.bootstrap,
                               *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for argv in commands]  # side by side
    for argv, proc in zip(commands, procs, strict=True):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (argv, err)
        assert err.startswith("lagdeck: error: ") and err.count("\n") == 1, (argv, err)
        assert "unreachable" in err or "cannot reach" in err, (argv, err)


def test_replay_refuses_when_the_broker_went_away_after_the_preview(
        proxied: FaultyBroker) -> None:
    topic, group = "payments.events", "billing"
    create_topics(proxied.bootstrap, topic)
    kp_commit(proxied.bootstrap, group, {(topic, 0): 0})
    cluster = proxied.cluster()
    plan = plan_reset(cluster, group, topic, ResetSpec.to_offset(0), timeout=5)

    proxied.proxy.blackhole()
    with pytest.raises(BrokerUnavailable) as caught:
        execute_reset(cluster, plan, timeout=3)
    message = str(caught.value)
    del caught  # its traceback holds the admin client; see docs/outages.md (librdkafka #4605)
    gc.collect()
    assert message.startswith(f"replay of group {group} refused:")
    assert "nothing was changed" in message and "\n" not in message
    after = [e for e in read_audit() if e["event"] == "after"][-1]
    assert after["action"] == "replay.execute"
    assert after["outcome"] == "error" and after["counts"] == {}  # claims nothing

    proxied.proxy.heal()
    assert committed_offsets(cluster, group, topic, 1, timeout=10) == {0: 0}


def test_trace_whose_broker_dies_during_the_cold_scan_says_so(
        proxied: FaultyBroker, isolated_state: Path) -> None:
    topic = "orders.events"
    create_topics(proxied.bootstrap, topic)
    cluster = proxied.cluster()
    p = producer(cluster, **{"linger.ms": 20})
    for i in range(60_000):
        p.produce(topic, key=f"ord-{i % 5000}".encode(), value=b"x" * 150, partition=0,
                  headers=[("correlation-id", f"ord-{i % 5000}".encode())])
        if i == 59_998:
            p.flush(30)  # the last record alone: Tansu's end offsets are right then
    assert p.flush(30) == 0

    proxied.proxy.delay(0.05)  # a slow link, so the scan is still reading when it dies
    start = proxied.proxy.forwarded
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "-b", proxied.bootstrap, "trace", "ord-42",
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_until(lambda: proxied.proxy.forwarded - start > 500_000, 60, every=0.02,
                   message="the scan to be reading records")
        proxied.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("lagdeck: error:")]
    assert len(errors) == 1 and "scan cut short" in errors[0], err
    doc = json.loads(out)
    assert doc["complete"] is False
    assert any(n.startswith("scan cut short") for n in doc["notes"])

    index = CorrelationIndex(index_path(cluster), from_settings(None).fingerprint())
    try:
        covered = index.coverage().get((topic, 0))
    finally:
        index.close()
    assert covered is None or covered.end < 60_000, "the index claims what was never read"
