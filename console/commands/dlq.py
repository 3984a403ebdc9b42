"""`lagdeck dlq list|show|redrive`: dead-letter topics."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="dead-letter topics: list, show, redrive")
    dsub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="dead-letter topics with depth and top errors")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=not_yet("dlq list"))
    show = dsub.add_parser("show", help="decoded dead letters of a topic")
    show.add_argument("topic", metavar="TOPIC")
    show.add_argument("--limit", type=int, default=20, metavar="N")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=not_yet("dlq show"))
    rd = dsub.add_parser("redrive", help="move dead letters back to their original topic")
    rd.add_argument("topic", metavar="TOPIC")
    rd.add_argument("--to", metavar="TOPIC", help="target topic instead of the original")
    rd.add_argument("--where", action="append", default=[], metavar="EXPR",
                    help="FIELD=VALUE or FIELD~TEXT; repeatable, all must hold")
    rd.add_argument("--rate", type=float, metavar="N", help="records per second at most")
    rd.add_argument("--dry-run", action="store_true")
    rd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rd.add_argument("--json", action="store_true")
    rd.set_defaults(run=not_yet("dlq redrive"))
