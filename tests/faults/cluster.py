"""Brokers to break: a Tansu that can be SIGKILLed and restarted on the same port,
behind an optional fault proxy, with in-memory or S3 (moto) storage.

- `S3Endpoint`: moto's server on a free loopback port (`tests.faults.s3_server`)
  with one bucket; `env` is what Tansu needs to use it. With it, a broker's
  topics, records and committed offsets survive SIGKILL (the Tansu build in
  the wheel has no PostgreSQL storage; see docs/outages.md).
- `FaultyBroker`: the broker process on a fixed port; `kill()` is SIGKILL,
  `restart()` starts it again on the same port (same bucket, if any). With a
  proxy, the broker advertises the proxy's address, so every client
  connection goes through the proxy.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

from collectors.config import ClusterConfig
from collectors.kafka import wait_for_port
from console.embedded import EmbeddedBroker, free_port
from tests.faults.proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]


class S3Endpoint:
    """A loopback S3 (moto) with one bucket, for Tansu's `s3://` storage engine."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = 0
        self.bucket = f"tansu-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "lagdeck-test",
            "AWS_SECRET_ACCESS_KEY": "lagdeck-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            # without it Tansu's watermark updates race and end offsets come out wrong
            "AWS_CONDITIONAL_PUT": "etag",
        }

    @property
    def storage(self) -> str:
        return f"s3://{self.bucket}/"

    def new_bucket(self) -> str:
        """A fresh, empty bucket (a broker started on it starts empty)."""
        import boto3

        self.bucket = f"tansu-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}",
                     region_name="us-east-1", aws_access_key_id="lagdeck-test",
                     aws_secret_access_key="lagdeck-test").create_bucket(Bucket=self.bucket)
        return self.bucket

    def start(self) -> S3Endpoint:
        for _ in range(5):
            self.port = free_port()
            log = open(self.log_dir / f"moto-{self.port}.log", "wb")  # noqa: SIM115
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.s3_server", str(self.port)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            log.close()
            if wait_for_port("127.0.0.1", self.port, 20) and self.process.poll() is None:
                self.new_bucket()
                return self
            self.stop()
        raise RuntimeError("moto's S3 server did not start")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def __enter__(self) -> S3Endpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FaultyBroker:
    """A Tansu broker that tests may SIGKILL and restart on the same port."""

    def __init__(self, log_dir: Path, *, proxy: bool = False,
                 s3: S3Endpoint | None = None) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.s3 = s3
        self.port = free_port()
        #: one cluster id across restarts: Tansu keeps a cluster's data under its id
        self.cluster_id = f"lagdeck-faults-{uuid.uuid4().hex[:8]}"
        self.proxy: FaultProxy | None = FaultProxy(self.port).start() if proxy else None
        self.broker = self._make()

    def _make(self) -> EmbeddedBroker:
        return EmbeddedBroker(
            port=self.port, log_dir=self.log_dir, cluster_id=self.cluster_id,
            advertised=self.proxy.address if self.proxy else None,
            storage=self.s3.storage if self.s3 else None,
            env=self.s3.env if self.s3 else None)

    @property
    def bootstrap(self) -> str:
        """What clients use: the proxy when there is one, else the broker itself."""
        return self.proxy.address if self.proxy else f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self.broker.log_path

    def cluster(self) -> ClusterConfig:
        return ClusterConfig({"bootstrap.servers": self.bootstrap})

    def start(self) -> FaultyBroker:
        self.broker = self._make()
        self.broker.start()
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing flushed."""
        proc = self.broker.process
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, 9)
            proc.wait(timeout=10)

    restart = start

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # no graceful stop needed (it can take 5 s)
            self.kill()
            self.broker.stop()
        if self.proxy is not None:
            self.proxy.close()

    def __enter__(self) -> FaultyBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
