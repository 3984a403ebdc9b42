"""Untrusted text made displayable: the one place that decides what may reach a screen.

Anyone who can write to a topic chooses keys, values, headers, the decoded
dead-letter fields, event types; other teams choose group and topic names;
a schema registry chooses its subjects. All of that is data. A terminal
interprets ESC sequences (clear screen, OSC title and clipboard writes), BEL
rings, bidi overrides (U+202A-202E, U+2066-2069) reorder what the eye reads,
zero-width characters hide text. So every such string passes through here
before any face prints it: the CLI's text output, the audit log, lagdeck's
own log file, and (wrapped in `rich.text.Text`, never markup) every TUI
cell and panel.

The rule is Python's own `str.isprintable()`: every character it calls
unprintable (categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs other than the
ASCII space) is written as a visible escape: `\\x1b`, `\\n`, `\\u202e`,
`\\U000e0041`, the same spelling `repr()` uses, so what an operator sees
can be pasted into Python or a search. Bytes that are not UTF-8 appear as
`\\xNN` (`backslashreplace`), exactly like the escapes of control bytes.

No rich here: the TUI's wrappers live in `console/widgets/format.py`.
"""

from __future__ import annotations

import codecs
import functools
import re

#: the visible end of a value cut short
MARK = "…"
#: characters of one record field on a line of the CLI's text output (`--json` has it whole)
FIELD_LIMIT = 1000
#: characters of a `display` preview before it is cut
PREVIEW_CHARS = 120
#: characters kept as they are in multi-line blocks (detail panes, tracebacks)
_BLOCK_KEEP = "\n\t"
@functools.cache
def _unprintable_re() -> re.Pattern[str]:
    """One character class of every code point `str.isprintable()` rejects (built once,
    ~0.1 s, on the first value that is not printable)."""
    ranges, start = [], None
    for code in range(0x110001):
        bad = code <= 0x10FFFF and not chr(code).isprintable()
        if bad and start is None:
            start = code
        elif not bad and start is not None:
            ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
            start = None
    return re.compile("[" + "".join(ranges) + "]")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, *, newlines: bool = False) -> str:
    """Every character a terminal would act on, or that hides or reorders text, escaped.

    With `newlines` the line breaks and tabs of a multi-line value are kept
    (detail panes, tracebacks); everything else unprintable is still escaped.
    """
    if text.isprintable():
        return text
    if newlines:
        return _unprintable_re().sub(_keep_breaks, text)
    return _unprintable_re().sub(_escape_match, text)


def _escape_match(m: re.Match[str]) -> str:
    return _escape_char(m.group())


def _keep_breaks(m: re.Match[str]) -> str:
    ch = m.group()
    return ch if ch in _BLOCK_KEEP else _escape_char(ch)


def as_text(data: bytes | str) -> str:
    """Bytes as text: UTF-8 where it is, every other byte as `\\xNN`; str as it is."""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="backslashreplace")


def encodable(text: str, encoding: str) -> str:
    """`text` as a stream in `encoding` can write it (`LANG=C` under cron): every
    character the encoding lacks as a backslash escape, so output never dies on it."""
    return text.encode(encoding, errors="backslashreplace").decode(encoding)


def _window(data: bytes | str, chars: int) -> tuple[str, bool]:
    """At most about `chars` characters of `data` as text, and whether more follows.

    Only the head of a 100 kB header is decoded and escaped for a table cell.
    """
    if isinstance(data, str):
        return (data, False) if len(data) <= chars else (data[:chars], True)
    if len(data) <= chars:
        return data.decode("utf-8", errors="backslashreplace"), False
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    return decoder.decode(data[:chars], final=False), True


def one_line(data: bytes | str | None, limit: int | None = None, *, none: str = "") -> str:
    """A value on one line: everything escaped (newlines too), cut at `limit` characters.

    The cut is marked with `…`, followed by the full size when the limit is
    wide enough to say it (`… (102400 bytes)`), so a cut is never mistaken
    for the value. `None` becomes `none`.
    """
    if data is None:
        return none
    if limit is None:
        return escape(as_text(data))
    text, more = _window(data, limit + 1)
    text = escape(text)
    if len(text) <= limit and not more:
        return text
    return _cut(text, limit, data)


