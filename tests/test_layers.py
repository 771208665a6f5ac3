"""The shape of the code: one direction of imports, no circle, one home per name.

Read from the source with ``ast`` (every import counts: at the top, inside a function,
under ``TYPE_CHECKING``), so a lazy import cannot hide a dependency. docs/architecture.md
describes these layers; a new module is placed in one here, or this test fails.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "bridgemon"

# Top first. A module may import from its own layer or the ones below, never above.
# Entries name a module or a package (everything in it); the longest entry that names a
# module decides its layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("command line", ("bridgemon.__main__", "bridgemon.cli", "bridgemon.cli_probe",
                      "bridgemon.cli_probe_url", "bridgemon.cli_testrun", "bridgemon.lab")),
    ("daemon", ("bridgemon.daemon",)),
    ("web", ("bridgemon.web",)),
    ("rounds and test runs in the daemon", ("bridgemon.scheduler", "bridgemon.vantage",
                                            "bridgemon.testrun.service")),
    ("test runs and reports", ("bridgemon.testrun", "bridgemon.report")),
    ("judging and showing", ("bridgemon.board", "bridgemon.metrics", "bridgemon.views",
                             "bridgemon.snapshot", "bridgemon.vantage_view")),
    ("readiness", ("bridgemon.readiness",)),
    ("windows", ("bridgemon.windows", "bridgemon.trend")),
    ("probes", ("bridgemon.probes", "bridgemon.stamp")),
    ("configuration", ("bridgemon.config", "bridgemon.config_models",
                       "bridgemon.config_inventory", "bridgemon.config_checks",
                       "bridgemon.config_issues", "bridgemon.config_source",
                       "bridgemon.events", "bridgemon.inventory", "bridgemon.shards")),
    ("foundation", ("bridgemon.specs", "bridgemon.durations", "bridgemon.verdicts",
                    "bridgemon.exits", "bridgemon.media_types", "bridgemon.testrun_schema",
                    "bridgemon.gc_pacing", "bridgemon.gil", "bridgemon.cooperative",
                    "bridgemon.loop_lag", "bridgemon.stamp.train",
                    "bridgemon.stamp.units", "bridgemon.stamp.packets")),
)
# The package itself, below everything: its version, and where its hot modules load from
# (compiled.py, which the package imports before anything else and which imports nothing).
ROOT = ("bridgemon", "bridgemon.compiled")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports() -> dict[str, frozenset[str]]:
    """module -> the bridgemon modules it names in an import. Importing a submodule runs
    its package's __init__ too, for every submodule alike: that is not counted."""
    known = modules()
    graph: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.level == 0, f"{name}: relative import"
                # "from bridgemon.probes import http" names the submodule; a name that is
                # no submodule (ProbeContext) is the package's own.
                targets = [f"{node.module}.{alias.name}"
                           if f"{node.module}.{alias.name}" in known else node.module
                           for alias in node.names]
            else:
                continue
            found.update(target for target in targets if target in known and target != name)
        graph[name] = frozenset(found)
    return graph


def layer(module: str) -> int:
    if module in ROOT:
        return len(LAYERS)
    best: tuple[int, int] | None = None
    for index, (_name, entries) in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and \
                    (best is None or len(entry) > best[1]):
                best = (index, len(entry))
    if best is None:
        raise LookupError(f"{module} is in no layer: place it in LAYERS "
                          "(and in docs/architecture.md's module map)")
    return best[0]


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer(module)


def upward() -> list[str]:
    return [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in imports().items() for target in sorted(targets)
        if layer(target) < layer(module)
    ]


def circles() -> list[list[str]]:
    """Tarjan's strongly connected components: any of two modules or more is a circle."""
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward() == []


def test_no_import_cycles() -> None:
    assert circles() == []


