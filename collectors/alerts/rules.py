"""Alert rules and sinks from TOML, validated with errors that point at file, line and field.

`tomllib` reports no positions for values, so after parsing, each `[[rule]]` /
`[[sink]]` table is located in the text by counting its headers and the key
is found inside that table; every error is one line of the form
`FILE:LINE: rule 'NAME': field 'KEY': what is wrong`.

The format (docs/contracts.md) plus optional keys: `hysteresis` and `resolve_for` on
rules, `timeout`/`retries`/`headers` on sinks:

    [[rule]]
    name = "notifications-behind"
    group = "notification-.*"   # regex, matched against the whole group name
    topic = ".*"                # optional regex; per-topic alerts when given
    max_lag = 1000              # messages
    max_lag_seconds = 60
    min_status = "STALL"
    for = "30s"
    severity = "critical"       # or "warning" (the default)
    hysteresis = 0.1            # resolve only once 10% under the threshold...
    resolve_for = "30s"         # ...and clear that long (default: the `for` value)

    [[sink]]
    type = "webhook"            # or "otlp" (endpoint = "http://collector:4318")
    url = "http://127.0.0.1:9000/hooks/lag"
    expire = "24h"              # undelivered notices are kept and retried this long
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from collectors.config import Settings
from collectors.durations import parse_duration
from collectors.errors import ConfigError
from collectors.redact import remember_secret
from collectors.snapshots import Status


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def exit_code(self) -> int:
        """`lagdeck watch` exits 1 for a firing warning, 2 for a firing critical."""
        return 2 if self is Severity.CRITICAL else 1


class SinkType(StrEnum):
    WEBHOOK = "webhook"
    OTLP = "otlp"


#: Resolve only once the value is this share below the threshold (see `collectors.alerts.evaluate`).
DEFAULT_HYSTERESIS = 0.1
DEFAULT_SINK_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
#: An undelivered webhook notice is kept in the outbox and retried this long (`expire`).
DEFAULT_EXPIRE = 86400.0
MAX_RETRIES = 10

RULE_KEYS = (
    "name", "group", "topic", "max_lag", "max_lag_seconds", "min_status", "for",
    "severity", "hysteresis", "resolve_for",
)
SINK_KEYS = {
    SinkType.WEBHOOK: ("type", "url", "headers", "timeout", "retries", "expire"),
    SinkType.OTLP: ("type", "endpoint", "headers", "timeout"),
}
_ALL_SINK_KEYS = tuple(dict.fromkeys(k for keys in SINK_KEYS.values() for k in keys))


@dataclass(frozen=True)
class Rule:
    """One validated rule. A rule fires when any of its conditions holds."""

    name: str
    group: re.Pattern[str]
    topic: re.Pattern[str] | None = None
    max_lag: int | None = None
    max_lag_seconds: float | None = None
    min_status: Status | None = None
    for_seconds: float = 0.0
    severity: Severity = Severity.WARNING
    hysteresis: float = DEFAULT_HYSTERESIS
    #: how long a firing alert must be clear before it resolves; None = `for_seconds`
    resolve_for_seconds: float | None = None
    #: "FILE:LINE" of the `[[rule]]` header, for messages.
    source: str = ""

    @property
    def resolve_after(self) -> float:
        return self.for_seconds if self.resolve_for_seconds is None else self.resolve_for_seconds

    def matches_group(self, group: str) -> bool:
        return self.group.fullmatch(group) is not None

    def matches_topic(self, topic: str) -> bool:
        return self.topic is None or self.topic.fullmatch(topic) is not None


@dataclass(frozen=True)
class SinkConfig:
    type: SinkType
    url: str | None = None
    endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timeout: float = DEFAULT_SINK_TIMEOUT
    retries: int = DEFAULT_RETRIES
    #: seconds an undelivered notice stays in the outbox (webhook)
    expire: float = DEFAULT_EXPIRE
    source: str = ""

    def display(self) -> str:
        """Where the sink sends, safe to print: webhook paths often carry tokens."""
        target = self.url or self.endpoint
        shown = safe_url(target) if target else "(endpoint from OTEL_EXPORTER_OTLP_ENDPOINT)"
        return f"{self.type.value} {shown}"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    sinks: tuple[SinkConfig, ...] = ()
    path: Path | None = None

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def safe_url(url: str) -> str:
    """`scheme://host:port/...` without user info, path or query (tokens live there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    shown_host = f"[{host}]" if ":" in host else host
    tail = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{shown_host}{port}{tail}"


# ---------------------------------------------------------------------------- locating


class _Locator:
    """Line numbers of array-of-table headers and their keys in the TOML text."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = text.split("\n")  # TOML ends lines at LF only

    def _headers(self, table: str) -> list[int]:
        pattern = re.compile(r"^\s*\[\[\s*(?:" + re.escape(table) + r"|\"" + re.escape(table)
                             + r"\")\s*\]\]\s*(?:#.*)?$")
        return [i for i, line in enumerate(self.lines) if pattern.match(line)]

    def table_line(self, table: str, index: int) -> int | None:
        headers = self._headers(table)
        if index < len(headers):
            return headers[index] + 1
        return self.key_line_top(table)

    def key_line(self, table: str, index: int, key: str) -> int | None:
        headers = self._headers(table)
        if index >= len(headers):
            return self.table_line(table, index)
        start = headers[index] + 1
        key_re = re.compile(r"^\s*(?:" + re.escape(key) + r"|\"" + re.escape(key) + r"\"|'"
                            + re.escape(key) + r"')\s*[.=]")
        for offset, line in enumerate(self.lines[start:]):
            if re.match(r"^\s*\[", line):
                break
            if key_re.match(line):
                return start + offset + 1
        return headers[index] + 1

    def key_line_top(self, key: str) -> int | None:
        key_re = re.compile(r"^\s*(?:\[\[?\s*)?\"?" + re.escape(key) + r"\"?\s*[\]=.]")
        for i, line in enumerate(self.lines):
            if key_re.match(line):
                return i + 1
        return None

    def where(self, line: int | None) -> str:
        return f"{self.source}:{line}" if line else self.source


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------- parsing


def parse_rules(data: Mapping[str, Any], text: str, source: str, *,
                strict_top_level: bool = True) -> RuleSet:
    """Validate the `rule` and `sink` arrays of parsed TOML `data`; `text` gives line numbers.

    `strict_top_level`: a rules file may hold nothing else; a config file may hold
    other sections, so there only near-misses like `[[rules]]` are rejected.
    Every problem is reported, one line each, in one `ConfigError`.
    """
    ruleset, problems = collect_rules(data, text, source, strict_top_level=strict_top_level)
    if problems:
        raise ConfigError("\n".join(problems))
    return ruleset


def collect_rules(data: Mapping[str, Any], text: str, source: str, *,
                  strict_top_level: bool = True) -> tuple[RuleSet, list[str]]:
    """The valid rules and sinks, and one line per problem (never raises)."""
    loc = _Locator(text, source)
    problems: list[str] = []
    for key in data:
        if key in ("rule", "sink"):
            continue
        hint = _did_you_mean(key, ("rule", "sink"))
        if strict_top_level or hint:
            line = loc.key_line_top(key)
            problems.append(
                f"{loc.where(line)}: unknown table or key {key!r}{hint}; "
                "a rules file holds [[rule]] and [[sink]] tables"
            )
    rules_raw = _collect(problems, lambda: _array_of_tables(data, "rule", loc)) or []
    sinks_raw = _collect(problems, lambda: _array_of_tables(data, "sink", loc)) or []
    rules = []
    seen: dict[str, Rule] = {}
    for i, raw in enumerate(rules_raw):
        rule = _table_problems(problems, lambda f, raw=raw, i=i: _parse_rule(raw, i, loc, f))
        if rule is None:
            continue
        if rule.name in seen:
            problems.append(
                f"{loc.where(loc.key_line('rule', i, 'name'))}: rule {rule.name!r}: field "
                f"'name': duplicate rule name (first defined at {seen[rule.name].source})"
            )
            continue
        seen[rule.name] = rule
        rules.append(rule)
    sinks = []
    for i, raw in enumerate(sinks_raw):
        sink = _table_problems(problems, lambda f, raw=raw, i=i: _parse_sink(raw, i, loc, f))
        if sink is not None:
            sinks.append(sink)
    return RuleSet(rules=tuple(rules), sinks=tuple(sinks)), problems


def _collect(problems: list[str], read):
    try:
        return read()
    except ConfigError as exc:
        problems.append(str(exc))
        return None


def _table_problems(problems: list[str], parse):
    """Parse one table (`parse(found)`), collecting each field's problem rather than
    stopping at the first."""
    found: list[str] = []
    try:
        result = parse(found)
    except ConfigError as exc:
        found.append(str(exc))
        result = None
    problems.extend(dict.fromkeys(found))
    return None if found else result


def _array_of_tables(data: Mapping[str, Any], name: str, loc: _Locator) -> list[Mapping]:
    raw = data.get(name, [])
    if isinstance(raw, Mapping):
        line = loc.key_line_top(name)
        raise ConfigError(f"{loc.where(line)}: '{name}' must be written [[{name}]] "
                          f"(an array of tables), not [{name}]")
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        line = loc.key_line_top(name)
        raise ConfigError(f"{loc.where(line)}: '{name}' must be an array of [[{name}]] tables")
    return raw


class _Table:
    """One `[[rule]]`/`[[sink]]` table with errors that carry file, line and field.

    While `collecting` is a list, a field's problem is appended there and the
    accessor returns None, so every field of every table is checked in one go.
    """

    def __init__(self, raw: Mapping[str, Any], kind: str, index: int, loc: _Locator,
                 collecting: list[str] | None = None) -> None:
        self.raw, self.kind, self.index, self.loc = raw, kind, index, loc
        self.collecting = collecting
        name = raw.get("name")
        named = isinstance(name, str) and name
        self.label = f"{kind} {name!r}" if named else f"{kind} #{index + 1}"

    @property
    def source(self) -> str:
        return self.loc.where(self.loc.table_line(self.kind, self.index))

    def error(self, key: str | None, message: str) -> ConfigError:
        if key is None:
            line = self.loc.table_line(self.kind, self.index)
            return ConfigError(f"{self.loc.where(line)}: {self.label}: {message}")
        line = self.loc.key_line(self.kind, self.index, key)
        return ConfigError(f"{self.loc.where(line)}: {self.label}: field {key!r}: {message}")

    def check_keys(self, allowed: Sequence[str]) -> None:
        for key in self.raw:
            if key not in allowed:
                self.note(self.error(key, f"unknown field{_did_you_mean(key, allowed)}; "
                                          f"known fields: {', '.join(allowed)}"))

    def note(self, error: ConfigError) -> None:
        """Record `error` when collecting, else raise it."""
        if self.collecting is None:
            raise error
        self.collecting.append(str(error))

    def field(self, read, *args, **kwargs):
        """Call an accessor; when collecting, a problem is recorded and None returned."""
        try:
            return read(*args, **kwargs)
        except ConfigError as exc:
            self.note(exc)
            return None

    def string(self, key: str, *, required: bool = False) -> str | None:
        if key not in self.raw:
            if required:
                raise self.error(None, f"missing required field {key!r}")
            return None
        value = self.raw[key]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def regex(self, key: str, *, required: bool = False) -> re.Pattern[str] | None:
        text = self.string(key, required=required)
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as exc:
            raise self.error(key, f"bad regex {text!r}: {exc}") from None

    def number(self, key: str, *, integer: bool = False, minimum: float = 0.0,
               maximum: float | None = None) -> float | None:
        if key not in self.raw:
            return None
        value = self.raw[key]
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            kind = "an integer" if integer else "a number"
            raise self.error(key, f"expected {kind}, got {_describe(value)}")
        if not math.isfinite(value) or value < minimum or (maximum is not None
                                                           and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None \
                else f"at least {minimum:g}"
            raise self.error(key, f"must be {bound}, got {value!r}")
        return value

    def duration(self, key: str) -> float | None:
        if key not in self.raw:
            return None
        try:
            return parse_duration(self.raw[key])
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def choice(self, key: str, options: Sequence[str]) -> str | None:
        text = self.string(key)
        if text is None:
            return None
        lowered = {o.lower(): o for o in options}
        if text.strip().lower() not in lowered:
            close = difflib.get_close_matches(text.strip().lower(), list(lowered), n=1)
            hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
            raise self.error(key, f"{text!r} is not one of {', '.join(options)}{hint}")
        return lowered[text.strip().lower()]

    def headers(self, key: str) -> Mapping[str, str]:
        if key not in self.raw:
            return MappingProxyType({})
        value = self.raw[key]
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error(key, "expected a table of string header values")
        for name, header_value in value.items():
            # Authorization and friends are credentials whatever the header is called.
            remember_secret(header_value)
            if " " in header_value:
                remember_secret(header_value.split(" ", 1)[1])
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise self.error(key, f"bad header name {name!r}")
        return MappingProxyType(dict(value))

    def url(self, key: str, *, required: bool) -> str | None:
        text = self.string(key, required=required)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise self.error(key, f"bad URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(key, f"expected an http:// or https:// URL, got {safe_url(text)}")
        return text


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _parse_rule(raw: Mapping[str, Any], index: int, loc: _Locator,
                collecting: list[str] | None = None) -> Rule:
    t = _Table(raw, "rule", index, loc, collecting)
    t.check_keys(RULE_KEYS)
    name = t.field(t.string, "name", required=True)
    group = t.field(t.regex, "group", required=True)
    topic = t.field(t.regex, "topic")
    max_lag = t.field(t.number, "max_lag", integer=True)
    if "max_lag_seconds" in raw and isinstance(raw["max_lag_seconds"], str):
        max_lag_seconds = t.field(t.duration, "max_lag_seconds")
    else:
        max_lag_seconds = t.field(t.number, "max_lag_seconds")
    status_name = t.field(t.choice, "min_status", [s.value for s in Status])
    for_seconds = t.field(t.duration, "for") or 0.0
    severity = t.field(t.choice, "severity", [s.value for s in Severity]) \
        or Severity.WARNING.value
    hysteresis = t.field(t.number, "hysteresis", maximum=0.99)
    resolve_for = t.field(t.duration, "resolve_for")
    if not t.collecting and not any(k in raw for k in ("max_lag", "max_lag_seconds",
                                                       "min_status")):
        raise t.error(None, "needs at least one condition: max_lag, max_lag_seconds "
                            "or min_status")
    if name is None or group is None or t.collecting:
        return None  # type: ignore[return-value]  # problems recorded (collecting mode)
    return Rule(
        name=name,
        group=group,
        topic=topic,
        max_lag=int(max_lag) if max_lag is not None else None,
        max_lag_seconds=float(max_lag_seconds) if max_lag_seconds is not None else None,
        min_status=Status(status_name) if status_name else None,
        for_seconds=for_seconds,
        severity=Severity(severity),
        hysteresis=DEFAULT_HYSTERESIS if hysteresis is None else float(hysteresis),
        resolve_for_seconds=resolve_for,
        source=t.source,
    )


def _parse_sink(raw: Mapping[str, Any], index: int, loc: _Locator,
                collecting: list[str] | None = None) -> SinkConfig:
    t = _Table(raw, "sink", index, loc, collecting)
    if "type" not in raw:
        t.check_keys(_ALL_SINK_KEYS)
    kind = SinkType(t.choice("type", [s.value for s in SinkType]) or _missing_type(t))
    t.check_keys(SINK_KEYS[kind])
    timeout = t.field(t.duration, "timeout")
    if timeout is not None and timeout <= 0:
        t.note(t.error("timeout", "must be more than zero"))
    retries = t.field(t.number, "retries", integer=True, maximum=MAX_RETRIES)
    expire = t.field(t.duration, "expire")
    if expire is not None and expire <= 0:
        t.note(t.error("expire", "must be more than zero"))
    url = t.field(t.url, "url", required=True) if kind is SinkType.WEBHOOK else None
    endpoint = t.field(t.url, "endpoint", required=False) if kind is SinkType.OTLP else None
    headers = t.field(t.headers, "headers")
    if t.collecting:
        return None  # type: ignore[return-value]  # problems recorded (collecting mode)
    return SinkConfig(
        type=kind,
        url=url,
        endpoint=endpoint,
        headers=headers if headers is not None else MappingProxyType({}),
        timeout=DEFAULT_SINK_TIMEOUT if timeout is None or timeout <= 0 else timeout,
        retries=DEFAULT_RETRIES if retries is None else int(retries),
        expire=DEFAULT_EXPIRE if expire is None or expire <= 0 else expire,
        source=t.source,
    )


def _missing_type(t: _Table) -> str:
    raise t.error(None, "missing required field 'type' (\"webhook\" or \"otlp\")")


# ---------------------------------------------------------------------------- loading


def parse_rules_text(text: str, source: str = "<rules>", *,
                     strict_top_level: bool = True) -> RuleSet:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return parse_rules(data, text, source, strict_top_level=strict_top_level)


def load_rules_file(path: str | Path) -> RuleSet:
    """A `--rules FILE`: only `[[rule]]` and `[[sink]]` tables."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"rules file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read rules file {path}: {exc}") from None
    ruleset = parse_rules_text(text, str(path))
    return RuleSet(ruleset.rules, ruleset.sinks, path)


def from_settings(settings: Settings) -> RuleSet:
    """The `[[rule]]`/`[[sink]]` tables of the TOML config file."""
    source = str(settings.path) if settings.path else "<config>"
    ruleset = parse_rules(settings.data, settings.text, source, strict_top_level=False)
    return RuleSet(ruleset.rules, ruleset.sinks, settings.path)


def load(rules_path: str | Path | None, settings: Settings) -> RuleSet:
    """Rules from `--rules FILE` or the config file; sinks from the same place.

    A rules file without `[[sink]]` tables uses the config file's sinks, so one
    config can serve several rule files.
    """
    if rules_path is None:
        ruleset = from_settings(settings)
        where = f"the config file {settings.path}" if settings.path else "the config file"
        if not ruleset.rules:
            raise ConfigError(f"no alert rules: add [[rule]] tables to {where} "
                              "or pass --rules FILE")
        return ruleset
    ruleset = load_rules_file(rules_path)
    if not ruleset.rules:
        raise ConfigError(f"{ruleset.path}: no [[rule]] tables")
    if not ruleset.sinks:
        config_sinks = from_settings(settings).sinks
        return RuleSet(ruleset.rules, config_sinks, ruleset.path)
    return ruleset
