"""The embedded Tansu broker manager: start, readiness, stop, no leaks, clear failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collectors.errors import EmbeddedBrokerError
from collectors.topics import ensure_topics, list_topics
from console.embedded import EmbeddedBroker
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_start_serves_kafka_and_stop_frees_everything(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path).start()
    port, pid = broker.port, broker.pid
    assert port and pid and _alive(pid)
    ensure_topics(broker.cluster(), {"readiness.check": 2})
    assert list_topics(broker.cluster())["readiness.check"] == 2
    broker.check()
    assert broker.log_path is not None and broker.log_path.exists()
    broker.stop()
    wait_until(lambda: not _alive(pid), timeout=10, message="broker process to exit")
    assert not _port_open(port)
    with pytest.raises(EmbeddedBrokerError, match="not running"):
        broker.check()


def test_killed_parent_leaves_no_broker(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from console.embedded import EmbeddedBroker
        b = EmbeddedBroker(log_dir=__import__("pathlib").Path({str(tmp_path)!r})).start()
        print(b.pid, b.port, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        broker_pid, port = (int(x) for x in line.split())
        assert _alive(broker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(lambda: not _alive(broker_pid), timeout=10,
                   message="the orphaned broker to die with its parent")
        assert not _port_open(port)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_panic_in_log_is_reported(tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        assert broker.log_path is not None
        with open(broker.log_path, "ab") as log:
            log.write(b"thread 'tokio-runtime-worker' panicked at src/x.rs:1:1\n")
        with pytest.raises(EmbeddedBrokerError, match="panicked"):
            broker.check()


def test_missing_binary_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(EmbeddedBrokerError, match="cannot locate the Tansu broker binary"):
        EmbeddedBroker(log_dir=tmp_path).start()


def test_broker_command_prints_bootstrap_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LAGDECK_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "console.cli", "broker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("bootstrap: 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert _port_open(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not _port_open(port)
    finally:
        if proc.poll() is None:
            proc.kill()
