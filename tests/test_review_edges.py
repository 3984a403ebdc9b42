"""Edges an on-call SRE hits at 3 AM, found in the release review; one regression each."""

from __future__ import annotations

import re

import pytest

from console.cli import main
from tests.conftest import create_topics
from tests.test_dlq_support import produce, spring_headers


@pytest.mark.integration
def test_a_huge_page_or_batch_size_reads_the_topic_instead_of_failing(bootstrap, names,
                                                                       capsys) -> None:
    """`consume(n)` refuses n above a million: `--limit` and `--batch-size` must not reach it."""
    orders, dlq = names("orders"), names("orders") + ".DLT"
    create_topics(bootstrap, orders, dlq)
    produce(bootstrap, dlq, [(f"k{i}".encode(), b"{}", spring_headers(orders, 0, i, 0, "g", "E",
                                                                       "m")) for i in range(3)])
    assert main(["-b", bootstrap, "dlq", "show", dlq, "--limit", "99999999999999"]) == 0
    out = capsys.readouterr().out
    assert re.findall(rf"^{re.escape(dlq)}\[0\]@(\d+)", out, re.M) == ["0", "1", "2"]
    assert main(["-b", bootstrap, "dlq", "redrive", dlq, "--dry-run",
                 "--batch-size", "99999999999"]) == 0
    captured = capsys.readouterr()
    assert "would redrive 3 to " + orders in captured.out
    assert "unexpected" not in captured.err
