"""The Confluent Schema Registry: its settings, and a client that never stalls a command.

Settings come from `[schema_registry]` in the config file, overridden key by
key by `[profiles.NAME.schema_registry]`, and the URL by `--schema-registry`:

```toml
[schema_registry]
url = "https://registry.example:8081"
username = "svc-lagdeck"          # basic auth, with password
password = "..."
# bearer_token = "..."            # or a bearer token instead
ca_location = "/etc/ssl/registry-ca.pem"
timeout = "5s"                    # one registry call (seconds or a duration)
```

`RegistryClient` is confluent-kafka's own `SchemaRegistryClient` (so the
library's Avro / Protobuf / JSON Schema deserializers use it unchanged) with
three additions an operations tool needs:

- schemas are cached by id in memory and on disk under the state directory
  (`schemas/<registry>/`), so a later command, a scan worker process or the
  correlation index re-uses them without asking the registry again;
- a circuit breaker: the first call that fails for a reason other than "no
  such schema" (connection refused, timeout, 5xx, credentials refused) marks
  the registry down, and every later call fails at once with the same
  reason. A registry that is down costs one timeout per command, not one per
  record;
- no retries (the library's default retries three times with back-off).

Passwords and tokens are remembered for redaction (`collectors.redact`) the
moment they are read, like `sasl.password`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from collectors.config import Settings, check_known_keys
from collectors.durations import duration_seconds
from collectors.errors import ConfigError, InvalidValue, LagdeckError
from collectors.logs import get_logger
from collectors.paths import state_dir
from collectors.redact import REDACTED, remember_secret, scrub

#: The keys `[schema_registry]` accepts (here and in a profile).
KEYS = ("url", "username", "password", "bearer_token", "ca_location", "timeout")
DEFAULT_TIMEOUT = 5.0

_log = get_logger("registry")


class RegistryError(LagdeckError):
    """A schema could not be had from the Schema Registry."""


class RegistryUnavailable(RegistryError):
    """The registry cannot be reached or refuses us (down, timeout, 5xx, 401/403)."""


class SchemaNotFound(RegistryError):
    """The registry answered that it has no schema with that id."""


@dataclass(frozen=True, repr=False)
class RegistryConfig:
    """How to reach one Schema Registry. `repr()` is safe to log: secrets are redacted."""

    url: str
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_location: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return (f"RegistryConfig(url={self.display_url!r}, username={self.username!r}, "
                f"password={REDACTED if self.password else None!r}, "
                f"bearer_token={REDACTED if self.bearer_token else None!r}, "
                f"ca_location={self.ca_location!r}, timeout={self.timeout})")

    __str__ = __repr__

    def client_conf(self) -> dict[str, Any]:
        """The `SchemaRegistryClient` configuration (holds secrets: never log it)."""
        conf: dict[str, Any] = {"url": self.url, "timeout": self.timeout, "max.retries": 0}
        if self.username is not None or self.password is not None:
            conf["basic.auth.user.info"] = f"{self.username or ''}:{self.password or ''}"
        if self.bearer_token:
            conf["bearer.auth.credentials.source"] = "CUSTOM"
            conf["bearer.auth.custom.provider.function"] = _bearer_fields
            conf["bearer.auth.custom.provider.config"] = {"token": self.bearer_token}
        if self.ca_location:
            conf["ssl.ca.location"] = self.ca_location
        return conf

    @property
    def display_url(self) -> str:
        """The URL without any `user:password@` part: what messages show."""
        out = []
        for part in self.url.split(","):
            u = urlsplit(part.strip())
            host = u.hostname or ""
            if u.port:
                host += f":{u.port}"
            out.append(u._replace(netloc=host).geturl())
        return ",".join(out)

    @property
    def cache_dir(self) -> Path:
        """Where schemas of this registry are kept on disk (one folder per URL)."""
        digest = hashlib.sha1(self.url.rstrip("/").encode()).hexdigest()[:16]
        return state_dir() / "schemas" / digest


def _bearer_fields(config: Mapping[str, str]) -> dict[str, str]:
    """A plain `Authorization: Bearer` token (the library's static source wants a
    Confluent Cloud logical cluster too)."""
    return {"bearer.auth.token": config["token"], "bearer.auth.logical.cluster": ""}


def _text(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip() if key != "password" and key != "bearer_token" else value


def _section(raw: object, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    check_known_keys(raw, KEYS, where)
    return raw


def check_url(url: str, where: str | None) -> str:
    """An http(s) URL (several may be comma-separated, as the client accepts).

    `where` names the config key it came from; None: the URL was given by the user
    directly (the `schema_registry` value, which each face names its own way).
    """
    url = url.strip()
    parts = [u.strip() for u in url.split(",")]
    if not all(p.startswith(("http://", "https://")) and len(p) > len("https://") for p in parts):
        if where is None:
            raise InvalidValue("schema_registry", f": {url!r} is not an http(s) URL")
        raise ConfigError(f"{where}: {url!r} is not an http(s) URL")
    return url


def registry_config(settings: Settings | None, profile: str | None = None,
                    url: str | None = None) -> RegistryConfig | None:
    """The registry to use, or None when none is configured.

    `[schema_registry]`, then `[profiles.PROFILE.schema_registry]` key by key,
    then `url` (the `--schema-registry` flag). Credentials without a URL are
    kept for the URL given on the command line.
    """
    where = str(settings.path) if settings is not None and settings.path else "config"
    merged: dict[str, Any] = {}
    if settings is not None:
        merged.update(_section(settings.data.get("schema_registry"), f"{where}: [schema_registry]"))
        if profile is not None:
            prof = settings.section("profiles").get(profile)
            if isinstance(prof, Mapping):
                merged.update(_section(prof.get("schema_registry"),
                                       f"{where}: [profiles.{profile}.schema_registry]"))
    for key in ("password", "bearer_token"):
        if isinstance(merged.get(key), str):
            remember_secret(merged[key])
    if url is not None:
        merged["url"] = check_url(url, None)
    if not merged.get("url"):
        return None
    for part in str(merged["url"]).split(","):
        userinfo = urlsplit(part.strip())
        if userinfo.password:  # http://user:secret@host: the secret is a password too
            remember_secret(userinfo.password)
            remember_secret(unquote(userinfo.password))
    section = f"{where}: [schema_registry]"
    timeout = _timeout(merged.get("timeout", DEFAULT_TIMEOUT), section)
    username = _text(merged, "username", section)
    password = _text(merged, "password", section)
    token = _text(merged, "bearer_token", section)
    if token and (username or password):
        raise ConfigError(f"{section}: give either username/password or bearer_token, not both")
    ca = _text(merged, "ca_location", section)
    if ca is not None and not Path(ca).expanduser().exists():
        raise ConfigError(f"{section}: ca_location {ca!r} does not exist")
    return RegistryConfig(
        url=check_url(str(merged["url"]), section),
        username=username,
        password=password,
        bearer_token=token,
        ca_location=str(Path(ca).expanduser()) if ca else None,
        timeout=timeout,
    )


def _timeout(value: object, section: str) -> float:
    """Seconds for one registry call: a number of seconds or a duration ("5s", "1500ms",
    "PT5S"), as every other timeout in the config file takes it."""
    problem = f"{section} timeout must be a number of seconds or a duration between 0 and 300s"
    if isinstance(value, bool):
        raise ConfigError(problem)
    if isinstance(value, str):
        try:
            seconds = duration_seconds(value, units="ms s m")
        except ValueError:
            raise ConfigError(problem) from None
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        raise ConfigError(problem)
    if not 0 < seconds <= 300:  # also refuses nan
        raise ConfigError(problem)
    return seconds


if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    class CachedRegistryClient(SchemaRegistryClient):
        """The type of what `RegistryClient` returns (the class itself is built on first use)."""

        settings: RegistryConfig
        #: why the registry is considered down for the rest of this process
        down: str | None


def RegistryClient(config: RegistryConfig) -> CachedRegistryClient:
    """A `SchemaRegistryClient` with a disk cache by id and a circuit breaker (module doc).

    The class is built on first use: confluent-kafka's schema_registry package
    (httpx, authlib, fastavro, protobuf) takes most of a second to import, and
    commands that never meet a registry should not pay for it.
    """
    return _client_class()(config)


@functools.cache
def _client_class() -> type:
    from confluent_kafka.schema_registry import (
        RegisteredSchema,
        Schema,
        SchemaRegistryClient,
        SchemaRegistryError,
    )

    class _RegistryClient(SchemaRegistryClient):
        """`SchemaRegistryClient` with a disk cache by id and a circuit breaker (see module doc).

        Only the read calls a deserializer makes are wrapped (`get_schema`,
        `get_schema_by_guid`, `get_version`); lagdeck never registers schemas.
        Thread-safe like its parent.
        """

        def __init__(self, config: RegistryConfig) -> None:
            super().__init__(config.client_conf())
            self.settings = config
            #: why the registry is considered down for the rest of this process
            self.down: str | None = None
            self.calls = 0
            self._missing: dict[tuple, str] = {}
            self._memory: dict[tuple, Schema] = {}
            self._lock = threading.Lock()

        # -- the cache -------------------------------------------------------------------

        def _path(self, key: tuple) -> Path:
            name = "-".join(str(k) for k in key if k is not None)
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            return self.settings.cache_dir / f"{safe}.json"

        def _cached(self, key: tuple) -> Schema | None:
            found = self._memory.get(key)
            if found is not None:
                return found
            try:
                data = json.loads(self._path(key).read_text(encoding="utf-8"))
                schema = Schema.from_dict(data)
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                return None
            self._memory[key] = schema
            return schema

        def _store(self, key: tuple, schema: Schema) -> None:
            self._memory[key] = schema
            path = self._path(key)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(schema.to_dict()), encoding="utf-8")
                tmp.replace(path)
            except (OSError, TypeError, ValueError):
                _log.debug("could not cache schema %s on disk", key, exc_info=True)

        # -- the breaker -----------------------------------------------------------------

        def _call(self, key: tuple, what: str, fetch) -> Schema:
            cached = self._cached(key)
            if cached is not None:
                return cached
            if key in self._missing:
                raise SchemaNotFound(self._missing[key])
            if self.down is not None:
                raise RegistryUnavailable(self.down)
            with self._lock:
                if self.down is not None:
                    raise RegistryUnavailable(self.down)
                self.calls += 1
                try:
                    schema = fetch()
                except SchemaRegistryError as exc:
                    message = scrub(str(exc.error_message or exc))[:200]
                    if exc.http_status_code == 404:
                        self._missing[key] = f"the Schema Registry has no {what} ({message})"
                        raise SchemaNotFound(self._missing[key]) from None
                    self.down = (f"Schema Registry {self.settings.display_url} answered HTTP "
                                 f"{exc.http_status_code}: {message}")
                    _log.info("registry marked down: %s", self.down)
                    raise RegistryUnavailable(self.down) from None
                except Exception as exc:  # transport: refused, timeout, TLS, DNS
                    reason = scrub(str(exc)) or type(exc).__name__
                    self.down = (f"Schema Registry {self.settings.display_url} unreachable "
                                 f"({type(exc).__name__}: {reason[:160]})")
                    _log.info("registry marked down: %s", self.down)
                    raise RegistryUnavailable(self.down) from None
            self._store(key, schema)
            return schema

        # -- the calls the deserializers make ----------------------------------------------

        def get_schema(self, schema_id: int, subject_name: str | None = None,
                       fmt: str | None = None, reference_format: str | None = None) -> Schema:
            return self._call(("id", schema_id, fmt), f"schema id {schema_id}",
                              lambda: super(_RegistryClient, self).get_schema(
                                  schema_id, subject_name, fmt, reference_format))

        def get_schema_by_guid(self, guid: str, fmt: str | None = None) -> Schema:
            return self._call(("guid", guid, fmt), f"schema guid {guid}",
                              lambda: super(_RegistryClient, self).get_schema_by_guid(guid, fmt))

        def get_version(self, subject_name: str, version: int | Literal["latest"] = "latest",
                        deleted: bool = False, fmt: str | None = None) -> RegisteredSchema:
            """A referenced schema (imports); cached in memory only, behind the breaker."""
            key = ("version", subject_name, version, fmt)
            if key in self._missing:
                raise SchemaNotFound(self._missing[key])
            if self.down is not None:
                raise RegistryUnavailable(self.down)
            try:
                return super().get_version(subject_name, version, deleted, fmt)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    self._missing[key] = f"the Schema Registry has no {subject_name} v{version}"
                    raise SchemaNotFound(self._missing[key]) from None
                self.down = (f"Schema Registry {self.settings.display_url} answered HTTP "
                             f"{exc.http_status_code}")
                raise RegistryUnavailable(self.down) from None
            except Exception as exc:
                self.down = (f"Schema Registry {self.settings.display_url} unreachable "
                             f"({type(exc).__name__})")
                raise RegistryUnavailable(self.down) from None

    return _RegistryClient
