"""How a job ends in Slurm decides how its pod ends: real jobs, real limits, real scancel."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

TRAP = "trap 'echo got TERM; exit 143' TERM; echo started; while :; do sleep 0.2; done"


def _apply(
    stack: Stack,
    name: str,
    command: str,
    *,
    annotations: dict[str, str] | None = None,
    **spec: object,
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}],
            **spec,
        },
    }
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(pod))


def _failed(stack: Stack, name: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    def done() -> dict | None:  # type: ignore[type-arg]
        status = stack.get_json("pod", name)["status"]
        return status if status.get("phase") in ("Failed", "Succeeded") else None

    status: dict = stack.wait_for(f"{name} to end", done, timeout=timeout)  # type: ignore[type-arg]
    assert status["phase"] == "Failed", status
    return status


def test_active_deadline_fails_the_pod_as_kubernetes_does(stack: Stack) -> None:
    _apply(stack, "deadline", "sleep 300", activeDeadlineSeconds=5)
    status = _failed(stack, "deadline")
    assert status["reason"] == "DeadlineExceeded"
    assert "deadline" in status["message"]
    uid = stack.get_json("pod", "deadline")["metadata"]["uid"]

    def job_ended() -> list[str] | None:
        out = stack.slurm("squeue", "-h", "--states=all", "-n", f"mobius-{uid}", "-o", "%T")
        states = out.split()
        ended = states and all(s not in ("RUNNING", "PENDING", "COMPLETING") for s in states)
        return states if ended else None

    # The job is stopped with the pod's grace period (2 s), and its sandbox removed.
    stack.wait_for("the deadline job to end", job_ended, timeout=60)
    sandboxes = subprocess.run(
        ["podman", "pod", "ps", "-q", "--filter", f"name=mobius-{uid}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"},
    ).stdout
    assert sandboxes.strip() == ""
    stack.kubectl("delete", "pod", "deadline", "--wait=false")


def test_slurm_time_limit_gives_the_containers_their_grace_then_timeout(stack: Stack) -> None:
    # Slurm keeps time limits in whole minutes: "0:10" becomes one minute.
    _apply(stack, "limited", TRAP, annotations={"slurm.mobius.io/time": "0:10"})
    status = _failed(stack, "limited", timeout=180)
    uid = stack.get_json("pod", "limited")["metadata"]["uid"]
    assert status.get("reason") == "DeadlineExceeded", status
    assert "time limit" in status["message"]
    assert stack.slurm(
        "squeue", "-h", "--states=all", "-n", f"mobius-{uid}", "-o", "%T"
    ).split() == ["TIMEOUT"]
    assert stack.kubectl("logs", "limited") == "started\ngot TERM\n"
    stack.kubectl("delete", "pod", "limited", "--wait=false")


def test_scancel_from_outside_fails_the_pod_with_a_clear_reason(stack: Stack) -> None:
    _apply(stack, "cancelled", TRAP)
    stack.wait_for(
        "cancelled to run",
        lambda: stack.get_json("pod", "cancelled")["status"].get("phase") == "Running",
    )
    uid = stack.get_json("pod", "cancelled")["metadata"]["uid"]
    job_id = stack.slurm("squeue", "-h", "-n", f"mobius-{uid}", "-o", "%i").strip()
    stack.slurm("scancel", job_id)
    status = _failed(stack, "cancelled")
    assert status["reason"] == "SlurmJobCancelled", status
    assert job_id in status["message"]
    stack.kubectl("delete", "pod", "cancelled", "--wait=false")


def test_a_pod_that_can_never_fit_stays_pending_with_a_reason(stack: Stack) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "huge"},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "4000"}}}
            ]
        },
    }
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(pod))

    def unschedulable() -> dict | None:  # type: ignore[type-arg]
        conds = stack.get_json("pod", "huge")["status"].get("conditions", [])
        return next(
            (c for c in conds if c["type"] == "PodScheduled" and c["status"] == "False"), None
        )

    cond = stack.wait_for("huge to be unschedulable", unschedulable, timeout=60)
    assert cond["reason"] == "Unschedulable"
    assert "4000 CPUs" in cond["message"]
    pod_now = stack.get_json("pod", "huge")
    assert pod_now["status"]["phase"] == "Pending"
    assert not pod_now["spec"].get("nodeName")
    assert "FailedScheduling" in stack.kubectl(
        "get", "events", "--field-selector=involvedObject.name=huge"
    )
    stack.kubectl("delete", "pod", "huge", "--wait=false")


def test_invalid_annotation_fails_the_pod_naming_the_flag(stack: Stack) -> None:
    _apply(stack, "badflag", "true", annotations={"slurm.mobius.io/flags": "--output=/etc/passwd"})
    status = _failed(stack, "badflag", timeout=60)
    assert status["reason"] == "InvalidPodSpec"
    assert "--output" in status["message"]
    stack.kubectl("delete", "pod", "badflag", "--wait=false")
