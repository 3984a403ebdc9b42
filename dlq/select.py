"""Which dead letters an action takes: the `--where` language and records picked by hand (pure).

An expression is ``FIELD OP VALUE``; several expressions must all hold.

- FIELD: ``error_class``, ``error_message``, ``key``, ``original_topic``,
  ``original_group``, ``header.NAME`` (header names match case-insensitively,
  the last value wins, as `Record.header`) or ``value.PATH``: a dotted path
  into the decoded payload (JSON, or Avro / Protobuf / JSON Schema with a
  Schema Registry), e.g. ``value.order.orderId=ord_1``; a scalar there is
  compared as text (JSON spelling for numbers, booleans and null), a missing
  path is an empty field.
- OP: ``=`` equal (exact, case-sensitive), ``~`` contains (case-insensitive),
  ``!=`` and ``!~`` their negations.
- VALUE: the rest of the expression, optionally in single or double quotes.
  ``FIELD=`` (empty) matches a missing or empty field, so
  ``original_topic!=`` selects records that do say where they came from.

Values are compared as text: keys and headers that are printable UTF-8 as
that text, anything else as ``0x`` + hex (exactly what `dlq show` prints), so
a binary key can still be matched.

The TUI's filter line is the same language (`parse_filter` splits it into
expressions, no quotes needed); records ticked by hand are one more kind of
`Condition`, `PickedRecords` (`picked_selector`), so a redrive of them is an
ordinary selection with its own progress group.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from collectors.errors import InvalidValue
from collectors.snapshots import Record
from tracing.deadletter import DeadLetterEnvelope
from tracing.frames import NOT_DECODED, Payload
from tracing.payload import at_path

FIELDS = ("error_class", "error_message", "key", "original_topic", "original_group")
_HEADER = "header."
_VALUE = "value."
_OPS = ("!~", "!=", "~", "=")


def display_text(value: bytes | None) -> str | None:
    """Bytes as operators see them: printable UTF-8 as text, anything else as 0x-hex.

    `dlq show` prints keys and headers this way and `--where` matches on the
    same text, so what is on screen can be typed into a selection.
    """
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + value.hex()
    if any(not ch.isprintable() and ch not in "\n\t\r" for ch in text):
        return "0x" + value.hex()
    return text



class Condition(ABC):
    """One thing a dead letter must satisfy to be selected; a `Selector` holds several.

    `field` says what the condition reads: an envelope field (`FIELDS`), `key`,
    `header.NAME`, `value.PATH`, or `position` for records picked by hand. The
    envelope and the decoded payload are passed only when some condition reads
    them (`Selector.needs_envelope`, `needs_payload`): they cost a decode.
    """

    field: str

    @abstractmethod
    def matches(self, record: Record, envelope: DeadLetterEnvelope | None,
                payload: Payload | None = None) -> bool: ...

    @abstractmethod
    def __str__(self) -> str: ...

    @property
    def reads_envelope(self) -> bool:
        return self.field in FIELDS and self.field != "key"

    @property
    def reads_payload(self) -> bool:
        return self.field.startswith(_VALUE)


@dataclass(frozen=True)
class FieldCondition(Condition):
    """``FIELD OP VALUE`` as typed after `--where` or in the TUI's filter line."""

    field: str
    op: str
    value: str

    def field_value(self, record: Record, envelope: DeadLetterEnvelope | None,
                    payload: Payload | None = None) -> str | None:
        if self.field == "key":
            return display_text(record.key)
        if self.field.startswith(_HEADER):
            return display_text(record.header(self.field[len(_HEADER):]))
        if self.field.startswith(_VALUE):
            return _value_text(payload, self.field[len(_VALUE):])
        return None if envelope is None else getattr(envelope, self.field)

    def matches(self, record: Record, envelope: DeadLetterEnvelope | None,
                payload: Payload | None = None) -> bool:
        """`envelope` may be None when no condition reads it (see `needs_envelope`),
        `payload` when none reads the value (see `needs_payload`)."""
        actual = self.field_value(record, envelope, payload)
        if self.op in ("=", "!="):
            hit = (actual or "") == self.value if self.value == "" else actual == self.value
        else:
            hit = actual is not None and self.value.lower() in actual.lower()
        return hit if self.op in ("=", "~") else not hit

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


