"""Redrive against the real broker: faithful copies, exactly-once progress, selection, safety."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest

from console.cli import main
from dlq.audit import read_audit
from dlq.redrive import ALREADY_MOVED, Redrive, RedriveProgress, default_group
from dlq.replay import committed_offsets
from dlq.select import parse_where
from tests.conftest import create_topics, wait_until
from tests.test_dlq_support import (
    connect_headers,
    produce,
    read_topic,
    spring_dead_letters,
    spring_headers,
)

pytestmark = pytest.mark.integration

LAGDECK = ("lagdeck-redrive-id", "lagdeck-redriven-at", "lagdeck-redrive-count")


def _by_id(records):
    out = {}
    for r in records:
        rid = r.header("lagdeck-redrive-id")
        assert rid is not None, r
        out.setdefault(rid.decode(), []).append(r)
    return out


def test_redrive_returns_records_intact_and_a_rerun_moves_nothing(cluster, bootstrap,
                                                                  names) -> None:
    orders, payments = names("orders"), names("payments")
    dlq = names("mixed") + ".DLT"
    create_topics(bootstrap, orders, payments, partitions=3)
    create_topics(bootstrap, dlq, partitions=2)
    tp = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    spring = [(f"o{i}".encode(), f"spring-{i}".encode(),
               [*spring_headers(orders, i % 3, 100 + i, 5, "order-service", "E", f"m{i}"), tp])
              for i in range(6)]
    connect = [(None if i == 0 else f"c{i}".encode(), b"\x00\xffraw",
                connect_headers(payments, 1, 7 + i, "jdbc", "DataException", "bad"))
               for i in range(3)]
    produce(bootstrap, dlq, spring, partition=0)
    produce(bootstrap, dlq, connect, partition=1)

    result = Redrive(cluster, dlq).run()
    assert (result.selected, result.redriven, result.skipped, result.failed) == (9, 9, 0, 0)
    assert dict(result.targets) == {orders: 6, payments: 3}
    assert not result.cancelled and result.group == f"lagdeck-redrive.{dlq}"

    got_orders = _by_id(read_topic(cluster, orders, 3, 6))
    got_payments = _by_id(read_topic(cluster, payments, 3, 3))
    assert sorted(got_orders) == [f"{dlq}/0/{i}" for i in range(6)]
    assert sorted(got_payments) == [f"{dlq}/1/{i}" for i in range(3)]
    for i, (key, value, headers) in enumerate(spring):
        (r,) = got_orders[f"{dlq}/0/{i}"]
        assert (r.key, r.value, r.partition) == (key, value, i % 3)  # original partition kept
        assert [(h.key, h.value) for h in r.headers[:-3]] == headers
        assert [h.key for h in r.headers[-3:]] == list(LAGDECK)
        assert r.header("lagdeck-redrive-count") == b"1"
    for i, (key, value, headers) in enumerate(connect):
        (r,) = got_payments[f"{dlq}/1/{i}"]
        assert (r.key, r.value, r.partition) == (key, value, 1)
        assert [(h.key, h.value) for h in r.headers[:-3]] == headers

    again = Redrive(cluster, dlq).run()
    assert (again.scanned, again.selected, again.redriven) == (0, 0, 0)
    assert len(read_topic(cluster, orders, 3, 6)) == 6
    assert len(read_topic(cluster, payments, 3, 3)) == 3
    assert committed_offsets(cluster, result.group, dlq, 2) == {0: 6, 1: 3}


def test_where_selects_exactly_the_matching_records(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("sel") + "-dlt"
    create_topics(bootstrap, target, dlq)
    records = []
    for i in range(12):
        cls = "java.lang.IllegalStateException" if i % 3 == 0 else "com.acme.Timeout"
        headers = spring_headers(target, 0, i, 0, "g", cls, f"declined {i}" if i % 2 else "ok")
        headers.append(("tenant", b"blue" if i < 6 else b"red"))
        records.append((f"order-{i}".encode(), b"v", headers))
    produce(bootstrap, dlq, records)
    where = ["error_class~illegalstate", "header.tenant=blue"]
    plan = Redrive(cluster, dlq, where=where).plan()
    expected = [i for i in range(12) if i % 3 == 0 and i < 6]
    assert (plan.selected, plan.unmatched, plan.redriven) == (len(expected), 12 - len(expected), 0)

    result = Redrive(cluster, dlq, where=where).run()
    assert result.redriven == len(expected)
    assert result.group == default_group(dlq, parse_where(where)) != f"lagdeck-redrive.{dlq}"
    got = _by_id(read_topic(cluster, target, 1, len(expected)))
    assert sorted(got) == sorted(f"{dlq}/0/{i}" for i in expected)

    # another selection has its own progress: the messages with "declined" in them; the one
    # of them the first selection moved (3) is recognised on the target and not moved again
    second = Redrive(cluster, dlq, where=["error_message~DECLINED", "key!=order-1"]).run()
    assert second.redriven == len([i for i in range(12) if i % 2 and i not in (1, 3)])
    assert (second.skipped, dict(second.reasons)) == (1, {ALREADY_MOVED: 1})
    again = Redrive(cluster, dlq, where=["key=order-3"], again=True).run()
    assert again.redriven == 1


def test_max_attempts_refuses_looping_records(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("loop") + ".DLT"
    create_topics(bootstrap, target, dlq)
    base = spring_headers(target, 0, 1, 0, "g", "E", "m")
    produce(bootstrap, dlq, [
        (b"fresh", b"v", base),
        (b"twice", b"v", [*base, ("lagdeck-redrive-count", b"2")]),
        (b"thrice", b"v", [*base, ("lagdeck-redrive-count", b"3"),
                           ("lagdeck-redrive-id", b"old/0/0")]),
    ])
    result = Redrive(cluster, dlq, max_attempts=3).run()
    assert (result.selected, result.redriven, result.skipped, result.failed) == (3, 2, 1, 0)
    assert result.reasons == (("already redriven 3 times (--max-attempts 3)", 1),)
    got = {r.key: r for r in read_topic(cluster, target, 1, 2)}
    assert set(got) == {b"fresh", b"twice"}
    assert got[b"twice"].header("lagdeck-redrive-count") == b"3"
    # lagdeck's own headers are replaced, never stacked
    assert [h.key for h in got[b"twice"].headers].count("lagdeck-redrive-count") == 1


def test_undeliverable_record_stops_its_partition_until_fixed(cluster, bootstrap,
                                                               names) -> None:
    target = names("orders")
    dlq = names("orphans") + ".dlq"
    create_topics(bootstrap, target, dlq)
    good = spring_headers(target, 0, 1, 0, "g", "E", "m")
    produce(bootstrap, dlq, [(b"a", b"1", good), (b"b", b"2", [("error-message", b"lost")]),
                             (b"c", b"3", good)])
    first = Redrive(cluster, dlq).run()
    assert (first.redriven, first.failed) == (1, 1)
    assert "no original topic" in first.errors[0] and "partition 0 stopped" in first.errors[0]
    assert committed_offsets(cluster, first.group, dlq, 1) == {0: 1}
    again = Redrive(cluster, dlq).run()  # nothing was passed over: it stops at the same record
    assert (again.scanned, again.redriven, again.failed) == (1, 0, 1)
    fixed = Redrive(cluster, dlq, to=target).run()  # same selection, same progress group
    assert (fixed.redriven, fixed.failed) == (2, 0)
    assert sorted(r.key for r in read_topic(cluster, target, 1, 3)) == [b"a", b"b", b"c"]


def test_end_offsets_are_snapshotted_at_start(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("growing") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 20))
    added = []

    def add_more(p: RedriveProgress) -> None:
        if not added:  # a service keeps dead-lettering while the redrive runs
            added.append(produce(bootstrap, dlq, spring_dead_letters(target, 5, start=20)))

    result = Redrive(cluster, dlq, batch_size=7).run(progress=add_more)
    assert added == [5]
    assert (result.scanned, result.redriven) == (20, 20)
    assert result.end_offsets == ((0, 20),)
    later = Redrive(cluster, dlq).run()
    assert later.redriven == 5
    assert len(_by_id(read_topic(cluster, target, 1, 25))) == 25


def test_cancel_commits_what_was_done_and_a_rerun_resumes(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("cancel") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 30))
    cancel = threading.Event()

    def stop_after_first_batch(p: RedriveProgress) -> None:
        if p.redriven >= 10:
            cancel.set()

    first = Redrive(cluster, dlq, batch_size=10).run(progress=stop_after_first_batch,
                                                     cancel=cancel)
    assert first.cancelled and first.redriven == 10
    rest = Redrive(cluster, dlq, batch_size=10).run()
    assert rest.redriven == 20 and not rest.cancelled
    got = _by_id(read_topic(cluster, target, 1, 30))
    assert sorted(got) == sorted(f"{dlq}/0/{i}" for i in range(30))
    assert all(len(v) == 1 for v in got.values())


def test_dry_run_changes_nothing(cluster, bootstrap, names, capsys) -> None:
    target = names("orders")
    dlq = names("dry") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 8))
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {k: doc[k] for k in ("topic", "dry_run", "selected", "redriven", "skipped",
                                "failed")} == {
        "topic": dlq, "dry_run": True, "selected": 8, "redriven": 0, "skipped": 0, "failed": 0}
    assert doc["targets"] == [{"topic": target, "count": 8}]
    assert [s["offset"] for s in doc["samples"]] == [0, 1, 2, 3, 4]
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"would redrive 8 to {target}" in text and "first records:" in text
    assert read_topic(cluster, target, 1, 0, timeout=1.0) == []
    assert committed_offsets(cluster, f"lagdeck-redrive.{dlq}", dlq, 1) == {0: None}


def test_cli_redrive_needs_yes_when_not_interactive(cluster, bootstrap, names, capsys,
                                                    monkeypatch) -> None:
    target = names("orders")
    dlq = names("cli") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 3))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["-b", bootstrap, "dlq", "redrive", dlq]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--yes", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["dry_run"], doc["selected"], doc["redriven"]) == (False, 3, 3)
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--yes"]) == 0
    assert "redrove 0 of 0" in capsys.readouterr().out


def test_bad_where_and_missing_topics_are_one_line_errors(bootstrap, names, capsys) -> None:
    dlq = names("x") + ".DLT"
    create_topics(bootstrap, dlq)
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run", "--where", "colour=red"]) == 2
    assert "unknown field 'colour'" in capsys.readouterr().err
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--yes", "--to", "nope-xyz"]) == 1
    assert capsys.readouterr().err.strip() == \
        "lagdeck: error: target topic 'nope-xyz' does not exist"


def test_a_second_redrive_of_the_same_selection_fences_the_first(cluster, bootstrap,
                                                                 names) -> None:
    target = names("orders")
    dlq = names("fence") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 60))
    first_committed = threading.Event()
    outcome: list[BaseException | object] = []

    def slow() -> None:
        def progress(p: RedriveProgress) -> None:
            if p.redriven:
                first_committed.set()
        try:  # 20 records/s: 4 per transaction, plenty of time to be taken over
            outcome.append(Redrive(cluster, dlq, rate=20).run(progress=progress))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=slow)
    worker.start()
    try:
        wait_until(first_committed.is_set, timeout=30, message="the first redrive to commit")
        second = Redrive(cluster, dlq).run()
    finally:
        worker.join(timeout=60)
    (first,) = outcome
    # the fenced run reports what it committed, and that is what its audit entry says
    assert first.fenced and "fenced" in first.fenced, first
    assert f"lagdeck-redrive.{dlq}" in first.fenced
    resumed_at = dict(second.start_offsets)[0]  # what the fenced run had committed
    assert 0 < resumed_at < 60 and first.redriven == resumed_at
    (entry,) = [e for e in read_audit() if e["event"] == "after"
                and e["parameters"]["topic"] == dlq and e["outcome"] == "fenced"]
    assert entry["counts"]["redriven"] == first.redriven
    assert first.not_reached == 60 - resumed_at
    # records of the fenced run's rolled-back batch that a broker still shows are recognised
    assert second.redriven + second.skipped == 60 - resumed_at and not second.failed
    copies = Counter(r.header("lagdeck-redrive-id") for r in read_topic(cluster, target, 1, 60))
    assert set(copies) == {f"{dlq}/0/{i}".encode() for i in range(60)}
    assert max(copies.values()) == 1


def test_ctrl_c_stops_the_cli_cleanly_with_a_summary(cluster, bootstrap, names) -> None:
    target = names("orders")
    dlq = names("sigint") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 200))
    group = f"lagdeck-redrive.{dlq}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "-b", bootstrap, "dlq", "redrive", dlq, "--yes",
         "--rate", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (committed_offsets(cluster, group, dlq, 1)[0] or 0) > 0, timeout=30,
                   message="the redrive to commit its first batch")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping after the current batch" in err
    done = committed_offsets(cluster, group, dlq, 1)[0]
    # the summary's counts are what the target holds; the rest is counted as not reached
    assert f"stopped after moving {done} dead letters from {dlq}: selected {done}, " \
        f"moved {done}," in out
    assert f"{200 - done} not reached (a rerun resumes there)" in out
    held = Counter(r.header("lagdeck-redrive-id") for r in read_topic(cluster, target, 1, done))
    assert len(held) == done and max(held.values()) == 1
    took = re.search(r"in (\d+\.\d)s, moving (\d+\.\d)s at (\d+)/s", out)
    assert took and float(took.group(1)) > 0 and float(took.group(2)) > 0, out
    rest = Redrive(cluster, dlq).run()
    assert rest.redriven == 200 - done
    copies = Counter(r.header("lagdeck-redrive-id") for r in read_topic(cluster, target, 1, 200))
    assert len(copies) == 200 and max(copies.values()) == 1
