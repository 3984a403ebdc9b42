"""A TCP fault proxy on loopback: pass traffic, blackhole it, cut it, or slow it down.

Clients and the broker's advertised listener point at the proxy's port, so
every Kafka connection (bootstrap and the broker address from metadata)
goes through it. Faults, switchable at any time:

- `blackhole()`: new connections are accepted and never answered; open ones
  stop moving bytes in both directions, as a network partition or a hung
  broker looks to a client. Bytes are held, not dropped (TCP would retransmit
  them), so after `heal()` every stream resumes intact and connections
  accepted during the blackhole are connected to the broker then.
- `cut()`: close every open connection now (RST-like for the client); new
  ones still pass unless another fault is set.
- `delay(seconds)`: each chunk is held that long before it is forwarded.
- `heal()`: back to passing traffic, without delay.

Threads, not asyncio: the tests drive it from synchronous code and Textual's
loop alike.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    dead: bool = False

    def close(self) -> None:
        self.dead = True
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to `target_port`; use as a context manager."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._mode = "pass"
        self._healed = threading.Event()
        self._healed.set()
        self._delay = 0.0
        self._closed = False
        self.accepted = 0
        #: bytes passed from the broker to clients (tests wait on it: "a read is going on")
        self.forwarded = 0
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy",
                                        daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    # -- faults --------------------------------------------------------------

    def blackhole(self) -> None:
        self._mode = "blackhole"
        self._healed.clear()

    def heal(self) -> None:
        self._mode = "pass"
        self._delay = 0.0
        self._healed.set()

    def delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def cut(self) -> int:
        """Close every open connection; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()
        return len(pairs)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed = True
        self._healed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        self._thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the work ------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, None)
            self._track(pair)
            threading.Thread(target=self._connect, args=(pair,), daemon=True).start()

    def _track(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if not p.dead]
            self._pairs.append(pair)

    def _connect(self, pair: _Pair) -> None:
        """Connect a client to the broker, once no blackhole holds it back."""
        self._healed.wait()
        if pair.dead or self._closed:
            pair.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            pair.close()  # the broker is down: the client sees its connection closed
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.upstream = upstream
        if pair.dead:  # cut while connecting
            pair.close()
            return
        threading.Thread(target=self._pump, args=(pair, upstream, pair.client),
                         daemon=True).start()
        self._pump(pair, pair.client, upstream)

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not pair.dead:
                data = src.recv(65536)
                if not data:
                    break
                self._healed.wait()  # a blackhole holds the bytes (and so the stream)
                if self._delay:
                    time.sleep(self._delay)
                if pair.dead:
                    break
                dst.sendall(data)
                if src is pair.upstream:
                    self.forwarded += len(data)
        except OSError:
            pass
        pair.close()
