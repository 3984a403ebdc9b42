"""A Kafka-protocol proxy in front of the real broker that puts errors on chosen groups.

Tansu answers every group without an error (no ACLs, one broker, no moving
coordinators), so the errors a production cluster gives one group
(unauthorized, coordinator moved, a partition error) are injected on the
wire: requests pass through untouched; responses are decoded with
kafka-python's protocol classes, changed for the groups named in `faults`,
and encoded again. Metadata and FindCoordinator answers are rewritten to
advertise the proxy, so every client stays on it. Everything else is
forwarded byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from kafka.protocol.admin import DescribeGroupsResponse
from kafka.protocol.consumer import OffsetFetchResponse
from kafka.protocol.metadata import FindCoordinatorResponse, MetadataResponse

OFFSET_FETCH, METADATA, DESCRIBE_GROUPS, FIND_COORDINATOR = 9, 3, 15, 10


@dataclass
class Faults:
    """Error codes to put on groups: whole group (offsets / describe) or one partition."""

    offsets: dict[str, int] = field(default_factory=dict)
    describe: dict[str, int] = field(default_factory=dict)
    #: group -> (partition index, error code)
    partition: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: groups answered with this error once only (a coordinator that moved)
    once: dict[str, int] = field(default_factory=dict)
    seen_once: set[str] = field(default_factory=set)
    #: OffsetFetch requests seen, with how many groups each carried
    offset_fetches: list[int] = field(default_factory=list)
    #: groups whose coordinator (batched FindCoordinator) is said to be another node:
    #: group -> (node id, port), e.g. a port where nothing listens
    elsewhere: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: API keys whose requests are swallowed (never answered: a leader that hangs)
    swallow: set[int] = field(default_factory=set)
    #: requests seen, by API key
    seen: Counter[int] = field(default_factory=Counter)


class FaultProxy:
    def __init__(self, target_port: int, faults: Faults) -> None:
        self.target_port = target_port
        self.faults = faults
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        with contextlib.suppress(OSError):
            self.server.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._thread.join(5)

    # ------------------------------------------------------------ plumbing

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            asked: dict[int, tuple[int, int]] = {}
            threading.Thread(target=self._requests, args=(client, upstream, asked),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, asked),
                             daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket,
                  asked: dict[int, tuple[int, int]]) -> None:
        for frame in _frames(src):
            key, version, correlation = struct.unpack(">hhi", frame[:8])
            self.faults.seen[key] += 1
            if key in self.faults.swallow:
                continue
            asked[correlation] = (key, version)
            if key == OFFSET_FETCH and version >= 8:
                with contextlib.suppress(Exception):
                    from kafka.protocol.consumer import OffsetFetchRequest

                    request = OffsetFetchRequest.decode(frame, version=version, header=True)
                    self.faults.offset_fetches.append(len(request.groups))
            _send(dst, frame)

    def _responses(self, src: socket.socket, dst: socket.socket,
                   asked: dict[int, tuple[int, int]]) -> None:
        for frame in _frames(src):
            correlation = struct.unpack(">i", frame[:4])[0]
            key, version = asked.pop(correlation, (-1, -1))
            change = self._changes.get(key)
            if change is not None:
                cls, edit = change
                try:
                    # response header: correlation id, then (flexible versions) tagged
                    # fields, which brokers leave empty (one zero byte)
                    tags = b"\x00" if cls.flexible_version_q(version) else b""
                    if tags and frame[4:5] != tags:
                        raise ValueError("tagged fields in the response header")
                    response = cls.decode(frame[4 + len(tags):], version=version)
                    edit(self, response)
                    response._header = None  # decode leaves the slot unset; encode reads it
                    frame = struct.pack(">i", correlation) + tags + response.encode(
                        version=version)
                except Exception as exc:  # an unknown version: leave it alone
                    print(f"fault proxy: response {key} v{version} passed as is: {exc!r}")
            _send(dst, frame)

    # ------------------------------------------------------------ edits

    def _advertise(self, response) -> None:
        for broker in getattr(response, "brokers", None) or ():
            broker.port = self.port
        for row in getattr(response, "coordinators", None) or ():
            row.port = self.port
            if row.key in self.faults.elsewhere:
                row.node_id, row.port = self.faults.elsewhere[row.key]
        if getattr(response, "port", None):
            response.port = self.port

    def _offsets(self, response) -> None:
        f = self.faults
        for group in getattr(response, "groups", None) or ():
            name = group.group_id
            if name in f.once and name not in f.seen_once:
                f.seen_once.add(name)
                group.error_code = f.once[name]
            elif name in f.offsets:
                group.error_code = f.offsets[name]
            elif name in f.partition:
                index, code = f.partition[name]
                for topic in group.topics:
                    for p in topic.partitions:
                        if p.partition_index == index:
                            p.error_code = code
                            p.committed_offset = -1

    def _describe(self, response) -> None:
        for group in response.groups:
            if group.group_id in self.faults.describe:
                group.error_code = self.faults.describe[group.group_id]

    _changes: ClassVar[dict[int, tuple[type, Callable]]] = {
        METADATA: (MetadataResponse, _advertise),
        FIND_COORDINATOR: (FindCoordinatorResponse, _advertise),
        OFFSET_FETCH: (OffsetFetchResponse, _offsets),
        DESCRIBE_GROUPS: (DescribeGroupsResponse, _describe),
    }


def _frames(sock: socket.socket):
    """Kafka frames (without their size prefix) until the socket closes."""
    while True:
        head = _read(sock, 4)
        if head is None:
            return
        body = _read(sock, struct.unpack(">i", head)[0])
        if body is None:
            return
        yield body


def _read(sock: socket.socket, n: int) -> bytes | None:
    out = bytearray()
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except OSError:
            return None
        if not chunk:
            return None
        out += chunk
    return bytes(out)


def _send(sock: socket.socket, frame: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(struct.pack(">i", len(frame)) + frame)
