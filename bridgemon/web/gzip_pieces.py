"""A gzip body made of pieces compressed on their own, each kept until its bytes change.

At 12,000 sites /metrics is 18 MB of text; compressing all of it for every scrape was the
largest cost of serving it (150 ms of a worker thread per scrape here). Most of it does not
change between two scrapes 15 s apart: the state, up, ready and info lines of a steady site
never do, and with rounds every 30 s half the sites have not been probed since. So each
piece of the exposition (a family's lines for 500 sites, ``metrics.pieces``) is
compressed on its own as raw deflate ending in a sync flush — such streams concatenate into
one valid deflate stream — and kept with the bytes it was made from; the next scrape reuses
it when the same slot holds equal bytes, and compresses only what changed.

The gzip trailer needs the CRC-32 of the whole text. zlib can combine the CRCs of two
pieces, but Python's zlib does not expose crc32_combine, so ``_combine`` uses CRC's
linearity instead: crc(A+B) = crc32(zeros(len B), crc A) ^ crc B ^ crc32(zeros(len B), 0),
work proportional to the length as a plain CRC, done in C with the GIL released. No
library assembles gzip members this way; the format part is RFC 1952's ten-byte header
and eight-byte trailer.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from bridgemon.cooperative import Steps, drain

LEVEL = 1  # Prometheus text still shrinks ~9x, in a third of level 6's time

# RFC 1952: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_LAST_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block: the deflate stream ends
_TRAILER = struct.Struct("<II")  # CRC-32 and length mod 2**32 of the uncompressed text


@dataclass(frozen=True, slots=True)
class Compressed:
    """One piece: the bytes it was made from (what a later scrape compares), its raw
    deflate ending on a byte boundary, the CRC-32 and length of its text, and the CRC-32
    of as many zero bytes (for ``_combine``)."""

    parts: Sequence[bytes]
    deflated: bytes
    crc: int
    size: int
    zeros_crc: int


def compress(parts: Sequence[bytes]) -> Compressed:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    text = b"".join(parts)
    deflated = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Compressed(parts, deflated, zlib.crc32(text), len(text),
                      zlib.crc32(_zeros(len(text))))


#: A planned body, piece by piece: its slot, and the piece as kept or the bytes to compress.
Plan = list[tuple[Hashable, Compressed | Sequence[bytes]]]


class GzipPieces:
    """The pieces of the last body served, by slot, read and replaced on the event loop
    only (``plan_steps``, ``keep``)."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, Compressed] = {}

    def plan_steps(self, pieces: Iterable[tuple[Hashable, Sequence[bytes]]]
                   ) -> Steps[tuple[Plan, int]]:
        """Each piece, as kept when its slot holds equal bytes, else to be compressed, and
        the length of the whole text; pausing after each piece (see cooperative.py).

        The kept pieces are taken out as they are planned, so the last body's pieces are
        let go one at a time between the loop's turns: let go all at once when the new
        ones are kept, 480 pieces of 500 lines took 4-10 ms of the loop at 12,000 sites (a
        cache miss per line). A plan not followed by ``keep`` only costs the next scrape
        some compression."""
        kept = self._kept
        plan: Plan = []
        size = 0
        for slot, parts in pieces:
            size += sum(map(len, parts))
            known = kept.pop(slot, None)
            # Equal sequences: the same bytes objects compare at once, lines rebuilt alike
            # by content, and the first difference ends the comparison.
            if known is not None and known.parts == parts:
                if known.parts is not parts:  # hold today's objects, let the old ones go
                    known = Compressed(parts, known.deflated, known.crc, known.size,
                                       known.zeros_crc)
                plan.append((slot, known))
            else:
                plan.append((slot, parts))
            yield
        return plan, size

    def keep(self, pieces: dict[Hashable, Compressed]) -> None:
        """What a body was assembled from becomes what the next one compares with (slots
        no longer served are dropped)."""
        self._kept = dict(pieces)  # its own: plan_steps takes entries out of it


def assemble(plan: Plan) -> tuple[bytes, dict[Hashable, Compressed]]:
    return drain(assemble_steps(plan))


def assemble_steps(plan: Plan) -> Steps[tuple[bytes, dict[Hashable, Compressed]]]:
    """The gzip body of a plan, compressing what it must, and every piece by slot for
    ``GzipPieces.keep``; pausing after each piece. On the loop, not in a worker thread:
    with hundreds of pieces the thread took the GIL back hundreds of times a scrape, and
    the engine's ticks beside it went from 2 to 18 ms under load."""
    out = [_HEADER]
    crc = 0
    size = 0
    by_slot: dict[Hashable, Compressed] = {}
    for slot, step in plan:
        piece = step if isinstance(step, Compressed) else compress(step)
        by_slot[slot] = piece
        out.append(piece.deflated)
        crc = _combine(crc, piece) if size else piece.crc
        size += piece.size
        yield
    out.append(_LAST_BLOCK)
    out.append(_TRAILER.pack(crc, size & 0xFFFFFFFF))
    return b"".join(out), by_slot


def _combine(crc_a: int, b: Compressed) -> int:
    """crc32(A + B) from crc32(A) and piece B: see the module's docstring."""
    return zlib.crc32(_zeros(b.size), crc_a) ^ b.crc ^ b.zeros_crc


_ZEROS = bytes(1 << 20)


def _zeros(size: int) -> memoryview:
    global _ZEROS
    zeros = _ZEROS
    if len(zeros) < size:  # replaced, never resized: a thread may be reading the old one
        zeros = _ZEROS = bytes(max(size, 2 * len(zeros)))
    return memoryview(zeros)[:size]
