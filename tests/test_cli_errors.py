"""Bad connection input gives one clear line on stderr and the documented exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import build_parser


def _run(*argv: str, env_extra: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "console.cli", *argv], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


def _one_clear_line(result: subprocess.CompletedProcess[str], code: int, pattern: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("lagdeck: error: "), result.stderr
    assert pattern in lines[0], lines[0]
    assert len(lines) <= 2, result.stderr


def test_help_lists_every_command_of_the_design() -> None:
    text = build_parser().format_help()
    for command in ("demo", "broker", "lag", "trace", "dlq", "replay", "watch"):
        assert f"    {command} " in text
    result = _run("--help")
    assert result.returncode == 0 and "replay" in result.stdout


def test_unreachable_bootstrap(tmp_path: Path) -> None:
    port = 1  # nothing listens on 127.0.0.1:1
    result = _run("-b", f"127.0.0.1:{port}", "lag", "--timeout", "2",
                  env_extra={"LAGDECK_STATE_DIR": str(tmp_path)})
    _one_clear_line(result, 1, "127.0.0.1:1")
    assert "within 2s" in result.stderr  # the timeout the user set, not another one


def test_missing_config_file(tmp_path: Path) -> None:
    result = _run("--config", str(tmp_path / "missing.toml"), "lag",
                  env_extra={"LAGDECK_STATE_DIR": str(tmp_path)})
    _one_clear_line(result, 2, "config file not found")


def test_malformed_properties_line(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text("bootstrap.servers=127.0.0.1:1\nno-separator-and-no-value\n")
    result = _run("-F", str(props), "lag", env_extra={"LAGDECK_STATE_DIR": str(tmp_path)})
    _one_clear_line(result, 2, "client.properties:2: a line with a name and no value")


def test_unknown_profile(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[profiles.prod]\nbootstrap_servers = "k:9092"\n')
    result = _run("--profile", "staging", "lag",
                  env_extra={"LAGDECK_STATE_DIR": str(tmp_path), "LAGDECK_CONFIG": str(config)})
    _one_clear_line(result, 2, "unknown profile 'staging'")


def test_unknown_librdkafka_property(tmp_path: Path) -> None:
    result = _run("-b", "127.0.0.1:1", "-X", "no.such.property=1", "lag",
                  env_extra={"LAGDECK_STATE_DIR": str(tmp_path)})
    _one_clear_line(result, 2, "no.such.property")


def test_no_cluster_given(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = _run("lag", env_extra={"LAGDECK_STATE_DIR": str(tmp_path),
                                    "LAGDECK_CONFIG": str(empty)})
    _one_clear_line(result, 2, "no cluster given")


@pytest.mark.integration
def test_planted_password_never_leaks(tmp_path: Path, bootstrap: str) -> None:
    """SASL against a PLAINTEXT broker fails; neither stderr nor the log may show the secret."""
    secret = "Planted-Pa55word-9f3b"
    result = _run("-b", bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                  "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=ops",
                  "-X", f"sasl.password={secret}", "lag",
                  env_extra={"LAGDECK_STATE_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert secret not in result.stdout + result.stderr
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log*"))
    assert logs, "the run should have logged something"
    assert secret not in logs
