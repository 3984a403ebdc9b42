"""The shape of `config.toml`, checked once at start-up: every mistake, one line each.

`tomllib` accepts any well-formed TOML, so without this a typo (`bootstrp`,
`[lagg]`), a number where an address belongs or `read_only = "false"` (a
string, which is truthy) would be silently ignored or misread. `SCHEMA` says,
for every section and key, what is allowed; `validate` walks the parsed
document and returns every problem as `FILE:LINE: [section] key: what is
wrong`, with a did-you-mean for unknown names.

Adding a section is one entry in `SCHEMA` (see `SCHEMA_REGISTRY`, which is
allowed both top-level and per profile). Features still read their own
section and check ranges and meanings (`LagSettings.from_settings`, ...);
this module checks names and types, so those readers can trust them.

Values of secret keys (passwords, tokens) are never quoted in a message.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collectors.durations import duration_seconds
from collectors.redact import is_secret_key, remember_secret

#: A path into the document: table names, keys, and indexes into arrays of tables.
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One mistake: where (a path into the document) and what."""

    path: Path
    message: str


# ------------------------------------------------------------------------- value kinds


@dataclass(frozen=True)
class Kind:
    """A value kind; `check` returns what is wrong with a value, or None."""

    expected: str
    check: Callable[[Any], str | None]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _string(v: Any) -> str | None:
    if not isinstance(v, str):
        return "expected a string"
    return None if v.strip() else "must not be empty"


def _bool(v: Any) -> str | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return f"expected true or false without quotes (a TOML boolean), got the string {v!r}"
    return "expected true or false"


def _count(v: Any) -> str | None:
    if not _is_int(v):
        return "expected a whole number"
    return None if v >= 0 else "must be 0 or more"


def _seconds(v: Any) -> str | None:
    if _is_number(v):
        return None if v > 0 else "must be more than zero"
    if isinstance(v, str):
        try:
            return None if duration_seconds(v) > 0 else "must be more than zero"
        except ValueError:
            return "expected a duration such as \"30s\", \"5m\", \"1h30m\" or \"PT1H\""
    return "expected a duration such as \"30s\" or a number of seconds"


def _string_list(v: Any) -> str | None:
    if not isinstance(v, list):
        return "expected a list of strings such as [\"a\", \"b\"]"
    if not all(isinstance(x, str) and x.strip() for x in v):
        return "expected a list of non-empty strings"
    return None


def _url(v: Any) -> str | None:
    problem = _string(v)
    if problem:
        return problem
    return None if re.match(r"https?://[^/\s]+", v) else "expected an http:// or https:// URL"


def _scalar(v: Any) -> str | None:
    if isinstance(v, str | bool) or _is_number(v):
        return None
    return "expected a string, number or boolean"


STRING = Kind("a string", _string)
BOOL = Kind("true or false", _bool)
COUNT = Kind("a whole number", _count)
SECONDS = Kind("a duration", _seconds)
STRING_LIST = Kind("a list of strings", _string_list)
URL = Kind("an http(s) URL", _url)
SCALAR = Kind("a string, number or boolean", _scalar)
#: `snapshots` in a profile: the snapshot topic to read lag from, or true (the default topic)
TOPIC_OR_BOOL = Kind("a topic name or true/false",
                     lambda v: None if isinstance(v, bool) else _string(v))
NUMBER = Kind("a number", lambda v: None if _is_number(v) and v > 0
              else "expected a number more than zero")


# ------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Table:
    """A table with known keys (anything else is an unknown key)."""

    keys: Mapping[str, Kind | Table | MapOf | Delegated]
    hint: str = ""


@dataclass(frozen=True)
class MapOf:
    """A table whose keys the user names (profiles, properties, keymap ids)."""

    value: Kind | Table
    #: what the names are, for messages ("profile", "binding id")
    noun: str = "entry"


@dataclass(frozen=True)
class Delegated:
    """Checked elsewhere (alert rules and sinks: `collectors.alerts.rules`)."""

    owner: str = ""


#: `[schema_registry]`: a Confluent-compatible Schema Registry, top level or per profile.
SCHEMA_REGISTRY = Table({
    "url": URL,
    "username": STRING,
    "password": STRING,
    "bearer_token": STRING,
    "ca_location": STRING,
    "timeout": SECONDS,
})

PROFILE = Table({
    "bootstrap_servers": STRING,
    "read_only": BOOL,
    "config_file": STRING,
    "properties": MapOf(SCALAR, "librdkafka property"),
    "schema_registry": SCHEMA_REGISTRY,
    "snapshots": TOPIC_OR_BOOL,
})

#: Every section of config.toml. A new section is one entry here.
SCHEMA = Table({
    "default_profile": STRING,
    "profiles": MapOf(PROFILE, "profile"),
    "schema_registry": SCHEMA_REGISTRY,
    "outage": Table({"show_after": SECONDS, "reconnect_max": SECONDS}),
    "lag": Table({
        "window": COUNT, "min_samples": COUNT, "grace": SECONDS, "exact_budget": SECONDS,
        "exact_max_reads": COUNT, "history_retention": SECONDS,
        "allowed_lag": MapOf(COUNT, "group regex"),
        "offsets_via": Kind("\"auto\" or \"per-group\"", lambda v: None if v in (
            "auto", "per-group") else "expected \"auto\" or \"per-group\""),
    }),
    "trace": Table({
        "correlation_headers": STRING_LIST, "order_id_paths": STRING_LIST,
        "event_type_headers": STRING_LIST, "event_type_paths": STRING_LIST,
        "trace_url": URL, "jaeger_url": URL, "jaeger_timeout": NUMBER,
        "scan_processes": COUNT, "event_id_headers": STRING_LIST,
    }),
    "dlq": Table({
        "patterns": STRING_LIST, "extra_patterns": STRING_LIST, "content_scan": BOOL,
        "probe": COUNT, "sample": COUNT,
    }),
    "keymap": MapOf(STRING, "binding id"),
    "rule": Delegated("collectors.alerts.rules"),
    "sink": Delegated("collectors.alerts.rules"),
})


