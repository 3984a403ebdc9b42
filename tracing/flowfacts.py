"""What the flow map needs of each record, computed while the index is filled.

The flow of all orders (`tracing.flows`) groups a million events by order in a
second or two, so it cannot decode records again: the scanner stores, beside
each record's timeline row, one fixed-size fact of eight integers (see
`FACT_COLUMNS`), and the strings they stand for (order ids, keys, event
types) once each in a name table. Strings become 64-bit BLAKE2b hashes, 0
meaning "none": two different ids colliding among the few thousand of one
flow is a 2**-40 event, and the hashes survive across processes (unlike
`hash()`).

- order: the correlation header (the `[trace]` names), else the first order
  id found in the JSON payload (`order_id_paths`); 0 when neither.
- trace: the W3C/B3/Jaeger trace id; joins an event without an order id to
  its order at query time (as `lagdeck trace` does with one hop).
- key: the record key; the order id of last resort.
- event type, as the timeline shows it.
- dedup: what makes two records "the same event": an event-id header
  (CloudEvents `ce_id`, a message id; `event_id_headers`) when there is one,
  else the key and value bytes.
- kind: 0 an ordinary event, 1 a dead letter, 2 a redriven copy (a dead
  letter put back on its original topic: a retry, never a duplicate).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

from tracing.headers import MAX_ID_BYTES
from tracing.payload import MAX_JSON_BYTES, order_ids, parse_json
from tracing.settings import TraceSettings

#: Columns of one fact, in order (all int64).
FACT_COLUMNS = ("offset", "timestamp_ms", "order", "trace", "key", "event_type", "dedup", "kind")
NORMAL, DEAD_LETTER, REDRIVEN = 0, 1, 2
#: Name-cache entries kept by one decoder before it starts over (bounds memory).
MAX_CACHED = 200_000

Fact = tuple[int, int, int, int, int, int, int, int]


def h64(data: bytes) -> int:
    """A stable signed 64-bit hash; never 0 (0 means "none")."""
    value = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)
    return value or 1


def identity_hash(data: bytes) -> int:
    """A cheap 64-bit identity (CRC-32 and Adler-32 side by side), signed, never 0.

    Used per record for "is this the same event": compared only within one
    order's events at one step, where a chance collision is negligible;
    BLAKE2b costs twice as much on the scan's hot loop.
    """
    value = (zlib.crc32(data) << 32 | zlib.adler32(data)) - (1 << 63)
    return value or 1


def text_hash(text: str) -> int:
    """The hash a name is stored under (what `FlowFacts` computes for its bytes)."""
    return h64(text.encode("utf-8", "replace"))


class FlowFacts:
    """Computes the fact of each record and collects the names it has not reported yet."""

    def __init__(self, settings: TraceSettings) -> None:
        self.id_headers = frozenset(n.lower() for n in settings.event_id_headers)
        self.paths = settings.order_id_paths
        self._hashes: dict[bytes | str, int] = {}
        #: header name as written -> whether it carries an event id (names repeat)
        self._id_names: dict[str, bool] = {}
        #: hash -> text of names seen since the last `take_names`
        self.names: dict[int, str] = {}

    def _name(self, raw: bytes | str | None, keep: bool = True) -> int:
        if raw is None:
            return 0
        found = self._hashes.get(raw)
        if found is not None:
            return found
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        value = h64(data)
        if len(self._hashes) >= MAX_CACHED:
            self._hashes.clear()
        self._hashes[raw] = value
        if keep:
            self.names[value] = data.decode("utf-8", "replace")
        return value

    def take_names(self) -> dict[int, str]:
        names, self.names = self.names, {}
        return names

    def fact(self, topic: str, offset: int, timestamp_ms: int | None, key: bytes | None,
             value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None,
             row: tuple) -> Fact:
        """The fact of one record whose index row (`FastDecoder.decode`) is `row`."""
        etype, corr, trace, dead = row[3], row[4], row[5], row[7]
        order = corr
        if order is None and value and value[0] == 0 and len(row) > 8 and row[8]:
            order = row[8][0]  # a Schema Registry frame, decoded by the row's decoder
        elif order is None and value and len(value) <= MAX_JSON_BYTES and self.paths:
            found = order_ids(parse_json(value), self.paths)
            if found:
                order = found[0]
        event_id = None
        if headers and self.id_headers:
            id_names = self._id_names
            for name, raw in headers:
                is_id = id_names.get(name)
                if is_id is None:
                    is_id = name.lower() in self.id_headers
                    if len(id_names) < 10_000:  # a hostile topic cannot grow this unbounded
                        id_names[name] = is_id
                if is_id and raw:
                    event_id = raw
                    break
        if event_id is not None:
            dedup = identity_hash(b"id\x00" + event_id)
        else:
            k = b"\x00" if key is None else b"\x01" + len(key).to_bytes(4, "big") + key
            dedup = identity_hash(b"kv" + k + (b"\x00" if value is None else b"\x01" + value))
        kind = NORMAL
        if dead is not None:
            kind = REDRIVEN if dead[1] == topic else DEAD_LETTER
        k_id = None
        if key is not None:
            stripped = key.strip()
            if stripped and len(stripped) <= MAX_ID_BYTES:
                k_id = stripped
        return (offset, -1 if timestamp_ms is None else timestamp_ms,
                self._name(order), self._name(trace, keep=False),
                self._name(k_id), self._name(etype), dedup, kind)
