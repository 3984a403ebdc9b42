"""Dead-letter envelopes: why a record was dead-lettered and where it came from.

Every framework writes the same facts under different header names and
encodings. `decode_envelope` folds them into one `DeadLetterEnvelope` so the
order timeline (tracing/) and the DLQ browser and redrive (dlq/) agree on what
a dead letter says. It is a pure function over a `Record`; it never raises on
header content: a value with the wrong byte length or bad UTF-8 is described
in `problems` and the raw headers are kept for display.

Layouts, checked in this order (the first that matches wins):

- ``spring``: Spring Kafka's `DeadLetterPublishingRecoverer` (`KafkaHeaders.DLT_*`):
  ``kafka_dlt-original-topic`` (UTF-8), ``-original-partition`` (4-byte big-endian
  int), ``-original-offset`` and ``-original-timestamp`` (8-byte big-endian
  longs), ``-original-consumer-group``, ``kafka_dlt-exception-fqcn``,
  ``-exception-cause-fqcn``, ``-exception-message``, ``-exception-stacktrace``.
- ``spring-retry``: the same facts under the non-DLT names Spring uses when it
  forwards to another topic (``kafka_original-*``, ``kafka_exception-*``) and the
  retry-topic attempt counter ``retry_topic-attempts``.
- ``connect``: Kafka Connect's ``errors.deadletterqueue.context.headers.enable``
  headers ``__connect.errors.*``, all UTF-8 strings.
- ``plain``: common hand-rolled conventions (``error-message``, ``error-class``,
  ``retry-count``, ``original-topic``, ...), matched case-insensitively with
  ``_``/``.`` treated as ``-`` and an optional ``x-`` prefix.
- ``none``: not a dead letter as far as the headers tell.

Spring appends a new set of ``*-original-*`` headers at every hop when
``appendOriginalHeaders`` is on, and keeps only the first set otherwise; in
both cases the *first* occurrence names where the record was born, so the
original-* facts take the first value. Exception facts and attempt counters
take the *last* value (the most recent failure).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from collectors.snapshots import Header, Record
from collectors.untrusted import as_text, display

#: Headers lagdeck adds when it redrives a dead letter (read back by loop protection).
REDRIVE_ID_HEADER = "lagdeck-redrive-id"
REDRIVEN_AT_HEADER = "lagdeck-redriven-at"
REDRIVE_COUNT_HEADER = "lagdeck-redrive-count"
REDRIVE_HEADERS = frozenset({REDRIVE_ID_HEADER, REDRIVEN_AT_HEADER, REDRIVE_COUNT_HEADER})

LAYOUTS = ("spring", "spring-retry", "connect", "plain", "none")

_SPRING_DLT = "kafka_dlt-"
_SPRING_FWD = "kafka_"
_RETRY_ATTEMPTS = "retry_topic-attempts"
_CONNECT = "__connect.errors."


@dataclass(frozen=True)
class DeadLetterInfo:
    """Why a record on a dead-letter topic was dead-lettered, and where it came from.

    The facts every face shows and the correlation index keeps (as a row of
    marshal-friendly primitives, `row`); `DeadLetterEnvelope` adds what only
    the DLQ browser and redrive need. A timeline holds the summary made by
    `from_envelope`, whose error message is cut to a one-line preview.
    """

    layout: str
    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_group: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    attempts: int | None = None
    problems: tuple[str, ...] = ()

    @classmethod
    def from_envelope(cls, env: DeadLetterInfo) -> DeadLetterInfo:
        """The shared facts alone, the error message as a preview of at most 300 characters."""
        facts = env.row()
        message = env.error_message
        if message is not None:
            shown = display(message.encode("utf-8", "replace"), 300)
            facts = (*facts[:_MESSAGE], shown, *facts[_MESSAGE + 1:])
        return DeadLetterInfo(*facts)

    @property
    def origin(self) -> tuple[str, int, int] | None:
        if self.original_topic is None or self.original_partition is None \
                or self.original_offset is None:
            return None
        return (self.original_topic, self.original_partition, self.original_offset)

    def row(self) -> tuple:
        """The facts in field order (`DeadLetterInfo(*row)` gives them back)."""
        return _info_row(self)

    def to_json(self) -> dict[str, Any]:
        """The `dead_letter` object of an event in `lagdeck trace --json` (docs/contracts.md)."""
        return {**dict(zip(_INFO_FIELDS, self.row(), strict=True)),
                "problems": list(self.problems)}


_INFO_FIELDS = tuple(f.name for f in fields(DeadLetterInfo))
_info_row = attrgetter(*_INFO_FIELDS)
_MESSAGE = _INFO_FIELDS.index("error_message")


@dataclass(frozen=True, kw_only=True)
class DeadLetterEnvelope(DeadLetterInfo):
    """What a dead letter's headers say, in one model whatever wrote it.

    Every fact is None when absent or undecodable; `problems` says which
    values were malformed and how. `headers` are the record's raw headers,
    kept so an unknown layout can still be shown. `details` holds
    layout-specific extras (Connect connector/task/stage, Spring cause class,
    timestamp type) as (name, text) pairs. `redrive_count` is how many times
    lagdeck has already redriven this record (from `lagdeck-redrive-count`).
    """

    is_dead_letter: bool
    original_timestamp_ms: int | None = None
    stack_trace: str | None = None
    headers: tuple[Header, ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    redrive_count: int | None = None
    redrive_id: str | None = None

    def detail(self, name: str) -> str | None:
        return next((v for k, v in self.details if k == name), None)


class _Headers:
    """First/last lookups over raw headers, collecting problems as values are decoded."""

    def __init__(self, pairs: Iterable[tuple[str, bytes | None]]) -> None:
        self.problems: list[str] = []
        self.keys: list[str] = []
        self._by_name: dict[str, list[bytes | None]] = {}
        for key, value in pairs:
            self.keys.append(key)
            self._by_name.setdefault(key.lower(), []).append(value)

    def has_prefix(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self._by_name)

    def raw(self, name: str, *, first: bool = False) -> tuple[str, bytes | None] | None:
        values = self._by_name.get(name.lower())
        if not values:
            return None
        return name, values[0] if first else values[-1]

    def text(self, name: str, *, first: bool = False) -> str | None:
        found = self.raw(name, first=first)
        return None if found is None else _text(*found, self.problems)

    def binary_int(self, name: str, size: int, *, first: bool = False) -> int | None:
        """A big-endian signed int of exactly `size` bytes (Java int/long)."""
        found = self.raw(name, first=first)
        return None if found is None else _binary_int(*found, size, self.problems)

    def varint(self, name: str) -> int | None:
        """Spring's retry attempt counter: a 4-byte int (older) or BigInteger bytes (newer)."""
        found = self.raw(name)
        if found is None:
            return None
        _, value = found
        if value is None:
            self.problems.append(f"{name}: null value")
            return None
        if len(value) == 4:
            return struct.unpack(">i", value)[0]
        if 1 <= len(value) <= 8:
            return int.from_bytes(value, "big", signed=True)
        self.problems.append(f"{name}: expected 1-8 bytes, got {len(value)} ({_hex(value)})")
        return None

    def text_int(self, name: str, *, first: bool = False) -> int | None:
        """An integer written as text; binary 4/8-byte values are accepted as well."""
        found = self.raw(name, first=first)
        return None if found is None else _text_int(*found, self.problems)


