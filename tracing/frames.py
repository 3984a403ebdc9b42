"""Decoded payloads: JSON, text, binary, and Confluent Schema Registry frames.

Most production Kafka payloads are Schema Registry frames: a magic byte 0, a
4-byte big-endian schema id, then Avro, Protobuf (after a list of zigzag
varint message indexes) or JSON Schema data. Newer clients may instead put
the schema GUID in a `__value_schema_id` / `__key_schema_id` header (magic
byte 1) and leave the payload bare. Both are decoded here with
confluent-kafka's own deserializers (`AvroDeserializer`,
`ProtobufDeserializer`, `JSONDeserializer`); nothing is hand-decoded.

`PayloadDecoder.decode` never raises: a frame whose schema cannot be had
(no registry configured, registry down, unknown id, truncated frame, a
payload that does not match its schema) comes back raw with a one-line
`note` saying why, and the command goes on.

Protobuf needs a message class: it is built once per (schema id, message
indexes) from the registered file descriptor, with the deserializer's own
schema parsing, and handed to `ProtobufDeserializer`.

confluent-kafka's schema_registry package is imported on first use only (it
takes most of a second): commands that meet no registry frame never load it.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka.serialization import MessageField, SerializationContext

from collectors.logs import get_logger
from collectors.redact import scrub
from collectors.registry import RegistryClient, RegistryConfig, RegistryError

if TYPE_CHECKING:
    from collectors.registry import CachedRegistryClient
from collectors.untrusted import display
from tracing.payload import MAX_JSON_BYTES, NOT_JSON, parse_json

NOT_DECODED = object()

#: Formats of `Payload.format` (docs/contracts.md `value_format`).
JSON, AVRO, PROTOBUF, JSON_SCHEMA, TEXT, BINARY, NULL = (
    "json", "avro", "protobuf", "json-schema", "text", "binary", "null")
REGISTRY_FORMATS = frozenset({AVRO, PROTOBUF, JSON_SCHEMA})
_FORMAT_OF_TYPE = {"AVRO": AVRO, "PROTOBUF": PROTOBUF, "JSON": JSON_SCHEMA}
#: The headers the confluent-kafka serializers write a schema GUID into.
KEY_SCHEMA_HEADER = "__key_schema_id"
VALUE_SCHEMA_HEADER = "__value_schema_id"
#: Bytes of a raw value shown (as hex) when it cannot be decoded.
MAX_RAW_BYTES = 4096

_log = get_logger("trace.frames")


@dataclass(frozen=True)
class Payload:
    """One key or value as lagdeck shows it.

    `value` is a JSON-able document for `json` and the registry formats,
    text for `text`, `0x`-hex (cut at 4 KB) for `binary`, None for `null`.
    """

    value: Any
    format: str
    schema_id: int | str | None = None
    note: str | None = None
    #: Avro / Protobuf record name (short), JSON Schema title: an event-type fallback
    record_name: str | None = None

    @property
    def document(self) -> Any:
        """The decoded document ids and paths are read from (`NOT_DECODED` if none)."""
        if self.format == JSON or self.format in REGISTRY_FORMATS:
            return self.value
        return NOT_DECODED

    def to_json(self, prefix: str = "value") -> dict[str, Any]:
        """`value`, `value_format` and, for registry frames, `schema_id` / `value_note`."""
        out: dict[str, Any] = {prefix: self.value, f"{prefix}_format": self.format}
        if self.schema_id is not None:
            out["schema_id"] = self.schema_id
        if self.note is not None:
            out[f"{prefix}_note"] = self.note
        return out

    def text(self, limit: int = 2000) -> str:
        """One line: the document as compact JSON, or the text / hex."""
        if self.value is None:
            return "(null)"
        if isinstance(self.value, str) and self.format != JSON:
            shown = self.value
        else:
            shown = json.dumps(self.value, ensure_ascii=False, separators=(",", ":"))
        return shown if len(shown) <= limit else shown[:limit] + "…"


@dataclass(frozen=True)
class Frame:
    """Where a record says its schema is: an id in the payload prefix, or a GUID header."""

    schema_id: int | None = None
    guid: str | None = None
    #: a frame that is not usable, and why (truncated, wrong magic byte)
    problem: str | None = None

    @property
    def ref(self) -> int | str | None:
        return self.schema_id if self.schema_id is not None else self.guid


def find_frame(data: bytes, schema_header: bytes | None = None) -> Frame | None:
    """The Schema Registry frame of `data`, or None when it is not one (pure).

    A value starting with byte 0 is a frame (no JSON, text or UTF-8 starts
    with NUL); one shorter than the 5-byte header is a truncated frame.
    """
    if schema_header is not None:
        if len(schema_header) >= 17 and schema_header[0] == 1:
            return Frame(guid=str(uuid.UUID(bytes=bytes(schema_header[1:17]))))
        if len(schema_header) >= 5 and schema_header[0] == 0:
            return Frame(schema_id=int.from_bytes(schema_header[1:5], "big"))
        magic = f"0x{schema_header[0]:02x}" if schema_header else "none"
        return Frame(problem=f"schema id header has wrong magic byte {magic} "
                             f"or length {len(schema_header)}")
    if not data or data[0] != 0:
        return None
    if len(data) < 5:
        return Frame(problem=f"truncated Schema Registry frame ({len(data)} bytes; "
                             "the header alone is 5)")
    return Frame(schema_id=int.from_bytes(data[1:5], "big"))


def plain(data: bytes | None) -> Payload:
    """A payload that is not a registry frame: JSON, text or binary."""
    if data is None:
        return Payload(None, NULL)
    doc = parse_json(data)
    if doc is not NOT_JSON:
        return Payload(doc, JSON)
    if len(data) <= MAX_JSON_BYTES:
        try:
            return Payload(data.decode("utf-8"), TEXT)
        except UnicodeDecodeError:
            pass
    else:
        return Payload(display(data, 2000), TEXT if _utf8_head(data) else BINARY)
    return Payload(raw_hex(data), BINARY)


def _utf8_head(data: bytes) -> bool:
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= 4090
    return True


def raw_hex(data: bytes) -> str:
    head = data[:MAX_RAW_BYTES].hex()
    return "0x" + head + (f"… ({len(data)} bytes)" if len(data) > MAX_RAW_BYTES else "")


def jsonable(value: Any, depth: int = 0) -> Any:
    """Avro / JSON Schema results as plain JSON values (bytes as hex, times as ISO)."""
    if depth > 64:
        return "…"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(value).hex()
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return str(value)


def _numeric_names_avro(schema: Any, out: set[str], depth: int = 0) -> None:
    """Names of the Avro record fields anywhere in `schema` whose type can be a number."""
    if depth > 32:
        return
    if isinstance(schema, list):
        for branch in schema:
            _numeric_names_avro(branch, out, depth + 1)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            for f in schema.get("fields", []):
                if isinstance(f, dict):
                    if _is_numeric_avro(f.get("type")):
                        out.add(str(f.get("name")))
                    _numeric_names_avro(f.get("type"), out, depth + 1)
        elif kind == "array":
            _numeric_names_avro(schema.get("items"), out, depth + 1)
        elif kind == "map":
            _numeric_names_avro(schema.get("values"), out, depth + 1)


def _is_numeric_avro(kind: Any) -> bool:
    if isinstance(kind, str):
        return kind in ("int", "long", "float", "double")
    if isinstance(kind, list):
        return any(_is_numeric_avro(k) for k in kind)
    if isinstance(kind, dict):
        return kind.get("type") in ("int", "long", "float", "double") or (
            kind.get("type") == "array" and _is_numeric_avro(kind.get("items")))
    return False


_PROTO_NUMBERS = {1, 2, 3, 4, 5, 6}  # CPPTYPE_INT32 .. CPPTYPE_FLOAT


def _numeric_names_proto(desc: Any, out: set[str], seen: set[str]) -> None:
    if desc.full_name in seen:
        return
    seen.add(desc.full_name)
    for f in desc.fields:
        if f.cpp_type in _PROTO_NUMBERS:
            out.add(f.name)
            out.add(f.camelcase_name)
        if f.message_type is not None:
            _numeric_names_proto(f.message_type, out, seen)


@dataclass(frozen=True)
class _Reader:
    """How to decode frames of one schema."""

    format: str
    deserializer: Any
    record_name: str | None
    #: record field names of a numeric type (ids there are not spelled out in the bytes)
    numeric: frozenset[str]


def _no_subject(ctx: Any, record_name: Any) -> None:
    """Decode with the writer's schema only: no subject lookups, no latest version, no rules."""
    return None


