"""`lagdeck watch`: evaluate alert rules; exit 0 none firing, 1 warning, 2 critical,
3 could not evaluate (cluster unreachable: the Nagios UNKNOWN convention).

Each round: the cluster's id, one lag snapshot (status judged over the kept
lag history), one step of the alert loop (`collectors.alerts.loop`: a pure
evaluation against that cluster's alert book under the state directory, the
notices to the sinks' outboxes, on disk, before any delivery), then stdout.
This module is the command-line face: arguments, output, exit codes, signals.
The book is reloaded and saved under a lock every round, so `watch --once`
from cron remembers pending-since times and a notice is sent once even when a
long-running watch and a cron job share the state directory; the rules file is
the owner of its alerts, so runs with other rules files or other clusters
leave them alone (docs/alerts.md).

`--once` evaluates and exits; otherwise it runs until SIGTERM or Ctrl-C and
exits with the code of the last round. Stopping is bounded: after the first
SIGTERM or Ctrl-C the sinks get what is left of `STOP_BUDGET` seconds and the
process is gone by then whatever they do (undelivered notices stay in the
outbox for the next run); a second Ctrl-C exits at once. A failing round
(broker gone) is reported on stderr and retried at the next interval; with
`--once` it is an error.

Each round starts by asking the cluster for its id with a short deadline
(`REACH_TIMEOUT`), which doubles as the liveness probe: an unreachable cluster
costs seconds, not a refresh's full timeout. It is its own alert,
`cluster-unreachable` (`collectors.alerts.unreachable`): one firing notice per outage
to every sink, one resolved notice when the cluster answers again, and exit
code 3 (Nagios UNKNOWN) while it lasts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.alerts import rules as rulebook
from collectors.alerts.evaluate import Evaluation
from collectors.alerts.loop import AlertLoop, Share
from collectors.alerts.rules import Rule
from collectors.alerts.state import AlertEvent, AlertState, EventKind, notice_id
from collectors.config import require_bootstrap
from collectors.errors import BrokerUnavailable, LagdeckError, UsageError
from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.snapshots import LagSnapshot
from collectors.timefmt import iso_utc
from collectors.untrusted import line_field as _s
from console.argtypes import seconds
from console.context import Context, print_json, to_jsonable
from console.signals import Watchdog, hard_exit, stop_on_signals

if TYPE_CHECKING:  # the sinks (httpx, OpenTelemetry) are imported only when watch runs
    from collectors.alerts.sinks import Sink

#: How long the sinks get to deliver what is queued when watch ends by itself (`--once`).
CLOSE_TIMEOUT = 10.0
#: After SIGTERM or a first Ctrl-C the process is gone within this many seconds, whatever
#: the sinks or the cluster do (container runtimes kill after 10 s, mid-flush).
STOP_BUDGET = 2.5
#: ...of which the sinks get this long to deliver; the rest stays in their outboxes.
STOP_CLOSE_TIMEOUT = 1.5
#: The liveness deadline of each round: no answer = cluster unreachable (exit 3).
REACH_TIMEOUT = 5.0
SNAPSHOT_TOPIC = "_lagdeck.lag"


class CannotEvaluate(BrokerUnavailable):
    """The cluster is unreachable, so no rule could be evaluated (Nagios UNKNOWN)."""

    exit_code = 3

_log = get_logger("watch")
#: re-entrant: the signal handler writes to stderr on the main thread, maybe inside report()
_err_lock = threading.RLock()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="evaluate lag alert rules (exit 0 ok, 1 warning, "
                                     "2 critical, 3 cluster unreachable)")
    p.add_argument("--rules", metavar="FILE", help="TOML rules file (default: the config file)")
    p.add_argument("--interval", type=seconds, default=10.0, metavar="S",
                   help="seconds between rounds (default 10)")
    p.add_argument("--once", action="store_true", help="evaluate once and exit")
    p.add_argument("--json", action="store_true",
                   help="JSON on stdout (with --once one document, else one per line)")
    share = p.add_argument_group("sharing (docs/shared-poller.md)")
    share.add_argument("--publish", nargs="?", const=SNAPSHOT_TOPIC, metavar="TOPIC",
                       help="after each round, write one lag snapshot per group to this "
                       f"compacted topic (default {SNAPSHOT_TOPIC}); several publishing "
                       "watchers split the groups between them")
    share.add_argument("--metrics-port", metavar="[HOST:]PORT",
                       help="serve the lag gauges for Prometheus on this port "
                       "(127.0.0.1 unless HOST is given)")
    share.add_argument("--group", metavar="REGEX",
                       help="with --publish, --metrics-port or an otlp sink: only groups "
                       "matching this regex (default: every group)")
    share.add_argument("--session-timeout", type=seconds, default=10.0, metavar="S",
                       help="with --publish: how long the others wait before taking over "
                       "the groups of a watcher that died (default 10)")
    p.set_defaults(run=run)


def _say_chosen_port(metrics: str | None, sinks: Sequence[Sink]) -> None:
    """With `--metrics-port 0` the system picks the port: say which on stderr (the log
    alone is no place to look for where to point a scraper)."""
    if metrics is None:  # no Prometheus sink: do not import its exporter for nothing
        return
    from collectors.alerts.sinks.prometheus import PrometheusSink

    for sink in sinks:
        if isinstance(sink, PrometheusSink) and sink.port_chosen:
            sys.stderr.write(f"lagdeck: serving metrics at http://{sink.host}:{sink.port}"
                             "/metrics\n")
            sys.stderr.flush()


def report(line: str) -> None:
    """Sink and collection problems: one line on stderr (thread-safe) and in the log."""
    line = _s(scrub(line))
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
    return iso_utc(ts, "seconds")


def alert_json(alert: AlertState) -> dict[str, Any]:
    """A firing alert as the contract's `alerts` lists it."""
    fired_at = alert.fired_at if alert.fired_at is not None else alert.since
    return {
        "rule": alert.rule, "group": alert.group, "topic": alert.topic,
        "severity": alert.severity.value, "value": alert.value,
        "threshold": alert.threshold, "message": alert.message,
        "since": _iso(alert.since), "fired_at": _iso(fired_at),
    }


