"""Replay dialog: choose where to move a group's offsets, see the plan, then confirm.

The preview is `dlq.replay.plan_reset` (a dry run that changes nothing):
per partition the committed offset now, where it would move and how many
records that replays or skips. Applying runs `execute_reset` on exactly that
plan, after the operator types the group name; it refuses an active group
and a plan whose offsets moved since, and reads the offsets back to prove
the change. Read-only mode shows the preview and refuses to apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static
from textual.worker import Worker

from collectors.errors import LagdeckError, ReadOnlyError
from collectors.untrusted import one_line
from console import keymap as km
from console.messages import ReplayDone, ReplayPlanned
from console.screens.base import console_app
from console.widgets import format as fmt
from console.widgets.confirm import TypedConfirm
from console.widgets.inputs import LineInput
from console.widgets.keyed_table import Column, KeyedTable, Row
from console.wording import for_tui
from dlq.guard import ensure_writable
from dlq.replay import RESETTABLE_STATES, ReplayPlan, ReplayResult, ResetSpec

if TYPE_CHECKING:
    from console.app import LagdeckApp

KIND_CHOICES = (
    ("to the earliest offset", "earliest"),
    ("to the latest offset (skip everything)", "latest"),
    ("to a date/time (ISO 8601, UTC if no zone)", "datetime"),
    ("back by a duration (15m, 1h30m, 2d)", "duration"),
    ("to an offset", "offset"),
    ("shift by N (negative replays)", "shift"),
)
PLACEHOLDER = {
    "datetime": "2024-05-01T12:00:00Z", "duration": "15m", "offset": "0", "shift": "-100",
}

#: How the form names the values of a `ResetSpec` in errors: the kind picker already says
#: which one the value box holds.
FORM_LABELS = {"to_datetime": "", "by_duration": "", "to_offset": "offset"}


def spec_from_form(kind: str, value: str) -> ResetSpec:
    """The form's choice as a `ResetSpec`; UsageError (one line) when the value is wrong."""
    from collectors.errors import UsageError

    value = value.strip()
    if kind in ("earliest", "latest"):
        return ResetSpec(kind)
    if not value:
        raise UsageError(f"{kind} needs a value, e.g. {PLACEHOLDER[kind]}")
    if kind == "datetime":
        return ResetSpec.to_datetime(value)
    if kind == "duration":
        return ResetSpec.by_duration(value)
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{kind} needs a whole number, got {value!r}") from None
    return ResetSpec.to_offset(number) if kind == "offset" else ResetSpec.shift_by(number)


def _delta(value: int | None) -> Text:
    if value is None:
        return Text("—", justify="right")
    if value > 0:
        return Text(f"replays {value:,}", style="yellow", justify="right")
    if value < 0:
        return Text(f"skips {-value:,}", style="red", justify="right")
    return Text("no change", style="dim", justify="right")


PLAN_COLUMNS = (
    Column("partition", "Partition", 9),
    Column("current", "Committed now", 13, fmt.render_count),
    Column("new", "Moves to", 11, fmt.render_count),
    Column("delta", "Effect", 16, _delta),
    Column("note", "Note", None, fmt.render_dim),
)


def plan_summary(plan: ReplayPlan) -> Text:
    changes = plan.changes
    replayed = sum(max(0, p.delta or 0) for p in changes)
    skipped = sum(max(0, -(p.delta or 0)) for p in changes)
    text = Text()
    text.append(f"{one_line(plan.group)} on {one_line(plan.topic)}, {plan.spec.describe()}: ",
                style="bold")
    text.append(f"{len(changes)} of {len(plan.partitions)} partitions change")
    if replayed:
        text.append(f", {replayed:,} records will be processed again", style="yellow")
    if skipped:
        text.append(f", {skipped:,} records will be skipped", style="red")
    text.append(f"\ngroup state {one_line(plan.group_state)}; nothing has been changed yet "
                "(dry run).",
                style="dim")
    if plan.group_state not in RESETTABLE_STATES:
        text.append(f"\n⚠ the group is {one_line(plan.group_state)}: Kafka resets offsets "
                    "only on an "
                    "empty group, so stop its consumers before applying.", style="bold yellow")
    return text


