"""Prometheus rules (deploy/prometheus): promtool checks, promtool unit tests, and the
conventions every alert keeps (names, severities, texts, runbook links, labels, tests).

Needs promtool (Debian package ``prometheus``, installed by .ci/run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import load_script

PROMETHEUS = REPO / "deploy" / "prometheus"
# The provinces' rules, and the central (national) Prometheus' own (docs/national.md).
RULE_FILES = sorted([*(PROMETHEUS / "rules").glob("*.yml"),
                     *(PROMETHEUS / "central" / "rules").glob("*.yml")])
TEST_FILES = sorted([*(PROMETHEUS / "tests").glob("*.yml"),
                     *(PROMETHEUS / "central" / "tests").glob("*.yml")])
RUNBOOK = REPO / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning", "info"}

promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package 'prometheus'; .ci/run installs it)",
)


def rules() -> list[tuple[str, dict[str, Any]]]:
    """(group name, rule) for every rule of every file."""
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend((group["name"], rule) for rule in group["rules"])
    return out


def alerts() -> list[tuple[str, dict[str, Any]]]:
    return [(group, rule) for group, rule in rules() if "alert" in rule]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def anchors(markdown: str) -> set[str]:
    """GitHub/GitLab heading anchors of a Markdown text."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


# -- promtool -----------------------------------------------------------------------------


@promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", *map(str, RULE_FILES)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


@promtool
def test_promtool_unit_tests() -> None:
    """Every file of deploy/prometheus/tests, in parallel (each takes a second or two)."""
    processes = {
        path.name: subprocess.Popen(
            ["promtool", "test", "rules", path.name], cwd=path.parent,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for path in TEST_FILES
    }
    failures = []
    for name, process in processes.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"--- {name}\n{output}")
    assert not failures, "\n".join(failures)


@promtool
def test_example_prometheus_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (PROMETHEUS / "rules").glob("*.yml"):  # it loads the provinces' rule files
        assert path.name in result.stdout + result.stderr


@promtool
def test_central_prometheus_config() -> None:
    """The central server loads the national rules and the vantage alerts."""
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS / "central" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("bridgemon-national.yml", "bridgemon-vantages.yml"):
        assert name in result.stdout


@promtool
def test_the_remote_write_stanza_merges_into_the_provincial_config(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    stanza = yaml.safe_load((PROMETHEUS / "remote-write.yml").read_text(encoding="utf-8"))
    config["global"].update(stanza["global"])
    config["remote_write"] = stanza["remote_write"]
    shutil.copytree(PROMETHEUS / "rules", tmp_path / "rules")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # It sends what the national rules read, of bridgemon's metrics.
    keep = re.compile(stanza["remote_write"][0]["write_relabel_configs"][0]["regex"])
    national = (PROMETHEUS / "central" / "rules" / "bridgemon-national.yml").read_text(
        encoding="utf-8")
    check = load_script("check_dashboards")
    read = {name for name in check.metric_names(national) if name.startswith("bridgemon_")}
    assert read and all(keep.fullmatch(name) for name in read), read


# -- conventions --------------------------------------------------------------------------


def test_every_alert_follows_the_conventions() -> None:
    runbook = anchors(RUNBOOK.read_text(encoding="utf-8"))
    for _, rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Bridgemon[A-Z][A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert notes["summary"].strip(), name
        vi, en = notes["description"].split("\n")  # Vietnamese line, then English
        assert vi.strip() and en.strip(), name
        assert re.search(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", vi), name
        url = notes["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", (name, url)
        assert name.lower() in runbook, f"{name}: no section '## {name}' in docs/runbook.md"


def test_site_alerts_carry_the_parent_label() -> None:
    """Every alert about a site joins name, level and parent from bridgemon_site_info (the
    parent is what Alertmanager's parent suppression matches on)."""
    for group, rule in alerts():
        if group in ("bridgemon.daemon", "bridgemon.vantages", "bridgemon.national") or rule[
            "alert"] in (
            "BridgemonParentDown", "BridgemonEventTestRunMissing", "BridgemonEventTestRunFailed"
        ):
            continue
        expr = " ".join(rule["expr"].split())
        assert expr.endswith(
            "* on (site, vantage) group_left (name, level, parent) bridgemon_site_info"
        ), rule["alert"]


def test_parent_down_is_the_inhibition_source() -> None:
    (rule,) = [r for _, r in alerts() if r["alert"] == "BridgemonParentDown"]
    assert rule["labels"]["severity"] == "info"
    assert "keep_firing_for" in rule and "for" not in rule
    site_down = [r for _, r in alerts() if r["alert"] == "BridgemonSiteDown"]
    # It must fire before the children's own down alerts can (they wait `for:`).
    assert all(seconds(r["for"]) > 0 for r in site_down)


def unit_test_evaluations() -> list[tuple[float, dict[str, dict[float, set[str]]]]]:
    """Per test group: (evaluation interval, alertname -> eval time -> firing severities)."""
    out = []
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        interval = seconds(document.get("evaluation_interval", "1m"))
        for test in document["tests"]:
            table: dict[str, dict[float, set[str]]] = defaultdict(dict)
            for case in test.get("alert_rule_test", []):
                table[case["alertname"]][seconds(case["eval_time"])] = {
                    alert["exp_labels"]["severity"] for alert in case.get("exp_alerts") or []
                }
            out.append((interval, table))
    return out


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    evaluations = unit_test_evaluations()
    for _, rule in alerts():
        name, severity = rule["alert"], rule["labels"]["severity"]
        seen = [sev for _, table in evaluations for sev in table.get(name, {}).values()]
        assert any(severity in sev for sev in seen), f"{name} ({severity}) never fires in a test"
        assert any(severity not in sev for sev in seen), f"{name} ({severity}): no quiet case"


def test_every_for_clause_is_tested_at_its_edge() -> None:
    """For each alert with `for:`, some test evaluates it one evaluation interval before it
    fires (quiet) and at the moment it fires."""
    evaluations = unit_test_evaluations()
    for _, rule in alerts():
        if "for" not in rule:
            continue
        name, severity = rule["alert"], rule["labels"]["severity"]
        edge = False
        for interval, table in evaluations:
            times = table.get(name, {})
            for t, firing in times.items():
                before = times.get(t - interval)
                if severity in firing and before is not None and severity not in before:
                    edge = True
        assert edge, f"{name} ({severity}): no test of its for: {rule['for']} edge"


def test_rules_read_only_known_metrics() -> None:
    """The metrics the rules read are exported by bridgemon/metrics.py, or are listed as
    awaited (issue 4's events and test runs, the service checks)."""
    check = load_script("check_dashboards")
    exported = check.exported_metrics()
    recorded = {rule["record"] for _, rule in rules() if "record" in rule}
    used: set[str] = set()
    for _, rule in rules():
        used |= check.metric_names(rule["expr"])
        for text in rule.get("annotations", {}).values():
            used |= check.metric_names(text)
    assert "bridgemon_site_info" in used and "level_state:bridgemon_sites:count" in used
    unknown = used - exported - set(check.AWAITED_METRICS) - recorded
    assert not unknown, f"rules read metrics nobody exports: {sorted(unknown)}"
    awaited_but_exported = exported & set(check.AWAITED_METRICS)
    assert not awaited_but_exported, (
        f"now exported, remove from AWAITED_METRICS (scripts/check_dashboards.py) and let "
        f"the live test query them: {sorted(awaited_but_exported)}"
    )
