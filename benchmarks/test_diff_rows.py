"""How fast the poller finds what changed in squeue: compiled differ vs pure-Python twin.

``diff_rows(previous snapshot, rows)`` over 10k jobs (and 100k with ``--full``) of which 1%
changed state since the previous tick, both snapshots freshly parsed as the poller gets them.
Target: < 5 ms compiled for 10k. Same-run ratio printed; no timing assertion.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from types import ModuleType

import msgspec
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from mobius._fast import SqueueRow, _diff_py, parse_squeue

Differ = Callable[[dict[str, SqueueRow], list[SqueueRow]], tuple[dict[str, SqueueRow], list[str]]]


def changed_copy(rows: list[SqueueRow], fraction: float, seed: int = 1) -> list[SqueueRow]:
    """The next tick's rows: equal (but new) objects, ``fraction`` of them in a new state."""
    out = list(rows)
    rng = random.Random(seed)
    for i in rng.sample(range(len(rows)), int(len(rows) * fraction)):
        row = out[i]
        state = "COMPLETED" if row.state == "RUNNING" else "RUNNING"
        out[i] = msgspec.structs.replace(row, state=state)
    return out


def best_of(diff: Differ, previous: dict[str, SqueueRow], rows: list[SqueueRow], n: int) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        diff(previous, rows)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("twin", ["compiled", "pure"])
@pytest.mark.parametrize("size", [10_000, 100_000], ids=["10k", "100k"])
def test_diff_rows(
    benchmark: BenchmarkFixture,
    make_squeue_output: Callable[[int], str],
    compiled_fast: Callable[[str], ModuleType | None],
    report_ratio: Callable[[str, str], None],
    record: Callable[..., None],
    full: bool,
    twin: str,
    size: int,
) -> None:
    if size > 10_000 and not full:
        pytest.skip("100k rows with --full only")
    text = make_squeue_output(size)
    # Job names are unique in Mobius (one job per pod); the generator's array tasks are not.
    rows = [
        msgspec.structs.replace(r, name=f"mobius-{i}") for i, r in enumerate(parse_squeue(text))
    ]
    previous = _diff_py.diff_rows({}, rows)[0]
    current = changed_copy([msgspec.structs.replace(r) for r in rows], 0.01)
    twins: dict[str, Differ] = {"pure": _diff_py.diff_rows}
    module = compiled_fast("_diff")
    if module is not None:
        twins["compiled"] = module.diff_rows
    elif twin == "compiled":
        pytest.skip("mobius._fast._diff is not built")
    benchmark.group = f"diff_rows, {size // 1000}k rows, 1% changed"
    snapshot, changed = benchmark(twins[twin], previous, current)
    assert len(snapshot) == size
    assert len(changed) == size // 100
    if "compiled" in twins:
        rounds = 30 if full else 10
        compiled_s = best_of(twins["compiled"], previous, current, rounds)
        pure_s = best_of(twins["pure"], previous, current, rounds)
        key = f"diff_rows, {size // 1000:>3}k rows, 1% changed"
        report_ratio(
            key,
            f"{key}: compiled {compiled_s * 1e3:6.2f} ms (target < 5 ms at 10k), "
            f"pure {pure_s * 1e3:6.2f} ms: {pure_s / compiled_s:.1f}x faster",
        )
        record(
            f"diff_rows_{size // 1000}k",
            rows=size,
            changed=len(changed),
            compiled_ms=round(compiled_s * 1e3, 3),
            pure_ms=round(pure_s * 1e3, 3),
            speedup=round(pure_s / compiled_s, 2),
        )
