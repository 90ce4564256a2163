"""Environments end to end: ConfigMap and Secret keys, envFrom with a prefix, fieldRefs (the pod
IP only the job knows), $(VAR) in args; a pod whose ConfigMap is missing waits for it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _pod(name: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", **container}],
        },
    }


def _status(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get_json("pod", name).get("status", {})  # type: ignore[no-any-return]


def _ended(stack: Stack, name: str) -> bool:
    phase = _status(stack, name).get("phase")
    if phase == "Failed":
        pytest.fail(f"{name} failed: {_status(stack, name)}")
    return phase == "Succeeded"


def test_env_from_config_maps_secrets_fields_and_args(stack: Stack) -> None:
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "env-cfg"},
            "data": {"mode": "fast", "level": "3"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "env-sec"},
            "stringData": {"password": "s3cr=t 'q' $(x)"},
        },
        _pod(
            "env-pod",
            {
                "command": ["sh", "-c"],
                "args": ["env; echo 'ARG=$(MODE)/$(MY_IP)/$$(MODE)'"],
                "env": [
                    {
                        "name": "MODE",
                        "valueFrom": {"configMapKeyRef": {"name": "env-cfg", "key": "mode"}},
                    },
                    {
                        "name": "PW",
                        "valueFrom": {"secretKeyRef": {"name": "env-sec", "key": "password"}},
                    },
                    {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "URL", "value": "http://$(MY_IP):8080/$(MODE)"},
                ],
                "envFrom": [{"configMapRef": {"name": "env-cfg"}, "prefix": "CFG_"}],
            },
        ),
    )
    try:
        stack.wait_for("env-pod to succeed", lambda: _ended(stack, "env-pod"))
        ip = _status(stack, "env-pod")["podIP"]
        lines = set(stack.kubectl("logs", "env-pod").splitlines())
        assert {
            "MODE=fast",
            "PW=s3cr=t 'q' $(x)",
            "MY_NAME=env-pod",
            f"MY_IP={ip}",
            f"URL=http://{ip}:8080/fast",
            "CFG_mode=fast",
            "CFG_level=3",
            f"ARG=fast/{ip}/$(MODE)",
        } <= lines
        assert any(line.startswith("KUBERNETES_SERVICE_HOST=") for line in lines)
    finally:
        stack.kubectl(
            "delete",
            "pod/env-pod",
            "configmap/env-cfg",
            "secret/env-sec",
            "--wait=false",
            check=False,
        )


def test_missing_config_map_waits_then_starts(stack: Stack) -> None:
    stack.apply(
        _pod(
            "env-wait",
            {
                "command": ["sh", "-c", "echo LATE=$LATE"],
                "env": [
                    {
                        "name": "LATE",
                        "valueFrom": {"configMapKeyRef": {"name": "env-late", "key": "k"}},
                    }
                ],
            },
        ),
    )
    try:

        def waiting() -> dict[str, Any] | None:
            status = _status(stack, "env-wait")
            for cs in status.get("containerStatuses", []):
                w = cs.get("state", {}).get("waiting", {})
                if w.get("reason") == "CreateContainerConfigError":
                    return {"phase": status.get("phase"), **w}
            return None

        seen = stack.wait_for("env-wait to wait for its ConfigMap", waiting, timeout=60)
        assert seen["phase"] == "Pending"
        assert "ConfigMap default/env-late not found" in seen["message"]
        events = stack.kubectl("get", "events", "--field-selector=involvedObject.name=env-wait")
        assert "CreateContainerConfigError" in events
        assert _status(stack, "env-wait")["phase"] == "Pending"  # still waiting, not failed
        stack.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "env-late"},
                "data": {"k": "here"},
            },
        )
        stack.wait_for("env-wait to start and succeed", lambda: _ended(stack, "env-wait"))
        assert stack.kubectl("logs", "env-wait") == "LATE=here\n"
    finally:
        stack.kubectl("delete", "pod/env-wait", "configmap/env-late", "--wait=false", check=False)
