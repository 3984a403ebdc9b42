"""Redrive without surprises: advice that never duplicates, --to with its own progress,
malformed redrive counts skipped with a reason, records behind a stop counted."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient

from console.cli import main
from dlq.redrive import ALREADY_MOVED, Redrive
from tests.conftest import create_topics
from tests.test_dlq_support import produce, read_topic, spring_dead_letters, spring_headers

pytestmark = pytest.mark.integration


def _ids(cluster, topic: str, expected: int) -> Counter:
    return Counter(r.header("lagdeck-redrive-id").decode()
                   for r in read_topic(cluster, topic, 1, expected, timeout=10))


def test_the_advised_selection_moves_nothing_already_moved(cluster, bootstrap, names,
                                                           capsys) -> None:
    target = names("orders")
    dlq = names("advice") + ".DLT"
    create_topics(bootstrap, target, dlq)
    records = spring_dead_letters(target, 10)
    key, value, _ = records[5]
    records[5] = (key, value, [("kafka_dlt-exception-fqcn", b"E")])  # no original topic
    produce(bootstrap, dlq, records)

    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--yes"]) == 1
    out = capsys.readouterr().out
    assert "moved 5, skipped 0, failed 1" in out
    assert "4 left behind a record that cannot be delivered" in out
    advised = re.search(r"--where '([^']*)'", out).group(1)
    assert advised == "original_topic!="

    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--where", advised, "--dry-run",
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["selected"], plan["skipped"]) == (9, 5)
    assert plan["targets"] == [{"topic": target, "count": 4}]
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--where", advised, "--yes",
                 "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["redriven"], done["skipped"]) == (4, 5)
    assert done["reasons"] == [{"reason": ALREADY_MOVED, "count": 5}]
    copies = _ids(cluster, target, 9)
    assert sorted(copies) == sorted(f"{dlq}/0/{i}" for i in range(10) if i != 5)
    assert max(copies.values()) == 1


def test_to_after_a_plain_redrive_does_what_it_says(cluster, bootstrap, names) -> None:
    orders, quarantine = names("orders"), names("quarantine")
    dlq = names("to") + ".DLT"
    create_topics(bootstrap, orders, quarantine, dlq)
    produce(bootstrap, dlq, spring_dead_letters(orders, 6))
    plain = Redrive(cluster, dlq).run()
    assert plain.redriven == 6
    moved = Redrive(cluster, dlq, to=quarantine).run()  # its own progress group
    assert moved.redriven == 6 and moved.group != plain.group
    # another selection to the same target: recognised there, not copied twice
    other = Redrive(cluster, dlq, to=quarantine, where=["key~order"]).run()
    assert (other.redriven, other.skipped) == (0, 6)
    assert max(_ids(cluster, quarantine, 6).values()) == 1
    assert max(_ids(cluster, orders, 6).values()) == 1


def test_malformed_redrive_counts_are_skipped_with_a_reason(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("counts") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, [
        (f"k{i}".encode(), b"v", [*spring_headers(target, 0, i, 0, "g", "E", "m"),
                                  ("lagdeck-redrive-count", count)])
        for i, count in enumerate([b"-1", b"abc", b"1", b"\x00\x00\x00\x00"])])
    result = Redrive(cluster, dlq).run()
    assert (result.redriven, result.skipped, result.failed) == (1, 3, 0)
    reasons = dict(result.reasons)
    assert sum(reasons.values()) == 3
    assert all("header is malformed" in r and "--force" in r for r in reasons)
    assert any("'-1'" in r for r in reasons) and any("'abc'" in r for r in reasons)
    forced = Redrive(cluster, dlq, force=True, group=names("forced")).run()
    assert (forced.redriven, forced.skipped) == (3, 1)  # record 2 was moved by the first run
    counts = {r.header("lagdeck-redrive-id").decode(): r.header("lagdeck-redrive-count")
              for r in read_topic(cluster, target, 1, 4, timeout=10)}
    assert counts == {f"{dlq}/0/{i}": b"1" if i != 2 else b"2" for i in range(4)}


def test_dry_run_counts_records_waiting_behind_a_stop(cluster, bootstrap, names,
                                                      capsys) -> None:
    target = names("orders")
    dlq = names("behind") + ".DLT"
    create_topics(bootstrap, target, dlq)
    deleted = names("deleted-topic")
    create_topics(bootstrap, deleted)
    produce(bootstrap, dlq, spring_dead_letters(deleted, 1)
            + spring_dead_letters(target, 199, start=1))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([deleted], operation_timeout=10)[deleted].result(timeout=15)
    # a dry run ends as the run would: 1, because a record would fail
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["selected"], doc["failed"], doc["behind"]) == (1, 1, 199)
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "would fail 1, stopping its partition there" in out
    assert "199 more wait behind that stop" in out


def test_dry_run_of_a_topic_that_is_not_a_dead_letter_topic_fails_as_the_run_would(
        cluster, bootstrap, names, capsys) -> None:
    # plain events, no dead-letter headers: nothing says where they would go back to
    topic = names("plain-orders")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, [(b"ord_1", b'{"orderId": "ord_1"}', []),
                               (b"ord_2", b'{"orderId": "ord_2"}', [])])
    assert main(["-b", bootstrap, "dlq", "redrive", topic, "--dry-run", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["dry_run"] is True and doc["redriven"] == 0 and doc["failed"] >= 1
    # with a target named, the same records would move: exit 0
    target = names("plain-target")
    create_topics(bootstrap, target)
    assert main(["-b", bootstrap, "dlq", "redrive", topic, "--to", target, "--dry-run",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["failed"] == 0 and doc["selected"] == 2
