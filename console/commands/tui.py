"""`lagdeck` with no command (or `lagdeck tui`): the Textual console, and its one
composition root.

Everything that can be wrong before the screen opens (no cluster given, a bad
profile, an unknown `[keymap]` id, a bad `[trace]` or `[dlq]` value) is
reported as one line per problem and exit code 2 by `Context` (every settings
section parsed once, `console.settings`); once the console runs, a cluster
that does not answer is shown in the status bar and retried with backoff
instead of failing. `open_console` is the only place a console is put
together (parsed settings, data source, app): `lagdeck demo` opens the same
console against its world, with the differences in a `Launch`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace

from collectors.alerts.rules import RuleSet
from collectors.config import ClusterConfig, require_bootstrap
from collectors.registry import RegistryConfig
from console.context import Context


@dataclass(frozen=True)
class Launch:
    """How one console differs from the default: the demo's world, label and welcome."""

    label: str | None = None
    #: seconds between lag polls; None: the app's default
    poll_interval: float | None = None
    welcome: str | None = None
    #: close the console after this many seconds (`demo --duration`)
    exit_after: float | None = None
    #: raises a LagdeckError when something the console depends on died
    watchdog: Callable[[], None] | None = None
    stuck_after_seconds: float = 300.0
    #: in place of the config file's rules (the demo world's groups)
    rules: RuleSet | None = None


def open_console(ctx: Context, cluster: ClusterConfig, *, snapshots_topic: str | None,
                 registry: RegistryConfig | None, launch: Launch | None = None) -> int:
    """Build the console from the parsed settings and run it until the operator quits."""
    from console.app import POLL_INTERVAL, LagdeckApp
    from console.data import KafkaSource

    launch = launch or Launch()
    settings = ctx.settings
    if launch.rules is not None:
        settings = replace(settings, rules=launch.rules)
    raw = ctx.config.settings
    if snapshots_topic is not None:
        from console.snapshot_source import SnapshotSource

        source: KafkaSource = SnapshotSource(
            cluster, raw, topic=snapshots_topic, parsed=settings, registry=registry,
            label=launch.label, stuck_after_seconds=launch.stuck_after_seconds)
    else:
        source = KafkaSource(cluster, raw, parsed=settings, registry=registry,
                             label=launch.label, stuck_after_seconds=launch.stuck_after_seconds)
    LagdeckApp(source, settings=settings, poll_interval=launch.poll_interval or POLL_INTERVAL,
               welcome=launch.welcome, exit_after=launch.exit_after,
               watchdog=launch.watchdog).run()
    return 0


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.config
    require_bootstrap(config.cluster)
    return open_console(ctx, config.cluster, snapshots_topic=ctx.snapshots_topic,
                        registry=ctx.registry)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the console (the default without a command)")
    p.set_defaults(run=run)
