"""One module per command; each registers its own parser (see `console.cli`).

A command module imports what its command runs (numpy for `flows`, textual for
`tui`, kafka-python for `lag`...), so the command line imports only the module
of the command typed: the others are listed by name and one-line help below,
and `lagdeck lag` starts without numpy or textual (about 0.6 s less). The help
lines here are the ones each module registers (tests/test_cli_lazy.py checks it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: command -> its one-line help, in the order `lagdeck --help` shows them
COMMANDS: dict[str, str] = {
    "demo": "embedded broker + simulated order pipeline + console",
    "broker": "run the embedded Kafka-compatible broker (Tansu)",
    "lag": "consumer-group lag in messages and seconds, with status",
    "trace": "follow one order across topics and consumer groups",
    "flows": "the flow of all orders: steps, latencies, where they stop",
    "dlq": "dead-letter topics: list, show, redrive",
    "replay": "reset a consumer group's offsets (dry run by default)",
    "watch": "evaluate lag alert rules (exit 0 ok, 1 warning, 2 critical, 3 cluster unreachable)",
    "tui": "open the console (the default without a command)",
}


def load(name: str) -> ModuleType:
    """The module of command `name` (imported now, with everything it runs on)."""
    if name not in COMMANDS:
        raise KeyError(name)
    return importlib.import_module(f"console.commands.{name}")
