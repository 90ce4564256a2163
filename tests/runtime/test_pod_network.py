"""Pods on different Slurm nodes reach each other by IP: two real jobs of generated scripts with
the real podman, pinned to the two nodes of a private Slurm cluster (both nodes live on this
machine and share its podman bridge, which stands in for the site's cross-node network)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from mobius.errors import ConfigError
from mobius.models import Pod
from mobius.pods.script import render_job
from mobius.runtime import Podman
from mobius.slurm.cluster import PrivateSlurmSettings, SlurmEnvironment, serve_private_slurm

pytestmark = pytest.mark.e2e


def _pod(name: str, uid: str, command: list[str]) -> Pod:
    raw: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "docker.io/library/busybox:latest",
                    "imagePullPolicy": "Never",
                    "command": command,
                }
            ],
        },
    }
    return msgspec.convert(raw, Pod)


async def _run(argv: list[str], env: Mapping[str, str]) -> str:
    result = await trio.run_process(argv, env={**os.environ, **env}, capture_stdout=True)
    return result.stdout.decode()


async def _submit(pod: Pod, root: Path, node: str, env: Mapping[str, str]) -> tuple[str, Path]:
    pod_dir = root / pod.metadata.name
    await trio.Path(pod_dir / "logs").mkdir(parents=True)
    job = render_job(pod, pod_dir=str(pod_dir), runtime=Podman(global_flags=("--log-level=error",)))
    script = pod_dir / "job.sh"
    await trio.Path(script).write_text(job.script)
    out = await _run(["sbatch", *job.sbatch_args, f"--nodelist={node}", str(script)], env)
    return out.strip().split(";")[0], pod_dir


async def _wait_file(path: Path) -> str:
    with trio.fail_after(120):  # a hang guard
        while not await trio.Path(path).exists():
            await trio.sleep(0.2)
    return (await trio.Path(path).read_text()).strip()


async def test_pods_on_two_slurm_nodes_reach_each_other_by_ip() -> None:
    root = Path(tempfile.mkdtemp(prefix="mob-net-"))
    try:
        settings = PrivateSlurmSettings(root=root / "slurm", nodes=2, cpus_per_node=2)
        async with trio.open_nursery() as nursery:
            slurm: SlurmEnvironment = await nursery.start(serve_private_slurm, settings)
            env = slurm.env
            server = _pod(
                "server",
                "0000-net-server",
                [
                    "sh",
                    "-c",
                    "mkdir /w && echo from n1 >/w/index.html && exec httpd -f -p 8080 -h /w",
                ],
            )
            server_job, server_dir = await _submit(server, root, "n1", env)
            ip = await _wait_file(server_dir / "ctl" / "pod.ip")
            client = _pod(
                "client",
                "0000-net-client",
                ["sh", "-c", f"until wget -qO- http://{ip}:8080/; do sleep 1; done"],
            )
            client_job, client_dir = await _submit(client, root, "n2", env)
            code = await _wait_file(client_dir / "ctl" / "c" / "main.exit")
            nodes = await _run(
                [
                    "squeue",
                    "-h",
                    "--states=all",
                    f"--jobs={server_job},{client_job}",
                    "-o",
                    "%i %N",
                ],
                env,
            )
            # Stopped as the kubelet stops a pod: TERM to the batch script, whose trap stops
            # the sandbox and records the container's exit.
            await _run(["scancel", "--batch", "--signal=TERM", server_job], env)
            await _wait_file(server_dir / "ctl" / "c" / "main.exit")
            nursery.cancel_scope.cancel()
        assert code.split()[0] == "0"
        log = (client_dir / "logs" / "main" / "0.log").read_text()
        assert "from n1" in log
        assert dict(line.split() for line in nodes.splitlines()) == {
            server_job: "n1",
            client_job: "n2",
        }
        # Each pod had its own address.
        assert (client_dir / "ctl" / "pod.ip").read_text().strip() != ip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_network_is_a_podman_network_name() -> None:
    pod = _pod("p", "u", ["true"])
    script = render_job(pod, pod_dir="/p", runtime=Podman(network="site-flannel")).script
    assert "--network site-flannel" in script
    host = msgspec.structs.replace(pod, spec=msgspec.structs.replace(pod.spec, host_network=True))
    assert "--network host" in render_job(host, pod_dir="/p", runtime=Podman()).script
    for bad in ("", "--privileged", "a b"):
        with pytest.raises(ConfigError, match="podman network"):
            Podman(network=bad)