def _text(name: str, value: bytes | None, problems: list[str]) -> str | None:
    if value is None:
        problems.append(f"{name}: null value")
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{name}: invalid UTF-8 at byte {exc.start}")
        return as_text(value)


def _binary_int(name: str, value: bytes | None, size: int, problems: list[str]) -> int | None:
    if value is None:
        problems.append(f"{name}: null value")
        return None
    if len(value) == size:
        return struct.unpack(">i" if size == 4 else ">q", value)[0]
    kind = "int" if size == 4 else "long"
    if value.isdigit() or (value[:1] == b"-" and value[1:].isdigit()):
        problems.append(f"{name}: text {value.decode('ascii')!r} instead of a {size}-byte {kind}")
        return int(value)
    problems.append(f"{name}: expected a {size}-byte big-endian {kind}, got {len(value)} bytes "
                    f"({_hex(value)})")
    return None


def _text_int(name: str, value: bytes | None, problems: list[str]) -> int | None:
    if value is None:
        problems.append(f"{name}: null value")
        return None
    stripped = value.strip()
    if stripped.isdigit() or (stripped[:1] == b"-" and stripped[1:].isdigit()):
        return int(stripped)
    if len(value) in (4, 8):
        return struct.unpack(">i" if len(value) == 4 else ">q", value)[0]
    problems.append(f"{name}: not an integer ({_show(value)})")
    return None


