"""DLQ paging by the printed hint, record counts without transaction markers, bad offsets."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from collectors.kafka import producer
from console.cli import main
from dlq.browse import parse_offsets, read_page
from dlq.discovery import list_dead_letter_topics
from tests.conftest import create_topics
from tests.test_dlq_support import produce, spring_headers

pytestmark = pytest.mark.integration


def test_offsets_parse_as_typed() -> None:
    assert parse_offsets("7") == 7
    assert parse_offsets("0:1,1:0, 2:13") == {0: 1, 1: 0, 2: 13}
    from collectors.errors import InvalidValue
    from console.wording import for_cli

    for bad in ("-1", "0:-1", "0:1,0:2", "x", "0:1,", "1:2:3"):
        with pytest.raises(InvalidValue, match=re.escape(f"offset {bad!r}")) as raised:
            parse_offsets(bad)
        assert for_cli(raised.value).startswith(f"--offset {bad!r}")


def _three_partition_dlq(bootstrap: str, names) -> tuple[str, set[tuple[int, int]]]:
    dlq = names("paged") + ".DLT"
    create_topics(bootstrap, dlq, partitions=3)
    counts = (4, 1, 6)
    for p, n in enumerate(counts):
        produce(bootstrap, dlq, [(f"k{p}-{i}".encode(), b"v",
                                  spring_headers("orders", p, i, 0, "g", "E", "m"))
                                 for i in range(n)], partition=p)
    return dlq, {(p, o) for p, n in enumerate(counts) for o in range(n)}


def test_paging_by_the_printed_hint_visits_every_record_once(bootstrap, names, capsys) -> None:
    dlq, expected = _three_partition_dlq(bootstrap, names)
    seen: list[tuple[int, int]] = []
    argv = ["-b", bootstrap, "dlq", "show", dlq, "--limit", "2"]
    for _ in range(20):
        assert main(argv) == 0
        out = capsys.readouterr().out
        seen += [(int(p), int(o)) for p, o in re.findall(rf"^{re.escape(dlq)}\[(\d+)\]@(\d+)",
                                                         out, re.M)]
        hint = re.search(r"next page: --offset (\S+)", out)
        if hint is None:
            assert "0 after these" in out
            break
        argv = ["-b", bootstrap, "dlq", "show", dlq, "--limit", "2", "--offset", hint.group(1)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_negative_and_ambiguous_offsets_are_refused(bootstrap, names, capsys) -> None:
    dlq, _ = _three_partition_dlq(bootstrap, names)
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--offset=-1"]) == 2
    assert "--offset '-1'" in capsys.readouterr().err
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--offset", "1"]) == 2
    assert "give one per partition, e.g. 0:1,1:1,2:1" in capsys.readouterr().err
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--offset", "5:0"]) == 2
    assert "has no partition 5" in capsys.readouterr().err


def test_counts_are_data_records_not_offsets(cluster, bootstrap, names, capsys) -> None:
    """A transactional writer (a redrive, a Spring app with transactions) leaves a commit
    marker after each transaction: 3 transactions of 6 records take 21 offsets."""
    dlq = names("txn") + ".DLT"
    create_topics(bootstrap, dlq)
    txn = producer(cluster, **{"transactional.id": f"t-{uuid.uuid4().hex}"})
    txn.init_transactions(10)
    for t in range(3):
        txn.begin_transaction()
        for i in range(6):
            txn.produce(dlq, key=f"k{t}-{i}".encode(), value=b"v",
                        headers=spring_headers("orders", 0, i, 0, "g", "E", "m"))
        txn.commit_transaction(10)
    txn.flush(10)
    page = read_page(cluster, dlq, limit=5)
    assert (page.depth, page.remaining, page.exact) == (18, 13, True)
    summary = next(s for s in list_dead_letter_topics(cluster) if s.topic == dlq)
    assert summary.depth == 18 and summary.depth_exact
    seen = len(page.entries)
    while page.next is not None:
        page = read_page(cluster, dlq, start=page.next, limit=5)
        seen += len(page.entries)
        assert page.remaining == 18 - seen
    assert seen == 18
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--json", "--limit", "20"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["depth"], doc["remaining"], len(doc["messages"])) == (18, 0, 18)


def test_counts_after_a_transactional_redrive_into_a_dead_letter_topic(cluster, bootstrap,
                                                                      names, capsys) -> None:
    """A redrive writes one transaction per batch: its target holds a marker per batch."""
    from dlq.redrive import Redrive
    from tests.test_dlq_support import spring_dead_letters

    source, parked = names("src") + ".DLT", names("parked") + ".DLT"
    create_topics(bootstrap, source, parked)
    produce(bootstrap, source, spring_dead_letters("orders", 18))
    assert Redrive(cluster, source, to=parked, batch_size=6).run().redriven == 18
    assert main(["-b", bootstrap, "dlq", "show", parked, "--limit", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["depth"], doc["remaining"], doc["depth_exact"]) == (18, 13, True)
    assert main(["-b", bootstrap, "dlq", "list", "--json"]) == 0
    listed = {t["topic"]: t["depth"] for t in json.loads(capsys.readouterr().out)["topics"]}
    assert listed[parked] == 18


def test_a_page_opened_at_one_record_starts_with_it_on_any_partition_count(
        cluster, bootstrap, names) -> None:
    """`RecordAt` (the timeline's jump to a dead letter): the record opens the page and the
    other partitions start at their end, whatever the topic's partition count."""
    from dlq.browse import RecordAt

    dlq, _ = _three_partition_dlq(bootstrap, names)
    page = read_page(cluster, dlq, start=RecordAt(2, 3), limit=10)
    assert [(e.record.partition, e.record.offset) for e in page.entries] == \
        [(2, 3), (2, 4), (2, 5)]
    assert page.next is None
    wide = names("wide") + ".DLT"
    create_topics(bootstrap, wide, partitions=70)  # more than the old fake cursor's 64
    for partition in (65, 69):  # 65 first: a page that started it at its beginning shows it
        produce(bootstrap, wide, [(b"k", b"v", spring_headers("orders", 0, 0, 0, "g", "E",
                                                               "m"))], partition=partition)
    page = read_page(cluster, wide, start=RecordAt(69, 0), limit=10)
    assert [(e.record.partition, e.record.offset) for e in page.entries] == [(69, 0)]
    from collectors.errors import UsageError

    with pytest.raises(UsageError, match="has no partition 70"):
        read_page(cluster, wide, start=RecordAt(70, 0), strict=True)
