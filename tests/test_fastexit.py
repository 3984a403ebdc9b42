"""The console script leaves `lagdeck lag` with `os._exit` (`console.fastexit`), and only
when the command asked: the output, the exit code and the log are all there, nothing else
tears down. Run as real processes against the session broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import create_topics, kp_commit, kp_producer

#: the console script's own entry point, with an exit handler that says it ran (it does
#: not when the process leaves through `os._exit`)
_SCRIPT = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("FINALIZED\\n"))
from console.cli import entrypoint
sys.argv = ["lagdeck", *sys.argv[1:]]
entrypoint()
"""


def _lagdeck(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "LAGDECK_STATE_DIR": str(tmp_path),
           "LAGDECK_CONFIG": str(tmp_path / "none.toml")}
    return subprocess.run([sys.executable, "-c", _SCRIPT, *argv], capture_output=True,
                          text=True, timeout=120, env=env)


def test_lag_leaves_without_teardown_and_loses_nothing(tmp_path: Path, bootstrap: str,
                                                       names) -> None:
    topic, group = names("fastexit"), names("fastexit-g")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    for i in range(5):
        producer.send(topic, value=b"x%d" % i, partition=0)
    producer.flush(10)
    producer.close(timeout=5)
    kp_commit(bootstrap, group, {(topic, 0): 2})

    done = _lagdeck(tmp_path, "-b", bootstrap, "lag", "--json", "--samples", "1", "--group",
                    f"^{group}$")
    assert done.returncode == 0, done.stderr
    assert "FINALIZED" not in done.stderr  # left through os._exit
    document = json.loads(done.stdout)  # the whole document was flushed first
    assert [(g["group"], g["total_lag"]) for g in document["groups"]] == [(group, 3)]
    # the history was written before leaving: the next run reads this sample back
    again = _lagdeck(tmp_path, "-b", bootstrap, "lag", "--json", "--samples", "1", "--group",
                     f"^{group}$")
    part = json.loads(again.stdout)["groups"][0]["partitions"][0]
    assert "needs" not in part["status_reason"], part


def test_a_failing_command_exits_as_before(tmp_path: Path, bootstrap: str) -> None:
    """Nothing kept: the interpreter finalizes as usual, with the command's exit code."""
    done = _lagdeck(tmp_path, "-b", bootstrap, "lag", "--group", "^no-such-group-anywhere$")
    assert done.returncode == 1
    assert "no consumer group matches" in done.stderr
    assert "FINALIZED" in done.stderr
