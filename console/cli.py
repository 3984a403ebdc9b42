"""The `lagdeck` command line: global connection options, then one command.

Each command lives in `console/commands/<name>.py` with `register(subparsers)`
(adding its parser and `set_defaults(run=...)`) and `run(args, ctx) -> int`.
Errors become one line on stderr with the exit codes of docs/contracts.md: 0 success,
1 a failure to act on, 2 bad usage; a traceback only ever reaches the log.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from collectors.errors import LagdeckError
from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.untrusted import one_line
from console import fastexit
from console.commands import COMMANDS, load
from console.context import Context
from console.wording import for_cli

PROG = "lagdeck"
#: the default topic of `--from-snapshots` (collectors.snapshot_topic.DEFAULT_TOPIC)
SNAPSHOT_TOPIC = "_lagdeck.lag"


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line instead of the full usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser(command: str | None = None, *, every: bool = True) -> argparse.ArgumentParser:
    """The parser; `every=False` registers only `command` in full, the others by name and
    help (the command line imports only the module it runs: console/commands/__init__.py)."""
    parser = _Parser(
        prog=PROG,
        description="Operations console for Kafka event-driven systems: consumer lag, "
        "order timelines, dead letters, replay and alerts. Without a command it opens the TUI.",
    )
    conn = parser.add_argument_group("connection (before the command)")
    conn.add_argument("-b", "--bootstrap-servers", metavar="HOST:PORT",
                      help="bootstrap servers (overrides the profile)")
    conn.add_argument("-X", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="any librdkafka property; repeatable")
    conn.add_argument("-F", "--config-file", dest="properties_file", metavar="FILE",
                      help="Java-style client.properties (as kcat -F)")
    conn.add_argument("--profile", metavar="NAME", help="profile from the TOML config file")
    conn.add_argument("--config", dest="config_path", metavar="FILE",
                      help="TOML config file (default: $LAGDECK_CONFIG or the user config dir)")
    conn.add_argument("--schema-registry", metavar="URL",
                      help="Confluent-compatible Schema Registry, to decode Avro, Protobuf and "
                      "JSON Schema payloads (overrides [schema_registry] url)")
    conn.add_argument("--read-only", action="store_true", default=None,
                      help="block every mutating action (redrive, replay)")
    conn.add_argument("--from-snapshots", nargs="?", const=SNAPSHOT_TOPIC, metavar="TOPIC",
                      help="read lag from the snapshots `watch --publish` writes instead of "
                      f"polling the groups (default topic {SNAPSHOT_TOPIC})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in COMMANDS.items():
        if every or name == command:
            load(name).register(sub)
        else:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _bare_optional(argv: Sequence[str], flag: str, value: str,
                   commands: Sequence[str]) -> list[str]:
    """`--from-snapshots lag`: the flag takes no topic when a command follows it."""
    out = list(argv)
    for i, item in enumerate(out[:-1]):
        if item == flag and out[i + 1] in commands:
            out[i] = f"{flag}={value}"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = _bare_optional(sys.argv[1:] if argv is None else argv, "--from-snapshots",
                          SNAPSHOT_TOPIC, list(COMMANDS))
    # which command? (the global options and `--help` parse the same with every command
    # listed by name only); then the full parser of that one command
    typed, _rest = build_parser(every=False).parse_known_args(argv)
    args = build_parser(typed.command, every=False).parse_args(argv)
    ctx = Context(args)
    log = get_logger("cli")
    run = getattr(args, "run", None)
    if run is None:
        run = load("tui").run
    try:
        return int(run(args, ctx) or 0)
    except LagdeckError as exc:
        log.info("command failed: %s", exc, exc_info=True)
        for line in scrub(for_cli(exc)).split("\n"):  # a config report: one line per problem
            sys.stderr.write(f"{PROG}: error: {one_line(line)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        log.exception("unexpected error")
        sys.stderr.write(
            f"{PROG}: error: unexpected {type(exc).__name__}: {one_line(scrub(str(exc)))} "
            "(details in the log: lagdeck.log under the state directory)\n"
        )
        return 1


def entrypoint() -> None:
    fastexit.enable()
    code = main()
    fastexit.leave(code)  # when the command kept its objects: no teardown
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()
