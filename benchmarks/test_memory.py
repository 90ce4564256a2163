"""Memory of a kubelet tracking many pods: RSS growth from 1k to 10k pods (30k with --full).

Each size runs in a fresh interpreter (``_scale.py memory N DIR``): it measures its RSS, decodes
N realistic pods (``_scale.pod_json``) into ``mobius.models.Pod`` as the pod watch does, fills
the ``PodStore`` and ``JobTable``, gives 10% of the jobs a running job's control files (most
jobs pending, held by Slurm limits), runs three poller ticks over the squeue output and applies
the sent statuses as new pod versions, then measures its RSS again. Target: <= 250 MB at 10k
pods; per-pod bytes are the slope between the sizes. The baseline is the same process before it
tracks anything (the interpreter and the imported kubelet).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

MB = 1024 * 1024


def probe(n: int, state_dir: Path) -> dict[str, int]:
    script = Path(__file__).with_name("_scale.py")
    done = subprocess.run(
        [sys.executable, str(script), "memory", str(n), str(state_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


def test_rss_by_pods(
    tmp_path: Path,
    report_ratio: Callable[[str, str], None],
    record: Callable[..., None],
    full: bool,
) -> None:
    sizes = [1_000, 10_000] + ([30_000] if full else [])
    runs = {n: probe(n, tmp_path / str(n)) for n in sizes}
    growth = {n: r["rss_after"] - r["rss_before"] for n, r in runs.items()}
    per_pod = (growth[10_000] - growth[1_000]) / 9_000
    line = ", ".join(
        f"{n // 1000}k pods: RSS {runs[n]['rss_after'] / MB:.0f} MB (+{growth[n] / MB:.0f} MB)"
        for n in sizes
    )
    report_ratio(
        "memory",
        f"memory: {line}; {per_pod / 1024:.1f} KiB per pod (1k -> 10k); "
        f"baseline process {runs[1_000]['rss_before'] / MB:.0f} MB (target <= 250 MB at 10k)",
    )
    record(
        "memory",
        rss_mb={str(n): round(r["rss_after"] / MB, 1) for n, r in runs.items()},
        growth_mb={str(n): round(g / MB, 1) for n, g in growth.items()},
        baseline_mb=round(runs[1_000]["rss_before"] / MB, 1),
        bytes_per_pod=round(per_pod),
    )
    assert all(g > 0 for g in growth.values())
