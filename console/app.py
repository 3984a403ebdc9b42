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

Outages (docs/outages.md): a liveness probe (`collectors.liveness`) runs
beside the poll, so a cluster that stops answering shows as "unreachable"
within `[outage] show_after` (5 s) however long the poll in flight waits.
The last good data stays on screen with its age, never as live; probes back
off (capped at `[outage] reconnect_max`) and the first one answered starts a
poll at once; only a complete successful refresh makes the data live again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from textual import work
from textual.app import App
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from collectors import untrusted
from collectors.errors import LagdeckError
from collectors.liveness import Liveness, OutageSettings, backoff
from collectors.logs import get_logger
from collectors.redact import scrub
from console import keymap as km
from console.data import LagView, Source
from console.messages import ClusterProbed, LagUpdated
from console.palette import Command, GlobalCommands
from console.screens.alerts import AlertsScreen
from console.screens.base import BaseScreen, ReportsWorkerErrors
from console.screens.dead_letters import DeadLettersScreen
from console.screens.flows import FlowsScreen
from console.screens.help import HelpScreen
from console.screens.jump import JumpScreen
from console.screens.overview import OverviewScreen
from console.screens.timeline import TimelineScreen
from console.settings import ConsoleSettings
from console.widgets.status_bar import Connection

_log = get_logger("tui")

#: Seconds between lag polls when all is well.
POLL_INTERVAL = 5.0
#: Share of one core the lag poll may use: a poll that costs more CPU than this share
#: of `POLL_INTERVAL` (thousands of groups) waits longer before the next (docs/lag.md).
POLL_CPU_BUDGET = 0.03
#: The longest a poll stretched by the CPU budget waits.
MAX_POLL_INTERVAL = 60.0
#: Back-off cap after failed polls (Dolphie's `min(2**attempt, 20)`).
MAX_BACKOFF = 20.0


