"""Entry point of a scan worker process: `python -m tracing.scanworker`.

Reads a length-prefixed pickled `ShareJob` from stdin, scans it (see
`tracing.scanner.run_share`) and writes length-prefixed pickles to stdout:
("progress", records done) now and then, ("answer", ShareAnswer) after
phase 1, ("related", matches) after reading the ids to follow from stdin,
and ("result", ShareResult) once indexed. The parent started it and is the
only writer to its stdin, so unpickling its input is safe.
"""

from __future__ import annotations

import os
import pickle
import sys

from tracing.scanner import ShareJob, run_share


def _receive() -> object:
    """The next framed pickle from the parent; None when it closed the pipe (or died)."""
    head = sys.stdin.buffer.read(4)
    if len(head) < 4:
        return None
    data = sys.stdin.buffer.read(int.from_bytes(head, "big"))
    return pickle.loads(data)


def main() -> int:
    job = _receive()
    if job is None:
        return 1
    if not isinstance(job, ShareJob):  # the parent (scanner.Workers) sends only a ShareJob
        raise TypeError(f"scan worker expected a ShareJob, got {type(job).__name__}")
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

    run_share(job, send, _receive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
