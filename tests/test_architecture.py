"""The layering rules of docs/architecture.md, enforced on every run.

import-linter checks the contracts in pyproject.toml; the AST walk below is a
second, dependency-free check of the two rules that matter most, so a
contract typo cannot silently disable them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[Path, set[str]]:
    out: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[path] = names
    return out


def test_only_console_imports_textual() -> None:
    for package in ("collectors", "tracing", "dlq"):
        offenders = [p for p, names in _imports(package).items() if names & {"textual", "rich"}]
        assert not offenders, offenders


def test_console_never_imports_confluent_kafka() -> None:
    offenders = [p for p, names in _imports("console").items() if "confluent_kafka" in names]
    assert not offenders, offenders


def test_data_flows_one_way() -> None:
    allowed = {"collectors": set(), "tracing": {"collectors"}, "dlq": {"collectors", "tracing"}}
    for package, may in allowed.items():
        for path, names in _imports(package).items():
            upward = names & ({"collectors", "tracing", "dlq", "console"} - may - {package})
            assert not upward, f"{path} imports {upward}"


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken" in result.stdout, result.stdout


def test_ruff_is_clean() -> None:
    exe = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([exe, "check", "."], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    """collectors/, tracing/ and dlq/ type-check (settings in pyproject.toml [tool.mypy])."""
    exe = shutil.which("mypy") or str(Path(sys.executable).parent / "mypy")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout
