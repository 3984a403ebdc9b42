"""`lagdeck watch`: evaluate alert rules; exit 0 none firing, 1 warning, 2 critical."""

from __future__ import annotations

import argparse

from console.commands._pending import not_yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="evaluate lag alert rules (exit 0 ok, 1 warning, 2 critical)")
    p.add_argument("--rules", metavar="FILE", help="TOML rules file (default: the config file)")
    p.add_argument("--interval", type=float, default=10.0, metavar="S")
    p.add_argument("--once", action="store_true", help="evaluate once and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=not_yet("watch"))
