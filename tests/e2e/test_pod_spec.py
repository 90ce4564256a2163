"""Pod spec fidelity through the whole stack with Podman: init containers in order and an init
failure, two containers talking over localhost, restartPolicy OnFailure restarting in place, and
the pod's resources as Slurm sees them in `scontrol show job`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _create(stack: Stack, name: str, spec: dict[str, Any], **meta: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": spec,
    }
    stack.kubectl("create", "-f", "-", stdin=json.dumps(pod))


def _status(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get_json("pod", name).get("status", {})  # type: ignore[no-any-return]


def _phase_in(stack: Stack, name: str, *phases: str) -> dict[str, Any] | None:
    status = _status(stack, name)
    return status if status.get("phase") in phases else None


def _delete(stack: Stack, *names: str) -> None:
    stack.kubectl("delete", "pod", *names, "--grace-period=1", "--wait=false", check=False)


SCRATCH = {"volumes": [{"name": "scratch", "emptyDir": {}}]}
MOUNT = {"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}


def test_init_containers_run_in_order_before_the_app(stack: Stack) -> None:
    _create(
        stack,
        "inits",
        {
            "restartPolicy": "Never",
            **SCRATCH,
            "initContainers": [
                {
                    "name": "first",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo 1 >>/scratch/order"],
                    **MOUNT,
                },
                {
                    "name": "second",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo 2 >>/scratch/order"],
                    **MOUNT,
                },
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo 3 >>/scratch/order; cat /scratch/order"],
                    **MOUNT,
                }
            ],
        },
    )
    try:
        status = stack.wait_for(
            "inits to succeed", lambda: _phase_in(stack, "inits", "Succeeded", "Failed")
        )
        assert status["phase"] == "Succeeded", status
        assert stack.kubectl("logs", "inits", "-c", "app") == "1\n2\n3\n"
        inits = status["initContainerStatuses"]
        assert [(s["name"], s["state"]["terminated"]["exitCode"]) for s in inits] == [
            ("first", 0),
            ("second", 0),
        ]
    finally:
        _delete(stack, "inits")


def test_a_failing_init_container_stops_the_pod_with_its_exit_code(stack: Stack) -> None:
    _create(
        stack,
        "init-fails",
        {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "check",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo no config >&2; exit 4"],
                },
                {"name": "never", "image": "busybox", "command": ["true"]},
            ],
            "containers": [{"name": "app", "image": "busybox", "command": ["true"]}],
        },
    )
    try:
        status = stack.wait_for(
            "init-fails to fail", lambda: _phase_in(stack, "init-fails", "Succeeded", "Failed")
        )
        assert status["phase"] == "Failed", status
        check = status["initContainerStatuses"][0]
        assert check["name"] == "check"
        assert check["state"]["terminated"]["exitCode"] == 4
        assert "terminated" not in status["initContainerStatuses"][1]["state"]
        (app,) = status["containerStatuses"]
        assert "terminated" not in app["state"]
        assert "no config" in stack.kubectl("logs", "init-fails", "-c", "check")
    finally:
        _delete(stack, "init-fails")


def test_two_containers_talk_over_localhost(stack: Stack) -> None:
    _create(
        stack,
        "talkers",
        {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "server",
                    "image": "busybox",
                    "command": [
                        "sh",
                        "-c",
                        "mkdir -p /tmp/w && echo hello from server >/tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w",
                    ],
                },
                {
                    "name": "client",
                    "image": "busybox",
                    "command": [
                        "sh",
                        "-c",
                        "until wget -qO- http://127.0.0.1:8080/ 2>/dev/null; do sleep 1; done",
                    ],
                },
            ],
        },
    )
    try:

        def client_done() -> dict[str, Any] | None:
            for s in _status(stack, "talkers").get("containerStatuses", []):
                if s["name"] == "client" and "terminated" in s["state"]:
                    return s  # type: ignore[no-any-return]
            return None

        client = stack.wait_for("the client to finish", client_done)
        assert client["state"]["terminated"]["exitCode"] == 0
        assert stack.kubectl("logs", "talkers", "-c", "client") == "hello from server\n"
    finally:
        _delete(stack, "talkers")


def test_on_failure_restarts_in_place_until_success(stack: Stack) -> None:
    # Fails twice, then succeeds: the count survives restarts in the pod's emptyDir.
    script = "n=$(cat /scratch/n 2>/dev/null || echo 0); n=$((n+1)); echo $n >/scratch/n; echo run $n; [ $n -ge 3 ]"
    _create(
        stack,
        "flaky",
        {
            "restartPolicy": "OnFailure",
            **SCRATCH,
            "containers": [
                {"name": "main", "image": "busybox", "command": ["sh", "-c", script], **MOUNT}
            ],
        },
    )
    try:
        status = stack.wait_for(
            "flaky to succeed",
            lambda: _phase_in(stack, "flaky", "Succeeded", "Failed"),
            timeout=180,
        )
        assert status["phase"] == "Succeeded", status
        (main,) = status["containerStatuses"]
        assert main["restartCount"] == 2
        assert main["state"]["terminated"]["exitCode"] == 0
        assert main["lastState"]["terminated"]["exitCode"] == 1
        assert stack.kubectl("logs", "flaky") == "run 3\n"
        assert stack.kubectl("logs", "flaky", "--previous") == "run 2\n"
        assert (
            len(stack.jobs_by_name()[f"mobius-{stack.get_json('pod', 'flaky')['metadata']['uid']}"])
            == 1
        )
    finally:
        _delete(stack, "flaky")


def test_resources_reach_slurm(stack: Stack) -> None:
    _create(
        stack,
        "sized",
        {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 600,
            "terminationGracePeriodSeconds": 7,
            "initContainers": [
                # An init container needing more than the app containers together sets the size.
                {
                    "name": "prep",
                    "image": "busybox",
                    "command": ["true"],
                    "resources": {"requests": {"memory": "300Mi"}},
                }
            ],
            "containers": [
                {
                    "name": "a",
                    "image": "busybox",
                    "command": ["sleep", "300"],
                    "resources": {
                        "requests": {"cpu": "1500m", "memory": "100Mi"},
                        "limits": {"nvidia.com/gpu": "1"},
                    },
                },
                {
                    "name": "b",
                    "image": "busybox",
                    "command": ["sleep", "300"],
                    "resources": {"limits": {"cpu": "250m"}},
                },
            ],
        },
    )
    try:
        uid = stack.wait_for(
            "sized to be submitted", lambda: stack.get_json("pod", "sized")["metadata"]["uid"]
        )
        job_ids = stack.wait_for("its job", lambda: stack.jobs_by_name().get(f"mobius-{uid}"))
        line = stack.slurm("scontrol", "show", "job", "--oneliner", job_ids[0])
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        assert fields["NumCPUs"] == "2"  # 1.5 + 0.25 CPUs, rounded up
        assert fields["MinMemoryNode"] == "300M"  # the init container's 300Mi beats 100Mi
        assert fields["TimeLimit"] == "00:10:00"  # activeDeadlineSeconds
        assert fields["TresPerNode"] == "gres:gpu:1"
        assert "Comment=pod default/sized " in line
    finally:
        _delete(stack, "sized")


def test_dns_policy_none_gives_the_pod_its_dns_config(stack: Stack) -> None:
    _create(
        stack,
        "dns",
        {
            "restartPolicy": "Never",
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["192.0.2.53"],
                "searches": ["team.example"],
                "options": [{"name": "ndots", "value": "2"}],
            },
            "containers": [
                {"name": "main", "image": "busybox", "command": ["cat", "/etc/resolv.conf"]}
            ],
        },
    )
    try:
        status = stack.wait_for(
            "dns to end", lambda: _phase_in(stack, "dns", "Succeeded", "Failed")
        )
        assert status["phase"] == "Succeeded", status
        assert stack.kubectl("logs", "dns") == (
            "nameserver 192.0.2.53\nsearch team.example\noptions ndots:2\n"
        )
    finally:
        _delete(stack, "dns")
