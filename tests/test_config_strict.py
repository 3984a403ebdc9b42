"""config.toml is validated as strictly as rules files: every mistake, one line each,
`FILE:LINE: [section] key: what is wrong`, exit 2; never a traceback, never a guess."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.config import load_settings, resolve
from collectors.config_schema import SCHEMA, MapOf, Table
from collectors.errors import ConfigError
from console.cli import main
from console.context import _keymap_problems

KNOWN_MISTAKES = {
    # mistake line -> (the key named, a fragment of the message)
    'bootstrp = "k:9092"': ("bootstrp", "unknown key"),
    '[lagg]\nwindow = 3': ("lagg", "unknown section (did you mean 'lag'?)", 1),
    '[profiles.prod]\nbootstrap_servers = 9092':
        ("[profiles.prod] bootstrap_servers", "expected a string, got number 9092"),
    '[profiles.prod]\nbootstrap_servers = "k:1"\nread_only = "false"':
        ("[profiles.prod] read_only", "expected true or false without quotes"),
    '[dlq]\npatterns = "*-dlt"': ("[dlq] patterns", "expected a list of strings"),
    '[trace]\ncorrelation_headers = "x-id"': ("[trace] correlation_headers", "a list"),
    '[keymap]\n"dlq.redirve" = "x"': ('[keymap] "dlq.redirve"', "did you mean 'dlq.redrive'"),
    '[keymap]\n"app.quit" = "notakey+++"': ('[keymap] "app.quit"', "is not a key"),
    '[keymap]\n"dlq.redrive" = "space"': ('[keymap] "dlq.redrive"',
                                          "already bound to dlq.select on the Dead letters"),
    '[keymap]\n"app.quit" = "2"': ('[keymap] "app.quit"', "already bound to app.dead_letters"),
    '[schema_registry]\nurl = "https://sr:8081"\nbearer_tokn = "t"':
        ("[schema_registry] bearer_tokn", "did you mean 'bearer_token'"),
    '[lag]\nwindow = "10"': ("[lag] window", "expected a whole number"),
}


@pytest.mark.parametrize("mistake", list(KNOWN_MISTAKES))
def test_each_known_mistake_is_one_clear_line(mistake: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# my config\n" + mistake + "\n")
    assert main(["--config", str(path), "-b", "127.0.0.1:1", "replay", "g", "--topic", "t",
                 "--to-earliest"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    key, fragment, *at = KNOWN_MISTAKES[mistake]
    line = 1 + (at[0] if at else mistake.count("\n") + 1)
    assert lines[0].startswith(f"lagdeck: error: {path}:{line}: {key}: "), lines[0]
    assert fragment in lines[0] and "Traceback" not in err


def test_all_mistakes_in_one_report_in_file_order(tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'bootstrp = "k:9092"\n'                                   # 1
        '[profiles.prod]\nbootstrap_servers = 9092\n'             # 2, 3
        'read_only = "false"\n'                                   # 4
        '[lagg]\nwindow = 3\n'                                    # 5, 6
        '[dlq]\npatterns = "*-dlt"\n'                             # 7, 8
        '[keymap]\n"app.quit" = "notakey+++"\n"dlq.redrive" = "space"\n'  # 9, 10, 11
        '[[rule]]\nname = "r"\ngroup = "g"\nmax_lagg = 1\n')       # 12-15
    assert main(["--config", str(path), "-b", "127.0.0.1:1", "lag"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    numbers = [int(re.match(rf"lagdeck: error: {re.escape(str(path))}:(\d+): ", x).group(1))
               for x in lines]
    assert numbers == [1, 3, 4, 5, 8, 10, 11, 15], lines


def test_read_only_string_is_never_silently_true(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[profiles.p]\nbootstrap_servers = "k:1"\nread_only = "false"\n')
    with pytest.raises(ConfigError, match="read_only: expected true or false"):
        resolve(config_path=str(path), profile="p")
    path.write_text('[profiles.p]\nbootstrap_servers = "k:1"\nread_only = false\n')
    assert resolve(config_path=str(path), profile="p").cluster.read_only is False


def test_schema_registry_top_level_and_per_profile_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[schema_registry]\nurl = "https://sr:8081"\nusername = "u"\npassword = "pw-123456"\n'
        'ca_location = "/etc/ca.pem"\ntimeout = "10s"\n'
        '[profiles.p]\nbootstrap_servers = "k:1"\n'
        '[profiles.p.schema_registry]\nurl = "http://sr"\nbearer_token = "tok-123456"\n')
    settings = load_settings(path)
    assert settings.section("schema_registry")["url"] == "https://sr:8081"


def test_secret_values_are_not_quoted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[schema_registry]\nurl = "https://sr"\npassword = ["hunter2-secret"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "hunter2-secret" not in str(info.value) and "password" in str(info.value)


def test_rules_in_the_config_report_every_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[rule]]\nname = "a"\ngroup = "("\nmax_lag = 1\n'
                    '[[rule]]\nname = "b"\ngroup = "g"\nmax_lagg = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:3", f"{path}:8"]


# -- fuzz -------------------------------------------------------------------------------

_names = st.one_of(st.text(string.ascii_lowercase + "_.", min_size=1, max_size=12),
                 st.text(min_size=1, max_size=8))


def _known_keys(table) -> list[str]:
    return list(table.keys) if isinstance(table, Table) else []


_scalars = st.one_of(st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=12),
                     st.floats(allow_nan=False, allow_infinity=False),
                     st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3))


def _values(depth: int):
    if depth <= 0:
        return _scalars
    keys = st.one_of(_names, st.sampled_from(
        sorted({k for t in (SCHEMA, *SCHEMA.keys.values()) if isinstance(t, Table)
                for k in _known_keys(t)} | {"dlq.redrive", "app.quit", "prod", "url"})))
    return st.one_of(_scalars, st.dictionaries(keys, _values(depth - 1), max_size=4))


_documents = st.dictionaries(
    st.one_of(st.sampled_from(sorted(SCHEMA.keys)), _names), _values(3), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_documents)
def test_fuzzed_configs_give_located_lines_never_a_traceback(doc, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    try:
        load_settings(path, checks={"keymap": _keymap_problems})
    except ConfigError as exc:
        for line in str(exc).split("\n"):
            assert re.match(rf"{re.escape(str(path))}:\d+: \S", line), line


def test_map_sections_are_named_in_the_schema() -> None:
    assert isinstance(SCHEMA.keys["profiles"], MapOf)
    assert set(SCHEMA.keys["profiles"].value.keys) >= {"bootstrap_servers", "schema_registry"}
