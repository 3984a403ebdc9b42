"""How the lag history stores one refresh: one row of packed columns, not a row per sample.

A refresh of 10,000 groups observes 100,000 group partitions. Stored as one
SQLite row per sample (the first format), each refresh inserted 100,000 rows
into two B-trees (1.1-1.3 s of writing, the tail of a `lagdeck lag` run) and
every new process read them all back, one Python tuple per row and a second
per sample (1.0-1.7 s at five to eight samples per partition). Stored as one
row per refresh, the same refresh is four blobs of about 2 MB, written in
milliseconds, and a process reads its history as a few arrays.

The columns, all little-endian, in the order of the refresh's samples:
- `keys`: the samples' key ids (int64) into the `sample_keys` table, where each
  (cluster, group, topic, partition) is spelled once;
- `committed`, `end_offset`: int64 offsets, `NONE` for unknown;
- `active`: one byte per sample: 0 no live member, 1 live members, 2 unknown.

Only this module knows the layout; `collectors.history` stores and reads the rows.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Sequence
from functools import partial
from itertools import repeat

from collectors.logs import get_logger
from collectors.status import Sample

#: an unknown offset (Kafka offsets are int64 and never this low: -1 is its own "none")
NONE = -(2**63)
_ACTIVE_CODE = {False: 0, True: 1, None: 2}
#: the byte back into `Sample.active`; any other byte (a damaged file) reads as unknown
_ACTIVE = (False, True, *([None] * 254))
_SWAP = sys.byteorder != "little"
#: `Sample` from a 4-tuple without its Python-level __new__ (a C call per sample)
_sample = partial(tuple.__new__, Sample)

_log = get_logger("history")


def pack_offsets(values: Iterable[int | None]) -> bytes:
    """Offsets as int64; None as `NONE`. A value outside int64 (no Kafka offset is)
    is stored as unknown, with a warning, rather than failing the whole refresh."""
    listed = [NONE if v is None else v for v in values]
    try:
        packed = array("q", listed)
    except (OverflowError, TypeError):
        kept = [v if isinstance(v, int) and NONE < v < 2**63 else NONE for v in listed]
        _log.warning("lag history: %d offsets outside 64 bits stored as unknown",
                     sum(1 for a, b in zip(listed, kept, strict=True) if a != b))
        packed = array("q", kept)
    return _out(packed)


def unpack_offsets(blob: bytes) -> Sequence[int | None]:
    values = _in("q", blob)
    if NONE in values:  # a C-level scan; unknown offsets are rare
        return [None if v == NONE else v for v in values]
    return values


def pack_ids(ids: Sequence[int]) -> bytes:
    return _out(array("q", ids))


def unpack_ids(blob: bytes) -> array:
    return _in("q", blob)


def pack_active(values: Iterable[bool | None]) -> bytes:
    return bytes(map(_ACTIVE_CODE.__getitem__, values))


def keyset(ids_blob: bytes) -> str:
    """The identity of a refresh's key list: refreshes of the same groups share it, which
    lets the first read skip a refresh whose keys already have their newest samples."""
    return hashlib.blake2b(ids_blob, digest_size=16).hexdigest()


def samples(taken_at: float, committed: bytes, end: bytes, active: bytes) -> list[Sample]:
    """The refresh's samples, in key order (C-level iteration: no Python code per sample)."""
    return list(map(_sample, zip(repeat(taken_at), unpack_offsets(committed),
                                 unpack_offsets(end), map(_ACTIVE.__getitem__, active),
                                 strict=False)))


def _out(values: array) -> bytes:
    if _SWAP:
        values.byteswap()
    return values.tobytes()


def _in(code: str, blob: bytes) -> array:
    values = array(code)
    values.frombytes(blob[: len(blob) - len(blob) % values.itemsize])
    if _SWAP:
        values.byteswap()
    return values
