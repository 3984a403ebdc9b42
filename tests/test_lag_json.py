"""`lag --json` through orjson writes the bytes the `json` path writes (console/context.py)."""

from __future__ import annotations

import json
import math

import pytest

from collectors.snapshots import GroupLag, LagSnapshot, Member, PartitionLag, Status
from console.context import _fast_text, print_json, to_jsonable


def _reference(document: object) -> str:
    return json.dumps(to_jsonable(document), indent=None, ensure_ascii=False,
                      separators=(",", ":"))


def _snapshot(seconds: float | None = 12.5, name: str = "orders\u202e-\x85\u00e9\U0001f600") \
        -> LagSnapshot:
    parts = (
        PartitionLag("t\"\\/\n\t", 0, 5, 9, 4, seconds, "exact", Status.STOP,
                     status_reason="no commit for 1m"),
        PartitionLag("t", 1, None, None, None, None, "unknown", Status.ERR,
                     error="topic deleted", status_reason="topic deleted"),
        PartitionLag("t", 2, 2**63 - 1, 2**63 - 1, 0, 0.0, "zero", Status.OK),
    )
    members = (Member("m-1", "client\x00", "/10.0.0.1", (("t", 0), ("t", 1))),)
    return LagSnapshot(
        taken_at=1_764_637_000.123456,
        groups=(GroupLag(name, "STABLE", Status.STOP, 4, seconds, parts, members,
                         status_reason="worst"),
                GroupLag("empty", "EMPTY", Status.OK, 0, None, (), None, error="boom",
                         allowed_lag=7)),
        errors=("listing groups: timed out",),
        groups_on_cluster=2, offsets_via="batched", offsets_via_reason="v8",
    )


@pytest.mark.parametrize("seconds", [None, 0.0, 0.001, 12.5, 1e-4, 86400 * 400.25, 1e16,
                                     1.7976931348623157e308])
def test_same_bytes_as_the_json_path(seconds: float | None) -> None:
    document = _snapshot(seconds)
    fast = _fast_text(document)
    assert fast is not None
    assert fast == _reference(document)


@pytest.mark.parametrize("seconds", [1e-5, -3e-7, math.nan, math.inf])
def test_floats_orjson_writes_otherwise_take_the_json_path(seconds: float) -> None:
    assert _fast_text(_snapshot(seconds)) is None


def test_lone_surrogate_takes_the_json_path(capsys: pytest.CaptureFixture[str]) -> None:
    document = _snapshot(name="bad\udc80name")
    assert _fast_text(document) is None
    print_json(document, compact=True)
    out = capsys.readouterr().out
    assert "bad\\udc80name" in out  # escaped by json_text, as before
    assert json.loads(out)["groups"][0]["group"] == "bad\udc80name"


def test_other_documents_take_the_json_path() -> None:
    assert _fast_text({"a": 1}) is None
    assert _fast_text([_snapshot()]) is None


@pytest.mark.parametrize("name", ["plain-ascii.group", "orders\u202e-\x85\u00e9\U0001f600",
                                  "del\x7fgroup"])
def test_printed_document_is_the_json_paths(capsys: pytest.CaptureFixture[str],
                                            name: str) -> None:
    """ASCII goes out as orjson's bytes, anything else through json_text: same text."""
    from collectors.untrusted import json_text

    document = _snapshot(name=name)
    print_json(document, compact=True)
    assert capsys.readouterr().out == json_text(_reference(document)) + "\n"
