"""lagdeck's own consumer groups: how they are named, so listings and alerts can leave them out.

A redrive keeps its progress in a consumer group on the dead-letter topic
(`dlq.redrive.default_group` builds the names). Those groups lag by design
between runs, so lag listings hide them unless asked and alerts ignore them.
"""

from __future__ import annotations

#: Every redrive progress group starts with this.
REDRIVE_GROUP_PREFIX = "lagdeck-redrive."
#: Prefixes of the consumer groups lagdeck itself creates to keep progress.
OWN_GROUP_PREFIXES = (REDRIVE_GROUP_PREFIX,)


def is_own_group(group: str) -> bool:
    """Whether `group` is one of lagdeck's own progress groups."""
    return group.startswith(OWN_GROUP_PREFIXES)
