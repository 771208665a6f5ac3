"""Client side of the forwarder's control channel.

The channel is a Unix stream socket speaking line-delimited JSON, one request line, one
reply line::

    {"cmd": "ping"}
    {"cmd": "set", "target": "198.18.1.2", "delay_ms": 40, "jitter_ms": 0, "loss": 0,
     "down": false, "drop": ["tcp:1720"]}
    {"cmd": "clear", "target": "198.18.1.2"}      # or "target": null for all
    {"cmd": "status"}
    {"cmd": "shutdown"}

Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A Unix socket
(not TCP) so that only local root can steer the lab, and so that no port is taken.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from bridgemon.lab.netsetup import LabError


def request(path: Path | str, payload: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request, return the reply; raise LabError when unreachable or refused."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise LabError(f"the lab's control socket {path} does not answer (is it up?)") from None
    except OSError as exc:
        raise LabError(f"control socket {path}: {exc}") from None
    if not buf:
        raise LabError(f"control socket {path}: connection closed without a reply")
    reply = json.loads(buf)
    if not isinstance(reply, dict):
        raise LabError(f"control socket {path}: malformed reply {reply!r}")
    if not reply.get("ok"):
        error = reply.get("error", "unknown error")
        # The forwarder reports bad arguments as such; keep them ValueErrors for callers.
        if reply.get("kind") == "value":
            raise ValueError(error)
        raise LabError(error)
    return reply
