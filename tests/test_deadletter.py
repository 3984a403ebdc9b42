"""Envelope decoding: every layout, malformed values described and never raised."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from collectors.snapshots import Header, Record
from tracing.deadletter import DeadLetterEnvelope, Route, decode_envelope, decode_route


def rec(*headers: tuple[str, bytes | None]) -> Record:
    return Record("orders.DLT", 0, 5, 1_700_000_000_000, b"k", b"v",
                  tuple(Header(k, v) for k, v in headers))


LEFE = b"org.springframework.kafka.listener.ListenerExecutionFailedException"


def spring_headers(**over: bytes | None) -> list[tuple[str, bytes | None]]:
    base: dict[str, bytes | None] = {
        "kafka_dlt-original-topic": b"orders",
        "kafka_dlt-original-partition": struct.pack(">i", 3),
        "kafka_dlt-original-offset": struct.pack(">q", 1234567890123),
        "kafka_dlt-original-timestamp": struct.pack(">q", 1_700_000_000_123),
        "kafka_dlt-original-timestamp-type": b"CreateTime",
        "kafka_dlt-original-consumer-group": b"payment-service",
        "kafka_dlt-exception-fqcn": LEFE,
        "kafka_dlt-exception-cause-fqcn": b"java.lang.IllegalStateException",
        "kafka_dlt-exception-message": b"card declined",
        "kafka_dlt-exception-stacktrace": b"java.lang.IllegalStateException: card declined\n\tat X",
    }
    base.update(over)
    return list(base.items())


def test_spring_binary_layout_decodes_exactly() -> None:
    env = decode_envelope(rec(*spring_headers()))
    assert env.is_dead_letter and env.layout == "spring"
    assert env.original_topic == "orders"
    assert env.original_partition == 3
    assert env.original_offset == 1234567890123
    assert env.original_timestamp_ms == 1_700_000_000_123
    assert env.original_group == "payment-service"
    assert env.error_class == LEFE.decode()
    assert env.error_message == "card declined"
    assert env.stack_trace.startswith("java.lang.IllegalStateException")
    assert env.detail("cause_class") == "java.lang.IllegalStateException"
    assert env.detail("timestamp_type") == "CreateTime"
    assert env.attempts is None
    assert env.problems == ()
    assert len(env.headers) == 10


def test_spring_appended_hops_keep_first_origin_and_last_error() -> None:
    headers = [*spring_headers(),
               ("kafka_dlt-original-topic", b"orders-retry-1"),
               ("kafka_dlt-original-partition", struct.pack(">i", 0)),
               ("kafka_dlt-exception-message", b"still declined"),
               ("retry_topic-attempts", bytes([4]))]
    env = decode_envelope(rec(*headers))
    assert env.original_topic == "orders" and env.original_partition == 3
    assert env.error_message == "still declined"
    assert env.attempts == 4


def test_spring_wrong_byte_lengths_are_problems_not_exceptions() -> None:
    env = decode_envelope(rec(*spring_headers(**{
        "kafka_dlt-original-partition": b"\x00\x01\x02",
        "kafka_dlt-original-offset": struct.pack(">i", 7),
        "kafka_dlt-exception-message": b"bad \xff\xfe utf8",
        "kafka_dlt-original-consumer-group": None,
    })))
    assert env.layout == "spring"
    assert env.original_partition is None
    assert env.original_offset is None
    assert env.original_group is None
    assert env.error_message == "bad \\xff\\xfe utf8"
    joined = "\n".join(env.problems)
    assert "kafka_dlt-original-partition: expected a 4-byte big-endian int, got 3 bytes" in joined
    assert "kafka_dlt-original-offset: expected a 8-byte big-endian long, got 4 bytes" in joined
    assert "kafka_dlt-exception-message: invalid UTF-8 at byte 4" in joined
    assert "kafka_dlt-original-consumer-group: null value" in joined


def test_spring_text_number_is_accepted_but_reported() -> None:
    env = decode_envelope(rec(*spring_headers(**{"kafka_dlt-original-partition": b"12"})))
    assert env.original_partition == 12
    assert any("text '12' instead of a 4-byte int" in p for p in env.problems)


def test_spring_retry_topic_layout() -> None:
    env = decode_envelope(rec(
        ("kafka_original-topic", b"orders"),
        ("kafka_original-partition", struct.pack(">i", 1)),
        ("kafka_original-offset", struct.pack(">q", 42)),
        ("kafka_original-timestamp", struct.pack(">q", 99)),
        ("kafka_original-consumer-group", b"inventory-service"),
        ("kafka_exception-fqcn", b"java.lang.RuntimeException"),
        ("kafka_exception-message", b"boom"),
        ("kafka_exception-stacktrace", b"trace"),
        ("retry_topic-attempts", struct.pack(">i", 3)),
    ))
    assert env.layout == "spring-retry"
    assert (env.original_topic, env.original_partition, env.original_offset) == ("orders", 1, 42)
    assert env.original_timestamp_ms == 99
    assert env.original_group == "inventory-service"
    assert (env.error_class, env.error_message, env.stack_trace) == (
        "java.lang.RuntimeException", "boom", "trace")
    assert env.attempts == 3
    assert env.problems == ()


def test_spring_key_deserialization_failure() -> None:
    env = decode_envelope(rec(
        ("kafka_dlt-original-topic", b"orders"),
        ("kafka_dlt-key-exception-fqcn", b"org.apache.kafka.common.errors.SerializationException"),
        ("kafka_dlt-key-exception-message", b"bad key"),
    ))
    assert env.error_class == "org.apache.kafka.common.errors.SerializationException"
    assert env.error_message == "bad key"


def test_connect_string_layout() -> None:
    env = decode_envelope(rec(
        ("__connect.errors.topic", b"orders"),
        ("__connect.errors.partition", b"2"),
        ("__connect.errors.offset", b"981"),
        ("__connect.errors.connector.name", b"jdbc-sink"),
        ("__connect.errors.task.id", b"0"),
        ("__connect.errors.stage", b"VALUE_CONVERTER"),
        ("__connect.errors.class.name", b"org.apache.kafka.connect.json.JsonConverter"),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"Converting byte[] to Kafka Connect data failed"),
        ("__connect.errors.exception.stacktrace", b"org.apache.kafka.connect.errors.DataException"),
    ))
    assert env.layout == "connect"
    assert (env.original_topic, env.original_partition, env.original_offset) == ("orders", 2, 981)
    assert env.original_group == "connect-jdbc-sink"
    assert env.error_class == "org.apache.kafka.connect.errors.DataException"
    assert env.error_message.startswith("Converting byte[]")
    assert env.detail("stage") == "VALUE_CONVERTER"
    assert env.detail("task_id") == "0"
    assert env.problems == ()


def test_connect_malformed_number() -> None:
    env = decode_envelope(rec(("__connect.errors.topic", b"orders"),
                              ("__connect.errors.offset", b"twelve")))
    assert env.original_offset is None
    assert env.problems == ("__connect.errors.offset: not an integer ('twelve')",)


def test_plain_conventions_normalised() -> None:
    env = decode_envelope(rec(
        ("X-Original-Topic", b"orders"),
        ("original_partition", b"1"),
        ("error-class", b"ValueError"),
        ("error-message", b"price missing"),
        ("retry-count", b"2"),
        ("original-timestamp", b"2024-01-02T03:04:05+00:00"),
    ))
    assert env.layout == "plain" and env.is_dead_letter
    assert env.original_topic == "orders" and env.original_partition == 1
    assert env.error_class == "ValueError" and env.error_message == "price missing"
    assert env.attempts == 2
    assert env.original_timestamp_ms == 1704164645000


def test_retry_counter_alone_is_not_a_dead_letter() -> None:
    env = decode_envelope(rec(("retry-count", b"2"), ("traceparent", b"00-abc")))
    assert env == DeadLetterEnvelope(
        is_dead_letter=False, layout="none", headers=env.headers)


def test_no_headers_is_none_layout() -> None:
    env = decode_envelope(rec())
    assert not env.is_dead_letter and env.layout == "none" and env.problems == ()


def test_redrive_headers_are_read_back() -> None:
    env = decode_envelope(rec(*spring_headers(),
                              ("lagdeck-redrive-id", b"orders.DLT/0/5"),
                              ("lagdeck-redrive-count", b"2")))
    assert env.redrive_count == 2 and env.redrive_id == "orders.DLT/0/5"


@given(st.lists(st.tuples(
    st.sampled_from(["kafka_dlt-original-topic", "kafka_dlt-original-partition",
                     "kafka_dlt-original-offset", "kafka_original-offset", "retry_topic-attempts",
                     "__connect.errors.partition", "__connect.errors.topic", "error-message",
                     "retry-count", "original-timestamp", "lagdeck-redrive-count", "other"]),
    st.one_of(st.none(), st.binary(max_size=12))), max_size=8))
def test_arbitrary_header_bytes_never_raise(headers) -> None:
    env = decode_envelope(rec(*headers))
    assert env.layout in ("spring", "spring-retry", "connect", "plain", "none")
    assert len(env.headers) == len(headers)


_NAMES = ["kafka_dlt-original-topic", "KAFKA_DLT-ORIGINAL-PARTITION", "kafka_dlt-exception-fqcn",
          "kafka_original-topic", "kafka_original-partition", "retry_topic-attempts",
          "__connect.errors.topic", "__connect.errors.partition", "x-original-topic",
          "original_partition", "error-message", "Error-Class", "source-topic",
          "lagdeck-redrive-count", "traceparent"]
_VALUES = st.one_of(st.none(), st.binary(max_size=9),
                    st.sampled_from([b"orders", b"3", b"-1", b"\x00\x00\x00\x02",
                                     b"\x00" * 8, b"\xff\xfe"]))


@given(st.lists(st.tuples(st.sampled_from(_NAMES), _VALUES), max_size=10))
def test_fast_route_agrees_with_the_full_envelope(headers) -> None:
    env = decode_envelope(rec(*headers))
    route = decode_route(headers)
    assert (route.original_topic, route.original_partition, route.redrive_count) == (
        env.original_topic, env.original_partition, env.redrive_count)


def test_fast_route_of_common_layouts() -> None:
    assert decode_route(spring_headers()) == Route("orders", 3, None)
    assert decode_route([("__connect.errors.topic", b"t"), ("__connect.errors.partition", b"2"),
                         ("lagdeck-redrive-count", b"2")]) == Route("t", 2, 2, True)
    assert decode_route(None) == decode_route([("traceparent", b"x")]) == Route(None, None, None)
