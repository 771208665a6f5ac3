"""Connection plumbing the service-check probes share: TCP connect, TLS, certificates.

Holds: opening a TCP socket to an address (the caller bounds the wait), turning connect
and TLS errors into words a technician understands, cached TLS client contexts, reading
a peer certificate's dates and names from its DER bytes (so that they are known even
when verification is off), and closing a stream without waiting on the peer.

Must not: resolve names (probes call :func:`bridgemon.probes.resolve.resolve` first),
start timers of its own (every wait here is bounded by the caller's ``asyncio.timeout``),
build ProbeResults, or touch state and metrics.

Sockets: every socket is created here by the probe itself, not by asyncio, so the probe
knows exactly when its file descriptor closes and can hold its ``ctx.sockets`` slot
until then. :func:`abort` is synchronous for that reason: it runs in ``finally`` blocks
that a cancellation may be passing through, where an ``await`` could be interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from bridgemon.probes.device_text import device_text

__all__ = [
    "CertInfo",
    "abort",
    "cert_info",
    "connect",
    "connect_failure",
    "describe_verify_error",
    "fetch_cert",
    "host_for_uri",
    "is_ip",
    "peer_cert",
    "tls_context",
    "tls_failure",
]


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_for_uri(host: str) -> str:
    """``host`` as it goes into a URL or SIP URI: IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


async def connect(address: str, port: int) -> socket.socket:
    """A non-blocking TCP socket connected to ``address`` (an IP literal).

    Raises OSError (ConnectionRefusedError, ...) as the kernel reports it. The caller
    bounds the wait with ``asyncio.timeout``; on any exception, cancellation included,
    the socket is closed before this returns.
    """
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # Requests are one small write each; don't let Nagle hold them back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # asyncio removes its writer callback (a done-callback of the connect future,
        # which runs before this coroutine resumes) before we close the fd below.
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def abort(sock: socket.socket | None, writer: asyncio.StreamWriter | None = None) -> None:
    """Close a probe's connection now, without a graceful shutdown.

    A monitor has nothing left to say, and a graceful TLS close could wait on a peer that
    never answers. ``transport.abort()`` unregisters the fd from the event loop at once;
    closing the socket object then releases the fd before this returns (asyncio's own
    later close of the same object is a no-op).
    """
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.transport.abort()
    if sock is not None:
        sock.close()


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the server",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTDOWN: "host down",
    errno.ENETDOWN: "network down",
    errno.EADDRNOTAVAIL: "no local address to reach it from",
    errno.EACCES: "blocked by the local firewall",
    errno.EPERM: "blocked by the local firewall",
}


def connect_failure(exc: OSError) -> str:
    """Words for a failed connect (or send) — refused, unreachable, ...

    TimeoutError is an OSError too but callers word timeouts themselves (with the time).
    """
    if exc.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[exc.errno]
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    return f"connect failed: {exc.strerror or exc}"


# --------------------------------------------------------------------------- TLS

_contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}


def tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context: verifying (system store, or only ``ca_file``) or not at all.

    Cached: loading the system store costs milliseconds, and a round at national scale
    runs thousands of TLS checks. Contexts are read-only after setup, so sharing is safe.
    """
    key = (verify, ca_file)
    ctx = _contexts.get(key)
    if ctx is not None:
        return ctx
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # Verification off is for codecs with self-signed certificates, often old gear
        # with old TLS: talk to it as far as this OpenSSL allows. Nothing secret is sent.
        with contextlib.suppress(ValueError, ssl.SSLError):
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    _contexts[key] = ctx
    return ctx


@dataclass(frozen=True, slots=True)
class CertInfo:
    """The parts of a peer certificate a technician needs."""

    not_before: float  # unix seconds
    not_after: float  # unix seconds
    subject: str  # RFC 4514, e.g. "CN=codec.example"
    issuer: str
    names: tuple[str, ...]  # DNS and IP subject alternative names (or the CN if none)

    @property
    def not_after_date(self) -> str:
        return utc_date(self.not_after)


def utc_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")


def cert_info(der: bytes | None) -> CertInfo | None:
    """Dates, subject and names of a DER certificate; None if absent or unreadable."""
    if not der:
        return None
    try:
        # Imported here: only TLS checks need it, and it is slow to import.
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_der_x509_certificate(der)
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names += san.get_values_for_type(x509.DNSName)
            names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        if not names:
            names += [
                str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            ]
        # The names are the device's words (and go into reasons): cleaned like any.
        return CertInfo(
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
            subject=device_text(cert.subject.rfc4514_string(), 200),
            issuer=device_text(cert.issuer.rfc4514_string(), 200),
            names=tuple(device_text(name, 100) for name in names),
        )
    except Exception:  # a malformed certificate from a device is data, not a crash
        return None


def peer_cert(writer: asyncio.StreamWriter) -> tuple[CertInfo | None, str | None]:
    """The peer certificate and TLS version of an established TLS stream."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None, None
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        der = None
    return cert_info(der), ssl_object.version()


async def fetch_cert(address: str, port: int, host: str, deadline: float) -> CertInfo | None:
    """The peer certificate, fetched without verification on a connection of its own.

    For the words of a failed verification: the failed handshake gives no certificate.
    Uses at most part of the time left before ``deadline`` (loop time), so that the
    check's own reason is never lost to this; None when it cannot be had.
    """
    loop = asyncio.get_running_loop()
    budget = min(2.0, (deadline - loop.time()) * 0.8)
    if budget < 0.05:
        return None
    sock: socket.socket | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(budget):
            sock = await connect(address, port)
            _, writer = await asyncio.open_connection(
                sock=sock, ssl=tls_context(False), server_hostname=host
            )
            cert, _ = peer_cert(writer)
            return cert
    except (OSError, ssl.SSLError):  # TimeoutError included
        return None
    finally:
        abort(sock, writer)


# OpenSSL X509_V_ERR_* codes that need their own words.
_NOT_YET_VALID, _EXPIRED = 9, 10
_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN = 18, 19
_UNKNOWN_ISSUER = (2, 20, 21)
_NAME_MISMATCH = (62, 63, 64)


def describe_verify_error(
    exc: ssl.SSLCertVerificationError, cert: CertInfo | None, host: str
) -> str:
    """Words for a rejected certificate; ``cert`` (fetched without verification) adds dates
    and names."""
    code = exc.verify_code
    if code == _EXPIRED:
        return f"certificate expired on {cert.not_after_date}" if cert else "certificate expired"
    if code == _NOT_YET_VALID:
        if cert:
            return f"certificate not valid before {utc_date(cert.not_before)}"
        return "certificate not yet valid"
    if code in _NAME_MISMATCH:
        if cert and cert.names:
            shown = ", ".join(cert.names[:3]) + (" …" if len(cert.names) > 3 else "")
            return f"certificate is for {shown}, not {host}"
        return f"certificate does not match {host}"
    if code in (_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN):
        return "certificate not trusted (self-signed)"
    if code in _UNKNOWN_ISSUER:
        issuer = f": {cert.issuer}" if cert and cert.issuer else ""
        return f"certificate not trusted (issued by an unknown authority{issuer})"
    return f"certificate rejected ({exc.verify_message or exc.reason or exc})"


def tls_failure(exc: ssl.SSLError) -> str:
    """Words for a TLS handshake that failed for a reason other than the certificate."""
    reason = exc.reason or (exc.args[1] if len(exc.args) > 1 else str(exc))
    hint = ""
    if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "HTTP_REQUEST"):
        hint = " — is this port speaking TLS?"
    elif reason in (
        "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE", "TLSV1_ALERT_PROTOCOL_VERSION"
    ):
        hint = " — the peer's TLS version is too old or too new"
    return f"TLS handshake failed ({reason}{hint})"
