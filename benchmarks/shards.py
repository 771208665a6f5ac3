"""Shard a national inventory over three daemons: each carries about a third of the echoes
and together they export every site exactly once.

Builds the synthetic 12,000-site loopback inventory of benchmarks/inventory.py (63
provinces, 693 districts, the rest communes; every site its own 127.x address), starts
``bridgemon run --shard N/M`` for N = 1, 2, 3 at once (three processes, one file), and
once all of them answer measures each over ``--rounds`` whole rounds: from the moment a
round of it completes to the moment the last of them does (its /healthz read every
0.2 s: the next round starts only at the next interval), so the echoes counted are
exactly those rounds' — at most a minute of probing in all. From each one's /metrics
then: the sites it exports, its overruns. It also says how
many sites would move if a fourth shard were added (rendezvous hashing: about a quarter,
all to the new shard).

    sudo .venv/bin/python benchmarks/shards.py   # 60 s of probing (and ~2 min to start)
    sudo .venv/bin/python benchmarks/shards.py --json out.json

Everything is on loopback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.inventory import national_inventory
from bridgemon.config import load_config
from bridgemon.shards import owners

ECHOES = 3  # per site per round


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def health(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        body = json.loads(response.read())
    return {key: float(body[key]) for key in ("rounds", "echoes_sent", "echoes_received")}


def measure(ports: list[int], rounds: int, deadline: float
            ) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Each daemon's counters just after one of its rounds completes, and just after the
    ``rounds``-th next one does."""
    seen = [health(port)["rounds"] for port in ports]
    first: list[dict[str, float] | None] = [None] * len(ports)
    last: list[dict[str, float] | None] = [None] * len(ports)
    while any(figures is None for figures in last):
        if time.monotonic() > deadline:
            raise SystemExit("the daemons did not complete their rounds in time")
        for index, port in enumerate(ports):
            now = health(port)
            start = first[index]
            if start is None and now["rounds"] > seen[index]:
                first[index] = now
            elif start is not None and last[index] is None \
                    and now["rounds"] >= start["rounds"] + rounds:
                last[index] = now
        time.sleep(0.2)
    return [f for f in first if f is not None], [f for f in last if f is not None]


def total(samples: Samples, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=12000)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--interval", type=int, default=15,
                        help="probe interval of the inventory, seconds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds measured")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    # Stopped from outside (a timeout): still stop the daemons, in the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    work = Path(tempfile.mkdtemp(prefix="bridgemon-shards-"))
    config = work / "sites.toml"
    config.write_text(national_inventory(args.sites, port=free_port(), interval=f"{args.interval}s",
                                         count=ECHOES, spacing="100ms", timeout="1s")
                      + '\n[monitor.vantage]\nname = "bench"\n', encoding="utf-8")
    config.write_text(config.read_text(encoding="utf-8").replace(
        "window = 5\n", f'window = 5\nstate_dir = "{work / "state"}"\n', 1), encoding="utf-8")
    inventory = load_config(config).inventory
    ports = [free_port() for _ in range(args.shards)]
    daemons = [
        subprocess.Popen(
            [sys.executable, "-m", "bridgemon", "-c", str(config), "--log-level", "warning",
             "run", "--shard", f"{n}/{args.shards}", "--listen", f"127.0.0.1:{port}"],
            cwd=work, stdout=(work / f"shard{n}.log").open("wb"), stderr=subprocess.STDOUT)
        for n, port in enumerate(ports, 1)
    ]
    figures: dict[str, object] = {"sites": len(inventory), "shards": args.shards,
                                  "interval": args.interval, "rounds": args.rounds}
    try:
        deadline = time.monotonic() + 60
        for port in ports:
            while True:
                try:
                    scrape(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"a daemon did not start: see {work}/*.log") from None
                    time.sleep(0.5)
        first, last = measure(ports, args.rounds, deadline=time.monotonic()
                              + (args.rounds + 3) * args.interval)
        scrapes = [scrape(port) for port in ports]
    finally:
        for proc in daemons:
            proc.send_signal(signal.SIGTERM)
        for proc in daemons:
            proc.wait(60)

    exported = [[labels["site"] for labels, _ in s.get("bridgemon_site_info", [])]
                for s in scrapes]
    union = [site for part in exported for site in part]
    def per_round(key: str) -> list[float]:
        return [(after[key] - before[key]) / (after["rounds"] - before["rounds"])
                for before, after in zip(first, last, strict=True)]

    echoes = per_round("echoes_sent")
    received = per_round("echoes_received")
    rounds = [total(s, "bridgemon_rounds_total") for s in scrapes]
    overruns = [total(s, "bridgemon_round_overruns_total") for s in scrapes]
    probed = [int(total(s, "bridgemon_round_sites")) for s in scrapes]
    every_once = sorted(union) == sorted(inventory.sites)
    before, after = owners(inventory, args.shards), owners(inventory, args.shards + 1)
    moved = sum(1 for site in before if before[site] != after[site])
    figures.update({
        "exported": [len(part) for part in exported],
        "probed": probed,
        "echoes_sent_per_round": [round(e) for e in echoes],
        "echoes_received_per_round": [round(r) for r in received],
        "echoes_per_round_planned": [n * ECHOES for n in probed],
        "echo_share": [round(e / sum(echoes), 4) for e in echoes],
        "rounds": rounds,
        "overruns": overruns,
        "union_covers_every_site_once": every_once,
        "moved_to_a_new_shard": round(moved / len(before), 4),
    })
    print(f"{len(inventory)} sites over {args.shards} shards, {args.rounds} rounds of each "
          f"measured (every {args.interval} s):")
    for n in range(args.shards):
        print(f"  shard {n + 1}/{args.shards}: exports {len(exported[n])} sites, probes "
              f"{probed[n]} (its roots too); per round {echoes[n]:.0f} echoes sent "
              f"({echoes[n] / sum(echoes):.1%}; planned {probed[n] * ECHOES}), "
              f"{received[n]:.0f} answered; "
              f"{rounds[n]:.0f} rounds, {overruns[n]:.0f} overruns in all")
    print(f"  union of the exports covers every site exactly once: {every_once}")
    print(f"  a shard more would move {moved / len(before):.1%} of the sites "
          f"(1/{args.shards + 1} = {1 / (args.shards + 1):.1%})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if every_once:
        shutil.rmtree(work, ignore_errors=True)  # else kept: the daemons' logs are there
    return 0 if every_once else 1


if __name__ == "__main__":
    sys.exit(main())
