"""Deleting pods: a running job is stopped gracefully, a pending one just cancelled."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _pod(
    name: str, command: str, *, grace: int = 3, cpu: str | None = None, begin: str | None = None
) -> str:
    container: dict[str, object] = {
        "name": "main",
        "image": "busybox",
        "command": ["sh", "-c", command],
    }
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    annotations = {"slurm.mobius.io/flags": f"--begin={begin}"} if begin else {}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": grace,
                "containers": [container],
            },
        }
    )


def _slurm_jobs(stack: Stack, uid: str) -> list[str]:
    out = stack.slurm("squeue", "--noheader", "--states=all", "--format=%j|%T")
    return [line.split("|")[1] for line in out.splitlines() if line.startswith(f"mobius-{uid}|")]


def test_deleting_a_running_pod_stops_its_job(stack: Stack) -> None:
    stack.kubectl(
        "apply",
        "-f",
        "-",
        stdin=_pod("stopme", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.2; done"),
    )
    stack.wait_for(
        "stopme to run", lambda: stack.get_json("pod", "stopme")["status"].get("phase") == "Running"
    )
    uid = stack.get_json("pod", "stopme")["metadata"]["uid"]
    assert _slurm_jobs(stack, uid) == ["RUNNING"]
    stack.kubectl("delete", "pod", "stopme", "--wait=true", timeout=60)
    assert "stopme" not in stack.kubectl("get", "pods", "-o", "name")
    states = _slurm_jobs(stack, uid)
    assert all(s not in ("RUNNING", "PENDING") for s in states), states


def test_deleting_a_pending_pod_cancels_its_job(stack: Stack) -> None:
    # Asks Slurm to start it in an hour: the job stays PENDING (BeginTime).
    stack.kubectl("apply", "-f", "-", stdin=_pod("waiter", "sleep 100", begin="now+1hour"))
    stack.wait_for(
        "waiter's job to be pending",
        lambda: "PENDING" in (stack.get_json("pod", "waiter")["status"].get("message") or ""),
    )
    pod = stack.get_json("pod", "waiter")
    assert pod["status"]["phase"] == "Pending"
    uid = pod["metadata"]["uid"]
    stack.kubectl("delete", "pod", "waiter", "--wait=true", timeout=60)
    assert _slurm_jobs(stack, uid) in ([], ["CANCELLED"])
