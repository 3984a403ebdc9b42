"""Whose alert is it (issue 17): rule identity, rules source, lagdeck's own groups, ids.

Pure evaluation, no broker: the end-to-end runs are in tests/test_watch_state.py.
"""

from __future__ import annotations

import re
from dataclasses import replace

from collectors.alerts.book import AlertStore, store_name
from collectors.alerts.evaluate import evaluate, names_own_groups, rule_identity
from collectors.alerts.rules import Rule
from collectors.alerts.state import AlertBook, EventKind, notice_id
from tests.test_alerts import lagging, snap

A, B = "/etc/lagdeck/a.toml", "/etc/lagdeck/b.toml"


def rule(name: str = "behind", group: str = "notification-.*", **kw) -> Rule:
    return Rule(name=name, group=re.compile(group), **kw)


def test_two_rules_files_alternating_never_resolve_each_other() -> None:
    ra, rb = rule("behind", max_lag=5), rule("behind", max_lag=10)  # same name, other rule
    assert rule_identity(ra) != rule_identity(rb)
    book, events = AlertBook(), []
    for i in range(6):
        rules, source = ([ra], A) if i % 2 == 0 else ([rb], B)
        result = evaluate(rules, lagging(float(i), 40), book, source=source)
        book, events = result.book, [*events, *result.events]
    assert [(e.kind, e.rule_id) for e in events] == [
        (EventKind.FIRING, rule_identity(ra)), (EventKind.FIRING, rule_identity(rb))]
    assert len(book.firing) == 2


def test_for_holds_across_runs_of_another_file() -> None:
    slow = rule("slow", max_lag=5, for_seconds=5.0)
    other = rule("other", max_lag=5)
    book = AlertBook()
    fired_at = None
    for t in range(8):
        rules, source = ([slow], A) if t % 2 == 0 else ([other], B)
        result = evaluate(rules, lagging(float(t), 40), book, source=source)
        book = result.book
        if any(e.rule == "slow" for e in result.events):
            fired_at = t
            break
    assert fired_at == 6  # the first run of a.toml at least 5 s after the breach began (t=0)


def test_a_rule_removed_or_edited_resolves_only_its_own_alerts_once() -> None:
    ra, rb = rule("a-behind", max_lag=5), rule("b-behind", max_lag=5)
    book = evaluate([ra], lagging(0, 40), source=A).book
    book = evaluate([rb], lagging(1, 40), book, source=B).book
    edited = rule("a-behind", max_lag=6)
    result = evaluate([edited], lagging(2, 40), book, source=A)
    kinds = sorted((e.kind.value, e.rule_id) for e in result.events)
    assert kinds == sorted([("resolved", rule_identity(ra)), ("firing", rule_identity(edited))])
    assert "rule no longer configured" in next(
        e.message for e in result.events if e.kind is EventKind.RESOLVED)
    again = evaluate([edited], lagging(3, 40), result.book, source=A)
    assert again.events == ()  # once
    assert {a.rule for a in again.book.firing} == {"a-behind", "b-behind"}


def test_own_groups_need_a_rule_that_names_them() -> None:
    everything = rule("all", ".*", max_lag=1)
    redrive = rule("redrive", r"lagdeck-redrive\..*", max_lag=1)
    assert not names_own_groups(everything) and names_own_groups(redrive)
    s = lagging(0, 40, name="lagdeck-redrive.payments.events-dlt")
    assert evaluate([everything], s).events == ()
    assert [e.group for e in evaluate([redrive], s).events] == [
        "lagdeck-redrive.payments.events-dlt"]


def test_own_group_prefix_matches_the_redrive_groups() -> None:
    from collectors.alerts.evaluate import is_own_group
    from dlq.redrive import default_group
    from dlq.select import parse_where, picked_selector

    for selector, to in ((parse_where([]), None), (parse_where(["key=a"]), None),
                         (parse_where([]), "orders"), (picked_selector(frozenset({(0, 1)})), None)):
        assert is_own_group(default_group("payments.events-dlt", selector, to))
    assert not is_own_group("payments-service")


def test_notice_ids_are_stable_per_transition_and_cluster() -> None:
    fired = evaluate([rule(max_lag=5)], lagging(0, 40)).events[0]
    c1, c2 = replace(fired, cluster="c1"), replace(fired, cluster="c2")
    assert notice_id(c1) == notice_id(replace(c1, at=99.0, value=41))
    assert notice_id(c1) != notice_id(c2)
    assert notice_id(c1) != notice_id(replace(c1, kind=EventKind.RESOLVED))


def test_one_book_per_cluster(tmp_path) -> None:
    assert store_name("tansu_cluster") != store_name("tansu-cluster")
    assert "/" not in store_name("../../etc/passwd")
    r = rule(max_lag=5)
    one = AlertStore(cluster="one")
    one.save(evaluate([r], lagging(0, 40)).book)
    assert AlertStore(cluster="two").load().states == ()
    assert len(AlertStore(cluster="one").load().firing) == 1


def test_an_errored_snapshot_holds_other_files_alerts() -> None:
    book = evaluate([rule("a", max_lag=5)], lagging(0, 40), source=A).book
    result = evaluate([rule("b", max_lag=5)], snap(1.0), book, source=B)
    assert result.events == () and len(result.book.firing) == 1