@pytest.mark.parametrize(("importer", "allowed"), [
    # Probes return data: they never touch windows, readiness, metrics, the board, the web.
    # (The packet train is a probe too: its code is in stamp/, beside them.)
    # The engine hands ended bursts back a loop slice (cooperative.BUDGET) at a time.
    ("bridgemon.probes", ("bridgemon.probes", "bridgemon.specs", "bridgemon.inventory",
                          "bridgemon.stamp", "bridgemon.cooperative")),
    # Pure functions over a window and thresholds.
    ("bridgemon.readiness", ("bridgemon.readiness", "bridgemon.inventory", "bridgemon.specs",
                             "bridgemon.probes.result", "bridgemon.verdicts",
                             # pure string functions: the probes' reasons in Vietnamese
                             "bridgemon.probes.reasons_vi")),
    # Report formats read the report dict alone: no inventory, no live state, no probes.
    ("bridgemon.report", ("bridgemon.report", "bridgemon.testrun_schema",
                          "bridgemon.verdicts")),
])
def test_what_a_part_may_import(importer: str, allowed: tuple[str, ...]) -> None:
    reached = {
        (module, target) for module, targets in imports().items()
        if module == importer or module.startswith(importer + ".")
        for target in targets
        if target not in ROOT and not any(target == a or target.startswith(a + ".")
                                      for a in allowed)
    }
    assert reached == set()


def test_the_web_layer_never_imports_the_daemon() -> None:
    # It reads snapshots and acts through web/actions.py (a protocol the daemon keeps).
    assert {module for module, targets in imports().items()
            if module.startswith("bridgemon.web") and "bridgemon.daemon" in targets} == set()


VERDICT_NAMES = frozenset({"ready", "degraded", "not_ready", "parent_down", "unknown"})


def verdict_listings() -> list[str]:
    """Tuples, lists, sets and dict keys outside verdicts.py naming two verdicts or more."""
    listings = []
    for module, path in modules().items():
        if module == "bridgemon.verdicts":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                items = node.elts
            elif isinstance(node, ast.Dict):
                items = [key for key in node.keys if key is not None]
            else:
                continue
            named = {item.value for item in items
                     if isinstance(item, ast.Constant) and item.value in VERDICT_NAMES}
            if len(named) > 1:
                listings.append(f"{module}:{node.lineno}: {sorted(named)}")
    return listings


def test_verdict_names_are_listed_in_verdicts_py_alone() -> None:
    # Their order and words live in one module; elsewhere a verdict is used by name
    # (State.READY), never listed again.
    assert verdict_listings() == []


def type_aliases() -> dict[str, list[str]]:
    """Module-level names bound to a subscripted type (``Annotated[...]``, ``Callable[...]``,
    ``tuple[...]``), by what they are bound to."""
    found: dict[str, list[str]] = {}
    for module, path in modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
                found.setdefault(ast.unparse(node.value), []).extend(
                    f"{module}.{name}" for name in names)
    return found


def test_a_type_alias_is_written_in_one_module() -> None:
    # One name per thing: a second spelling of a type (three Durations, two Issue
    # callbacks) drifts apart the day one of them changes. Import the one there is.
    assert {value: names for value, names in type_aliases().items() if len(names) > 1} == {}


ARCHITECTURE = REPO / "docs" / "architecture.md"


def test_the_architecture_page_shows_these_layers() -> None:
    # Its module map's table, row by row: the same layers, in order, with the same modules.
    rows = [line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith(("| layer", "|---"))]
    shown = []
    for row in rows:
        name, modules_cell = (cell.strip() for cell in row.strip("|").split("|"))
        entries = tuple(
            "bridgemon." + path.removesuffix("/").removesuffix(".py").replace("/", ".")
            for path in re.findall(r"`([^`]+)`", modules_cell)
        )
        shown.append((name, entries))
    assert shown == [(name, tuple(entries)) for name, entries in LAYERS]


def test_the_architecture_page_names_only_files_that_exist() -> None:
    # A bare name ("icmp.py", in the probes/ paragraph) is a file of the package it is
    # described in; a path is the file at that path.
    named = set(re.findall(r"`([\w/]+\.py)", ARCHITECTURE.read_text(encoding="utf-8")))
    files = {path.name for path in PACKAGE.rglob("*.py")}
    missing = sorted(path for path in named
                     if not (PACKAGE / path).exists() and not (REPO / path).exists()
                     and not ("/" not in path and path in files))
    assert missing == []
