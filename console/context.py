"""What every command gets: the parsed global options, the resolved config, output helpers."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import operator
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from collectors.config import LagdeckConfig, resolve
from collectors.registry import RegistryConfig, registry_config
from collectors.snapshots import LagSnapshot
from collectors.untrusted import as_text, json_text

if TYPE_CHECKING:
    from console.settings import ConsoleSettings


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @property
    def config(self) -> LagdeckConfig:
        """Resolved lazily, so `--help` and `broker` work without any config."""
        return self._loaded[0]

    @property
    def settings(self) -> ConsoleSettings:
        """Every settings section, parsed once with the config (`console.settings`)."""
        return self._loaded[1]

    @cached_property
    def _loaded(self) -> tuple[LagdeckConfig, ConsoleSettings]:
        """The config file read, checked and every section parsed, once: all problems
        (names, types, meanings) are reported together before any command runs."""
        from console.settings import SectionParser

        a = self.args
        sections = SectionParser()
        config = resolve(
            bootstrap_servers=a.bootstrap_servers,
            overrides=a.overrides,
            properties_file=a.properties_file,
            profile=a.profile,
            config_path=a.config_path,
            read_only=a.read_only,
            checks=sections.checks(),
        )
        return config, sections.result(config.settings)

    @cached_property
    def snapshots_topic(self) -> str | None:
        """The snapshot topic to read lag from (`--from-snapshots`, else the profile's
        `snapshots`), or None to poll the groups."""
        typed = getattr(self.args, "from_snapshots", None)
        config = self.config
        if typed is None and config.cluster.profile is None:
            return None  # no profile, no setting: the snapshot reader is not even imported
        from collectors.snapshot_topic import check_topic_name, snapshots_setting

        if typed is not None:
            return check_topic_name(typed)
        return snapshots_setting(config.settings.data, config.cluster.profile)

    @cached_property
    def registry(self) -> RegistryConfig | None:
        """The Schema Registry: `--schema-registry`, else `[schema_registry]` (profile first)."""
        config = self.config
        return registry_config(config.settings, config.cluster.profile,
                               getattr(self.args, "schema_registry", None))


_PLAIN = (str, int, float, bool, type(None))


def _keymap_problems(section: Any) -> list:
    """`[keymap]` checked alone (textual is imported only then); start-up checks it
    with every other section through `console.settings.SectionParser`."""
    from console.keymap import keymap_problems

    return keymap_problems(section)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths, bytes and tuples into plain JSON values."""
    if type(value) in _PLAIN:  # the bulk of a large document: answer before the checks
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return as_text(value)
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(document: Any, *, compact: bool = False) -> None:
    """One JSON document on stdout, as docs/contracts.md promises for every `--json`.

    `compact`: one line. Indentation makes `json` use its pure-Python encoder,
    about 0.5 s for the 10,000 partitions of 1,000 groups; commands with big
    documents pass it. A compact lag snapshot is encoded by orjson (`_fast_bytes`),
    byte for byte what the `json` path writes, ten times sooner.
    """
    data = _fast_bytes(document) if compact else None
    out = getattr(sys.stdout, "buffer", None)
    if data is not None and out is not None and data.isascii() and b"\x7f" not in data:
        # printable ASCII (orjson escapes every control below 0x20): `json_text` would
        # change nothing, so the UTF-8 goes out as it is, without a decode and re-encode
        sys.stdout.flush()
        out.write(data)
        out.write(b"\n")
        out.flush()
        return
    text = data.decode() if data is not None else None
    if text is None:
        text = json.dumps(to_jsonable(document), indent=None if compact else 2,
                          ensure_ascii=False, separators=(",", ":") if compact else None)
    # same meaning, but no C1 control, bidi override or lone surrogate reaches the terminal
    sys.stdout.write(json_text(text) + "\n")
    sys.stdout.flush()


def _fast_text(document: Any) -> str | None:
    data = _fast_bytes(document)
    return None if data is None else data.decode()


def _fast_bytes(document: Any) -> bytes | None:
    """A compact lag snapshot through orjson (UTF-8), or None (the `json` path then).

    orjson writes what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))`
    writes for strings, ints, None, booleans, lists, str-keyed dicts, enums and
    dataclasses (fields in order), and raises (so: None) on a lone surrogate, a
    64-bit overflow or a non-str key. Floats differ only when not finite (null vs
    NaN) or below 1e-4 (`0.00001` vs `1e-05`): a snapshot with such a float goes the
    `json` way. Anything else (bytes, paths, sets) is handed to `to_jsonable`.
    """
    if type(document) is not LagSnapshot or not _plain_floats(document):
        return None
    try:
        return orjson.dumps(document, default=to_jsonable)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _plain_floats(snapshot: LagSnapshot) -> bool:
    """Every float of the snapshot is written alike by `json` and orjson.

    Each distinct value is checked once: 100,000 partitions hold far fewer distinct
    lags in seconds (groups at one offset share theirs; many are None or 0.0)."""
    values: set[Any] = set()
    add = values.update
    try:
        for g in snapshot.groups:
            add(map(_lag_seconds, g.partitions))  # a loop in C per group
        values.update(g.max_lag_seconds for g in snapshot.groups)
    except TypeError:  # an unhashable value: not a float either
        return False
    values.add(snapshot.taken_at)
    return all(_same_in_both(v) for v in values)


_lag_seconds = operator.attrgetter("lag_seconds")


def _same_in_both(value: Any) -> bool:
    if value is None or type(value) is int:
        return True
    return type(value) is float and (value == 0.0 or 1e-4 <= abs(value) < math.inf)


def scan_progress() -> Callable[[int, int], None] | None:
    """A `scanning N/M records` line on a terminal's stderr for long scans (trace, flows);
    None when stderr is not a terminal (cron, pipes), so nothing is written there."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total >= 50_000:
            sys.stderr.write(f"\rscanning {done:,}/{total:,} records")
            sys.stderr.flush()

    return show
