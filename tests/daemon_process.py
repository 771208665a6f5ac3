"""A real ``bridgemon run`` in a child process on loopback: signals, its log, its descriptors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import REPO


class Daemon:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - open as long as the process runs
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("BRIDGEMON_API_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridgemon", "-c", str(config), "run"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=config.parent,
        )
        self._wait_up(20)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"bridgemon exited ({self.process.returncode}):\n"
                                     f"{self.log()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=2) as response:
                    # /healthz answers before the saved events and test runs are read
                    if json.loads(response.read())["test_runs"] == "ready":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"bridgemon did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10
                ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url(path), method=method, data=body,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, body: object = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = self.request(method, path, data, headers)
        return status, json.loads(raw)

    def hup(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def alive(self) -> bool:
        return self.process.poll() is None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
