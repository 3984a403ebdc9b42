"""Cluster connection settings: profiles, `-F` properties files, `-X` overrides.

Precedence, lowest first: the profile from the TOML config file, then a
properties file (`-F`, or a profile's `config_file`), then `-X` overrides, then
`-b`. A command-line flag overrides the profile only when the user typed it
(argparse defaults are `None`). librdkafka properties (SASL, SSL, ...) pass
straight through; secret values are remembered for redaction the moment they
are read.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jproperties import ParseError, Properties

from collectors.config_schema import Problem, did_you_mean, report, validate
from collectors.errors import ConfigError, UsageError
from collectors.paths import default_config_path
from collectors.redact import is_secret_key, redact_mapping, remember_secret

#: Java client properties librdkafka does not know; dropped from `-F` files.
_JAVA_ONLY = re.compile(
    r"^(key|value)\.(de)?serializer$|^ssl\.truststore\.|^ssl\.keystore\.type$|"
    r"^sasl\.login\.callback\.handler\.class$|^sasl\.client\.callback\.handler\.class$|"
    r"^ssl\.protocol$|^schema\.registry\.|^basic\.auth\.|^(default\.)?api\.timeout\.ms$"
)
_JAAS_CRED = re.compile(r'(username|password)\s*=\s*"((?:[^"\\]|\\.)*)"')


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, repr=False)
class ClusterConfig:
    """How to reach one cluster. `repr()` is safe to log: secrets are redacted."""

    properties: Mapping[str, str]
    profile: str | None = None
    read_only: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return self.properties.get("bootstrap.servers", "")

    def redacted(self) -> dict[str, object]:
        return redact_mapping(self.properties)

    def __repr__(self) -> str:
        return (
            f"ClusterConfig(profile={self.profile!r}, read_only={self.read_only}, "
            f"properties={self.redacted()!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """The non-connection sections of the config file, for the feature that owns each.

    `text` and `path` are kept so that validators can point at a file and line.
    """

    path: Path | None = None
    #: raw file text and data hold secrets (profiles): never in repr
    text: str = field(default="", repr=False)
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name, {})
        return value if isinstance(value, Mapping) else {}

    def known_section(self, name: str, keys: Sequence[str]) -> tuple[Mapping[str, Any], str]:
        """`[name]` and where it is (`FILE: [name]`, for messages), its keys checked
        against `keys`: a feature's parser called without the file check (tests,
        benches, a source built by hand) still refuses a typo."""
        where = f"{self.path or 'config'}: [{name}]"
        section = self.section(name)
        check_known_keys(section, keys, where)
        return section, where

    @property
    def rules(self) -> list[Mapping[str, Any]]:
        return list(self.data.get("rule", []))

    @property
    def sinks(self) -> list[Mapping[str, Any]]:
        return list(self.data.get("sink", []))


@dataclass(frozen=True)
class LagdeckConfig:
    cluster: ClusterConfig
    settings: Settings


class _LocatedProperties(Properties):
    """jproperties' parser, remembering the line each key starts on (for error messages)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}

    def _parse_key(self, single_line_only: bool = False) -> str:
        line = getattr(self, "_line_number", 0)
        key = super()._parse_key(single_line_only)
        self.lines[key] = line
        return key


#: What a property name looks like.
_PROPERTY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
#: Names quoted in errors: dotted, as librdkafka's are; a lone word may be a pasted secret.
_QUOTABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+")


def parse_properties(text: str, source: str = "<properties>") -> dict[str, str]:
    """Parse Java `.properties` text (as kcat `-F` reads client.properties).

    The whole Java syntax, via jproperties: `key=value`, `key: value` and
    `key value`, `#`/`!` comments, backslash line continuations and escapes
    (`\\t`, `\\uXXXX`, escaped separators in keys). A property with no value
    is an error naming file and line; errors never quote values, and values of
    secret-named keys are remembered for redaction as soon as they are read.
    """
    parser = _LocatedProperties()
    try:
        parser.load(text)
    except ParseError as exc:
        raise ConfigError(f"{source}:{exc.line_number}: invalid escape sequence "
                          "(expected \\uXXXX with four hex digits)") from None
    props: dict[str, str] = {}
    for key in parser:
        value = parser[key].data
        if is_secret_key(key):
            remember_secret(value)
        if not key:
            raise ConfigError(f"{source}:{parser.lines.get(key, 0)}: a value with no property "
                              "name before it (expected key=value)")
        if not value.strip():
            raise ConfigError(
                f"{source}:{parser.lines.get(key, 0)}: a line with a name and no value "
                "(expected key=value, key: value or key value; not shown, it may be a secret)")
        props[key] = value.strip()
    return props


def java_to_librdkafka(props: Mapping[str, str]) -> dict[str, str]:
    """Map a Java client.properties onto librdkafka names, dropping Java-only keys.

    `sasl.jaas.config` with a PLAIN/SCRAM login module becomes `sasl.username`
    and `sasl.password`, which is what librdkafka understands.
    """
    out: dict[str, str] = {}
    for key, value in props.items():
        if _JAVA_ONLY.search(key):
            continue
        if key == "sasl.jaas.config":
            creds = dict(_JAAS_CRED.findall(value))
            if "username" in creds:
                out.setdefault("sasl.username", creds["username"])
            if "password" in creds:
                remember_secret(creds["password"])
                out.setdefault("sasl.password", creds["password"])
            continue
        out[key] = value
    return out


