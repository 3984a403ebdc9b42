"""`lagdeck demo`: the embedded broker plus the simulated order pipeline.

Headless, it prints the bootstrap address and keeps the world running for
`--duration` seconds (or until Ctrl-C / SIGTERM); interactively it opens the
console against the demo world.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from collectors.errors import UsageError
from console.argtypes import finite
from console.context import Context
from console.demo.world import DemoWorld
from console.embedded import EmbeddedBroker


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded broker + simulated order pipeline + console")
    p.add_argument("--headless", action="store_true",
                   help="no terminal UI: print the bootstrap address and keep running")
    p.add_argument("--duration", type=finite, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int, default=7, metavar="N",
                   help="reproducible world (default 7)")
    p.add_argument("--rate", type=finite, default=5.0, metavar="R",
                   help="orders per second (default 5)")
    p.add_argument("--port", type=int, metavar="P", help="broker port (default: a free one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.rate <= 0:
        raise UsageError("--rate must be positive")
    if not args.headless:
        _ = ctx.settings  # read and check the config file before the broker starts
    stop = threading.Event()
    with EmbeddedBroker(port=args.port) as broker:
        world = DemoWorld(broker.cluster(), seed=args.seed, rate=args.rate)
        with world:
            if args.headless:
                return _headless(args, broker, world, stop)
            return run_interactive(args, ctx, broker, world)


def _headless(args: argparse.Namespace, broker: EmbeddedBroker, world: DemoWorld,
              stop: threading.Event) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"bootstrap: {broker.bootstrap}", flush=True)
    print(f"try: lagdeck -b {broker.bootstrap} lag", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.duration if args.duration else None
    while not stop.wait(0.5):
        broker.check()
        if deadline is not None and time.monotonic() >= deadline:
            break
    stats = world.stats()
    print(f"demo stopped: {stats['orders']} orders placed", file=sys.stderr, flush=True)
    return 0


# --- interactive mode ------------------------------------------------------
# The console (console/app.py) against the demo world, put together by the one
# composition root (`console.commands.tui.open_console`): the config file's
# sections (keymap, outage, trace, ...) apply as they do for a real cluster;
# the demo world's alert rules replace the file's (they name its groups).

#: Alert rules of the demo world, so the alerts screen has something to say.
DEMO_RULES = """
[[rule]]
name = "consumer-stopped"
group = ".*-service"
min_status = "STALL"
severity = "critical"

[[rule]]
name = "notifications-behind"
group = "notification-service"
max_lag_seconds = 20
for = "10s"
severity = "warning"
"""

DEMO_WELCOME = (
    "An order pipeline is running on an embedded broker. loyalty-service stops after "
    "~15 s (watch it turn STOP on top of this list); notification-service is slow; a "
    "share of payments fail into payments.events-dlt.\n"
    "Try: 2 dead letters → t follows a record's order → R redrives it; 5 flows shows where "
    "orders stop. ? shows every key."
)


def run_interactive(args: argparse.Namespace, ctx: Context, broker: EmbeddedBroker,
                    world: DemoWorld) -> int:
    from dataclasses import replace

    from collectors.alerts.rules import parse_rules_text
    from console.commands.tui import Launch, open_console

    cluster = replace(broker.cluster(), read_only=bool(args.read_only))
    launch = Launch(label=f"demo {cluster.bootstrap_servers}", poll_interval=2.0,
                    welcome=DEMO_WELCOME, exit_after=args.duration, watchdog=broker.check,
                    stuck_after_seconds=30.0,
                    rules=parse_rules_text(DEMO_RULES, "<demo rules>"))
    code = open_console(ctx, cluster, snapshots_topic=None, registry=None, launch=launch)
    broker.check()  # the broker died under the console: say so (and where its log is)
    return code
