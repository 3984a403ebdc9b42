"""Read-only mode blocks every mutating path (CLI flag, profile, library API) and only those."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from collectors.config import ClusterConfig
from collectors.errors import ReadOnlyError
from console.cli import main
from dlq.audit import read_audit
from dlq.guard import ensure_writable, is_writable
from dlq.redrive import Redrive
from dlq.replay import ResetSpec, committed_offsets, execute_reset, plan_reset
from tests.conftest import create_topics
from tests.test_dlq_support import produce, read_topic, spring_dead_letters


def test_guard_messages() -> None:
    ensure_writable(ClusterConfig({}), "redrive")  # writable: no error
    with pytest.raises(ReadOnlyError, match=r"^redrive of x refused: read-only mode "
                                            r"\(--read-only was given\); nothing was changed$"):
        ensure_writable(ClusterConfig({}, read_only=True), "redrive of x")
    with pytest.raises(ReadOnlyError, match="profile 'prod' has read_only = true"):
        ensure_writable(ClusterConfig({}, profile="prod", read_only=True), "replay")
    assert is_writable(ClusterConfig({})) and not is_writable(ClusterConfig({}, read_only=True))


@pytest.fixture
def world(cluster, bootstrap, names):
    """A DLQ with dead letters, their target, and a group with committed offsets."""
    target = names("orders")
    dlq = names("ro") + ".DLT"
    create_topics(bootstrap, target, dlq)
    produce(bootstrap, dlq, spring_dead_letters(target, 3))
    group = names("ro-group")
    plan = plan_reset(cluster, group, dlq, ResetSpec.latest())
    execute_reset(cluster, plan, create=True)  # the group now sits at offset 3
    return {"target": target, "dlq": dlq, "group": group, "audit": len(read_audit())}


@pytest.fixture
def profile_config(tmp_path: Path, bootstrap: str) -> Path:
    path = tmp_path / "lagdeck.toml"
    path.write_text(f'[profiles.prod]\nbootstrap_servers = "{bootstrap}"\nread_only = true\n')
    return path


def _unchanged(cluster, world) -> None:
    assert read_topic(cluster, world["target"], 1, 0, timeout=1.0) == []
    assert committed_offsets(cluster, world["group"], world["dlq"], 1) == {0: 3}
    assert len(read_audit()) == world["audit"]  # a refused action is not started


@pytest.mark.integration
def test_cli_flag_blocks_redrive(cluster, bootstrap, world, capsys) -> None:
    assert main(["-b", bootstrap, "--read-only", "dlq", "redrive", world["dlq"], "--yes"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"lagdeck: error: redrive of {world['dlq']} refused: read-only mode "
                   "(--read-only was given); nothing was changed")
    _unchanged(cluster, world)


@pytest.mark.integration
def test_cli_flag_blocks_replay_execute(cluster, bootstrap, world, capsys) -> None:
    assert main(["-b", bootstrap, "--read-only", "replay", world["group"], "--topic",
                 world["dlq"], "--to-earliest", "--execute"]) == 1
    assert "refused: read-only mode" in capsys.readouterr().err
    _unchanged(cluster, world)


@pytest.mark.integration
def test_profile_blocks_redrive(cluster, world, profile_config, capsys) -> None:
    assert main(["--config", str(profile_config), "--profile", "prod", "dlq", "redrive",
                 world["dlq"], "--yes"]) == 1
    assert "profile 'prod' has read_only = true" in capsys.readouterr().err
    _unchanged(cluster, world)


@pytest.mark.integration
def test_profile_blocks_replay_execute(cluster, world, profile_config, capsys) -> None:
    assert main(["--config", str(profile_config), "--profile", "prod", "replay", world["group"],
                 "--topic", world["dlq"], "--shift-by", "-2", "--execute"]) == 1
    assert "profile 'prod' has read_only = true" in capsys.readouterr().err
    _unchanged(cluster, world)


@pytest.mark.integration
def test_library_paths_used_by_the_tui_are_blocked(cluster, world) -> None:
    read_only = dataclasses.replace(cluster, read_only=True)
    with pytest.raises(ReadOnlyError, match=r"redrive of .* refused: read-only mode"):
        Redrive(read_only, world["dlq"]).run()
    plan = plan_reset(read_only, world["group"], world["dlq"], ResetSpec.earliest())
    with pytest.raises(ReadOnlyError, match=r"replay .* refused: read-only mode"):
        execute_reset(read_only, plan)
    _unchanged(cluster, world)


@pytest.mark.integration
def test_reading_and_previews_still_work_read_only(cluster, bootstrap, world, capsys) -> None:
    ro = ["-b", bootstrap, "--read-only"]
    assert main([*ro, "dlq", "redrive", world["dlq"], "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["selected"] == 3
    assert main([*ro, "replay", world["group"], "--topic", world["dlq"], "--to-earliest"]) == 0
    assert "would change" in capsys.readouterr().out
    assert main([*ro, "dlq", "show", world["dlq"], "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["messages"]) == 3
    read_only = dataclasses.replace(cluster, read_only=True)
    assert Redrive(read_only, world["dlq"]).plan().selected == 3
    _unchanged(cluster, world)
