"""The connection layer: profiles, -F properties, -X overrides, precedence, redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from collectors.config import (
    java_to_librdkafka,
    load_properties_file,
    parse_overrides,
    parse_properties,
    resolve,
)
from collectors.errors import ConfigError, UsageError
from collectors.redact import REDACTED, redact_mapping, scrub

CONFIG = """
default_profile = "staging"

[profiles.staging]
bootstrap_servers = "staging-kafka:9092"

[profiles.prod]
bootstrap_servers = "prod-kafka:9093"
read_only = true
[profiles.prod.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "lagdeck"
"sasl.password" = "pr0d-Secr3t-value"
"enable.ssl.certificate.verification" = false
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def test_default_profile_is_used(config_file: Path) -> None:
    cfg = resolve(config_path=str(config_file))
    assert cfg.cluster.profile == "staging"
    assert cfg.cluster.bootstrap_servers == "staging-kafka:9092"
    assert cfg.cluster.read_only is False


def test_named_profile_passes_sasl_properties_through(config_file: Path) -> None:
    cfg = resolve(config_path=str(config_file), profile="prod")
    props = cfg.cluster.properties
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.password"] == "pr0d-Secr3t-value"
    assert props["enable.ssl.certificate.verification"] == "false"
    assert cfg.cluster.read_only is True


def test_flags_override_profile_only_when_typed(config_file: Path, tmp_path: Path) -> None:
    props_file = tmp_path / "client.properties"
    props_file.write_text("bootstrap.servers=from-file:9092\nclient.id=from-file\n")
    cfg = resolve(config_path=str(config_file), profile="prod", properties_file=str(props_file),
                  overrides=["client.id=from-x"])
    # -F beats the profile, -X beats -F; -b was not typed so -F's bootstrap stays.
    assert cfg.cluster.bootstrap_servers == "from-file:9092"
    assert cfg.cluster.properties["client.id"] == "from-x"
    assert cfg.cluster.read_only is True  # not typed: the profile decides
    typed = resolve(config_path=str(config_file), profile="prod", bootstrap_servers="cli:1",
                    read_only=False)
    assert typed.cluster.bootstrap_servers == "cli:1"
    assert typed.cluster.read_only is False


def test_unknown_profile_names_the_known_ones(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'qa'.*prod, staging"):
        resolve(config_path=str(config_file), profile="qa")


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        resolve(config_path=str(tmp_path / "nope.toml"))


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[profiles.x\nbootstrap_servers = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        resolve(config_path=str(bad))


def test_java_properties_syntax() -> None:
    text = (
        "# comment\n! also a comment\n\n"
        "bootstrap.servers = a:1,b:2\n"
        "security.protocol: SASL_SSL\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n"
        '    username="svc" password="jaas-pa55";\n'
        "key.serializer=org.apache.kafka.common.serialization.StringSerializer\n"
        "ssl.truststore.location=/etc/truststore.jks\n"
    )
    raw = parse_properties(text)
    assert raw["bootstrap.servers"] == "a:1,b:2"
    assert raw["security.protocol"] == "SASL_SSL"
    assert 'password="jaas-pa55"' in raw["sasl.jaas.config"]
    mapped = java_to_librdkafka(raw)
    assert mapped == {
        "bootstrap.servers": "a:1,b:2",
        "security.protocol": "SASL_SSL",
        "sasl.username": "svc",
        "sasl.password": "jaas-pa55",
    }


def test_malformed_properties_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=a:1\njust-a-word\n")
    with pytest.raises(ConfigError, match=r"client.properties:2: a line with a name and no value"):
        load_properties_file(path)


def test_missing_properties_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="properties file not found"):
        load_properties_file(tmp_path / "absent.properties")


def test_x_requires_key_value() -> None:
    assert parse_overrides(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(UsageError, match="-X expects key=value"):
        parse_overrides(["novalue"])


def test_redaction_of_mapping_repr_and_text(config_file: Path) -> None:
    cfg = resolve(config_path=str(config_file), profile="prod",
                  overrides=["ssl.key.password=k3y-pass", "sasl.oauthbearer.client.secret=oauth-s"])
    redacted = redact_mapping(cfg.cluster.properties)
    assert redacted["sasl.password"] == REDACTED
    assert redacted["ssl.key.password"] == REDACTED
    assert redacted["sasl.oauthbearer.client.secret"] == REDACTED
    assert redacted["sasl.username"] == "lagdeck"
    text = repr(cfg) + str(cfg.cluster)
    for secret in ("pr0d-Secr3t-value", "k3y-pass", "oauth-s"):
        assert secret not in text
        assert secret not in scrub(f"error: auth failed with password {secret}!")


def test_log_records_are_scrubbed(config_file: Path, isolated_state: Path) -> None:
    from collectors.logs import get_logger, log_path

    resolve(config_path=str(config_file), profile="prod")
    log = get_logger("test")
    log.warning("connecting with %s", "sasl.password=pr0d-Secr3t-value")
    for handler in logging.getLogger("lagdeck").handlers:
        handler.flush()
    content = log_path().read_text()
    assert "connecting with sasl.password=[redacted]" in content
    assert "pr0d-Secr3t-value" not in content
