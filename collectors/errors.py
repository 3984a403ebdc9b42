"""Typed errors: one clear line for the operator, details in the log.

Every failure the user can act on is a `LagdeckError`; the command line prints
`lagdeck: error: <message>` and exits with `exit_code`, never a traceback.
"""

from __future__ import annotations


class LagdeckError(Exception):
    """A failure the operator should act on (exit code 1)."""

    exit_code = 1


class UsageError(LagdeckError):
    """Bad usage: a flag, an argument or an input the user typed (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file, profile, properties file or client property is wrong."""


class BrokerUnavailable(LagdeckError):
    """The cluster cannot be reached (bad address, broker down, timeout)."""


class KafkaOperationError(LagdeckError):
    """A broker answered a request with an error."""


class NotFoundError(LagdeckError):
    """A topic, group or record the user named does not exist."""


class ReadOnlyError(LagdeckError):
    """A mutating action was attempted in read-only mode."""


class EmbeddedBrokerError(LagdeckError):
    """The embedded Tansu broker is missing, failed to start or panicked."""



class ValueProblem(LagdeckError):
    """A failure about one value the user gave, worded by the face that asked for it.

    `field` names the value in the domain's terms (`since`, `rate`, `where`,
    `to_offset`...) and `problem` says what is wrong with it, without saying how
    it was typed: each face adds that (the command line names its flag, the TUI
    its field), so no layer below the console words a message as a flag. `lead`
    is text that comes before the value's name ("no topic matches ").
    """

    def __init__(self, field: str, problem: str, *, lead: str = "") -> None:
        self.field = field
        self.problem = problem
        self.lead = lead
        super().__init__(self.worded(field.replace("_", " ")))

    def worded(self, name: str) -> str:
        """The message with the value called `name` ("" when the context already names it)."""
        if not name:
            return self.lead + self.problem.removeprefix(": ")
        return f"{self.lead}{name}{'' if self.problem.startswith(':') else ' '}{self.problem}"


class InvalidValue(ValueProblem, UsageError):
    """A value the user gave is out of range or malformed (exit code 2)."""


class NothingMatches(ValueProblem, NotFoundError):
    """A pattern the user gave matches nothing (exit code 1)."""
