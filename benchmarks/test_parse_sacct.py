"""How fast the poller reads sacct output: compiled twin vs pure-Python twin.

``sacct --parsable2 --allocations --format=SACCT_FORMAT`` for 10k and 100k jobs that left
squeue (``_slurm_outputs.sacct_output``: mostly ended, with exit codes, ``CANCELLED by <uid>``,
array tasks and het components). pytest-benchmark groups both twins per size; each test also
times both twins itself, interleaved in the same run, and prints the ratio (collected again in
the session summary). No timing assertions: machines differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from types import ModuleType

import pytest
from _slurm_outputs import sacct_output
from pytest_benchmark.fixture import BenchmarkFixture

from mobius._fast import SacctRow, _sacct_py

Parser = Callable[[str], list[SacctRow]]

SIZES = {10_000: "10k", 100_000: "100k"}


@cache
def output(n: int) -> str:
    return sacct_output(n)


def timed(parse: Parser, text: str) -> float:
    start = time.perf_counter()
    rows = parse(text)
    elapsed = time.perf_counter() - start
    del rows  # freed outside the timed part, as benchmark() does with its result
    return elapsed


@cache
def same_run_times(compiled: Parser, text: str) -> tuple[float, float]:
    """Best-of-rounds times of both twins on ``text``, interleaved."""
    rounds = max(5, 500_000 // (text.count("\n") or 1))
    compiled_s = pure_s = float("inf")
    for _ in range(rounds):
        compiled_s = min(compiled_s, timed(compiled, text))
        pure_s = min(pure_s, timed(_sacct_py.parse_sacct, text))
    return compiled_s, pure_s


def ratio_line(compiled_s: float, pure_s: float) -> str:
    return (
        f"compiled {compiled_s * 1e3:7.2f} ms, pure {pure_s * 1e3:7.2f} ms: "
        f"compiled/pure = {compiled_s / pure_s:.2f} ({pure_s / compiled_s:.1f}x faster)"
    )


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES.values()))
@pytest.mark.parametrize("twin", ["compiled", "pure"])
def test_parse_sacct(
    benchmark: BenchmarkFixture,
    compiled_fast: Callable[[str], ModuleType | None],
    report_ratio: Callable[[str, str], None],
    record: Callable[..., None],
    twin: str,
    size: int,
) -> None:
    text = output(size)
    key = f"parse_sacct,  {SIZES[size]:>4} rows"
    twins: dict[str, Parser] = {"pure": _sacct_py.parse_sacct}
    module = compiled_fast("_sacct")
    if module is not None:
        twins["compiled"] = module.parse_sacct
    else:
        report_ratio(key, f"{key}: compiled twin not built, no ratio")
        if twin == "compiled":
            pytest.skip("mobius._fast._sacct is not built")
    benchmark.group = f"parse_sacct, {SIZES[size]} rows"
    rows = benchmark(twins[twin], text)
    assert len(rows) == size
    if "compiled" in twins:
        compiled_s, pure_s = same_run_times(twins["compiled"], text)
        report_ratio(key, f"{key}: {ratio_line(compiled_s, pure_s)}")
        record(
            f"parse_sacct_{SIZES[size]}",
            rows=size,
            compiled_ms=round(compiled_s * 1e3, 3),
            pure_ms=round(pure_s * 1e3, 3),
            speedup=round(pure_s / compiled_s, 2),
        )
