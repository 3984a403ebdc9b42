"""Which records of a batch may carry an id, found at C speed on the raw bytes.

A cold lookup does not need every record decoded to answer: only those that
could carry the id. Every id `FastDecoder` gives a record is spelled out
literally in its key, a header value or its value, except in three cases:
a B3 or Jaeger trace header (ids are lowercased and zero-padded), a JSON
payload with backslash escapes (`\\u006f` spells `o`), and a dead letter
(filed under a reference to its origin). Records of those kinds are
"irregular": always decoded exactly. For the others a substring search over
the batch joined into one buffer (`bytes.find`) finds every candidate, and
candidates are decoded exactly, so the filter can over-report but never
miss (a property test checks it against `FastDecoder`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

from tracing.extract import FastDecoder

#: Separates the records of a batch in the joined buffers.
SEP = b"\x00"
#: Substrings of lowercased header names that may make a record irregular
#: (B3 / Jaeger trace headers, dead-letter layouts); a hit is checked exactly.
_NAME_HINTS = ("b3", "uber-trace-id", "topic", "error", "exception", "kafka_", "__connect")

Headers = Sequence[tuple[str, bytes | None]] | None


def _starts(pieces: Sequence[bytes | None]) -> list[int]:
    """End (exclusive, separator included) of each record's piece in the joined buffer."""
    return list(accumulate(len(p) + 1 if p else 1 for p in pieces))


class RawBatch:
    """One batch's keys, values and headers, joined for substring search."""

    __slots__ = (
        "_kstarts",
        "_vstarts",
        "header_hay",
        "headers",
        "irregular",
        "key_hay",
        "keys",
        "value_hay",
        "values",
    )

    def __init__(self, keys: list[bytes | None], values: list[bytes | None],
                 headers: list[Headers], decoder: FastDecoder) -> None:
        self.keys = keys
        self.values = values
        self.headers = headers
        self.key_hay = SEP.join([k or b"" for k in keys])
        self.value_hay = SEP.join([v or b"" for v in values])
        self.header_hay = SEP.join([v for h in headers if h for _, v in h if v])
        self._kstarts: list[int] | None = None
        self._vstarts: list[int] | None = None
        #: indices of records that must always be decoded exactly
        self.irregular: list[int] = self._irregular(decoder)

    def _irregular(self, decoder: FastDecoder) -> list[int]:
        out: set[int] = set()
        if self.header_hay or any(self.headers):
            names = "\x00".join([str(n) for h in self.headers if h for n, _ in h]).lower()
            if any(hint in names for hint in _NAME_HINTS):
                for i, h in enumerate(self.headers):
                    if h and any(decoder.irregular_header(str(n)) for n, _ in h):
                        out.add(i)
        if b"\\" in self.value_hay:
            out.update(i for i, v in enumerate(self.values) if v and b"\\" in v)
        return sorted(out)

    def candidates(self, needles: Iterable[bytes]) -> set[int]:
        """Indices of the records whose key, value or a header value contains a needle."""
        out: set[int] = set()
        for needle in needles:
            if not needle:
                continue
            for hay, which in ((self.key_hay, 0), (self.value_hay, 1)):
                pos = hay.find(needle)
                if pos < 0:
                    continue
                starts = self._starts(which)
                while pos >= 0:
                    out.add(bisect_right(starts, pos))
                    pos = hay.find(needle, pos + 1)
            if needle in self.header_hay:
                for i, h in enumerate(self.headers):
                    if h and any(v and needle in v for _, v in h):
                        out.add(i)
        return out

    def _starts(self, which: int) -> list[int]:
        if which == 0:
            if self._kstarts is None:
                self._kstarts = _starts(self.keys)
            return self._kstarts
        if self._vstarts is None:
            self._vstarts = _starts(self.values)
        return self._vstarts
