"""`lagdeck trace` on the command line: text and JSON output, config, exit codes, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from console.cli import main
from console.commands.trace import ASCII_MARKS, UNICODE_MARKS, _marks, render
from tests.conftest import create_topics, kp_producer
from tracing.extract import DeadLetterInfo, EventInfo
from tracing.search import parse_duration
from tracing.timeline import build_timeline

integration = pytest.mark.integration
T0 = 1_700_000_000_000


@pytest.fixture
def order_topic(bootstrap: str, names) -> tuple[str, str]:
    """One topic holding order ord_cli's two events (written by kafka-python) and a stranger."""
    topic = names("cli")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    producer.send(topic, key=b"ord_cli", value=b'{"event": "OrderPlaced"}',
                  headers=[("x-request-id", b"req-77"),
                           ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                           b"00f067aa0ba902b7-01")])
    producer.send(topic, key=b"ord_cli", value=b'{"event": "OrderPaid"}')
    producer.send(topic, key=b"stranger", value=b'{"event": "OrderPlaced"}')
    producer.flush(10)
    producer.close(timeout=5)
    return topic, f"^{topic}$"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@integration
def test_json_output(capsys, bootstrap: str, order_topic) -> None:
    topic, regex = order_topic
    code, out, err = run(capsys, "-b", bootstrap, "trace", "ord_cli", "--topics", regex,
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["query"] == "ord_cli"
    assert [(e["topic"], e["offset"], e["event_type"]) for e in doc["events"]] == [
        (topic, 0, "OrderPlaced"), (topic, 1, "OrderPaid")]
    first = doc["events"][0]
    assert first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first["consumers"] == {} and first["stuck"] is False
    assert first["timestamp"].endswith("Z") and first["dead_letter"] is None


@integration
def test_text_output_and_not_found(capsys, bootstrap: str, order_topic) -> None:
    topic, regex = order_topic
    code, out, _ = run(capsys, "-b", bootstrap, "trace", "ord_cli", "--topics", regex)
    assert code == 0
    assert out.startswith("ord_cli: 2 events in the last 1d")
    assert f"{topic}[0]@0  OrderPlaced" in out and f"{topic}[0]@1  OrderPaid" in out
    assert "trace 4bf92f3577b34da6a3ce929d0e0e4736" in out
    code, out, _ = run(capsys, "-b", bootstrap, "trace", "ord_missing", "--topics", regex)
    assert code == 1
    assert "no events found" in out


@integration
def test_trace_section_of_the_config_file(capsys, bootstrap: str, order_topic,
                                          tmp_path: Path) -> None:
    _, regex = order_topic
    config = tmp_path / "lagdeck.toml"
    config.write_text('[trace]\ncorrelation_headers = ["X-Request-ID"]\n'
                      'trace_url = "http://jaeger:16686/trace/{trace_id}"\n')
    code, out, err = run(capsys, "--config", str(config), "-b", bootstrap, "trace", "req-77",
                         "--topics", regex, "--json")
    assert code == 0, err
    (event,) = json.loads(out)["events"]
    assert event["correlation_id"] == "req-77"
    assert event["trace_url"] == "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("argv, message", [
    (["trace", "ord_1", "--since", "yesterday"], "--since: 'yesterday' is not a duration"),
    (["trace", "ord_1", "--stuck-after", "5 minutes"], "--stuck-after"),
    (["trace", "   "], "the id to trace is empty"),
    (["trace", "x" * 300], "longer than 256 bytes"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "-b", "127.0.0.1:1", *argv)
    assert code == 2 and out == ""
    assert err.startswith("lagdeck: error: ") and message in err and err.count("\n") == 1


@integration
def test_bad_regex_and_no_matching_topic(capsys, bootstrap: str) -> None:
    code, _, err = run(capsys, "-b", bootstrap, "trace", "ord_1", "--topics", "(")
    assert code == 2 and "--topics: invalid regex" in err
    code, _, err = run(capsys, "-b", bootstrap, "trace", "ord_1", "--topics", "^nothing-here$")
    assert code == 1 and "no topic matches --topics" in err and err.count("\n") == 1


def test_bad_trace_config_is_a_config_error(capsys, tmp_path: Path) -> None:
    config = tmp_path / "lagdeck.toml"
    config.write_text('[trace]\norder_id_paths = "orderId"\ntrace_url = "jaeger/{nope}"\n')
    code, _, err = run(capsys, "--config", str(config), "-b", "127.0.0.1:1", "trace", "o")
    assert code == 2 and "[trace] trace_url" in err


def test_parse_duration() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1h30m") == 5400
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("250ms") == 0.25


def sample_timeline():
    dead = DeadLetterInfo("spring", "payments", 0, 4, "pay-svc", "com.shop.Boom", "it broke", 3)
    events = [
        EventInfo("orders", 0, 1, T0, "ord_1", "OrderPlaced", "ord_1", "ab" * 16, "cd" * 8),
        EventInfo("payments", 0, 4, T0 + 1000, "ord_1", "PaymentFailed", "ord_1", None, None),
        EventInfo("payments-dlt", 0, 0, T0 + 2000, "ord_1", None, None, None, None, dead),
        EventInfo("shipping", 0, 9, T0 + 86_400_000, None, None, None, None, None),
    ]
    committed = {"inv": {("orders", 0): 2}, "audit": {("orders", 0): 0},
                 "pay-svc": {("payments", 0): 5}}
    return build_timeline("ord_1", events, committed, now_ms=T0 + 2 * 86_400_000,
                          stuck_after_ms=300_000, since_seconds=86400 * 3,
                          notes=["orders was deleted and recreated"])


def test_render_marks_groups_dead_letters_and_stuck() -> None:
    text = render(sample_timeline())
    lines = text.splitlines()
    assert lines[0] == "ord_1: 4 events in the last 3d (times UTC; stuck after 5m)"
    assert "2023-11-14 22:13:20.000  orders[0]@1  OrderPlaced  STUCK" in text
    assert "… audit (pending)" in text and "✓ inv (processed)" in text
    assert "✗ pay-svc (dead-lettered)" in text
    assert "payments-dlt[0]@0  DEAD LETTER" in text
    assert "from payments[0]@4 by pay-svc: com.shop.Boom: it broke" in text
    assert "2023-11-15 22:13:20.000  shipping[0]@9" in text  # a new day shows its date
    assert "(no consumer group has committed offsets on this topic)" in text
    assert "note: orders was deleted and recreated" in text


def test_ascii_terminals_get_ascii_marks() -> None:
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert _marks(ascii_stream) is ASCII_MARKS
    assert _marks(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")) is UNICODE_MARKS
    text = render(sample_timeline(), ASCII_MARKS)
    assert ". audit (pending)" in text and "x pay-svc (dead-lettered)" in text
