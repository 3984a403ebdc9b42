"""`collectors.untrusted`, the one rule for untrusted text, on exact examples; and the
log file, which is read in a terminal too."""

from __future__ import annotations

import json
import logging

from collectors.logs import get_logger
from collectors.paths import log_path
from collectors.untrusted import block, json_text, one_line
from tests.hostile import HOSTILE, unsafe_chars


def test_escapes_are_visible_and_spelled_as_python_does():
    assert one_line("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"
    assert one_line("\u202eabc\u200b") == "\\u202eabc\\u200b"
    assert one_line("\x9b31m") == "\\x9b31m"
    assert one_line(b"ok\xff\xfe") == "ok\\xff\\xfe"  # invalid UTF-8 like the escapes
    assert one_line("line1\nline2\r") == "line1\\nline2\\r"
    assert one_line("[/] [link=x]y[/link]") == "[/] [link=x]y[/link]"  # markup is only text
    assert one_line("naïve 注文 😀") == "naïve 注文 😀"
    assert one_line(None, none="∅") == "∅"


def test_blocks_keep_line_breaks_and_escape_the_rest():
    assert block("a\n\tb\x1b]0;t\x07") == "a\n\tb\\x1b]0;t\\x07"


def test_cuts_are_marked_and_never_split_an_escape():
    big = b"x" * 100_000
    assert one_line(big, 100) == "x" * 83 + "… (100,000 bytes)"
    assert one_line(big, 20) == "x" * 19 + "…"  # a narrow cell: the mark alone
    assert one_line("ab\x1bcd", 5) == "ab…"  # not "ab\\x1…"
    assert one_line("é" * 10, 4) == "ééé…"
    cut = block("y" * 5000, 100)
    assert cut.startswith("y" * 100 + "…\n") and "5,000 characters in all" in cut


def test_json_text_keeps_the_meaning_and_shows_no_control():
    doc = json.dumps({"k": "\x85\u202e\udcff😀\x7f", "n": 1}, ensure_ascii=False, indent=2)
    text = json_text(doc)
    assert unsafe_chars(text) == [] and text.count("\n") == doc.count("\n")
    assert json.loads(text) == json.loads(doc)
    text.encode("utf-8")


def test_log_file_lines_are_escaped_one_line_per_message():
    log = get_logger("untrusted-test")
    log.warning("record said %s", HOSTILE)
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        log.exception("failed on %s", "x\x1b[2J")
    for handler in logging.getLogger("lagdeck").handlers:
        handler.flush()
    text = log_path().read_text(encoding="utf-8")
    assert unsafe_chars(text) == []
    line = next(x for x in text.splitlines() if "record said" in x)
    assert "\\x1b[2J" in line and "\\nsecond line" in line  # the newline did not split it
    assert "Traceback (most recent call last):\n" in text  # tracebacks keep their lines