def event_json(event: AlertEvent) -> dict[str, Any]:
    return {
        "id": notice_id(event), "event": event.kind.value, "rule": event.rule, "group": event.group,
        "topic": event.topic, "severity": event.severity.value, "value": event.value,
        "threshold": event.threshold, "message": event.message, "at": _iso(event.at),
    }


def document(result: Evaluation) -> dict[str, Any]:
    """The `--json` document: the contract's `alerts`, plus this round's notices and pending."""
    return {
        "alerts": [alert_json(a) for a in result.firing],
        "events": [event_json(e) for e in result.events],
        "pending": [
            {"rule": s.key.rule, "group": s.key.group, "topic": s.key.topic,
             "severity": s.severity.value, "value": s.value, "threshold": s.threshold,
             "since": _iso(s.since)}
            for s in result.pending
        ],
        "evaluated_at": _iso(result.book.evaluated_at) if result.book.evaluated_at else None,
    }


def notice(event: AlertEvent) -> str:
    tag = "FIRING" if event.kind is EventKind.FIRING else "RESOLVED"
    return (f"{_iso(event.at)} {tag} [{event.severity.value}] {_s(event.rule)}: "
            f"{_s(event.message)}")


def _print_text(result: Evaluation, once: bool, checked: int) -> None:
    lines = [notice(e) for e in result.events]
    if once:
        firing = result.firing
        if firing:
            lines.append(f"{len(firing)} alert(s) firing:")
            lines.extend(f"  [{a.severity.value}] {_s(a.rule)}: {_s(a.message)} "
                         f"(since {_iso(a.since)})" for a in firing)
        else:
            lines.append(f"no alerts firing ({checked} group(s) checked)")
        for s in result.pending:
            lines.append(f"  pending since {_iso(s.since)}: {_s(s.key.rule)}: {_s(s.message)}")
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def _report_unmatched(rules: Sequence[Rule], snapshot: LagSnapshot) -> None:
    """A rule whose group regex matches nothing is usually a typo: say so once."""
    for rule in rules:
        if not any(rule.matches_group(g.group) for g in snapshot.groups):
            report(f"rule {rule.name!r} ({rule.source}): no consumer group matches "
                   f"{rule.group.pattern!r} (yet)")


