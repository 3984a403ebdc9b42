"""Every settings section is parsed once, at start-up, and all problems are reported
together (exit 2, `FILE:LINE: [section] key: what is wrong`) before anything opens.

A bad `[trace]` value used to fall back to the defaults silently and a bad
`[dlq]` one showed only when the dead-letter screen opened; now `lagdeck`
(the TUI) and every command refuse to start with one line per problem.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.config import Settings, load_settings
from collectors.errors import ConfigError
from console.cli import main
from console.settings import ConsoleSettings, SectionParser

#: a type mistake the schema catches, two meaning mistakes only the features' parsers
#: know about (a placeholder trace_url does not have, a duration out of range)
BAD = ('# my config\n'
       '[dlq]\nprobe = "three"\n'                       # 2, 3
       '[trace]\ntrace_url = "http://jaeger/{nope}"\n'  # 4, 5
       '[outage]\nshow_after = "20m"\n')                # 6, 7


def _located(err: str, path: Path) -> list[tuple[int, str]]:
    out = []
    for line in err.strip().splitlines():
        found = re.match(rf"lagdeck: error: {re.escape(str(path))}:(\d+): (.*)$", line)
        assert found, line
        out.append((int(found.group(1)), found.group(2)))
    return out


def _expect_all_three(err: str, path: Path) -> None:
    assert "Traceback" not in err
    located = _located(err, path)
    assert [n for n, _ in located] == [3, 5, 7], err
    assert located[0][1].startswith("[dlq] probe: expected a whole number")
    assert located[1][1].startswith("[trace] trace_url: may only use the placeholders")
    assert located[2][1].startswith("[outage] show_after: must be from 500ms to 10m")


def test_a_command_reports_every_bad_section_at_start_up(tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BAD)
    # `lag` reads neither [trace] nor [dlq] nor [outage]: they are checked all the same
    assert main(["--config", str(path), "-b", "127.0.0.1:1", "lag"]) == 2
    _expect_all_three(capsys.readouterr().err, path)


@pytest.mark.parametrize(("value", "problem"), [
    ('"1h"', "timeout: must be a number of seconds or a duration between 0 and 300s"),
    ('"5 parsecs"', "timeout: expected a duration"),
])
def test_a_bad_schema_registry_section_is_reported_at_start_up(tmp_path: Path, capsys,
                                                               value: str,
                                                               problem: str) -> None:
    # `lag` decodes no payload: the registry section used to be checked only by a
    # command that built the client (trace, dlq show), after it had started
    path = tmp_path / "config.toml"
    path.write_text(f'[schema_registry]\nurl = "http://sr:8081"\ntimeout = {value}\n')
    assert main(["--config", str(path), "-b", "127.0.0.1:1", "lag"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lagdeck: error: {path}:3: [schema_registry] {problem}"), err
    assert err.count("\n") == 1, err


def test_the_tui_reports_them_before_the_app_opens(tmp_path: Path, capsys,
                                                   monkeypatch) -> None:
    from console.app import LagdeckApp

    opened: list[LagdeckApp] = []
    monkeypatch.setattr(LagdeckApp, "run", lambda self, *a, **kw: opened.append(self))
    path = tmp_path / "config.toml"
    path.write_text(BAD)
    assert main(["--config", str(path), "-b", "127.0.0.1:1"]) == 2
    _expect_all_three(capsys.readouterr().err, path)
    assert not opened
    # and the demo (the same composition root) before its broker starts
    assert main(["--config", str(path), "demo", "--duration", "1"]) == 2
    _expect_all_three(capsys.readouterr().err, path)
    assert not opened


def test_the_console_opens_with_the_parsed_sections(tmp_path: Path, monkeypatch) -> None:
    from console.app import LagdeckApp

    opened: list[LagdeckApp] = []
    monkeypatch.setattr(LagdeckApp, "run", lambda self, *a, **kw: opened.append(self))
    path = tmp_path / "config.toml"
    path.write_text('[trace]\ncorrelation_headers = ["x-order"]\n'
                    '[outage]\nshow_after = "2s"\n'
                    '[keymap]\n"help.close" = "f2"\n'
                    '[dlq]\nextra_patterns = ["*.graveyard"]\n'
                    '[[rule]]\nname = "r"\ngroup = ".*"\nmax_lag = 10\n')
    assert main(["--config", str(path), "-b", "127.0.0.1:1"]) == 0
    [app] = opened
    parsed = app.settings
    assert parsed.trace.correlation_headers == ("x-order",)
    assert parsed.outage.show_after == 2.0 and app.outage is parsed.outage
    assert dict(parsed.keymap) == {"help.close": "f2"} and app.keymap == {"help.close": "f2"}
    assert "*.graveyard" in parsed.dlq.patterns
    assert [r.name for r in parsed.rules.rules] == ["r"]
    source = app.source
    assert getattr(source, "parsed", None) is parsed  # the source gets the same object
    app.source.close()


def test_an_absent_section_gets_the_defaults() -> None:
    parsed = ConsoleSettings.from_settings(Settings(data={}))
    assert parsed == ConsoleSettings()
    with pytest.raises(ConfigError) as info:
        ConsoleSettings.from_settings(Settings(
            path=Path("c.toml"), text='[trace]\njaeger_timeout = 0\n[lag]\nwindow = 99\n',
            data={"trace": {"jaeger_timeout": 0}, "lag": {"window": 99}}))
    assert [line.split(": ")[0] for line in str(info.value).splitlines()] == \
        ["c.toml:2", "c.toml:4"]


# -- fuzz: whatever the file holds, every line is located, never a traceback ----------

_scalar = st.one_of(st.booleans(), st.integers(-5, 10**6), st.text(max_size=10),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.lists(st.text(max_size=6), max_size=3))
_keys = {
    "lag": ["window", "min_samples", "grace", "exact_budget", "offsets_via", "allowed_lag"],
    "outage": ["show_after", "reconnect_max"],
    "trace": ["trace_url", "jaeger_timeout", "scan_processes", "correlation_headers"],
    "dlq": ["patterns", "probe", "sample", "content_scan"],
    "keymap": ["app.quit", "help.close", "dlq.redrive"],
}
_sections = st.fixed_dictionaries({}, optional={
    name: st.dictionaries(st.sampled_from(keys), _scalar, max_size=3)
    for name, keys in _keys.items()})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_sections)
def test_fuzzed_sections_give_located_lines_never_a_traceback(doc, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    parser = SectionParser()
    try:
        loaded = load_settings(path, checks=parser.checks())
    except ConfigError as exc:
        for line in str(exc).split("\n"):
            assert re.match(rf"{re.escape(str(path))}:\d+: \S", line), line
        return
    assert isinstance(parser.result(loaded), ConsoleSettings)
