"""Usage and metrics end to end: `kubectl top pod` through the real API server (metrics.k8s.io
served by the kubelet behind the aggregation layer); the kubelet's /stats/summary,
/metrics/resource and /pods, and Mobius's own Prometheus metrics, read from the kubelet port as
metrics-server and Prometheus read them (with a client certificate). The stack's node address is
loopback, which the API server's node proxy refuses to reach."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _busy_pod(stack: Stack, name: str) -> None:
    stack.kubectl(
        "run",
        name,
        "--image=busybox",
        "--restart=Never",
        "--labels=app=busy",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    )
    stack.wait_for(
        f"{name} running",
        lambda: stack.get_json("pod", name).get("status", {}).get("phase") == "Running",
    )


def _top(stack: Stack, name: str) -> tuple[int, int] | None:
    """(millicores, MiB) from `kubectl top pod`, once the metrics API answers with a sample."""
    out = stack.kubectl("top", "pod", name, "--no-headers", check=False)
    m = re.match(rf"^{name}\s+(\d+)m\s+(\d+)Mi", out.strip())
    return (int(m[1]), int(m[2])) if m else None


def test_kubectl_top_and_the_kubelet_stats(stack: Stack) -> None:
    _busy_pod(stack, "busy")
    try:
        cpu, _ = stack.wait_for(
            "kubectl top pod busy with CPU in use",
            lambda: (t := _top(stack, "busy")) and t[0] > 0 and t,
            timeout=180,
            interval=2,
        )
        assert cpu > 0
        listed = stack.kubectl("top", "pod", "-l", "app=busy", "--no-headers")
        assert listed.split()[0] == "busy"
        node = stack.kubectl("top", "node", "--no-headers", check=False)
        assert node.startswith("mobius")

        summary = json.loads(stack.kubelet_get("/stats/summary"))
        (pod,) = [p for p in summary["pods"] if p["podRef"]["name"] == "busy"]
        assert pod["cpu"]["usageCoreNanoSeconds"] > 0
        assert pod["memory"]["workingSetBytes"] > 0
        assert [c["name"] for c in pod["containers"]] == ["busy"]

        text = stack.kubelet_get("/metrics/resource")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = [
            s
            for s in families["container_cpu_usage_seconds"].samples
            if s.labels["pod"] == "busy" and s.name.endswith("_total")
        ]
        assert samples
        assert samples[0].value > 0

        pods = json.loads(stack.kubelet_get("/pods"))
        assert "busy" in {p["metadata"]["name"] for p in pods["items"]}
    finally:
        stack.kubectl("delete", "pod", "busy", "--grace-period=1", "--wait=false", check=False)


def test_own_prometheus_metrics(stack: Stack) -> None:
    stack.kubectl("run", "counted", "--image=busybox", "--restart=Never", "--", "true")
    stack.wait_for(
        "counted to succeed",
        lambda: stack.get_json("pod", "counted").get("status", {}).get("phase") == "Succeeded",
    )
    text = stack.kubelet_get("/metrics")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("mobius_pods", (("phase", "Succeeded"),))] >= 1
    assert values[("mobius_pods_submitted_total", ())] >= 1
    assert values[("mobius_slurm_command_duration_seconds_count", (("command", "sbatch"),))] >= 1
    assert values[("mobius_slurm_command_duration_seconds_count", (("command", "squeue"),))] >= 1
    assert ("mobius_queue_depth", (("queue", "status-updates"),)) in values
    posts = [
        v
        for (name, labels), v in values.items()
        if name == "mobius_api_requests_total" and ("method", "POST") in labels
    ]
    assert sum(posts) >= 1
    stack.kubectl("delete", "pod", "counted", "--wait=false", check=False)


def test_metrics_need_rights(stack: Stack) -> None:
    """A user without rights gets no pod metrics (the kubelet's own check of a proxied identity
    is covered in tests/kubelet/test_auth.py, its refusals of other users in test_logs.py)."""
    out = subprocess.run(
        [str(stack.kubectl_path), f"--kubeconfig={stack.kubeconfig}", "top", "pod", "--as=nobody"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "forbidden" in out.stderr.lower()