def _hex(value: bytes, limit: int = 16) -> str:
    shown = value[:limit].hex()
    return shown + ("..." if len(value) > limit else "")


def _show(value: bytes, limit: int = 40) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + _hex(value)
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _layout(h: _Headers) -> str:
    """Which convention the headers follow (plain is only a candidate until checked)."""
    if h.has_prefix(_SPRING_DLT):
        return "spring"
    if h.has_prefix(_SPRING_FWD + "original-") or h.has_prefix(_SPRING_FWD + "exception-") \
            or h.raw(_RETRY_ATTEMPTS) is not None:
        return "spring-retry"
    if h.has_prefix(_CONNECT):
        return "connect"
    return "plain"


def _spring_prefixes(layout: str) -> tuple[str, str]:
    base = _SPRING_DLT if layout == "spring" else _SPRING_FWD
    return base + "original-", base + "exception-"


class Route(NamedTuple):
    """Only what a redrive needs to route one record; see `decode_route`."""

    original_topic: str | None
    original_partition: int | None
    redrive_count: int | None
    #: the headers already carry lagdeck-redrive-* headers (a redrive replaces them)
    has_redrive_headers: bool = False
    #: the raw `lagdeck-redrive-count` value when it is not a whole number >= 0 (how often
    #: the record was redriven is then unknown, and loop protection cannot judge it)
    malformed_count: bytes | None = None


class _RoutePlan(NamedTuple):
    """Where, in headers with a given key sequence, the routing facts are (indices or -1)."""

    topic: int
    partition: int
    partition_binary: bool
    count_at: int
    has_redrive_headers: bool


def _index(keys: tuple[str, ...], name: str, first: bool) -> int:
    lowered = name.lower()
    hits = [i for i, k in enumerate(keys) if k.lower() == lowered]
    return -1 if not hits else hits[0] if first else hits[-1]


@functools.lru_cache(maxsize=1024)
def _route_plan(keys: tuple[str, ...]) -> _RoutePlan:
    # Same rules as decode_envelope: decide the layout from the key sequence alone.
    h = _Headers((k, None) for k in keys)
    layout = _layout(h)
    count = _index(keys, REDRIVE_COUNT_HEADER, first=False)
    own = any(k.lower() in REDRIVE_HEADERS for k in keys)
    if layout in ("spring", "spring-retry"):
        original, _ = _spring_prefixes(layout)
        return _RoutePlan(_index(keys, original + "topic", True),
                          _index(keys, original + "partition", True), True, count, own)
    if layout == "connect":
        return _RoutePlan(_index(keys, _CONNECT + "topic", False),
                          _index(keys, _CONNECT + "partition", False), False, count, own)
    chosen = _plain_choice(h) or {}
    topic = chosen.get("original_topic")
    partition = chosen.get("original_partition")
    return _RoutePlan(-1 if topic is None else _index(keys, topic, False),
                      -1 if partition is None else _index(keys, partition, False), False,
                      count, own)


def decode_route(headers: Sequence[tuple[str, bytes | None]] | None) -> Route:
    """The original topic/partition and lagdeck redrive count of raw `(key, value)` headers.

    A fast path for bulk redrive: the same rules (and the same values) as
    `decode_envelope`, without decoding error texts or building a `Record`;
    where the facts sit is worked out once per distinct header-name sequence.
    Never raises on header content.
    """
    if not headers:
        return _NO_ROUTE
    plan = _route_plan(tuple([k for k, _ in headers]))
    return _route_values(
        plan,
        None if plan.topic < 0 else headers[plan.topic][1],
        None if plan.partition < 0 else headers[plan.partition][1],
        None if plan.count_at < 0 else headers[plan.count_at][1],
    )


