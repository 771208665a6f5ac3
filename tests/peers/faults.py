"""HTTP(S) servers and misbehaving TCP servers, in a process of their own, on loopback.

    python -m tests.peers.faults --certs DIR

prints one JSON line ``{"http": PORT, "tls": {"valid": PORT, ...}, "silent": PORT, ...}``
once everything listens, then serves until terminated. Test-only.

HTTP routes (plain ``http`` and every ``tls`` port): ``/`` 200 "hello bridgemon";
``/status/NNN``; ``/redirect`` 302 → ``/``; ``/redirect-loop``; ``/chunked``;
``/big`` (Content-Length 1 MB); ``/endless`` (no length, never ends); ``/delay/MS``
(answers after MS ms); ``/interim`` (a 103 before the 200); HEAD gives no body.

Raw TCP: ``silent`` accepts and never speaks; ``reset`` accepts and resets (RST);
``trickle`` sends an HTTP response one byte a second; ``endless`` sends an HTTP head
then body bytes forever; ``garbage`` sends bytes that are neither HTTP nor SIP, framed
by a blank line; ``sip_split`` answers a SIP request over TCP with a 200 OK written in
three pieces, after a keep-alive CRLF (framing by Content-Length across reads).

Hostile devices (issue 9): ``chunk_zeros`` sends a chunked 200 whose chunk-size lines are
a thousand zeros and a 1, forever; ``chunk_ones`` sends 1-byte chunks forever;
``chunk_negative`` a chunk size of -1; ``chunk_trickle`` one valid chunk every 50 ms,
forever; ``sip_trickle`` answers a SIP request over TCP with a 200 OK one byte every
100 ms; ``sip_flood`` answers it with keep-alive CRLFs, as fast as it can, forever.
HTTP routes ``/slow-redirect`` (a 302 to itself after 300 ms), ``/redirect-bad-host``
(Location: http://a..b/), ``/hostile-text`` (a 500 whose reason phrase mixes UTF-8
Vietnamese, ANSI escapes and control bytes) and ``/redirect-hostile`` (a 302 whose
Location carries the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import ssl
import struct
import sys
from pathlib import Path

HOST = "127.0.0.1"
TLS_NAMES = ("valid", "expiring", "expired", "wronghost", "untrusted", "selfsigned")


class _NotHttp(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    first = await reader.readexactly(1)
    if not first.isalpha():  # e.g. a TLS ClientHello: answer as web servers do, 400
        raise _NotHttp
    head = first + await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _response(status: int, body: bytes, extra: str = "", reason: str = "X") -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: text/plain\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


# "Lỗi máy chủ" in UTF-8, with a red ANSI colour, a bell, a NUL, a stray latin-1 byte and
# a right-to-left override around it: what a hostile or broken device may put in a reason.
HOSTILE_TEXT = (b"\x1b[31mL\xe1\xbb\x97i\x07 m\xc3\xa1y\x00 \xe2\x80\xaech\xe1\xbb\xa7"
                b"\x1b[0m \xff\tend")


def _status_bytes(status: int, reason: bytes) -> bytes:
    return (f"HTTP/1.1 {status} ".encode() + reason
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


async def http_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        method, path, headers = await _read_request(reader)
        body_allowed = method != "HEAD"
        seen = json.dumps({"method": method, "path": path, "host": headers.get("host"),
                           "user_agent": headers.get("user-agent")}).encode()  # fmt: skip
        if path == "/":
            writer.write(_response(200, b"hello bridgemon" if body_allowed else b"", "", "OK"))
        elif path == "/echo":
            writer.write(_response(200, seen, "", "OK"))
        elif m := re.fullmatch(r"/status/(\d{3})", path):
            writer.write(_response(int(m.group(1)), b"status page"))
        elif path == "/redirect":
            writer.write(_response(302, b"", "Location: /\r\n", "Found"))
        elif path == "/redirect-loop":
            writer.write(_response(302, b"", "Location: /redirect-loop\r\n", "Found"))
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n1;ext=1\r\n \r\n9\r\nbridgemon\r\n0\r\n\r\n")  # fmt: skip
        elif path == "/big":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            for _ in range(100):
                writer.write(b"x" * 10000)
                await writer.drain()
        elif path == "/endless":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            while True:  # until the client goes away (drain then raises)
                writer.write(b"y" * 16384)
                await writer.drain()
        elif m := re.fullmatch(r"/delay/(\d+)", path):
            await asyncio.sleep(int(m.group(1)) / 1000)
            writer.write(_response(200, b"late", "", "OK"))
        elif path == "/slow-redirect":  # 300 ms per hop, forever
            await asyncio.sleep(0.3)
            writer.write(_response(302, b"", "Location: /slow-redirect\r\n", "Found"))
        elif path == "/redirect-bad-host":
            writer.write(_response(302, b"", "Location: http://a..b/\r\n", "Found"))
        elif path == "/hostile-text":
            writer.write(_status_bytes(500, HOSTILE_TEXT))
        elif path == "/redirect-hostile":
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /" + HOSTILE_TEXT.replace(b" ", b"")
                         + b"\r\nContent-Length: 0\r\n\r\n")
        elif path == "/interim":
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x.css>\r\n\r\n")
            writer.write(_response(200, b"after the hints", "", "OK"))
        else:
            writer.write(_response(404, b"no such page", "", "Not Found"))
        await writer.drain()
    except _NotHttp:
        with contextlib.suppress(OSError):
            writer.write(_response(400, b"not HTTP", "", "Bad Request"))
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await reader.read()  # until the client closes; never a byte back
    writer.close()


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    # Linger on, timeout 0: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)
    writer.close()


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n")
        while True:
            writer.write(b"z" * 16384)
            await writer.drain()
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.write(b"\x00\xffNOT A PROTOCOL \x00\xfe\r\n\r\n")
        await writer.drain()
        await reader.read()
    writer.close()


async def sip_split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A SIP-over-TCP peer whose answer arrives in pieces (and with a compact header)."""
    with contextlib.suppress(Exception):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        keep = [ln for ln in lines[1:] if ln.lower().startswith(("via:", "from:", "call-id:",
                                                                  "cseq:"))]  # fmt: skip
        to = next(ln for ln in lines if ln.lower().startswith("to:"))
        body = b"v=0\r\n"
        answer = ("\r\n".join(["SIP/2.0 200 OK", *keep, f"{to};tag=split",
                               "Server: split-peer", f"l: {len(body)}", "", ""])).encode() + body
        writer.write(b"\r\n\r\n")  # a keep-alive first (RFC 5626 double CRLF)
        for piece in (answer[:10], answer[10:-3], answer[-3:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        await reader.read()
    writer.close()


async def _chunked_forever(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, piece: bytes, pause: float = 0.0
) -> None:
    with contextlib.suppress(Exception):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # until the client goes away (drain then raises)
            writer.write(piece)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
    writer.close()


async def chunk_zeros(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _chunked_forever(reader, writer, (b"0" * 1000 + b"1\r\nx\r\n") * 16)


async def chunk_ones(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _chunked_forever(reader, writer, b"1\r\nx\r\n" * 2000)


async def chunk_negative(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _chunked_forever(reader, writer, b"-1\r\nx\r\n")


async def chunk_trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _chunked_forever(reader, writer, b"4\r\nbeat\r\n", pause=0.05)


async def sip_trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A SIP-over-TCP peer whose (valid) answer comes one byte every 100 ms."""
    with contextlib.suppress(Exception):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        copied = ("via:", "from:", "to:", "call-id:", "cseq:")
        keep = [ln for ln in lines[1:] if ln.lower().startswith(copied)]
        answer = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0", "", ""]).encode()
        for byte in answer:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
        await reader.read()
    writer.close()


async def sip_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A SIP-over-TCP peer that answers with keep-alive CRLFs, as fast as it can, forever."""
    with contextlib.suppress(Exception):
        await reader.readuntil(b"\r\n\r\n")
        while True:
            writer.write(b"\r\n" * 8192)
            await writer.drain()
    writer.close()


async def main(certs: Path) -> None:
    ports: dict[str, object] = {}
    servers = []

    async def serve(name: str, handler: object, ctx: ssl.SSLContext | None = None) -> int:
        server = await asyncio.start_server(handler, HOST, 0, ssl=ctx, backlog=512)  # type: ignore[arg-type]
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    ports["http"] = await serve("http", http_handler)
    tls: dict[str, int] = {}
    for name in TLS_NAMES:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
        tls[name] = await serve(name, http_handler, ctx)
    ports["tls"] = tls
    for name, handler in (("silent", silent), ("reset", reset), ("trickle", trickle),
                          ("endless", endless), ("garbage", garbage),
                          ("sip_split", sip_split), ("chunk_zeros", chunk_zeros),
                          ("chunk_ones", chunk_ones), ("chunk_negative", chunk_negative),
                          ("chunk_trickle", chunk_trickle),
                          ("sip_trickle", sip_trickle),
                          ("sip_flood", sip_flood)):  # fmt: skip
        ports[name] = await serve(name, handler)
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--certs", type=Path, required=True)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # aborted clients are the point
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_until_complete(main(args.certs))
    sys.exit(0)
