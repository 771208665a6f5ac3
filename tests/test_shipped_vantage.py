"""The shipped inventory's commented ``[monitor.vantage]`` example: it loads once
uncommented, and it names only loopback anchors (the shipped file probes nothing else)."""

from __future__ import annotations

import ipaddress
import re

from bridgemon.config import parse_config
from tests.conftest import REPO

SHIPPED = REPO / "config" / "sites.toml"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def uncommented() -> str:
    """The shipped text with the example's lines (``# [monitor.vantage]`` and the key
    lines right after it) made live."""
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    start = lines.index("# [monitor.vantage]")
    end = start + 1
    while end < len(lines) and re.match(r"# \w+ = ", lines[end]):
        end += 1
    assert end - start == 5, lines[start:end]  # the header and its four keys
    return "\n".join([*lines[:start], *(line[2:] for line in lines[start:end]),
                      *lines[end:]]) + "\n"


def test_the_shipped_file_has_no_live_vantage_and_never_isolates() -> None:
    config = parse_config(SHIPPED.read_text(encoding="utf-8"), SHIPPED)
    assert config.monitor.vantage.anchors == ()
    assert config.monitor.vantage.isolated_share is None


def test_the_vantage_example_loads_and_anchors_only_on_loopback() -> None:
    config = parse_config(uncommented(), SHIPPED)
    vantage = config.monitor.vantage
    assert vantage.name == "Sở TT&TT Quảng Nam"
    assert vantage.anchors and all(ipaddress.ip_address(anchor) in LOOPBACK
                                   for anchor in vantage.anchors)
    assert vantage.gateway is False  # the real gateway is never probed by the demo
    assert vantage.isolated_share == 0.8
    assert len(config.inventory) == 260
