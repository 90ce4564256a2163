"""End to end through the real stack (API server, kube-controller-manager, private Slurm, podman).

- Submit throughput: N pods created at once, pods/s until every one has its Slurm job, against
  a bare `sbatch` loop of the same job scripts in the same run (target >= 0.8x the bare rate).
  Both kinds of job ask Slurm to start in an hour, so only submission is measured.
- Start latency: create -> Running as a client sees it, one pod at a time, p50 and p99, against
  the same job script submitted with bare `sbatch` -> its container started (the script's own
  control file), in the same run (target: p50 overhead <= 0.3 s, p99 <= 1 s).

Sizes: quick 200 pods / 20 starts; --full 1,000 pods / 50 starts.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from mobius.models import Pod
from mobius.pods.script import render_job
from mobius.runtime import Podman
from tests.conftest import Stack  # the `stack` fixture comes through benchmarks/conftest.py

pytestmark = pytest.mark.e2e

LATER = {"slurm.mobius.io/flags": "--begin=now+1hour"}


def _pod(name: str, command: str, annotations: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"bench": "stack"},
            "annotations": annotations or {},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}],
        },
    }


def _our_jobs(stack: Stack) -> int:
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%j"],
        capture_output=True,
        text=True,
        check=True,
        env=stack.slurm_env,
    ).stdout
    return sum(1 for name in out.split() if name.startswith("mobius-"))


def _cleanup(stack: Stack) -> None:
    stack.kubectl("delete", "pods", "-l", "bench=stack", "--force", "--grace-period=0", timeout=300)
    subprocess.run(["scancel", "--name=bench-bare"], env=stack.slurm_env, check=False)


def _bare_script(
    tmp: Path, i: int, command: str, annotations: dict[str, str] | None = None
) -> tuple[Path, list[str]]:
    pod = msgspec.convert(
        {
            **_pod(f"bare-{i}", command, annotations),
            "metadata": {
                "name": f"bare-{i}",
                "namespace": "default",
                "uid": f"bare-{i}",
                "annotations": annotations or {},
            },
        },
        Pod,
    )
    pod_dir = tmp / f"bare-{i}"
    (pod_dir / "logs").mkdir(parents=True)
    job = render_job(pod, pod_dir=str(pod_dir), runtime=Podman(global_flags=("--log-level=error",)))
    script = pod_dir / "job.sh"
    script.write_text(job.script)
    args = [
        a if not a.startswith("--job-name=") else "--job-name=bench-bare" for a in job.sbatch_args
    ]
    return script, args


def test_submit_throughput(
    stack: Stack,
    full: bool,
    tmp_path: Path,
    record: Callable[..., None],
    report_ratio: Callable[[str, str], None],
) -> None:
    n = 1000 if full else 200
    # Bare: the same scripts, sbatch one after another.
    scripts = [_bare_script(tmp_path, i, "true", LATER) for i in range(n)]
    t0 = time.perf_counter()
    for script, args in scripts:
        subprocess.run(
            ["sbatch", *args, str(script)], env=stack.slurm_env, check=True, capture_output=True
        )
    bare_rate = n / (time.perf_counter() - t0)
    subprocess.run(["scancel", "--name=bench-bare"], env=stack.slurm_env, check=False)

    before = _our_jobs(stack)
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [_pod(f"tp-{i}", "true", LATER) for i in range(n)],
    }
    t0 = time.perf_counter()
    stack.kubectl("create", "-f", "-", stdin=json.dumps(manifest), timeout=600)
    stack.wait_for(
        "every pod submitted", lambda: _our_jobs(stack) - before >= n, timeout=900, interval=0.2
    )
    mobius_rate = n / (time.perf_counter() - t0)
    _cleanup(stack)
    ratio = mobius_rate / bare_rate
    report_ratio(
        "submit",
        f"submit throughput, {n} pods: Mobius {mobius_rate:.0f} pods/s vs bare sbatch "
        f"loop {bare_rate:.0f} jobs/s = {ratio:.2f}x (target >= 0.8x)",
    )
    record(
        "submit_throughput",
        pods=n,
        mobius_per_s=round(mobius_rate, 1),
        bare_per_s=round(bare_rate, 1),
        ratio=round(ratio, 3),
    )


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def test_start_latency(
    stack: Stack,
    full: bool,
    tmp_path: Path,
    record: Callable[..., None],
    report_ratio: Callable[[str, str], None],
) -> None:
    n = 50 if full else 20
    bare: list[float] = []
    for i in range(n):
        script, args = _bare_script(tmp_path, i, "sleep 1")
        t0 = time.time()
        subprocess.run(
            ["sbatch", *args, str(script)], env=stack.slurm_env, check=True, capture_output=True
        )
        started = script.parent / "ctl" / "c" / "main.started"
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        # The control file has one-second resolution: use its mtime (ns) instead.
        bare.append(started.stat().st_mtime - t0)

    ours: list[float] = []
    for i in range(n):
        t0 = time.time()
        stack.kubectl("create", "-f", "-", stdin=json.dumps(_pod(f"lat-{i}", "sleep 1")))
        while True:
            out = stack.kubectl("get", "pod", f"lat-{i}", "-o", "jsonpath={.status.phase}")
            if out in ("Running", "Succeeded", "Failed"):
                break
            time.sleep(0.02)
        ours.append(time.time() - t0)
    _cleanup(stack)
    p50, p99 = statistics.median(ours), _percentile(ours, 0.99)
    b50, b99 = statistics.median(bare), _percentile(bare, 0.99)
    report_ratio(
        "latency",
        f"start latency over {n} pods: Mobius p50 {p50:.2f}s p99 {p99:.2f}s vs bare sbatch "
        f"p50 {b50:.2f}s p99 {b99:.2f}s: overhead p50 {p50 - b50:+.2f}s p99 {p99 - b99:+.2f}s "
        f"(targets <= 0.3 s, <= 1 s)",
    )
    record(
        "start_latency",
        pods=n,
        mobius_p50=round(p50, 3),
        mobius_p99=round(p99, 3),
        bare_p50=round(b50, 3),
        bare_p99=round(b99, 3),
        when=datetime.now().isoformat(timespec="seconds"),
    )