def applied_summary(result: ReplayResult) -> Text:
    """What the table above now shows: moves that were applied, not a preview."""
    plan = result.plan
    text = Text()
    text.append(f"{one_line(plan.group)} on {one_line(plan.topic)}, {plan.spec.describe()}: ",
                style="bold")
    n = len(result.applied)
    text.append(f"applied to {n} partition{'s' if n != 1 else ''}")
    text.append(f"\ngroup state {one_line(plan.group_state)}; the changes above were made.",
                style="dim")
    return text


class ReplayScreen(ModalScreen[ReplayResult | None]):
    BINDINGS: ClassVar = km.bindings(km.REPLAY)

    def __init__(self, group: str, topics: list[str], topic: str | None = None) -> None:
        super().__init__()
        self.group = group
        self.topics = topics
        self.topic = topic or topics[0]
        self.plan: ReplayPlan | None = None
        self.result: ReplayResult | None = None
        self.stage = "form"
        self.planned_form: tuple[str, str, str] | None = None

    @property
    def lagdeck(self) -> LagdeckApp:
        return console_app(self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.lagdeck.worker_state_changed(event)

    def compose(self) -> ComposeResult:
        with Vertical(id="replay-box", classes="dialog"):
            yield Static(Text(f"Replay consumer group {one_line(self.group)}"), classes="title")
            with Horizontal(classes="form-row"):
                yield Select([(Text(one_line(t, 120)), t) for t in self.topics], value=self.topic,
                             allow_blank=False, id="replay-topic")
                yield Select(KIND_CHOICES, value="earliest", allow_blank=False,
                             id="replay-kind")
            yield LineInput(placeholder="(no value needed)", id="replay-value", disabled=True)
            yield Static("Choose where to move the offsets, then Preview (nothing changes "
                         "until you confirm).", id="replay-status", classes="dim")
            yield KeyedTable(PLAN_COLUMNS, id="replay-plan", zebra_stripes=False,
                             classes="hidden")
            yield Static("", id="replay-summary")
            yield Vertical(id="replay-confirm")
            with Horizontal(classes="buttons"):
                yield Button("Preview", id="replay-preview", variant="primary")
                yield Button("Apply", id="replay-apply", variant="error", disabled=True,
                             classes="hidden")
                yield Button("Close", id="replay-close")

    # -- form ------------------------------------------------------------

    @on(Select.Changed, "#replay-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        box = self.query_one("#replay-value", Input)
        kind = str(event.value)
        box.disabled = kind in ("earliest", "latest")
        box.placeholder = PLACEHOLDER.get(kind, "(no value needed)")
        self._invalidate()

    @on(Select.Changed, "#replay-topic")
    def _topic_changed(self) -> None:
        self._invalidate()

    @on(Input.Changed, "#replay-value")
    def _value_changed(self) -> None:
        self._invalidate()

    def _form(self) -> tuple[str, str, str]:
        return (str(self.query_one("#replay-topic", Select).value),
                str(self.query_one("#replay-kind", Select).value),
                self.query_one("#replay-value", LineInput).value.strip())

    def _invalidate(self) -> None:
        """A change to the form makes an earlier preview stale."""
        if self.stage == "preview" and self._form() != self.planned_form:
            self.stage = "form"
            self.plan = None
            self.query_one("#replay-confirm").remove_children()
            self.query_one("#replay-apply").add_class("hidden")
            self.query_one("#replay-plan").add_class("hidden")
            self.query_one("#replay-summary", Static).update("")
            self.query_one("#replay-status", Static).update("Changed: preview again.")

    @on(Input.Submitted, "#replay-value")
    @on(Button.Pressed, "#replay-preview")
    def preview(self) -> None:
        if self.stage in ("planning", "applying", "done"):
            return
        topic = str(self.query_one("#replay-topic", Select).value)
        kind = str(self.query_one("#replay-kind", Select).value)
        try:
            spec = spec_from_form(kind, self.query_one("#replay-value", Input).value)
        except LagdeckError as exc:
            self.query_one("#replay-status", Static).update(
                Text(one_line(f"✗ {for_tui(exc, FORM_LABELS)}"), style="bold red"))
            return
        self.stage = "planning"
        self.planned_form = self._form()
        self.query_one("#replay-status", Static).update(
            Text(f"Planning (dry run) for {one_line(topic)}…"))
        self._plan(topic, spec)

    # -- workers ---------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="replay", name="replay plan")
    def _plan(self, topic: str, spec: ResetSpec) -> None:
        plan = self.lagdeck.source.plan_replay(self.group, topic, spec)
        self.post_message(ReplayPlanned(plan))

    @work(thread=True, exclusive=True, exit_on_error=False, group="replay", name="replay")
    def _apply(self, plan: ReplayPlan) -> None:
        ensure_writable(self.lagdeck.source.cluster, f"replay of group {self.group}")
        result = self.lagdeck.source.execute_replay(plan)
        self.post_message(ReplayDone(result))

    def worker_failed(self, worker: Worker, line: str) -> bool:
        self.query_one("#replay-status", Static).update(Text(f"✗ {one_line(line)}",
                                                             style="bold red"))
        if self.stage == "applying":
            self.stage = "preview-failed"
            self.query_one("#replay-confirm").remove_children()
            self.query_one("#replay-apply").add_class("hidden")
        else:
            self.stage = "form"
        return True

    def on_replay_planned(self, message: ReplayPlanned) -> None:
        self._show_plan(message.plan)

    def on_replay_done(self, message: ReplayDone) -> None:
        self._show_result(message.result)

    def _show_plan(self, plan: ReplayPlan) -> None:
        self.plan = plan
        self.stage = "preview"
        self.query_one("#replay-status", Static).update(
            Text("Preview — nothing has been changed", style="bold"))
        table = self.query_one("#replay-plan", KeyedTable)
        table.remove_class("hidden")
        table.sync([Row(str(p.partition), (p.partition, p.current_offset, p.new_offset,
                                           p.delta if p.changes else 0, p.note or ""))
                    for p in plan.partitions])
        self.query_one("#replay-summary", Static).update(plan_summary(plan))
        confirm_box = self.query_one("#replay-confirm", Vertical)
        confirm_box.remove_children()
        if not plan.changes:
            return
        refused = None
        try:
            ensure_writable(self.lagdeck.source.cluster, f"replay of group {self.group}")
        except ReadOnlyError as exc:
            refused = str(exc)
        confirm = TypedConfirm(self.group, f"move {len(plan.changes)} partition"
                               f"{'s' if len(plan.changes) != 1 else ''}", refused=refused)
        confirm_box.mount(confirm)
        if refused is None:
            self.query_one("#replay-apply").remove_class("hidden")

    def _show_result(self, result: ReplayResult) -> None:
        self.result = result
        self.stage = "done"
        self.query_one("#replay-confirm").remove_children()
        self.query_one("#replay-apply").add_class("hidden")
        self.query_one("#replay-preview").add_class("hidden")
        after = ", ".join(f"p{p}={'—' if o is None else o}" for p, o in result.committed_after)
        self.query_one("#replay-status", Static).update(Text.assemble(
            (f"Reset {len(result.applied)} partition{'s' if len(result.applied) != 1 else ''}"
             f" of {one_line(result.plan.topic)} for {one_line(result.plan.group)}",
             "bold green"),
            ("; committed offsets read back and verified: " if result.verified else "; ",
             "green"),
            (after, "dim")))
        # the preview's "nothing has been changed yet (dry run)" is no longer true
        self.query_one("#replay-summary", Static).update(applied_summary(result))
        self.query_one("#replay-close", Button).focus()

    # -- confirm ---------------------------------------------------------

    @on(Input.Changed, "#confirm-input")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#replay-apply", Button).disabled = \
            not self.query_one(TypedConfirm).matched

    @on(TypedConfirm.Confirmed)
    @on(Button.Pressed, "#replay-apply")
    def apply(self) -> None:
        confirm = self.query(TypedConfirm)
        if self.stage != "preview" or self.plan is None or not confirm \
                or not confirm.first().matched:
            return
        self.stage = "applying"
        self.query_one("#replay-apply", Button).disabled = True
        self.query_one("#replay-status", Static).update("Applying…")
        self._apply(self.plan)

    @on(Button.Pressed, "#replay-close")
    def action_close(self) -> None:
        if self.stage == "applying":
            self.notify("the reset is being applied; it finishes in a moment",
                        severity="warning")
            return
        self.dismiss(self.result)
