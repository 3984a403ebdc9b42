"""`lagdeck` with no command (or `lagdeck tui`): the Textual console.

Everything that can be wrong before the screen opens (no cluster given, a bad
profile, an unknown `[keymap]` id) is reported as one line and exit code 2;
once the console runs, a cluster that does not answer is shown in the status
bar and retried with backoff instead of failing.
"""

from __future__ import annotations

import argparse

from collectors.config import require_bootstrap
from console.context import Context


def run(args: argparse.Namespace, ctx: Context) -> int:
    from console.app import LagdeckApp
    from console.data import KafkaSource
    from console.keymap import load_keymap

    config = ctx.config
    require_bootstrap(config.cluster)
    keymap = load_keymap(config.settings)
    if ctx.snapshots_topic is not None:
        from console.snapshot_source import SnapshotSource

        source = SnapshotSource(config.cluster, config.settings, topic=ctx.snapshots_topic,
                                registry=ctx.registry)
    else:
        source = KafkaSource(config.cluster, config.settings, registry=ctx.registry)
    LagdeckApp(source, keymap=keymap).run()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the console (the default without a command)")
    p.set_defaults(run=run)
