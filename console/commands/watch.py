"""`lagdeck watch`: evaluate alert rules; exit 0 none firing, 1 warning, 2 critical,
3 could not evaluate (cluster unreachable: the Nagios UNKNOWN convention).

Each round: one lag snapshot (status judged over the kept lag history), one
pure evaluation against the alert book kept under the state directory, the
notices to stdout and to the sinks (which deliver on their own threads).
The book is reloaded and saved under a lock every round, so `watch --once`
from cron remembers pending-since times and a notice is sent once even when
a long-running watch and a cron job share the state directory.

`--once` evaluates and exits; otherwise it runs until SIGTERM or Ctrl-C
(finishing the round, flushing the sinks) and exits with the code of the
last round. A failing round (broker gone) is reported on stderr and retried
at the next interval; with `--once` it is an error.

Each round starts with a liveness probe (`collectors.liveness`), so an
unreachable cluster costs seconds, not a refresh's full timeout. It is its
own alert, `cluster-unreachable` (`collectors.unreachable`): one firing
notice per outage to every sink, one resolved notice when the cluster
answers again, and exit code 3 while it lasts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from collectors import rules as rulebook
from collectors.alerts import Alert, AlertEvent, AlertStore, Evaluation, EventKind, evaluate
from collectors.config import require_bootstrap
from collectors.errors import BrokerUnavailable, LagdeckError, UsageError
from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.rules import Rule
from collectors.snapshots import LagSnapshot
from console.context import Context, print_json, to_jsonable

#: How long the sinks get to deliver what is queued when watch stops.
CLOSE_TIMEOUT = 10.0
#: The liveness probe's deadline before each round: no answer = cluster unreachable.
REACH_TIMEOUT = 5.0


class CannotEvaluate(BrokerUnavailable):
    """The cluster is unreachable, so no rule could be evaluated (Nagios UNKNOWN)."""

    exit_code = 3

_log = get_logger("watch")
_err_lock = threading.Lock()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="evaluate lag alert rules (exit 0 ok, 1 warning, "
                                     "2 critical, 3 cluster unreachable)")
    p.add_argument("--rules", metavar="FILE", help="TOML rules file (default: the config file)")
    p.add_argument("--interval", type=float, default=10.0, metavar="S",
                   help="seconds between rounds (default 10)")
    p.add_argument("--once", action="store_true", help="evaluate once and exit")
    p.add_argument("--json", action="store_true",
                   help="JSON on stdout (with --once one document, else one per line)")
    p.set_defaults(run=run)


def report(line: str) -> None:
    """Sink and collection problems: one line on stderr (thread-safe) and in the log."""
    line = scrub(line)
    _log.warning("%s", line)
    with _err_lock:
        sys.stderr.write(f"lagdeck: warning: {line}\n")
        sys.stderr.flush()


def group_pattern(rules: Sequence[Rule]) -> str:
    """One regex covering every rule's group regex, so only those groups are read.

    The collector searches (like grep); rules match whole names, hence the anchors.
    """
    return "^(?:" + "|".join(f"(?:{r.group.pattern})" for r in rules) + r")\Z"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule, "group": alert.group, "topic": alert.topic,
        "severity": alert.severity.value, "value": alert.value,
        "threshold": alert.threshold, "message": alert.message,
        "since": _iso(alert.since), "fired_at": _iso(alert.fired_at),
    }


def event_json(event: AlertEvent) -> dict[str, Any]:
    return {
        "event": event.kind.value, "rule": event.rule, "group": event.group,
        "topic": event.topic, "severity": event.severity.value, "value": event.value,
        "threshold": event.threshold, "message": event.message, "at": _iso(event.at),
    }


def document(result: Evaluation) -> dict[str, Any]:
    """The `--json` document: DESIGN.md's `alerts`, plus this round's notices and pending."""
    return {
        "alerts": [alert_json(a) for a in result.firing],
        "events": [event_json(e) for e in result.events],
        "pending": [
            {"rule": s.key.rule, "group": s.key.group, "topic": s.key.topic,
             "severity": s.severity.value, "value": s.value, "threshold": s.threshold,
             "since": _iso(s.since)}
            for s in result.book.pending
        ],
        "evaluated_at": _iso(result.book.evaluated_at) if result.book.evaluated_at else None,
    }


def notice(event: AlertEvent) -> str:
    tag = "FIRING" if event.kind is EventKind.FIRING else "RESOLVED"
    return f"{_iso(event.at)} {tag} [{event.severity.value}] {event.rule}: {event.message}"


def _print_text(result: Evaluation, once: bool, checked: int) -> None:
    lines = [notice(e) for e in result.events]
    if once:
        firing = result.firing
        if firing:
            lines.append(f"{len(firing)} alert(s) firing:")
            lines.extend(f"  [{a.severity.value}] {a.rule}: {a.message} (since {_iso(a.since)})"
                         for a in firing)
        else:
            lines.append(f"no alerts firing ({checked} group(s) checked)")
        for s in result.book.pending:
            lines.append(f"  pending since {_iso(s.since)}: {s.key.rule}: {s.message}")
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def _report_unmatched(rules: Sequence[Rule], snapshot: LagSnapshot) -> None:
    """A rule whose group regex matches nothing is usually a typo: say so once."""
    for rule in rules:
        if not any(rule.matches_group(g.group) for g in snapshot.groups):
            report(f"rule {rule.name!r} ({rule.source}): no consumer group matches "
                   f"{rule.group.pattern!r} (yet)")


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and the first Ctrl-C ask for a clean stop; a second Ctrl-C interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _outage_events(store, outages, cluster: str, reachable: bool, detail: str = "") -> tuple:
    """Step the `cluster-unreachable` alert under the alert store's lock (one notice per
    outage even with a cron `--once` and a long-running watch on the same state)."""
    from collectors.unreachable import step

    with store.locked():
        outage, events = step(outages.load(cluster), cluster, reachable, time.time(), detail)
        outages.save(cluster, outage)
    return outage, events


def _send(events, sinks) -> None:
    for sink in sinks:
        sink.notify(events)
    for event in events:
        _log.info("%s", notice(event))


def _reachable_round(store, outages, sinks, cluster: str) -> tuple[AlertEvent, ...]:
    """The resolved notice of an outage that just ended (sent; returned for the output)."""
    _, events = _outage_events(store, outages, cluster, True)
    _send(events, sinks)
    return events


def _unreachable_round(args: argparse.Namespace, detail: str, store, outages, sinks,
                       cluster: str) -> int:
    """Notices (the first round of an outage only), output, and exit code 3."""
    from collectors.unreachable import RULE, UNKNOWN_EXIT

    outage, events = _outage_events(store, outages, cluster, False, detail)
    _send(events, sinks)
    if args.json:
        doc = {
            "alerts": [{"rule": RULE, "group": None, "topic": None, "cluster": cluster,
                        "severity": "critical", "value": None, "threshold": None,
                        "message": outage.message, "since": _iso(outage.since),
                        "fired_at": _iso(outage.since)}],
            "events": [event_json(e) for e in events], "pending": [], "evaluated_at": None,
        }
        if args.once:
            print_json(doc)
        else:
            sys.stdout.write(json.dumps(to_jsonable(doc)) + "\n")
    elif events:
        sys.stdout.write("".join(notice(e) + "\n" for e in events))
    sys.stdout.flush()
    return UNKNOWN_EXIT


def run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.interval > 0:
        raise UsageError(f"--interval must be more than 0, got {args.interval:g}")
    config = ctx.config
    ruleset = rulebook.load(args.rules, config.settings)
    require_bootstrap(config.cluster)

    from collectors.history import LagHistory
    from collectors.lag import LagCollector
    from collectors.liveness import LivenessProbe
    from collectors.unreachable import OutageStore
    from tracing.sinks import build_sinks, close_all

    store = AlertStore()
    pattern = group_pattern(ruleset.rules)
    stop = threading.Event()
    code = 0
    failing = False
    first_round = True
    reported: set[str] = set()
    sinks = build_sinks(ruleset.sinks, report, interval=args.interval)
    history = LagHistory()
    collector = LagCollector(config.cluster, history, settings=config.settings)
    probe = LivenessProbe(config.cluster, timeout=REACH_TIMEOUT)
    outages = OutageStore()
    _log.info("watch: %d rule(s), sinks: %s, interval %gs, once=%s", len(ruleset.rules),
              ", ".join(s.label for s in sinks) or "none", args.interval, args.once)
    try:
        with _stop_on_signals(stop):
            while not stop.is_set():
                try:
                    live = probe.check()
                    if not live.reachable:
                        raise BrokerUnavailable(
                            f"cannot reach Kafka at {config.cluster.bootstrap_servers} "
                            f"({live.detail})")
                    snapshot = collector.refresh(group_regex=pattern)
                except BrokerUnavailable as exc:
                    code = _unreachable_round(args, str(exc), store, outages, sinks,
                                              config.cluster.bootstrap_servers)
                    if args.once:
                        raise CannotEvaluate(f"{exc}; no rule evaluated") from None
                    if not failing:
                        report(f"{exc}; retrying every {args.interval:g}s")
                    failing = True
                    stop.wait(args.interval)
                    continue
                except LagdeckError as exc:
                    if args.once:
                        raise
                    _log.warning("lag collection failed: %s", exc)
                    if not failing:  # once per outage on the terminal; every time in the log
                        report(f"lag collection failed: {exc}; retrying every "
                               f"{args.interval:g}s")
                    failing = True
                    stop.wait(args.interval)
                    continue
                if failing:
                    report("lag collection recovered")
                    failing = False
                recovered = _reachable_round(store, outages, sinks,
                                             config.cluster.bootstrap_servers)
                for error in sorted(set(snapshot.errors) - reported):
                    report(f"lag collection: {error}")
                reported = set(snapshot.errors)
                if first_round:
                    _report_unmatched(ruleset.rules, snapshot)
                    first_round = False
                with store.locked():
                    result = evaluate(ruleset.rules, snapshot, store.load())
                    store.save(result.book)
                code = result.exit_code
                for sink in sinks:
                    sink.observe(snapshot)
                    sink.notify(result.events)
                for event in result.events:
                    _log.info("%s", notice(event))
                doc = document(result)
                doc["events"] = [event_json(e) for e in recovered] + doc["events"]
                if args.json and args.once:
                    print_json(doc)
                elif args.json:
                    sys.stdout.write(json.dumps(to_jsonable(doc)) + "\n")
                    sys.stdout.flush()
                else:
                    sys.stdout.write("".join(notice(e) + "\n" for e in recovered))
                    _print_text(result, args.once, len(snapshot.groups))
                if args.once:
                    break
                stop.wait(args.interval)
    except KeyboardInterrupt:
        _log.info("watch interrupted")
    finally:
        probe.close()
        collector.close()
        history.close()
        close_all(sinks, CLOSE_TIMEOUT, report)
    return code
