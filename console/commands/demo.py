"""`lagdeck demo`: the embedded broker plus the simulated order pipeline."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded broker + simulated order pipeline + console")
    p.add_argument("--headless", action="store_true", help="no terminal UI")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int, metavar="N", help="reproducible world")
    p.add_argument("--rate", type=float, default=5.0, metavar="R", help="orders per second")
    p.set_defaults(run=not_yet("demo"))