# ------------------------------------------------------------------------- walking


def _describe(value: Any, secret: bool) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if secret:
        return f"a {'string' if isinstance(value, str) else 'value'} (not shown: a secret)"
    if isinstance(value, str):
        return f"string {value[:60]!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    return type(value).__name__


def did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(data: Mapping[str, Any], schema: Table = SCHEMA) -> list[Problem]:
    """Every problem in `data` against `schema`, in document order (no I/O, never raises)."""
    problems: list[Problem] = []
    _table(data, schema, (), problems)
    return problems


def _table(data: Mapping[str, Any], schema: Table, path: Path, out: list[Problem]) -> None:
    for key, value in data.items():
        spec = schema.keys.get(key)
        here = (*path, key)
        if spec is None:
            what = "section" if isinstance(value, Mapping) and not path else "key"
            known = ", ".join(sorted(schema.keys))
            out.append(Problem(here, f"unknown {what}{did_you_mean(key, list(schema.keys))}"
                                     f" (known: {known})"))
            continue
        _value(value, spec, here, out, secret=is_secret_key(key))


def _value(value: Any, spec: Kind | Table | MapOf | Delegated, path: Path,
           out: list[Problem], *, secret: bool = False) -> None:
    if isinstance(spec, Delegated):
        return
    if isinstance(spec, Table):
        if not isinstance(value, Mapping):
            out.append(Problem(path, f"expected a table, got {_describe(value, secret)}"))
            return
        _table(value, spec, path, out)
        return
    if isinstance(spec, MapOf):
        if not isinstance(value, Mapping):
            out.append(Problem(path, f"expected a table of {spec.noun} = ..., "
                                     f"got {_describe(value, secret)}"))
            return
        for name, item in value.items():
            _value(item, spec.value, (*path, name), out, secret=is_secret_key(str(name)))
        return
    if secret and isinstance(value, str):
        remember_secret(value)
    problem = spec.check(value)
    if problem is None:
        return
    if problem.startswith("expected") and "got" not in problem:
        problem = f"{problem}, got {_describe(value, secret)}"
    out.append(Problem(path, problem))


# ------------------------------------------------------------------------- line numbers


_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_KEY})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(rf"{_BARE}|{_QUOTED}", text)
    return tuple(_unquote(p) for p in parts)


def _unquote(part: str) -> str:
    if part[0] == "'":
        return part[1:-1]
    if part[0] != '"':
        return part
    try:  # TOML's own escapes (\", \\, \uXXXX, ...)
        return str(tomllib.loads(f"k = {part}")["k"])
    except tomllib.TOMLDecodeError:
        return part[1:-1]


class Locator:
    """Line numbers of tables and keys in TOML text (tomllib reports no positions).

    A light line scanner: headers (`[a.b]`, `[[a]]` with their index) and
    `key = ...` lines, dotted and quoted keys included. A path it cannot place
    (a key inside an inline table) gets the line of its nearest located parent.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        current: Path = ()
        counts: dict[Path, int] = {}
        closing: str | None = None  # the delimiter of a multi-line string being skipped
        for number, line in enumerate(text.split("\n"), start=1):  # TOML ends lines at LF
            if closing is not None:
                if closing in line:
                    closing = None
                continue
            header = _HEADER.match(line)
            if header:
                name = _split_key(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    current = (*name, index)
                else:
                    current = name
                self._place(current, number)
                self._place(name, number)
                continue
            assign = _ASSIGN.match(line)
            if assign:
                self._place((*current, *_split_key(assign.group(1))), number)
                value = line[assign.end():].lstrip()
                for quote in ('"""', "'''"):
                    if value.startswith(quote) and quote not in value[3:]:
                        closing = quote

    def _place(self, path: Path, number: int) -> None:
        """`path` and every table it implies (`[a.b]` creates `a`) start here at the latest."""
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], number)

    def line(self, path: Path) -> int | None:
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def section_label(path: Path) -> str:
    """`[profiles.prod] bootstrap_servers` for a path, as the operator wrote it."""
    names = [n if re.fullmatch(_BARE, n) else json.dumps(n, ensure_ascii=not n.isprintable())
             for n in (str(p) for p in path if not isinstance(p, int))]
    if len(names) <= 1:
        return names[0] if names else ""
    return f"[{'.'.join(names[:-1])}] {names[-1]}"


def report(problems: Sequence[Problem], text: str, source: str) -> list[str]:
    """One line per problem: `FILE:LINE: [section] key: what is wrong`, in file order."""
    locator = Locator(text)
    located = []
    for p in problems:
        line = locator.line(p.path)
        where = f"{source}:{line}" if line else source
        located.append((line or 0, f"{where}: {section_label(p.path)}: {p.message}"))
    return [text for _, text in sorted(located, key=lambda item: item[0])]