_DESER_CONF = {"subject.name.strategy": _no_subject}


class PayloadDecoder:
    """Keys and values into `Payload`s, with one registry client per decoder (or none).

    Readers are cached per schema (id or GUID, and Protobuf message
    indexes); the client caches the schemas themselves, on disk too.
    """

    def __init__(self, registry: RegistryConfig | CachedRegistryClient | None) -> None:
        if isinstance(registry, RegistryConfig):
            registry = RegistryClient(registry)
        self.client: CachedRegistryClient | None = registry
        self._readers: dict[tuple, _Reader | str] = {}
        self._proto_probe: Any = None

    @property
    def configured(self) -> bool:
        return self.client is not None

    @property
    def down(self) -> str | None:
        return None if self.client is None else self.client.down

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # closing an HTTP session must never fail a command
                _log.debug("closing the registry client", exc_info=True)

    # -- decoding ----------------------------------------------------------------------

    def decode(self, data: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None = None,
               topic: str = "", is_key: bool = False, raw: bool = False) -> Payload:
        """The payload of one key or value; never raises on record content.

        `raw`: keep the deserializer's objects (bytes, datetimes) instead of
        making them JSON-able, for callers that only read ids and names.
        """
        try:
            return self._decode(data, headers, topic, is_key, raw)
        except Exception as exc:  # a library bug must not take the command down
            _log.info("decoding a payload failed", exc_info=True)
            return Payload(raw_hex(data) if data else data, BINARY,
                           note=f"could not be decoded ({type(exc).__name__})")

    def _decode(self, data: bytes | None, headers, topic: str, is_key: bool,
                raw_objects: bool = False) -> Payload:
        if data is None:
            return Payload(None, NULL)
        header = schema_header(headers, is_key)
        frame = find_frame(data, header)
        if frame is None:
            payload = plain(data)
            if payload.format == BINARY and self.client is not None and data:
                return Payload(payload.value, BINARY,
                               note=f"not a Schema Registry frame (magic byte 0x{data[0]:02x}, "
                                    "expected 0x00)")
            return payload
        raw = raw_hex(data)
        if frame.problem is not None:
            return Payload(raw, BINARY, note=frame.problem)
        ref = frame.ref
        if self.client is None:
            return Payload(raw, BINARY, schema_id=ref,
                           note=f"Schema Registry frame (schema {ref}): give --schema-registry "
                                "URL or [schema_registry] url to decode it")
        reader = self.reader(frame, header if header is not None else data)
        if isinstance(reader, str):
            return Payload(raw, BINARY, schema_id=ref, note=scrub(reader))
        ctx = SerializationContext(topic, MessageField.KEY if is_key else MessageField.VALUE,
                                   list(headers) if headers else None)
        try:
            obj = reader.deserializer(data, ctx)
        except RegistryError as exc:
            return Payload(raw, BINARY, schema_id=ref, note=scrub(str(exc)))
        except Exception as exc:  # SerializationError, EOFError, ValueError, ...
            detail = scrub(" ".join(str(exc).split()))[:160] or type(exc).__name__
            return Payload(raw, BINARY, schema_id=ref,
                           note=f"does not match schema {ref} ({reader.format}): {detail}")
        if reader.format == PROTOBUF:
            from google.protobuf import json_format

            value = json_format.MessageToDict(obj, preserving_proto_field_name=True)
        elif raw_objects:
            value = obj
        else:
            value = jsonable(obj)
        return Payload(value, reader.format, schema_id=ref, record_name=reader.record_name)

    def reader(self, frame: Frame, framed: bytes) -> _Reader | str:
        """The cached reader of a frame's schema, or why there is none (a note).

        `framed` holds the schema id: the value, or the schema header.
        """
        key: tuple = (frame.ref,)
        found = self._readers.get(key)
        if isinstance(found, _Reader) and found.format == PROTOBUF:
            indexes = _message_indexes(framed)
            if indexes is None:
                return "truncated Protobuf message indexes"
            key = (frame.ref, indexes)
            found = self._readers.get(key)
        if found is not None:
            return found
        reader = self._build(frame)
        if isinstance(reader, _Reader) and reader.format == PROTOBUF:
            self._readers[key] = reader  # marks the schema as Protobuf
            indexes = _message_indexes(framed)
            key = (frame.ref, indexes)
            reader = self._build_proto(frame, indexes)
        if isinstance(reader, _Reader) or not self.down:
            self._readers[key if isinstance(reader, _Reader) else (frame.ref,)] = reader
        return reader

    def _schema(self, frame: Frame, fmt: str | None = None):
        assert self.client is not None
        if frame.schema_id is not None:
            return self.client.get_schema(frame.schema_id, None, fmt)
        return self.client.get_schema_by_guid(str(frame.guid), fmt)

    def _build(self, frame: Frame) -> _Reader | str:
        assert self.client is not None
        try:
            schema = self._schema(frame)
        except RegistryError as exc:
            return str(exc)
        from confluent_kafka.schema_registry import SchemaRegistryError
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        kind = (schema.schema_type or "AVRO").upper()
        fmt = _FORMAT_OF_TYPE.get(kind)
        if fmt is None:
            return f"schema {frame.ref} has an unknown type {kind!r}"
        try:
            if fmt == AVRO:
                parsed = json.loads(schema.schema_str or "null")
                numeric: set[str] = set()
                _numeric_names_avro(parsed, numeric)
                if _is_numeric_avro(parsed):
                    numeric.add("")  # the whole value is a number (a numeric key)
                name = parsed.get("name") if isinstance(parsed, dict) else None
                return _Reader(AVRO, AvroDeserializer(self.client, conf=dict(_DESER_CONF)),
                               str(name).rsplit(".", 1)[-1] if name else None,
                               frozenset(numeric))
            if fmt == JSON_SCHEMA:
                parsed = json.loads(schema.schema_str or "{}")
                title = parsed.get("title") if isinstance(parsed, dict) else None
                return _Reader(JSON_SCHEMA,
                               JSONDeserializer(None, schema_registry_client=self.client,
                                                conf=dict(_DESER_CONF)),
                               str(title) if isinstance(title, str) else None, frozenset())
            return _Reader(PROTOBUF, None, None, frozenset())  # per message: _build_proto
        except (ValueError, TypeError, AttributeError, SchemaRegistryError) as exc:
            return f"schema {frame.ref} cannot be used ({type(exc).__name__}: {exc})"[:200]

    def _build_proto(self, frame: Frame, indexes: tuple[int, ...] | None) -> _Reader | str:
        if indexes is None:
            return "truncated Protobuf message indexes"
        try:
            schema = self._schema(frame, "serialized")
        except RegistryError as exc:
            return str(exc)
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from google.protobuf.empty_pb2 import Empty
        from google.protobuf.message_factory import GetMessageClass

        try:
            if self._proto_probe is None:
                self._proto_probe = ProtobufDeserializer(Empty, dict(_DESER_CONF), self.client)
            probe = self._proto_probe
            # The deserializer's own schema parsing and message lookup by index path.
            fd_proto, pool = probe._get_parsed_schema(schema)
            file_desc = pool.FindFileByName(fd_proto.name)
            desc = probe._get_message_desc(pool, file_desc, list(indexes) or [0])
            numeric: set[str] = set()
            _numeric_names_proto(desc, numeric, set())
            deserializer = ProtobufDeserializer(GetMessageClass(desc), dict(_DESER_CONF),
                                                self.client)
        except RegistryError as exc:
            return str(exc)
        except Exception as exc:
            return (f"schema {frame.ref} (protobuf) has no message at index "
                    f"{list(indexes)}: {type(exc).__name__}: {exc}")[:200]
        return _Reader(PROTOBUF, deserializer, desc.name, frozenset(numeric))

    def prefix_info(self, prefix: bytes) -> tuple[str, frozenset[str]] | None:
        """(format, numeric field names) shared by every frame with this 5-byte prefix.

        For Protobuf the names depend on each record's message (see
        `numeric_fields`); None when the prefix is not a usable frame. Lets
        the prefilter judge a whole batch by its few distinct prefixes.
        """
        frame = find_frame(prefix)
        if frame is None or frame.problem is not None or self.client is None:
            return None
        found = self._readers.get((frame.ref,))
        if found is None:
            found = self._build(frame)
            self._readers[(frame.ref,)] = found
        if isinstance(found, str):
            return None
        return found.format, found.numeric

    def numeric_fields(self, data: bytes | None, headers=None, is_key: bool = False
                       ) -> frozenset[str] | None:
        """Numeric field names of a frame's schema; None when unknown or not a frame.

        What the byte prefilter needs: numbers are varints in Avro and
        Protobuf, so an id held in a numeric field is not spelled out in the
        raw bytes (see `tracing.prefilter`).
        """
        if data is None or self.client is None:
            return None
        header = schema_header(headers, is_key)
        frame = find_frame(data, header)
        if frame is None or frame.problem is not None:
            return None
        reader = self.reader(frame, header if header is not None else data)
        return reader.numeric if isinstance(reader, _Reader) else None


def _message_indexes(framed: bytes) -> tuple[int, ...] | None:
    """Protobuf message indexes after the schema id (zigzag varints, count first).

    `framed` is the value, or the schema header when the id travels in one.
    Read with the library's own `SchemaId` parser; `[0]` is written as a
    single 0 (the count) for the first message.
    """
    from confluent_kafka.schema_registry.common.serde import SchemaId

    sid = SchemaId("PROTOBUF")
    try:
        sid.from_bytes(io.BytesIO(framed))
    except Exception:
        return None
    return tuple(sid.message_indexes or ())


def schema_header(headers: Sequence[tuple[str, bytes | None]] | None, is_key: bool
                  ) -> bytes | None:
    """The schema GUID header the confluent-kafka serializers may write, if present."""
    if not headers:
        return None
    wanted = KEY_SCHEMA_HEADER if is_key else VALUE_SCHEMA_HEADER
    for name, value in headers:
        if name == wanted and value is not None:
            return value
    return None
