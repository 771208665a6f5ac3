"""The /metrics gzip body made of kept pieces: one valid gzip member, the exact text, and
only what changed compressed again."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Hashable, Sequence

from bridgemon.cooperative import drain
from bridgemon.web import gzip_pieces
from bridgemon.web.gzip_pieces import Compressed, GzipPieces, assemble


def served(kept: GzipPieces, pieces: list[tuple[Hashable, Sequence[bytes]]]
           ) -> tuple[bytes, dict[Hashable, Compressed]]:
    plan, size = drain(kept.plan_steps(pieces))
    assert size == sum(len(part) for _, parts in pieces for part in parts)
    body, by_slot = assemble(plan)
    kept.keep(by_slot)
    return body, by_slot


def one_member(body: bytes) -> bytes:
    """The text of a body that must be a single gzip member (what every client reads)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = inflater.decompress(body) + inflater.flush()
    assert inflater.eof and inflater.unused_data == b""
    assert gzip.decompress(body) == text  # the CRC-32 and length of the trailer check out
    return text


def lines(prefix: str, count: int, value: float) -> list[bytes]:
    return [f'{prefix}{{site="{i}"}} {value + i / 1e6!r}\n'.encode() for i in range(count)]


def test_a_body_is_the_text_and_the_next_one_compresses_only_what_changed() -> None:
    kept = GzipPieces()
    state = lines("bridgemon_site_state", 1000, 1.0)
    rtt = lines("bridgemon_icmp_rtt_seconds", 1000, 0.0002)
    first = [("self", (b"# TYPE up gauge\nup 1.0\n",)), (("state", 0), state),
             (("rtt", 0), rtt), (("empty", 0), [])]
    body, by_slot = served(kept, first)
    assert one_member(body) == b"".join(b"".join(parts) for _, parts in first)
    assert len(body) < len(one_member(body)) / 5

    # Next scrape: the state lines rebuilt alike (new objects, same bytes), the RTTs
    # changed, a slot gone and a new one.
    state_again = [bytes(bytearray(line)) for line in state]
    rtt_now = lines("bridgemon_icmp_rtt_seconds", 1000, 0.0003)
    second = [("self", (b"# TYPE up gauge\nup 1.0\n",)), (("state", 0), state_again),
              (("rtt", 0), rtt_now), (("new", 0), lines("bridgemon_site_up", 10, 1.0))]
    drain(kept.plan_steps(second))
    # The last body's pieces are let go as the next one is planned, not all at once when
    # it is kept: what is left is the slot no longer served.
    assert set(kept._kept) == {("empty", 0)}
    kept.keep(by_slot)
    body2, by_slot2 = served(kept, second)
    assert one_member(body2) == b"".join(b"".join(parts) for _, parts in second)
    assert by_slot2["self"].deflated is by_slot["self"].deflated
    assert by_slot2[("state", 0)].deflated is by_slot[("state", 0)].deflated
    assert by_slot2[("state", 0)].parts is state_again  # the old objects are let go
    assert by_slot2[("rtt", 0)].deflated is not by_slot[("rtt", 0)].deflated
    assert ("empty", 0) not in by_slot2


def test_pieces_longer_than_the_zero_buffer_and_empty_ones() -> None:
    big = [os.urandom(256) for _ in range(6000)]  # 1.5 MB: past the first zero buffer
    pieces: list[tuple[Hashable, Sequence[bytes]]] = [
        ("a", []), ("b", big), ("c", []), ("d", [b"x\n"]), ("e", big[:10])]
    kept = GzipPieces()
    for _ in range(2):  # compressed, then all of it reused
        body, _by_slot = served(kept, pieces)
        assert one_member(body) == b"".join(b"".join(parts) for _, parts in pieces)
    assert len(gzip_pieces._ZEROS) >= 6000 * 256
    assert one_member(served(GzipPieces(), [])[0]) == b""
