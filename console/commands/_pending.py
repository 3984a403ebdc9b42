"""Placeholder run() for commands whose issue has not landed yet."""

from __future__ import annotations

import argparse

from collectors.errors import LagdeckError
from console.context import Context


def not_yet(name: str):
    def run(args: argparse.Namespace, ctx: Context) -> int:
        raise LagdeckError(f"'{name}' is not yet available in this build")

    return run
