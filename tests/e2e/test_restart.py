"""Crash safety: a kubelet that stops mid-flight and starts again loses and duplicates nothing.

A second kubelet (node ``mobius-b``) runs in-process against the session's API server and Slurm,
so it can be stopped and started at will; its pods name the node directly.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import trio

from mobius.app import run_kubelet
from mobius.config import KubeletSettings
from mobius.controlplane import free_port, issue_kubelet_serving_cert
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

NODE = "mobius-b"


def _settings(stack: Stack, state_dir: Path, port: int) -> KubeletSettings:
    pki = stack.home / "controlplane" / "pki"
    cert, key = issue_kubelet_serving_cert(pki, NODE, ips=["127.0.0.1"])
    return KubeletSettings(
        node_name=NODE,
        kubeconfig=str(stack.kubeconfig),
        state_dir=state_dir,
        slurm_env={"SLURM_CONF": str(stack.home / "slurm" / "slurm.conf")},
        kubelet_bind="127.0.0.1",
        kubelet_port=port,
        serving_cert=str(cert),
        serving_key=str(key),
        client_ca=str(pki / "ca.crt"),
        poll_interval=0.5,
    )


def _pod(name: str, command: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["sh", "-c", command]}
                ],
            },
        }
    )


async def _wait(what: str, predicate):  # type: ignore[no-untyped-def]
    with trio.move_on_after(120):
        while not (result := await trio.to_thread.run_sync(predicate)):
            await trio.sleep(0.5)
        return result
    raise AssertionError(f"timed out waiting for {what}")


async def test_restart_neither_loses_nor_duplicates_jobs(stack: Stack, tmp_path: Path) -> None:
    async def kubectl(*args: str, stdin: str | None = None) -> str:
        return await trio.to_thread.run_sync(partial(stack.kubectl, *args, stdin=stdin))

    settings = _settings(stack, tmp_path / "state", free_port())
    names = ["crash-a", "crash-b", "crash-c"]

    async with trio.open_nursery() as nursery:
        await nursery.start(run_kubelet, settings)
        for name in names:
            await kubectl("apply", "-f", "-", stdin=_pod(name, "sleep 4; echo done"))

        def uids() -> dict[str, str]:
            pods = json.loads(stack.kubectl("get", "pods", "-o", "json"))["items"]
            return {
                p["metadata"]["name"]: p["metadata"]["uid"]
                for p in pods
                if p["metadata"]["name"] in names
            }

        by_name = await _wait("the three pods", lambda: len(u := uids()) == 3 and u)
        await _wait(
            "all three submitted",
            lambda: all(f"mobius-{uid}" in stack.jobs_by_name() for uid in by_name.values()),
        )
        nursery.cancel_scope.cancel()  # the kubelet stops while the jobs run

    # A pod created while no kubelet runs is picked up after the restart.
    await kubectl("apply", "-f", "-", stdin=_pod("crash-late", "echo late"))
    names.append("crash-late")

    async with trio.open_nursery() as nursery:
        await nursery.start(run_kubelet, settings)

        def phases() -> dict[str, str]:
            pods = json.loads(stack.kubectl("get", "pods", "-o", "json"))["items"]
            return {
                p["metadata"]["name"]: p["status"].get("phase", "")
                for p in pods
                if p["metadata"]["name"] in names
            }

        final = await _wait(
            "all four to succeed",
            lambda: (
                (p := phases()) and all(v == "Succeeded" for v in p.values()) and len(p) == 4 and p
            ),
        )
        assert await kubectl("logs", "crash-a") == "done\n"
        nursery.cancel_scope.cancel()

    assert final == dict.fromkeys(names, "Succeeded")
    jobs = stack.jobs_by_name()
    for name, uid in by_name.items():
        assert len(jobs[f"mobius-{uid}"]) == 1, f"{name} was submitted {jobs[f'mobius-{uid}']}"
    for name in names:
        await kubectl("delete", "pod", name, "--wait=false")
