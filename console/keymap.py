"""Key binding ids and their default keys, remappable from the `[keymap]` config section.

Every `Binding` in the console carries one of these ids, so an operator can
move a key without touching code (Posting's approach): in the config file,

    [keymap]
    "dlq.redrive" = "ctrl+e"
    "app.help" = "f1"

An unknown id, a key name Textual does not know (`"notakey+++"`) and two
bindings answering one key on a screen (`"dlq.redrive" = "space"` would take
the key that ticks records) are config errors, all reported at start-up
instead of silently changing what a key does.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import Keys, _character_to_key, key_to_character

from collectors.config import Settings
from collectors.config_schema import Problem, report
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

# Dialogs: their keys come first while they are open (`q` and `?` close the help
# instead of quitting or opening it again), so they are checked on their own.
HELP = (Key("help.close", "escape,q,question_mark", "dismiss", "Close"),)
JUMP = (Key("jump.close", "escape", "dismiss", "Close"),)
REDRIVE = (Key("redrive.cancel", "escape", "cancel", "Cancel / close"),)
REPLAY = (Key("replay.close", "escape", "close", "Close"),)

# The tables' own key (a focused table answers before its screen).
TABLE = (Key("table.open", "enter", "select_cursor", "Open"),)

ALL: tuple[Key, ...] = (APP + OVERVIEW + GROUP + DEAD_LETTERS + TIMELINE + ALERTS + FLOWS
                        + FLOW_STEP + HELP + JUMP + REDRIVE + REPLAY + TABLE)
KNOWN_IDS = frozenset(k.id for k in ALL)


def bindings(keys: tuple[Key, ...]) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """`keys` as Textual bindings (typed as Textual's `BINDINGS` class variable)."""
    return [k.binding() for k in keys]


#: The binding sets active together: app-wide keys plus one screen's.
SCREENS: dict[str, tuple[Key, ...]] = {
    "Groups": OVERVIEW, "Group": GROUP, "Dead letters": DEAD_LETTERS, "Timeline": TIMELINE,
    "Alerts": ALERTS,
}
#: The binding sets checked alone: a dialog's keys shadow the app-wide ones while it is
#: open. (The tables' key is checked with every screen's: a focused table answers
#: first, so moving it onto a screen's key would hide that key.)
ALONE: dict[str, tuple[Key, ...]] = {
    "help": HELP, "jump": JUMP, "redrive": REDRIVE, "replay": REPLAY,
}
_MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_NAMED_KEYS = frozenset(k.value for k in Keys if not k.value.startswith("<"))


def key_name_problem(keys: str) -> str | None:
    """What is wrong with a Textual key string (`q`, `ctrl+r`, `f1`, `question_mark`,
    several separated by commas), or None."""
    for key in keys.split(","):
        key = key.strip()
        if not key:
            return f"{keys!r} has an empty key (keys are separated by commas)"
        *mods, name = key.split("+")
        bad = [m for m in mods if m not in _MODIFIERS]
        if bad or not name:
            return (f"{key!r} is not a key: modifiers are {', '.join(sorted(_MODIFIERS))}, "
                    "joined with + to one key, as in \"ctrl+r\"")
        if len(name) == 1 and name.isprintable() and name != " ":
            continue
        if name in _NAMED_KEYS or f"ctrl+{name}" in _NAMED_KEYS or key_to_character(name):
            continue
        hint = difflib.get_close_matches(name, sorted(_NAMED_KEYS), n=1)
        more = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{key!r} is not a key name{more}; use e.g. \"q\", \"ctrl+r\", \"f1\", \"space\""
    return None


def _normal(key: str) -> str:
    key = key.strip()
    return _character_to_key(key) if len(key) == 1 else key


def effective_keys(keymap: Mapping[str, str], keys: tuple[Key, ...]) -> dict[str, list[str]]:
    """Binding id -> the keys it answers to once `keymap` is applied (normalised)."""
    return {k.id: [_normal(x) for x in keymap.get(k.id, k.key).split(",") if x.strip()]
            for k in keys}


def keymap_problems(section: object) -> list[Problem]:
    """Every mistake in a `[keymap]` section: unknown ids, bad key names, and two bindings
    answering the same key on one screen (app-wide keys count on every screen)."""
    if not isinstance(section, Mapping):
        return []  # the config schema reports the type
    problems: list[Problem] = []
    valid: dict[str, str] = {}
    for binding_id, keys in section.items():
        path = ("keymap", str(binding_id))
        if binding_id not in KNOWN_IDS:
            close = difflib.get_close_matches(str(binding_id), sorted(KNOWN_IDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(Problem(path, f"unknown binding id {binding_id!r}{hint}; see "
                                          "the help screen (?) for the ids"))
            continue
        if not isinstance(keys, str) or not keys.strip():
            continue  # the config schema reports the type
        problem = key_name_problem(keys)
        if problem:
            problems.append(Problem(path, problem))
            continue
        valid[binding_id] = keys
    # a binding restated at its default keys cannot add a clash the defaults lack (the
    # tables' enter and a screen's "open" share their key on purpose)
    defaults = effective_keys({}, ALL)
    moved = {b for b, keys in effective_keys(valid, ALL).items()
             if b in valid and keys != defaults[b]}
    reported: set[tuple[str, str]] = set()
    together = {name: APP + keys + TABLE
                for name, keys in {"every screen": (), **SCREENS}.items()}
    for screen, keys in {**together, **ALONE}.items():
        owners: dict[str, str] = {}
        for binding_id, bound in effective_keys(valid, keys).items():
            for key in bound:
                other = owners.setdefault(key, binding_id)
                if other == binding_id:
                    continue
                culprit = binding_id if binding_id in moved else other
                if culprit not in moved or (culprit, key) in reported:
                    continue
                reported.add((culprit, key))
                peer = other if culprit == binding_id else binding_id
                where = ("app-wide" if screen == "every screen" else f"in the {screen} dialog"
                         if screen in ALONE else f"on the {screen} screen")
                problems.append(Problem(("keymap", culprit),
                                        f"{key!r} is already bound to {peer} {where}; "
                                        "one key, one action"))
    return problems


def load_keymap(settings: Settings | None) -> dict[str, str]:
    """The `[keymap]` section as `{binding_id: keys}`; every mistake reported at once."""
    if settings is None:
        return {}
    section: Mapping[str, object] = settings.section("keymap")
    problems = keymap_problems(section)
    for binding_id, keys in section.items():
        if not isinstance(keys, str) or not keys.strip():
            problems.append(Problem(("keymap", str(binding_id)),
                                    "must be a key string such as \"ctrl+r\""))
    if problems:
        raise ConfigError("\n".join(report(problems, settings.text,
                                           str(settings.path or "the config file"))))
    return {str(k): str(v).strip() for k, v in section.items()}


def display_key(app, binding_id: str, keymap: Mapping[str, str]) -> str:
    """The first key bound to `binding_id` after `keymap`, as the footer displays it."""
    key = next(k for k in ALL if k.id == binding_id)
    if binding_id in keymap:
        return app.get_key_display(Binding(keymap[binding_id].split(",")[0].strip(), ""))
    return key.key_display or app.get_key_display(Binding(key.key, ""))


def key_for(binding_id: str, keymap: Mapping[str, str]) -> str:
    """The key currently bound to `binding_id` (after remapping), for help texts."""
    if binding_id in keymap:
        return keymap[binding_id]
    key = next(k for k in ALL if k.id == binding_id)
    return key.key_display or key.key
