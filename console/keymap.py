"""Key binding ids and their default keys, remappable from the `[keymap]` config section.

Every `Binding` in the console carries one of these ids, so an operator can
move a key without touching code (Posting's approach): in the config file,

    [keymap]
    "dlq.redrive" = "ctrl+r"
    "app.help" = "f1"

An unknown id is a config error naming the known ones, so a typo is caught at
start-up instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding

from collectors.config import Settings
from collectors.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """One remappable binding: its id, default key(s), action and footer label."""

    id: str
    key: str
    action: str
    description: str
    show: bool = True
    key_display: str | None = None
    priority: bool = False

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            key_display=self.key_display,
            priority=self.priority,
            id=self.id,
        )


# App-wide keys (k9s conventions: `?` help, `:` jump, `esc` back, `/` filter per screen).
APP = (
    Key("app.help", "question_mark", "help", "Help", key_display="?"),
    Key("app.jump", "colon", "jump", "Jump", key_display=":"),
    Key("app.overview", "1", "switch_mode('overview')", "Groups", show=False),
    Key("app.dead_letters", "2", "switch_mode('dead-letters')", "Dead letters", show=False),
    Key("app.timeline", "3", "switch_mode('timeline')", "Timeline", show=False),
    Key("app.alerts", "4", "switch_mode('alerts')", "Alerts", show=False),
    Key("app.flows", "5", "switch_mode('flows')", "Flows", show=False),
    Key("app.refresh", "ctrl+r", "refresh", "Refresh now", show=False),
    Key("app.quit", "q", "quit", "Quit"),
)

OVERVIEW = (
    Key("overview.open", "enter", "open_group", "Open group"),
    Key("overview.filter", "slash", "filter", "Filter", key_display="/"),
    Key("overview.sort", "s", "sort", "Sort"),
    Key("overview.clear", "escape", "clear_filter", "Clear filter", show=False),
)

GROUP = (
    Key("group.back", "escape", "back", "Back"),
    Key("group.replay", "R", "replay", "Replay…"),
)

DEAD_LETTERS = (
    Key("dlq.back", "escape", "back", "Back", show=False),
    Key("dlq.select", "space", "toggle_select", "Select"),
    Key("dlq.select_all", "a", "select_all", "Select all"),
    Key("dlq.filter", "slash", "filter", "Filter", key_display="/"),
    Key("dlq.redrive", "R", "redrive", "Redrive…"),
    Key("dlq.follow", "t", "follow", "Follow order"),
    Key("dlq.next_page", "right_square_bracket", "page(1)", "Next page", key_display="]"),
    Key("dlq.prev_page", "left_square_bracket", "page(-1)", "Prev page", key_display="["),
    Key("dlq.switch_pane", "tab", "switch_pane", "Topics/records", show=False),
)

TIMELINE = (
    Key("timeline.search", "slash", "search", "Order id", key_display="/"),
    Key("timeline.open", "enter", "open_event", "Open dead letter"),
    Key("timeline.redrive", "R", "redrive", "Redrive…"),
    Key("timeline.back", "escape", "back", "Back", show=False),
)

ALERTS = (
    Key("alerts.open", "enter", "open_group", "Open group"),
    Key("alerts.back", "escape", "back", "Back", show=False),
)

FLOWS = (
    Key("flows.open", "enter", "open_step", "Stopped orders"),
    Key("flows.back", "escape", "back", "Back", show=False),
)

FLOW_STEP = (
    Key("flowstep.open", "enter", "open_order", "Open timeline"),
    Key("flowstep.back", "escape", "back", "Back"),
)

ALL: tuple[Key, ...] = (APP + OVERVIEW + GROUP + DEAD_LETTERS + TIMELINE + ALERTS + FLOWS
                        + FLOW_STEP)
KNOWN_IDS = frozenset(k.id for k in ALL)


def bindings(keys: tuple[Key, ...]) -> list[Binding]:
    return [k.binding() for k in keys]


def load_keymap(settings: Settings | None) -> dict[str, str]:
    """The `[keymap]` section as `{binding_id: keys}`, validated against the known ids."""
    if settings is None:
        return {}
    section: Mapping[str, object] = settings.section("keymap")
    keymap: dict[str, str] = {}
    where = settings.path or "the config file"
    for binding_id, keys in section.items():
        if binding_id not in KNOWN_IDS:
            known = ", ".join(sorted(KNOWN_IDS))
            raise ConfigError(
                f"{where}: [keymap] has unknown binding id {binding_id!r} (known: {known})"
            )
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(
                f"{where}: [keymap] {binding_id!r} must be a key string such as \"ctrl+r\""
            )
        keymap[binding_id] = keys.strip()
    return keymap


def key_for(binding_id: str, keymap: Mapping[str, str]) -> str:
    """The key currently bound to `binding_id` (after remapping), for help texts."""
    if binding_id in keymap:
        return keymap[binding_id]
    key = next(k for k in ALL if k.id == binding_id)
    return key.key_display or key.key