@functools.lru_cache(maxsize=4096)
def _route_values(plan: _RoutePlan, topic_raw: bytes | None, partition_raw: bytes | None,
                  count_raw: bytes | None) -> Route:
    # Dead letters of one burst share topic, partition and count: decode each combination once.
    problems: list[str] = []
    topic = partition = count = None
    if plan.topic >= 0:
        topic = _text("", topic_raw, problems)
    if plan.partition >= 0:
        partition = _binary_int("", partition_raw, 4, problems) if plan.partition_binary \
            else _text_int("", partition_raw, problems)
    malformed = None
    if plan.count_at >= 0:
        count, malformed = redrive_count(count_raw)
    return Route(topic, partition, count, plan.has_redrive_headers, malformed)


def redrive_count(raw: bytes | None) -> tuple[int | None, bytes | None]:
    """(count, None) for a `lagdeck-redrive-count` value, or (None, raw) when it is
    malformed: lagdeck writes a decimal count >= 0, and anything else (`-1`, `abc`,
    binary) means the count is unknown, never 0."""
    stripped = (raw or b"").strip()
    if stripped.isdigit() and stripped.isascii():
        return int(stripped), None
    return None, raw if raw is not None else b""


_NO_ROUTE = Route(None, None, None)


def decode_envelope(record: Record) -> DeadLetterEnvelope:
    """Decode the dead-letter headers of `record`; never raises on header content."""
    h = _Headers((x.key, x.value) for x in record.headers)
    layout = _layout(h)
    fields: dict | None
    if layout in ("spring", "spring-retry"):
        fields = _spring(h, *_spring_prefixes(layout))
    elif layout == "connect":
        fields = _connect(h)
    else:
        fields = _plain(h)
        layout = "plain" if fields is not None else "none"
    count_found = h.raw(REDRIVE_COUNT_HEADER)
    redrive_count_value = None
    if count_found is not None:
        redrive_count_value, bad = redrive_count(count_found[1])
        if bad is not None:
            h.problems.append(f"{REDRIVE_COUNT_HEADER}: not a count >= 0 ({_show(bad)}); "
                              "times redriven unknown")
    redrive_id = h.text(REDRIVE_ID_HEADER)
    details = tuple(fields.pop("details", ())) if fields else ()
    return DeadLetterEnvelope(
        is_dead_letter=layout != "none",
        layout=layout,
        problems=tuple(h.problems),
        headers=record.headers,
        details=details,
        redrive_count=redrive_count_value,
        redrive_id=redrive_id,
        **(fields or {}),
    )


def _spring(h: _Headers, original: str, exception: str) -> dict:
    details: list[tuple[str, str]] = []
    for name, key in (("timestamp_type", original + "timestamp-type"),
                      ("cause_class", exception + "cause-fqcn"),
                      ("key_error_class", _key_variant(exception) + "fqcn"),
                      ("key_error_message", _key_variant(exception) + "message")):
        value = h.text(key, first=key.startswith(original))
        if value is not None:
            details.append((name, value))
    attempts = h.varint(_RETRY_ATTEMPTS)
    if attempts is None:
        attempts = h.binary_int(_SPRING_FWD + "deliveryAttempt", 4)
    error_class = h.text(exception + "fqcn")
    error_message = h.text(exception + "message")
    stack_trace = h.text(exception + "stacktrace")
    if error_class is None:  # a key deserialization failure carries only the key-* set
        error_class = h.text(_key_variant(exception) + "fqcn")
        error_message = error_message or h.text(_key_variant(exception) + "message")
        stack_trace = stack_trace or h.text(_key_variant(exception) + "stacktrace")
    return {
        "original_topic": h.text(original + "topic", first=True),
        "original_partition": h.binary_int(original + "partition", 4, first=True),
        "original_offset": h.binary_int(original + "offset", 8, first=True),
        "original_timestamp_ms": h.binary_int(original + "timestamp", 8, first=True),
        "original_group": h.text(original + "consumer-group", first=True),
        "error_class": error_class,
        "error_message": error_message,
        "stack_trace": stack_trace,
        "attempts": attempts,
        "details": details,
    }


