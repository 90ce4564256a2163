"""Workload controllers on Mobius: kube-controller-manager makes the pods, Mobius runs them.

A Deployment scales up and down with one Slurm job per pod; a Job with completions and
parallelism runs to Complete. Every pod asks for 1 CPU (100m rounds up to a whole Slurm CPU), so
the private Slurm node holds as many running pods as it has CPUs; the rest must stay Pending and
say why Slurm keeps their job waiting.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

SPIN = 'trap "exit 0" TERM; while :; do sleep 0.5; done'
_PENDING = re.compile(r"^Slurm job (\d+) is PENDING \((\w+)\)$")


def _jobs(stack: Stack) -> dict[str, list[tuple[str, str, str]]]:
    """Pod UID -> [(job id, state, reason)] for every Mobius job squeue still shows."""
    out = stack.slurm("squeue", "--noheader", "--states=all", "--format=%j|%i|%T|%r")
    jobs: dict[str, list[tuple[str, str, str]]] = {}
    for line in out.splitlines():
        name, job_id, state, reason = line.split("|")
        if name.startswith("mobius-"):
            jobs.setdefault(name.removeprefix("mobius-"), []).append((job_id, state, reason))
    return jobs


def _node_cpus(stack: Stack) -> tuple[int, int]:
    """(CPUs, CPUs allocated) of the private cluster's only node."""
    (line,) = stack.slurm("scontrol", "show", "node", "--oneliner").splitlines()
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    return int(fields["CPUTot"]), int(fields["CPUAlloc"])


def _pods(stack: Stack, selector: str) -> list[dict]:  # type: ignore[type-arg]
    return stack.get_json("pods", "-l", selector)["items"]  # type: ignore[no-any-return]


def _deployment(name: str, replicas: int) -> str:
    labels = {"app": name}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox",
                                "command": ["sh", "-c", SPIN],
                                "resources": {"requests": {"cpu": "100m"}},
                            }
                        ],
                    },
                },
            },
        }
    )


def _settled(stack: Stack, name: str, replicas: int, running: int) -> bool:
    """``replicas`` pods (no terminating ones), ``running`` of them Running, the rest Pending."""
    status = stack.get_json("deployment", name)["status"]
    if status.get("replicas") != replicas or status.get("availableReplicas", 0) != running:
        return False
    pods = _pods(stack, f"app={name}")
    phases = sorted(p["status"].get("phase", "") for p in pods)
    return (
        not any(p["metadata"].get("deletionTimestamp") for p in pods)
        and phases == ["Pending"] * (replicas - running) + ["Running"] * running
        and all(
            _PENDING.match(p["status"].get("message", ""))
            for p in pods
            if p["status"]["phase"] == "Pending"
        )
    )


def _check_replicas(stack: Stack, name: str, replicas: int, cpus: int, seen: set[str]) -> None:
    running = min(replicas, cpus)
    stack.wait_for(
        f"{name} to settle at {replicas} pods, {running} running",
        lambda: _settled(stack, name, replicas, running),
        timeout=180,
    )
    pods = _pods(stack, f"app={name}")
    jobs = _jobs(stack)
    for pod in pods:
        uid, status = pod["metadata"]["uid"], pod["status"]
        seen.add(uid)
        if status["phase"] == "Running":
            assert [state for _, state, _ in jobs.get(uid, [])] == ["RUNNING"], (
                pod["metadata"]["name"],
                jobs.get(uid),
            )
            assert [c["ready"] for c in status["containerStatuses"]] == [True]
        else:  # no CPU left for it: Slurm keeps the job waiting and the pod says why
            ((job_id, state, _),) = jobs.get(uid, [("", "none", "")])
            assert state == "PENDING", (pod["metadata"]["name"], jobs.get(uid))
            match = _PENDING.match(status.get("message", ""))
            assert match, status
            assert match[1] == job_id
            assert match[2] in ("Resources", "Priority"), status["message"]
            (cs,) = status["containerStatuses"]
            assert cs["state"]["waiting"]["reason"] == "SlurmJobPending"
    current = {p["metadata"]["uid"] for p in pods}

    def gone_jobs_ended() -> bool:
        jobs = _jobs(stack)
        return all(
            state not in ("RUNNING", "PENDING")
            for uid in seen - current
            for _, state, _ in jobs.get(uid, [])
        )

    stack.wait_for("the jobs of removed pods to end", gone_jobs_ended, timeout=60)


def test_deployment_scales_with_one_slurm_job_per_pod(stack: Stack) -> None:
    # Start from an idle node so that the number of CPUs is the number of running pods.
    stack.wait_for("the Slurm node to be idle", lambda: _node_cpus(stack)[1] == 0)
    cpus, _ = _node_cpus(stack)
    seen: set[str] = set()
    try:
        stack.kubectl("apply", "-f", "-", stdin=_deployment("spin", 3))
        _check_replicas(stack, "spin", 3, cpus, seen)
        stack.kubectl("scale", "deployment", "spin", "--replicas=5")
        _check_replicas(stack, "spin", 5, cpus, seen)
        stack.kubectl("scale", "deployment", "spin", "--replicas=2")
        _check_replicas(stack, "spin", 2, cpus, seen)
        assert len(seen) == 5
    finally:
        stack.kubectl("delete", "deployment", "spin", "--wait=false", check=False)


def test_job_runs_five_completions_two_at_a_time(stack: Stack) -> None:
    job = json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "five"},
            "spec": {
                "completions": 5,
                "parallelism": 2,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox",
                                "command": ["sh", "-c", "echo run; sleep 1"],
                            }
                        ],
                    }
                },
            },
        }
    )
    try:
        stack.kubectl("apply", "-f", "-", stdin=job)

        def complete() -> bool:
            status = stack.get_json("job", "five")["status"]
            if status.get("failed"):
                pytest.fail(f"job five has failed pods: {status}")
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return status.get("succeeded") == 5 and conditions.get("Complete") == "True"

        stack.wait_for("job five to complete", complete, timeout=240)
        pods = _pods(stack, "job-name=five")
        assert len(pods) == 5
        jobs = _jobs(stack)
        for pod in pods:
            name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
            assert pod["status"]["phase"] == "Succeeded", pod["status"]
            (cs,) = pod["status"]["containerStatuses"]
            assert cs["state"]["terminated"]["exitCode"] == 0
            assert cs["state"]["terminated"]["reason"] == "Completed"
            assert [state for _, state, _ in jobs.get(uid, [])] == ["COMPLETED"], (
                name,
                jobs.get(uid),
            )
            assert stack.kubectl("logs", name) == "run\n"
    finally:
        stack.kubectl("delete", "job", "five", "--wait=false", check=False)
