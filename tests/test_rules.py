"""Alert rule and sink parsing: the contract format, and errors naming file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collectors.alerts.rules import (
    DEFAULT_HYSTERESIS,
    Severity,
    SinkType,
    load,
    load_rules_file,
    parse_rules_text,
    safe_url,
)
from collectors.config import load_settings
from collectors.durations import parse_duration
from collectors.errors import ConfigError
from collectors.redact import scrub
from collectors.snapshots import Status

DESIGN_EXAMPLE = """\
[[rule]]
name = "notifications-behind"
group = "notification-.*"     # regex on the consumer group
topic = ".*"                  # optional regex
max_lag = 1000                # messages, optional
max_lag_seconds = 60          # optional
min_status = "STALL"          # optional: fire at this status or worse
for = "30s"                   # optional: must hold this long before firing
severity = "critical"         # "warning" or "critical"

[[sink]]
type = "webhook"              # JSON POST; also "otlp" (metrics + events)
url = "http://127.0.0.1:9000/hooks/lag"
"""


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules_file(path)
    message = str(info.value)
    assert all(line.startswith(f"{path}:") for line in message.splitlines()), message
    return message


def test_design_example_parses(tmp_path: Path) -> None:
    ruleset = load_rules_file(write(tmp_path, DESIGN_EXAMPLE))
    (rule,) = ruleset.rules
    assert rule.name == "notifications-behind"
    assert rule.matches_group("notification-service")
    assert not rule.matches_group("payment-service")
    assert rule.matches_topic("payments.events")
    assert rule.max_lag == 1000
    assert rule.max_lag_seconds == 60.0
    assert rule.min_status is Status.STALL
    assert rule.for_seconds == 30.0
    assert rule.severity is Severity.CRITICAL
    assert rule.hysteresis == DEFAULT_HYSTERESIS
    assert rule.resolve_after == 30.0  # defaults to `for`
    assert rule.source == f"{tmp_path / 'rules.toml'}:1"
    (sink,) = ruleset.sinks
    assert sink.type is SinkType.WEBHOOK
    assert sink.url == "http://127.0.0.1:9000/hooks/lag"
    assert sink.retries == 3 and sink.timeout == 5.0


def test_group_regex_matches_the_whole_name(tmp_path: Path) -> None:
    rules = parse_rules_text('[[rule]]\nname="p"\ngroup="payment"\nmax_lag=1\n').rules
    assert rules[0].matches_group("payment")
    assert not rules[0].matches_group("payment-service")
    assert rules[0].topic is None and rules[0].matches_topic("anything")


def test_defaults_and_optional_keys() -> None:
    text = """
    [[rule]]
    name = "s"
    group = ".*"
    min_status = "stop"
    hysteresis = 0.25
    resolve_for = "1m"
    max_lag_seconds = "2m"
    """
    (rule,) = parse_rules_text(textwrap.dedent(text)).rules
    assert rule.severity is Severity.WARNING
    assert rule.for_seconds == 0.0
    assert rule.min_status is Status.STOP
    assert rule.hysteresis == 0.25
    assert rule.resolve_after == 60.0
    assert rule.max_lag_seconds == 120.0
    assert rule.max_lag is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("2d", 172800.0),
     ("1.5s", 1.5), (45, 45.0), (0.5, 0.5), ("10", 10.0), ("0s", 0.0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "s", "30 seconds", "-5s", "5m3", True, [1]])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_unknown_key_names_line_field_and_suggests(tmp_path: Path) -> None:
    message = error_of(tmp_path, """\
        # lag alerts
        [[rule]]
        name = "ok"
        group = "a"
        max_lag = 1

        [[rule]]
        name = "typo"
        group = "b"
        max_lagg = 10
        """)
    assert message.startswith(f"{tmp_path / 'rules.toml'}:10: rule 'typo': field 'max_lagg': ")
    assert "unknown field" in message
    assert "did you mean 'max_lag'" in message


def test_bad_regex_names_line_and_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, """\
        [[rule]]
        name = "r"
        max_lag = 1
        group = "notification-(.*"
        """)
    assert ":4: rule 'r': field 'group': bad regex 'notification-(.*'" in message
    assert "missing )" in message


def test_bad_topic_regex(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[[rule]]\nname="r"\ngroup="g"\ntopic="[a"\nmax_lag=1\n')
    assert ":4: rule 'r': field 'topic': bad regex" in message


def test_bad_duration_names_line_and_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, """\
        [[rule]]
        name = "r"
        group = "g"
        max_lag = 5
        for = "30 secs"
        """)
    assert ":5: rule 'r': field 'for': bad duration '30 secs'" in message


def test_typo_in_a_value_suggests(tmp_path: Path) -> None:
    message = error_of(tmp_path, """\
        [[rule]]
        name = "r"
        group = "g"
        min_status = "STAL"
        severity = "critcal"
        """)
    assert ":4: rule 'r': field 'min_status': 'STAL' is not one of" in message
    assert "did you mean 'STALL'" in message
    # every problem is reported, one line each, not just the first
    assert ":5: rule 'r': field 'severity': 'critcal' is not one of" in message
    assert len(message.splitlines()) == 2


def test_severity_typo(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[[rule]]\nname="r"\ngroup="g"\nmax_lag=1\nseverity="critcal"\n')
    assert ":5: rule 'r': field 'severity':" in message and "did you mean 'critical'" in message


def test_table_name_typo(tmp_path: Path) -> None:
    message = error_of(tmp_path, '\n[[rules]]\nname="r"\ngroup="g"\nmax_lag=1\n')
    assert ":2: unknown table or key 'rules' (did you mean 'rule'?)" in message


@pytest.mark.parametrize(
    ("body", "where", "fragment"),
    [
        ('name="r"\ngroup="g"\nmax_lag="10"\n', ":4: rule 'r': field 'max_lag'",
         "expected an integer, got string '10'"),
        ('name="r"\ngroup="g"\nmax_lag=-1\n', ":4: rule 'r': field 'max_lag'", "at least 0"),
        ('name="r"\ngroup="g"\nmax_lag_seconds=true\n', ":4: rule 'r': field 'max_lag_seconds'",
         "expected a number"),
        ('name="r"\ngroup="g"\n', ":1: rule 'r'", "needs at least one condition"),
        ('group="g"\nmax_lag=1\n', ":1: rule #1", "missing required field 'name'"),
        ('name="r"\nmax_lag=1\n', ":1: rule 'r'", "missing required field 'group'"),
        ('name="r"\ngroup="g"\nmax_lag=1\nhysteresis=1.5\n', ":5: rule 'r': field 'hysteresis'",
         "between 0 and 0.99"),
        ('name=""\ngroup="g"\nmax_lag=1\n', ":2: rule #1: field 'name'", "must not be empty"),
    ],
)
def test_value_errors(tmp_path: Path, body: str, where: str, fragment: str) -> None:
    message = error_of(tmp_path, "[[rule]]\n" + body)
    assert where in message
    assert fragment in message


def test_duplicate_rule_names(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[[rule]]\nname="r"\ngroup="a"\nmax_lag=1\n\n'
                                 '[[rule]]\nname="r"\ngroup="b"\nmax_lag=1\n')
    assert ":7: rule 'r': field 'name': duplicate rule name" in message
    assert "rules.toml:5" not in message and "rules.toml:1)" in message


def test_rule_as_plain_table_is_explained(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[rule]\nname="r"\ngroup="a"\nmax_lag=1\n')
    assert ":1: 'rule' must be written [[rule]]" in message


def test_invalid_toml_gives_file_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[[rule]]\nname = "r\ngroup="a"\n')
    assert "invalid TOML" in message and "line 2" in message


def test_sinks(tmp_path: Path) -> None:
    ruleset = load_rules_file(write(tmp_path, """\
        [[rule]]
        name = "r"
        group = "g"
        max_lag = 1

        [[sink]]
        type = "otlp"
        endpoint = "http://127.0.0.1:4318"
        timeout = "2s"

        [[sink]]
        type = "webhook"
        url = "https://hooks.example.com/services/T0/B0/sekrit-token"
        retries = 0
        headers = { Authorization = "Bearer abc-123-secret" }
        """))
    otlp, hook = ruleset.sinks
    assert otlp.type is SinkType.OTLP and otlp.endpoint == "http://127.0.0.1:4318"
    assert otlp.timeout == 2.0
    assert hook.retries == 0
    assert hook.headers == {"Authorization": "Bearer abc-123-secret"}
    # header credentials never reach a log line or an error
    assert "abc-123-secret" not in scrub("sent Authorization: Bearer abc-123-secret")
    # the URL path may hold a token: only scheme, host and port are ever shown
    assert hook.display() == "webhook https://hooks.example.com/..."
    assert "sekrit" not in hook.display()


def test_otlp_sink_without_endpoint_uses_the_environment() -> None:
    text = '[[rule]]\nname="r"\ngroup="g"\nmax_lag=1\n[[sink]]\ntype="otlp"\n'
    (sink,) = parse_rules_text(text).sinks
    assert sink.endpoint is None
    assert sink.display() == "otlp (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT)"


@pytest.mark.parametrize(
    ("body", "where", "fragment"),
    [
        ('type="webhok"\nurl="http://x"\n', ":2: sink #1: field 'type'", "did you mean 'webhook'"),
        ('url="http://x"\n', ":1: sink #1", "missing required field 'type'"),
        ('type="webhook"\n', ":1: sink #1", "missing required field 'url'"),
        ('type="webhook"\nurl="ftp://x/y"\n', ":3: sink #1: field 'url'",
         "expected an http:// or https:// URL"),
        ('type="webhook"\nurl="http://x"\nendpoint="http://y"\n', ":4: sink #1: field 'endpoint'",
         "unknown field"),
        ('type="otlp"\nurl="http://x"\n', ":3: sink #1: field 'url'", "unknown field"),
        ('type="webhook"\nurl="http://x"\ntimeout="0s"\n', ":4: sink #1: field 'timeout'",
         "more than zero"),
        ('type="webhook"\nurl="http://x"\nretries=99\n', ":4: sink #1: field 'retries'",
         "between 0 and 10"),
        ('type="webhook"\nurl="http://x"\nheaders={A=1}\n', ":4: sink #1: field 'headers'",
         "string header values"),
    ],
)
def test_sink_errors(tmp_path: Path, body: str, where: str, fragment: str) -> None:
    message = error_of(tmp_path, "[[sink]]\n" + body)
    assert where in message
    assert fragment in message


def test_safe_url() -> None:
    assert safe_url("http://user:pw@host:9000/hooks/x?token=1") == "http://host:9000/..."
    assert safe_url("http://host") == "http://host"
    assert safe_url("not a url") == "<invalid url>"


def test_rules_from_the_config_file(tmp_path: Path) -> None:
    config = write(tmp_path, """\
        default_profile = "local"

        [profiles.local]
        bootstrap_servers = "127.0.0.1:9092"

        [[rule]]
        name = "cfg"
        group = "g"
        max_lag = 3

        [[sink]]
        type = "webhook"
        url = "http://127.0.0.1:1/hook"
        """, name="config.toml")
    settings = load_settings(config)
    ruleset = load(None, settings)
    assert [r.name for r in ruleset.rules] == ["cfg"]
    assert ruleset.rules[0].source == f"{config}:6"
    assert ruleset.sinks[0].url == "http://127.0.0.1:1/hook"

    # a --rules file without sinks borrows the config file's sinks
    rules_file = write(tmp_path, '[[rule]]\nname="f"\ngroup="g"\nmax_lag=1\n')
    merged = load(rules_file, settings)
    assert [r.name for r in merged.rules] == ["f"]
    assert merged.sinks == ruleset.sinks


def test_config_file_errors_point_into_the_config(tmp_path: Path) -> None:
    config = write(tmp_path, '[profiles.x]\nbootstrap_servers="h:1"\n\n[[rule]]\nname="c"\n'
                             'group="g"\nmax_lag=1\nfor="soon"\n', name="config.toml")
    with pytest.raises(ConfigError, match=rf"^{config}:8: rule 'c': field 'for': bad duration"):
        load(None, load_settings(config))


def test_config_file_without_rules(tmp_path: Path) -> None:
    config = write(tmp_path, '[profiles.x]\nbootstrap_servers="h:1"\n', name="config.toml")
    with pytest.raises(ConfigError, match="no alert rules"):
        load(None, load_settings(config))


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rules file not found"):
        load_rules_file(tmp_path / "nope.toml")
