"""`lagdeck trace ID`: the timeline of one order / correlation id / trace id."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="follow one order across topics and consumer groups")
    p.add_argument("id", metavar="ID", help="order id, correlation id or trace id")
    p.add_argument("--since", default="24h", metavar="DURATION", help="how far back (default 24h)")
    p.add_argument("--topics", metavar="REGEX", help="topics to scan (default: all non-internal)")
    p.add_argument("--stuck-after", default="5m", metavar="DURATION",
                   help="pending longer than this is stuck (default 5m)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(run=not_yet("trace"))
