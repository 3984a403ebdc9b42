"""How numbers, times and statuses look in the console (pure functions, easy to test)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from collectors.snapshots import Status
from collectors.timefmt import local_clock, local_ms
from collectors.untrusted import block, one_line

#: characters of a record-derived value in a table cell before it is cut with `…`
CELL_LIMIT = 120

#: Status badge colours: green is fine, yellow is worth a look, red needs action.
STATUS_STYLE: dict[Status, str] = {
    Status.OK: "bold green",
    Status.UNKNOWN: "bold bright_black",
    Status.WARN: "bold yellow",
    Status.REWIND: "bold magenta",
    Status.STALL: "bold red",
    Status.STOP: "bold white on red",
    Status.ERR: "bold white on dark_red",
}

_BLOCKS = "▁▂▃▄▅▆▇█"


def status_badge(status: Status | str | None) -> Text:
    if status is None:
        return Text("?", style="dim")
    try:
        status = Status(status)
    except ValueError:
        return Text(str(status), style="dim")
    return Text(f" {status.value:<6}", style=STATUS_STYLE[status])


def count(value: int | None) -> str:
    """Thousands separators; a dash for unknown (None), never a misleading 0."""
    return "—" if value is None else f"{value:,}"


def seconds(value: float | None) -> str:
    """Lag in seconds the way an operator reads it: 850ms, 42s, 3m 05s, 2h 10m."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f}ms" if value > 0 else "0s"
    if value < 60:
        return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24:02d}h"


def sparkline(values: Sequence[float | int | None], width: int = 16) -> str:
    """A unicode sparkline of the last `width` values, scaled to their own range."""
    points = [v for v in values if v is not None][-width:]
    if not points:
        return ""
    # Bars start at zero (not at the minimum) and the scale at 10 messages, so a
    # steady small lag looks small instead of filling the cell.
    low, high = min(0, min(points)), max(max(points), 10)
    if high == low:
        return _BLOCKS[0] * len(points)
    span = high - low
    return "".join(_BLOCKS[min(7, int((v - low) / span * 7 + 0.5))] for v in points)


def clock(epoch_seconds: float | None) -> str:
    """Local wall-clock time of an epoch, HH:MM:SS."""
    if epoch_seconds is None:
        return "--:--:--"
    return local_clock(epoch_seconds)


def timestamp_ms(value: int | None) -> str:
    """A record timestamp with milliseconds, local time."""
    if value is None:
        return "—"
    return local_ms(value)


def header_value(data: bytes | None, limit: int | None = None) -> str:
    """A header value: text when it is printable UTF-8, else hex with its length
    (Spring writes partitions and offsets as big-endian binary ints). Whole in a
    detail pane (no `limit`), cut with `…` otherwise; never a control character."""
    if data is None:
        return "∅"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _mostly_text(text):
        return block(text) if limit is None else one_line(text, limit)
    room = 4096 if limit is None else max(1, limit // 2)
    shown = data[:room].hex()
    return f"0x{shown}{'…' if len(data) > room else ''} ({len(data)} bytes)"


def _mostly_text(text: str) -> bool:
    """Text with a few control characters is shown as text, escaped; four bytes of a
    big-endian int (valid UTF-8, all controls) as hex."""
    if text.isprintable():
        return True
    bad = sum(1 for ch in text[:4096] if not ch.isprintable() and ch not in "\t\n")
    return bad * 4 <= min(len(text), 4096)


def printable(data: bytes | str | None, limit: int = 60) -> str:
    """Bytes or text from a record on one line: UTF-8 where it is, everything else
    escaped (`collectors.untrusted`), cut to `limit` chars with `…`."""
    return one_line(data, limit, none="∅")


def data(value: bytes | str | None, limit: int | None = CELL_LIMIT, style: str = "",
         none: str = "∅") -> Text:
    """Untrusted text (a record field, a group or topic name) for a cell or a line:
    a `Text`, never markup, escaped and cut (see `collectors.untrusted.one_line`)."""
    return Text(one_line(value, limit, none=none), style=style)


def data_block(value: bytes | str | None, style: str = "", none: str = "∅") -> Text:
    """Untrusted multi-line text for a detail pane: whole, line breaks kept, escaped."""
    return Text(block(value, none=none), style=style)


# -- column renderers for KeyedTable (value -> cell) ----------------------------------


def render_count(value: int | None) -> Text:
    return Text(count(value), justify="right")


def render_seconds(value: float | None) -> Text:
    return Text(seconds(value), justify="right")


def render_spark(values: Sequence[float | int | None]) -> Text:
    return Text(sparkline(values), style="cyan")


def render_dim(value: object) -> Text:
    return Text("" if value is None else one_line(str(value), CELL_LIMIT), style="dim")
