"""Which records of a batch may carry an id, found at C speed on the raw bytes.

A cold lookup does not need every record decoded to answer: only those that
could carry the id. Every id `FastDecoder` gives a record is spelled out
literally in its key, a header value or its value, except in three cases:
a B3 or Jaeger trace header (ids are lowercased and zero-padded), a JSON
payload with backslash escapes (`\\u006f` spells `o`), and a dead letter
(filed under a reference to its origin). Records of those kinds are
"irregular": always decoded exactly. With a Schema Registry, so is a frame
whose schema has a numeric field named like an order-id path (Avro and
Protobuf numbers are varints; their strings are plain UTF-8, found like any
text), and a frame with a numeric key schema. For the others a substring search over
the batch joined into one buffer (`bytes.find`) finds every candidate, and
candidates are decoded exactly, so the filter can over-report but never
miss (a property test checks it against `FastDecoder`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain
from operator import itemgetter

from tracing.extract import FastDecoder

#: Separates the records of a batch in the joined buffers.
SEP = b"\x00"
#: Substrings of lowercased header names that may make a record irregular
#: (B3 / Jaeger trace headers, dead-letter layouts); a hit is checked exactly.
_NAME_HINTS = ("b3", "uber-trace-id", "topic", "error", "exception", "kafka_", "__connect",
               "_schema_id")

Headers = Sequence[tuple[str, bytes | None]] | None

_chain = chain.from_iterable
_first = itemgetter(0)
_second = itemgetter(1)


def _starts(pieces: Sequence[bytes | None]) -> list[int]:
    """End (exclusive, separator included) of each record's piece in the joined buffer."""
    return list(accumulate([len(p) + 1 if p else 1 for p in pieces]))


class RawBatch:
    """One batch's keys, values and headers, joined for substring search."""

    __slots__ = (
        "_hays",
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
        # C-speed joins of the non-empty parts only; aligned to records on a hit.
        self.key_hay = SEP.join(filter(None, keys))
        self.value_hay = SEP.join(filter(None, values))
        self.header_hay = SEP.join(filter(None, map(_second, _chain(filter(None, headers)))))
        self._hays: list[tuple[bytes, list[int]] | None] = [None, None, None]
        #: indices of records that must always be decoded exactly
        self.irregular: list[int] = self._irregular(decoder)

    def _irregular(self, decoder: FastDecoder) -> list[int]:
        out: set[int] = set()
        if self.header_hay or any(self.headers):
            listed = list(map(_first, _chain(filter(None, self.headers))))
            try:
                names = "\x00".join(listed).lower()
            except TypeError:  # a name that is not text (never from confluent-kafka)
                names = "\x00".join(map(str, listed)).lower()
            if any(hint in names for hint in _NAME_HINTS):
                for i, h in enumerate(self.headers):
                    if h and any(decoder.irregular_header(str(n)) for n, _ in h):
                        out.add(i)
        if b"\\" in self.value_hay:
            # JSON escapes; a registry frame (first byte 0) is judged by its schema below
            # (Avro and Protobuf bytes hold 0x5c at random, JSON Schema frames are text).
            out.update(i for i, v in enumerate(self.values) if v and b"\\" in v and v[0] != 0)
        if decoder.payloads is not None:
            # Registry frames whose schema holds numeric id fields (varints, not text).
            out |= decoder.irregular_frames(self.keys, self.values, self.headers)
        return sorted(out)

    def candidates(self, needles: Iterable[bytes]) -> set[int]:
        """Indices of the records whose key, value or a header value contains a needle."""
        out: set[int] = set()
        for needle in needles:
            if not needle:
                continue
            for which, hay in enumerate((self.key_hay, self.value_hay, self.header_hay)):
                if needle not in hay:
                    continue
                hay, starts = self._aligned(which)  # the same bytes, one piece per record
                pos = hay.find(needle)
                while pos >= 0:
                    out.add(bisect_right(starts, pos))
                    pos = hay.find(needle, pos + 1)
        return out

    def _aligned(self, which: int) -> tuple[bytes, list[int]]:
        """Keys, values or header values joined record by record, and where each ends.

        Built on the first hit in a batch (most batches have none).
        """
        got = self._hays[which]
        if got is None:
            if which == 0:
                pieces = self.keys
            elif which == 1:
                pieces = self.values
            else:
                pieces = [SEP.join([v for _, v in h if v]) if h else b"" for h in self.headers]
            got = self._hays[which] = (SEP.join([p or b"" for p in pieces]), _starts(pieces))
        return got
