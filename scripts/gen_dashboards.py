#!/usr/bin/env python3
"""Generate bridgemon's Grafana dashboards (the JSON is committed; this is its source).

Writes three dashboards into ``dashboards/provisioning/dashboards/bridgemon/``:

* ``overview.json`` — the wall screen: counts per state and level, per parent, every site
  that is not ready with its parent, reasons and how long, a state timeline, per-level
  path quality, and the next conference;
* ``site.json``     — one site: RTT min/avg/max/p95 with loss (smokeping style), jitter,
  loss, MOS, service checks, TLS certificate expiry;
* ``event.json``    — one conference: countdown, its participants' verdicts, the last
  pre-event test run.

One Prometheus may hold several vantages (docs/monitoring.md, "Vantage points and
shards"): every dashboard has a ``$vantage`` variable (all by default), every selector is
limited to it (``in_vantage``), and every sum, average and count is split per vantage
(``per_vantage``), its legend naming the vantage, so figures of two vantages that watch
the same sites are shown side by side, never added together.

Every panel and query uses the provisioned Prometheus data source (fixed uid
``bridgemon-prometheus``, dashboards/provisioning/datasources/bridgemon.yaml). Titles are
Vietnamese, descriptions Vietnamese with the English after it. Stdlib only, deterministic.

    .venv/bin/python scripts/gen_dashboards.py          # rewrite the JSON
    .venv/bin/python scripts/gen_dashboards.py --check  # exit 1 if the files differ

scripts/check_dashboards.py checks the result (structure, and live queries).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "dashboards" / "provisioning" / "dashboards" / "bridgemon"
DS = {"type": "prometheus", "uid": "bridgemon-prometheus"}

Json = dict[str, Any]

# Verdict codes of site:bridgemon_site_state:code (deploy/prometheus/rules).
STATE_MAPPING: Json = {
    "type": "value",
    "options": {
        "0": {"text": "Sẵn sàng", "color": "green", "index": 0},
        "1": {"text": "Suy giảm", "color": "yellow", "index": 1},
        "2": {"text": "Chưa rõ", "color": "purple", "index": 2},
        "3": {"text": "Mất kết nối cấp trên", "color": "orange", "index": 3},
        "4": {"text": "Chưa sẵn sàng", "color": "red", "index": 4},
    },
}
STATE_NAME_MAPPING: Json = {
    "type": "value",
    "options": {
        "ready": {"text": "Sẵn sàng", "color": "green", "index": 0},
        "degraded": {"text": "Suy giảm", "color": "yellow", "index": 1},
        "unknown": {"text": "Chưa rõ", "color": "purple", "index": 2},
        "parent_down": {"text": "Mất kết nối cấp trên", "color": "orange", "index": 3},
        "not_ready": {"text": "Chưa sẵn sàng", "color": "red", "index": 4},
    },
}
# Reason codes of bridgemon_site_problem{problem} (bridgemon/readiness.py).
PROBLEM_MAPPING: Json = {
    "type": "value",
    "options": {
        "no_reply": {"text": "Không phản hồi ping", "index": 0},
        "loss": {"text": "Mất gói", "index": 1},
        "rtt": {"text": "Độ trễ cao", "index": 2},
        "jitter": {"text": "Jitter cao", "index": 3},
        "error": {"text": "Lỗi đo", "index": 4},
        "parent_down": {"text": "Cấp trên mất kết nối", "index": 5},
        "no_data": {"text": "Chưa có số liệu", "index": 6},
        "stale": {"text": "Số liệu cũ", "index": 7},
    },
}
CHECK_PROBLEM_MAPPING: Json = {
    "type": "regex",
    "options": {"pattern": "check:(.+)", "result": {"text": "Kiểm tra $1 lỗi", "index": 8}},
}
CHECK_MAPPING: Json = {
    "type": "value",
    "options": {
        "0": {"text": "Lỗi", "color": "red", "index": 0},
        "1": {"text": "Đạt", "color": "green", "index": 1},
    },
}
READY_MAPPING: Json = {
    "type": "value",
    "options": {
        "0": {"text": "Không đạt", "color": "red", "index": 0},
        "1": {"text": "Đạt", "color": "green", "index": 1},
    },
}

SITE_LINK = "/d/bridgemon-site/?var-site=${__data.fields.site}&${__url_time_range}"


# -- the vantage ------------------------------------------------------------------------

IN_VANTAGE = 'vantage=~"$vantage"'
# A series name bridgemon exports or records (not a label, a function or a quoted value),
# with its label matchers if any.
_SELECTOR = re.compile(
    r'(?<![\w:"])((?:[a-z_]+:)?bridgemon_[a-z0-9_]+(?::[a-z0-9_]+)?|ALERTS)(?![\w:(])'
    r"(?:\{([^}]*)\})?")
_AGGREGATION = re.compile(r"(?<![\w:])(sum|avg|count)(?: by \(|\()")


def in_vantage(expr: str) -> str:
    """Every selector of ``expr`` limited to the ``$vantage`` variable's choice."""

    def limit(match: re.Match[str]) -> str:
        name, labels = match.group(1), match.group(2)
        return f"{name}{{{labels + ', ' if labels else ''}{IN_VANTAGE}}}"

    return _SELECTOR.sub(limit, expr)


def per_vantage(expr: str) -> str:
    """Every sum, average and count of ``expr`` kept apart per vantage: two vantages that
    watch the same sites would otherwise count each site twice."""

    def split(match: re.Match[str]) -> str:
        by = match.group(0).endswith("by (")
        return f"{match.group(1)} by (vantage{', ' if by else ') ('}"

    return _AGGREGATION.sub(split, expr)


# -- small builders ---------------------------------------------------------------------


def steps(*pairs: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def target(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, table: bool = False,
    name_vantage: bool = True,
) -> Json:
    """A query limited to ``$vantage`` and split per vantage; its legend names the vantage
    too, unless ``name_vantage`` is False (a figure that is not a vantage's)."""
    if legend and name_vantage and "{{vantage}}" not in legend:
        legend = f"{legend} · {{{{vantage}}}}"
    return {
        "datasource": DS,
        "refId": ref,
        "expr": per_vantage(in_vantage(expr)),
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "table" if table else "time_series",
        "editorMode": "code",
    }


def refs(*targets: Json) -> list[Json]:
    """Give targets the refIds A, B, C... in order."""
    return [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str,
    options: Json | None = None,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
) -> Json:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": unit, **(defaults or {})},
            "overrides": overrides or [],
        },
        "options": options or {},
        **({"transformations": transformations} if transformations else {}),
    }


