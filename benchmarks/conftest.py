"""Benchmark fixtures: synthetic squeue output, and the same-run ratio report.

``pytest benchmarks/`` runs from the repository root (pyproject's ``testpaths`` only names
``tests``). Every benchmark measures its baseline in the same run and the ratios are printed
at the end of the session, whatever pytest-benchmark's own table shows.
"""

from __future__ import annotations

import importlib
import os
import random
import uuid
from collections.abc import Callable
from types import ModuleType

import pytest

_STATES = (
    # (state, weight)
    ("RUNNING", 50),
    ("PENDING", 35),
    ("COMPLETING", 4),
    ("COMPLETED", 4),
    ("CANCELLED", 3),
    ("FAILED", 2),
    ("TIMEOUT", 1),
    ("CONFIGURING", 1),
)
_PENDING_REASONS = (
    "Priority",
    "Priority",
    "Priority",
    "Resources",
    "Resources",
    "Dependency",
    "BeginTime",
    "QOSMaxJobsPerUserLimit",
    "ReqNodeNotAvail, UnavailableNodes:gpu[003,017-020]",
    "(null)",
)
_ENDED_REASONS = ("None", "NonZeroExitCode", "TimeLimit", "(null)")


def squeue_output(n: int, *, seed: int = 0) -> str:
    """What ``squeue --noheader --format=SQUEUE_FORMAT`` prints for ``n`` jobs.

    A realistic mix: mostly RUNNING (node lists, start and end times) and PENDING (a reason,
    start time N/A or an estimate, no nodes), a few finishing or finished ones; some array
    tasks (``123_4``), pending array ranges (``123_[5-99%10]``) and het-job components
    (``77+1``). Names are 36-character UUIDs, as Mobius names its jobs after pod UIDs.
    """
    rng = random.Random(seed)
    states = [state for state, _ in _STATES]
    weights = [weight for _, weight in _STATES]
    base = 4_000_000
    lines = []
    for i in range(n):
        job = base + i
        kind = rng.random()
        if kind < 0.05:
            job_id = f"{base - 1000}_{i % 1000}"
        elif kind < 0.06:
            job_id = f"{base - 2000}_[{i % 50}-{i % 50 + 49}%10]"
        elif kind < 0.07:
            job_id = f"{job}+{i % 3}"
        else:
            job_id = str(job)
        state = rng.choices(states, weights)[0]
        if job_id.endswith("]"):
            state = "PENDING"
        day, hour, minute = 1 + i % 28, rng.randrange(24), rng.randrange(60)
        start = f"2024-06-{day:02d}T{hour:02d}:{minute:02d}:{rng.randrange(60):02d}"
        end = f"2024-06-{day + 1:02d}T{hour:02d}:{minute:02d}:00"
        if state == "PENDING":
            reason = rng.choice(_PENDING_REASONS)
            nodes = ""
            if reason not in ("Resources", "Priority"):
                start = end = "N/A"
        elif state in ("RUNNING", "COMPLETING", "CONFIGURING"):
            reason = "None"
            first = rng.randrange(1, 500)
            count = rng.choice((1, 1, 1, 2, 4, 16))
            nodes = (
                f"node{first:03d}" if count == 1 else f"node[{first:03d}-{first + count - 1:03d}]"
            )
        else:
            reason = rng.choice(_ENDED_REASONS)
            nodes = f"node{rng.randrange(1, 500):03d}"
        name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        lines.append(f"{job_id}|{state}|{reason}|{start}|{end}|{nodes}|{name}\n")
    return "".join(lines)


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
        terminalreporter.section("compiled vs pure (same run, best of several rounds)")
        for line in ratios.values():
            terminalreporter.write_line(line)
