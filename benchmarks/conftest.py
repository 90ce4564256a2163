"""Benchmark fixtures: sizes, synthetic squeue output, the same-run ratio report, the results.

``pytest benchmarks/`` runs from the repository root (pyproject's ``testpaths`` only names
``tests``). Every benchmark measures its baseline in the same run and the ratios are printed
at the end of the session, whatever pytest-benchmark's own table shows.

Sizes: ``--quick`` (the default, a few minutes on 2 cores: what CI runs) uses the sizes the
targets are stated for (10k pods, 10k/100k rows) with few rounds; ``--full`` adds bigger sizes
(100k rows to diff, 100k queued jobs around the 10k pods of a tick, 30k pods in memory) and
more rounds. Every figure also goes to a JSON file (``--results``, default
``.benchmarks/results.json``, next to pytest-benchmark's own files).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# The repository root on sys.path: the benchmarks share the test suite's stack fixture (for
# the end-to-end benchmarks) and its reference poller (the baseline of the tick benchmark).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _scale import squeue_output

import mobius._fast
from tests.conftest import stack  # noqa: F401


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mobius benchmarks")
    group.addoption("--quick", action="store_true", help="CI sizes and rounds (the default)")
    group.addoption("--full", action="store_true", help="full sizes and more rounds")
    group.addoption(
        "--scale",
        type=int,
        default=0,
        help="run the scale benchmark with this many pods through the stack (e.g. 10000)",
    )
    group.addoption(
        "--results",
        default=".benchmarks/results.json",
        help="where to write the JSON of results (default: %(default)s)",
    )


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    """Whether ``--full`` sizes were asked for (``--quick`` wins if both are given)."""
    return bool(request.config.getoption("--full")) and not request.config.getoption("--quick")


@pytest.fixture(scope="session")
def make_squeue_output() -> Callable[[int], str]:
    cache: dict[int, str] = {}

    def make(n: int) -> str:
        if n not in cache:
            cache[n] = squeue_output(n)
        return cache[n]

    return make


def _require() -> bool:
    return os.environ.get("MOBIUS_REQUIRE_EXTENSIONS", "") not in ("", "0")


@pytest.fixture(scope="session")
def compiled_fast() -> Callable[[str], ModuleType | None]:
    """``compiled_fast("_squeue")``: the compiled twin's module, or None if it was not built.

    None fails the benchmark instead when ``MOBIUS_REQUIRE_EXTENSIONS=1``.
    """

    def load(name: str) -> ModuleType | None:
        try:
            return importlib.import_module(f"mobius._fast.{name}")
        except ImportError as exc:
            if _require():
                pytest.fail(
                    f"MOBIUS_REQUIRE_EXTENSIONS is set but mobius._fast.{name} is not built: {exc}"
                )
            return None

    return load


_RATIOS = pytest.StashKey[dict[str, str]]()
_RESULTS = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture(scope="session")
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record(key, **figures)``: figures of one benchmark for the JSON of results."""
    results = request.config.stash.setdefault(_RESULTS, {})

    def add(key: str, **figures: Any) -> None:
        results.setdefault(key, {}).update(figures)

    return add


@pytest.fixture(scope="session")
def report_ratio(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Record one line for the end-of-session ratio report (once per key)."""
    ratios = request.config.stash.setdefault(_RATIOS, {})

    def report(key: str, line: str) -> None:
        print(line)
        ratios.setdefault(key, line)

    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    ratios = config.stash.get(_RATIOS, {})
    if ratios:
        terminalreporter.section("each figure against its baseline (same run)")
        for line in ratios.values():
            terminalreporter.write_line(line)
    results = config.stash.get(_RESULTS, {})
    if results:
        path = Path(config.getoption("--results"))
        path.parent.mkdir(parents=True, exist_ok=True)
        full = config.getoption("--full") and not config.getoption("--quick")
        machine = {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "compiled": mobius._fast.COMPILED,
        }
        document = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sizes": "full" if full else "quick",
            "machine": machine,
            "results": results,
        }
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        terminalreporter.write_line(f"results written to {path}")

