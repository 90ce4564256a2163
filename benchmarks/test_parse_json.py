"""What reading squeue as JSON would cost the poller: ``squeue --json`` vs the text it parses.

The same jobs (``_scale.squeue_output``) as text and as the ``squeue --json`` of Slurm 24.05
(``_slurm_outputs.squeue_json_output``: every field, pretty-printed, as Slurm writes it), turned
into the same ``SqueueRow`` list by: the compiled text parser, its pure-Python twin, the msgspec
JSON decoder (``mobius._fast.parse_squeue_json``) and, at 10k rows, its stdlib reference
(``_slurm_json_py``). pytest-benchmark groups them per size; each test also times all of them
interleaved in the same run and prints the ratios against the compiled text parser (collected
again in the session summary). No timing assertions: machines differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import cache
from types import ModuleType

import pytest
from _scale import squeue_output
from _slurm_outputs import squeue_json_output
from pytest_benchmark.fixture import BenchmarkFixture

from mobius._fast import SqueueRow, _slurm_json, _slurm_json_py, _squeue_py

SIZES = {10_000: "10k", 100_000: "100k"}
PATHS = ["text-compiled", "text-pure", "json-msgspec", "json-stdlib"]
STDLIB_MAX = 10_000  # json.loads of 800 MB and the walk over it take too long to repeat


@pytest.fixture(scope="module")
def outputs() -> Iterator[Callable[[int], tuple[str, bytes]]]:
    """``outputs(n)``: the text and the JSON of n jobs, made once per module (then freed:
    100k jobs are about 800 MB of JSON)."""
    made: dict[int, tuple[str, bytes]] = {}

    def get(n: int) -> tuple[str, bytes]:
        if n not in made:
            made[n] = (squeue_output(n), squeue_json_output(n))
        return made[n]

    yield get
    made.clear()
    same_run_times.cache_clear()


def parsers(compiled: ModuleType | None) -> dict[str, Callable[[str, bytes], list[SqueueRow]]]:
    found: dict[str, Callable[[str, bytes], list[SqueueRow]]] = {
        "text-pure": lambda text, _: _squeue_py.parse_squeue(text),
        "json-msgspec": lambda _, data: _slurm_json.parse_squeue_json(data, now=0),
        "json-stdlib": lambda _, data: _slurm_json_py.parse_squeue_json(data, now=0),
    }
    if compiled is not None:
        found["text-compiled"] = lambda text, _: compiled.parse_squeue(text)
    return found


def timed(parse: Callable[[str, bytes], list[SqueueRow]], text: str, data: bytes) -> float:
    start = time.perf_counter()
    rows = parse(text, data)
    elapsed = time.perf_counter() - start
    del rows  # freed outside the timed part, as benchmark() does with its result
    return elapsed


@cache
def same_run_times(compiled: ModuleType, text: str, data: bytes) -> dict[str, float]:
    """Best-of-rounds times of every path on the same jobs, interleaved."""
    n = text.count("\n")
    rounds = max(5, 500_000 // n)
    best = dict.fromkeys(PATHS, float("inf"))
    paths = parsers(compiled)
    for i in range(rounds):
        for path, parse in paths.items():
            if path == "json-stdlib" and (n > STDLIB_MAX or i >= 3):
                continue
            best[path] = min(best[path], timed(parse, text, data))
    return best


def ratio_line(best: dict[str, float], text: str, data: bytes) -> str:
    base = best["text-compiled"]
    parts = [f"text compiled {base * 1e3:7.2f} ms"]
    for path, label in [("text-pure", "text pure"), ("json-msgspec", "msgspec JSON"),
                        ("json-stdlib", "stdlib JSON")]:  # fmt: skip
        if best[path] != float("inf"):
            parts.append(f"{label} {best[path] * 1e3:8.2f} ms ({best[path] / base:.1f}x)")
    sizes = f"[{len(data) / 2**20:.0f} MB JSON, {len(text) / 2**20:.1f} MB text]"
    return ", ".join(parts) + " " + sizes


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES.values()))
@pytest.mark.parametrize("path", PATHS)
def test_parse_squeue_json(
    benchmark: BenchmarkFixture,
    outputs: Callable[[int], tuple[str, bytes]],
    compiled_fast: Callable[[str], ModuleType | None],
    report_ratio: Callable[[str, str], None],
    record: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    size: int,
) -> None:
    if path == "json-stdlib" and size > STDLIB_MAX:
        pytest.skip(f"the stdlib reference is timed up to {STDLIB_MAX} rows")
    text, data = outputs(size)
    key = f"squeue text vs JSON, {SIZES[size]:>4} rows"
    module = compiled_fast("_squeue")
    paths = parsers(module)
    if module is None:
        report_ratio(key, f"{key}: compiled twin not built, no ratio")
        if path == "text-compiled":
            pytest.skip("mobius._fast._squeue is not built")
    benchmark.group = f"squeue text vs JSON, {SIZES[size]} rows"
    rows = benchmark(paths[path], text, data)
    assert len(rows) == size
    if path.startswith("json"):  # the same rows as the text, but for the ids %A would print
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        try:
            again = paths[path](text, data)
        finally:
            monkeypatch.undo()
            time.tzset()
        by_text = _squeue_py.parse_squeue(text)
        assert [r.name for r in again] == [r.name for r in by_text]
        assert [(r.state, r.reason, r.start, r.end, r.nodes) for r in again] == [
            (r.state, r.reason, r.start, r.end, r.nodes) for r in by_text
        ]
    if module is not None:
        best = same_run_times(module, text, data)
        report_ratio(key, f"{key}: {ratio_line(best, text, data)}")
        record(
            f"parse_squeue_json_{SIZES[size]}",
            rows=size,
            json_mb=round(len(data) / 2**20, 1),
            text_mb=round(len(text) / 2**20, 2),
            **{
                f"{p.replace('-', '_')}_ms": round(best[p] * 1e3, 3)
                for p in PATHS
                if best[p] != float("inf")
            },
        )
