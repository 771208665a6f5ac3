"""Tiny servers to run inside the lab so that its sites have services to check.

    bridgemon lab exec -- python3 -m bridgemon.lab.servers --tcp 1720 --tcp 443 --sip 5060
    lab.spawn([sys.executable, "-m", "bridgemon.lab.servers", "--tcp", "8080", "--ready"])

Every server binds 0.0.0.0 and so answers on every address of the lab's range:

* ``--tcp PORT``: accepts and closes (a port that is "open", e.g. H.323's 1720);
* ``--udp-echo PORT``: sends every datagram back;
* ``--sip PORT``: answers any SIP request over UDP with ``200 OK`` (Via, From, To,
  Call-ID and CSeq copied), as a live SIP stack answers OPTIONS.

Why UDP needs care here: a UDP socket bound to 0.0.0.0 replies from whatever source
address routing picks (the lab-side TUN address), not from the lab address the request
was sent to, and a connected client drops such replies. These servers read the request's
destination with IP_PKTINFO and reply from it, as a multi-homed server must. Any UDP
server you run in the lab on 0.0.0.0 needs the same (or must bind the site addresses).
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import struct
import sys

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 lacks the name
_PKTINFO = struct.Struct("@I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr


def _udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    return sock


def _tcp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(256)
    sock.setblocking(False)
    return sock


def reply_udp(
    sock: socket.socket,
    payload: bytes,
    peer: tuple[str, int],
    ancdata: list[tuple[int, int, bytes]],
) -> None:
    """Send ``payload`` to ``peer`` from the address the request was sent to."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            _, _, dst = _PKTINFO.unpack_from(data)
            info = _PKTINFO.pack(0, dst, b"\0\0\0\0")
            sock.sendmsg([payload], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, peer)
            return
    sock.sendto(payload, peer)


def sip_response(request: bytes) -> bytes | None:
    """``200 OK`` for a SIP request (None for a response or garbage)."""
    try:
        text = request.decode("utf-8", errors="replace")
    except Exception:  # pragma: no cover - decode with replace does not raise
        return None
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    if not head or head[0].startswith("SIP/2.0") or " SIP/2.0" not in head[0]:
        return None
    keep = ("via:", "v:", "from:", "f:", "to:", "t:", "call-id:", "i:", "cseq:")
    lines = ["SIP/2.0 200 OK"]
    lines += [h for h in head[1:] if h.lower().startswith(keep)]
    lines += ["Allow: INVITE, ACK, CANCEL, OPTIONS, BYE", "Server: bridgemon-lab",
              "Content-Length: 0"]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def serve(tcp: list[int], udp_echo: list[int], sip: list[int], ready: bool = False) -> None:
    sel = selectors.DefaultSelector()
    for port in tcp:
        sel.register(_tcp_socket(port), selectors.EVENT_READ, "tcp")
    for port in udp_echo:
        sel.register(_udp_socket(port), selectors.EVENT_READ, "echo")
    for port in sip:
        sel.register(_udp_socket(port), selectors.EVENT_READ, "sip")
    if ready:
        print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if key.data == "tcp":
                    conn, _ = sock.accept()
                    conn.close()
                    continue
                data, anc, _, peer = sock.recvmsg(65535, socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, ConnectionError):
                continue
            answer = data if key.data == "echo" else sip_response(data)
            if answer is not None:
                # A vanished client must not stop the server for the others.
                with contextlib.suppress(OSError):
                    reply_udp(sock, answer, peer, anc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridgemon.lab.servers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tcp", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--udp-echo", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--sip", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument(
        "--ready", action="store_true", help='print "ready" once listening (for tests to wait on)'
    )
    args = parser.parse_args(argv)
    if not (args.tcp or args.udp_echo or args.sip):
        parser.error("give at least one of --tcp, --udp-echo, --sip")
    try:
        serve(args.tcp, args.udp_echo, args.sip, args.ready)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"bridgemon lab servers: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
