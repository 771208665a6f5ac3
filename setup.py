"""Build bridgemon, its hot modules compiled to C with mypyc.

The modules in ``bridgemon.compiled.MODULES`` hold the work done for every echo (the ICMP
engine) and for every site round (windows, judging, the prepared /metrics lines and API
rows). They are plain, strictly typed Python; mypyc (the mypy project's compiler, the one
mypy and black ship with) turns them into C extensions. At 12,000 sites that cut the
daemon's CPU per echo by a sixth (measured: README, "Truth under load").

Compiling needs a C compiler and Python's headers. Without them, or with
``BRIDGEMON_PURE=1`` in the environment, bridgemon installs as plain Python: the same
code, slower. Which one runs is decided at import (``bridgemon.compiled``): a compiled
module whose source has changed since the build is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bridgemon.compiled import GROUP, MANIFEST, MODULES  # noqa: E402  (after the path)

sys.path.remove(str(HERE))


# module -> SHA-256 of the source mypyc compiled, written beside the built extensions
_COMPILED: dict[str, str] = {}


class OptionalBuildExt(build_ext):
    """A compile that fails leaves a working pure-Python install behind, and says why.

    One that succeeds writes the hashes of the sources it compiled beside the extensions
    (in the source tree for an editable install, in the wheel otherwise): written there
    and not into the source tree, a wheel built from a tree whose sources were edited
    after its in-place build would vouch for the stale extensions left in it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # (distutils raises its own kinds: CompileError, ...)
            _forget_build()
            print(f"bridgemon: compiling the hot modules failed ({exc}); installing them as "
                  "plain Python (slower; README, \"Compiled hot modules\")", file=sys.stderr)
            return
        if _COMPILED:
            built = Path(self.get_ext_fullpath(GROUP + "__mypyc")).parent / MANIFEST
            built.write_text(json.dumps(_COMPILED, indent=1) + "\n")

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception:
            _forget_build()
            raise


def _forget_build() -> None:
    (HERE / "bridgemon" / MANIFEST).unlink(missing_ok=True)


def _sources() -> list[str]:
    return [str(Path(*name.split(".")).with_suffix(".py")) for name in MODULES]


# The commands that build extensions. pip runs setup.py for the build requirements and the
# metadata too (egg_info, dist_info): mypyc there would type-check and generate it all for
# nothing, a minute each time.
_BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _compiled_modules() -> list[object]:
    if not _BUILDS & set(sys.argv[1:]):
        return []
    if os.environ.get("BRIDGEMON_PURE") == "1":
        _forget_build()
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # built without the build requirements (--no-build-isolation)
        _forget_build()
        print("bridgemon: mypyc is not installed; the hot modules stay plain Python",
              file=sys.stderr)
        return []
    # The hashes of the sources compiled, taken before mypyc reads them: bridgemon.compiled
    # runs the compiled modules only while their sources still hash the same.
    _COMPILED.update({name: hashlib.sha256((HERE / path).read_bytes()).hexdigest()
                      for name, path in zip(MODULES, _sources(), strict=True)})
    return list(mypycify(_sources(), group_name=GROUP, opt_level="3"))


setup(ext_modules=_compiled_modules(), cmdclass={"build_ext": OptionalBuildExt})
