"""Ids and event types inside keys and JSON payloads.

Payloads are whatever producers wrote: JSON, Avro, protobuf, compressed
blobs, half a megabyte of text, invalid UTF-8. Ids are only taken from JSON
objects at configured dotted paths; everything else still gets a one-line,
printable preview without ever raising.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from collectors.untrusted import display
from tracing.headers import MAX_ID_BYTES, id_text

#: Payloads larger than this are not parsed for ids (shown truncated only).
MAX_JSON_BYTES = 1_000_000

_NOT_JSON = object()


def parse_json(value: bytes | None) -> Any:
    """The decoded JSON document, or `NOT_JSON` for anything that is not strict UTF-8 JSON."""
    if value is None or len(value) > MAX_JSON_BYTES:
        return _NOT_JSON
    try:
        return json.loads(value.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _NOT_JSON


NOT_JSON = _NOT_JSON


_SPLIT: dict[str, tuple[str, ...]] = {}


def at_path(doc: Any, path: str) -> Any:
    """The value at a dotted path (`data.orderId`, `items.0.id`), or None."""
    parts = _SPLIT.get(path)
    if parts is None:
        parts = tuple(path.split("."))
        if len(_SPLIT) < 1000:
            _SPLIT[path] = parts
    if len(parts) == 1:
        return doc.get(path) if isinstance(doc, dict) else None
    node = doc
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                return None
            node = node[index]
        else:
            return None
    return node


def scalar_id(value: Any) -> str | None:
    """A JSON string or integer as an id (booleans, floats and containers are not ids)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_ID_BYTES:  # str() of a huge int is slow or refused
            return None
        return id_text(str(value).encode())
    if isinstance(value, str):
        return id_text(value.encode("utf-8", errors="surrogatepass"))
    return None


_FIRST: dict[str, str] = {}


def order_ids(doc: Any, paths: Sequence[str]) -> tuple[str, ...]:
    """Ids found at `paths` in a decoded JSON document, in path order, deduplicated."""
    if doc is _NOT_JSON or not isinstance(doc, dict | list):
        return ()
    out: list[str] = []
    is_dict = isinstance(doc, dict)
    for path in paths:
        if is_dict:  # most paths' first part is absent: skip them at dict speed
            first = _FIRST.get(path)
            if first is None:
                first = path.split(".", 1)[0]
                if len(_FIRST) < 1000:
                    _FIRST[path] = first
            if first not in doc:
                continue
        found = scalar_id(at_path(doc, path))
        if found is not None and found not in out:
            out.append(found)
    return tuple(out)


def event_type(doc: Any, paths: Sequence[str]) -> str | None:
    """The first string at `paths` (e.g. `event`, `type`, `eventType`)."""
    if doc is _NOT_JSON:
        return None
    for path in paths:
        found = at_path(doc, path)
        if isinstance(found, str) and found.strip():
            return found.strip()[:200]
    return None


#: what follows a quoted key: the colon, then a string, an integer or anything else
AFTER_KEY = re.compile(rb'\s*:\s*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|(-?[0-9]+))?')


def key_occurrences(value: bytes, tokens: Sequence[tuple[bytes, bytes]]
                    ) -> list[tuple[bytes, int, re.Match[bytes]]]:
    """Every `"name":` in `value` for (name, b'"name"') tokens: (name, position, match).

    `bytes.find` skips to candidates far faster than a regex alternation
    scans; the match after each says what the value is (group 1: string
    contents as written, group 2: an integer, neither: something else).
    """
    out = []
    find = value.find
    for name, token in tokens:
        i = find(token)
        while i != -1:
            m = AFTER_KEY.match(value, i + len(token))
            if m is not None and m.end() > i + len(token):
                out.append((name, i, m))
            i = find(token, i + 1)
    return out


def key_text(key: bytes | None, limit: int = 80) -> str | None:
    """The key as the timeline shows it: None stays None, anything else is printable."""
    if key is None:
        return None
    return display(key, limit)