def stat(
    title: str, description: str, targets: list[Json], *, unit: str,
    color: str | None = None, thresholds: Json | None = None, mappings: list[Json] | None = None,
    text_mode: str = "value", decimals: int | None = None, color_mode: str = "background",
) -> Json:
    defaults: Json = {"mappings": mappings or []}
    if color is not None:
        defaults["color"] = {"mode": "fixed", "fixedColor": color}
    else:
        defaults["color"] = {"mode": "thresholds"}
    defaults["thresholds"] = thresholds or steps(("green", None))
    if decimals is not None:
        defaults["decimals"] = decimals
    return panel(
        "stat", title, description, targets, unit=unit, defaults=defaults,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "none",
            "justifyMode": "center",
            "textMode": text_mode,
            "orientation": "auto",
        },
    )


def gauge(title: str, description: str, targets: list[Json], *, thresholds: Json) -> Json:
    return panel(
        "gauge", title, description, targets, unit="percentunit",
        defaults={"min": 0, "max": 1, "decimals": 1, "thresholds": thresholds,
                  "color": {"mode": "thresholds"}},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        },
    )


def timeseries(
    title: str, description: str, targets: list[Json], *, unit: str,
    overrides: list[Json] | None = None, defaults: Json | None = None,
    custom: Json | None = None,
) -> Json:
    return panel(
        "timeseries", title, description, targets, unit=unit,
        defaults={
            "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0,
                       "showPoints": "never", "spanNulls": False, **(custom or {})},
            "color": {"mode": "palette-classic"},
            **(defaults or {}),
        },
        overrides=overrides,
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def per_vantage_panel(item: Json) -> Json:
    """``item`` repeated by Grafana for each vantage chosen, ``$vantage`` being one of them
    in each copy."""
    return {**item, "repeat": "vantage", "repeatDirection": "v"}


def timeline(
    title: str, description: str, targets: list[Json], *, mappings: list[Json]
) -> Json:
    return panel(
        "state-timeline", title, description, targets, unit="none",
        defaults={"mappings": mappings, "color": {"mode": "thresholds"},
                  "thresholds": steps(("text", None)),
                  "custom": {"fillOpacity": 80, "lineWidth": 0}},
        options={
            "mergeValues": True, "showValue": "never", "alignValue": "left",
            "rowHeight": 0.85, "legend": {"showLegend": False, "displayMode": "list",
                                          "placement": "bottom"},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    )


def table(
    title: str, description: str, targets: list[Json], *, transformations: list[Json],
    overrides: list[Json], sort: list[Json] | None = None,
) -> Json:
    return panel(
        "table", title, description, targets, unit="none",
        defaults={"custom": {"align": "auto", "cellOptions": {"type": "auto"}},
                  "color": {"mode": "thresholds"}, "thresholds": steps(("text", None))},
        overrides=overrides,
        transformations=transformations,
        options={"showHeader": True, "cellHeight": "sm", "sortBy": sort or [],
                 "footer": {"show": False, "reducer": ["sum"], "fields": ""}},
    )


def bargauge(title: str, description: str, targets: list[Json], *, thresholds: Json) -> Json:
    return panel(
        "bargauge", title, description, targets, unit="percentunit",
        defaults={"min": 0, "max": 1, "decimals": 0, "thresholds": thresholds,
                  "color": {"mode": "thresholds"}},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal", "displayMode": "lcd", "showUnfilled": True,
            "valueMode": "color", "namePlacement": "left", "minVizHeight": 10,
            "minVizWidth": 0, "sizing": "auto",
        },
    )


def by_name(name: str, *props: tuple[str, Any]) -> Json:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in props]}


def organize(rename: dict[str, str], exclude: list[str], order: list[str]) -> Json:
    return {
        "id": "organize",
        "options": {
            "excludeByName": {name: True for name in exclude},
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": {"vantage": "Điểm quan sát", **rename},
        },
    }


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


class Grid:
    """Places panels left to right in rows of 24 columns; ids in placement order."""

    def __init__(self) -> None:
        self.y = 0
        self.panels: list[Json] = []

    def row(self, title: str) -> None:
        self._place(row(title), 0, 24, 1)
        self.y += 1

    def line(self, height: int, *items: tuple[Json, int]) -> None:
        x = 0
        for item, width in items:
            self._place(item, x, width, height)
            x += width
        if x > 24:
            raise ValueError(f"row at y={self.y} is {x} columns wide")
        self.y += height

    def _place(self, item: Json, x: int, w: int, h: int) -> None:
        item["id"] = len(self.panels) + 1
        item["gridPos"] = {"x": x, "y": self.y, "w": w, "h": h}
        # Stable key order: id, type, title, gridPos first.
        ordered = {k: item[k] for k in ("id", "type", "title", "gridPos") if k in item}
        ordered.update({k: v for k, v in item.items() if k not in ordered})
        self.panels.append(ordered)


def variable(
    name: str, label: str, description: str, query: str, *, multi: bool = True,
    include_all: bool = True, limited: bool = True,
) -> Json:
    current: Json = (
        {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {}
    )
    query = in_vantage(query) if limited else query  # the options of the vantage chosen
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 3,
        "multi": multi,
        "includeAll": include_all,
        **({"allValue": ".*"} if include_all else {}),
        "current": current,
        "options": [],
        "hide": 0,
    }


VANTAGE_VAR = variable(
    "vantage", "Điểm quan sát",
    "Điểm quan sát (máy giám sát) đã đo các điểm cầu; mặc định tất cả, mỗi con số tổng hợp "
    "tách riêng theo từng điểm quan sát, không cộng dồn. / The vantage that measured the "
    "sites; all by default, every sum and count split per vantage, never added together.",
    "label_values(bridgemon_site_info, vantage)", limited=False,
)
LEVEL_VAR = variable(
    "level", "Cấp",
    "Cấp của điểm cầu (tỉnh, huyện, xã...). / Site level.",
    "label_values(bridgemon_site_info, level)",
)
def picker(
    name: str, label: str, description: str, query: str, regex: str, **kwargs: Any
) -> Json:
    """A variable whose options show a name and stand for an id: ``query`` is a
    ``query_result(...)`` whose lines ``regex`` reads with the named groups ``text`` (what
    the picker shows) and ``value`` (what the queries get). Grafana writes each result as
    ``{a="x", b="y"} 1 1700000000000``, labels in the order Prometheus gives them (sorted),
    values unescaped: so the name is matched greedily up to the label after it."""
    return {**variable(name, label, description, query, **kwargs), "regex": regex,
            "sort": 5}  # 5: alphabetical by the text shown, case-insensitive


