"""Both twins of every ``mobius._fast`` parser, for tests that must hold for each.

The compiled twin is skipped when it was not built, unless ``MOBIUS_REQUIRE_EXTENSIONS=1``
(CI, release builds): then a missing extension fails the tests instead of hiding.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType

import pytest

from mobius._fast import (
    SacctRow,
    SqueueRow,
    _diff_py,
    _sacct_py,
    _slurm_json,
    _slurm_json_py,
    _squeue_py,
)

Parser = Callable[[str], list[SqueueRow]]
SacctParser = Callable[[str], list[SacctRow]]
Differ = Callable[[dict[str, SqueueRow], list[SqueueRow]], tuple[dict[str, SqueueRow], list[str]]]


def extensions_required() -> bool:
    return os.environ.get("MOBIUS_REQUIRE_EXTENSIONS", "") not in ("", "0")


def compiled_module(name: str) -> ModuleType:
    """The compiled twin ``mobius._fast.<name>``: skips, or fails if extensions are required."""
    try:
        return importlib.import_module(f"mobius._fast.{name}")
    except ImportError as exc:
        if extensions_required():
            pytest.fail(
                f"MOBIUS_REQUIRE_EXTENSIONS is set but mobius._fast.{name} is not built: {exc}"
            )
        pytest.skip(f"mobius._fast.{name} is not built: {exc}")


@pytest.fixture(scope="session")
def compiled_parser() -> Parser:
    parse: Parser = compiled_module("_squeue").parse_squeue
    return parse


@pytest.fixture(scope="session", params=["python", "compiled"])
def parser(request: pytest.FixtureRequest) -> Parser:
    """``parse_squeue`` of each twin (session-scoped, so hypothesis may use it too)."""
    if request.param == "python":
        return _squeue_py.parse_squeue
    parse: Parser = compiled_module("_squeue").parse_squeue
    return parse


@pytest.fixture(scope="session")
def compiled_differ() -> Differ:
    diff: Differ = compiled_module("_diff").diff_rows
    return diff


@pytest.fixture(scope="session", params=["python", "compiled"])
def differ(request: pytest.FixtureRequest) -> Differ:
    """``diff_rows`` of each twin (session-scoped, so hypothesis may use it too)."""
    if request.param == "python":
        return _diff_py.diff_rows
    diff: Differ = compiled_module("_diff").diff_rows
    return diff


@pytest.fixture(scope="session")
def compiled_sacct_parser() -> SacctParser:
    parse: SacctParser = compiled_module("_sacct").parse_sacct
    return parse


@pytest.fixture(scope="session", params=["python", "compiled"])
def sacct_parser(request: pytest.FixtureRequest) -> SacctParser:
    """``parse_sacct`` of each twin (session-scoped, so hypothesis may use it too)."""
    if request.param == "python":
        return _sacct_py.parse_sacct
    parse: SacctParser = compiled_module("_sacct").parse_sacct
    return parse


@pytest.fixture(scope="session", params=["python", "msgspec"])
def json_twin(request: pytest.FixtureRequest) -> ModuleType:
    """The ``--json`` decoders of each twin: the stdlib reference and msgspec."""
    return _slurm_json_py if request.param == "python" else _slurm_json
