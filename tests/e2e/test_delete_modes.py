"""The ways a pod is deleted: gracefully, forcibly, and after it has finished.

Whichever way, nothing of the pod may stay behind: no live Slurm job, no pod folder under the
kubelet's state directory, no podman container or pod sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _pod(name: str, command: str, *, grace: int) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": grace,
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["sh", "-c", command]}
                ],
            },
        }
    )


def _job_states(stack: Stack, uid: str) -> list[str]:
    env = {"SLURM_CONF": str(stack.home / "slurm" / "slurm.conf")}
    out = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%j|%T"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=30,
    ).stdout
    return [line.split("|")[1] for line in out.splitlines() if line.startswith(f"mobius-{uid}|")]


def _pod_dir(stack: Stack, uid: str) -> Path:
    return stack.home / "state" / "pods" / uid


def _pod_exists(stack: Stack, name: str) -> bool:
    return f"pod/{name}" in stack.kubectl("get", "pods", "-o", "name").split()


def _podman(*argv: str, check: bool = True) -> str:
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
    return subprocess.run(
        ["podman", *argv], capture_output=True, text=True, check=check, env=env, timeout=60
    ).stdout


def _podman_leftovers(uid: str) -> list[str]:
    """Containers and pod sandboxes of this pod that podman still knows (running or not)."""
    lines = [
        *_podman("ps", "-a", "--format", "{{.Names}} {{.Status}}").splitlines(),
        *_podman("pod", "ps", "--format", "{{.Name}} (pod) {{.Status}}").splitlines(),
    ]
    return [line for line in lines if f"mobius-{uid}" in line]


def _assert_nothing_left(stack: Stack, uid: str, *, timeout: float = 60) -> None:
    stack.wait_for(
        "the job to end",
        lambda: all(s not in ("RUNNING", "PENDING", "COMPLETING") for s in _job_states(stack, uid)),
        timeout=timeout,
    )
    stack.wait_for(
        "the pod folder to be removed", lambda: not _pod_dir(stack, uid).exists(), timeout=timeout
    )
    left: list[str] = []

    def podman_clean() -> bool:
        left[:] = _podman_leftovers(uid)
        return not left

    try:
        stack.wait_for("podman to forget the pod's containers", podman_clean, timeout=timeout)
    except AssertionError:
        pytest.fail(f"podman still has, {timeout:.0f} s after the job ended: {left}")


class _Pods:
    """Pods a test made. Afterwards they are force-deleted and whatever podman still has of
    them is removed, so that a failing test leaves no container running on the machine."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.made: dict[str, str] = {}  # name -> UID

    def run(self, name: str, command: str, *, grace: int, phase: str = "Running") -> str:
        """Create the pod, wait for ``phase``, return its UID."""
        self.stack.kubectl("apply", "-f", "-", stdin=_pod(name, command, grace=grace))

        def reached() -> bool:
            status = self.stack.get_json("pod", name)["status"]
            if status.get("phase") == "Failed":
                pytest.fail(f"{name} failed: {status}")
            if phase == "Running":  # and its container started, not just its job
                return self.stack.containers_running(name)
            return status.get("phase") == phase

        self.made[name] = self.stack.get_json("pod", name)["metadata"]["uid"]
        self.stack.wait_for(f"{name} to be {phase}", reached)
        return self.made[name]

    def remove_all(self) -> None:
        for name, uid in self.made.items():
            self.stack.kubectl(
                "delete",
                "pod",
                name,
                "--force",
                "--grace-period=0",
                "--ignore-not-found",
                check=False,
            )
            _podman("pod", "rm", "-f", "-t", "0", "--ignore", f"mobius-{uid}", check=False)


@pytest.fixture
def pods(stack: Stack) -> Iterator[_Pods]:
    made = _Pods(stack)
    yield made
    made.remove_all()


def test_graceful_delete_lets_the_container_handle_sigterm(stack: Stack, pods: _Pods) -> None:
    # The handler lingers after its line, so the line can be read while the pod still exists.
    command = "trap 'echo got TERM; sleep 6; echo bye; exit 0' TERM; echo started; while :; do sleep 0.2; done"
    uid = pods.run("polite", command, grace=30)
    stack.wait_for("polite to log 'started'", lambda: "started" in stack.kubectl("logs", "polite"))
    assert _job_states(stack, uid) == ["RUNNING"]
    stack.kubectl("delete", "pod", "polite", "--wait=false")

    def saw_term() -> bool:
        if not _pod_exists(stack, "polite"):
            pytest.fail(f"polite was removed before its log showed 'got TERM'\n{stack.log_tail()}")
        return "got TERM" in stack.kubectl("logs", "polite", check=False)

    stack.wait_for("the container to report SIGTERM", saw_term, timeout=60)
    assert stack.get_json("pod", "polite")["metadata"].get("deletionTimestamp")
    stack.wait_for("polite to be gone", lambda: not _pod_exists(stack, "polite"), timeout=90)
    _assert_nothing_left(stack, uid)
    # The containers stopped within the grace period: the job ended by itself, uncancelled.
    assert "CANCELLED" not in _job_states(stack, uid)


def test_graceful_delete_kills_a_container_that_ignores_sigterm(stack: Stack, pods: _Pods) -> None:
    uid = pods.run("deaf", "trap '' TERM; echo started; while :; do sleep 0.2; done", grace=3)
    stack.kubectl("delete", "pod", "deaf", "--wait=false")
    stack.wait_for("deaf to be gone", lambda: not _pod_exists(stack, "deaf"), timeout=90)
    _assert_nothing_left(stack, uid)


def test_forced_delete_removes_job_folder_and_containers(stack: Stack, pods: _Pods) -> None:
    # The container ignores SIGTERM: a forced delete must not depend on its cooperation.
    uid = pods.run("stubborn", "trap '' TERM; echo started; while :; do sleep 0.2; done", grace=10)
    assert _job_states(stack, uid) == ["RUNNING"]
    assert _podman_leftovers(uid), "the running pod should have podman containers"
    stack.kubectl("delete", "pod", "stubborn", "--force", "--grace-period=0")
    assert not _pod_exists(stack, "stubborn")
    _assert_nothing_left(stack, uid, timeout=45)


def test_deleting_a_succeeded_pod_removes_it_and_its_folder(stack: Stack, pods: _Pods) -> None:
    uid = pods.run("finished", "echo done", grace=5, phase="Succeeded")
    assert _pod_dir(stack, uid).is_dir()
    assert stack.kubectl("logs", "finished") == "done\n"
    stack.kubectl("delete", "pod", "finished", "--wait=true", timeout=60)
    assert not _pod_exists(stack, "finished")
    _assert_nothing_left(stack, uid)
    assert _job_states(stack, uid) in ([], ["COMPLETED"])