def _hard_exit(code: int, why: str) -> None:
    """Leave now: state and outbox files are written atomically, so nothing is torn."""
    hard_exit(code, why, log=lambda line: _log.warning("watch: %s", line), lock=_err_lock)


def _stopping(signum: int) -> str:
    return ("lagdeck: stopping (Ctrl-C again exits at once)\n" if signum == signal.SIGINT
            else "lagdeck: stopping\n")


def _stop_on_signals(stop: threading.Event) -> AbstractContextManager[None]:
    """SIGTERM and the first Ctrl-C ask for a stop, bounded by `STOP_BUDGET`; a second
    Ctrl-C exits at once."""
    return stop_on_signals(
        stop, notice=_stopping, signals=(signal.SIGTERM, signal.SIGINT), lock=_err_lock,
        again=lambda: _hard_exit(130, "interrupted again: exiting now (undelivered notices "
                                      "stay in the outbox)"),
        watchdog=Watchdog(STOP_BUDGET, lambda code: _hard_exit(
            code, f"did not stop within {STOP_BUDGET:g}s: exiting now (undelivered "
                  "notices stay in the outbox)")))


def _load_rules(args: argparse.Namespace, ctx: Context, exporting: bool) -> rulebook.RuleSet:
    """Rules are optional for a watcher that only publishes or exports metrics."""
    if exporting and args.rules is None:
        return ctx.settings.rules
    return rulebook.load(args.rules, ctx.config.settings)


def _log_notices(events: Sequence[AlertEvent]) -> None:
    for event in events:
        _log.info("%s", notice(event))


