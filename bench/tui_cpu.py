"""What a console left open costs: CPU of the TUI and of the broker in steady state.

Starts the embedded broker, creates `--groups` groups committed on every
partition of one of 10 topics (`--partitions` each), then runs the real
`lagdeck` TUI in a pseudo-terminal (120x40, output drained) at its default
poll interval. After `--warmup` seconds it reads the CPU time (user + system,
from /proc) of the whole TUI process tree and of the broker, waits
`--seconds`, and reads them again. The same broker alone (no TUI) is measured
over the same span first, as the baseline the TUI adds to.

    .venv/bin/python bench/tui_cpu.py                     # modest: 200 groups, 30 s
    .venv/bin/python bench/tui_cpu.py --groups 1000 --seconds 60   # the issue-11 size

Target (issue 11), at 1,000 groups x 10 partitions over a minute: the TUI
<= 5% of one core, and it adds <= 2% of a core to the broker.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import struct
import sys
import tempfile
import termios
import threading
import time
from fcntl import ioctl
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lag_refresh import add_groups, create_world

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo += children.get(p, [])
    return total


def drain(fd: int, stop: threading.Event) -> None:
    """Read the TUI's output so it never blocks on a full terminal."""
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=200, help="full size: 1000")
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0, help="full size: 60")
    parser.add_argument("--warmup", type=float, default=20.0,
                        help="seconds before measuring (first polls, exact reads, history)")
    args = parser.parse_args(argv)

    from console.embedded import EmbeddedBroker

    tmp = Path(tempfile.mkdtemp(prefix="lagdeck-tui-cpu-"))
    with EmbeddedBroker(log_dir=tmp) as broker:
        names = create_world(broker.bootstrap, args.topics, args.partitions, 20)
        add_groups(broker.bootstrap, 0, args.groups, names, args.partitions, 20, 7)
        broker_pid = broker.pid
        print(f"{args.groups} groups x {args.partitions} partitions on {broker.bootstrap}")

        time.sleep(2.0)
        b0, t0 = cpu_seconds(broker_pid), time.monotonic()
        time.sleep(args.seconds)
        idle = (cpu_seconds(broker_pid) - b0) / (time.monotonic() - t0)
        print(f"broker alone: {idle:.1%} of a core over {args.seconds:g}s")

        env = {**os.environ, "LAGDECK_STATE_DIR": str(tmp / "state"),
               "LAGDECK_CONFIG": str(tmp / "none.toml"), "TERM": "xterm-256color",
               "COLUMNS": "120", "LINES": "40"}
        (tmp / "none.toml").write_text("")
        lagdeck = str(Path(sys.executable).parent / "lagdeck")
        pid, fd = pty.fork()
        if pid == 0:  # the child: the real console in a 120x40 terminal
            os.execve(lagdeck, [lagdeck, "-b", broker.bootstrap], env)
        ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        stop = threading.Event()
        reader = threading.Thread(target=drain, args=(fd, stop), daemon=True)
        reader.start()
        try:
            time.sleep(args.warmup)
            tui0, b0, t0 = cpu_seconds(pid), cpu_seconds(broker_pid), time.monotonic()
            time.sleep(args.seconds)
            span = time.monotonic() - t0
            tui = (cpu_seconds(pid) - tui0) / span
            busy = (cpu_seconds(broker_pid) - b0) / span
        finally:
            os.kill(pid, signal.SIGTERM)
            stop.set()
            os.waitpid(pid, 0)
            os.close(fd)
    added = busy - idle
    print(f"TUI process tree: {tui:.1%} of a core over {span:.0f}s (after {args.warmup:g}s "
          "warm-up)")
    print(f"broker with the TUI: {busy:.1%} of a core; added by the TUI: {added:.1%}")
    met = tui <= 0.05 and added <= 0.02
    print("target (TUI <= 5%, broker +<= 2%):", "met" if met else "NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