PARENT_VAR = picker(
    "parent", "Cấp trên",
    "Đơn vị cấp trên, theo tên (lọc các điểm cầu trực thuộc). / Parent site, by name: shows "
    "the sites directly under it.",
    "query_result(count by (parent, parent_name) "
    '(site:bridgemon_site_info:parent_name{level=~"$level"}))',
    r'/\{parent="(?<value>[^"]+)", parent_name="(?<text>.*)"\}/',
)
SITE_VAR = picker(
    "site", "Điểm cầu",
    "Điểm cầu, theo tên; giá trị là mã điểm cầu (mã đơn vị hành chính). / Site, by name; its "
    "value is the site id (the administrative unit code).",
    'query_result(count by (name, site) (bridgemon_site_info{level=~"$level", parent=~"$parent"}))',
    r'/\{name="(?<text>.*)", site="(?<value>[^"]+)"\}/',
    multi=False, include_all=False,
)
EVENT_VAR = variable(
    "event", "Hội nghị",
    "Mã hội nghị trực tuyến. / Conference id.",
    "label_values(bridgemon_event_start_timestamp_seconds, event)",
    multi=False, include_all=False,
)


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], grid: Grid,
    annotations: list[Json],
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["bridgemon"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {"title": "bridgemon", "type": "dashboards", "tags": ["bridgemon"],
             "asDropdown": False, "includeVars": False, "keepTime": True,
             "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""},
        ],
        "templating": {"list": variables},
        "annotations": {"list": annotations},
        "panels": grid.panels,
    }


def down_annotation(selector: str = "") -> Json:
    expr = in_vantage('ALERTS{alertname="BridgemonSiteDown", alertstate="firing"'
                      + selector + "}")
    return {
        "name": "Mất kết nối (BridgemonSiteDown)",
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "expr": expr,
        "step": "60s",
        "titleFormat": "Mất kết nối: {{name}} ({{site}}, {{vantage}})",
        "textFormat": "BridgemonSiteDown",
        "tagKeys": "site,parent,vantage",
        "useValueForTime": False,
    }


# -- the dashboards ---------------------------------------------------------------------

FILTER = 'bridgemon_site_info{level=~"$level", parent=~"$parent"}'
NEXT_EVENT = "bottomk(1, bridgemon_event_start_timestamp_seconds - time() > 0)"
READY_STEPS = steps(("red", None), ("orange", 0.9), ("green", 0.98))


