"""The provincial dashboards when one Prometheus holds several vantages (and shards of
one): a ``$vantage`` variable, every selector limited to it, every sum split per vantage —
checked on the JSON, then evaluated by promtool over series of two vantages, one of them
in two shards, so a figure that adds vantages together or a join that breaks on them
shows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_dashboards import VALUES, check

LIMITED = 'vantage=~"$vantage"'
NAME = re.compile(r'(?<![\w:"])((?:[a-z_]+:)?bridgemon_[a-z0-9_]+(?::[a-z0-9_]+)?|ALERTS)'
                  r"(?![\w:(])(\{[^}]*\})?")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return check.load()


def test_every_dashboard_picks_vantages_all_by_default(
        dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dash in dashboards.items():
        first = dash["templating"]["list"][0]
        assert first["name"] == "vantage", name
        assert first["query"] == "label_values(bridgemon_site_info, vantage)"
        assert first["includeAll"] and first["multi"] and first["allValue"] == ".*"
        assert first["current"]["value"] == ["$__all"]


def test_every_selector_is_limited_to_the_vantages_chosen(
        dashboards: dict[str, dict[str, Any]]) -> None:
    for q in check.queries(dashboards):
        if q.kind == "variable" and q.title == "vantage":
            continue
        names = NAME.findall(q.expr)
        assert names, q
        for name, labels in names:
            assert LIMITED in labels, f"{q}: {name}{labels}"


def test_no_sum_adds_vantages_together(dashboards: dict[str, dict[str, Any]]) -> None:
    for q in check.queries(dashboards):
        if q.kind != "panel":
            continue
        for match in re.finditer(r"(?<![\w:])(sum|avg|count|min)(?: by \(([^)]*)\))? ?\(",
                                 q.expr):
            assert match.group(2) and "vantage" in match.group(2).split(", "), \
                f"{q}: {match.group(0)!r} adds vantages together"


def panel_expr(dashboards: dict[str, dict[str, Any]], uid: str, title: str,
               kind: str | None = None) -> str:
    (dash,) = (d for d in dashboards.values() if d["uid"] == uid)
    (found,) = (p for p in check.panels(dash)
                if p.get("title") == title and kind in (None, p["type"]))
    return check.expand(found["targets"][0]["expr"], VALUES)


# Two vantages watch the same two communes of one district: "hn" in one daemon, "dn" in
# two shards (each exports one commune; both export the level and the event).
INSTANCES = {"h1": "hn", "d1": "dn", "d2": "dn"}
OWNER = {("hn", "20335"): "h1", ("hn", "20338"): "h1", ("dn", "20335"): "d1",
         ("dn", "20338"): "d2"}


def series() -> list[dict[str, str]]:
    out = []
    for (vantage, site), instance in OWNER.items():
        where = f'site="{site}", vantage="{vantage}", instance="{instance}"'
        out += [
            {"series": f'bridgemon_site_state{{{where}, state="ready"}}', "values": "1x3"},
            {"series": f'bridgemon_site_ready{{{where}}}', "values": "1x3"},
            {"series": f'bridgemon_site_info{{{where}, name="Phường {site}", '
                       'level="commune", parent="502"}', "values": "1x3"},
            {"series": f'bridgemon_event_participant{{{where}, event="hn-2025-01"}}',
             "values": "1x3"},
        ]
    for offset, (instance, vantage) in enumerate(INSTANCES.items()):
        where = f'vantage="{vantage}", instance="{instance}"'
        out += [
            {"series": f'bridgemon_level_info{{{where}, level="commune", name="Cấp xã", '
                       'depth="2"}', "values": "1x3"},
            {"series": f'bridgemon_event_start_timestamp_seconds{{{where}, '
                       'event="hn-2025-01"}', "values": f"{4_000_000_000 + offset}x3"},
            {"series": f'bridgemon_event_info{{{where}, event="hn-2025-01", '
                       'title="Giao ban trực tuyến"}', "values": "1x3"},
        ]
    for vantage in ("hn", "dn"):
        out.append({"series": f'level_state:bridgemon_sites:count{{vantage="{vantage}", '
                              'level="commune", state="ready"}', "values": "2x3"})
    return out


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package 'prometheus')")
def test_two_vantages_and_two_shards_are_shown_apart(
        dashboards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    tests = [
        # 2 ready sites per vantage, not 4 (the two vantages added) nor 2 in all.
        {"expr": panel_expr(dashboards, "bridgemon-overview", "Sẵn sàng"),
         "exp_samples": [{"labels": '{vantage="hn"}', "value": 2},
                         {"labels": '{vantage="dn"}', "value": 2}]},
        {"expr": panel_expr(dashboards, "bridgemon-overview", "Tham gia: sẵn sàng"),
         "exp_samples": [{"labels": '{vantage="hn"}', "value": 2},
                         {"labels": '{vantage="dn"}', "value": 2}]},
        {"expr": panel_expr(dashboards, "bridgemon-event", "Điểm cầu tham gia", "stat"),
         "exp_samples": [{"labels": '{vantage="hn"}', "value": 2},
                         {"labels": '{vantage="dn"}', "value": 2}]},
        # The event's title, once, though three daemons export it.
        {"expr": panel_expr(dashboards, "bridgemon-overview", "Hội nghị tiếp theo"),
         "exp_samples": [{"labels": '{event="hn-2025-01", instance="h1", vantage="hn", '
                                    'title="Giao ban trực tuyến"}',
                          "value": 4_000_000_000 - 60}]},
        {"expr": panel_expr(dashboards, "bridgemon-event", "Hội nghị"),
         "exp_samples": [{"labels": '{event="hn-2025-01", title="Giao ban trực tuyến"}',
                          "value": 1}]},
        # A row per level and vantage, the level's name from either shard.
        {"expr": panel_expr(dashboards, "bridgemon-overview", "Số điểm cầu theo cấp"),
         "exp_samples": [
             {"labels": f'{{vantage="{v}", name="Cấp xã", state="ready", row="Cấp xã · {v}"}}',
              "value": 2} for v in ("hn", "dn")]},
    ]
    for test in tests:
        test["eval_time"] = "1m"
    spec = {"rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series(), "promql_expr_test": tests}]}
    path = tmp_path / "dashboards.test.yml"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
