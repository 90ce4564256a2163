"""kill -9 of the kubelet in the middle of a burst of 50 pods, then a restart.

Every pod must reach its right final phase and Slurm must hold exactly one job per pod: nothing
lost, nothing submitted twice. The kubelet runs as its own process (node ``mobius-k9``) so it
can be killed for real.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobius.controlplane import free_port, issue_kubelet_serving_cert
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

NODE = "mobius-k9"
COUNT = 50


class Kubelet:
    def __init__(self, stack: Stack, state_dir: Path):
        pki = stack.home / "controlplane" / "pki"
        cert, key = issue_kubelet_serving_cert(pki, NODE, ips=["127.0.0.1"])
        self.argv = [
            sys.executable,
            "-m",
            "mobius",
            "kubelet",
            "--kubeconfig",
            str(stack.kubeconfig),
            "--node-name",
            NODE,
            "--state-dir",
            str(state_dir),
            "--address",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--serving-cert",
            str(cert),
            "--serving-key",
            str(key),
            "--client-ca",
            str(pki / "ca.crt"),
            "--slurm-conf",
            str(stack.home / "slurm" / "slurm.conf"),
            "--poll-interval",
            "0.5",
        ]
        self.log = state_dir.parent / "kubelet.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def kubelet(stack: Stack, tmp_path: Path) -> Iterator[Kubelet]:
    k = Kubelet(stack, tmp_path / "state")
    yield k
    k.stop()


def _pod(i: int) -> dict:  # type: ignore[type-arg]
    code = 3 if i % 5 == 0 else 0
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"burst-{i}", "namespace": "default", "labels": {"test": "kill9"}},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sh", "-c", f"sleep 1; echo pod {i}; exit {code}"],
                }
            ],
        },
    }


def test_kill9_during_a_burst_loses_and_duplicates_nothing(stack: Stack, kubelet: Kubelet) -> None:
    kubelet.start()
    manifest = {"apiVersion": "v1", "kind": "List", "items": [_pod(i) for i in range(COUNT)]}
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(manifest), timeout=120)

    def submitted() -> int:
        return sum(1 for name in stack.jobs_by_name() if name.startswith("mobius-"))

    before = submitted()
    # Kill it mid-burst: some pods submitted, most not yet.
    stack.wait_for(
        "the burst to start", lambda: submitted() - before >= 5, timeout=120, interval=0.05
    )
    kubelet.kill9()
    at_kill = submitted() - before
    print(f"kill -9 after {at_kill} of {COUNT} submissions")
    time.sleep(1)
    kubelet.start()

    def phases() -> dict[str, str]:
        pods = json.loads(stack.kubectl("get", "pods", "-l", "test=kill9", "-o", "json"))["items"]
        return {p["metadata"]["name"]: p["status"].get("phase", "") for p in pods}

    final = stack.wait_for(
        "every pod to end",
        lambda: (p := phases()) and all(v in ("Succeeded", "Failed") for v in p.values()) and p,
        timeout=300,
        interval=1,
    )
    expected = {f"burst-{i}": ("Failed" if i % 5 == 0 else "Succeeded") for i in range(COUNT)}
    assert final == expected
    pods = json.loads(stack.kubectl("get", "pods", "-l", "test=kill9", "-o", "json"))["items"]
    jobs = stack.jobs_by_name()
    for pod in pods:
        name = f"mobius-{pod['metadata']['uid']}"
        assert len(jobs.get(name, [])) == 1, f"{pod['metadata']['name']}: jobs {jobs.get(name)}"
        (cs,) = pod["status"]["containerStatuses"]
        assert cs["state"]["terminated"]["exitCode"] == (
            3 if pod["metadata"]["name"] in {f"burst-{i}" for i in range(0, COUNT, 5)} else 0
        )
    stack.kubectl("delete", "pods", "-l", "test=kill9", "--wait=false")
