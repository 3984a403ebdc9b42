"""The only place that constructs librdkafka clients.

Every client logs through the `lagdeck.librdkafka` file logger (never the
terminal), reports errors through a callback that feeds the log, and every
construction error becomes a typed `LagdeckError` with one line. Callers pass
explicit timeouts on every call; `DEFAULT_TIMEOUT` is the default for those
that have no better value.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from typing import Any, Protocol, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from collectors.config import ClusterConfig, require_bootstrap
from collectors.errors import BrokerUnavailable, ConfigError, KafkaOperationError, LagdeckError
from collectors.logs import KAFKA_LOGGER, get_logger
from collectors.redact import scrub

DEFAULT_TIMEOUT = 10.0
#: librdkafka's defaults the console changes (a user's -X/-F setting still wins):
#: reconnect within a second of a broker coming back, not after up to 10 s of backoff
#: (docs/outages.md)
CLIENT_DEFAULTS: dict[str, Any] = {"reconnect.backoff.max.ms": 1000}

_log = get_logger("kafka")


def _error_cb(err: KafkaError) -> None:
    _log.warning("client error: %s", err)


def _base(cluster: ClusterConfig, overrides: dict[str, Any] | None) -> dict[str, Any]:
    require_bootstrap(cluster)
    conf: dict[str, Any] = {**CLIENT_DEFAULTS, **cluster.properties}
    conf.update(overrides or {})
    get_logger(KAFKA_LOGGER)  # make sure the file handler is attached
    conf["logger"] = logging.getLogger(KAFKA_LOGGER)
    conf["error_cb"] = _error_cb
    return conf


def _construct(kind: type, conf: dict[str, Any]) -> Any:
    try:
        return kind(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid client configuration: {describe(exc)}") from None


def admin(cluster: ClusterConfig, **overrides: Any) -> AdminClient:
    return _construct(AdminClient, _base(cluster, overrides))


def producer(cluster: ClusterConfig, **overrides: Any) -> Producer:
    conf = {"client.id": "lagdeck", **overrides}
    return _construct(Producer, _base(cluster, conf))


def consumer(cluster: ClusterConfig, group: str | None = None, **overrides: Any) -> Consumer:
    """A consumer; without `group` a throw-away group id that never commits (for scans)."""
    conf: dict[str, Any] = {
        "group.id": group or f"lagdeck-reader-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "client.id": "lagdeck",
        "enable.partition.eof": False,
    }
    conf.update(overrides)
    return _construct(Consumer, _base(cluster, conf))


class ConsumedMessage(Protocol):
    """A record as `Consumer.consume`/`poll` hands it out.

    confluent-kafka's stubs share one `Message` type with the producer side,
    where topic, partition and offset may be unset and headers may be a dict;
    a fetched message always carries them, and its headers are a list of
    (name, raw bytes or None) or None. Error events (end of partition) carry
    topic, partition and offset too, with `error()` set.
    """

    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...
    def error(self) -> KafkaError | None: ...


def consumed(batch: list[Message]) -> list[ConsumedMessage]:
    """`batch` (what `Consumer.consume` returned) typed as the fetched records it is."""
    # the stub's Message is too loose for consumed records (see ConsumedMessage)
    return cast("list[ConsumedMessage]", batch)


def describe(exc: BaseException) -> str:
    """One scrubbed line for any Kafka or Python error."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err: KafkaError = exc.args[0]
        text = f"{err.name()}: {err.str()}"
    else:
        text = str(exc) or type(exc).__name__
    return scrub(" ".join(text.split()))


def translate(exc: BaseException, doing: str) -> LagdeckError:
    """Turn a librdkafka error into a typed error whose message says what was being done."""
    if isinstance(exc, LagdeckError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        code = exc.args[0].code()
        if code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
                    KafkaError._RESOLVE, KafkaError.NETWORK_EXCEPTION):
            return BrokerUnavailable(f"{doing}: cluster unreachable ({describe(exc)})")
    return KafkaOperationError(f"{doing}: {describe(exc)}")


def check_reachable(cluster: ClusterConfig, timeout: float = 5.0) -> None:
    """Fail fast with one line when the cluster cannot be reached.

    librdkafka retries forever in the background; an operator at 3 AM wants
    "cannot reach X" within seconds instead.
    """
    bootstrap = require_bootstrap(cluster)
    client = admin(cluster)
    try:
        client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {bootstrap} within {timeout:g}s ({describe(exc)})"
        ) from None


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll a TCP connect every ~10 ms until it succeeds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.01)
    return False
