"""`lagdeck replay GROUP`: reset a group's offsets, a dry run unless --execute."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="reset a consumer group's offsets (dry run by default)")
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--topic", required=True, metavar="T")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--to-earliest", action="store_true")
    how.add_argument("--to-latest", action="store_true")
    how.add_argument("--to-datetime", metavar="ISO")
    how.add_argument("--to-offset", type=int, metavar="N")
    how.add_argument("--shift-by", type=int, metavar="N")
    how.add_argument("--by-duration", metavar="D")
    p.add_argument("--execute", action="store_true", help="apply the plan (default: dry run)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=not_yet("replay"))
