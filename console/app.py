"""The Textual console: lag, dead letters, order timelines and alerts in one terminal.

Layout of the code (Harlequin/Dolphie): `console.data` fetches in worker
threads and returns snapshots; the app and screens only render them. The app
owns the lag poll (the overview, group and alerts screens all draw from it);
screens with their own data (dead letters, timeline) run their own workers.

Polling is rescheduled with `set_timer` after each poll finishes (Dolphie), so
a slow cluster never piles polls up in the thread pool; a failed poll backs
off exponentially (`min(2**attempt, 20)` seconds) and the status bar says so.
One `Worker.StateChanged` handler turns background errors into a
notification, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from collectors import untrusted
from collectors.config import ClusterConfig
from collectors.errors import LagdeckError
from collectors.logs import get_logger
from collectors.redact import scrub
from console import keymap as km
from console.data import KafkaSource, LagView, Source
from console.messages import LagUpdated
from console.palette import GlobalCommands
from console.screens.alerts import AlertsScreen
from console.screens.dead_letters import DeadLettersScreen
from console.screens.flows import FlowsScreen
from console.screens.help import HelpScreen
from console.screens.jump import JumpScreen
from console.screens.overview import OverviewScreen
from console.screens.timeline import TimelineScreen
from console.widgets.status_bar import Connection

_log = get_logger("tui")

#: Seconds between lag polls when all is well.
POLL_INTERVAL = 5.0
#: Back-off cap after failed polls (Dolphie's `min(2**attempt, 20)`).
MAX_BACKOFF = 20.0


def describe_error(exc: BaseException | None) -> str:
    """One line for the operator; the traceback goes to the log only."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, LagdeckError):
        return scrub(str(exc))
    return scrub(f"{type(exc).__name__}: {exc}")


