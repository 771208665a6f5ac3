"""Shared fixtures: real sockets, real processes, nothing mocked."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (raw ICMP sockets, routes, namespaces); CI runs as root"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def host_route() -> Iterator[list[str]]:
    """Add host routes for the test (e.g. 'unreachable 198.19.254.0/24'); removed afterwards."""
    added: list[str] = []
    yield added
    for route in added:
        subprocess.run(["ip", "route", "del", *route.split()], check=False, capture_output=True)


def add_route(routes: list[str], route: str) -> None:
    subprocess.run(["ip", "route", "replace", *route.split()], check=True)
    routes.append(route)
