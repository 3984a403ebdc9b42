"""A DataTable refreshed by row key, so live data never resets the cursor or scroll.

Dolphie's processlist pattern: on each snapshot only the cells whose value
changed are written (`update_cell`), rows with new keys are added, rows whose
key disappeared are removed, and rows are re-ordered in place with `sort`
when the order changed. The table is never cleared and refilled, so the
operator's cursor stays on the same row while numbers tick underneath it.

Rows carry plain values (ints, strings, enums); each `Column` knows how to
render its value. Comparing plain values is cheap and only changed cells are
rendered, which keeps a 10,000-row refresh within a frame
(`bench/tui_refresh.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from collectors.gcpause import gc_paused
from collectors.untrusted import one_line
from console import keymap as km

#: characters of a cell in a column without a fixed width before it is cut with `…`
CELL_LIMIT = 120


def cell(value: Any, limit: int | None = CELL_LIMIT) -> Any:
    """What a cell may hold: a `Text` (never a markup string: DataTable parses every
    `str` as Rich markup, so `[/]` in a group name or an error would raise), one
    line, cut at `limit` with `…`, no control characters. Renderers build `Text`
    from escaped text already; one that let an unprintable character through loses
    its styling here rather than reach the terminal."""
    if isinstance(value, Text):
        plain = value.plain
        if plain.isprintable() and (limit is None or len(plain) <= limit):
            return value
        return Text(one_line(plain, limit), style=value.style, justify=value.justify,
                    no_wrap=True, end="")
    if value is None:
        return Text("", end="")
    if isinstance(value, bool | int | float):
        return Text(str(value), no_wrap=True, end="")
    if isinstance(value, str | bytes):
        # no_wrap and end="" as DataTable's own formatter makes them: a wrapping Text
        # costs twice the paint time of a 10k-row table (bench/tui_refresh.py)
        return Text(one_line(value, limit), no_wrap=True, end="")
    return value  # another renderable built by lagdeck (none today)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None
    #: value -> what the cell shows (str or rich Text); None shows the value as is
    render: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Row:
    """One row: a unique key and the plain cell values, in column order."""

    key: str
    cells: tuple[Any, ...]


class KeyedTable(DataTable):
    """DataTable with `sync(rows)`: keyed, minimal updates and a stable cursor."""

    # DataTable binds enter without showing it; show it, since it is how rows open.
    BINDINGS: ClassVar = km.bindings(km.TABLE)

    #: None outside `sync`; False/True inside it (True once a repaint was asked for).
    _deferred: bool | None = None
    #: The cursor follows its row through re-sorts only once the operator moved it;
    #: until then it stays on the first row (the worst group, with the default sort).
    follow_row = False

    def __init__(self, columns: Sequence[Column], **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._columns = tuple(columns)
        self._renderers = tuple(c.render for c in self._columns)
        self._limits = tuple(c.width or CELL_LIMIT for c in self._columns)
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._order: list[str] = []

    def refresh(self, *regions: Any, **kwargs: Any) -> KeyedTable:
        """Coalesce the repaint that every `update_cell` asks for into one per `sync`."""
        if self._deferred is not None and not regions and not kwargs:
            self._deferred = True
            return self
        super().refresh(*regions, **kwargs)
        return self

    def on_mount(self) -> None:
        for column in self._columns:
            self.add_column(column.label, key=column.key, width=column.width)

    @property
    def row_keys(self) -> list[str]:
        """Keys in display order."""
        return list(self._order)

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self._order or not (0 <= self.cursor_row < len(self._order)):
            return None
        return self._order[self.cursor_row]

    def values(self, key: str) -> tuple[Any, ...] | None:
        """The plain values last shown for `key`."""
        return self._shown.get(key)

    def watch_cursor_coordinate(self, old: Any, new: Any) -> None:
        super().watch_cursor_coordinate(old, new)
        if self._deferred is None and old != new and self._order:
            self.follow_row = True

    def _cells(self, cells: tuple[Any, ...]) -> list[Any]:
        return [cell(value if render is None else render(value), limit)
                for render, value, limit in zip(self._renderers, cells, self._limits,
                                                strict=True)]

    def sync(self, rows: Sequence[Row]) -> int:
        """Make the table show exactly `rows`, in that order; returns cells written.

        Call inside `app.batch_update()` when several widgets change together.
        """
        self._deferred = False
        # The sync allocates thousands of small acyclic objects; letting the cyclic
        # collector walk the table's whole heap again and again in the middle of it
        # was the largest and most variable part of a 10k-row refresh.
        try:
            with gc_paused():
                return self._sync(rows)
        finally:
            if self._deferred:
                self._deferred = None
                self.refresh()
            self._deferred = None

    def _sync(self, rows: Sequence[Row]) -> int:
        wanted = {row.key: row.cells for row in rows}
        keep_cursor_on = self.current_key if self.follow_row else None
        written = 0
        shown = self._shown
        for stale in [k for k in shown if k not in wanted]:
            with contextlib.suppress(RowDoesNotExist):
                self.remove_row(stale)
            del shown[stale]
        keys = [c.key for c in self._columns]
        added: set[str] = set()
        for row in rows:
            old = shown.get(row.key)
            if old is None:
                self.add_row(*self._cells(row.cells), key=row.key)
                added.add(row.key)
                written += len(row.cells)
            elif old != row.cells:
                for index, (before, after) in enumerate(zip(old, row.cells, strict=True)):
                    if before != after:
                        render = self._renderers[index]
                        self.update_cell(row.key, keys[index],
                                         cell(after if render is None else render(after),
                                              self._limits[index]))
                        written += 1
            shown[row.key] = row.cells
        order = [row.key for row in rows]
        displayed = [k for k in self._order if k in wanted] + [k for k in order if k in added]
        if displayed != order:
            self._sort_to(order)
        self._order = order
        if keep_cursor_on is not None and keep_cursor_on in wanted:
            index = order.index(keep_cursor_on)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)
        return written

    def _sort_to(self, order: list[str]) -> None:
        """Re-order rows in place. DataTable.sort hands the key function the cells,
        not the row keys, so rank rows by their rendered text; identical rows tie."""
        rank = {tuple(_plain(c) for c in self.get_row(k)): i for i, k in enumerate(order)}
        self.sort(key=lambda cells: rank.get(tuple(_plain(c) for c in cells), 0))

    def clear_rows(self) -> None:
        """Empty the table (a new query, not a refresh)."""
        self._shown.clear()
        self._order = []
        self.clear()
        self.follow_row = False


def _plain(cell: Any) -> str:
    plain = getattr(cell, "plain", None)
    return plain if isinstance(plain, str) else str(cell)
