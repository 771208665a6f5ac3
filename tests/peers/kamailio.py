"""Starting and stopping real SIP peers for the tests: kamailio and sipp, on loopback.

Each runs in the foreground as a child of the test process, in a session of its own,
and is stopped by its pid (kamailio's main process takes its worker processes with it;
its process group is killed only as a last resort).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PEERS = Path(__file__).resolve().parent
KAMAILIO_CFG = PEERS / "kamailio.cfg"
SIPP_SCENARIO = PEERS / "sipp_options_uas.xml"
HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports free for both TCP and UDP on 127.0.0.1 (checked, then released)."""
    ports: list[int] = []
    with contextlib.ExitStack() as stack:
        while len(ports) < count:
            tcp = stack.enter_context(socket.socket())
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            ports.append(port)
    return ports


def kamailio_missing() -> str | None:
    """Why kamailio cannot run here, or None."""
    if shutil.which("kamailio") is None:
        return "kamailio is not installed (Debian package kamailio)"
    for module in ("sl.so", "pv.so", "tls.so"):
        if not any(Path(d, module).exists() for d in _module_dirs()):
            package = "kamailio-tls-modules" if module == "tls.so" else "kamailio"
            return f"kamailio module {module} is missing (Debian package {package})"
    return None


def _module_dirs() -> list[Path]:
    return [p for p in Path("/usr/lib").glob("*/kamailio/modules")] + [
        Path("/usr/lib/kamailio/modules"), Path("/usr/local/lib64/kamailio/modules"),
    ]  # fmt: skip


@dataclass(frozen=True)
class Kamailio:
    udp: int  # OPTIONS -> 200 (UDP and TCP on the same port)
    tcp: int
    tls: int  # TLS, with the test certificate "valid"
    not_found: int  # UDP, OPTIONS -> 404
    trying: int  # UDP, OPTIONS -> 100 Trying only
    process: subprocess.Popen[bytes]
    log: Path


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"kamailio exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"kamailio not listening on {port}: "
                                   f"{log.read_text()[-2000:]}") from None  # fmt: skip
            time.sleep(0.05)


def kamailio_argv(
    workdir: Path, certs: Path, host: str, udp: int, tls: int, not_found: int, trying: int
) -> list[str]:
    """The command line for tests/peers/kamailio.cfg on ``host`` (TCP on the UDP port)."""
    rundir = workdir / "run"
    rundir.mkdir(parents=True, exist_ok=True)
    tls_cfg = workdir / "tls.cfg"
    tls_cfg.write_text(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        f"require_certificate = no\nprivate_key = {certs / 'valid.key'}\n"
        f"certificate = {certs / 'valid.pem'}\n"
    )
    return [
        "kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E", "-S",
        "-Y", str(rundir), "-P", str(workdir / "kamailio.pid"), "-w", str(workdir),
        "-m", "32", "-M", "8", "-n", "1", "-N", "1",
        "-l", f"udp:{host}:{udp}", "-l", f"tcp:{host}:{udp}", "-l", f"tls:{host}:{tls}",
        "-l", f"udp:{host}:{not_found}", "-l", f"udp:{host}:{trying}",
        "-A", f"P404={not_found}", "-A", f"PTRY={trying}", "-A", f'TLSCFG="{tls_cfg}"',
    ]  # fmt: skip


@contextlib.contextmanager
def run_kamailio(workdir: Path, certs: Path) -> Iterator[Kamailio]:
    """kamailio with tests/peers/kamailio.cfg on free loopback ports."""
    udp, tls, not_found, trying = free_ports(4)
    argv = kamailio_argv(workdir, certs, HOST, udp, tls, not_found, trying)
    log = workdir / "kamailio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        _wait_tcp(udp, proc, log, 10)
        _wait_tcp(tls, proc, log, 10)
        yield Kamailio(udp, udp, tls, not_found, trying, proc, log)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its processes
            proc.wait(5)


@contextlib.contextmanager
def run_sipp(workdir: Path) -> Iterator[int]:
    """sipp as an OPTIONS UAS on a free UDP port; yields the port."""
    (port,) = free_ports(1)
    argv = ["sipp", "-sf", str(SIPP_SCENARIO), "-i", HOST, "-p", str(port), "-nostdin",
            "-timeout", "120s"]  # fmt: skip
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _udp_bound(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sipp did not start on UDP {port} (exit {proc.poll()})")
            time.sleep(0.05)
        yield port
    finally:
        stop(proc)


def _udp_bound(port: int) -> bool:
    """Whether something has bound UDP ``port`` on 127.0.0.1 (we cannot bind it too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False
