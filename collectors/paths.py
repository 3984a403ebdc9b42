"""Where lagdeck keeps its files, so the CLI, `watch` and the TUI share them.

`LAGDECK_STATE_DIR` and `LAGDECK_CONFIG` override the platformdirs defaults
(tests and containers use them to stay isolated).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "lagdeck"


def state_dir() -> Path:
    """The state directory (history, correlation index, audit log, logs), created on demand."""
    override = os.environ.get("LAGDECK_STATE_DIR")
    path = Path(override) if override else platformdirs.user_state_path(APP)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_config_path() -> Path:
    """The TOML config file: `LAGDECK_CONFIG` or `<user config dir>/lagdeck/config.toml`."""
    override = os.environ.get("LAGDECK_CONFIG")
    if override:
        return Path(override)
    return platformdirs.user_config_path(APP) / "config.toml"


def log_path() -> Path:
    return state_dir() / "lagdeck.log"