def overview() -> Json:
    g = Grid()
    # The sites to act on first, at the top of the wall screen: what the technicians call.
    g.row("Điểm cầu chưa sẵn sàng / Sites not ready")
    not_ready = "(site:bridgemon_site_state:code >= 2)"
    g.line(
        10,
        (table(
            "Điểm cầu chưa sẵn sàng",
            "Mọi điểm cầu chưa sẵn sàng, mất kết nối cấp trên hoặc chưa rõ: cấp trên, lý do và "
            "thời gian đã ở trạng thái này. Bấm mã điểm cầu để xem chi tiết. / Every site not "
            "ready, cut off by its parent or unknown: its parent, the reasons and how long it "
            "has been so. Click a site id for its detail dashboard.",
            refs(
                target(
                    "bridgemon_site_problem * on (site, vantage) group_left (name, level, parent,"
                    ' parent_name) site:bridgemon_site_info:parent_name{level=~"$level",'
                    f' parent=~"$parent"}} and on (site, vantage) {not_ready}',
                    instant=True, table=True),
                target(
                    "time() - site:bridgemon_site_state:since"
                    '{state=~"not_ready|parent_down|unknown"} and on (site, vantage) ' + FILTER,
                    instant=True, table=True),
            ),
            transformations=[
                {"id": "merge", "options": {}},
                organize(
                    {"name": "Điểm cầu", "site": "Mã", "level": "Cấp", "parent_name": "Cấp trên",
                     "state": "Trạng thái", "problem": "Lý do", "severity": "Mức",
                     "Value #B": "Thời gian"},
                    ["Time", "job", "instance", "__name__", "parent", "Value #A"],
                    ["name", "site", "level", "parent_name", "state", "problem", "severity",
                     "Value #B"],
                ),
            ],
            overrides=[
                by_name("Thời gian", ("unit", "dtdurations")),
                by_name("Trạng thái", ("mappings", [STATE_NAME_MAPPING]),
                        ("custom.cellOptions", {"type": "color-background"})),
                by_name("Mức", ("mappings", [STATE_NAME_MAPPING]),
                        ("custom.cellOptions", {"type": "color-text"})),
                by_name("Lý do", ("mappings", [PROBLEM_MAPPING, CHECK_PROBLEM_MAPPING])),
                by_name("Mã", ("links", [{"title": "Chi tiết điểm cầu", "url": SITE_LINK}])),
            ],
            sort=[{"displayName": "Thời gian", "desc": True}],
        ), 24),
    )
    g.row("Trạng thái hiện tại / Current state")

    def count(state: str, title: str, color: str, en: str) -> Json:
        return stat(
            title,
            f"Số điểm cầu đang ở trạng thái «{title}» (theo bộ lọc cấp và cấp trên). / "
            f"Sites currently {en} (within the level and parent filters).",
            refs(target(f'sum(bridgemon_site_state{{state="{state}"}}'
                        f" and on (site, vantage) {FILTER})",
                        title, instant=True)),
            unit="none", color=color, decimals=0,
        )

    g.line(
        4,
        (count("ready", "Sẵn sàng", "green", "ready"), 4),
        (count("degraded", "Suy giảm", "yellow", "degraded (ready, with a warning)"), 4),
        (count("not_ready", "Chưa sẵn sàng", "red", "not ready"), 4),
        (count("parent_down", "Mất kết nối cấp trên", "orange",
               "unreachable because their parent is down"), 4),
        (count("unknown", "Chưa rõ", "purple", "of unknown state (not probed yet, stale)"), 4),
        (gauge("Tỉ lệ sẵn sàng",
               "Tỉ lệ điểm cầu có thể tham gia hội nghị (sẵn sàng hoặc suy giảm). / Share of "
               "sites that can join a conference (ready or degraded).",
               refs(target(f"avg(bridgemon_site_ready and on (site, vantage) {FILTER})",
                           "Tỉ lệ sẵn sàng", instant=True)),
               thresholds=READY_STEPS), 4),
    )

    g.row("Hội nghị sắp tới / Next conference")
    next_participants = f"(bridgemon_event_participant and on (event) {NEXT_EVENT})"
    g.line(
        5,
        (stat(
            "Hội nghị tiếp theo",
            "Hội nghị sắp diễn ra gần nhất và thời gian còn lại đến giờ bắt đầu. / The next "
            "conference and the time left until it starts.",
            # One title per event, whatever number of vantages and shards export it.
            refs(target(f"{NEXT_EVENT} * on (event) group_left (title)"
                        " max by (event, title) (bridgemon_event_info)",
                        "{{title}}", instant=True, name_vantage=False)),
            unit="dtdurations", color="blue", text_mode="value_and_name",
        ), 8),
        (stat(
            "Tham gia: sẵn sàng",
            "Số điểm cầu tham gia hội nghị tiếp theo đang sẵn sàng. / Participants of the next "
            "conference that are ready now.",
            refs(target(f"sum(bridgemon_site_ready and on (site, vantage) {next_participants})",
                        "Sẵn sàng", instant=True)),
            unit="none", color="green", decimals=0,
        ), 4),
        (stat(
            "Tham gia: chưa sẵn sàng",
            "Số điểm cầu tham gia hội nghị tiếp theo chưa sẵn sàng. / Participants of the next "
            "conference that are not ready now.",
            refs(target("sum((bridgemon_site_ready == bool 0)"
                        f" and on (site, vantage) {next_participants})",
                        "Chưa sẵn sàng", instant=True)),
            unit="none", decimals=0, thresholds=steps(("green", None), ("red", 1)),
        ), 4),
        (gauge(
            "Tham gia: tỉ lệ sẵn sàng",
            "Tỉ lệ điểm cầu tham gia hội nghị tiếp theo đang sẵn sàng. / Share of the next "
            "conference's participants that are ready now.",
            refs(target(f"avg(bridgemon_site_ready and on (site, vantage) {next_participants})",
                        "Tỉ lệ", instant=True)),
            thresholds=steps(("red", None), ("green", 1)),
        ), 4),
        (stat(
            "Lần kiểm tra gần nhất",
            "Thời gian từ lần kiểm tra kết nối gần nhất cho hội nghị tiếp theo. / Time since "
            "the last pre-event test run of the next conference.",
            # Each shard tests its own share: the oldest of their latest runs.
            refs(target("time() - min by (vantage, event) (bridgemon_testrun_timestamp_seconds"
                        f" and on (event) {NEXT_EVENT})", "{{event}}", instant=True)),
            unit="dtdurations", color="blue",
        ), 4),
    )
    g.line(
        8,
        (table(
            "Hội nghị tiếp theo: điểm cầu chưa sẵn sàng",
            "Các điểm cầu tham gia hội nghị tiếp theo đang chưa sẵn sàng, với cấp trên và "
            "trạng thái. / The next conference's participants that are not ready now, with "
            "their parent and state.",
            refs(target(
                "site:bridgemon_site_state:code * on (site, vantage)"
                " group_left (name, level, parent_name) site:bridgemon_site_info:parent_name"
                f" and on (site, vantage) {next_participants}"
                " and on (site, vantage) (bridgemon_site_ready == 0)",
                instant=True, table=True)),
            transformations=[organize(
                {"name": "Điểm cầu", "site": "Mã", "level": "Cấp", "parent_name": "Cấp trên",
                 "Value": "Trạng thái"},
                ["Time", "job", "instance", "__name__"],
                ["name", "site", "level", "parent_name", "Value"],
            )],
            overrides=[
                by_name("Trạng thái", ("mappings", [STATE_MAPPING]),
                        ("custom.cellOptions", {"type": "color-background"})),
                by_name("Mã", ("links", [{"title": "Chi tiết điểm cầu", "url": SITE_LINK}])),
            ],
        ), 24),
    )
    g.row("Theo cấp và theo đơn vị / Per level and per parent")
    state_columns = {
        "ready": "Sẵn sàng", "degraded": "Suy giảm", "not_ready": "Chưa sẵn sàng",
        "parent_down": "Mất kết nối cấp trên", "unknown": "Chưa rõ",
    }
    state_overrides = [
        by_name("Chưa sẵn sàng", ("custom.cellOptions", {"type": "color-text"}),
                ("thresholds", steps(("text", None), ("red", 1))), ("unit", "none")),
        by_name("Mất kết nối cấp trên", ("custom.cellOptions", {"type": "color-text"}),
                ("thresholds", steps(("text", None), ("orange", 1))), ("unit", "none")),
    ]
    g.line(
        8,
        (table(
            "Số điểm cầu theo cấp",
            "Số điểm cầu của mỗi cấp theo trạng thái. / Sites of each level per state "
            "(recording rule level_state:bridgemon_sites:count).",
            # A row per level and vantage ("Cấp xã · dc1"): the level's name comes from
            # any shard of the vantage (each exports bridgemon_level_info).
            refs(target(
                'label_join(sum by (name, state) (level_state:bridgemon_sites:count'
                '{level=~"$level"} * on (vantage, level) group_left (name)'
                ' max by (vantage, level, name) (bridgemon_level_info)),'
                ' "row", " · ", "name", "vantage")',
                instant=True, table=True)),
            transformations=[
                {"id": "groupingToMatrix", "options": {
                    "columnField": "state", "rowField": "row", "valueField": "Value",
                }},
                organize({"row\\state": "Cấp", **state_columns}, [],
                         ["row\\state", *state_columns]),
            ],
            overrides=state_overrides,
        ), 8),
        (bargauge(
            "Tỉ lệ sẵn sàng theo đơn vị cấp trên",
            "Tỉ lệ điểm cầu trực thuộc mỗi đơn vị sẵn sàng hoặc suy giảm. / Share of the sites "
            "directly under each parent that are ready or degraded.",
            refs(target(
                'sum by (parent_name) (parent_state:bridgemon_sites:ratio{state=~"ready|degraded",'
                ' parent=~"$parent"} * on (vantage, parent) group_left (parent_name)'
                " parent:bridgemon_site_info:max)",
                "{{parent_name}}", instant=True)),
            thresholds=READY_STEPS,
        ), 8),
        (table(
            "Số điểm cầu theo đơn vị cấp trên",
            "Số điểm cầu trực thuộc mỗi đơn vị theo trạng thái. / Sites directly under each "
            "parent per state (recording rule parent_state:bridgemon_sites:count).",
            refs(target(
                'label_join(sum by (parent_name, state) (parent_state:bridgemon_sites:count'
                '{parent=~"$parent"} * on (vantage, parent) group_left (parent_name)'
                ' parent:bridgemon_site_info:max), "row", " · ", "parent_name", "vantage")',
                instant=True, table=True)),
            transformations=[
                {"id": "groupingToMatrix", "options": {
                    "columnField": "state", "rowField": "row", "valueField": "Value",
                }},
                organize({"row\\state": "Cấp trên", **state_columns}, [],
                         ["row\\state", *state_columns]),
            ],
            overrides=state_overrides,
            sort=[{"displayName": "Chưa sẵn sàng", "desc": True}],
        ), 8),
    )

    g.row("Diễn biến trạng thái / State over time")
    g.line(
        10,
        (timeline(
            "Diễn biến trạng thái",
            "Trạng thái theo thời gian của các điểm cầu từng không sẵn sàng trong khoảng thời "
            "gian đang xem. / State over time of the sites that were not simply ready at some "
            "point of the time range.",
            refs(target(
                "site:bridgemon_site_state:code * on (site, vantage) group_left (name) " + FILTER
                + " and on (site, vantage) (max_over_time(site:bridgemon_site_state:code[$__range]"
                " @ end()) >= 1)",
                "{{name}}")),
            mappings=[STATE_MAPPING],
        ), 24),
    )

    g.row("Chất lượng đường truyền theo cấp / Path quality per level")
    quantile_legend = "{{level}} p{{quantile}}"
    g.line(
        8,
        (timeseries(
            "Tỉ lệ sẵn sàng theo cấp",
            "Tỉ lệ điểm cầu sẵn sàng hoặc suy giảm của mỗi cấp. / Share of each level's sites "
            "that are ready or degraded.",
            refs(target('sum by (level) (level_state:bridgemon_sites:ratio{state=~"ready|degraded",'
                        ' level=~"$level"})', "{{level}}")),
            unit="percentunit", defaults={"min": 0, "max": 1},
        ), 6),
        (timeseries(
            "Độ trễ RTT theo cấp",
            "Trung vị và phân vị 90 của RTT trung bình các điểm cầu mỗi cấp. / Median and 90th "
            "percentile over each level's sites of their average RTT.",
            refs(target('level:bridgemon_icmp_rtt_seconds:quantile{level=~"$level",'
                        ' quantile=~"0.5|0.9"}', quantile_legend)),
            unit="s",
        ), 6),
        (timeseries(
            "Jitter theo cấp",
            "Trung vị và phân vị 90 của jitter các điểm cầu mỗi cấp. / Median and 90th "
            "percentile of jitter over each level's sites.",
            refs(target('level:bridgemon_icmp_jitter_seconds:quantile{level=~"$level",'
                        ' quantile=~"0.5|0.9"}', quantile_legend)),
            unit="s",
        ), 6),
        (timeseries(
            "Mất gói theo cấp",
            "Trung vị và phân vị 90 của tỉ lệ mất gói các điểm cầu mỗi cấp. / Median and 90th "
            "percentile of packet loss over each level's sites.",
            refs(target('level:bridgemon_icmp_loss_ratio:quantile{level=~"$level",'
                        ' quantile=~"0.5|0.9"}', quantile_legend)),
            unit="percentunit", defaults={"min": 0},
        ), 6),
    )

    return dashboard(
        "bridgemon-overview",
        "Điểm cầu — Tổng quan",
        "Màn hình tổng quan: trạng thái mọi điểm cầu theo cấp, điểm cầu chưa sẵn sàng, hội nghị "
        "sắp tới. / Wall screen: every site's state per level, the sites not ready, the next "
        "conference.",
        [VANTAGE_VAR, LEVEL_VAR, PARENT_VAR], g, [down_annotation()],
    )


