"""Test certificates for the HTTPS and SIP-over-TLS tests, made with trustme.

``make_certs(dir)`` writes ``NAME.pem`` (leaf, then chain) and ``NAME.key`` for each
name in :data:`NAMES`, and ``ca.pem`` — the CA that the verifying probes are told to
trust (``ca_file``); ``untrusted`` and ``selfsigned`` are not under it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trustme

NAMES = ("valid", "expiring", "expired", "wronghost", "untrusted", "selfsigned")
EXPIRING_IN = dt.timedelta(days=3)
EXPIRED_AGO = dt.timedelta(days=7)
WRONG_HOST = "codec.bridgemon.test"


def make_certs(directory: Path) -> dict[str, dt.datetime]:
    """Write the certificates; returns each one's not-after time (UTC)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = trustme.CA(organization_name="bridgemon test CA")
    other = trustme.CA(organization_name="somebody else's CA")
    hosts = ("127.0.0.1", "localhost")
    far = now + dt.timedelta(days=365)
    leaves = {
        "valid": (ca.issue_cert(*hosts, not_after=far), far),
        "expiring": (ca.issue_cert(*hosts, not_after=now + EXPIRING_IN), now + EXPIRING_IN),
        "expired": (
            ca.issue_cert(*hosts, not_before=now - dt.timedelta(days=60),
                          not_after=now - EXPIRED_AGO),
            now - EXPIRED_AGO,
        ),
        "wronghost": (ca.issue_cert(WRONG_HOST, not_after=far), far),
        "untrusted": (other.issue_cert(*hosts, not_after=far), far),
    }  # fmt: skip
    not_after: dict[str, dt.datetime] = {}
    for name, (leaf, until) in leaves.items():
        leaf.private_key_pem.write_to_path(str(directory / f"{name}.key"))
        (directory / f"{name}.pem").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        not_after[name] = until
    # A self-signed certificate: the other CA's own (its notAfter is trustme's, far away).
    other.private_key_pem.write_to_path(str(directory / "selfsigned.key"))
    other.cert_pem.write_to_path(str(directory / "selfsigned.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return not_after
