"""PersistentVolumeClaims end to end: the real controller manager binds each claim to a hostPath
PersistentVolume (static provisioning); two pods share the claim, the second reads what the
first wrote (one mounting a subPath, the other read-only); a pod whose claim is created after
it waits Pending (event FailedMount, a pod condition saying why) and runs once it is bound."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e


def _volume(name: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
        },
    }


def _claim(name: str, *, volume: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "1Gi"}},
        "storageClassName": "",
    }
    if volume:
        spec["volumeName"] = volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _pod(name: str, claim: str, mount: dict[str, Any], command: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sh", "-c", command],
                    "volumeMounts": [{"name": "data", **mount}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def _status(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get_json("pod", name).get("status", {})  # type: ignore[no-any-return]


def _succeeded(stack: Stack, name: str) -> bool:
    status = _status(stack, name)
    if status.get("phase") == "Failed":
        pytest.fail(f"{name} failed: {status}")
    return status.get("phase") == "Succeeded"


def _bound(stack: Stack, claim: str) -> bool:
    return stack.get_json("pvc", claim).get("status", {}).get("phase") == "Bound"


def _delete(stack: Stack, *what: str) -> None:
    stack.kubectl("delete", *what, "--grace-period=1", "--wait=false", check=False)


def test_two_pods_share_a_claim_bound_to_a_host_path_volume(stack: Stack) -> None:
    folder = stack.home / "pvc-shared"
    stack.apply(_volume("pvc-shared", str(folder)), _claim("pvc-shared"))
    try:
        stack.wait_for("the claim to be bound", lambda: _bound(stack, "pvc-shared"))
        stack.apply(
            _pod(
                "pvc-writer",
                "pvc-shared",
                {"mountPath": "/out", "subPath": "app"},
                "echo written-by-the-first-pod >/out/msg",
            )
        )
        stack.wait_for("the writer to succeed", lambda: _succeeded(stack, "pvc-writer"))
        assert (folder / "app" / "msg").read_text() == "written-by-the-first-pod\n"
        stack.apply(
            _pod(
                "pvc-reader",
                "pvc-shared",
                {"mountPath": "/data", "readOnly": True},
                "cat /data/app/msg; touch /data/new 2>/dev/null && echo writable || echo read-only",
            )
        )
        stack.wait_for("the reader to succeed", lambda: _succeeded(stack, "pvc-reader"))
        assert stack.kubectl("logs", "pvc-reader") == "written-by-the-first-pod\nread-only\n"
        assert not (folder / "new").exists()
    finally:
        _delete(stack, "pod/pvc-writer", "pod/pvc-reader")
        _delete(stack, "pvc/pvc-shared", "pv/pvc-shared")


def test_a_pod_waits_for_its_claim_and_runs_once_it_is_bound(stack: Stack) -> None:
    stack.apply(_pod("pvc-waiting", "pvc-late", {"mountPath": "/data"}, "cat /data/msg"))
    try:

        def failed_mount() -> str:
            return stack.kubectl(
                "get",
                "events",
                "--field-selector=involvedObject.name=pvc-waiting,reason=FailedMount",
            )

        stack.wait_for("a FailedMount event", lambda: "pvc-late" in failed_mount(), timeout=60)
        assert 'persistentvolumeclaims "pvc-late" not found' in failed_mount()
        status = _status(stack, "pvc-waiting")
        assert status["phase"] == "Pending"
        (waiting,) = [c for c in status["conditions"] if c["type"] == "mobius.io/SlurmSubmitted"]
        assert waiting["status"] == "False"
        assert waiting["reason"] == "FailedMount"
        assert "error processing PVC default/pvc-late" in waiting["message"]
        assert any(c["type"] == "PodScheduled" for c in status["conditions"])

        # The claim first, naming a volume that does not exist yet: still waiting, now because
        # the claim is not bound.
        stack.apply(_claim("pvc-late", volume="pvc-late"))
        stack.wait_for(
            "the pod to say its claim is not bound",
            lambda: "PVC is not bound" in failed_mount(),
            timeout=60,
        )
        assert _status(stack, "pvc-waiting")["phase"] == "Pending"
        folder = stack.home / "pvc-late"
        folder.mkdir()
        (folder / "msg").write_text("here at last\n")
        stack.apply(_volume("pvc-late", str(folder)))
        stack.wait_for("the pod to run and succeed", lambda: _succeeded(stack, "pvc-waiting"))
        assert stack.kubectl("logs", "pvc-waiting") == "here at last\n"
        assert not any(
            c["type"] == "mobius.io/SlurmSubmitted"
            for c in _status(stack, "pvc-waiting")["conditions"]
        )
    finally:
        _delete(stack, "pod/pvc-waiting")
        _delete(stack, "pvc/pvc-late", "pv/pvc-late")
