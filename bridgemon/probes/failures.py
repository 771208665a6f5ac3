"""What a connection raises, turned into the reason a technician reads: one mapping for
the HTTP and SIP probes.

As httpx's ``map_exceptions`` turns the exceptions of the layer below into its own,
``map_failures`` turns the exceptions of one phase of a check (connecting, the TLS
handshake, the exchange on an open connection) into ``ProbeFailure(reason)``, by a table
from exception type to words. The tables for those phases are here, so both probes say
"connection reset by the server" of the same event, and a new phrase is added once.

``TimeoutError`` is never mapped (it is an OSError): the check's deadline is reported by
the probe, which knows what it was waiting for. ``ProbeFailure`` passes through, so phases
nest; and an exception no table names is a bug, left to ``dispatch.run_check``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bridgemon.probes.conn import connect_failure, tls_failure

# exception type(s) -> the reason for one of them. First match wins: list a subclass
# (ConnectionResetError) before its base (OSError).
FailureMap = Mapping[type[BaseException] | tuple[type[BaseException], ...],
                     Callable[[Any], str]]


class ProbeFailure(Exception):
    """The check failed; the message is the reason, without the check's label (the probe
    adds "HTTPS 443:" or "SIP OPTIONS:")."""


@contextmanager
def map_failures(mapping: FailureMap) -> Iterator[None]:
    """Raise ``ProbeFailure(words)`` for the first exception type of ``mapping`` that
    matches what the block raised."""
    try:
        yield
    except (TimeoutError, ProbeFailure):
        raise
    except Exception as exc:
        for kinds, words in mapping.items():
            if isinstance(exc, kinds):
                raise ProbeFailure(words(exc)) from None
        raise


def connect_failures(label: str = "") -> FailureMap:
    """Opening the TCP connection (refused, unreachable, ...)."""
    return {OSError: lambda exc: f"{label}{connect_failure(exc)}"}


def handshake_failures(label: str, where: str) -> FailureMap:
    """The TLS handshake, but for a certificate that fails verification: its words need the
    certificate, which the probe fetches on a second connection first."""
    return {
        ssl.SSLError: lambda exc: f"{label}{tls_failure(exc)}",
        OSError: lambda exc: f"{label}{connect_failure(exc)} {where}",
    }


def stream_failures(where: Callable[[], str], label: str = "",
                    tls_label: str = "") -> FailureMap:
    """An open connection: the peer resets it, TLS fails mid-stream, any other socket error.
    ``where()`` is read when the failure happens (the phase the check was in)."""
    return {
        (ConnectionResetError, BrokenPipeError):
            lambda exc: f"{label}connection reset by the server{where()}",
        ssl.SSLError: lambda exc: f"{tls_label}TLS error{where()} ({exc.reason or exc})",
        OSError: lambda exc: f"{label}{connect_failure(exc)}{where()}",
    }