def load_properties_file(path: str | Path) -> dict[str, str]:
    """A `-F` file: UTF-8, or ISO-8859-1 (what Java's `Properties.load` reads) when it
    is not valid UTF-8."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"properties file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read properties file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("iso-8859-1")
    return java_to_librdkafka(parse_properties(text, str(path)))


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """`-X key=value` pairs, as kcat takes them; anything else is a usage error.

    The error names the argument by position and quotes at most its property
    name: a line rejected for its shape may still carry a password.
    """
    out: dict[str, str] = {}
    for number, item in enumerate(items, start=1):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key and _PROPERTY_NAME.fullmatch(key):
            if is_secret_key(key):
                remember_secret(value)
            out[key] = value
            continue
        raise UsageError(_override_problem(number, item))
    return out


def _override_problem(number: int, item: str) -> str:
    where = f"-X expects key=value (argument {number} of -X"
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9_.-]*)\s*([:\s])\s*(.*)$", item, re.DOTALL)
    if match and _QUOTABLE_NAME.fullmatch(match.group(1)):
        key, sep, value = match.groups()
        if is_secret_key(key):
            remember_secret(value.strip())
        shown = "':'" if sep == ":" else "a space"
        return f"{where}: {key!r} followed by {shown}; write -X {key}=VALUE)"
    if item.strip().startswith("="):
        return f"{where} has no property name before '=')"
    if "=" in item:
        return f"{where}: not a property name before '='; not shown, it may hold a secret)"
    return f"{where} has no '='; not shown, it may hold a secret)"


#: A section checker a higher layer adds (the console checks `[keymap]`): the section's
#: value -> problems, with paths from the document root.
SectionCheck = Callable[[Any], list[Problem]]


def load_settings(path: str | Path | None = None, *,
                  checks: Mapping[str, SectionCheck] | None = None) -> Settings:
    """Read and validate the TOML config. A missing file is an error only when named
    explicitly. Every mistake is reported at once (one `FILE:LINE: ...` line each)."""
    explicit = path is not None or bool(os.environ.get("LAGDECK_CONFIG"))
    config_path = Path(path).expanduser() if path is not None else default_config_path()
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file not found: {config_path}") from None
        return Settings(path=None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {config_path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: invalid TOML: {exc}") from None
    lines = config_problems(data, text, str(config_path), checks)
    if lines:
        raise ConfigError("\n".join(lines))
    return Settings(path=config_path, text=text, data=data)


def config_problems(data: Mapping[str, Any], text: str, source: str,
                    checks: Mapping[str, SectionCheck] | None = None) -> list[str]:
    """Every problem of a parsed config file, one `FILE:LINE: ...` line each (never raises)."""
    from collectors.alerts.rules import collect_rules

    problems = validate(data)
    default = data.get("default_profile")
    profiles = data.get("profiles")
    if isinstance(default, str) and default.strip() and isinstance(profiles, Mapping) \
            and default not in profiles:
        problems.append(Problem(("default_profile",), f"names no profile: {default!r}"
                                f"{did_you_mean(default, [str(k) for k in profiles])}"))
    for name, check in (checks or {}).items():
        if name in data:
            problems.extend(check(data[name]))
    lines = report(problems, text, source)
    alerting = {k: data[k] for k in ("rule", "sink") if k in data}  # the rules module's part
    lines += collect_rules(alerting, text, source, strict_top_level=False)[1]
    return lines


def _profile_section(settings: Settings, name: str | None) -> tuple[str | None, Mapping[str, Any]]:
    profiles = settings.section("profiles")
    chosen = name or settings.data.get("default_profile")
    if chosen is None:
        return None, {}
    if chosen not in profiles:
        where = settings.path or default_config_path()
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(f"unknown profile {chosen!r} in {where} (profiles: {known})")
    section = profiles[chosen]
    if not isinstance(section, Mapping):
        raise ConfigError(f"profile {chosen!r} must be a table")
    return chosen, section


def resolve(
    *,
    bootstrap_servers: str | None = None,
    overrides: Iterable[str] = (),
    properties_file: str | None = None,
    profile: str | None = None,
    config_path: str | None = None,
    read_only: bool | None = None,
    checks: Mapping[str, SectionCheck] | None = None,
) -> LagdeckConfig:
    """Combine config file, profile, `-F`, `-X` and `-b` into one `LagdeckConfig`."""
    settings = load_settings(config_path, checks=checks)
    profile_name, section = _profile_section(settings, profile)

    props: dict[str, str] = {}
    if section.get("bootstrap_servers"):
        props["bootstrap.servers"] = str(section["bootstrap_servers"])
    extra = section.get("properties", {})
    if not isinstance(extra, Mapping):
        raise ConfigError(f"profile {profile_name!r}: 'properties' must be a table")
    props.update({str(k): _stringify(v) for k, v in extra.items()})
    if section.get("config_file"):
        props.update(load_properties_file(str(section["config_file"])))
    if properties_file:
        props.update(load_properties_file(properties_file))
    props.update(parse_overrides(overrides))
    if bootstrap_servers:
        props["bootstrap.servers"] = bootstrap_servers
    if not props.get("bootstrap.servers") and os.environ.get("LAGDECK_BOOTSTRAP_SERVERS"):
        props["bootstrap.servers"] = os.environ["LAGDECK_BOOTSTRAP_SERVERS"]

    for key, value in props.items():
        if is_secret_key(key):
            remember_secret(value)

    ro = section.get("read_only", False) is True if read_only is None else read_only
    return LagdeckConfig(ClusterConfig(_freeze(props), profile_name, ro), settings)


def _stringify(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def require_bootstrap(cluster: ClusterConfig) -> str:
    """The bootstrap servers, or a usage error saying how to give them."""
    if not cluster.bootstrap_servers:
        raise UsageError(
            "no cluster given: pass -b HOST:PORT, set LAGDECK_BOOTSTRAP_SERVERS, "
            "or choose a profile with --profile"
        )
    return cluster.bootstrap_servers


def check_known_keys(section: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """ConfigError naming the first key of `section` not in `keys`, and the known ones."""
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
