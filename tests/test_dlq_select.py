"""The --where language: parsing and matching, as pure functions."""

from __future__ import annotations

import pytest

from collectors.errors import UsageError
from collectors.snapshots import Header, Record
from dlq.select import parse_condition, parse_where
from tracing.deadletter import decode_envelope


def dead_letter(key: bytes | None = b"order-7", **headers: bytes) -> tuple:
    base = {"kafka_dlt-original-topic": b"payments.events",
            "kafka_dlt-exception-fqcn": b"java.lang.IllegalStateException",
            "kafka_dlt-exception-message": b"Card DECLINED by issuer",
            "kafka_dlt-original-consumer-group": b"payment-service"}
    base.update(headers)
    record = Record("payments.events-dlt", 0, 1, None, key, b"{}",
                    tuple(Header(k, v) for k, v in base.items()))
    return record, decode_envelope(record)


@pytest.mark.parametrize(("expr", "expected"), [
    ("error_class=java.lang.IllegalStateException", True),
    ("error_class=IllegalStateException", False),  # = is exact
    ("error_class~illegalstate", True),  # ~ is a case-insensitive substring
    ("error_message~card declined", True),
    ("error_message!~declined", False),
    ("key=order-7", True),
    ("key~order-", True),
    ("key!=order-7", False),
    ("original_topic=payments.events", True),
    ("original_topic!=", True),  # has an original topic
    ("original_group=payment-service", True),
    ("header.kafka_dlt-exception-fqcn~State", True),
    ("header.KAFKA_DLT-ORIGINAL-TOPIC=payments.events", True),  # header names ignore case
    ("header.tenant=blue", False),  # missing header: no match
    ("header.tenant!=blue", True),
    ("header.tenant=", True),  # empty matches missing
    ("error_message = 'Card DECLINED by issuer'", True),  # spaces and quotes
])
def test_conditions(expr: str, expected: bool) -> None:
    record, envelope = dead_letter()
    assert parse_condition(expr).matches(record, envelope) is expected


def test_all_conditions_must_hold() -> None:
    record, envelope = dead_letter()
    assert parse_where(["key=order-7", "error_class~State"]).matches(record, envelope)
    assert not parse_where(["key=order-7", "error_class~Timeout"]).matches(record, envelope)
    assert parse_where([]).matches(record, envelope)
    assert parse_where([]).describe() == "all records"


def test_binary_and_null_keys() -> None:
    record, envelope = dead_letter(key=b"\xff\x01")
    assert parse_condition("key=0xff01").matches(record, envelope)
    record, envelope = dead_letter(key=b"\x00\x01")  # valid UTF-8 but not printable
    assert parse_condition("key~0x0001").matches(record, envelope)
    record, envelope = dead_letter(key=None)
    assert parse_condition("key=").matches(record, envelope)
    assert not parse_condition("key~a").matches(record, envelope)


def test_value_may_contain_operators() -> None:
    c = parse_condition("error_message~a=b~c")
    assert (c.field, c.op, c.value) == ("error_message", "~", "a=b~c")
    c = parse_condition("header.x!=1")
    assert (c.field, c.op, c.value) == ("header.x", "!=", "1")


@pytest.mark.parametrize(("expr", "message"), [
    ("error_class", "expected FIELD=VALUE"),
    ("colour=red", "unknown field 'colour'"),
    ("header.=x", "needs a header name"),
    ("key~", "needs some text"),
    ("error_class==x", "unknown operator '=='"),
    ("error_class=~x", "unknown operator '=~'"),
    ("error_class~=x", "unknown operator '~='"),
    ("error_class!==x", "unknown operator '!=='"),
])
def test_bad_expressions(expr: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_condition(expr)
