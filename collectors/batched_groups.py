"""Committed offsets and states of many groups in a few requests (KIP-709), via kafka-python.

librdkafka (confluent-kafka 2.16) sends one FindCoordinator, one OffsetFetch
and one describe per group, so a refresh of 10,000 groups costs tens of
thousands of requests. Since Kafka 3.0 one OffsetFetch (v8+, KIP-709) carries
many groups, and one FindCoordinator (v4+, KIP-699) resolves many keys;
DescribeGroups always took a list. kafka-python 3 speaks all three, so this
module (the only one that imports kafka-python) reads every group with:

- one FindCoordinator v4 for the groups whose coordinator is not cached
  (the cache lives as long as the reader; a coordinator error, or a request
  to the coordinator that failed, drops it);
- per coordinator, OffsetFetch v8 and DescribeGroups requests of at most
  `chunk` groups each;
- every step sent through one window (`_Window`): at most `WINDOW` requests
  of ours in flight per connection, refilled as answers land. kafka-python
  does not queue past `max_in_flight_requests_per_connection`: `send` on a
  connection at its limit fails at once (`NodeNotReadyError: Node paused`),
  and requests handed to a connection still being opened go out all at once
  and can stall it until they time out. The window stays below the limit
  with room for kafka-python's own requests (metadata) on the same connection.

kafka-python's own `list_group_offsets` / `describe_groups` raise on the first
group or partition error, so one unauthorized or moving group would fail the
whole refresh. The requests are therefore built here from kafka-python's
protocol classes and sent over its admin client's connection manager
(`KafkaAdminClient._manager`, the layer its own admin methods use), and every
answer is read group by group: an error stays on its group or partition.
A group whose coordinator moved (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
COORDINATOR_LOAD_IN_PROGRESS) is looked up and asked again once.

`client_settings` maps the librdkafka properties lagdeck is given to
kafka-python's: PLAINTEXT, SSL (CA, client certificate and key, key
password, hostname check) and SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512
over plaintext or SSL. Anything else that shapes the connection raises
`BatchedUnavailable` naming the setting; so does a broker without OffsetFetch
v8. The caller (`collectors.lag`) then uses its per-group librdkafka path and
reports why.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.config import ClusterConfig
from collectors.errors import LagdeckError
from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.snapshots import Member

_log = get_logger("batched")

TP = tuple[str, int]

#: groups per OffsetFetch / DescribeGroups request: one request at 1,000 groups, ten at 10,000
DEFAULT_CHUNK = 1000
#: kafka-python's `max_in_flight_requests_per_connection` for the reader's connections
MAX_IN_FLIGHT = 64
#: requests of one step in flight per connection: below MAX_IN_FLIGHT, leaving room for
#: kafka-python's own requests (metadata refreshes) on the same connection
WINDOW = 32
#: group-level errors after which the coordinator is looked up again and the group re-asked
_MOVED = frozenset({"NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
                    "COORDINATOR_LOAD_IN_PROGRESS"})
#: DescribeGroups state names -> the names confluent-kafka's ConsumerGroupState uses
_STATES = {
    "stable": "STABLE",
    "empty": "EMPTY",
    "dead": "DEAD",
    "preparingrebalance": "PREPARING_REBALANCING",
    "completingrebalance": "COMPLETING_REBALANCING",
}
_ACTIVE = frozenset({"STABLE", "PREPARING_REBALANCING", "COMPLETING_REBALANCING"})


class BatchedUnavailable(LagdeckError):
    """The batched path cannot serve this cluster; the message says why (shown to the user).

    `final`: settings or the broker's versions (no use trying again); False for a
    failed connection."""

    def __init__(self, message: str, *, final: bool = True) -> None:
        super().__init__(message)
        self.final = final


# ---------------------------------------------------------------- settings


_PROTOCOLS = {"plaintext": "PLAINTEXT", "ssl": "SSL", "sasl_plaintext": "SASL_PLAINTEXT",
              "sasl_ssl": "SASL_SSL"}
_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
#: librdkafka properties mapped one to one
_DIRECT = {
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
}
#: properties that shape how the connection is made: if not mapped, the path is not taken
_CONNECTION_PREFIXES = ("security.", "ssl.", "ssl_", "sasl.", "enable.ssl", "enable.sasl",
                        "broker.address.", "client.dns.", "socks", "proxy", "oauthbearer",
                        "https.", "client.rack")
#: connection-related properties with no effect on what is read, or handled above
_HARMLESS = {"ssl.endpoint.identification.algorithm", "sasl.mechanism", "sasl.mechanisms",
             "security.protocol", "client.rack"}


def client_settings(cluster: ClusterConfig) -> dict[str, Any]:
    """kafka-python `KafkaAdminClient` keyword arguments for `cluster`, or BatchedUnavailable.

    Every property that changes how lagdeck connects must map exactly; one that
    does not (an inline PEM, GSSAPI, OAUTHBEARER, a proxy, `probe` CA search...)
    makes this raise with the property named, never its value.
    """
    props = {str(k).strip(): str(v) for k, v in cluster.properties.items()}
    out: dict[str, Any] = {"bootstrap_servers": props.get("bootstrap.servers", "")}
    raw_protocol = props.get("security.protocol", "plaintext").strip().lower()
    protocol = _PROTOCOLS.get(raw_protocol)
    if protocol is None:
        raise BatchedUnavailable(f"security.protocol {raw_protocol!r} is not mapped to "
                                 "kafka-python")
    out["security_protocol"] = protocol
    if protocol.startswith("SASL"):
        mechanism = (props.get("sasl.mechanism") or props.get("sasl.mechanisms")
                     or "GSSAPI").strip().upper()
        if mechanism not in _MECHANISMS:
            raise BatchedUnavailable(f"sasl.mechanism {mechanism} is not mapped to kafka-python "
                                     "(PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)")
        out["sasl_mechanism"] = mechanism
    for key, value in props.items():
        target = _DIRECT.get(key)
        if target is not None:
            if key.startswith("ssl.") and not protocol.endswith("SSL"):
                continue  # librdkafka ignores SSL files without SSL; so does kafka-python
            if key.startswith("sasl.") and not protocol.startswith("SASL"):
                continue
            if key == "ssl.ca.location" and value.strip().lower() == "probe":
                raise BatchedUnavailable("ssl.ca.location=probe is not mapped to kafka-python")
            out[target] = value
        elif key.startswith(_CONNECTION_PREFIXES) and key not in _HARMLESS:
            raise BatchedUnavailable(f"{key} is not mapped to kafka-python")
    algorithm = props.get("ssl.endpoint.identification.algorithm", "https").strip().lower()
    if algorithm not in ("https", "none"):
        raise BatchedUnavailable(f"ssl.endpoint.identification.algorithm {algorithm!r} is not "
                                 "mapped to kafka-python")
    out["ssl_check_hostname"] = algorithm == "https"
    if "client.id" in props:
        out["client_id"] = props["client.id"]
    return out


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class GroupRead:
    """One group as the broker answered: state, members, committed offsets, errors."""

    group: str
    state: str = "UNKNOWN"
    #: None when the broker reports no members for a live group (it does not report them)
    members: tuple[Member, ...] | None = None
    #: committed offset per partition; None = no committed offset
    committed: Mapping[TP, int | None] = field(default_factory=dict)
    partition_errors: Mapping[TP, str] = field(default_factory=dict)
    #: group-level errors, each prefixed with the step ("describe: ...", "committed offsets: ...")
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchedRead:
    groups: Mapping[str, GroupRead]
    #: requests this read sent, by Kafka API name
    requests: Mapping[str, int]


# ---------------------------------------------------------------- the reader


class BatchedGroupReader:
    """Reads many groups per request through one kafka-python admin connection; reusable."""

    def __init__(self, cluster: ClusterConfig, *, timeout: float = 10.0,
                 chunk: int = DEFAULT_CHUNK) -> None:
        self.settings = client_settings(cluster)  # raises BatchedUnavailable first
        self.timeout = float(timeout)
        self.chunk = max(1, int(chunk))
        self._admin: Any = None
        self._lock = threading.Lock()
        #: group -> coordinator node id, kept between reads
        self._coordinators: dict[str, Any] = {}
        #: requests sent since the reader was opened, by API name
        self.requests: Counter[str] = Counter()

    def __enter__(self) -> BatchedGroupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._admin is not None:
                try:
                    self._admin.close()
                except Exception as exc:  # closing must never fail a refresh
                    _log.warning("closing the kafka-python admin client: %s", describe(exc))
                self._admin = None

    def open(self) -> None:
        """Connect and check the broker speaks OffsetFetch v8 (BatchedUnavailable if not)."""
        with self._lock:
            self._open()

    def _open(self) -> Any:
        if self._admin is not None:
            return self._admin
        _route_kafka_python_logs()
        from kafka import KafkaAdminClient
        from kafka.errors import IncompatibleBrokerVersion, KafkaError
        from kafka.protocol.consumer import OffsetFetchRequest

        try:
            admin = KafkaAdminClient(
                **self.settings,
                request_timeout_ms=int(self.timeout * 1000),
                bootstrap_timeout_ms=int(self.timeout * 1000),
                max_in_flight_requests_per_connection=MAX_IN_FLIGHT,
                client_id=self.settings.get("client_id", "lagdeck-lag-batched"),
            )
        except (KafkaError, OSError, ValueError, TypeError) as exc:
            raise BatchedUnavailable(f"kafka-python could not connect: {describe(exc)}",
                                     final=False) from None
        try:
            version = admin._manager.broker_version_data.api_version(OffsetFetchRequest)
        except (IncompatibleBrokerVersion, AttributeError) as exc:
            admin.close()
            raise BatchedUnavailable(f"broker OffsetFetch versions unknown: {describe(exc)}") \
                from None
        manager = admin._manager
        if not (callable(getattr(manager, "least_loaded_node", None))
                and callable(getattr(getattr(manager, "_net", None), "sleep", None))):
            admin.close()
            raise BatchedUnavailable("this kafka-python lacks the connection manager calls "
                                     "lagdeck uses (least_loaded_node, _net.sleep)")
        if version < 8:
            admin.close()
            raise BatchedUnavailable(f"broker speaks OffsetFetch up to v{version}; "
                                     "batching needs v8 (Kafka 3.0, KIP-709)")
        self._admin = admin
        return admin

    def read(self, groups: Sequence[str],
             on_part: Callable[[list[GroupRead]], None] | None = None) -> BatchedRead:
        """Every group's state, members and committed offsets; errors stay on their group.

        `on_part`, if given, is called with the groups of each part (a chunk of one
        coordinator's groups) as soon as both its answers landed, so a caller can work
        on them while the broker answers the next parts (`LagCollector.refresh`). It
        runs on kafka-python's IO thread: hand the list over (a queue), nothing more.
        Groups asked again (their coordinator moved) or failed before being asked come
        only in the returned read, which holds every group as always."""
        with self._lock:
            admin = self._open()
            before = Counter(self.requests)
            wanted = list(dict.fromkeys(groups))
            if not wanted:
                return BatchedRead({}, {})
            refused = {g: problem for g in wanted if (problem := _unsendable(g))}
            asked = [g for g in wanted if g not in refused]
            try:
                reads = admin._manager.run(self._read_all, admin, asked, on_part) \
                    if asked else {}
            except Exception as exc:  # the connection failed: every group says so
                text = describe(exc)
                _log.warning("batched group read failed: %s", text)
                reads = {g: GroupRead(g, errors=(f"committed offsets: {text}",))
                         for g in asked}
            reads.update({g: GroupRead(g, errors=(f"group id: {problem}",))
                          for g, problem in refused.items()})
            reads = {g: reads[g] for g in wanted}
            sent = Counter(self.requests)
            sent.subtract(before)
            return BatchedRead(reads, {k: v for k, v in sent.items() if v})

    # ---------------------------------------------------------- on kafka-python's IO thread

    async def _read_all(self, admin: Any, groups: list[str],
                        on_part: Callable[[list[GroupRead]], None] | None = None
                        ) -> dict[str, GroupRead]:
        found = await self._find(admin, [g for g in groups if g not in self._coordinators])
        state: dict[str, _Partial] = {g: _Partial() for g in groups}
        for g, error in found.items():
            state[g].errors.append(f"coordinator: {error}")
        await self._ask(admin, [g for g in groups if g in self._coordinators], state, on_part)
        moved = [g for g, s in state.items() if s.moved]
        if moved:  # the coordinator moved: look it up again and ask once more
            for g in moved:
                self._coordinators.pop(g, None)
                state[g] = _Partial()
            for g, error in (await self._find(admin, moved)).items():
                state[g].errors.append(f"coordinator: {error}")
            await self._ask(admin, [g for g in moved if g in self._coordinators], state)
        return {g: state[g].build(g) for g in groups}

    async def _find(self, admin: Any, groups: list[str]) -> dict[str, str]:
        """Coordinators of `groups` into the cache; returns {group: error} for failures."""
        from kafka.protocol.metadata import CoordinatorType, FindCoordinatorRequest

        if not groups:
            return {}
        manager = admin._manager
        cluster = manager.cluster
        errors: dict[str, str] = {}
        rows: list[tuple[str, Any]] = []
        calls: list[_Call] = []

        def failed(keys: list[str]) -> Callable[[str], None]:
            return lambda text: errors.update(dict.fromkeys(keys, text))

        if self._find_coordinator_version(manager) >= 4:
            def batch(response: Any) -> None:
                rows.extend((c.key, c) for c in response.coordinators)

            for part in _chunks(groups, self.chunk):
                calls.append(_Call(
                    "FindCoordinator",
                    FindCoordinatorRequest(key_type=CoordinatorType.GROUP.value,
                                           coordinator_keys=part, min_version=4),
                    None, batch, failed(part)))
        else:  # before Kafka 3.0: one request per group, through the window
            for g in groups:
                calls.append(_Call(
                    "FindCoordinator",
                    FindCoordinatorRequest(key=g, key_type=CoordinatorType.GROUP.value,
                                           max_version=3),
                    None, functools.partial(_keep_row, rows, g), failed([g])))
        await self._send(manager, calls)
        for key, row in rows:
            try:
                self._coordinators[key] = cluster.add_coordinator(
                    row, CoordinatorType.GROUP, key, synthesize_node_id=False)
            except Exception as exc:  # the row carried an error code
                errors[key] = describe(exc)
        for g in groups:
            if g not in self._coordinators and g not in errors:
                errors[g] = "the broker did not answer for this group"
        return errors

    @staticmethod
    def _find_coordinator_version(manager: Any) -> int:
        """The highest FindCoordinator version the broker speaks: v4+ resolves many keys."""
        from kafka.protocol.metadata import FindCoordinatorRequest

        return int(manager.broker_version_data.api_version(FindCoordinatorRequest))

    async def _ask(self, admin: Any, groups: list[str], state: dict[str, _Partial],
                   on_part: Callable[[list[GroupRead]], None] | None = None) -> None:
        """OffsetFetch v8 and DescribeGroups per coordinator, through the window; each
        part handed to `on_part` once both its answers landed (see `read`)."""
        from kafka.protocol.admin import DescribeGroupsRequest
        from kafka.protocol.consumer import OffsetFetchRequest

        by_node: dict[Any, list[str]] = defaultdict(list)
        for g in groups:
            by_node[self._coordinators[g]].append(g)
        group_spec = OffsetFetchRequest.OffsetFetchRequestGroup

        def failed(step: str, part: list[str]) -> Callable[[str], None]:
            def record(text: str) -> None:
                for g in part:
                    state[g].errors.append(f"{step}: {text}")
                    # the coordinator may have died and the group moved on: look it up
                    # again next read rather than asking a dead node for ever
                    self._coordinators.pop(g, None)
            return record

        calls: list[_Call] = []
        for node, members in by_node.items():
            for part in _chunks(members, self.chunk):
                landed = _PartLanded(part, state, on_part)
                calls.append(_Call(
                    "OffsetFetch",
                    OffsetFetchRequest(groups=[group_spec(group_id=g, topics=None)
                                               for g in part],
                                       require_stable=False, min_version=8, max_version=8),
                    node, landed.then(functools.partial(_take_offsets, asked=part,
                                                        state=state)),
                    landed.then(failed("committed offsets", part))))
                calls.append(_Call(
                    "DescribeGroups",
                    DescribeGroupsRequest(groups=part, include_authorized_operations=False),
                    node, landed.then(functools.partial(_take_descriptions, asked=part,
                                                        state=state)),
                    landed.then(failed("describe", part))))
        await self._send(admin._manager, calls)

    async def _send(self, manager: Any, calls: list[_Call]) -> None:
        """Every call answered or failed; counted in `self.requests` once each."""
        await _Window(manager, self._timeout_ms, self.requests).run(calls)

    @property
    def _timeout_ms(self) -> int:
        return int(self.timeout * 1000)


class _PartLanded:
    """Counts a part's two answers (or failures); at the second, hands the part's groups
    that are final (not to be asked again) to `on_part`."""

    def __init__(self, part: list[str], state: dict[str, _Partial],
                 on_part: Callable[[list[GroupRead]], None] | None) -> None:
        self.part, self.state, self.on_part = part, state, on_part
        self.left = 2

    def then(self, handle: Callable[[Any], None]) -> Callable[[Any], None]:
        """`handle`, then the count. An answer `handle` cannot read raises before the
        count: the window then calls the failure handler, which counts it once."""
        def landed(value: Any) -> None:
            handle(value)
            self.left -= 1
            if self.left == 0 and self.on_part is not None:
                state = self.state
                self.on_part([state[g].build(g) for g in self.part if not state[g].moved])
        return landed


# ---------------------------------------------------------------- the window


@dataclass(eq=False)
class _Call:
    """One request of a step, and where its answer or its failure goes."""

    api: str
    request: Any
    #: the coordinator's node id; None: any broker (kafka-python's least loaded when sent)
    node: Any
    on_answer: Callable[[Any], None]
    on_error: Callable[[str], None]
    counted: bool = False


#: errors after which kafka-python has closed the connection: the node's other calls fail now
_CONNECTION_LOST = ("KafkaConnectionError", "RequestTimedOutError")
#: how long past the request timeout a step waits with no answer before giving up
_STALL_GRACE_MS = 1000
_GIVEN_UP = object()


class _Window:
    """Sends a step's calls, at most WINDOW in flight per connection, refilled as answers land.

    Runs on kafka-python's IO thread, where its futures call back: the callbacks only
    note what landed and wake `run`, which hands each answer to its call and sends the
    next ones. Calls wait in one queue per coordinator, plus one for calls any broker
    may answer (sent to kafka-python's least loaded node), so a refill costs only the
    calls it sends, however long the queues.

    A connection that refuses a call before it goes out (NodeNotReadyError: paused at
    its in-flight limit by other requests, throttled by a quota, in reconnect backoff)
    is tried again after one of ours lands, or after a backoff, for up to the request
    timeout. A node whose connection went (lost, timed out, refusing past the timeout)
    fails the calls still queued for it at once, with that error, rather than each
    waiting out a timeout. If nothing lands for longer than the request timeout (a
    future kafka-python never resolves, as when a request buffered for a connection
    being opened fails to encode), the calls in flight are given up and their
    connections closed. No failure leaves `run` early, and `run` always ends:
    every call ends in on_answer or on_error.
    """

    def __init__(self, manager: Any, timeout_ms: int, counts: Counter[str]) -> None:
        self.manager = manager
        self.timeout = timeout_ms / 1000
        self.timeout_ms = timeout_ms
        self.counts = counts
        #: calls not sent yet, by node (None: any broker)
        self.queues: dict[Any, deque[_Call]] = defaultdict(deque)
        #: calls sent and not landed, with the node they went to
        self.sent: dict[_Call, Any] = {}
        self.in_flight: Counter[Any] = Counter()
        self.landed: deque[tuple[_Call, Any]] = deque()
        #: node -> why its connection is of no more use in this step
        self.gone: dict[Any, str] = {}
        #: node -> when it first refused a call since it last took one
        self.refusing: dict[Any, float] = {}
        self._wake: Any = None

    async def run(self, calls: Iterable[_Call]) -> None:
        from kafka.errors import KafkaTimeoutError
        from kafka.future import Future

        for call in calls:
            self.queues[call.node].append(call)
        backoff = 0.05
        while True:
            self._fill()
            while self.landed:
                self._take(*self.landed.popleft())
            waiting = any(self.queues.values())
            if not waiting and not self.sent:
                return
            if self.sent:  # wait for the next answer of ours
                self._wake = Future()
                try:
                    if not self.landed:
                        await self.manager.wait_for(self._wake, self.timeout_ms + _STALL_GRACE_MS)
                except KafkaTimeoutError:
                    self._give_up()
                finally:
                    self._wake = None
                backoff = 0.05
            elif waiting:  # every connection refused and nothing of ours is in flight
                await self.manager._net.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def _fill(self) -> None:
        """Send, per queue, what the window allows, until its connection is full or refuses."""
        for node, queue in self.queues.items():
            while queue:
                target = node if node is not None else self.manager.least_loaded_node()
                if target in self.gone:
                    queue.popleft().on_error(self.gone[target])
                    continue
                if self.in_flight[target] >= WINDOW or not self._send(queue, target):
                    break

    def _send(self, queue: deque[_Call], node: Any) -> bool:
        """Send the first call of `queue` to `node`; False if the connection refused it."""
        from kafka.errors import NodeNotReadyError

        call = queue.popleft()
        if not call.counted:
            self.counts[call.api] += 1
            call.counted = True
        try:
            future = self.manager.send(call.request, node_id=node,
                                       request_timeout_ms=self.timeout_ms)
        except Exception as exc:  # an unknown broker id, an authentication failure...
            call.on_error(describe(exc))
            return True
        if future.is_done and isinstance(future.exception, NodeNotReadyError):
            queue.appendleft(call)
            self._refused(node, future.exception)
            return False
        self.refusing.pop(node, None)
        self.sent[call] = node
        self.in_flight[node] += 1
        future.add_callback(self._landed, call, future)
        future.add_errback(self._landed, call, future)
        return True

    def _landed(self, call: _Call, future: Any, _value: Any) -> None:
        self.landed.append((call, future))
        if self._wake is not None and not self._wake.is_done:
            self._wake.success(None)

    def _take(self, call: _Call, future: Any) -> None:
        from kafka.errors import NodeNotReadyError

        node = self.sent.pop(call, _GIVEN_UP)
        if node is _GIVEN_UP:  # landed after it was given up: already failed
            return
        self.in_flight[node] -= 1
        error = future.exception
        if error is None:
            try:
                call.on_answer(future.value)
            except Exception as exc:  # an answer we cannot read fails its own groups only
                _log.warning("%s answer not understood: %s", call.api, describe(exc))
                call.on_error(f"answer not understood: {describe(exc)}")
        elif isinstance(error, NodeNotReadyError):  # refused after all: send it again
            self.queues[call.node].appendleft(call)
            self._refused(node, error)
        else:
            text = describe(error)
            if type(error).__name__ in _CONNECTION_LOST:
                self.gone.setdefault(node, text)
            call.on_error(text)

    def _refused(self, node: Any, error: BaseException) -> None:
        now = time.monotonic()
        since = self.refusing.setdefault(node, now)
        if now - since >= self.timeout:
            self.gone.setdefault(node, describe(error))

    def _give_up(self) -> None:
        text = f"no answer within {self.timeout:g} s"
        _log.warning("batched read: %d request(s) given up: %s", len(self.sent), text)
        for call, node in self.sent.items():
            self.gone.setdefault(node, text)
            call.on_error(text)
        self.sent.clear()
        for node in self.in_flight:
            # as kafka-python does after a request timeout: the next read reconnects
            try:
                self.manager.close(node)
            except Exception as exc:  # closing must not fail the read
                _log.warning("closing the connection to node %s: %s", node, describe(exc))
        self.in_flight.clear()


# ---------------------------------------------------------------- answers


class _Partial:
    """What one read learned about a group so far (IO thread only)."""

    __slots__ = ("committed", "described", "errors", "members", "moved", "partition_errors",
                 "state")

    def __init__(self) -> None:
        self.state = "UNKNOWN"
        self.described = False
        self.members: tuple[Member, ...] | None = None
        self.committed: dict[TP, int | None] = {}
        self.partition_errors: dict[TP, str] = {}
        self.errors: list[str] = []
        self.moved = False

    def build(self, group: str) -> GroupRead:
        for m in self.members or ():
            for key in m.assignments:
                self.committed.setdefault(key, None)
        return GroupRead(group, self.state, self.members, self.committed,
                         self.partition_errors, tuple(self.errors))


def _answered(response: Any, asked: list[str], state: dict[str, _Partial],
              step: str) -> Iterator[tuple[Any, _Partial]]:
    """The groups of one batched answer that carry no group error, with their partial read.

    A group error stays on its group (a moved coordinator marks it for one more ask);
    a group the broker left out of its answer is said to be unanswered, never dropped.
    """
    answered: set[str] = set()
    for group in response.groups:
        partial = state.get(group.group_id)
        if partial is None:
            continue
        answered.add(group.group_id)
        name = _error_name(group.error_code)
        if name is not None:
            if name in _MOVED:
                partial.moved = True
            partial.errors.append(f"{step}: {_error_text(group.error_code)}")
            continue
        yield group, partial
    for g in asked:
        if g not in answered:
            state[g].errors.append(f"{step}: the broker did not answer for this group")


def _keep_row(rows: list[tuple[str, Any]], group: str, response: Any) -> None:
    """A pre-v4 FindCoordinator answer (one key) as the row of its group."""
    rows.append((group, response))


def _take_offsets(response: Any, asked: list[str], state: dict[str, _Partial]) -> None:
    for group, partial in _answered(response, asked, state, "committed offsets"):
        for topic in group.topics:
            for p in topic.partitions:
                key = (topic.name, p.partition_index)
                if p.error_code:
                    partial.partition_errors[key] = _error_text(p.error_code)
                    partial.committed[key] = None
                else:
                    offset = p.committed_offset
                    partial.committed[key] = offset if offset is not None and offset >= 0 \
                        else None


def _take_descriptions(response: Any, asked: list[str], state: dict[str, _Partial]) -> None:
    for group, partial in _answered(response, asked, state, "describe"):
        partial.described = True
        partial.state = state_name(group.group_state)
        members = tuple(_member(m) for m in group.members or ())
        # a live group with no member list: the broker does not report them
        partial.members = None if not members and partial.state in _ACTIVE else members


def _member(member: Any) -> Member:
    assignments: tuple[TP, ...] = ()
    raw = member.member_assignment
    if raw:
        try:
            from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment

            decoded = raw if not isinstance(raw, bytes | bytearray) else \
                ConsumerProtocolAssignment.decode(raw)
            assignments = tuple((tp.topic, tp.partition) for tp in decoded.partitions())
        except Exception as exc:  # a non-consumer protocol, or bytes we cannot read
            _log.debug("member %s: assignment not decoded: %s", member.member_id, exc)
    return Member(member_id=member.member_id, client_id=member.client_id,
                  host=member.client_host, assignments=assignments)


def state_name(raw: str | None) -> str:
    """DescribeGroups' `Stable`, `PreparingRebalance`... as confluent-kafka names them."""
    text = (raw or "").replace("_", "").replace("-", "").lower()
    return _STATES.get(text, (raw or "UNKNOWN").upper())


def _error_name(code: int) -> str | None:
    if not code:
        return None
    from kafka.errors import for_code

    cls = for_code(code)
    return str(getattr(cls, "message", cls.__name__))


def _error_text(code: int) -> str:
    """`NAME: description`, as `collectors.kafka.describe` words librdkafka's errors."""
    from kafka.errors import for_code

    cls = for_code(code)
    name = getattr(cls, "message", cls.__name__)
    text = getattr(cls, "description", "") or ""
    return f"{name}: {text}" if text else str(name)


def describe(exc: BaseException) -> str:
    """One scrubbed line for a kafka-python or Python error."""
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}" if str(exc) else text
    return scrub(" ".join(text.split()))


def _unsendable(group: str) -> str | None:
    """Why `group` cannot go in a request, or None.

    Kafka strings are UTF-8 with a 16-bit length. kafka-python raises while encoding
    such a name, and when the request was buffered for a connection still being
    opened, the requests buffered after it are never sent: better not to ask.
    """
    try:
        size = len(group.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid UTF-8; not asked"
    if size > 32767:
        return f"{size} bytes, longer than a Kafka string; not asked"
    return None


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


class _Forward(logging.Handler):
    """kafka-python logs to `kafka.*`: send those records to lagdeck's file log instead."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("lagdeck.kafka-python").handle(record)


_routed = False


def _route_kafka_python_logs() -> None:
    """Warnings of kafka-python must reach the log file, never stderr or the TUI."""
    global _routed
    if _routed:
        return
    logger = logging.getLogger("kafka")
    logger.addHandler(_Forward())
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    _routed = True