def _unreachable_round(args: argparse.Namespace, detail: str, loop: AlertLoop,
                       cluster: str) -> int:
    """Notices (the first round of an outage only), output, and exit code 3."""
    from collectors.alerts.unreachable import RULE, UNKNOWN_EXIT

    outage, events = loop.unreachable(cluster, detail)
    _log_notices(events)
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
    if not args.session_timeout > 0:
        raise UsageError(f"--session-timeout must be more than 0, got "
                         f"{args.session_timeout:g}")
    config = ctx.config
    viewing = ctx.snapshots_topic if args.publish is None else None
    if args.publish is not None and getattr(args, "from_snapshots", None) is not None:
        raise UsageError("--publish polls the groups itself: it cannot be combined with "
                         "--from-snapshots")
    from collectors.lag import compile_group_regex
    from collectors.snapshot_topic import check_topic_name

    if args.publish is not None:
        check_topic_name(args.publish)
    compile_group_regex(args.group)
    ruleset = _load_rules(args, ctx, args.publish is not None or args.metrics_port is not None)
    require_bootstrap(config.cluster)

    from collectors.alerts.rules import SinkType
    from collectors.alerts.sinks import start_sinks
    from collectors.cluster_id import ClusterIdentity
    from collectors.history import LagHistory
    from collectors.lag import LagCollector

    identity = ClusterIdentity(config.cluster)
    #: the owner of the alerts these rules raise (see collectors.alerts.evaluate.evaluate)
    source = str(Path(ruleset.path).resolve()) if ruleset.path else "<config>"
    exporting = (args.publish is not None or args.metrics_port is not None
                 or any(s.type is SinkType.OTLP for s in ruleset.sinks))
    # exporters export every group (kafka-lag-exporter style); alerting alone reads
    # only the groups its rules name
    pattern = args.group if exporting else group_pattern(ruleset.rules) \
        if ruleset.rules else args.group
    stop = threading.Event()
    code = 0
    failing = publish_failing = False
    first_round = True
    reported: set[str] = set()
    sinks = start_sinks(ruleset.sinks, report, interval=args.interval,
                        metrics=args.metrics_port, close_timeout=CLOSE_TIMEOUT)
    _say_chosen_port(args.metrics_port, sinks)
    history = LagHistory()
    collector = LagCollector(config.cluster, history, lag_settings=ctx.settings.lag)
    reader = None
    if viewing is not None:
        from collectors.snapshot_topic import SnapshotReader

        reader = SnapshotReader(config.cluster, viewing)
    shared = None
    loop = AlertLoop.persistent(ruleset.rules, source=source, sinks=sinks)
    _log.info("watch: %d rule(s), sinks: %s, interval %gs, once=%s, publish=%s, from=%s",
              len(ruleset.rules), ", ".join(s.label for s in sinks) or "none", args.interval,
              args.once, args.publish, viewing)
    with _stop_on_signals(stop):
        try:
            while not stop.is_set():
                owns = None
                try:
                    if reader is not None:
                        # per cluster too: the default topic name is the same everywhere
                        cluster_id = f"{identity.fetch(REACH_TIMEOUT)}/snapshots:{viewing}"
                        snapshot, refresh_seconds = _read_snapshots(reader, args.group), None
                    else:
                        cluster_id = identity.fetch(REACH_TIMEOUT)
                        if args.publish is not None and shared is None:
                            shared = _join_fleet(config.cluster, cluster_id, args, stop)
                        if shared is not None:
                            owns = shared.begin_round()
                            collector.group_filter = owns
                        started = time.monotonic()
                        snapshot = collector.refresh(group_regex=pattern)
                        refresh_seconds = time.monotonic() - started
                        imported = shared.taken_over() if shared is not None else {}
                except BrokerUnavailable as exc:
                    code = _unreachable_round(args, str(exc), loop,
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
                recovered = loop.reachable(config.cluster.bootstrap_servers)
                _log_notices(recovered)
                for error in sorted(set(snapshot.errors) - reported):
                    report(f"lag collection: {error}")
                reported = set(snapshot.errors)
                if first_round and owns is None:  # a share of the groups proves nothing
                    _report_unmatched(ruleset.rules, snapshot)
                    first_round = False
                result = loop.step(snapshot, cluster=cluster_id, share=None if owns is None
                                   else Share(owns, imported))
                if shared is not None:
                    try:
                        written, tombstones = shared.publish(
                            snapshot, result.book.states, refresh_seconds=refresh_seconds)
                        _log.info("round: %d group(s) refreshed in %.2fs, %d snapshot(s) and "
                                  "%d tombstone(s) published", len(snapshot.groups),
                                  refresh_seconds or 0.0, written, tombstones)
                        if publish_failing:
                            report("publishing snapshots recovered")
                            publish_failing = False
                    except LagdeckError as exc:
                        _log.warning("%s", exc)
                        if not publish_failing:  # once per outage on the terminal
                            report(f"{exc}; viewers see these groups go stale until it "
                                   "recovers")
                        publish_failing = True
                code = result.exit_code
                _log_notices(result.events)
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
                if shared is not None:
                    shared.wait(stop, args.interval)
                else:
                    stop.wait(args.interval)
        except KeyboardInterrupt:
            _log.info("watch interrupted")
        finally:
            loop.close(STOP_CLOSE_TIMEOUT if stop.is_set() else CLOSE_TIMEOUT, report)
            if shared is not None:
                shared.close()
            if reader is not None:
                reader.close()
            collector.close()
            history.close()
    return code


def _join_fleet(cluster: Any, cluster_id: str, args: argparse.Namespace,
                stop: threading.Event) -> Any:
    """Join the watchers of this cluster; wait (bounded) for a first share of the groups."""
    from collectors.shared_watch import SharedWatch

    shared = SharedWatch(cluster, cluster_id, args.publish, interval=args.interval,
                         session_timeout=args.session_timeout)
    # the broker holds a join up to a session timeout; the first round waits for it
    if not shared.wait_assigned(args.session_timeout * 1.5 + 5.0, stop) and not stop.is_set():
        report(f"no share of the groups assigned yet by {shared.group.group_id}; "
               "publishing what is assigned from the next round")
    _log.info("watch: publishing to %s as %s", args.publish, shared.published_by)
    return shared


def _read_snapshots(reader: Any, group_regex: str | None) -> LagSnapshot:
    """`watch --from-snapshots`: the published figures; stale groups are left out (held)."""
    from console.snapshot_view import filtered, fresh_only

    return fresh_only(filtered(reader.read(), group_regex))
