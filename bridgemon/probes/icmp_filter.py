"""The classic BPF program that keeps other processes' ICMP out of our raw socket.

Every raw ICMP socket on a host gets a copy of every ICMP packet the host receives. Without
a filter, each reply to another pinger (fping, smokeping, Zabbix, a second bridgemon) costs
us a copy into the socket buffer, a wake-up and a parse, and while we are not reading the
buffer fills with them until our own replies are dropped (measured: the first echo of a
round lost while fping ran beside us). ``ICMP_FILTER`` only filters by type, so this
program, attached with ``SO_ATTACH_FILTER``, lets through only:

- echo replies whose identifier is in our block and whose payload starts with our cookie;
- destination-unreachable / time-exceeded (v6: also packet-too-big) errors that quote one
  of our echo requests (identifier in our block).

The kernel runs it before queueing, so what it rejects costs neither buffer space nor a
copy, and does not count as a receive drop. There is no library for this in Python (the
BPF helpers on PyPI compile eBPF through bcc or need libpcap), and the program is twenty
instructions, so it is written here, in the style of iputils' ping filter.

Raw IPv4 sockets see the packet from its IP header (whose length the program reads);
raw ICMPv6 sockets see it from the ICMPv6 header. Our echo requests carry no IP options or
extension headers, so a quoted request sits at a fixed offset inside an error.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
IDENT_BLOCK_BITS = 4  # identifiers per process: 16, so keys have 20 bits
IDENT_BLOCK_MASK = 0xFFFF & ~((1 << IDENT_BLOCK_BITS) - 1)

# Classic BPF opcodes (linux/filter.h)
_LD, _LDX, _ALU, _JMP, _RET = 0x00, 0x01, 0x04, 0x05, 0x06
_W, _H, _B = 0x00, 0x08, 0x10
_ABS, _IND, _MSH = 0x20, 0x40, 0xA0
_JA, _JEQ, _AND = 0x00, 0x10, 0x50

_ACCEPT = 0xFFFFFFFF
_INSN = struct.Struct("=HBBI")

# An instruction before assembly: (code, k, jump-if-true, jump-if-false); jumps name a
# label ("" = the next instruction). A label is a string standing alone in the list.
_Insn = tuple[int, int, str, str]


def program(*, ipv6: bool, ident_base: int, cookie: bytes) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions, ready for ``attach``."""
    if ident_base & ~IDENT_BLOCK_MASK:
        raise ValueError("ident_base must be aligned to the identifier block")
    c0, c1 = struct.unpack("!II", cookie[:8])
    # Raw IPv4 sockets see the IP header: load its length into X and address the ICMP
    # message relative to it. ICMPv6 offsets are absolute.
    at = _ABS if ipv6 else _IND
    echo_reply, echo_request = (129, 128) if ipv6 else (0, 8)
    errors = (1, 2, 3) if ipv6 else (3, 11)
    quoted_ip = 8  # the quoted request's IP header, after the error's own ICMP header
    quoted_icmp = quoted_ip + (40 if ipv6 else 20)
    code: list[_Insn | str] = []
    if not ipv6:
        code.append((_LDX | _B | _MSH, 0, "", ""))
    code.append((_LD | _B | at, 0, "", ""))  # A = ICMP type
    code.append((_JMP | _JEQ, echo_reply, "echo", ""))
    for kind in errors:
        code.append((_JMP | _JEQ, kind, "error", ""))
    code.append((_JMP | _JA, 0, "reject", "reject"))
    code += [
        "echo",
        (_LD | _H | at, 4, "", ""),  # identifier, in our block?
        (_ALU | _AND, IDENT_BLOCK_MASK, "", ""),
        (_JMP | _JEQ, ident_base, "", "reject"),
        (_LD | _W | at, 8, "", ""),  # the cookie that starts our payload
        (_JMP | _JEQ, c0, "", "reject"),
        (_LD | _W | at, 12, "", ""),
        (_JMP | _JEQ, c1, "accept", "reject"),
        "error",
        (_LD | _B | at, quoted_ip, "", ""),  # the quoted header is a plain IPv4/IPv6 one
        (_ALU | _AND, 0xF0 if ipv6 else 0xFF, "", ""),
        (_JMP | _JEQ, 0x60 if ipv6 else 0x45, "", "reject"),
        (_LD | _B | at, quoted_ip + (6 if ipv6 else 9), "", ""),  # carrying ICMP
        (_JMP | _JEQ, 58 if ipv6 else 1, "", "reject"),
        (_LD | _B | at, quoted_icmp, "", ""),  # an echo request
        (_JMP | _JEQ, echo_request, "", "reject"),
        (_LD | _H | at, quoted_icmp + 4, "", ""),  # with one of our identifiers
        (_ALU | _AND, IDENT_BLOCK_MASK, "", ""),
        (_JMP | _JEQ, ident_base, "accept", "reject"),
        "accept",
        (_RET, _ACCEPT, "", ""),
        "reject",
        (_RET, 0, "", ""),
    ]
    return _assemble(code)


def _assemble(code: list[_Insn | str]) -> list[tuple[int, int, int, int]]:
    labels: dict[str, int] = {}
    insns: list[_Insn] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out: list[tuple[int, int, int, int]] = []
    for index, (op, k, true, false) in enumerate(insns):
        def offset(label: str, index: int = index) -> int:
            return labels[label] - index - 1 if label else 0

        if op == _JMP | _JA:
            out.append((op, 0, 0, offset(true)))
        else:
            out.append((op, offset(true), offset(false), k))
    return out


def echo_replies_program(ident: int) -> list[tuple[int, int, int, int]]:
    """A raw IPv4 ICMP socket's filter that lets through only echo replies carrying
    ``ident``: the path MTU check's socket, one per check, which would otherwise get a copy
    of every reply on the host (in a test run, every other site's) and drop its own."""
    if not 0 <= ident <= 0xFFFF:
        raise ValueError("ident must fit 16 bits")
    return _assemble([
        (_LDX | _B | _MSH, 0, "", ""),
        (_LD | _B | _IND, 0, "", ""),  # ICMP type: echo reply?
        (_JMP | _JEQ, 0, "", "reject"),
        (_LD | _H | _IND, 4, "", ""),  # our identifier?
        (_JMP | _JEQ, ident, "", "reject"),
        (_RET, _ACCEPT, "", ""),
        "reject",
        (_RET, 0, "", ""),
    ])


def attach(sock: socket.socket, *, ipv6: bool, ident_base: int, cookie: bytes) -> None:
    """Attach the filter to a raw ICMP socket (OSError if the kernel refuses it)."""
    attach_program(sock, program(ipv6=ipv6, ident_base=ident_base, cookie=cookie))


def attach_program(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program (``program``'s form) to a socket."""
    buffer = ctypes.create_string_buffer(b"".join(_INSN.pack(*insn) for insn in insns))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }; the kernel
    # copies the program during the call, so the buffer need only live until it returns.
    fprog = struct.pack("@HP", len(insns), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
