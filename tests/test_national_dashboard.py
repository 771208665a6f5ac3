"""The national dashboard (dashboards/national/): the same static checks as the
provinces' dashboards, against the central data source; every query valid PromQL over
metrics bridgemon exports or the rules record. tests/integration/test_national.py runs
every query against a live central Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import load_script

NATIONAL = REPO / "dashboards" / "national" / "provisioning"
RULES = [*(REPO / "deploy" / "prometheus" / "rules").glob("*.yml"),
         *(REPO / "deploy" / "prometheus" / "central" / "rules").glob("*.yml")]


check = load_script("check_dashboards")


def dashboards() -> dict[str, dict[str, Any]]:
    return check.load(NATIONAL / "dashboards" / "national")  # type: ignore[no-any-return]


def central_uid() -> str:
    text = (NATIONAL / "datasources" / "central.yaml").read_text(encoding="utf-8")
    (source,) = yaml.safe_load(text)["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_the_national_dashboard_passes_the_static_checks() -> None:
    found = dashboards()
    assert set(found) == {"national.json"}
    assert found["national.json"]["uid"] == "bridgemon-national"
    assert check.check(found, central_uid()) == []


def test_its_provider_reads_where_the_files_are_copied() -> None:
    provider = yaml.safe_load((NATIONAL / "dashboards" / "national.yaml").read_text(
        encoding="utf-8"))
    (only,) = provider["providers"]
    assert only["options"]["path"] == f"{check.GRAFANA_PROVISIONING}/dashboards/national"


def test_it_reads_only_known_metrics() -> None:
    recorded = {rule["record"] for path in RULES
                for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
                for rule in group["rules"] if "record" in rule}
    known = check.exported_metrics() | recorded
    for q in check.queries(dashboards()):
        unknown = check.metric_names(q.expr) - known
        assert not unknown, f"{q}: unknown metrics {unknown}"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package 'prometheus')")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    values = {"province": ".*", "vantage": ".*", "__range": "3600s",
              "__rate_interval": "2m", "__interval": "30s"}
    exprs = [check.expand(q.expr, values) for q in check.queries(dashboards())
             if q.kind != "variable"]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": expr} for i, expr in enumerate(exprs)
    ]}]}
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps(rules, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"SUCCESS: {len(exprs)} rules found", result.stdout)
