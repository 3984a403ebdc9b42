"""Every settings section the console uses, parsed and checked once, at start-up.

The features own their sections' meanings (`[lag]` in `collectors.lag`,
`[outage]` in `collectors.liveness`, `[trace]` in `tracing.settings`,
`[dlq]` in `dlq.options`, `[[rule]]` in `collectors.alerts.rules`, `[keymap]` in
`console.keymap`). Read on first use, a bad `[dlq]` showed only when that
screen opened and a bad `[trace]` silently fell back to the defaults; here
each parser runs once while the config file is checked (a section check of
`collectors.config.resolve`), so its problems come out with the schema's, one
`FILE:LINE: [section] key: what is wrong` line each, and the program stops
(exit 2) before anything opens. The result is one frozen `ConsoleSettings`,
built by the composition root (`console.context.Context`) and passed down:
nothing below re-reads the raw `Settings`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from collectors.alerts.rules import RuleSet
from collectors.alerts.rules import from_settings as rules_from_settings
from collectors.config import SectionCheck, Settings
from collectors.config_schema import Problem, report, validate
from collectors.errors import ConfigError
from collectors.lag import LagSettings
from collectors.liveness import OutageSettings
from dlq.options import DiscoveryOptions
from tracing.settings import TraceSettings
from tracing.settings import from_settings as trace_from_settings


@dataclass(frozen=True)
class ConsoleSettings:
    """The parsed `[lag]`, `[outage]`, `[trace]`, `[dlq]`, `[[rule]]`/`[[sink]]` and
    `[keymap]` sections; the defaults for a section the file does not have."""

    lag: LagSettings = field(default_factory=LagSettings)
    outage: OutageSettings = field(default_factory=OutageSettings)
    trace: TraceSettings = field(default_factory=TraceSettings)
    dlq: DiscoveryOptions = field(default_factory=DiscoveryOptions)
    rules: RuleSet = field(default_factory=RuleSet)
    #: binding id -> keys (`console.keymap`), already checked
    keymap: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | None) -> ConsoleSettings:
        """Parse an already loaded config (tests, benches, a source built by hand);
        every problem in one `ConfigError`, one located line each."""
        if settings is None:
            return cls()
        parser = SectionParser()
        problems: list[Problem] = []
        for name, check in parser.checks().items():
            if name in settings.data:  # names and types first, as `load_settings` does
                problems += validate({name: settings.data[name]}) + check(settings.data[name])
        if problems:
            raise ConfigError("\n".join(report(problems, settings.text,
                                               str(settings.path or "the config file"))))
        return parser.result(settings)


#: section -> the feature's own parser of it
_PARSERS: dict[str, Callable[[Settings], Any]] = {
    "lag": LagSettings.from_settings,
    "outage": OutageSettings.from_settings,
    "trace": trace_from_settings,
    "dlq": DiscoveryOptions.from_settings,
}


class SectionParser:
    """Runs each section's parser once, as a section check of the config file.

    `checks()` goes to `collectors.config.resolve(checks=...)`, which runs a
    check only for a section present in the file and reports its problems
    with the schema's; `result()` then assembles what the checks parsed.
    """

    def __init__(self) -> None:
        self.lag = LagSettings()
        self.outage = OutageSettings()
        self.trace = TraceSettings()
        self.dlq = DiscoveryOptions()
        self.keymap: dict[str, str] = {}

    def checks(self) -> dict[str, SectionCheck]:
        out: dict[str, SectionCheck] = {name: partial(self._parse, name) for name in _PARSERS}
        out["keymap"] = self._parse_keymap
        out["schema_registry"] = self._check_registry
        return out

    def _check_registry(self, section: Any) -> list[Problem]:
        """`[schema_registry]`: checked here with the rest (a `timeout = "1h"` used to
        show only when a command first decoded a payload); the client itself is built
        by `collectors.registry.registry_config` when a command needs one."""
        from collectors.registry import registry_config

        if not isinstance(section, Mapping) or validate({"schema_registry": section}):
            return []  # the schema reports names and types; meanings need them right
        try:
            registry_config(Settings(data={"schema_registry": section}))
        except ConfigError as exc:
            return [_problem("schema_registry", section, str(exc))]
        return []

    def _parse(self, name: str, section: Any) -> list[Problem]:
        if not isinstance(section, Mapping) or validate({name: section}):
            return []  # the schema reports names and types; meanings need them right
        try:
            setattr(self, name, _PARSERS[name](Settings(data={name: section})))
        except ConfigError as exc:
            return [_problem(name, section, str(exc))]
        return []

    def _parse_keymap(self, section: Any) -> list[Problem]:
        """`[keymap]`: textual (for its key names) is imported only when there is one."""
        from console.keymap import keymap_problems

        problems = keymap_problems(section)
        if not problems and isinstance(section, Mapping):
            self.keymap = {str(k): str(v).strip() for k, v in section.items()
                           if isinstance(v, str) and v.strip()}
        return problems

    def result(self, settings: Settings) -> ConsoleSettings:
        """The parsed sections; the rules come from the alerting module, which checked
        them with the rest of the file (`collectors.config.config_problems`)."""
        return ConsoleSettings(lag=self.lag, outage=self.outage, trace=self.trace,
                               dlq=self.dlq, rules=rules_from_settings(settings),
                               keymap=dict(self.keymap))


def _problem(name: str, section: Mapping[str, Any], message: str) -> Problem:
    """A parser's one-line error as a located problem: at the key it names when it
    names one of the section's keys, else at the section; the parser's own
    `config: [name]` prefix is dropped (the report adds `FILE:LINE: [name] key:`)."""
    text = re.sub(rf"^config: (?:invalid )?\[{re.escape(name)}\](?: section)?:? ?", "",
                  message.split("\n")[0])
    for key in section:
        if re.search(rf"(?<![\w.]){re.escape(str(key))}(?![\w.])", text):
            rest = re.sub(rf"^{re.escape(str(key))}:? ", "", text)
            return Problem((name, str(key)), rest)
    return Problem((name,), text)
