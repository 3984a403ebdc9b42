"""Command palette (ctrl+p) providers: the app's navigation plus one provider per screen.

Posting's pattern: each provider lists `(title, callback, help)` for the
screen it was opened from, so the palette shows the actions that make sense
there. Mutating commands are left out in read-only mode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from collectors.untrusted import one_line

Command = tuple[str, Callable[[], object], str]


class _Commands(Provider):
    def commands(self) -> list[Command]:
        return []

    @property
    def read_only(self) -> bool:
        return bool(getattr(self.app, "read_only", False))

    async def discover(self) -> Hits:
        for title, callback, help_text in self.commands():
            title = one_line(title, 200)
            yield DiscoveryHit(Content(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self.commands():
            title = one_line(title, 200)  # group and topic names are data
            score = matcher.match(title)
            if score > 0:
                # `highlight` parses its argument as markup: only markup-free titles
                shown = Content(title) if "[" in title else matcher.highlight(title)
                yield Hit(score, shown, callback, text=title, help=help_text)


class GlobalCommands(_Commands):
    """Navigation available everywhere, and one entry per known group."""

    def commands(self) -> list[Command]:
        app = self.app
        out: list[Command] = [
            ("go: consumer groups", partial(app.switch_mode, "overview"),
             "every group with status, lag and trend"),
            ("go: dead letters", partial(app.switch_mode, "dead-letters"),
             "dead-letter topics, records and redrive"),
            ("go: order timeline", partial(app.switch_mode, "timeline"),
             "follow one order / correlation id / trace id"),
            ("go: alerts", partial(app.switch_mode, "alerts"),
             "firing, pending and resolved alerts"),
            ("go: flows", partial(app.switch_mode, "flows"),
             "all orders: steps, latencies, where they stop"),
            ("refresh now", app.action_refresh, "poll the cluster without waiting"),
            ("help: keys", app.action_help, "the keys of this screen"),
        ]
        view = getattr(app, "lag_view", None)
        if view is not None:
            for g in view.snapshot.groups:
                out.append((f"group: {g.group}", partial(app.open_group, g.group),
                            f"{g.status.value}, lag {g.total_lag:,}"))
        return out


class OverviewCommands(_Commands):
    def commands(self) -> list[Command]:
        screen = self.screen
        out: list[Command] = []
        for how in ("status", "lag", "seconds", "name"):
            out.append((f"sort groups by {how}", partial(_sort, screen, how),
                        "worst first" if how == "status" else f"order the table by {how}"))
        out.append(("filter groups", screen.action_filter, "substring or regex on the name"))
        if getattr(screen, "filter_text", ""):
            out.append(("clear the filter", screen.action_clear_filter, "show every group"))
        return out


def _sort(screen, how: str) -> None:
    screen.sort = how
    screen.show_lag()


class GroupCommands(_Commands):
    def commands(self) -> list[Command]:
        screen = self.screen
        title = "replay: preview an offset reset" if self.read_only else \
            "replay: reset offsets (preview first)"
        return [(title, screen.action_replay,
                 "earliest, latest, a time, an offset or a shift; dry run before anything")]


class DeadLetterCommands(_Commands):
    def commands(self) -> list[Command]:
        screen = self.screen
        out: list[Command] = []
        for topic in getattr(screen, "topic_names", lambda: [])():
            out.append((f"dead letters: browse {topic}", partial(screen.open_topic, topic),
                        "page through its records"))
        out += [
            ("select all on this page", screen.action_select_all, "for redrive"),
            ("filter dead letters", screen.action_filter,
             "error_class=X, error_message~text, key~text, header.NAME=V"),
            ("next page", partial(screen.action_page, 1), ""),
            ("previous page", partial(screen.action_page, -1), ""),
        ]
        title = "redrive: preview (read-only)" if self.read_only else \
            "redrive: the selection or the filter"
        out.append((title, screen.action_redrive,
                    "move dead letters back to their original topic, with a preview"))
        return out


class TimelineCommands(_Commands):
    def commands(self) -> list[Command]:
        screen = self.screen
        out: list[Command] = [("follow an order", screen.action_search,
                               "order id, correlation id or trace id")]
        for query in getattr(screen, "recent", ())[-10:]:
            out.append((f"follow: {query}", partial(screen.search, query), "again"))
        return out


class AlertsCommands(_Commands):
    def commands(self) -> list[Command]:
        screen = self.screen
        out: list[Command] = []
        for group in getattr(screen, "alert_groups", lambda: [])():
            out.append((f"alerts: open {group}", partial(self.app.open_group, group),
                        "the group's partitions"))
        return out


class FlowsCommands(_Commands):
    """The steps where orders stopped, worst first; each opens its stopped orders."""

    def commands(self) -> list[Command]:
        screen = self.screen
        flows = getattr(screen, "flows", None)
        out: list[Command] = [("refresh flows", screen.reload, "read the index again now")]
        if flows is None:
            return out
        for s in sorted(flows.steps, key=lambda s: -s.stopped):
            if s.stopped:
                out.append((f"stopped at: {s.step.name} ({s.step.topic})",
                            partial(screen.open_step, s.step),
                            f"{s.stopped:,} orders, oldest {s.oldest_stopped_seconds or 0:.0f}s"))
        return out
