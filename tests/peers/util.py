"""Small helpers the service-check tests share: a probe context, fd accounting, peers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger

REPO = Path(__file__).resolve().parents[2]
SLACK = 0.5  # how far past its timeout a check may return (the brief's bound)


def probe_ctx(sockets: int = 512, resolve_timeout: float = 2.0) -> ProbeContext:
    """A context for service checks (they never use the pinger)."""
    return ProbeContext(
        pinger=cast(Pinger, None), resolve_timeout=resolve_timeout,
        sockets=asyncio.Semaphore(sockets),
    )  # fmt: skip


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_list() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


@contextlib.contextmanager
def no_fd_leak() -> Iterator[None]:
    """Asserts that the block leaves exactly as many descriptors open as it found."""
    before = fd_list()
    yield
    after = fd_list()
    extra = {fd: what for fd, what in after.items() if before.get(fd) != what}
    assert len(after) <= len(before), f"leaked descriptors: {extra}"


@contextlib.contextmanager
def faults_process(certs: Path) -> Iterator[dict[str, Any]]:
    """tests.peers.faults in its own process; yields its ports."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.peers.faults", "--certs", str(certs)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tests.peers.faults did not start (exit {proc.wait(5)})")
        yield json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class Clock:
    """Wall time of a block, for the 'never past its timeout' assertions."""

    def __enter__(self) -> Clock:
        self.started = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.started


# The service-check tests' lab: its own range, so it runs beside the other tests' labs.
LAB_NET, LAB_HOST_ADDR, LAB_LAB_ADDR = "198.19.40.0/24", "198.19.251.2", "198.19.251.1"


@contextlib.contextmanager
def service_lab(*server_args: str) -> Iterator[Any]:
    """The lab "bmsvc" with bridgemon.lab.servers running ``server_args`` inside it.

    Those servers answer UDP from the address each request was sent to (IP_PKTINFO), so
    though bound to 0.0.0.0 they answer as the site itself.
    """
    import pytest

    from bridgemon.lab import Lab

    ok, why = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {why}")
    handle = Lab("bmsvc", net=LAB_NET, host_addr=LAB_HOST_ADDR, lab_addr=LAB_LAB_ADDR, wait=60)
    with handle as running:
        server = running.spawn(
            [sys.executable, "-m", "bridgemon.lab.servers", *server_args, "--ready"],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield running
