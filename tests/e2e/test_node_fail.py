"""A Slurm node that stops answering fails its pods with NodeLost, as Kubernetes reports it.

Uses its own two-node private Slurm (the session's cluster must stay healthy) and an in-process
kubelet (node ``mobius-nf``) against the session's API server. The slurmd is frozen with SIGSTOP
rather than killed: slurmctld cannot tell the two apart, and the cluster fixture treats a dead
daemon as a failure of its own.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from functools import partial
from pathlib import Path

import pytest
import trio

from mobius.app import run_kubelet
from mobius.config import KubeletSettings
from mobius.controlplane import free_port, issue_kubelet_serving_cert
from mobius.slurm.cluster import PrivateSlurmSettings, serve_private_slurm
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

NODE = "mobius-nf"


def _slurmd_pid(conf: Path, node: str) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"slurmd")
            and os.fsencode(str(conf)) in argv
            and node.encode() in argv
        ):
            return int(entry.name)
    raise AssertionError(f"no slurmd for {node}")


async def test_frozen_slurm_node_fails_its_pod_with_node_lost(stack: Stack, tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="mob-nf-"))
    pki = stack.home / "controlplane" / "pki"
    cert, key = issue_kubelet_serving_cert(pki, NODE, ips=["127.0.0.1"])

    async def kubectl(*args: str, stdin: str | None = None) -> str:
        return await trio.to_thread.run_sync(partial(stack.kubectl, *args, stdin=stdin))

    async with trio.open_nursery() as nursery:
        slurm = await nursery.start(
            serve_private_slurm, PrivateSlurmSettings(root=root, nodes=2, cpus_per_node=4)
        )
        await nursery.start(
            run_kubelet,
            KubeletSettings(
                node_name=NODE,
                kubeconfig=str(stack.kubeconfig),
                state_dir=tmp_path / "state",
                slurm_env=slurm.env,
                kubelet_bind="127.0.0.1",
                kubelet_port=free_port(),
                serving_cert=str(cert),
                serving_key=str(key),
                client_ca=str(pki / "ca.crt"),
                poll_interval=0.5,
            ),
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "lost", "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
            },
        }
        await kubectl("apply", "-f", "-", stdin=json.dumps(pod))

        async def status() -> dict:  # type: ignore[type-arg]
            return json.loads(await kubectl("get", "pod", "lost", "-o", "json"))["status"]  # type: ignore[no-any-return]

        with trio.fail_after(120):
            while (await status()).get("phase") != "Running":
                await trio.sleep(0.5)
        uid = json.loads(await kubectl("get", "pod", "lost", "-o", "json"))["metadata"]["uid"]
        out = await trio.run_process(
            ["squeue", "-h", "-n", f"mobius-{uid}", "-o", "%N"],
            capture_stdout=True,
            env={**os.environ, **slurm.env},
        )
        slurm_node = out.stdout.decode().strip()
        pid = _slurmd_pid(slurm.conf_path, slurm_node)
        os.kill(pid, signal.SIGSTOP)
        try:
            with trio.fail_after(240):
                while (st := await status()).get("phase") == "Running":
                    await trio.sleep(1)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert st["phase"] == "Failed", st
        assert st["reason"] == "NodeLost", st
        assert "node" in st["message"]
        await kubectl("delete", "pod", "lost", "--force", "--grace-period=0")
        # The frozen node's job step still runs its containers: remove them.
        await trio.run_process(
            ["podman", "pod", "rm", "-f", "-t", "0", "--ignore", f"mobius-{uid}"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"},
        )
        nursery.cancel_scope.cancel()
