"""Volumes end to end, with podman: ConfigMap and Secret files (modes, updates seen by the running
pod), an emptyDir shared by containers, the service-account volume every pod gets (its token
accepted by the API server, and renewed), a volume waiting for its ConfigMap, and an unsupported
volume type failing only its own pod.

The local busybox image is busybox-static, whose ``wget`` has no TLS: a pod cannot call the API
server over HTTPS itself. The test reads the pod's token, ``ca.crt`` and namespace with
``kubectl exec`` and makes the in-cluster call (GET its own pod) from here with them.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio

from mobius.kube.client import KubeClient
from mobius.kube.credentials import load_credentials
from mobius.kube.volumes import VolumeUpdater
from mobius.models import Pod
from mobius.state import PodPaths
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
LOOP = "trap 'exit 0' TERM; while :; do {}; sleep 1; done"


def _pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"image": "busybox", **c} for c in containers],
            **spec,
        },
    }


def _status(stack: Stack, name: str) -> dict[str, Any]:
    return stack.get_json("pod", name).get("status", {})  # type: ignore[no-any-return]


def _phase(stack: Stack, name: str) -> str | None:
    return _status(stack, name).get("phase")


def _running(stack: Stack, name: str) -> bool:
    phase = _phase(stack, name)
    if phase in ("Failed", "Succeeded"):
        pytest.fail(f"{name} ended: {_status(stack, name)}")
    return phase == "Running" and stack.containers_running(name)


def _succeeded(stack: Stack, name: str) -> bool:
    phase = _phase(stack, name)
    if phase == "Failed":
        pytest.fail(f"{name} failed: {_status(stack, name)}")
    return phase == "Succeeded"


def _delete(stack: Stack, *what: str) -> None:
    stack.kubectl("delete", *what, "--grace-period=1", "--wait=false", check=False)


def test_config_map_and_secret_files_follow_updates(stack: Stack) -> None:
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "vol-cfg"},
            "data": {"greeting": "hello", "other": "x"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vol-sec"},
            "stringData": {"password": "s3cr=t 'q'", "unused": "u"},
        },
        _pod(
            "vol-files",
            {
                "name": "main",
                "command": ["sh", "-c"],
                "args": [
                    "echo modes $(stat -L -c %a /etc/cfg/greeting /etc/sec/pw);"
                    "echo secret=$(cat /etc/sec/pw); ls /etc/sec;"
                    + LOOP.format('echo "cfg=$(cat /etc/cfg/greeting)"')
                ],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "sec", "mountPath": "/etc/sec"},
                ],
            },
            volumes=[
                {"name": "cfg", "configMap": {"name": "vol-cfg"}},
                {
                    "name": "sec",
                    "secret": {
                        "secretName": "vol-sec",
                        "items": [{"key": "password", "path": "pw", "mode": 0o400}],
                    },
                },
            ],
        ),
    )
    try:
        stack.wait_for("vol-files to run", lambda: _running(stack, "vol-files"))

        def logs() -> list[str]:
            return stack.kubectl("logs", "vol-files").splitlines()

        stack.wait_for("the first config line", lambda: "cfg=hello" in logs())
        lines = logs()
        assert "modes 644 400" in lines  # defaultMode 420 from the API server; the item's 0400
        assert "secret=s3cr=t 'q'" in lines
        assert "pw" in lines
        assert "unused" not in lines  # items pick keys
        stack.kubectl("patch", "configmap", "vol-cfg", "-p", '{"data":{"greeting":"bonjour"}}')
        stack.wait_for(
            "the new content inside the pod", lambda: "cfg=bonjour" in logs(), timeout=60
        )
        assert _phase(stack, "vol-files") == "Running"
    finally:
        _delete(stack, "pod/vol-files", "configmap/vol-cfg", "secret/vol-sec")


def test_empty_dir_is_shared_by_the_pods_containers(stack: Stack) -> None:
    shared = [{"name": "shared", "mountPath": "/shared"}]
    stack.apply(
        _pod(
            "vol-empty",
            {
                "name": "writer",
                "command": [
                    "sh",
                    "-c",
                    "echo from-writer >/shared/w.tmp && mv /shared/w.tmp /shared/w",
                ],
                "volumeMounts": shared,
            },
            {
                "name": "reader",
                "command": [
                    "sh",
                    "-c",
                    "until [ -e /data/w ]; do sleep 0.2; done; cat /data/init /data/w; ls -ld /data",
                ],
                "volumeMounts": [{"name": "shared", "mountPath": "/data"}],
            },
            initContainers=[
                {
                    "name": "init",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo from-init >/shared/init"],
                    "volumeMounts": shared,
                }
            ],
            volumes=[{"name": "shared", "emptyDir": {}}],
        ),
    )
    try:
        stack.wait_for("vol-empty to succeed", lambda: _succeeded(stack, "vol-empty"))
        lines = stack.kubectl("logs", "vol-empty", "-c", "reader").splitlines()
        assert lines[:2] == ["from-init", "from-writer"]
        assert lines[2].startswith("drwxrwxrwx")  # as the kubelet makes an emptyDir
    finally:
        _delete(stack, "pod/vol-empty")


def _server(stack: Stack) -> str:
    return load_credentials(str(stack.kubeconfig)).server


def _exec(stack: Stack, pod: str, *argv: str) -> str:
    return stack.kubectl("exec", pod, "--", *argv)


def _get_own_pod(stack: Stack, token: str, ca: str, namespace: str, name: str) -> httpx.Response:
    context = ssl.create_default_context(cadata=ca)
    with httpx.Client(base_url=_server(stack), verify=context, timeout=30) as client:
        return client.get(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            headers={"Authorization": f"Bearer {token}"},
        )


def test_the_service_account_token_reaches_the_api_server(stack: Stack, tmp_path: Path) -> None:
    rbac = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vol-reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "vol-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "vol-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "vol-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "vol-reader", "namespace": "default"}],
        },
    ]
    stack.apply(*rbac)
    stack.wait_for(
        "the service account",
        lambda: "vol-reader" in stack.kubectl("get", "serviceaccounts", "-o", "name"),
    )
    stack.apply(
        _pod(
            "vol-token",
            {"name": "main", "command": ["sh", "-c", LOOP.format(":")]},
            serviceAccountName="vol-reader",
        ),
        _pod(
            "vol-no-token",
            {"name": "main", "command": ["sh", "-c", f"ls {SA_DIR} 2>&1 || echo no-token"]},
            automountServiceAccountToken=False,
        ),
    )
    try:
        stack.wait_for("vol-token to run", lambda: _running(stack, "vol-token"))
        token = _exec(stack, "vol-token", "cat", f"{SA_DIR}/token")
        ca = _exec(stack, "vol-token", "cat", f"{SA_DIR}/ca.crt")
        namespace = _exec(stack, "vol-token", "cat", f"{SA_DIR}/namespace")
        assert namespace == "default"
        assert ca == stack.get_json("configmap", "kube-root-ca.crt")["data"]["ca.crt"]
        assert token.count(".") == 2  # a JWT
        pod = stack.get_json("pod", "vol-token")
        got = _get_own_pod(stack, token, ca, namespace, "vol-token")
        assert got.status_code == 200, got.text
        assert got.json()["metadata"]["uid"] == pod["metadata"]["uid"]
        # The kubelet renews a token once 80% of its lifetime has passed: run its update pass as
        # if that time had come (the pass is what serve_volume_updates runs every 30 s).
        renewed = _renew_as_if_later(stack, pod)
        assert renewed == 1
        new = _exec(stack, "vol-token", "cat", f"{SA_DIR}/token")
        assert new != token
        got = _get_own_pod(stack, new, ca, namespace, "vol-token")
        assert got.status_code == 200, got.text

        stack.wait_for("vol-no-token to succeed", lambda: _succeeded(stack, "vol-no-token"))
        spec = stack.get_json("pod", "vol-no-token")["spec"]
        assert not spec.get("volumes")
        assert "no-token" in stack.kubectl("logs", "vol-no-token")
    finally:
        _delete(stack, "pod/vol-token", "pod/vol-no-token")
        stack.kubectl(
            "delete", "rolebinding/vol-reader", "role/vol-reader", "serviceaccount/vol-reader",
            "--wait=false", check=False,
        )  # fmt: skip


def _renew_as_if_later(stack: Stack, raw: dict[str, Any]) -> int:
    pod = msgspec.convert(raw, Pod)
    (account,) = [v for v in pod.spec.volumes if v.name.startswith("kube-api-access-")]
    assert account.projected is not None

    async def main() -> int:
        async with KubeClient(load_credentials(str(stack.kubeconfig))) as kube:
            updater = VolumeUpdater(kube, paths=PodPaths(stack.home / "state"), node_name="mobius")
            return await updater.update([pod], now=time.time() + 0.9 * 3607)

    return trio.run(main)


def test_a_volume_waits_for_its_config_map(stack: Stack) -> None:
    stack.apply(
        _pod(
            "vol-wait",
            {
                "name": "main",
                "command": ["cat", "/cfg/k"],
                "volumeMounts": [{"name": "late", "mountPath": "/cfg"}],
            },
            volumes=[{"name": "late", "configMap": {"name": "vol-late"}}],
        ),
    )
    try:

        def failed_mount() -> str:
            return stack.kubectl(
                "get", "events", "--field-selector=involvedObject.name=vol-wait,reason=FailedMount"
            )

        stack.wait_for("a FailedMount event", lambda: "vol-late" in failed_mount(), timeout=60)
        assert 'configmap "vol-late" not found' in failed_mount()
        assert _phase(stack, "vol-wait") == "Pending"
        stack.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "vol-late"},
                "data": {"k": "here"},
            },
        )
        stack.wait_for("vol-wait to start and succeed", lambda: _succeeded(stack, "vol-wait"))
        assert stack.kubectl("logs", "vol-wait") == "here"
    finally:
        _delete(stack, "pod/vol-wait", "configmap/vol-late")


def test_an_unsupported_volume_fails_only_its_pod(stack: Stack) -> None:
    stack.apply(
        _pod("vol-alive", {"name": "main", "command": ["sh", "-c", LOOP.format(":")]}),
        _pod(
            "vol-gce",
            {
                "name": "main",
                "command": ["true"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            volumes=[{"name": "data", "gcePersistentDisk": {"pdName": "disk-1"}}],
        ),
    )
    try:
        stack.wait_for("vol-alive to run", lambda: _running(stack, "vol-alive"))
        stack.wait_for("vol-gce to fail", lambda: _phase(stack, "vol-gce") == "Failed")
        status = _status(stack, "vol-gce")
        assert status["reason"] == "InvalidPodSpec"
        assert 'volume "data" is of type gcePersistentDisk' in status["message"]
        assert "spec.volumes[0].gcePersistentDisk" in status["message"]
        assert _running(stack, "vol-alive")
        events = stack.kubectl("get", "events", "--field-selector=involvedObject.name=vol-gce")
        assert "gcePersistentDisk" in events
    finally:
        _delete(stack, "pod/vol-alive", "pod/vol-gce")