@dataclass(frozen=True)
class PickedRecords(Condition):
    """The records the operator ticked, by (partition, offset).

    A redrive of this selection moves exactly the snapshot the operator saw,
    nothing that arrived since; it has a progress group of its own (see
    `dlq.redrive.default_group`).
    """

    picked: frozenset[tuple[int, int]]
    field: str = "position"

    def matches(self, record: Record, envelope: DeadLetterEnvelope | None,
                payload: Payload | None = None) -> bool:
        return (record.partition, record.offset) in self.picked

    def __str__(self) -> str:
        shown = ", ".join(f"{p}@{o}" for p, o in sorted(self.picked)[:5])
        more = f" +{len(self.picked) - 5}" if len(self.picked) > 5 else ""
        return f"{len(self.picked)} picked records ({shown}{more})"


@dataclass(frozen=True)
class Selector:
    """All conditions must hold; no conditions selects everything.

    `envelope` is None unless some condition reads an envelope field, `payload`
    None unless one reads the decoded value.
    """

    conditions: tuple[Condition, ...] = ()

    def matches(self, record: Record, envelope: DeadLetterEnvelope | None,
                payload: Payload | None = None) -> bool:
        return all(c.matches(record, envelope, payload) for c in self.conditions)

    @property
    def needs_envelope(self) -> bool:
        return any(c.reads_envelope for c in self.conditions)

    @property
    def needs_payload(self) -> bool:
        """Whether a condition reads the decoded value (`value.PATH`)."""
        return any(c.reads_payload for c in self.conditions)

    def describe(self) -> str:
        return " and ".join(str(c) for c in self.conditions) or "all records"


def picked_selector(picked: frozenset[tuple[int, int]]) -> Selector:
    """The selection of the records ticked by position."""
    return Selector((PickedRecords(frozenset(picked)),))


def parse_condition(expr: str) -> FieldCondition:
    """One ``FIELD OP VALUE`` expression, or an `InvalidValue` (field `where`) saying why not."""
    positions = [(expr.find(op), -len(op), op) for op in _OPS if op in expr]
    if not positions:
        raise InvalidValue(
            "where", f"{expr!r}: expected FIELD=VALUE or FIELD~TEXT (also != and !~)")
    index, _, op = min(positions)
    name = expr[:index].strip()
    rest = expr[index + len(op):]
    if rest[:1] in ("=", "~"):
        typed = op + rest[:1]
        raise InvalidValue(
            "where", f"{expr!r}: unknown operator {typed!r} (operators: = equal, ~ contains, "
            "!= and !~ their negations; quote a value that starts with = or ~)")
    value = rest.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if name.startswith(_HEADER):
        if not name[len(_HEADER):]:
            raise InvalidValue("where", f"{expr!r}: header.NAME needs a header name")
    elif name.startswith(_VALUE):
        path = name[len(_VALUE):]
        if not path or any(not part for part in path.split(".")):
            raise InvalidValue("where", f"{expr!r}: value.PATH needs a dotted path "
                             "(e.g. value.order.orderId)")
    elif name not in FIELDS:
        known = ", ".join((*FIELDS, "header.NAME", "value.PATH"))
        raise InvalidValue("where", f"{expr!r}: unknown field {name!r} (fields: {known})")
    if op in ("~", "!~") and not value:
        raise InvalidValue("where", f"{expr!r}: {op} needs some text to look for")
    return FieldCondition(name, op, value)


def _value_text(payload: Payload | None, path: str) -> str | None:
    """The text at `path` of a decoded payload (None: not decoded, or no such path)."""
    if payload is None or payload.document is NOT_DECODED:
        return None
    found = at_path(payload.document, path)
    if found is None:
        return None
    if isinstance(found, str):
        return found
    return json.dumps(found, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def parse_where(exprs: Iterable[str]) -> Selector:
    return Selector(tuple(parse_condition(e) for e in exprs))


_WHERE_START = re.compile(
    r"^(?:" + "|".join(FIELDS) + r"|header\.[^\s=~!]+|value\.[^\s=~!]+)\s*(?:!=|!~|=|~)",
    re.IGNORECASE)


def parse_filter(text: str) -> list[str]:
    """A filter line (the TUI's) as `--where` expressions.

    `error_class~Timeout key~ord-1` is two conditions; a word that does not
    start a new condition belongs to the previous value, so
    `error_message~did not answer` needs no quotes. Raises `InvalidValue`.
    """
    exprs: list[str] = []
    for word in text.split():
        if _WHERE_START.match(word) or not exprs:
            exprs.append(word)
        else:
            exprs[-1] += " " + word
    parse_where(exprs)  # validate now: one clear line for a typo
    return exprs
