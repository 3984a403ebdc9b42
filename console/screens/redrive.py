"""Redrive dialog: dry-run preview, typed confirmation, live progress, cancel.

The preview is `Redrive.plan()` (changes nothing) over exactly what the
operator chose: the ticked records, or every record matching the filter.
Applying needs the dead-letter topic's name typed in; it runs in its own
worker with its own clients, reports counts as it goes, and `esc` (or the
Cancel button) stops it after the record in hand, with everything done so far
committed. In read-only mode the preview works and applying is refused.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, ProgressBar, Static
from textual.worker import Worker

from collectors.errors import ReadOnlyError
from collectors.untrusted import one_line
from console import keymap as km
from console.messages import RedriveDone, RedrivePlanned, RedriveProgressed
from console.screens.base import console_app
from console.widgets.confirm import TypedConfirm
from console.widgets.keyed_table import Column, KeyedTable, Row
from dlq.guard import ensure_writable
from dlq.redrive import RedriveProgress, RedriveResult

if TYPE_CHECKING:
    from console.app import LagdeckApp

ACTION_STYLE = {"redrive": "green", "skip": "yellow", "fail": "bold red"}

SAMPLE_COLUMNS = (
    Column("where", "Record", 10),
    Column("key", "Key", 16),
    Column("target", "Back to"),
    Column("error", "Error"),
    Column("action", "Action", 8, lambda a: Text(a, style=ACTION_STYLE.get(a, ""))),
)


def plan_text(result: RedriveResult) -> Text:
    text = Text()
    if result.selected == 0:
        text.append("Nothing to redrive: no record matches", style="bold yellow")
        text.append(f" ({result.scanned} read).", style="dim")
        return text
    movable = result.selected - result.skipped - result.failed
    text.append(f"{movable} record{'s' if movable != 1 else ''} will be redriven",
                style="bold")
    if result.targets:
        text.append(": " + one_line(", ".join(f"{n} → {t}" for t, n in result.targets), 2000))
    if result.skipped:
        text.append(f"\n{result.skipped} skipped", style="yellow")
    if result.failed:
        text.append(f"\n{result.failed} cannot be delivered", style="bold red")
    if result.behind:
        text.append(f"; {result.behind} more wait behind it", style="red")
    for reason, n in result.reasons:
        text.append(f"\n  {n} × {one_line(reason, 400)}", style="dim")
    text.append(f"\n{result.scanned} read; nothing has been changed yet (dry run).",
                style="dim")
    return text


def result_text(result: RedriveResult) -> Text:
    text = Text()
    style = "bold yellow" if result.cancelled or result.failed or result.fenced \
        else "bold green"
    verb = "Fenced after redriving" if result.fenced \
        else "Cancelled after redriving" if result.cancelled else "Redriven"
    text.append(f"{verb} {result.redriven} record{'s' if result.redriven != 1 else ''}",
                style=style)
    if result.targets:
        text.append(" (" + one_line(", ".join(f"{n} → {t}" for t, n in result.targets), 2000)
                    + ")")
    text.append(f"\nselected {result.selected} · skipped {result.skipped} · failed "
                f"{result.failed} · read {result.scanned} in {result.elapsed_s:.1f}s",
                style="dim")
    if result.behind or result.not_reached:
        text.append(f"\n{result.behind} left behind a failure · {result.not_reached} not "
                    "reached (a rerun resumes)", style="yellow")
    if result.fenced:
        text.append(f"\n⚠ {one_line(result.fenced)}", style="red")
    for line in result.errors[:3]:
        text.append(f"\n⚠ {one_line(line, 400)}", style="red")
    return text


class RedriveScreen(ModalScreen[RedriveResult | None]):
    BINDINGS: ClassVar = km.bindings(km.REDRIVE)

    def __init__(self, topic: str, *, picked: frozenset[tuple[int, int]] | None = None,
                 where: list[str] | None = None, what: str = "") -> None:
        super().__init__()
        self.topic = topic
        self.picked = picked
        self.where = where or []
        self.what = what
        self.stage = "previewing"
        self.cancel_event = threading.Event()
        self.plan: RedriveResult | None = None
        self.result: RedriveResult | None = None

    @property
    def lagdeck(self) -> LagdeckApp:
        return console_app(self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.lagdeck.worker_state_changed(event)

    def compose(self) -> ComposeResult:
        with Vertical(id="redrive-box", classes="dialog"):
            yield Static(Text(f"Redrive dead letters from {one_line(self.topic)}"),
                         classes="title")
            yield Static(Text(one_line(self.what, 400)), id="redrive-what")
            yield Static("Previewing (dry run)…", id="redrive-status")
            yield ProgressBar(id="redrive-progress", show_eta=False)
            yield KeyedTable(SAMPLE_COLUMNS, id="redrive-samples", zebra_stripes=False,
                             classes="hidden")
            yield Static("", id="redrive-plan")
            yield Vertical(id="redrive-confirm")
            with Horizontal(classes="buttons"):
                yield Button("Redrive", id="redrive-go", variant="error", disabled=True,
                             classes="hidden")
                yield Button("Cancel", id="redrive-cancel")

    def on_mount(self) -> None:
        self.run_redrive(dry_run=True)

    # -- the worker ------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="redrive", name="redrive")
    def run_redrive(self, dry_run: bool) -> None:
        def progress(p: RedriveProgress) -> None:
            self.post_message(RedriveProgressed(p))

        if not dry_run:
            ensure_writable(self.lagdeck.source.cluster, f"redrive of {self.topic}")
        result = self.lagdeck.source.redrive(
            self.topic, picked=self.picked, where=self.where, dry_run=dry_run,
            progress=progress, cancel=self.cancel_event)
        self.post_message(RedrivePlanned(result) if dry_run else RedriveDone(result))

    def worker_failed(self, worker: Worker, line: str) -> bool:
        """Show a failure inside the dialog instead of a toast."""
        self.stage = "failed"
        self.query_one("#redrive-status", Static).update(Text(f"✗ {one_line(line)}",
                                                              style="bold red"))
        self.query_one("#redrive-progress").add_class("hidden")
        self.query_one("#redrive-go").add_class("hidden")
        self.query_one("#redrive-cancel", Button).label = "Close"
        return True

    # -- messages from the worker ----------------------------------------

    def on_redrive_progressed(self, message: RedriveProgressed) -> None:
        p = message.progress
        bar = self.query_one("#redrive-progress", ProgressBar)
        bar.update(total=max(p.total, 1), progress=p.scanned)
        verb = "Previewing (dry run)" if p.dry_run else "Redriving"
        if self.cancel_event.is_set():
            verb = "Cancelling after the record in hand"
        line = f"{verb}… read {p.scanned}/{p.total}, selected {p.selected}"
        if not p.dry_run:
            line += f", redriven {p.redriven}, skipped {p.skipped}, failed {p.failed}"
        self.query_one("#redrive-status", Static).update(Text(line))

    def on_redrive_planned(self, message: RedrivePlanned) -> None:
        self._show_plan(message.result)

    def on_redrive_done(self, message: RedriveDone) -> None:
        self._show_result(message.result)

    def _show_plan(self, result: RedriveResult) -> None:
        self.plan = result
        self.stage = "preview"
        self.query_one("#redrive-status", Static).update(
            Text("Preview — nothing has been changed", style="bold"))
        self.query_one("#redrive-progress").add_class("hidden")
        samples = self.query_one("#redrive-samples", KeyedTable)
        samples.sync([Row(f"{s.partition}@{s.offset}", (
            f"{s.partition}@{s.offset}", s.key or "∅", s.target or "?",
            (s.error_class or "").rsplit(".", 1)[-1], s.action)) for s in result.samples])
        samples.set_class(not result.samples, "hidden")
        self.query_one("#redrive-plan", Static).update(plan_text(result))
        movable = result.selected - result.skipped - result.failed
        if movable <= 0:
            self.query_one("#redrive-cancel", Button).label = "Close"
            return
        refused = None
        try:
            ensure_writable(self.lagdeck.source.cluster, f"redrive of {self.topic}")
        except ReadOnlyError as exc:
            refused = str(exc)
        confirm = TypedConfirm(self.topic, f"redrive {movable} record"
                               f"{'s' if movable != 1 else ''}", refused=refused)
        self.query_one("#redrive-confirm", Vertical).mount(confirm)
        if refused is None:
            self.query_one("#redrive-go").remove_class("hidden")

    def _show_result(self, result: RedriveResult) -> None:
        self.result = result
        self.stage = "done"
        self.query_one("#redrive-progress", ProgressBar).update(
            total=max(result.scanned, 1), progress=result.scanned)
        self.query_one("#redrive-status", Static).update(result_text(result))
        self.query_one("#redrive-plan", Static).update("")
        self.query_one("#redrive-samples").add_class("hidden")
        self.query_one("#redrive-go").add_class("hidden")
        self.query_one("#redrive-cancel", Button).label = "Close"
        self.query_one("#redrive-cancel", Button).focus()

    # -- confirmation and buttons ----------------------------------------

    @on(TypedConfirm.Confirmed)
    def _confirmed(self) -> None:
        self.start()

    @on(Input.Changed, "#confirm-input")
    def _typed(self) -> None:
        self.query_one("#redrive-go", Button).disabled = not self.query_one(TypedConfirm).matched

    @on(Button.Pressed, "#redrive-go")
    def _go_pressed(self) -> None:
        confirm = self.query(TypedConfirm)
        if confirm and confirm.first().matched:
            self.start()
        else:
            self.notify(f"type {self.topic!r} to confirm", severity="warning")

    def start(self) -> None:
        if self.stage != "preview":
            return
        self.stage = "running"
        self.query_one("#redrive-confirm").remove_children()
        self.query_one("#redrive-go").add_class("hidden")
        self.query_one("#redrive-progress").remove_class("hidden")
        self.query_one("#redrive-status", Static).update("Redriving…")
        self.run_redrive(dry_run=False)

    @on(Button.Pressed, "#redrive-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        if self.stage in ("running", "previewing"):
            self.cancel_event.set()
            self.query_one("#redrive-status", Static).update(
                "Cancelling after the record in hand…")
            if self.stage == "previewing":
                self.dismiss(None)
            return
        self.dismiss(self.result)
