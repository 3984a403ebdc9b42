"""Secrets in rejected connection input: never on stdout, stderr or in any state file.

Every shape of a malformed `-X` and `-F` line is tried with a planted secret,
through the real command line (`console.cli.main`), and the state directory
(log, audit) is searched afterwards. Valid Java `.properties` shapes are read.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from collectors.config import load_properties_file, parse_properties
from console.cli import main

X_SHAPES = [
    "sasl.password:{s}", "sasl.password {s}", "sasl.password\t{s}", " sasl.password : {s}",
    "{s}", "={s}", "sasl password={s}", "{s}:sasl.password", "{s} sasl.password",
    "sasl.password:{s}=x", "ssl.key.password\n{s}", "\"sasl.password\"={s}",
]
F_SHAPES = [
    "{s}\n", "={s}\n", ":{s}\n", "bootstrap.servers=127.0.0.1:1\n{s}\n",
    "sasl.password={s}\\u12\n", "sasl.password={s}\nbroken.escape=\\uZZZZ\n",
    "sasl.password: {s}\n  \n{s}\n", "sasl.jaas.config=x password=\"{s}\";\n{s}\n",
]


def _secret() -> str:
    return f"S3cr3t-{uuid.uuid4().hex}"


def _assert_nowhere(secret: str, out: str, err: str, state: Path) -> None:
    assert secret not in out and secret not in err, (out, err)
    for path in state.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("shape", X_SHAPES)
def test_malformed_x_never_shows_the_secret(shape: str, capsys, isolated_state: Path) -> None:
    secret = _secret()
    code = main(["-b", "127.0.0.1:1", "-X", "client.id=ok", "-X", shape.format(s=secret),
                 "replay", "g", "--topic", "t", "--to-earliest"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("lagdeck: error: -X expects key=value (argument 2 of -X")
    assert len(err.strip().splitlines()) == 1
    _assert_nowhere(secret, out, err, isolated_state)


@pytest.mark.parametrize("shape", F_SHAPES)
def test_malformed_properties_never_show_the_secret(shape: str, capsys, tmp_path: Path,
                                                    isolated_state: Path) -> None:
    secret = _secret()
    props = tmp_path / "client.properties"
    props.write_text(shape.format(s=secret))
    code = main(["-b", "127.0.0.1:1", "-F", str(props), "replay", "g", "--topic", "t",
                 "--to-earliest"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith(f"lagdeck: error: {props}:")
    _assert_nowhere(secret, out, err, isolated_state)


def test_every_java_separator_continuation_and_escape(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# comment\n! also a comment\n"
        "bootstrap.servers:broker1:9092,\\\n"
        "                  broker2:9092\n"
        "security.protocol SASL_SSL\n"
        "sasl.mechanism\t=\tPLAIN\n"
        "sasl.username   svc\\u00e9\n"
        "ssl.ca.location = C:\\\\certs\\\\ca.pem\n"
        "client\\ id=spaced\\=key\n"
    )
    assert load_properties_file(path) == {
        "bootstrap.servers": "broker1:9092,broker2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "svcé",
        "ssl.ca.location": "C:\\certs\\ca.pem",
        "client id": "spaced=key",
    }


def test_a_password_line_with_a_space_separator_is_read_not_refused() -> None:
    assert parse_properties("sasl.password pa55 word\n") == {"sasl.password": "pa55 word"}


def test_latin_1_properties_are_read_as_java_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_bytes("client.id=caf\xe9\n".encode("iso-8859-1"))
    assert load_properties_file(path) == {"client.id": "café"}
