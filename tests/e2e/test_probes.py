"""Probes and lifecycle hooks through the whole stack, with podman.

Readiness: a pod whose probe fails is Running but not Ready, and the Endpoints (and
EndpointSlice) of a Service selecting it list its address as not ready; once the probe passes
(the test makes it pass with ``kubectl exec``, so nothing depends on how fast the machine is),
the pod is Ready and its address is ready. Liveness: a failing probe restarts the container.
Hooks: postStart runs before the container counts as started, preStop before it gets TERM when
the pod is deleted (their order is written to a hostPath folder of this machine, the node).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def _pod(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox", **container}],
            **spec,
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8080}]},
    }


def _status(stack: Stack, name: str) -> dict[str, Any]:
    status: dict[str, Any] = stack.get_json("pod", name).get("status", {})
    if status.get("phase") in ("Succeeded", "Failed"):
        pytest.fail(f"{name} ended: {status}")
    return status


def _ready(status: dict[str, Any]) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def _running(stack: Stack, name: str) -> dict[str, Any] | None:
    status = _status(stack, name)
    statuses = status.get("containerStatuses", [])
    if status.get("phase") == "Running" and statuses and "running" in statuses[0]["state"]:
        return status
    return None


def _events(stack: Stack, name: str, reason: str) -> list[str]:
    events = stack.get_json("events", "--field-selector", f"involvedObject.name={name}")
    return [e["message"] for e in events["items"] if e["reason"] == reason]


def _addresses(stack: Stack, service: str) -> tuple[set[str], set[str]]:
    """(ready, not ready) addresses of the Service's Endpoints."""
    subsets = stack.get_json("endpoints", service).get("subsets") or []
    ready = {a["ip"] for s in subsets for a in s.get("addresses", [])}
    unready = {a["ip"] for s in subsets for a in s.get("notReadyAddresses", [])}
    return ready, unready


def _slice_ready(stack: Stack, service: str, ip: str) -> bool | None:
    """The EndpointSlice's ready condition for ``ip`` (None while it is not listed)."""
    slices = stack.get_json("endpointslices", "-l", f"kubernetes.io/service-name={service}")
    for endpoint in (e for s in slices["items"] for e in s.get("endpoints") or []):
        if ip in endpoint["addresses"]:
            return bool(endpoint.get("conditions", {}).get("ready"))
    return None


def _delete(stack: Stack, *kinds_and_names: str) -> None:
    stack.kubectl("delete", *kinds_and_names, "--wait=false", check=False)


def _readiness_gates_ready_and_endpoints(
    stack: Stack, name: str, container: dict[str, Any], make_ready: list[str], failure: str
) -> None:
    stack.apply(_service(name), _pod(name, container))
    try:
        status = stack.wait_for(f"{name} to run", lambda: _running(stack, name))
        ip = status["podIP"]
        # The probe cannot pass yet: Running, not Ready, whatever the timing.
        # (The first attempts may come before the server listens.)
        stack.wait_for(repr(failure), lambda: failure in _events(stack, name, "Unhealthy"))
        status = _status(stack, name)
        assert status["phase"] == "Running"
        assert _ready(status) == "False"
        assert status["containerStatuses"][0]["ready"] is False
        assert status["containerStatuses"][0]["started"] is True
        stack.wait_for("the address listed as not ready", lambda: ip in _addresses(stack, name)[1])
        assert ip not in _addresses(stack, name)[0]
        assert _slice_ready(stack, name, ip) is False

        stack.kubectl("exec", name, "--", *make_ready)
        stack.wait_for("Ready", lambda: _ready(_status(stack, name)) == "True")
        assert _status(stack, name)["containerStatuses"][0]["ready"] is True
        stack.wait_for("the address listed as ready", lambda: ip in _addresses(stack, name)[0])
        stack.wait_for("the slice to say ready", lambda: _slice_ready(stack, name, ip))
    finally:
        _delete(stack, "pod", name)
        _delete(stack, "service", name)


def test_exec_readiness_probe_gates_ready_and_endpoints(stack: Stack) -> None:
    _readiness_gates_ready_and_endpoints(
        stack,
        "ready-exec",
        {
            "command": ["sh", "-c", LOOP],
            "readinessProbe": {
                "exec": {"command": ["test", "-e", "/tmp/ready"]},
                "periodSeconds": 1,
            },
        },
        make_ready=["touch", "/tmp/ready"],
        failure="Readiness probe failed: exit status 1",
    )


def test_http_readiness_probe_against_busybox_httpd(stack: Stack) -> None:
    _readiness_gates_ready_and_endpoints(
        stack,
        "ready-http",
        {
            "command": [
                "sh",
                "-c",
                "mkdir -p /www; httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait",
            ],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {
                "httpGet": {"port": "http", "path": "/ready"},
                "periodSeconds": 1,
            },
        },
        make_ready=["touch", "/www/ready"],
        failure="Readiness probe failed: HTTP probe failed with statuscode: 404",
    )


def test_a_failing_liveness_probe_restarts_the_container(stack: Stack) -> None:
    name = "liveness"
    stack.apply(
        _pod(
            name,
            {
                "command": ["sh", "-c", "echo run; " + LOOP],
                "livenessProbe": {
                    "exec": {"command": ["test", "-e", "/tmp/healthy"]},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
            },
            restartPolicy="Always",
        )
    )
    try:
        status = stack.wait_for(
            "a restart",
            lambda: (
                (s := _status(stack, name)).get("containerStatuses")
                and s["containerStatuses"][0]["restartCount"] >= 1
                and s
            ),
            timeout=180,
        )
        (main,) = status["containerStatuses"]
        assert main["lastState"]["terminated"]["exitCode"] == 0  # its TERM trap exits 0
        assert status["phase"] == "Running"
        assert "Container main failed liveness probe, will be restarted" in _events(
            stack, name, "Killing"
        )
        # Events are posted by their own task, a moment after the status that reports the restart.
        stack.wait_for(
            "the Unhealthy event",
            lambda: "Liveness probe failed: exit status 1" in _events(stack, name, "Unhealthy"),
            timeout=60,
        )
        assert stack.kubectl("logs", name, "--previous") == "run\n"
    finally:
        _delete(stack, "pod", name)


def test_post_start_and_pre_stop_hooks(stack: Stack, tmp_path: Path) -> None:
    name = "hooks"
    out = tmp_path / "hooks"
    out.mkdir()
    order = "/out/order"
    stack.apply(
        _pod(
            name,
            {
                "command": [
                    "sh",
                    "-c",
                    f"trap 'echo term >>{order}; exit 0' TERM; echo main >>{order}; "
                    "while :; do sleep 1; done",
                ],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", f"echo postStart >>{order}"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", f"echo preStop >>{order}"]}},
                },
            },
            volumes=[{"name": "out", "hostPath": {"path": str(out), "type": "Directory"}}],
            terminationGracePeriodSeconds=20,
        )
    )
    try:
        stack.wait_for(
            "the hook to finish",
            lambda: (s := _running(stack, name)) and s["containerStatuses"][0]["started"],
        )
        assert _ready(_status(stack, name)) == "True"
        assert sorted((out / "order").read_text().split()) == ["main", "postStart"]
    finally:
        _delete(stack, "pod", name)
    stack.wait_for(
        "the pod to go",
        lambda: f"pod/{name}" not in stack.kubectl("get", "pods", "-o", "name").split(),
    )
    lines = (out / "order").read_text().split()
    assert lines[-2:] == ["preStop", "term"]  # the hook, then TERM, as the kubelet stops it