def site() -> Json:
    g = Grid()
    s = 'site="$site"'
    g.row("Điểm cầu $site / Site $site")
    g.line(
        4,
        (stat("Điểm cầu", "Tên điểm cầu đang xem. / The site's name.",
              refs(target(f"bridgemon_site_info{{{s}}}", "{{name}}", instant=True)),
              unit="none", color="blue", text_mode="name"), 6),
        (stat("Trạng thái", "Kết luận hiện tại về điểm cầu. / The site's current verdict.",
              refs(target(f"site:bridgemon_site_state:code{{{s}}}", "Trạng thái", instant=True)),
              unit="none", mappings=[STATE_MAPPING],
              thresholds=steps(("green", None), ("yellow", 1), ("purple", 2), ("orange", 3),
                               ("red", 4))), 4),
        (stat("MOS", "Điểm chất lượng cảm nhận (E-model rút gọn, 1–4.5). / Mean opinion score "
                     "from the simplified E-model (1–4.5).",
              refs(target(f"bridgemon_site_mos{{{s}}}", "MOS", instant=True)),
              unit="none", decimals=2,
              thresholds=steps(("red", None), ("orange", 3.1), ("yellow", 3.6), ("green", 4))), 3),
        (stat("RTT", "RTT trung bình trong cửa sổ đo. / Average round-trip time over the window.",
              refs(target(f'bridgemon_icmp_rtt_seconds{{{s}, stat="avg"}}', "RTT", instant=True)),
              unit="s", thresholds=steps(("green", None), ("yellow", 0.15), ("red", 0.3))), 3),
        (stat("Jitter", "Jitter (trung bình |RTT[i] − RTT[i−1]|, như Javg của mtr). / Jitter: "
                        "mean absolute difference of consecutive RTTs (mtr's Javg).",
              refs(target(f"bridgemon_icmp_jitter_seconds{{{s}}}", "Jitter", instant=True)),
              unit="s", thresholds=steps(("green", None), ("yellow", 0.03), ("red", 0.05))), 3),
        (stat("Mất gói", "Tỉ lệ gói ping bị mất trong cửa sổ đo. / Echoes lost over the window.",
              refs(target(f"bridgemon_icmp_loss_ratio{{{s}}}", "Mất gói", instant=True)),
              unit="percentunit",
              thresholds=steps(("green", None), ("yellow", 0.01), ("red", 0.05))), 3),
        (stat("Lần đo cuối", "Thời gian từ lần đo gần nhất. / Time since the last probe.",
              refs(target(f"time() - bridgemon_last_probe_timestamp_seconds{{{s}}}", "Lần đo",
                          instant=True)),
              unit="s", thresholds=steps(("green", None), ("red", 300))), 2),
    )
    g.line(
        6,
        (table(
            "Thông tin điểm cầu",
            "Tên, cấp, cấp trên, địa chỉ, hồ sơ đo và người liên hệ kỹ thuật. / Name, level, "
            "parent, address, probe profile and technical contact.",
            refs(target(f"site:bridgemon_site_info:parent_name{{{s}}}", instant=True,
                        table=True)),
            transformations=[
                organize(
                    {"name": "Tên", "site": "Mã", "level": "Cấp", "parent_name": "Cấp trên",
                     "address": "Địa chỉ", "profile": "Hồ sơ đo", "contact": "Liên hệ",
                     "phone": "Điện thoại"},
                    ["Time", "job", "instance", "__name__", "Value", "parent"],
                    ["name", "site", "level", "parent_name", "address", "profile", "contact",
                     "phone"],
                ),
            ],
            overrides=[],
        ), 12),
        (table(
            "Lý do",
            "Các lý do khiến điểm cầu chưa sẵn sàng hoặc suy giảm, với mức độ. / What keeps "
            "the site from ready, with the severity of each reason.",
            refs(target(f"bridgemon_site_problem{{{s}}}", instant=True, table=True)),
            transformations=[organize(
                {"problem": "Lý do", "severity": "Mức"},
                ["Time", "job", "instance", "__name__", "Value", "site"],
                ["problem", "severity"],
            )],
            overrides=[
                by_name("Lý do", ("mappings", [PROBLEM_MAPPING, CHECK_PROBLEM_MAPPING])),
                by_name("Mức", ("mappings", [STATE_NAME_MAPPING]),
                        ("custom.cellOptions", {"type": "color-background"})),
            ],
        ), 12),
    )
    names = {"min": "nhỏ nhất (min)", "avg": "trung bình (avg)", "max": "lớn nhất (max)",
             "p95": "p95"}
    loss_name = "mất gói (loss)"
    g.line(
        9,
        # One panel per vantage chosen: its bands and lines are named for the overrides.
        (per_vantage_panel(timeseries(
            "Độ trễ RTT và mất gói (kiểu smokeping)",
            "Dải xám: RTT nhỏ nhất đến lớn nhất trong cửa sổ đo; đường: trung bình và p95; cột "
            "đỏ (trục phải): tỉ lệ mất gói. / Smokeping style: the grey band spans min to max "
            "RTT over the window, lines show the average and p95, red bars (right axis) the "
            "loss.",
            refs(
                *(target(f'bridgemon_icmp_rtt_seconds{{{s}, stat="{stat_}"}}', names[stat_],
                         name_vantage=False)
                  for stat_ in ("min", "max", "avg", "p95")),
                target(f"bridgemon_icmp_loss_ratio{{{s}}}", loss_name, name_vantage=False),
            ),
            unit="s",
            overrides=[
                by_name(names["min"], ("custom.lineWidth", 0), ("color", {"mode": "fixed",
                        "fixedColor": "#8f8f8f"})),
                by_name(names["max"], ("custom.lineWidth", 0),
                        ("custom.fillBelowTo", names["min"]), ("custom.fillOpacity", 35),
                        ("color", {"mode": "fixed", "fixedColor": "#8f8f8f"})),
                by_name(names["avg"], ("custom.lineWidth", 2),
                        ("color", {"mode": "fixed", "fixedColor": "green"})),
                by_name(names["p95"], ("custom.lineStyle", {"fill": "dash", "dash": [6, 4]}),
                        ("color", {"mode": "fixed", "fixedColor": "blue"})),
                by_name(loss_name, ("unit", "percentunit"), ("custom.axisPlacement", "right"),
                        ("custom.drawStyle", "bars"), ("custom.fillOpacity", 60),
                        ("min", 0), ("max", 1),
                        ("color", {"mode": "fixed", "fixedColor": "red"})),
            ],
        )), 24),
    )
    g.line(
        7,
        (timeseries(
            "Jitter", "Jitter theo thời gian; vạch: ngưỡng suy giảm (30 ms) và chưa sẵn sàng "
                      "(50 ms). / Jitter over time; lines: the degraded and not-ready thresholds.",
            refs(target(f"bridgemon_icmp_jitter_seconds{{{s}}}", "jitter")),
            unit="s",
            defaults={"thresholds": steps(("green", None), ("yellow", 0.03), ("red", 0.05))},
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ), 8),
        (timeseries(
            "Mất gói", "Tỉ lệ mất gói theo thời gian; vạch: 1 % và 5 %. / Packet loss over time; "
                       "lines: the 1 % and 5 % thresholds.",
            refs(target(f"bridgemon_icmp_loss_ratio{{{s}}}", "mất gói")),
            unit="percentunit",
            defaults={"min": 0,
                      "thresholds": steps(("green", None), ("yellow", 0.01), ("red", 0.05))},
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ), 8),
        (timeseries(
            "MOS", "Điểm MOS theo thời gian (1–4.5). / Mean opinion score over time (1–4.5).",
            refs(target(f"bridgemon_site_mos{{{s}}}", "MOS")),
            unit="none",
            defaults={"min": 1, "max": 4.5, "decimals": 2,
                      "thresholds": steps(("red", None), ("orange", 3.1), ("green", 3.6))},
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ), 8),
    )
    g.row("Kiểm tra dịch vụ / Service checks")
    g.line(
        7,
        (timeline(
            "Kiểm tra dịch vụ",
            "Kết quả từng kiểm tra dịch vụ (SIP, H.323, TCP, HTTP(S)) theo thời gian. / Each "
            "service check's result over time.",
            refs(target(f"bridgemon_check_up{{{s}}}", "{{check}}")),
            mappings=[CHECK_MAPPING],
        ), 12),
        (timeseries(
            "Thời gian kiểm tra",
            "Thời gian thực hiện mỗi kiểm tra dịch vụ. / How long each service check took.",
            refs(target(f"bridgemon_check_duration_seconds{{{s}}}", "{{check}}")),
            unit="s",
        ), 12),
    )
    g.line(
        5,
        (stat(
            "Chứng chỉ TLS hết hạn sau",
            "Thời gian còn lại đến khi chứng chỉ TLS của mỗi kiểm tra hết hạn (vàng: dưới 14 "
            "ngày, đỏ: dưới 3 ngày). / Time left until each check's TLS certificate expires "
            "(yellow under 14 days, red under 3).",
            refs(target(f"bridgemon_tls_cert_expiry_timestamp_seconds{{{s}}} - time()",
                        "{{check}}", instant=True)),
            unit="dtdurations", text_mode="value_and_name",
            thresholds=steps(("red", None), ("yellow", 259200), ("green", 1209600)),
        ), 12),
        (timeseries(
            "Gói ping gửi và nhận",
            "Số gói ping gửi đi và nhận về mỗi giây. / ICMP echoes sent and replies received "
            "per second.",
            refs(
                target(f"rate(bridgemon_icmp_echoes_sent_total{{{s}}}[$__rate_interval])", "gửi"),
                target(f"rate(bridgemon_icmp_echoes_received_total{{{s}}}[$__rate_interval])",
                       "nhận"),
            ),
            unit="pps",
        ), 12),
    )
    site_path_tests(g, s)
    return dashboard(
        "bridgemon-site",
        "Điểm cầu — Chi tiết",
        "Một điểm cầu: độ trễ, jitter, mất gói, MOS, kiểm tra dịch vụ, chứng chỉ TLS. / One "
        "site: latency, jitter, loss, MOS, service checks, TLS certificates.",
        [VANTAGE_VAR, LEVEL_VAR, PARENT_VAR, SITE_VAR], g, [down_annotation(', site="$site"')],
    )