@runtime_checkable
class Probed(Protocol):
    """A source that can tell whether its cluster answers (`KafkaSource`); a source
    without these (a fixed test source) is taken as always reachable."""

    def probe(self, timeout: float) -> Liveness: ...

    def abandon(self) -> None:
        """Leave a poll stuck on the lost cluster behind (see `KafkaSource.abandon`)."""


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
        settings: ConsoleSettings | None = None,
        poll_interval: float = POLL_INTERVAL,
        start_mode: str | None = None,
        cursor_blink: bool = True,
        welcome: str | None = None,
        exit_after: float | None = None,
        watchdog: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        #: read by `LineInput`; snapshot tests turn it off for stable pictures
        self.cursor_blink = cursor_blink
        self.source = source
        self.poll_interval = poll_interval
        self.lag_view: LagView | None = None
        #: every settings section, parsed once by the composition root
        #: (`console.commands.tui.open_console`); parsed here from the source's config
        #: when the app is built by hand (tests, benches)
        self.settings = settings or ConsoleSettings.from_settings(source.settings)
        self._keymap = dict(self.settings.keymap)
        self._start_mode = start_mode
        self._welcome = welcome
        self._exit_after = exit_after
        self._attempt = 0
        self._poll_timer: Timer | None = None
        self._outage_notified = False
        #: process CPU seconds the last lag poll took (all threads: the budget is per process)
        self._poll_cpu = 0.0
        self._poll_started_cpu = time.process_time()
        self.outage: OutageSettings = self.settings.outage
        #: raises a LagdeckError when something the console depends on died (the demo's
        #: embedded broker); checked every second, reported once
        self._watchdog = watchdog
        self.watchdog_error: str | None = None
        self._probe_timer: Timer | None = None
        self._probe_failures = 0
        #: when the probe first got no answer (None: the cluster answers)
        self._outage_since: float | None = None
        #: when it answered again; a poll is live only if it finished after this
        self._recovered_at: float | None = None

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
        if self._probing:
            self._schedule_probe(self.outage.probe_interval)
        if self._watchdog is not None:
            self.set_interval(1.0, self._check_watchdog, name="watchdog")

    def _check_watchdog(self) -> None:
        if self._watchdog is None or self.watchdog_error is not None:
            return
        try:
            self._watchdog()
        except LagdeckError as exc:
            self.watchdog_error = describe_error(exc)
            _log.error("%s", self.watchdog_error)
            self.notify(self.watchdog_error, title="the demo cannot go on", severity="error",
                        timeout=3600)

    def on_unmount(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        if self._probe_timer is not None:
            self._probe_timer.stop()
        try:
            self.source.close()
        except Exception:  # closing must never hide the real exit reason
            _log.exception("closing the data source")

    # -- the lag poll ----------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="lag", name="lag poll")
    def poll_lag(self) -> None:
        self._poll_started_cpu = time.process_time()
        view = self.source.poll_lag()
        self.post_message(LagUpdated(view))

    def next_poll_delay(self) -> float:
        """`poll_interval`, stretched so lag polls stay within `POLL_CPU_BUDGET` of a core.

        A poll's cost is the process's CPU from its start to now (the poll's success is
        handled after its `LagUpdated`): the fetch in the worker, the background threads
        it starts, and the screen's update. Counting the fetch alone, a cheaper fetch
        made polls come sooner and the table's updates, uncounted, cost more (the TUI at
        1,000 groups went from 4.7 % to 5.9 % of a core when the fetch got faster)."""
        self._poll_cpu = time.process_time() - self._poll_started_cpu
        delay = max(self.poll_interval, min(MAX_POLL_INTERVAL, self._poll_cpu / POLL_CPU_BUDGET))
        if delay > self.poll_interval:
            _log.debug("lag poll took %.2fs of CPU: next in %.1fs", self._poll_cpu, delay)
        return delay

    # -- the liveness probe ----------------------------------------------

    @property
    def _probing(self) -> bool:
        return isinstance(self.source, Probed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe", name="probe")
    def probe_cluster(self) -> None:
        source = self.source
        if isinstance(source, Probed):
            self.post_message(ClusterProbed(source.probe(self.outage.probe_timeout)))

    def _schedule_probe(self, delay: float) -> None:
        if self._probe_timer is not None:
            self._probe_timer.stop()
        self._probe_timer = self.set_timer(delay, self.probe_cluster, name="probe")

    @property
    def outage_since(self) -> float | None:
        """When the cluster stopped answering the probe (None while it answers)."""
        return self._outage_since

    def on_cluster_probed(self, message: ClusterProbed) -> None:
        live = message.liveness
        last = self.lag_view.snapshot.taken_at if self.lag_view else None
        if not live.reachable:
            self._probe_failures += 1
            delay = backoff(self._probe_failures, base=self.outage.probe_interval,
                            cap=self.outage.reconnect_max)
            if self._outage_since is None:
                self._outage_since = live.checked_at
                _log.warning("cluster unreachable: %s", live.detail)
                if self._poll_timer is not None:  # polls wait for the probe to answer
                    self._poll_timer.stop()
                if isinstance(self.source, Probed):  # the first poll after it must not wait
                    self.source.abandon()
                if not self._outage_notified:
                    self.notify(live.detail, title="cannot reach the cluster",
                                severity="error", timeout=8)
                    self._outage_notified = True
            self.connection = Connection("unreachable", detail=live.detail, last_ok=last,
                                         retry_in=delay, since=self._outage_since)
            self._schedule_probe(delay)
            return
        self._probe_failures = 0
        if self._outage_since is not None:
            _log.info("cluster answers again after %.1fs", live.checked_at - self._outage_since)
            self._outage_since = None
            self._recovered_at = live.checked_at
            self.connection = Connection("recovering", last_ok=last)
            self.poll_lag()  # live again only once a complete refresh succeeds
            self._reload_screen()
        self._schedule_probe(self.outage.probe_interval)

    def _schedule_poll(self, delay: float) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(delay, self.poll_lag, name="lag poll")

    def action_refresh(self) -> None:
        """Poll now (ctrl+r) and let the current screen refresh its own data."""
        self.poll_lag()
        self._reload_screen()

    def _reload_screen(self) -> None:
        """The screen on top fetches its own data again (a modal on top has none)."""
        screen = self.screen
        if isinstance(screen, BaseScreen):
            screen.reload()

    def on_lag_updated(self, message: LagUpdated) -> None:
        taken = message.view.snapshot.taken_at
        if self.lag_view is not None and taken < self.lag_view.snapshot.taken_at:
            return  # a poll overtaken by a newer one (after an outage)
        self.lag_view = message.view
        since = self._outage_since
        if since is not None and taken < since:
            pass  # finished before the outage was noticed: shown, but not as live
        elif self._recovered_at is not None and taken < self._recovered_at:
            self.connection = Connection("recovering", last_ok=taken)
        else:
            if since is not None:  # the cluster answered a whole refresh: it is back
                self._outage_since = None
                self._probe_failures = 0
                self._schedule_probe(self.outage.probe_interval)
            self._recovered_at = None
            self.connection = Connection("connected", last_ok=taken)
        screen = self.screen
        if isinstance(screen, BaseScreen):  # a modal on top (or another mode) draws on resume
            screen.show_lag()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place background outcomes are handled; screens forward theirs here
        (StateChanged does not bubble). A failure goes to the screen's
        `worker_failed(worker, line)` when it shows errors itself, else to a toast."""
        worker = event.worker
        if worker.group == "lag":
            if event.state == WorkerState.SUCCESS:
                if self._outage_notified and self.connection.live:
                    self.notify("connection restored", title="cluster")
                    self._outage_notified = False
                self._attempt = 0
                if self._outage_since is None:
                    self._schedule_poll(self.next_poll_delay())
            elif event.state == WorkerState.ERROR:
                self._attempt += 1
                cap = self.outage.reconnect_max if self._probing else MAX_BACKOFF
                delay = min(2.0**self._attempt, cap)
                line = describe_error(worker.error)
                _log.warning("lag poll failed (attempt %s): %s", self._attempt, line,
                             exc_info=worker.error)
                if self._outage_since is not None:
                    return  # the probe owns the outage; it polls again when answered
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
            node = worker.node
            if isinstance(node, ReportsWorkerErrors) and node.worker_failed(worker, line):
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

    def palette_commands(self) -> list[Command]:
        """Navigation available everywhere, and one entry per known group (ctrl+p)."""
        out: list[Command] = [
            ("go: consumer groups", partial(self.switch_mode, "overview"),
             "every group with status, lag and trend"),
            ("go: dead letters", partial(self.switch_mode, "dead-letters"),
             "dead-letter topics, records and redrive"),
            ("go: order timeline", partial(self.switch_mode, "timeline"),
             "follow one order / correlation id / trace id"),
            ("go: alerts", partial(self.switch_mode, "alerts"),
             "firing, pending and resolved alerts"),
            ("go: flows", partial(self.switch_mode, "flows"),
             "all orders: steps, latencies, where they stop"),
            ("refresh now", self.action_refresh, "poll the cluster without waiting"),
            ("help: keys", self.action_help, "the keys of this screen"),
        ]
        if self.lag_view is not None:
            for g in self.lag_view.snapshot.groups:
                out.append((f"group: {g.group}", partial(self.open_group, g.group),
                            f"{g.status.value}, lag {g.total_lag:,}"))
        return out

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
