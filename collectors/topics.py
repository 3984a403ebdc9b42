"""Topic administration the console needs: listing and creating topics."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from collectors.config import ClusterConfig
from collectors.kafka import DEFAULT_TIMEOUT, admin, translate

#: topic name prefixes `list_topics` hides by default: Kafka's internal topics and lagdeck's
#: own (collectors.snapshot_topic.DEFAULT_TOPIC is `_lagdeck.lag`)
HIDDEN_PREFIXES = ("__", "_lagdeck.")


def list_topics(cluster: ClusterConfig, timeout: float = DEFAULT_TIMEOUT,
                include_internal: bool = False, client: AdminClient | None = None
                ) -> dict[str, int]:
    """Topic name -> partition count (internal `__*` topics and lagdeck's own `_lagdeck.*`
    topics hidden unless asked).

    lagdeck's own topics (the lag snapshots of `watch --publish`) hold no orders: left in,
    trace and flows scanned them and counted group names as orders of an extra step.
    Pass `client` to reuse an admin client kept open between calls."""
    c = client if client is not None else admin(cluster)
    try:
        meta = c.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise translate(exc, "listing topics") from None
    return {
        name: len(t.partitions)
        for name, t in meta.topics.items()
        if t.error is None and (include_internal or not name.startswith(HIDDEN_PREFIXES))
    }


def ensure_topics(cluster: ClusterConfig, topics: Mapping[str, int],
                  timeout: float = DEFAULT_TIMEOUT) -> None:
    """Create the topics that do not exist yet (name -> partitions); existing ones are kept."""
    client = admin(cluster)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise translate(exc, f"creating topic {name}") from None
