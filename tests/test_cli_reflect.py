"""``bridgemon reflect``: the reflector's command line under bridgemon's name, run as the
systemd unit runs it (a process of its own), answering a real train on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bridgemon import exits
from bridgemon.cli import build_parser, command_word
from bridgemon.stamp import TrainSpec, judge, run_train
from bridgemon.verdicts import State
from tests.conftest import REPO

HOST = "127.0.0.1"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@contextmanager
def reflecting(*options: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``bridgemon reflect`` on a free loopback port: (port, process); stopped by SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridgemon", "reflect", "--listen", f"{HOST}:0", "--ready",
         *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"ready {HOST}:"), (line, proc.stderr and proc.stderr.read())
        yield int(line.split(":")[1]), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def train(port: int) -> TrainSpec:
    # 1 Mbit/s of 200-octet packets for half a second: 274 packets, light on a shared box.
    return TrainSpec(host=HOST, port=port, rate_bps=1_000_000, size=200, duration=0.5,
                     wait=0.5)


def test_a_train_passes_against_bridgemon_reflect_and_sigterm_stops_it() -> None:
    with reflecting("--allow", "127.0.0.0/8") as (port, proc):
        result = asyncio.run(run_train(train(port)))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert result.error is None, result.error
    assert result.sent == result.planned > 0
    assert result.answered == result.sent
    figures = result.figures
    assert figures is not None
    # Stateful by default: the reflector's own numbers give loss per direction.
    assert figures.mode == "stateful"
    assert figures.uplink is not None and figures.uplink.loss_ratio == 0.0
    assert judge(result).state == State.READY
    assert proc.returncode == exits.OK, err
    assert f"'reflected': {result.sent + 1}" in err or f"'reflected': {result.sent}" in err


def test_its_options_reach_the_reflector() -> None:
    # --allow naming another network: loopback's requests are dropped, not answered.
    with reflecting("--allow", "10.0.0.0/8") as (port, _proc):
        refused = asyncio.run(run_train(train(port)))
    assert refused.sent > 0 and refused.answered == 0
    assert judge(refused).state == State.NOT_READY
    # --stateless: the reflector copies our numbers (so the sender cannot tell it is
    # stateful, and has no loss per direction).
    with reflecting("--stateless") as (port, _proc):
        copied = asyncio.run(run_train(train(port)))
    assert copied.answered == copied.sent > 0
    assert copied.figures is not None and copied.figures.mode != "stateful"
    assert copied.figures.uplink is not None and copied.figures.uplink.loss_ratio is None


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridgemon", *args], capture_output=True,
                          text=True, timeout=30, env=ENV, cwd=REPO)


def test_exit_codes_are_those_of_every_command() -> None:
    bad = run("reflect", "--listen", "nowhere")
    assert bad.returncode == exits.USAGE
    assert bad.stderr.startswith("bridgemon reflect: listen 'nowhere'"), bad.stderr
    unknown = run("reflect", "--frobnicate")
    assert unknown.returncode == exits.USAGE and "usage: bridgemon reflect" in unknown.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind((HOST, 0))
        taken = run("reflect", "--listen", f"{HOST}:{busy.getsockname()[1]}")
    assert taken.returncode == exits.FAIL, taken.stderr
    assert taken.stderr.startswith("bridgemon reflect:")
    helped = run("reflect", "--help")
    assert helped.returncode == exits.OK and "--allow NETWORK" in helped.stdout


def test_reflect_is_a_command_of_bridgemon_with_the_reflectors_options() -> None:
    assert "reflect" in run("--help").stdout
    # As the systemd unit and a README example write it, the main parser takes it too.
    args = build_parser().parse_args(["reflect", "--listen", "0.0.0.0:862", "--allow",
                                      "10.0.0.0/8", "--stateless", "--max-rate", "20M"])
    assert (args.command, args.listen, args.allow, args.stateless, args.max_rate) == \
        ("reflect", ["0.0.0.0:862"], ["10.0.0.0/8"], True, "20M")


def test_the_command_word_is_found_after_global_options_only() -> None:
    assert command_word(["reflect", "--listen", "x"]) == 0
    assert command_word(["--log-level", "debug", "reflect"]) == 2
    assert command_word(["-c", "f.toml", "lab", "up"]) == 2
    # A config file named "reflect" is the option's value, not the command.
    assert command_word(["-c", "reflect", "sites"]) == 2
    assert command_word(["--version"]) is None
