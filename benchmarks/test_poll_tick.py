"""One status poll tick with 10,000 tracked pods: the CPU a tick costs beyond the squeue call.

A ``Fleet`` (see ``_scale.py``): 10,000 pods decoded into ``PodStore``, their jobs in
``JobTable``, the squeue output listing them (half running, a third pending, a few ending) and
a real pod folder with control files for every job that ran. Between two ticks 1% of the jobs
move on (start, end, restart: new squeue state and rewritten control files), and every sent
status comes back as a new version of its pod, as the status writer and the pod watch make it
(so pods that ended leave the live set, as they do in the kubelet). A tick here is
what the poller does with squeue's output: parse it, diff it, stat / read the folders that may
have changed, recompute and fingerprint the statuses that may have changed. Its process CPU
time (all threads) is measured, the squeue subprocess being outside the process.

Baselines, in the same run: the naive tick (every live pod's folder read and status recomputed,
what the poller did before), and the same tick on the pure-Python twins. With ``--full`` the
squeue output also lists 90,000 other jobs of the same user. Target: < 50 ms per tick.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from _scale import Fleet, naive_tick, squeue_output

import mobius._fast
from mobius._fast import _diff_py, _squeue_py
from mobius.slurm import polling
from mobius.slurm.polling import StatusPoller

PODS = 10_000
WARMUP = 2  # ticks before measuring: the first reads everything, the second sees every pod's
# new version (its status was written); after them a tick sees what changed since the last one


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(PODS, tmp_path_factory.mktemp("state"))


def poller_ticks(
    fleet: Fleet,
    rounds: int,
    *,
    others: str,
    parse: Callable[[str], list],  # type: ignore[type-arg]
) -> list[float]:
    """CPU seconds of ``rounds`` steady ticks (after a first one that reads everything)."""
    poller = StatusPoller(store=fleet.store, jobs=fleet.jobs, paths=fleet.paths)
    cpu: list[float] = []

    async def run() -> None:
        for tick in range(-WARMUP, rounds + 1):
            fleet.churn(0.01)
            text = fleet.text() + others
            start = time.process_time()
            updates = await poller.tick(parse(text), began=float(tick))
            if tick > 0:
                cpu.append(time.process_time() - start)
            fleet.apply([(uid, status["phase"]) for uid, status in updates])

    trio.run(run)
    return cpu


def naive_ticks(fleet: Fleet, rounds: int, *, others: str) -> list[float]:
    sent: dict[str, bytes] = {}
    cpu = []
    for tick in range(-WARMUP, rounds + 1):
        fleet.churn(0.01)
        text = fleet.text() + others
        start = time.process_time()
        phases = naive_tick(fleet, mobius._fast.parse_squeue(text), sent, float(tick))
        if tick > 0:
            cpu.append(time.process_time() - start)
        fleet.apply(phases)
    return cpu


def test_poll_tick_10k_pods(
    fleet: Fleet,
    report_ratio: Callable[[str, str], None],
    record: Callable[..., None],
    full: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rounds = 20 if full else 8
    others = squeue_output(90_000, seed=7) if full else ""
    tick = poller_ticks(fleet, rounds, others=others, parse=mobius._fast.parse_squeue)
    naive = naive_ticks(fleet, max(3, rounds // 4), others=others)
    monkeypatch.setattr(polling, "diff_rows", _diff_py.diff_rows)
    pure = poller_ticks(fleet, rounds, others=others, parse=_squeue_py.parse_squeue)
    med, med_naive, med_pure = (statistics.median(x) * 1e3 for x in (tick, naive, pure))
    rows = PODS + (90_000 if full else 0)
    key = f"poll tick, {PODS // 1000}k pods, {rows // 1000}k rows"
    report_ratio(
        key,
        f"{key}, 1% changed: {med:6.1f} ms CPU (target < 50 ms; best {min(tick) * 1e3:.1f}); "
        f"naive {med_naive:6.1f} ms ({med_naive / med:.0f}x); pure twins {med_pure:6.1f} ms "
        f"({med_pure / med:.1f}x)",
    )
    record(
        f"poll_tick_{PODS // 1000}k_pods_{rows // 1000}k_rows",
        pods=PODS,
        rows=rows,
        changed_per_tick=PODS // 100,
        rounds=rounds,
        cpu_ms_median=round(med, 2),
        cpu_ms_best=round(min(tick) * 1e3, 2),
        naive_cpu_ms_median=round(med_naive, 2),
        pure_twins_cpu_ms_median=round(med_pure, 2),
        speedup_vs_naive=round(med_naive / med, 1),
        speedup_vs_pure_twins=round(med_pure / med, 2),
    )


def test_poll_tick_scaling(
    tmp_path: Path,
    report_ratio: Callable[[str, str], None],
    record: Callable[..., None],
    full: bool,
) -> None:
    """How a steady tick grows with the number of pods (1% changed each tick)."""
    sizes = [1_000, 3_000, 10_000] + ([30_000] if full else [])
    figures = {}
    for n in sizes:
        fleet = Fleet(n, tmp_path / str(n), seed=n)
        figures[n] = (
            statistics.median(poller_ticks(fleet, 5, others="", parse=mobius._fast.parse_squeue))
            * 1e3
        )
    per_pod_us = {n: ms * 1e3 / n for n, ms in figures.items()}
    line = ", ".join(
        f"{n // 1000}k: {ms:.1f} ms ({per_pod_us[n]:.2f} us/pod)" for n, ms in figures.items()
    )
    report_ratio("poll tick scaling", f"poll tick CPU by pods, 1% changed: {line}")
    record("poll_tick_scaling", cpu_ms_median={str(n): round(ms, 2) for n, ms in figures.items()})
