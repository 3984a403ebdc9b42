"""Which cluster lagdeck is talking to: the id its brokers report, not the bootstrap string.

Alert state is kept per cluster (`collectors.alerts.book.AlertStore`). The
bootstrap string is a poor name for a cluster: two strings can reach one
cluster (a load balancer, a different broker list) and one string can reach
two clusters over time (DNS moved to the DR site). The cluster id in the
metadata answer is what Kafka itself uses. Brokers that report none get
`bootstrap:<servers>` instead, said in the docs (docs/alerts.md).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from collectors import kafka
from collectors.config import ClusterConfig, require_bootstrap
from collectors.errors import BrokerUnavailable


def bootstrap_id(cluster: ClusterConfig) -> str:
    """The fallback name: the bootstrap servers, normalised (order and case do not matter)."""
    servers = (s.strip().lower() for s in require_bootstrap(cluster).split(","))
    return "bootstrap:" + ",".join(sorted(s for s in servers if s))


class ClusterIdentity:
    """Asks the cluster for its id; keeps one admin client between rounds of `watch`."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self._admin: Any = None

    def fetch(self, timeout: float = 5.0) -> str:
        """The cluster id, or `bootstrap:...` when the brokers report none.

        Raises BrokerUnavailable (one line) when no broker answers within `timeout`.
        """
        bootstrap = require_bootstrap(self.cluster)
        if self._admin is None:
            self._admin = kafka.admin(self.cluster, **{"client.id": "lagdeck-cluster-id"})
        try:
            try:
                found = self._admin.describe_cluster(request_timeout=timeout).result(
                    timeout=timeout + 1)
                cid = found.cluster_id
            except KafkaException as exc:
                if not _unsupported(exc):
                    raise
                # brokers without DescribeCluster (before Kafka 2.8): the metadata answer
                cid = self._admin.list_topics(timeout=timeout).cluster_id
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            why = kafka.describe(exc) if isinstance(exc, KafkaException) else "no answer"
            raise BrokerUnavailable(
                f"cannot reach Kafka at {bootstrap} within {timeout:g}s ({why})") from None
        return str(cid) if cid else bootstrap_id(self.cluster)


def _unsupported(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    codes = (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION)
    return isinstance(err, KafkaError) and err.code() in codes