class LagdeckApp(App[None]):
    """`lagdeck` without a command: every screen, one key away."""

    CSS_PATH = Path(__file__).with_name("lagdeck.tcss")
    TITLE = "lagdeck"
    BINDINGS: ClassVar = km.bindings(km.APP)
    MODES: ClassVar = {
        "overview": OverviewScreen,
        "dead-letters": DeadLettersScreen,
        "timeline": TimelineScreen,
        "alerts": AlertsScreen,
        "flows": FlowsScreen,
    }
    DEFAULT_MODE = "overview"
    COMMANDS: ClassVar = App.COMMANDS | {GlobalCommands}

    connection: reactive[Connection] = reactive(Connection, always_update=True)

    def __init__(
        self,
        source: Source,
        *,
        keymap: Mapping[str, str] | None = None,
        poll_interval: float = POLL_INTERVAL,
        start_mode: str | None = None,
        cursor_blink: bool = True,
        welcome: str | None = None,
        exit_after: float | None = None,
    ) -> None:
        super().__init__()
        #: read by `LineInput`; snapshot tests turn it off for stable pictures
        self.cursor_blink = cursor_blink
        self.source = source
        self.poll_interval = poll_interval
        self.lag_view: LagView | None = None
        self._keymap = dict(keymap if keymap is not None else km.load_keymap(source.settings))
        self._start_mode = start_mode
        self._welcome = welcome
        self._exit_after = exit_after
        self._attempt = 0
        self._poll_timer: Timer | None = None
        self._outage_notified = False

    # -- identity shown in the status bar -------------------------------

    @property
    def cluster_label(self) -> str:
        return self.source.label

    @property
    def read_only(self) -> bool:
        return self.source.read_only

    @property
    def keymap(self) -> dict[str, str]:
        return dict(self._keymap)

    # -- lifecycle -------------------------------------------------------

    def on_mount(self) -> None:
        self.set_keymap(self._keymap)
        if self._start_mode and self._start_mode != self.DEFAULT_MODE:
            self.switch_mode(self._start_mode)
        if self._welcome:
            self.notify(self._welcome, title="lagdeck demo", timeout=30)
        if self._exit_after:
            self.set_timer(self._exit_after, self.exit)
        self.poll_lag()

    def on_unmount(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        try:
            self.source.close()
        except Exception:  # closing must never hide the real exit reason
            _log.exception("closing the data source")

    # -- the lag poll ----------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="lag", name="lag poll")
    def poll_lag(self) -> None:
        view = self.source.poll_lag()
        self.post_message(LagUpdated(view))

    def _schedule_poll(self, delay: float) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(delay, self.poll_lag, name="lag poll")

    def action_refresh(self) -> None:
        """Poll now (ctrl+r) and let the current screen refresh its own data."""
        self.poll_lag()
        refresh = getattr(self.screen, "reload", None)
        if callable(refresh):
            refresh()

    @on(LagUpdated)
    def _lag_updated(self, message: LagUpdated) -> None:
        self.lag_view = message.view
        self.connection = Connection("connected", last_ok=message.view.snapshot.taken_at)
        screen = self.screen
        show = getattr(screen, "show_lag", None)
        if callable(show):  # a modal on top (or another mode) draws on resume instead
            show()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place background outcomes are handled; screens forward theirs here
        (StateChanged does not bubble). A failure goes to the screen's
        `worker_failed(worker, line)` when it shows errors itself, else to a toast."""
        worker = event.worker
        if worker.group == "lag":
            if event.state == WorkerState.SUCCESS:
                if self._outage_notified:
                    self.notify("connection restored", title="cluster")
                self._attempt = 0
                self._outage_notified = False
                self._schedule_poll(self.poll_interval)
            elif event.state == WorkerState.ERROR:
                self._attempt += 1
                delay = min(2.0**self._attempt, MAX_BACKOFF)
                line = describe_error(worker.error)
                _log.warning("lag poll failed (attempt %s): %s", self._attempt, line,
                             exc_info=worker.error)
                last = self.lag_view.snapshot.taken_at if self.lag_view else None
                self.connection = Connection("reconnecting", detail=line, last_ok=last,
                                             retry_in=delay)
                if not self._outage_notified:
                    self.notify(line, title="cannot reach the cluster", severity="error",
                                timeout=8)
                    self._outage_notified = True
                self._schedule_poll(delay)
            return
        if event.state == WorkerState.ERROR:
            line = describe_error(worker.error)
            _log.warning("%s failed: %s", worker.name or worker.group, line,
                         exc_info=worker.error)
            handler = getattr(worker.node, "worker_failed", None)
            if callable(handler) and handler(worker, line):
                return
            self.notify(line, title=f"{worker.name or worker.group} failed", severity="error",
                        timeout=8)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every toast is plain text: messages carry topic and group names, broker errors
        and record fields, which are data, never markup (`[/]` would raise)."""
        super().notify(untrusted.block(message), title=untrusted.one_line(title),
                       severity=severity, timeout=timeout, markup=False)

    # -- app-wide actions ------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_jump(self) -> None:
        if not isinstance(self.screen, JumpScreen):
            self.push_screen(JumpScreen())

    def open_group(self, group: str) -> None:
        """Show one group's partitions (from any screen)."""
        from console.screens.group import GroupScreen

        async def go() -> None:
            if self.current_mode != "overview":
                await self.switch_mode("overview")
            while len(self.screen_stack) > 1:
                await self.pop_screen()
            await self.push_screen(GroupScreen(group))

        self.call_later(go)

    def follow(self, query: str,
               flow_marks: Mapping[tuple[str, int, int], str] | None = None) -> None:
        """Open the timeline of an order / correlation id / trace id (with the flows
        view's duplicate / out-of-order marks of its events, when it comes from there)."""

        async def go() -> None:
            await self.switch_mode("timeline")
            screen = self.screen
            if isinstance(screen, TimelineScreen):
                screen.flow_marks = dict(flow_marks or {})
                screen.search(query)

        self.call_later(go)

    def show_dead_letters(self, topic: str | None = None, *, partition: int | None = None,
                          offset: int | None = None, redrive: bool = False) -> None:
        """Open the dead-letters screen, optionally at one record (and its redrive preview)."""

        async def go() -> None:
            await self.switch_mode("dead-letters")
            screen = self.screen
            if isinstance(screen, DeadLettersScreen) and topic:
                screen.goto(topic, partition=partition, offset=offset, redrive=redrive)

        self.call_later(go)


# -- `lagdeck demo` ---------------------------------------------------------------

#: Alert rules of the demo world, so the alerts screen has something to say.
DEMO_RULES = """
[[rule]]
name = "consumer-stopped"
group = ".*-service"
min_status = "STALL"
severity = "critical"

[[rule]]
name = "notifications-behind"
group = "notification-service"
max_lag_seconds = 20
for = "10s"
severity = "warning"
"""

DEMO_WELCOME = (
    "An order pipeline is running on an embedded broker. loyalty-service stops after "
    "~15 s (watch it turn STOP on top of this list); notification-service is slow; a "
    "share of payments fail into payments.events-dlt.\n"
    "Try: 2 dead letters → t follows a record's order → R redrives it; 5 flows shows where "
    "orders stop. ? shows every key."
)


def run_demo(cluster: ClusterConfig, *, duration: float | None = None) -> int:
    """The console against the demo world (`lagdeck demo`), with demo alert rules."""
    from collectors.rules import parse_rules_text

    source = KafkaSource(cluster, rules=parse_rules_text(DEMO_RULES, "<demo rules>"),
                         label=f"demo {cluster.bootstrap_servers}",
                         stuck_after_seconds=30.0)
    LagdeckApp(source, poll_interval=2.0, welcome=DEMO_WELCOME, exit_after=duration).run()
    return 0
