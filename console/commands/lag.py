"""`lagdeck lag`: consumer-group lag, time lag and status."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lag", help="consumer-group lag in messages and seconds, with status")
    p.add_argument("--group", metavar="REGEX", help="only groups matching this regex")
    p.add_argument("--samples", type=int, default=1, metavar="N", help="samples to take now")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between samples")
    p.add_argument("-v", "--verbose", action="store_true", help="show partitions")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(run=not_yet("lag"))