def line_field(data: bytes | str | None, *, none: str = "") -> str:
    """A record field, topic or group name on a line of the CLI's text output:
    `one_line` cut at `FIELD_LIMIT` (`--json` has the value whole)."""
    return one_line(data, FIELD_LIMIT, none=none)


def block(data: bytes | str | None, limit: int | None = None, *, none: str = "") -> str:
    """A multi-line value (detail panes): line breaks and tabs kept, the rest escaped.

    Shown whole unless `limit` is given; then cut with a marker line saying
    how much was left out.
    """
    if data is None:
        return none
    if limit is None:
        return escape(as_text(data), newlines=True)
    text, more = _window(data, limit + 1)
    text = escape(text, newlines=True)
    if len(text) <= limit and not more:
        return text
    unit = "bytes" if isinstance(data, bytes) else "characters"
    return f"{text[:limit]}{MARK}\n{MARK} cut: {len(data):,} {unit} in all"


def _cut(text: str, limit: int, data: bytes | str) -> str:
    unit = "bytes" if isinstance(data, bytes) else "characters"
    tail = f"{MARK} ({len(data):,} {unit})"
    if limit < 4 * len(tail):
        tail = MARK
    keep = max(0, limit - len(tail))
    head = text[:keep]
    # never leave half an escape (`\x1`) at the cut
    slash = head.rfind("\\", max(0, keep - 10))
    if slash != -1 and _partial_escape(text, slash, keep):
        head = head[:slash]
    return head + tail


def _preview_cut(text: str, limit: int, total_bytes: int, shown_bytes: int) -> str:
    if len(text) > limit:
        return text[:limit] + f"… ({total_bytes} bytes)"
    if shown_bytes < total_bytes:
        return text + f"… ({total_bytes} bytes)"
    return text


def display(value: bytes | None, limit: int = PREVIEW_CHARS) -> str:
    """A printable one-line preview of any bytes.

    `None` -> "(null)", empty -> "(empty)"; UTF-8 text (JSON or not) is shown
    with control characters escaped; anything else as hex with its size. Only
    the first few KB of a huge value are looked at.
    """
    if value is None:
        return "(null)"
    if not value:
        return "(empty)"
    window = value[: limit * 4 + 4]
    try:
        text = window.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A window cut in the middle of a multi-byte character is still text.
        if exc.start < len(window) - 3 or len(window) == len(value):
            return _binary(value, limit)
        text = window[: exc.start].decode("utf-8")
    shown = len(text.encode("utf-8"))
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text
    # control characters escaped, so a preview never moves the cursor or rings the bell
    return _preview_cut(escape(text), limit, len(value), shown)


def _binary(value: bytes, limit: int) -> str:
    digits = max(8, limit // 2 - 12)
    head = value[: digits // 2].hex()
    more = "…" if len(value) > digits // 2 else ""
    return f"0x{head}{more} ({len(value)} bytes, binary)"


_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[ntr])")


def _partial_escape(text: str, start: int, keep: int) -> bool:
    m = _ESCAPE.match(text, start)
    return m is not None and m.end() > keep


def json_text(document: str) -> str:
    """A serialised JSON text with every unprintable character as a `\\uXXXX` escape.

    Same meaning to any JSON reader (they can only sit inside strings), but a
    terminal or `less` showing the output, or the audit log, never sees a C1
    control, a bidi override or a lone surrogate (which could not even be
    written as UTF-8). The newlines and spaces of indentation stay.
    """
    if document.isprintable():
        return document
    return _unprintable_re().sub(_json_escape, document)


def _json_escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch == "\n":  # indentation: json.dumps escapes every newline inside a string
        return ch
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
