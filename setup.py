"""Build the optional Cython extensions of ``mobius/_fast/``; all else is in pyproject.toml.

Each ``mobius/_fast/_x.pyx`` becomes the extension ``mobius._fast._x``, the compiled twin of
``_x_py.py``. The extensions are optional: if Cython is missing or a module fails to compile,
a warning is printed and the pure-Python package is installed (``mobius._fast`` then uses the
Python twins). Environment:

- ``MOBIUS_REQUIRE_EXTENSIONS=1``: a failure to build is an error (CI, release wheels);
- ``MOBIUS_NO_EXTENSIONS=1``: do not even try.

    python setup.py build_ext --inplace     # build beside the sources, for development
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
FAST = Path("mobius", "_fast")

COMPILER_DIRECTIVES = {
    "language_level": 3,
    # The .pyx modules index raw str buffers with bounds they checked themselves.
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "embedsignature": True,
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("MOBIUS_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("MOBIUS_REQUIRE_EXTENSIONS")


def _extensions() -> list[Extension]:
    return [
        Extension(
            ".".join((*FAST.parts, pyx.stem)),
            [str(FAST / pyx.name)],
            extra_compile_args=["-O3"] if sys.platform != "win32" else [],
        )
        for pyx in sorted((HERE / FAST).glob("*.pyx"))
    ]


class ExtensionsRequired(Exception):
    """An extension failed to build and MOBIUS_REQUIRE_EXTENSIONS is set."""


class optional_build_ext(build_ext):  # named like the command it replaces
    """Cythonize, then compile; on failure warn and go on, unless extensions are required."""

    def run(self) -> None:
        try:
            from Cython.Build import cythonize

            translated = cythonize(
                self.extensions, compiler_directives=COMPILER_DIRECTIVES, quiet=True
            )
            # Keep setuptools' own Extension objects (finalize_options prepared them).
            sources = {ext.name: ext.sources for ext in translated}
            for ext in self.extensions:
                ext.sources = sources[ext.name]
            super().run()
        except ExtensionsRequired:
            raise
        except Exception as exc:
            self._failed("the Cython extensions", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed(ext.name, exc)

    def _failed(self, what: str, exc: Exception) -> None:
        if REQUIRE_EXTENSIONS:
            raise ExtensionsRequired(
                f"cannot build {what} and MOBIUS_REQUIRE_EXTENSIONS is set: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        print(
            f"WARNING: cannot build {what} ({type(exc).__name__}: {exc}); "
            "installing the pure-Python twins instead, which are slower.",
            file=sys.stderr,
        )


setup(
    ext_modules=[] if NO_EXTENSIONS else _extensions(),
    cmdclass={"build_ext": optional_build_ext},
)
