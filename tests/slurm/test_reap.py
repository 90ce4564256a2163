"""What is left of a sandbox after its job ended is removed on the job's host only. A recording
stand-in plays podman (the real one would need a sandbox whose job Slurm killed outright, which
cannot be produced on demand)."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from mobius.runtime import Apptainer, Podman
from mobius.slurm.jobs import reap_sandbox
from mobius.state import PodPaths

RECORDER = """#!/bin/sh
printf '%s\\n' "$CONTAINERS_CONF" "$@" >"$0.calls"
"""


def _pod(tmp_path: Path, node: str) -> PodPaths:
    paths = PodPaths(tmp_path / "state")
    paths.ctl_dir("u1").mkdir(parents=True)
    (paths.ctl_dir("u1") / "node").write_text(node + "\n")
    return paths


async def test_the_sandbox_is_removed_on_the_jobs_host(tmp_path: Path) -> None:
    fake = tmp_path / "podman"
    fake.write_text(RECORDER)
    fake.chmod(0o755)
    paths = _pod(tmp_path, socket.gethostname())
    await reap_sandbox(Podman(binary=str(fake), global_flags=("--log-level=error",)), paths, "u1")
    calls = (await trio.Path(f"{fake}.calls").read_text()).splitlines()
    assert calls == [
        str(paths.pod_dir("u1") / "containers.conf"),
        "--log-level=error",
        "pod",
        "rm",
        "-f",
        "-t",
        "0",
        "--ignore",
        "mobius-u1",
    ]


async def test_nothing_runs_for_another_host_or_apptainer(tmp_path: Path) -> None:
    fake = tmp_path / "podman"
    fake.write_text(RECORDER)
    fake.chmod(0o755)
    await reap_sandbox(Podman(binary=str(fake)), _pod(tmp_path, "elsewhere"), "u1")
    assert not await trio.Path(f"{fake}.calls").exists()
    assert Apptainer().reap_command(sandbox="mobius-u1") == []
