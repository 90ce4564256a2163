"""The scale run: thousands of pods through the whole stack (`pytest benchmarks/test_scale.py
--scale 10000`; skipped unless ``--scale`` is given, it takes tens of minutes on 2 cores).

Every pod sleeps for an hour and asks for four CPUs of the private cluster's 32: eight run, the
rest wait in Slurm's queue (reason Resources or Priority), the usual shape of a busy HPC queue. The
run checks what must hold at any size and reports what it costs:

- no pod lost or doubled: exactly one Slurm job per pod;
- no status wrong: every pod's phase agrees with its job's state in squeue (Running for
  RUNNING, Pending with the Slurm reason for PENDING);
- the API write rate stays bounded: status writes per pod, and per second once settled;
- the kubelet's CPU per poll tick once settled (from /proc, over a quiet minute) and its RSS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> int:
    n = request.config.getoption("--scale")
    if not n:
        pytest.skip("the scale run needs --scale N (e.g. --scale 10000)")
    return int(n)


def _pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"scale-{i}", "namespace": "default", "labels": {"bench": "scale"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "4", "memory": "32Mi"}},
                }
            ],
        },
    }


def _kubelet_metrics(stack: Stack) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for line in stack.kubelet_get("/metrics").splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[(m[1], m[2] or "")] = float(m[3])
    return out


def _patches(metrics: dict[tuple[str, str], float]) -> float:
    return sum(
        v
        for (name, labels), v in metrics.items()
        if name == "mobius_api_requests_total" and 'method="PATCH"' in labels
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _jobs(stack: Stack) -> dict[str, list[tuple[str, str]]]:
    """Job name -> [(job id, state)] of every job squeue shows."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%j|%i|%T"],
        capture_output=True,
        text=True,
        check=True,
        env=stack.slurm_env,
    ).stdout
    jobs: dict[str, list[tuple[str, str]]] = {}
    for line in out.splitlines():
        name, job_id, state = line.split("|")
        jobs.setdefault(name, []).append((job_id, state))
    return jobs


def test_scale_run(
    scale: int,  # first: without --scale, skip before the stack starts
    stack: Stack,
    record: Callable[..., None],
    report_ratio: Callable[[str, str], None],
) -> None:
    n = scale
    kubelet_pid = stack.process.pid  # `mobius up`: the kubelet runs in this process
    patches_before = _patches(_kubelet_metrics(stack))
    t0 = time.perf_counter()
    for start in range(0, n, 500):  # kubectl in chunks: one huge List takes minutes to send
        items = [_pod(i) for i in range(start, min(n, start + 500))]
        stack.kubectl(
            "create",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            timeout=900,
        )
    created = time.perf_counter() - t0

    def submitted() -> int:
        count = sum(1 for name in _jobs(stack) if name.startswith("mobius-"))
        return count if count >= n else 0

    stack.wait_for("every pod submitted", submitted, timeout=3600, interval=5)
    submit_time = time.perf_counter() - t0

    # Let statuses settle: every pod Pending or Running as its job says.
    def settled() -> dict[str, Any] | None:
        pods = stack.get_json("pods", "-l", "bench=scale")["items"]
        jobs = _jobs(stack)
        wrong, doubled = [], []
        for p in pods:
            entries = jobs.get(f"mobius-{p['metadata']['uid']}", [])
            if len(entries) != 1:
                doubled.append((p["metadata"]["name"], entries))
                continue
            state = entries[0][1]
            phase = p.get("status", {}).get("phase")
            want = {"RUNNING": "Running", "PENDING": "Pending"}.get(state)
            if want is None or phase != want:
                wrong.append((p["metadata"]["name"], state, phase))
        if len(pods) == n and not wrong and not doubled:
            return {
                "pods": len(pods),
                "running": sum(1 for p in pods if p["status"]["phase"] == "Running"),
            }
        return None

    summary = stack.wait_for("statuses to agree with squeue", settled, timeout=1800, interval=10)
    settle_time = time.perf_counter() - t0
    after_settle = _kubelet_metrics(stack)

    # A quiet minute: what the kubelet costs per tick, and how many writes it makes, when
    # nothing changes.
    cpu0, patches0, q0 = _cpu_seconds(kubelet_pid), _patches(after_settle), time.perf_counter()
    time.sleep(60)
    quiet = time.perf_counter() - q0
    cpu_per_tick_ms = (_cpu_seconds(kubelet_pid) - cpu0) / quiet * 1000  # one tick per second
    quiet_writes = _patches(_kubelet_metrics(stack)) - patches0
    rss = _rss_mb(kubelet_pid)
    writes_per_pod = (_patches(after_settle) - patches_before) / n

    # --wait=false: kubectl would otherwise wait for the pods one at a time (minutes at 10k).
    stack.kubectl(
        "delete",
        "pods",
        "-l",
        "bench=scale",
        "--force",
        "--grace-period=0",
        "--wait=false",
        timeout=3600,
    )
    t_delete = time.perf_counter()

    def all_stopped() -> bool:
        live = ("RUNNING", "PENDING", "COMPLETING", "CONFIGURING", "SUSPENDED")
        return not any(
            state in live
            for name, entries in _jobs(stack).items()
            if name.startswith("mobius-")
            for _, state in entries
        )

    stack.wait_for("every job to end", all_stopped, timeout=3600, interval=5)
    delete_time = time.perf_counter() - t_delete
    report_ratio(
        "scale",
        f"scale run, {n} pods ({summary['running']} running, rest queued): all submitted in "
        f"{submit_time:.0f} s ({n / submit_time:.0f} pods/s; kubectl create took {created:.0f} s), "
        f"statuses right after {settle_time:.0f} s; {writes_per_pod:.2f} status writes per pod; "
        f"{quiet_writes / quiet:.2f} writes/s when quiet; kubelet CPU per tick {cpu_per_tick_ms:.0f} ms; "
        f"RSS {rss:.0f} MB (whole `mobius up` process); every job ended {delete_time:.0f} s "
        "after the forced delete",
    )
    record(
        "scale_run",
        pods=n,
        running=summary["running"],
        submit_s=round(submit_time, 1),
        settle_s=round(settle_time, 1),
        status_writes_per_pod=round(writes_per_pod, 2),
        quiet_writes_per_s=round(quiet_writes / quiet, 3),
        kubelet_cpu_per_tick_ms=round(cpu_per_tick_ms, 1),
        rss_mb=round(rss, 1),
        delete_s=round(delete_time, 1),
    )
    assert summary["pods"] == n
