"""The command line imports only the command it runs (console/commands/__init__.py).

`lagdeck lag` must not pay for numpy (flows) or textual and rich (the TUI): each
process is checked by the modules it ended with, never by a time. Every command
also parses every settings section at start-up (`console.settings`): the section
parsers live in light modules (`dlq.options`, `tracing.settings`,
`collectors.alerts.rules`), so that brings in neither the DLQ reader nor the
trace decoders with opentelemetry, nor the alert sinks (`NOT_FOR_LAG`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import build_parser
from console.commands import COMMANDS, load

HEAVY = ("numpy", "textual", "rich")
#: modules `lagdeck lag` has no use for, which parsing the settings once imported
NOT_FOR_LAG = ("dlq.discovery", "dlq.browse", "tracing.frames", "tracing.headers",
               "opentelemetry", "httpx", "collectors.alerts.sinks", "collectors.alerts.book",
               "collectors.snapshot_topic")

_PROBE = """
import json, sys
from console.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def _modules(tmp_path: Path, *argv: str, full: bool = False) -> tuple[int, str, set[str]]:
    """Exit code, stdout and the top-level packages imported (every module with `full`)."""
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "LAGDECK_STATE_DIR": str(tmp_path),
           "LAGDECK_CONFIG": str(tmp_path / "none.toml")}
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, timeout=120, env=env)
    marker = done.stderr.rindex("MODULES ")
    modules = set(json.loads(done.stderr[marker + len("MODULES "):]))
    return done.returncode, done.stdout, modules if full else {m.split(".")[0]
                                                              for m in modules}


@pytest.mark.parametrize("argv", [("lag", "--help"), ("--help",)])
def test_help_imports_no_heavy_package(tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, out, roots = _modules(tmp_path, *argv)
    assert code == 0 and "usage: lagdeck" in out
    assert not roots & set(HEAVY), sorted(roots & set(HEAVY))


def test_lag_run_imports_only_what_lag_needs(tmp_path: Path, bootstrap: str) -> None:
    code, out, modules = _modules(tmp_path, "-b", bootstrap, "lag", "--json", "--samples", "1",
                                  full=True)
    assert code == 0
    assert "groups" in json.loads(out)
    roots = {m.split(".")[0] for m in modules}
    assert not roots & set(HEAVY), sorted(roots & set(HEAVY))
    unwanted = sorted(m for m in modules if any(m == n or m.startswith(n + ".")
                                                for n in NOT_FOR_LAG))
    assert not unwanted, unwanted
    # the settings were parsed all the same: their light parsers are what was imported
    assert {"dlq.options", "tracing.settings", "collectors.alerts.rules"} <= modules
    assert "kafka" in roots and "confluent_kafka" in roots  # what it does run on


def test_flows_help_still_loads_its_module(tmp_path: Path) -> None:
    code, out, roots = _modules(tmp_path, "flows", "--help")
    assert code == 0 and "--since" in out and "numpy" in roots


def test_listed_help_is_each_modules_own() -> None:
    """`lagdeck --help` shows the table's lines: they must be the ones the modules register."""
    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "command")
    registered = {a.dest: a.help for a in sub._choices_actions}
    assert registered == COMMANDS
    assert build_parser(every=False).format_help() == full.format_help()


def test_unknown_command_is_refused() -> None:
    with pytest.raises(KeyError):
        load("numpy")