def _key_variant(exception_prefix: str) -> str:
    # kafka_dlt-exception- -> kafka_dlt-key-exception-; kafka_exception- -> kafka_key-exception-
    return exception_prefix.replace("exception-", "key-exception-")


def _connect(h: _Headers) -> dict:
    c = _CONNECT
    details = []
    for name, key in (("connector", "connector.name"), ("task_id", "task.id"),
                      ("stage", "stage"), ("class_name", "class.name")):
        value = h.text(c + key)
        if value is not None:
            details.append((name, value))
    connector = h.text(c + "connector.name")
    return {
        "original_topic": h.text(c + "topic"),
        "original_partition": h.text_int(c + "partition"),
        "original_offset": h.text_int(c + "offset"),
        # Sink connectors consume as "connect-<connector name>" unless overridden.
        "original_group": f"connect-{connector}" if connector else None,
        "error_class": h.text(c + "exception.class.name"),
        "error_message": h.text(c + "exception.message"),
        "stack_trace": h.text(c + "exception.stacktrace"),
        "details": details,
    }


#: Normalised plain header name -> envelope field. Order matters: the first present wins.
_PLAIN: dict[str, tuple[str, ...]] = {
    "original_topic": ("original-topic", "source-topic", "dlq-original-topic"),
    "original_partition": ("original-partition", "source-partition"),
    "original_offset": ("original-offset", "source-offset"),
    "original_timestamp_ms": ("original-timestamp", "source-timestamp"),
    "original_group": ("original-consumer-group", "original-group", "consumer-group"),
    "error_class": ("error-class", "exception-class", "exception-class-name", "error-type",
                    "exception-fqcn", "exception-type"),
    "error_message": ("error-message", "exception-message", "error-reason", "error"),
    "stack_trace": ("error-stacktrace", "error-stack-trace", "exception-stacktrace",
                    "stack-trace", "stacktrace"),
    "attempts": ("retry-count", "attempts", "attempt", "retries", "delivery-attempt",
                 "retry-attempts"),
}
#: A plain record is a dead letter only when one of these says so (a bare retry counter does not).
_PLAIN_MARKERS = ("original_topic", "error_class", "error_message")


def _normalise(name: str) -> str:
    n = name.lower().replace("_", "-").replace(".", "-")
    return n[2:] if n.startswith("x-") else n


def _plain_choice(h: _Headers) -> dict[str, str] | None:
    """Envelope field -> the header that supplies it, or None when not a plain dead letter."""
    names: dict[str, str] = {}
    for key in h.keys:
        names.setdefault(_normalise(key), key)
    chosen: dict[str, str] = {}
    for fld, cands in _PLAIN.items():
        for cand in cands:
            if cand in names:
                chosen[fld] = names[cand]
                break
    if not any(f in chosen for f in _PLAIN_MARKERS):
        return None
    return chosen


def _plain(h: _Headers) -> dict | None:
    chosen = _plain_choice(h)
    if chosen is None:
        return None
    out: dict = {"details": []}
    for fld, header in chosen.items():
        if fld in ("original_partition", "original_offset", "attempts"):
            out[fld] = h.text_int(header)
        elif fld == "original_timestamp_ms":
            out[fld] = _plain_timestamp(h, header)
        else:
            out[fld] = h.text(header)
    return out


def _plain_timestamp(h: _Headers, name: str) -> int | None:
    found = h.raw(name)
    if found is None or found[1] is None:
        return h.text_int(name)
    value = found[1].strip()
    if value.isdigit() or len(value) in (4, 8):
        return h.text_int(name)
    text = h.text(name)
    try:
        return int(datetime.fromisoformat(text or "").timestamp() * 1000)
    except ValueError:
        h.problems.append(f"{name}: not epoch milliseconds or ISO 8601 ({_show(value)})")
        return None
