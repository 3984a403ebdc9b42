"""Edges an on-call SRE hits at 3 AM, found in the release review; one regression each."""

from __future__ import annotations

import re

import pytest

from console.cli import main
from tests.conftest import create_topics
from tests.test_dlq_support import produce, spring_headers


@pytest.mark.integration
def test_a_huge_page_or_batch_size_reads_the_topic_instead_of_failing(bootstrap, names,
                                                                       capsys) -> None:
    """`consume(n)` refuses n above a million: `--limit` and `--batch-size` must not reach it."""
    orders, dlq = names("orders"), names("orders") + ".DLT"
    create_topics(bootstrap, orders, dlq)
    produce(bootstrap, dlq, [(f"k{i}".encode(), b"{}", spring_headers(orders, 0, i, 0, "g", "E",
                                                                       "m")) for i in range(3)])
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--limit", "99999999999999"]) == 0
    out = capsys.readouterr().out
    assert re.findall(rf"^{re.escape(dlq)}\[0\]@(\d+)", out, re.M) == ["0", "1", "2"]
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run",
                 "--batch-size", "99999999999"]) == 0
    captured = capsys.readouterr()
    assert "would redrive 3 to " + orders in captured.out
    assert "unexpected" not in captured.err


@pytest.mark.parametrize("argv", [
    ["lag", "--samples", "2", "--interval", "nan"],
    ["lag", "--samples", "2", "--interval", "inf"],
    ["lag", "--samples", "2", "--interval", "1e308"],
    ["lag", "--timeout", "nan"],
    ["watch", "--interval", "inf"],
    ["watch", "--interval", "1e308"],
    ["watch", "--publish", "--session-timeout", "nan"],
    ["dlq", "redrive", "some.DLT", "--rate", "nan"],
    ["demo", "--headless", "--rate", "inf"],
])
def test_non_finite_or_endless_numbers_are_a_usage_line(argv, capsys) -> None:
    """nan passed `< 0` checks and inf or 1e308 overflowed `Event.wait`: an unexpected error
    (exit 1, which `watch` means as "warning") instead of a usage line (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["-b", "127.0.0.1:1", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"error: argument --[a-z-]+: (must be a finite number|at most)", err)
    assert "unexpected" not in err


def test_a_run_reports_and_exits_on_its_own_rules_alerts_only() -> None:
    """Two cron jobs, a.toml (critical) and b.toml (warning), share the cluster's book: b's run
    used to list a's alert with a's last value and exit 2 for a rule it does not have."""
    from collectors.alerts.evaluate import evaluate
    from collectors.alerts.rules import Rule, Severity
    from tests.test_alerts import lagging

    a = Rule(name="pager", group=re.compile("notification-.*"), max_lag=5,
             severity=Severity.CRITICAL)
    b = Rule(name="ticket", group=re.compile("notification-.*"), max_lag=5,
             severity=Severity.WARNING)
    first = evaluate([a], lagging(0.0, 40), source="/etc/a.toml")
    assert first.exit_code == 2 and [x.rule for x in first.firing] == ["pager"]
    second = evaluate([b], lagging(1.0, 40), first.book, source="/etc/b.toml")
    assert [x.rule for x in second.firing] == ["ticket"]
    assert second.exit_code == 1
    assert {x.rule for x in second.book.firing} == {"pager", "ticket"}  # a's alert is kept
    third = evaluate([a], lagging(2.0, 40), second.book, source="/etc/a.toml")
    assert [x.rule for x in third.firing] == ["pager"] and third.events == ()
    slow = Rule(name="slow", group=re.compile("notification-.*"), max_lag=5, for_seconds=60.0)
    fourth = evaluate([slow], lagging(3.0, 40), third.book, source="/etc/c.toml")
    assert [s.key.rule for s in fourth.pending] == ["slow"] and fourth.firing == ()
    assert [s.key.rule for s in evaluate([b], lagging(4.0, 40), fourth.book,
                                         source="/etc/b.toml").pending] == []


@pytest.mark.integration
def test_lagdecks_own_snapshot_topic_is_not_an_order_topic(bootstrap, names, capsys) -> None:
    """The `watch --publish` topic (keys are group names) showed up in flows as an extra step
    with the groups counted as orders, and trace scanned it."""
    import json

    from collectors.config import ClusterConfig
    from collectors.topics import list_topics
    from tests.conftest import kp_producer

    orders, snapshots = names("orders"), "_lagdeck." + names("lag")
    create_topics(bootstrap, orders, snapshots)
    producer = kp_producer(bootstrap)
    producer.send(orders, key=b"ord-1", value=b'{"event":"OrderPlaced","orderId":"ord-1"}')
    producer.send(snapshots, key=b"billing-service", value=b'{"group":"billing-service"}')
    producer.flush()
    producer.close()
    topics = list_topics(ClusterConfig({"bootstrap.servers": bootstrap}))
    assert orders in topics and snapshots not in topics
    assert snapshots in list_topics(ClusterConfig({"bootstrap.servers": bootstrap}),
                                    include_internal=True)
    assert main(["-b", bootstrap, "flows", "--json", "--since", "1h"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert orders in {s["topic"] for s in steps}
    assert snapshots not in {s["topic"] for s in steps}


@pytest.mark.integration
def test_from_snapshots_alerts_are_kept_per_cluster(bootstrap, names, tmp_path, capsys) -> None:
    """`watch --from-snapshots --once` from cron against two clusters (same default topic
    name): the alert book was keyed by the topic name alone, so each run resolved the other
    cluster's alerts as "no longer reported" and fired them again on the next."""
    import time

    from collectors.config import ClusterConfig
    from collectors.snapshot_topic import SnapshotPublisher, ensure_topic
    from console.embedded import EmbeddedBroker
    from tests.test_alerts import lagging

    topic = "_lagdeck." + names("lag")
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "behind"\ngroup = "billing-.*"\nmax_lag = 10\n')
    with EmbeddedBroker(log_dir=tmp_path) as other:
        servers = {"one": bootstrap, "two": other.cluster().bootstrap_servers}
        for name, servers_of in servers.items():
            cluster = ClusterConfig({"bootstrap.servers": servers_of})
            ensure_topic(cluster, topic, 1)
            publisher = SnapshotPublisher(cluster, topic, interval=60.0, published_by="t:1")
            try:
                publisher.publish(lagging(time.time(), 40, name=f"billing-{name}"),
                                  owns=lambda g: True)
            finally:
                publisher.close()
        outputs = []
        for name in ("one", "two", "one", "two"):
            code = main(["-b", servers[name], "--from-snapshots", topic, "watch", "--rules",
                         str(rules), "--once"])
            outputs.append((code, capsys.readouterr().out))
    assert [code for code, _ in outputs] == [1, 1, 1, 1]
    assert "FIRING" in outputs[0][1] and "billing-one" in outputs[0][1]
    assert "FIRING" in outputs[1][1] and "billing-two" in outputs[1][1]
    assert all("RESOLVED" not in out for _, out in outputs)
    assert all("FIRING" not in out.split("alert(s) firing")[0] for _, out in outputs[2:])


@pytest.mark.integration
def test_an_unknown_step_names_every_step_and_escapes_once(bootstrap, names, capsys) -> None:
    """The list of steps was cut at 80 characters ("… (132 characters)") and a control
    character in the typed step came out escaped twice ('\\\\x1b')."""
    from tests.conftest import kp_producer

    topic = names("orders")
    create_topics(bootstrap, topic)
    kinds = ["OrderPlacedWithAVeryLongEventName", "InventoryReservedForTheOrder",
             "PaymentCapturedByTheProvider", "NotificationSentToTheCustomer"]
    producer = kp_producer(bootstrap)
    for kind in kinds:
        producer.send(topic, key=b"ord-7", value=f'{{"event":"{kind}","orderId":"ord-7"}}'
                      .encode(), headers=[("event-type", kind.encode())])
        producer.flush()
    producer.close()
    assert main(["-b", bootstrap, "flows", "--topics", f"^{re.escape(topic)}$",
                 "--step", "No\x1bSuch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert "--step 'No\\x1bSuch'" in err
    assert all(kind in err for kind in kinds)
