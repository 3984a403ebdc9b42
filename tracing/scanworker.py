"""Entry point of a scan worker process: `python -m tracing.scanworker`.

Reads one pickled `ShareJob` from stdin, scans it (see `tracing.scanner`)
and writes length-prefixed pickles to stdout: ("progress", records done)
now and then, and ("result", ShareResult) once. The parent started it and
is the only reader, so unpickling its input is safe.
"""

from __future__ import annotations

import os
import pickle
import sys

from tracing.scanner import run_share


def main() -> int:
    job = pickle.loads(sys.stdin.buffer.read())
    # The framed channel gets its own descriptor; anything else written to fd 1
    # (a library printing) goes to /dev/null instead of corrupting the frames.
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)

    def send(kind: str, payload: object) -> None:
        data = pickle.dumps((kind, payload))
        out.write(len(data).to_bytes(4, "big") + data)
        out.flush()

    run_share(job, send)
    return 0


if __name__ == "__main__":
    sys.exit(main())