def site_path_tests(g: Grid, s: str) -> None:
    """The site dashboard's "Path test (STAMP)" row: a stamp or mtu check in the rounds
    (``rounds = true``); empty for a site without one."""
    g.row("Kiểm tra đường truyền (STAMP) / Path test (STAMP)")
    where = "{{check}} {{direction}}"
    g.line(
        7,
        (timeseries(
            "Mất gói luồng STAMP",
            "Tỉ lệ gói của luồng thử bị mất theo từng chiều (xuống: máy giám sát → điểm cầu, "
            "lên: điểm cầu → máy giám sát; khứ hồi khi reflector không cho biết chiều); vạch: "
            "1 % và 5 %. / Train packets lost per direction (downlink: monitor → site, "
            "uplink: site → monitor; round_trip when the reflector cannot tell); lines: the "
            "1 % and 5 % defaults.",
            refs(target(f"bridgemon_stamp_loss_ratio{{{s}}}", where)),
            unit="percentunit",
            defaults={"min": 0,
                      "thresholds": steps(("green", None), ("yellow", 0.01), ("red", 0.05))},
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ), 8),
        (timeseries(
            "Jitter luồng STAMP",
            "Jitter theo RFC 3550 của luồng thử, từng chiều; vạch: 20 ms và 50 ms. / RFC 3550 "
            "interarrival jitter of the train per direction; lines: the 20 ms and 50 ms "
            "defaults.",
            refs(target(f"bridgemon_stamp_jitter_seconds{{{s}}}", where)),
            unit="s",
            defaults={"thresholds": steps(("green", None), ("yellow", 0.02), ("red", 0.05))},
            custom={"thresholdsStyle": {"mode": "dashed"}},
        ), 8),
        (timeseries(
            "Trễ khứ hồi luồng STAMP",
            "Trễ khứ hồi của các gói luồng thử: nhỏ nhất, trung bình, p95, lớn nhất. / "
            "Round-trip delay of the train's packets: min, avg, p95, max.",
            refs(target(f"bridgemon_stamp_delay_seconds{{{s}}}", "{{check}} {{stat}}")),
            unit="s",
        ), 8),
    )
    g.line(
        5,
        (timeseries(
            "Tốc độ đi qua",
            "Tốc độ luồng thử thực sự đi qua được, từng chiều. / The rate of the train that "
            "got through, per direction.",
            refs(target(f"bridgemon_stamp_rate_bits_per_second{{{s}}}", where)),
            unit="bps",
        ), 12),
        (stat(
            "MOS video (STAMP)",
            "Điểm chất lượng video theo ITU-T G.1070 của chiều kém hơn (1–5). / Video score "
            "(ITU-T G.1070) of the worse direction (1–5).",
            refs(target(f"bridgemon_stamp_mos{{{s}}}", "{{check}}", instant=True)),
            unit="none", decimals=2, text_mode="value_and_name",
            thresholds=steps(("red", None), ("yellow", 2.5), ("green", 3.5)),
        ), 6),
        (stat(
            "MTU đường truyền",
            "MTU đường truyền: kích thước router báo hoặc dò được, hoặc kích thước đã thử khi "
            "đạt; dưới 1500 là cần xem lại (VPN, PPPoE). / Path MTU: the size a router "
            "reported or the search found, or the size tested when it passed; below 1500 "
            "needs a look (VPN, PPPoE).",
            refs(target(f"bridgemon_path_mtu_bytes{{{s}}}", "{{check}}", instant=True)),
            unit="bytes", decimals=0, text_mode="value_and_name",
            thresholds=steps(("red", None), ("yellow", 1400), ("green", 1500)),
        ), 6),
    )


