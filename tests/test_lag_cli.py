"""`lagdeck lag` end to end: table, JSON per docs/contracts.md, and every failure as one line.

Runs the CLI in-process (`console.cli.main`) against the real broker; each
test has its own state directory, so the lag history starts empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.cli import main
from console.commands.lag import duration
from tests.conftest import create_topics, kp_producer

DESIGN_GROUP_KEYS = {"group", "state", "status", "total_lag", "max_lag_seconds", "partitions"}
DESIGN_PARTITION_KEYS = {"topic", "partition", "committed_offset", "end_offset", "lag",
                         "lag_seconds", "status"}


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = kp_producer(bootstrap)
    for i in range(count):
        producer.send(topic, value=f"v{i}".encode(), partition=0)
    producer.flush(10)
    producer.close(timeout=5)


def commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                     for (t, p), o in offsets.items()})
    consumer.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def lagging_group(bootstrap: str, names) -> tuple[str, str]:
    topic, group = names("cli-lag"), names("cli-lag-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 8)
    commit(bootstrap, group, {(topic, 0): 3})
    return topic, group


# ---------------------------------------------------------------- usage errors (exit 2)


def test_invalid_regex_is_a_usage_error(capsys) -> None:
    code, out, err = run(capsys, "-b", "127.0.0.1:1", "lag", "--group", "([unclosed")
    assert code == 2
    assert out == ""
    assert err.startswith("lagdeck: error: invalid group regex '([unclosed'")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("flag", "value", "text"), [
    ("--samples", "0", "--samples must be at least 1"),
    ("--interval", "-1", "--interval must be zero or positive"),
])
def test_bad_sampling_flags_are_usage_errors(capsys, flag: str, value: str, text: str) -> None:
    code, _, err = run(capsys, "-b", "127.0.0.1:1", "lag", flag, value)
    assert code == 2
    assert text in err and err.count("\n") == 1


def test_no_cluster_given(capsys) -> None:
    code, _, err = run(capsys, "lag")
    assert code == 2
    assert "no cluster given" in err and err.count("\n") == 1


def test_bad_lag_section_names_the_file(capsys, tmp_path: Path, bootstrap: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[lag]\nwindow = "ten"\n')
    code, _, err = run(capsys, "--config", str(config), "-b", bootstrap, "lag")
    assert code == 2
    assert f"{config}:2: [lag] window: expected a whole number" in err
    assert err.count("\n") == 1


# ---------------------------------------------------------------- failures (exit 1)


def test_unreachable_broker_is_one_line(capsys) -> None:
    code, out, err = run(capsys, "-b", "127.0.0.1:1", "lag")
    assert code == 1
    assert out == ""
    assert err.startswith("lagdeck: error: cannot reach Kafka at 127.0.0.1:1")
    assert err.count("\n") == 1


@pytest.mark.integration
def test_regex_matching_nothing(capsys, bootstrap: str, lagging_group) -> None:
    code, out, err = run(capsys, "-b", bootstrap, "lag", "--group", "^no-such-group-anywhere$")
    assert code == 1
    assert out == ""
    assert err.startswith("lagdeck: error: no consumer group matches '^no-such-group-anywhere$'")
    assert "groups with committed offsets" in err
    assert err.count("\n") == 1


# ---------------------------------------------------------------- output


@pytest.fixture
def roomy(tmp_path: Path) -> list[str]:
    """A config giving exact reads room: a loaded test machine stays exact."""
    config = tmp_path / "config.toml"
    config.write_text('[lag]\nexact_budget = "10s"\n')
    return ["--config", str(config)]


@pytest.mark.integration
def test_json_has_the_design_keys(capsys, bootstrap: str, lagging_group, roomy) -> None:
    topic, group = lagging_group
    code, out, err = run(capsys, *roomy, "-b", bootstrap, "lag", "--group", f"^{group}$",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    [g] = doc["groups"]
    assert set(g) >= DESIGN_GROUP_KEYS
    assert (g["group"], g["state"], g["total_lag"]) == (group, "EMPTY", 5)
    # stopped, lagging, first seen now: not judged until `grace` of evidence (not OK)
    assert g["status"] == "UNKNOWN"
    assert doc["offsets_via"] == "batched" and "OffsetFetch v8" in doc["offsets_via_reason"]
    [p] = g["partitions"]
    assert DESIGN_PARTITION_KEYS | {"lag_seconds_method"} <= set(p)
    assert (p["topic"], p["partition"], p["committed_offset"], p["end_offset"], p["lag"]) == (
        topic, 0, 3, 8, 5)
    assert p["lag_seconds_method"] == "exact"
    assert isinstance(p["lag_seconds"], float) and p["lag_seconds"] >= 0
    assert g["max_lag_seconds"] == p["lag_seconds"]


@pytest.mark.integration
def test_table_lists_groups_and_partitions_on_request(capsys, bootstrap: str,
                                                      lagging_group, roomy) -> None:
    topic, group = lagging_group
    code, out, _ = run(capsys, "-b", bootstrap, "lag")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:4] == ["GROUP", "STATE", "STATUS", "TOTAL"]
    row = next(line for line in out.splitlines() if line.startswith(group))
    assert row.split()[:4] == [group, "EMPTY", "UNKNOWN", "5"]
    assert topic not in out  # partitions only with -v or --group

    code, out, _ = run(capsys, *roomy, "-b", bootstrap, "lag", "-v")
    assert f"{group}  (state EMPTY, members: none)" in out
    partition_row = next(line for line in out.splitlines() if line.strip().startswith(topic))
    assert partition_row.split()[:6] == [topic, "0", "3", "8", "5", partition_row.split()[5]]
    assert "exact" in partition_row


@pytest.mark.integration
def test_first_run_samples_again_then_judges(capsys, bootstrap: str, lagging_group) -> None:
    _, group = lagging_group
    code, out, err = run(capsys, "-b", bootstrap, "lag", "--group", f"^{group}$", "--json",
                         "--interval", "0.2")
    assert code == 0
    assert "took 1 more sample 0.2s apart to judge their status" in err
    g = json.loads(out)["groups"][0]
    # two samples now: judged by the rules, and a group stopped for 0.2 s is not yet STOP
    assert "needs" not in g["status_reason"]
    assert g["status"] == "UNKNOWN"
    assert "judged after 10s" in g["status_reason"]
    # with --samples the user decides: one sample, no extra
    code, out, err = run(capsys, "-b", bootstrap, "lag", "--group", f"^{group}$", "--json",
                         "--samples", "1")
    assert "more sample" not in err


@pytest.mark.integration
def test_own_redrive_groups_hidden_unless_all(capsys, bootstrap: str, lagging_group,
                                              names) -> None:
    topic, group = lagging_group
    own = f"lagdeck-redrive.{names('hidden')}"
    commit(bootstrap, own, {(topic, 0): 2})
    code, out, _ = run(capsys, "-b", bootstrap, "lag", "--json", "--samples", "1")
    listed = {g["group"] for g in json.loads(out)["groups"]}
    assert group in listed and own not in listed
    code, out, _ = run(capsys, "-b", bootstrap, "lag", "--json", "--samples", "1", "--all")
    assert {group, own} <= {g["group"] for g in json.loads(out)["groups"]}
    code, out, err = run(capsys, "-b", bootstrap, "lag", "--group", f"^{own}$")
    assert code == 1 and "add --all" in err


@pytest.mark.integration
def test_group_on_a_deleted_topic(capsys, bootstrap: str, names) -> None:
    from kafka.admin import KafkaAdminClient

    topic, group = names("cli-doomed"), names("cli-doomed-g")
    create_topics(bootstrap, topic)
    produce(bootstrap, topic, 4)
    commit(bootstrap, group, {(topic, 0): 1})
    assert run(capsys, "-b", bootstrap, "lag", "--group", f"^{group}$")[0] == 0
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.delete_topics([topic], timeout_ms=10_000)
    admin.close()

    code, out, err = run(capsys, "-b", bootstrap, "lag", "--group", f"^{group}$")
    assert code == 0
    assert err == (f"lagdeck: warning: group '{group}' has offsets on topic '{topic}', "
                   "which no longer exists\n")
    row = next(line for line in out.splitlines() if line.startswith(group))
    assert row.split()[2] == "ERR"
    assert "topic deleted" in out

    code, out, _ = run(capsys, "-b", bootstrap, "lag", "--group", f"^{group}$", "--json")
    [p] = json.loads(out)["groups"][0]["partitions"]
    assert (p["topic"], p["error"], p["status"], p["lag"]) == (topic, "topic deleted", "ERR",
                                                               None)


def test_durations_read_well() -> None:
    assert duration(None) == "-"
    assert duration(0.0) == "0s"
    assert duration(4.25) == "4.2s"
    assert duration(75, "interpolated") == "~1m15s"
    assert duration(7300, "extrapolated") == "~2h01m"
    assert duration(3 * 86400 + 3600) == "3d01h"
