"""The hot modules run compiled only while they are what their sources say (compiled.py).

Each case imports bridgemon in a process of its own, from a copy of the package: the
decision is taken once, at the package's import.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridgemon import compiled

PACKAGE = Path(compiled.__file__).resolve().parent
needs_build = pytest.mark.skipif(not compiled.ACTIVE, reason=f"hot modules: {compiled.REASON}")


def _import_in(root: Path, **env: str) -> tuple[str, str]:
    """(compiled.REASON, bridgemon.board's file) in a fresh process importing ``root``."""
    out = subprocess.run(
        [sys.executable, "-c",
         "import bridgemon.board, bridgemon.probes.pinger, bridgemon.compiled as c; "
         "print(c.REASON); print(bridgemon.board.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), **env},
    )
    assert out.returncode == 0, out.stderr
    reason, board = out.stdout.splitlines()
    return reason, board


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package as installed here (compiled modules and their hashes included)."""
    shutil.copytree(PACKAGE, tmp_path / "bridgemon",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_ci_runs_the_suite_on_the_compiled_modules() -> None:
    # CI installs a C compiler (.ci/run): the tests must exercise what a server runs.
    if not os.environ.get("CI"):
        pytest.skip("outside CI the build may be plain Python")
    assert compiled.ACTIVE, compiled.REASON
    for name in compiled.MODULES:
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        assert not str(module.__file__).endswith(".py"), name


@needs_build
def test_a_copy_as_built_runs_compiled(copy: Path) -> None:
    reason, board = _import_in(copy)
    assert reason == "compiled (mypyc)" and Path(board).suffix == ".so"
    assert Path(board).is_relative_to(copy)


@needs_build
def test_an_edited_source_runs_instead_of_its_stale_build(copy: Path) -> None:
    # An editable install whose trend.py was edited after the build: the edit must run,
    # and so must every other hot module's source (a compiled board would call the
    # compiled trend directly).
    trend = copy / "bridgemon" / "trend.py"
    trend.write_text(trend.read_text() + "\n# edited\n")
    reason, board = _import_in(copy)
    assert "trend.py changed since it was compiled" in reason, reason
    assert board == str(copy / "bridgemon" / "board.py")


@needs_build
def test_an_extension_left_from_an_older_build_is_never_loaded(copy: Path) -> None:
    # inventory.py was compiled once; its extension stays in an editable tree after a
    # build that no longer compiles it.
    board = next((copy / "bridgemon").glob("board.*.so"))
    shutil.copy(board, copy / "bridgemon" / board.name.replace("board", "inventory", 1))
    out = subprocess.run(
        [sys.executable, "-c", "import bridgemon.inventory as i, bridgemon.compiled as c; "
         "print(c.REASON); print(i.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == str(copy / "bridgemon" / "inventory.py")
    assert out.stdout.startswith("compiled (mypyc)")


@needs_build
def test_bridgemon_pure_runs_the_sources(copy: Path) -> None:
    reason, board = _import_in(copy, BRIDGEMON_PURE="1")
    assert reason == "plain Python: BRIDGEMON_PURE=1"
    assert board.endswith("board.py")


@needs_build
def test_a_missing_piece_runs_the_sources(copy: Path) -> None:
    (copy / "bridgemon" / compiled.MANIFEST).unlink()
    assert _import_in(copy)[0].startswith("plain Python: not compiled")
    shutil.copy(PACKAGE / compiled.MANIFEST, copy / "bridgemon" / compiled.MANIFEST)
    library = next((copy / "bridgemon").glob("native__mypyc*"))
    library.write_bytes(b"not a shared library")
    reason, board = _import_in(copy)
    assert "do not load" in reason and board.endswith("board.py")
    library.unlink()
    assert "library is missing" in _import_in(copy)[0]


def test_a_plain_install_says_so(copy: Path) -> None:
    for built in [*copy.rglob("*.so"), copy / "bridgemon" / compiled.MANIFEST]:
        built.unlink(missing_ok=True)
    reason, board = _import_in(copy)
    assert reason.startswith("plain Python: not compiled") and board.endswith("board.py")


def test_no_compiled_module_caches_a_property() -> None:
    # mypyc runs a cached_property as a plain property: compiled, Inventory.depths was
    # computed at every read (7 ms at 12,000 sites), and a status page took 2.4 s.
    cached = []
    for name in compiled.MODULES:
        tree = ast.parse(compiled._source(name).read_text(encoding="utf-8"))
        cached += [f"{name}: {node.name}" for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef)
                   for decorator in node.decorator_list
                   if "cache" in ast.unparse(decorator)]
    assert cached == []
