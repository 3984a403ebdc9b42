"""`lagdeck broker`: run the embedded Tansu broker in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from console.context import Context
from console.embedded import EmbeddedBroker


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    p.add_argument("--port", type=int, metavar="P", help="port on 127.0.0.1 (default: a free one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(port=args.port) as broker:
        print(f"bootstrap: {broker.bootstrap}", flush=True)
        print(f"log: {broker.log_path}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            broker.check()
    return 0
