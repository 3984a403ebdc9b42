"""Schema Registry payloads: the test registry, decoding, failures and `dlq show`.

Records are written by confluent-kafka's real `AvroSerializer`,
`ProtobufSerializer` (a nested message, index path [1, 0]) and
`JSONSerializer` against `tests/registry_server.py`, then produced to the
real broker with kafka-python, as another team's service would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError

from collectors.config import Settings
from collectors.errors import ConfigError
from collectors.registry import RegistryClient, RegistryConfig, registry_config
from console.cli import main
from tests.conftest import create_topics, kp_producer
from tests.registry_server import RegistryServer, SilentServer
from tests.sr_fixtures import ORDER_PLACED_AVRO, Writers, order_placed, registry_client
from tracing.frames import AVRO, BINARY, JSON_SCHEMA, PROTOBUF, PayloadDecoder, find_frame

integration = pytest.mark.integration
SPRING = [("kafka_dlt-original-topic", b"orders"),
          ("kafka_dlt-original-partition", b"\x00\x00\x00\x00"),
          ("kafka_dlt-original-offset", b"\x00\x00\x00\x00\x00\x00\x00\x07"),
          ("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException"),
          ("kafka_dlt-exception-message", b"boom")]


# -- the test registry answers as Confluent documents -------------------------------------


def test_registry_endpoints_and_error_codes(registry) -> None:
    client = registry_client(registry.url)
    subject = "endpoints-value"
    sid = client.register_schema(subject, Schema(ORDER_PLACED_AVRO, "AVRO"))
    assert client.register_schema(subject, Schema(ORDER_PLACED_AVRO, "AVRO")) == sid
    fresh = registry_client(registry.url)  # no client-side cache
    assert json.loads(fresh.get_schema(sid).schema_str)["name"] == "OrderPlaced"
    assert subject in fresh.get_subjects()
    assert fresh.get_versions(subject) == [1]
    latest = fresh.get_latest_version(subject)
    assert (latest.schema_id, latest.version, latest.subject) == (sid, 1, subject)
    assert fresh.lookup_schema(subject, Schema(ORDER_PLACED_AVRO, "AVRO")).schema_id == sid
    assert fresh.get_version(subject, 1).schema_id == sid
    codes = {}
    for name, call in {
        "schema": lambda: fresh.get_schema(9999),
        "subject": lambda: fresh.get_versions("nope-value"),
        "version": lambda: fresh.get_version(subject, 5),
        "invalid": lambda: fresh.register_schema("bad-value", Schema('{"type": "nope"}', "AVRO")),
        "lookup": lambda: fresh.lookup_schema(subject, Schema('"string"', "AVRO")),
    }.items():
        with pytest.raises(SchemaRegistryError) as info:
            call()
        codes[name] = (info.value.http_status_code, info.value.error_code)
    assert codes == {"schema": (404, 40403), "subject": (404, 40401), "version": (404, 40402),
                     "invalid": (422, 42201), "lookup": (404, 40403)}
    client.close()
    fresh.close()


# -- decoding ------------------------------------------------------------------------------


def test_real_serializers_decode_with_the_registry(registry, writers) -> None:
    decoder = PayloadDecoder(RegistryConfig(registry.url, timeout=2))
    avro = decoder.decode(writers.avro("dec-a", order_placed("ord_av")), None, "dec-a")
    assert avro.format == AVRO and avro.record_name == "OrderPlaced"
    assert avro.value["order"] == {"orderId": "ord_av", "lines": ["sku-1", "sku-2"]}
    proto_bytes = writers.proto("dec-p", shipment_id="shp-1", order_id="ord_pb")
    assert proto_bytes[5:8] == b"\x04\x02\x00"  # message indexes [1, 0], zigzag
    proto = decoder.decode(proto_bytes, None, "dec-p")
    assert proto.format == PROTOBUF and proto.record_name == "OrderShipped"
    assert proto.value["detail"] == {"order_id": "ord_pb", "carrier": "DHL"}
    js = decoder.decode(writers.json("dec-j", {"orderId": "ord_js", "amount": 3.5}), None, "d")
    assert (js.format, js.value, js.record_name) == (JSON_SCHEMA, {"orderId": "ord_js",
                                                                   "amount": 3.5},
                                                     "PaymentCaptured")
    assert avro.schema_id != proto.schema_id != js.schema_id


def test_schema_guid_in_a_header_is_decoded(registry, writers) -> None:
    from confluent_kafka.schema_registry import header_schema_id_serializer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(writers.client, ORDER_PLACED_AVRO,
                                conf={"schema.id.serializer": header_schema_id_serializer})
    headers: list = []
    value = serializer(order_placed("ord_hdr"), SerializationContext("hdr", MessageField.VALUE,
                                                                     headers))
    assert value[0] != 0 and headers[0][0] == "__value_schema_id"  # a bare Avro body
    decoder = PayloadDecoder(RegistryConfig(registry.url, timeout=2))
    payload = decoder.decode(value, headers, "hdr")
    assert payload.format == AVRO and payload.value["order"]["orderId"] == "ord_hdr"
    assert registry.requests("/schemas/guids/")
    assert decoder.decode(value, [("__value_schema_id", b"\x09junk")], "hdr").note.startswith(
        "schema id header has wrong magic byte 0x09")


def test_frames_that_cannot_be_decoded_come_back_raw_with_a_note(registry, writers) -> None:
    good = writers.avro("notes", order_placed("ord_n"))
    decoder = PayloadDecoder(RegistryConfig(registry.url, timeout=2))
    cases = {
        "unknown id": b"\x00\x00\x00\x7f\xff" + good[5:],
        "truncated": good[:3],
        "wrong magic": b"\x07" + good[1:],
        "mismatch": good[:5] + b"\xff\xff",
    }
    notes = {name: decoder.decode(data, None, "notes") for name, data in cases.items()}
    assert all(p.format == BINARY and p.value.startswith("0x") for p in notes.values())
    assert "no schema id 32767" in notes["unknown id"].note
    assert "truncated" in notes["truncated"].note
    assert "magic byte 0x07" in notes["wrong magic"].note
    assert "does not match schema" in notes["mismatch"].note
    # without a registry a frame is still recognised, and says what is missing
    bare = PayloadDecoder(None).decode(good, None, "notes")
    assert bare.format == BINARY and "--schema-registry" in bare.note
    assert find_frame(b'{"a": 1}') is None


def test_a_registry_that_hangs_costs_one_timeout(writers) -> None:
    values = [writers.avro("hang", order_placed(f"ord_{i}")) for i in range(5)]
    with SilentServer() as silent:
        decoder = PayloadDecoder(RegistryConfig(silent.url, timeout=0.5))
        out = [decoder.decode(v, None, "hang") for v in values]
        assert len(silent.accepted) == 1  # one connection, one timeout, then the breaker
    assert all(p.format == BINARY and "unreachable" in p.note for p in out)
    assert decoder.client is not None and decoder.client.calls == 1


def test_schemas_are_cached_on_disk_by_id(registry, writers) -> None:
    data = writers.avro("disk", order_placed("ord_d"))
    config = RegistryConfig(registry.url, timeout=2)
    assert PayloadDecoder(config).decode(data, None, "disk").format == AVRO
    before = len(registry.requests("/schemas/ids/"))
    again = RegistryClient(config)  # a later command: reads the disk cache
    assert again.get_schema(find_frame(data).schema_id).schema_type == "AVRO"
    assert len(registry.requests("/schemas/ids/")) == before
    assert list(config.cache_dir.glob("*.json"))


def test_registry_settings_from_file_profile_and_flag(tmp_path: Path) -> None:
    data = {"schema_registry": {"url": "http://sr:8081", "username": "u",
                                "password": "pw-planted-123", "timeout": 2},
            "profiles": {"prod": {"schema_registry": {"url": "https://sr.prod:8081"}}}}
    settings = Settings(path=tmp_path / "c.toml", data=data)
    base = registry_config(settings)
    assert base is not None and (base.url, base.username, base.timeout) == ("http://sr:8081",
                                                                           "u", 2.0)
    assert "pw-planted-123" not in repr(base)
    prod = registry_config(settings, "prod")
    assert prod is not None and prod.url == "https://sr.prod:8081" and prod.username == "u"
    flag = registry_config(settings, "prod", "http://127.0.0.1:1")
    assert flag is not None and flag.url == "http://127.0.0.1:1"
    assert registry_config(Settings()) is None
    for bad, problem in (({"url": "ftp://x"}, "not an http"),
                         ({"url": "http://sr:8081", "timeout": 0}, "timeout"),
                         ({"url": "http://sr:8081", "colour": "red"}, "colour"),
                         ({"url": "http://sr:8081", "username": "a", "password": "b",
                           "bearer_token": "t"}, "not both")):
        with pytest.raises(ConfigError, match=problem):
            registry_config(Settings(data={"schema_registry": bad}))


@pytest.mark.parametrize(("value", "seconds"), [("5s", 5.0), ("1500ms", 1.5), ("PT2S", 2.0),
                                                ("2", 2.0), (0.25, 0.25)])
def test_registry_timeout_takes_a_duration_like_every_other_timeout(value, seconds) -> None:
    config = registry_config(Settings(data={"schema_registry": {"url": "http://sr:8081",
                                                                "timeout": value}}))
    assert config is not None and config.timeout == seconds


@pytest.mark.parametrize("value", ["0s", "301s", "5 parsecs", "", True, float("nan"),
                                   float("inf"), -1, "1h"])
def test_registry_timeout_out_of_range_or_not_a_duration_is_one_clear_error(value) -> None:
    with pytest.raises(ConfigError, match="timeout must be a number of seconds or a duration"):
        registry_config(Settings(data={"schema_registry": {"url": "http://sr:8081",
                                                            "timeout": value}}))


# -- dlq show ------------------------------------------------------------------------------


@pytest.fixture
def framed_dlq(bootstrap, names, writers) -> str:
    topic = names("sr-dlq")
    create_topics(bootstrap, topic)
    producer = kp_producer(bootstrap)
    producer.send(topic, key=b"ord_av", value=writers.avro(topic, order_placed("ord_av")),
                  headers=SPRING)
    producer.send(topic, key=b"ord_pb", headers=SPRING,
                  value=writers.proto(topic + "-p", shipment_id="s-9", order_id="ord_pb"))
    producer.send(topic, key=b"ord_bad", value=b"\x00\x00\x00\x7f\xff\x02", headers=SPRING)
    producer.send(topic, key=b"ord_cut", value=b"\x00\x00\x01", headers=SPRING)
    producer.send(topic, key=b"ord_magic", headers=SPRING,
                  value=b"\x07" + writers.avro(topic, order_placed("ord_magic"))[1:])
    producer.flush(10)
    producer.close(timeout=5)
    return topic


@integration
def test_dlq_show_json_has_the_decoded_fields(capsys, bootstrap, registry, framed_dlq) -> None:
    code = main(["-b", bootstrap, "--schema-registry", registry.url, "dlq", "show", framed_dlq,
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    msgs = json.loads(out)["messages"]
    avro, proto, bad, cut, magic = msgs
    assert avro["value_format"] == "avro" and avro["value"]["order"]["orderId"] == "ord_av"
    assert isinstance(avro["schema_id"], int) and "value_note" not in avro
    assert proto["value_format"] == "protobuf"
    assert proto["value"]["detail"]["order_id"] == "ord_pb"
    assert bad["value_format"] == "binary" and bad["value"].startswith("0x00")
    assert bad["schema_id"] == 32767 and "no schema id 32767" in bad["value_note"]
    assert cut["value"] == "0x000001" and "truncated Schema Registry frame" in cut["value_note"]
    assert magic["value_format"] == "binary" and "magic byte 0x07" in magic["value_note"]
    assert avro["original_topic"] == "orders" and avro["error_class"].endswith("StateException")

    code = main(["-b", bootstrap, "--schema-registry", registry.url, "dlq", "show", framed_dlq])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "value (avro schema" in out and '"orderId":"ord_av"' in out
    assert "note: the Schema Registry has no schema id 32767" in out


@integration
def test_dlq_show_with_the_registry_down_is_raw_with_a_note(capsys, bootstrap,
                                                            framed_dlq) -> None:
    with SilentServer() as silent:
        code = main(["-b", bootstrap, "--schema-registry", silent.url, "dlq", "show",
                     framed_dlq, "--json"])
        accepted = len(silent.accepted)
    out, err = capsys.readouterr()
    assert code == 0, err
    msgs = json.loads(out)["messages"]
    assert accepted == 1  # the whole command paid one registry timeout
    assert [m["value_format"] for m in msgs] == ["binary"] * 5
    assert all("unreachable" in m["value_note"] for m in msgs[:3])
    assert "truncated" in msgs[3]["value_note"] and "magic byte" in msgs[4]["value_note"]


@integration
def test_a_planted_registry_password_never_leaks(capsys, bootstrap, names, framed_dlq,
                                                 tmp_path, monkeypatch, isolated_state) -> None:
    planted = "Planted-SR-Passw0rd"
    config = tmp_path / "lagdeck.toml"
    monkeypatch.setenv("LAGDECK_CONFIG", str(config))
    outputs = []
    with RegistryServer(username="svc", password="another-one") as refusing, \
            RegistryServer(username="svc", password=planted) as accepting:
        # refused: the password travels in the URL's userinfo, the registry answers 401
        config.write_text(f'[schema_registry]\nurl = "http://svc:{planted}@'
                          f'{refusing.url.removeprefix("http://")}"\ntimeout = 2\n')
        assert main(["-b", bootstrap, "dlq", "show", framed_dlq, "--json"]) == 0
        outputs.append(capsys.readouterr())
        notes = [m.get("value_note") for m in json.loads(outputs[-1].out)["messages"]]
        assert any(n and "HTTP 401" in n for n in notes)
        # accepted: basic auth from a profile; decoding works, and a redrive selecting on a
        # decoded field writes the audit log
        writer = Writers(accepting.url, **{"basic.auth.user.info": f"svc:{planted}"})
        topic = names("sr-audit")
        create_topics(bootstrap, topic)
        producer = kp_producer(bootstrap)
        producer.send(topic, key=b"ord_a", value=writer.avro(topic, order_placed("ord_a")),
                      headers=SPRING)
        producer.send(topic, key=b"ord_b", value=writer.avro(topic, order_placed("ord_b")),
                      headers=SPRING)
        producer.flush(10)
        producer.close(timeout=5)
        writer.close()
        config.write_text(f'default_profile = "p"\n[profiles.p]\n[profiles.p.schema_registry]\n'
                          f'url = "{accepting.url}"\nusername = "svc"\n'
                          f'password = "{planted}"\ntimeout = 2\n')
        assert main(["-b", bootstrap, "dlq", "show", topic]) == 0
        outputs.append(capsys.readouterr())
        assert '"orderId":"ord_a"' in outputs[-1].out
        target = names("sr-audit-out")
        create_topics(bootstrap, target)
        code = main(["-b", bootstrap, "dlq", "redrive", topic, "--to", target, "--where",
                     "value.order.orderId=ord_b", "--yes", "--json"])
        outputs.append(capsys.readouterr())
        assert code == 0, outputs[-1].err
        result = json.loads(outputs[-1].out)
        assert (result["selected"], result["redriven"]) == (1, 1)
    files = [p for p in isolated_state.rglob("*") if p.is_file()]
    assert any("audit" in p.name for p in files)
    for out, err in outputs:
        assert planted not in out and planted not in err
    for path in files:
        assert planted.encode() not in path.read_bytes(), path


def test_bearer_token_is_sent_and_redacted(writers) -> None:
    data = writers.avro("bearer", order_placed("ord_tok"))
    with RegistryServer(token="tok-Planted-123") as server:
        # the same schema under the same id in this registry
        registry_client(server.url, **{"bearer.auth.credentials.source": "CUSTOM",
                                       "bearer.auth.custom.provider.function":
                                           lambda c: {"bearer.auth.token": "tok-Planted-123",
                                                      "bearer.auth.logical.cluster": ""},
                                       "bearer.auth.custom.provider.config": {}}
                        ).register_schema("bearer-value", Schema(ORDER_PLACED_AVRO, "AVRO"))
        config = registry_config(Settings(data={"schema_registry": {
            "url": server.url, "bearer_token": "tok-Planted-123", "timeout": 2}}))
        assert config is not None and "tok-Planted-123" not in repr(config)
        payload = PayloadDecoder(config).decode(b"\x00\x00\x00\x00\x01" + data[5:], None, "b")
        assert payload.format == AVRO and payload.value["order"]["orderId"] == "ord_tok"
        assert "Bearer tok-Planted-123" in server.state.authorizations
        # (schema 1 is on disk now: a schema not cached yet reaches the registry)
        wrong = RegistryConfig(server.url, bearer_token="wrong-token-1", timeout=2)
        refused = PayloadDecoder(wrong).decode(b"\x00\x00\x00\x00\x07" + data[5:], None, "b")
        assert refused.format == BINARY and "HTTP 401" in refused.note
        assert "wrong-token-1" not in refused.note


@integration
def test_redrive_by_a_decoded_field_says_when_the_registry_is_down(capsys, bootstrap, framed_dlq,
                                                                    tmp_path,
                                                                    monkeypatch) -> None:
    create_topics(bootstrap, framed_dlq + "-out")
    config = tmp_path / "lagdeck.toml"
    config.write_text('[schema_registry]\ntimeout = 1\n')
    monkeypatch.setenv("LAGDECK_CONFIG", str(config))
    with SilentServer() as silent:
        code = main(["-b", bootstrap, "--schema-registry", silent.url, "dlq", "redrive",
                     framed_dlq, "--to", framed_dlq + "-out", "--where",
                     "value.order.orderId=ord_av",
                     "--dry-run", "--json"])
        accepted = len(silent.accepted)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert accepted == 1
    assert json.loads(out)["selected"] == 0
    assert "unreachable" in err and "value.PATH conditions did not match" in err
