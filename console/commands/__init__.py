"""One module per command; each registers its own parser (see `console.cli`)."""

from console.commands import broker, demo, dlq, flows, lag, replay, trace, tui, watch

#: Order shown in `lagdeck --help`.
COMMANDS = (demo, broker, lag, trace, flows, dlq, replay, watch, tui)