def event() -> Json:
    g = Grid()
    part = 'bridgemon_event_participant{event="$event"}'
    in_level = 'and on (site, vantage) bridgemon_site_info{level=~"$level"}'
    g.row("Hội nghị $event / Conference $event")
    g.line(
        5,
        (stat("Hội nghị", "Tên hội nghị đang xem. / The conference's title.",
              refs(target('max by (event, title) (bridgemon_event_info{event="$event"})',
                          "{{title}}", instant=True, name_vantage=False)),
              unit="none", color="blue", text_mode="name"), 6),
        (stat("Bắt đầu sau",
              "Thời gian còn lại đến giờ bắt đầu hội nghị (âm: đã bắt đầu). / Time left until "
              "the conference starts (negative once started).",
              refs(target('max by (event) (bridgemon_event_start_timestamp_seconds'
                          '{event="$event"}) - time()', "Bắt đầu sau", instant=True,
                          name_vantage=False)),
              unit="dtdurations", thresholds=steps(("red", None), ("orange", 7200),
                                                   ("green", 86400))), 4),
        (stat("Điểm cầu tham gia",
              "Số điểm cầu tham gia hội nghị (theo bộ lọc cấp). / Participating sites (within "
              "the level filter).",
              refs(target(f"count({part} {in_level})", "Tham gia", instant=True)),
              unit="none", color="blue", decimals=0), 4),
        (stat("Sẵn sàng",
              "Số điểm cầu tham gia đang sẵn sàng. / Participants ready now.",
              refs(target(f"sum(bridgemon_site_ready and on (site, vantage) {part} {in_level})",
                          "Sẵn sàng", instant=True)),
              unit="none", color="green", decimals=0), 3),
        (stat("Chưa sẵn sàng",
              "Số điểm cầu tham gia đang chưa sẵn sàng. / Participants not ready now.",
              refs(target("sum((bridgemon_site_ready == bool 0)"
                          f" and on (site, vantage) {part} {in_level})",
                          "Chưa sẵn sàng", instant=True)),
              unit="none", decimals=0, thresholds=steps(("green", None), ("red", 1))), 3),
        (gauge("Tỉ lệ sẵn sàng",
               "Tỉ lệ điểm cầu tham gia đang sẵn sàng. / Share of participants ready now.",
               refs(target(f"avg(bridgemon_site_ready and on (site, vantage) {part} {in_level})",
                           "Tỉ lệ", instant=True)),
               thresholds=steps(("red", None), ("green", 1))), 4),
    )
    g.line(
        11,
        (table(
            "Điểm cầu tham gia",
            "Mọi điểm cầu tham gia: trạng thái hiện tại và kết quả lần kiểm tra gần nhất. / "
            "Every participant: its current verdict and its result in the last test run.",
            refs(
                target("site:bridgemon_site_state:code * on (site, vantage)"
                       " group_left (name, level, parent_name)"
                       ' site:bridgemon_site_info:parent_name{level=~"$level"}'
                       f" and on (site, vantage) {part}", instant=True, table=True),
                target('bridgemon_testrun_site_ready{event="$event"}', instant=True,
                       table=True),
            ),
            transformations=[
                {"id": "merge", "options": {}},
                organize(
                    {"name": "Điểm cầu", "site": "Mã", "level": "Cấp", "parent_name": "Cấp trên",
                     "Value #A": "Hiện tại", "Value #B": "Lần kiểm tra gần nhất"},
                    ["Time", "job", "instance", "__name__", "parent", "event"],
                    ["name", "site", "level", "parent_name", "Value #A", "Value #B"],
                ),
            ],
            overrides=[
                by_name("Hiện tại", ("mappings", [STATE_MAPPING]),
                        ("custom.cellOptions", {"type": "color-background"})),
                by_name("Lần kiểm tra gần nhất", ("mappings", [READY_MAPPING]),
                        ("custom.cellOptions", {"type": "color-text"})),
                by_name("Mã", ("links", [{"title": "Chi tiết điểm cầu", "url": SITE_LINK}])),
            ],
            sort=[{"displayName": "Hiện tại", "desc": True}],
        ), 24),
    )
    g.row("Lần kiểm tra trước hội nghị / Pre-event test run")
    g.line(
        4,
        (stat("Lần kiểm tra gần nhất",
              "Thời gian từ lần kiểm tra kết nối gần nhất cho hội nghị. / Time since the "
              "conference's last test run.",
              # Each shard tests its own share: the oldest of their latest runs.
              refs(target('time() - min by (vantage) (bridgemon_testrun_timestamp_seconds'
                          '{event="$event"})', "Lần kiểm tra", instant=True)),
              unit="dtdurations", color="blue"), 8),
        (stat("Kiểm tra: đạt",
              "Số điểm cầu sẵn sàng trong lần kiểm tra gần nhất. / Sites ready in the last "
              "test run.",
              refs(target('sum(bridgemon_testrun_site_ready{event="$event"})', "Đạt",
                          instant=True)),
              unit="none", color="green", decimals=0), 8),
        (stat("Kiểm tra: không đạt",
              "Số điểm cầu chưa sẵn sàng trong lần kiểm tra gần nhất. / Sites not ready in the "
              "last test run.",
              refs(target('sum(bridgemon_testrun_site_ready{event="$event"} == bool 0)',
                          "Không đạt", instant=True)),
              unit="none", decimals=0, thresholds=steps(("green", None), ("red", 1))), 8),
    )
    g.line(
        10,
        (timeline(
            "Diễn biến trạng thái các điểm cầu tham gia",
            "Trạng thái theo thời gian của từng điểm cầu tham gia. / Each participant's state "
            "over time.",
            refs(target("site:bridgemon_site_state:code * on (site, vantage) group_left (name)"
                        ' (bridgemon_site_info{level=~"$level"} and on (site, vantage)'
                        f" {part})", "{{name}}")),
            mappings=[STATE_MAPPING],
        ), 24),
    )
    return dashboard(
        "bridgemon-event",
        "Hội nghị — Mức sẵn sàng",
        "Một hội nghị: thời gian còn lại, trạng thái các điểm cầu tham gia, kết quả lần kiểm "
        "tra trước hội nghị. / One conference: countdown, its participants' verdicts, the last "
        "pre-event test run.",
        [VANTAGE_VAR, EVENT_VAR, LEVEL_VAR], g, [],
    )


DASHBOARDS = {"overview.json": overview, "site.json": site, "event.json": event}


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), ensure_ascii=False, indent=2) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed JSON differs from what would be written")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output directory ({OUT})")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print("out of date (run scripts/gen_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
