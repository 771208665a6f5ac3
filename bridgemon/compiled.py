"""Whether the hot modules run compiled (mypyc) or from their sources, decided at import.

``setup.py`` compiles ``MODULES`` with mypyc into C extensions that sit beside their
sources (``board.cpython-311-x86_64-linux-gnu.so`` next to ``board.py``), and writes
``MANIFEST``: the SHA-256 of each source it compiled. Python prefers an extension to a
source, so in an editable install a source edited after the build would silently not
run. bridgemon therefore uses the compiled modules only when every source still hashes
as built; otherwise, or when a compiled module is missing or does not load, or with
``BRIDGEMON_PURE=1`` in the environment (to profile with py-spy, which sees only Python
frames), every one of them runs from its source. All or none: a compiled module calls
the others of its group directly, past their Python names, so the two cannot be mixed.

``state()`` says which, and why; ``bridgemon run`` logs it, ``/metrics`` exports it
(``bridgemon_build_info``).

Kept free of imports from the rest of bridgemon: ``setup.py`` reads ``MODULES`` from here
before anything is built.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The work done for every echo and every site round, and what it calls on the way. Not
# inventory.py: mypyc runs a functools.cached_property as a plain property, and
# Inventory.order and .depths (7 ms at 12,000 sites) would be computed at every read.
MODULES = (
    "bridgemon.board",
    "bridgemon.metrics",
    "bridgemon.probes.icmp",
    "bridgemon.probes.icmp_packets",
    "bridgemon.probes.pinger",
    "bridgemon.probes.result",
    "bridgemon.probes.site",
    "bridgemon.readiness",
    "bridgemon.snapshot",
    "bridgemon.specs",
    "bridgemon.trend",
    "bridgemon.vantage_view",
    "bridgemon.verdicts",
    "bridgemon.views",
    "bridgemon.windows",
)
GROUP = "bridgemon.native"  # mypyc's shared library: bridgemon/native__mypyc.*.so
MANIFEST = "compiled_sources.json"
_PACKAGE = Path(__file__).resolve().parent


class _Sources(importlib.abc.MetaPathFinder):
    """Finds ``names`` as their ``.py`` sources, ahead of the extensions beside them."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


def _source(module: str) -> Path:
    return _PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def _extension(module: str) -> Path | None:
    source = _source(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def _why_not() -> str | None:
    """None if the compiled modules can run, else why not."""
    if os.environ.get("BRIDGEMON_PURE") == "1":
        return "BRIDGEMON_PURE=1"
    try:
        built = json.loads((_PACKAGE / MANIFEST).read_text())
    except FileNotFoundError:
        return "not compiled (installed without a C compiler, or with BRIDGEMON_PURE=1)"
    except (OSError, ValueError) as exc:
        return f"{_PACKAGE / MANIFEST}: unreadable ({exc})"
    if not any(_PACKAGE.glob(GROUP.rpartition(".")[2] + "__mypyc.*")):
        return "the compiled modules' library is missing"
    for module in MODULES:
        if _extension(module) is None:
            return f"{module} was not compiled"
        try:
            digest = hashlib.sha256(_source(module).read_bytes()).hexdigest()
        except OSError as exc:
            return f"{_source(module)}: {exc.strerror}"
        if built.get(module) != digest:
            return (f"{_source(module)} changed since it was compiled "
                    "(pip install -e . compiles it again)")
    try:
        importlib.import_module(GROUP + "__mypyc")
    except ImportError as exc:
        return f"the compiled modules do not load ({exc})"
    return None


def _leftovers() -> frozenset[str]:
    """Modules with an extension beside their source that are not ``MODULES``: built when
    the list was longer, and never to be loaded (their shims would reach for code the
    group's library no longer holds)."""
    found = set()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for extension in _PACKAGE.rglob("*" + suffix):
            source = extension.with_name(extension.name.removesuffix(suffix) + ".py")
            if source.exists():
                parts = source.relative_to(_PACKAGE.parent).with_suffix("").parts
                found.add(".".join(parts))
    return frozenset(found) - set(MODULES)


def _decide() -> tuple[bool, str]:
    reason = _why_not()
    from_source = _leftovers() | (set(MODULES) if reason is not None else set())
    if from_source and not any(isinstance(finder, _Sources) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Sources(from_source))
    if reason is None:
        return True, "compiled (mypyc)"
    return False, f"plain Python: {reason}"


ACTIVE, REASON = _decide()


def state() -> tuple[bool, str]:
    """(whether the hot modules run compiled, a sentence saying which and why)."""
    return ACTIVE, REASON
