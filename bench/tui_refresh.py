"""Refreshing a 10,000-row lag table where 5% of the values changed.

Compares, in the same run and the same headless app, the console's keyed
refresh (`KeyedTable.sync`: `update_cell` for changed cells only, inside
`batch_update`) with the naive clear-and-refill, both starting from the same
plain snapshot values. Two times per refresh: until the table holds the new
data (building the rows included), and until the next frame has been
composed (`pilot.pause()`), which adds DataTable's own re-render of the
visible rows and its per-update bookkeeping over all 10,000 rows.

    .venv/bin/python bench/tui_refresh.py [--rows 10000] [--changed 0.05] [--rounds 5]

Target (issue 7): keyed refresh <= 50 ms and faster than clear-and-refill.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from textual.app import App, ComposeResult

from collectors.snapshots import Status
from console.widgets import format as fmt
from console.widgets.keyed_table import Column, KeyedTable, Row

COLUMNS = (
    Column("where", "Partition"),
    Column("committed", "Committed", 11, fmt.render_count),
    Column("end", "End", 11, fmt.render_count),
    Column("lag", "Lag", 9, fmt.render_count),
    Column("seconds", "Lag (time)", 11, fmt.render_seconds),
    Column("status", "Status", 8, fmt.status_badge),
)


def make_rows(values: list[tuple[int, int, float]]) -> list[Row]:
    """Snapshot values -> rows, as the group screen builds them on every poll."""
    rows = []
    for i, (committed, lag, seconds) in enumerate(values):
        where = f"topic-{i // 100:03d}[{i % 100}]"
        status = Status.WARN if lag > 900 else Status.OK
        rows.append(Row(where, (where, committed, committed + lag, lag, seconds, status)))
    return rows


def rendered(rows: list[Row]) -> list[list[object]]:
    """What clear-and-refill must build: every cell of every row."""
    renders = [c.render for c in COLUMNS]
    return [[v if r is None else r(v) for r, v in zip(renders, row.cells, strict=True)]
            for row in rows]


def mutate(values: list[tuple[int, int, float]], share: float,
           rng: random.Random) -> list[tuple[int, int, float]]:
    out = list(values)
    for i in rng.sample(range(len(out)), int(len(out) * share)):
        committed = out[i][0]
        out[i] = (committed + rng.randint(1, 50), rng.randint(0, 1000), rng.random() * 120)
    return out


class BenchApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="keyed")


async def run(rows: int, share: float, rounds: int) -> dict[str, list[float]]:
    """Seconds per round: `*_update` = rows built and table updated, `*_painted` = until
    the next frame has been composed (includes DataTable's own re-render)."""
    rng = random.Random(42)
    values = [(rng.randint(0, 10**6), rng.randint(0, 1000), rng.random() * 120)
              for _ in range(rows)]
    times: dict[str, list[float]] = {k: [] for k in
                                     ("keyed_update", "keyed_painted",
                                      "refill_update", "refill_painted")}
    app = BenchApp()
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(make_rows(values))
        await pilot.pause()
        for _ in range(rounds):
            values = mutate(values, share, rng)

            start = time.perf_counter()
            with app.batch_update():
                table.sync(make_rows(values))
            times["keyed_update"].append(time.perf_counter() - start)
            await pilot.pause()
            times["keyed_painted"].append(time.perf_counter() - start)

            start = time.perf_counter()
            new_rows = make_rows(values)
            with app.batch_update():
                table.clear()
                for row, cells in zip(new_rows, rendered(new_rows), strict=True):
                    table.add_row(*cells, key=row.key)
            times["refill_update"].append(time.perf_counter() - start)
            await pilot.pause()
            times["refill_painted"].append(time.perf_counter() - start)
            # back to a keyed table for the next round (outside the timings)
            table.clear_rows()
            table.sync(new_rows)
            await pilot.pause()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = asyncio.run(run(args.rows, args.changed, args.rounds))
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"rows={args.rows} changed={args.changed:.0%} rounds={args.rounds} "
          "(median of rounds, milliseconds)")
    print(f"{'':28}{'table updated':>15}{'frame painted':>15}")
    print(f"{'keyed (update_cell by key)':28}{ms['keyed_update']:15.1f}"
          f"{ms['keyed_painted']:15.1f}")
    print(f"{'clear and refill':28}{ms['refill_update']:15.1f}{ms['refill_painted']:15.1f}")
    ratio_u = ms["refill_update"] / ms["keyed_update"]
    ratio_p = ms["refill_painted"] / ms["keyed_painted"]
    print(f"ratio refill/keyed: {ratio_u:.1f}x (update), {ratio_p:.1f}x (painted)")
    print(f"target keyed update <= 50 ms: {'met' if ms['keyed_update'] <= 50 else 'NOT met'}; "
          f"keyed faster than refill: {'yes' if ratio_u > 1 and ratio_p > 1 else 'NO'}")


if __name__ == "__main__":
    main()
