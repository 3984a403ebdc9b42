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


@pytest.mark.parametrize("argv", [
    ["lag", "--samples", "2", "--interval", "nan"],
    ["lag", "--samples", "2", "--interval", "inf"],
    ["lag", "--samples", "2", "--interval", "1e308"],
    ["lag", "--timeout", "nan"],
    ["watch", "--interval", "inf"],
    ["watch", "--interval", "1e308"],
    ["watch", "--publish", "--session-timeout", "nan"],
    ["dlq", "redrive", "some.DLT", "--rate", "nan"],
    ["demo", "--headless", "--rate", "inf"],
])
def test_non_finite_or_endless_numbers_are_a_usage_line(argv, capsys) -> None:
    """nan passed `< 0` checks and inf or 1e308 overflowed `Event.wait`: an unexpected error
    (exit 1, which `watch` means as "warning") instead of a usage line (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["-b", "127.0.0.1:1", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"error: argument --[a-z-]+: (must be a finite number|at most)", err)
    assert "unexpected" not in err
