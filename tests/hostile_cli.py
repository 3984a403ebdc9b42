"""`python -m tests.hostile_cli RUN ARGS...`: `lagdeck ARGS...` with the lag collector's
answer replaced by the hostile snapshot of `HostileWorld(RUN)`.

The embedded broker %-encodes group ids and topic names in ListGroups and
OffsetFetch answers (they are storage keys there), so a hostile group or topic name
never comes back raw from it; a Kafka cluster returns group names as written. This
runner gives `lag` and `watch` what such a cluster would answer, everything else
(the CLI, the rules, the formatting, the process's stdout) is the real thing.
"""

from __future__ import annotations

import sys

from collectors.lag import LagCollector
from tests.hostile import HostileWorld, hostile_snapshot


def main() -> int:
    world = HostileWorld(run=sys.argv[1])
    LagCollector.refresh = lambda self, *args, **kwargs: hostile_snapshot(world)  # type: ignore[method-assign]
    from console.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
